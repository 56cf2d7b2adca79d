import FlightboxCapture

/// Takes one wire record, valid only for the duration of the call. Sources
/// hand records over by pointer so nothing is copied or allocated per event.
public typealias RecordSink = (UnsafeRawBufferPointer) -> Void

/// Where a recording's records come from, in stream order: the kernel (the
/// BPF capture), a trace file, or a script in tests.
///
/// The recorder drives a source from one thread: `poll` in a loop with
/// `losses` after each call and the periodic `flushBatches` and `sweep`, then,
/// to stop, `detach`, `flushBatches`, `sweep(all: true)`, `drainAll` and a
/// last `losses`, after which everything the source ever produced has been
/// handed over.
public protocol EventSource: AnyObject {
    /// Waits up to `timeoutMs` for records, then hands every available one to
    /// `sink` in stream order.
    func poll(timeoutMs: Int32, _ sink: RecordSink) throws

    /// Hands over records made outside the stream since the last call: loss
    /// records for events the source had to drop, placed where the drops are
    /// noticed.
    func losses(_ sink: RecordSink)

    /// Pushes records the source holds back in batches toward the next poll,
    /// so a quiet producer's records do not wait for its batch to fill.
    func flushBatches()

    /// Writes out summaries the source accumulates (writes per file, faults
    /// per thread): those idle for a while, or with `all` every one.
    func sweep(all: Bool)

    /// Stops producing. Once it returns, `flushBatches` and `drainAll` reach
    /// every record produced so far.
    func detach()

    /// Hands over every available record without waiting.
    func drainAll(_ sink: RecordSink) throws

    /// True once the source has nothing more to give (a replayed trace's
    /// end); a live source is never exhausted.
    var isExhausted: Bool { get }
}

extension EventSource {
    public func losses(_ sink: RecordSink) {}
    public func flushBatches() {}
    public func sweep(all: Bool) {}
    public func detach() {}
    public var isExhausted: Bool { false }
}

/// Records sampled in user space at a fixed interval (gauges), which join the
/// stream when their time comes.
public protocol PeriodicSampler: AnyObject {
    /// How often `sample` runs, in clock ns.
    var intervalNs: UInt64 { get }
    /// The records of one sample, stamped `ts`, in a stable order.
    func sample(at ts: UInt64) -> [[UInt8]]
}

extension GaugeSampler: PeriodicSampler {}
