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
        let result: TraceRepair.Result
        // The copy appears only when complete, replacing whatever was at `out` in one rename(2).
        do {
            let progress = Progress(label: "repair", total: reader.eventCount)
            defer { progress.done() }
            result = try TraceRepair.copy(reader, to: out) { progress.step() }
        } catch let e as TraceError { throw fail(e.description) }
        reportProblems(reader)
        print("repaired \(file) -> \(out): \(result.kept) events in \(result.blocks) blocks, closed cleanly with an index; \(result.missing) events could not be recovered")
    }
}
