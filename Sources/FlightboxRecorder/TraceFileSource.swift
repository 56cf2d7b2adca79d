import FlightboxFormat

/// A trace's events as a source, one block per poll, in stream order: a
/// recording replayed through the pipeline. Loss and gauge records are in
/// the trace's stream already; the source is exhausted after its last block.
/// Records are renumbered by the writer they are appended to.
public final class TraceFileSource: EventSource {
    public let reader: TraceReader
    private let blocks: [IndexEntry]
    private let from: UInt64?
    private let to: UInt64?
    private var next = 0

    /// The events of `reader` whose timestamps lie in [from, to] (nil: open).
    public init(reader: TraceReader, from: UInt64? = nil, to: UInt64? = nil) {
        self.reader = reader
        self.from = from
        self.to = to
        blocks = reader.blocks(from: from, to: to)
    }

    public convenience init(path: String) throws {
        try self.init(reader: TraceReader(path: path))
    }

    /// Hands over the next block's events; never waits: the file has them.
    public func poll(timeoutMs: Int32, _ sink: RecordSink) throws {
        guard next < blocks.count else { return }
        deliver(blocks[next], sink)
        next += 1
    }

    public func drainAll(_ sink: RecordSink) throws {
        while next < blocks.count {
            deliver(blocks[next], sink)
            next += 1
        }
    }

    public var isExhausted: Bool { next >= blocks.count }

    private func deliver(_ block: IndexEntry, _ sink: RecordSink) {
        // Damaged blocks are skipped and reported in the reader's `problems`.
        reader.decodeBlock(block) { event in
            let ts = event.timestamp
            if let from, ts < from { return }
            if let to, ts > to { return }
            sink(event.bytes)
        }
    }
}
