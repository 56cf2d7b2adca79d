#if canImport(Glibc)
import Glibc
#endif

/// Requests to stop recording: SIGINT and SIGTERM (`StopSignals`), or by
/// hand (`ManualStopRequests`). Without a command a first request ends the
/// recording; with one, requests are passed on to the command.
public protocol StopRequests {
    /// Requests so far.
    var count: Int { get }
    /// The last request's signal: what a command is sent first.
    var signal: Int32 { get }
}

// Written by the signal handler, which can capture nothing.
nonisolated(unsafe) private var signalsReceived: sig_atomic_t = 0
nonisolated(unsafe) private var lastSignalReceived: Int32 = SIGTERM

/// SIGINT and SIGTERM, counted by a process-wide handler that `install()`
/// sets up.
public struct StopSignals: StopRequests {
    public init() {}

    public var count: Int { Int(signalsReceived) }
    public var signal: Int32 { lastSignalReceived }

    /// Counts SIGINT and SIGTERM instead of dying of them (SA_RESTART, so
    /// system calls go on), and ignores SIGPIPE, so a closed findings pipe
    /// fails a write instead of killing the recorder.
    public static func install() {
        var sa = sigaction()
        sa.__sigaction_handler.sa_handler = { sig in
            lastSignalReceived = sig
            signalsReceived += 1
        }
        sigemptyset(&sa.sa_mask)
        sa.sa_flags = SA_RESTART
        sigaction(SIGINT, &sa, nil)
        sigaction(SIGTERM, &sa, nil)
        Glibc.signal(SIGPIPE, SIG_IGN)
    }
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
