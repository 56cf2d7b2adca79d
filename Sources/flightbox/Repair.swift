import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxEvents
import FlightboxFormat

/// `flightbox repair FILE`: a cleanly closed copy of a damaged or unfinished
/// trace, holding every record that can still be read, with its index rebuilt.
struct Repair: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Write a cleanly closed copy of a damaged or unfinished trace, index rebuilt.")

    @Argument(help: "The trace to repair (not modified).") var file: String
    @Option(name: .shortAndLong, help: "Where to write the copy (default: FILE.repaired.fbt).") var output: String?

    func run() throws {
        let out = output ?? (file.hasSuffix(".fbt") ? String(file.dropLast(4)) : file) + ".repaired.fbt"
        // One file under two names (./a.fbt, a symlink, a hard link) is still the input.
        if let input = FileIdentity(path: file), input == FileIdentity(path: out) {
            throw fail("repair writes a copy: \(out) is the input \(file); choose another output with -o", code: 2)
        }
        do { try OutputFile.check(path: out) } catch let e as TraceError { throw fail(e.description) }
        let reader = try openTrace(file)
        let codec = reader.metadata.capture["codec"]?.stringValue.flatMap(Codec.init(name:)) ?? .zstd
        let writer: TraceWriter
        do {
            // The copy appears only when complete, replacing whatever was at `out` in one rename(2).
            // The reader hands over records in this build's layout: the copy's
            // schema must say so, keeping the file's syscall numbering.
            var metadata = reader.metadata
            metadata.schema = EventSchema.json(syscallTable: SyscallArch(schema: reader.metadata.schema, machine: reader.metadata.machine))
            writer = try TraceWriter(path: out, publish: .whenClosed, codec: codec == .none ? .zstd : codec, metadata: metadata,
                                     snapshot: reader.snapshot ?? ProcessSnapshot(timestamp: reader.metadata.clockNs, processes: []))
        } catch let e as TraceError { throw fail(e.description) }
        var kept: UInt64 = 0
        do {
            // Block by block, keeping sequence numbers: what was lost stays a visible gap.
            // Each record keeps its own number (the reader gives every number
            // once): where numbers jump, the writer leaves the gap visible.
            let progress = Progress(label: "repair", total: reader.eventCount)
            defer { progress.done() }
            for entry in reader.eventBlocks.sorted(by: { ($0.firstSequence, $0.offset) < ($1.firstSequence, $1.offset) }) {
                var failure: Error?
                reader.decodeBlock(entry) { e in
                    guard failure == nil else { return }
                    progress.step()
                    do {
                        if e.sequence != writer.nextSequence { try writer.skip(toSequence: e.sequence) }
                        try writer.append(e.bytes)
                        kept += 1
                    } catch { failure = error }
                }
                if let failure { throw failure }
                try writer.flush()
            }
            try writer.close()
        } catch let e as TraceError { throw fail(e.description) }
        let missing = reader.sequenceGaps.reduce(0) { $0 &+ $1.missing } &+ (reader.eventCount > kept ? reader.eventCount - kept : 0)
        reportProblems(reader)
        print("repaired \(file) -> \(out): \(kept) events in \(writer.eventBlocks) blocks, closed cleanly with an index; \(missing) events could not be recovered")
    }
}
