import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif

@main
struct Flightbox: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flightbox",
        abstract: "A flight recorder for Linux: kernel events via eBPF into an indexed trace, with detectors live and on replay.",
        version: "0.1.0",
        subcommands: [Record.self, Flight.self, Dump.self, Inspect.self, Events.self, Replay.self, Repair.self, Cut.self, Export.self, Report.self, FixtureTest.self, Detectors.self, Bench.self]
    )

    /// ArgumentParser's own loop, except that a usage error (a value it cannot
    /// parse, a failed validate(), a ValidationError from run()) ends as every
    /// other failure does: one line on stderr, and exit code 2.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            let text = message(for: error)
            // Help and --version, and failures that fail() has already reported.
            guard code != .success, let line = text.split(separator: "\n").first, !line.isEmpty else { exit(withError: error) }
            FileHandleStderr.write("flightbox: \(line)\n")
            Glibc.exit(code == .validationFailure ? 2 : code.rawValue)
        }
    }
}
