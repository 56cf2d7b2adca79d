import FlightboxEvents

/// A cleanly closed copy of a damaged or unfinished trace: every record that
/// can still be read, block by block in sequence order, each under its own
/// number (where numbers jump, the gap stays visible), with the index rebuilt.
/// `flightbox repair` writes it beside the input; the flight recorder writes
/// it over the segment a killed recorder left open.
public enum TraceRepair {
    public struct Result: Sendable {
        /// Records copied.
        public var kept: UInt64
        /// Records the input's numbering says are missing.
        public var missing: UInt64
        /// Event blocks written.
        public var blocks: Int
        /// The sequence number after the last record copied.
        public var nextSequence: UInt64
    }

    /// Writes the copy to `output`, where it appears only when complete
    /// (replacing what is there in one rename(2)). `copied` is called after
    /// each record (progress on a terminal).
    public static func copy(_ reader: TraceReader, to output: String, copied: () -> Void = {}) throws -> Result {
        let codec = reader.metadata.capture["codec"]?.stringValue.flatMap(Codec.init(name:)) ?? .zstd
        // The reader hands over records in this build's layout: the copy's
        // schema must say so, keeping the file's syscall numbering.
        var metadata = reader.metadata
        metadata.schema = EventSchema.json(syscallTable: SyscallArch(schema: reader.metadata.schema, machine: reader.metadata.machine))
        let writer = try TraceWriter(path: output, publish: .whenClosed, codec: codec == .none ? .zstd : codec, metadata: metadata,
                                     snapshot: reader.snapshot ?? ProcessSnapshot(timestamp: reader.metadata.clockNs, processes: []))
        // A flight segment's detector checkpoint stays with it (a killed recorder's segment is repaired in place).
        if let at = reader.checkpoint, case .success(let bytes)? = reader.readCheckpoint() { try writer.writeCheckpoint(bytes, ts: at.timestamp) }
        var kept: UInt64 = 0
        // The reader gives every number once: each record keeps its own.
        for entry in reader.eventBlocks.sorted(by: { ($0.firstSequence, $0.offset) < ($1.firstSequence, $1.offset) }) {
            var failure: Error?
            reader.decodeBlock(entry) { e in
                guard failure == nil else { return }
                do {
                    if e.sequence != writer.nextSequence { try writer.skip(toSequence: e.sequence) }
                    try writer.append(e.bytes)
                    kept += 1
                    copied()
                } catch { failure = error }
            }
            if let failure { throw failure }
            try writer.flush()
        }
        try writer.close()
        let missing = reader.sequenceGaps.reduce(0) { $0 &+ $1.missing } &+ (reader.eventCount > kept ? reader.eventCount - kept : 0)
        return Result(kept: kept, missing: missing, blocks: writer.eventBlocks, nextSequence: writer.nextSequence)
    }
}
