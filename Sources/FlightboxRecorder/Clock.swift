import FlightboxCapture

/// The time the recorder's timers run on, in ns of CLOCK_MONOTONIC (the clock
/// of event timestamps). Tests drive a `ManualClock` instead of sleeping.
public protocol RecorderClock {
    func now() -> UInt64
}

/// CLOCK_MONOTONIC.
public struct MonotonicClock: RecorderClock {
    public init() {}
    public func now() -> UInt64 { monotonicNow() }
}

/// A clock that moves only when told: `SyntheticSource` advances it by each
/// poll's timeout, as a real poll would wait it out.
public final class ManualClock: RecorderClock {
    public private(set) var nowNs: UInt64

    public init(startNs: UInt64 = 1_000_000_000) { nowNs = startNs }

    public func now() -> UInt64 { nowNs }

    public func advance(by ns: UInt64) { nowNs += ns }
}
