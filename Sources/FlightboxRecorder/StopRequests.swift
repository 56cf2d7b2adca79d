#if canImport(Glibc)
import Glibc
#endif
import CFlightboxSys

/// Requests to stop recording: SIGINT and SIGTERM (`StopSignals`), or by
/// hand (`ManualStopRequests`). Without a command a first request ends the
/// recording; with one, requests are passed on to the command.
public protocol StopRequests {
    /// Requests so far.
    var count: Int { get }
    /// The last request's signal: what a command is sent first.
    var signal: Int32 { get }
}

/// SIGINT and SIGTERM, counted by a process-wide handler that `install()`
/// sets up (in C: a handler may touch only `volatile sig_atomic_t`).
public struct StopSignals: StopRequests {
    public init() {}

    public var count: Int { Int(fb_stop_signals_count()) }
    public var signal: Int32 { fb_stop_signal_last() }

    /// Counts SIGINT and SIGTERM instead of dying of them (SA_RESTART, so
    /// system calls go on), ignores SIGPIPE, so a closed findings pipe fails
    /// a write instead of killing the recorder, and restores SIGCHLD's
    /// default, so an inherited "ignore" cannot hide the command's exit.
    public static func install() { fb_stop_signals_install() }
}

/// Stop requests made by calling `request`, for tests and for callers that
/// decide to stop for their own reasons.
public final class ManualStopRequests: StopRequests {
    public private(set) var count = 0
    public private(set) var signal = SIGTERM

    public init() {}

    public func request(signal: Int32 = SIGTERM) {
        self.signal = signal
        count += 1
    }
}
