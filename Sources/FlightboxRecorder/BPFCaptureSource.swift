import FlightboxCapture

/// The kernel as an event source: a `BPFCapture`'s ring buffer, its per-CPU
/// drop counters as loss records, its batch flush and summary sweeps.
/// Holds the capture, which owns the BPF objects and detaches in deinit.
public final class BPFCaptureSource: EventSource {
    public let capture: BPFCapture

    public init(_ capture: BPFCapture) {
        self.capture = capture
    }

    public func poll(timeoutMs: Int32, _ sink: RecordSink) throws {
        try capture.poll(timeoutMs: timeoutMs, sink)
    }

    public func losses(_ sink: RecordSink) {
        // Once per poll (every 50 ms at most), not per event: reading the
        // per-CPU counters allocates their array; records only where a CPU dropped events.
        for record in capture.newLosses() { record.withUnsafeBytes(sink) }
    }

    public func flushBatches() { capture.flushBatches() }

    public func sweep(all: Bool) { capture.sweepSummaries(all: all) }

    public func detach() { capture.detach() }

    public func drainAll(_ sink: RecordSink) throws {
        try capture.drainAll(sink)
    }
}
