import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat

/// `flightbox test DIR`: replays every fixture (a folder with trace.fbt and
/// expected-findings.jsonl) and diffs the findings against the expectation.
struct FixtureTest: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "test", abstract: "Replay fixture traces and compare findings with their expectations.")

    @Argument(help: "Folder of fixtures, each a folder with trace.fbt and expected-findings.jsonl (and optionally config.yaml).") var directory: String = "fixtures"
    @Option(help: "Detector configuration file (YAML) for every fixture, instead of each fixture's config.yaml or its trace's stored configuration.") var config: String?

    func run() throws {
        let fileConfig = try config.map(loadDetectorConfiguration)
        guard let dir = opendir(directory) else { throw fail("cannot open \(directory): \(String(cString: strerror(errno)))") }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if !name.hasPrefix("."), access("\(directory)/\(name)/trace.fbt", R_OK) == 0 { names.append(name) }
        }
        closedir(dir)
        names.sort()
        guard !names.isEmpty else { throw fail("no fixtures in \(directory) (folders holding trace.fbt)") }
        var failed = 0
        for name in names {
            let base = "\(directory)/\(name)"
            let expected = (readText("\(base)/expected-findings.jsonl") ?? "").split(separator: "\n").map(String.init)
            // A fixture's own config.yaml stands where --config would.
            let own = fileConfig == nil && access("\(base)/config.yaml", F_OK) == 0 ? try loadDetectorConfiguration("\(base)/config.yaml") : nil
            let reader = try openTrace("\(base)/trace.fbt")
            let arch = SyscallArch(schema: reader.metadata.schema, machine: reader.metadata.machine)
            let configuration = try detectorConfiguration(file: fileConfig ?? own, trace: reader.metadata, path: "\(base)/trace.fbt")
            let engine = DetectorEngine(detectors: try configuration.makeDetectors(), snapshot: reader.snapshot, arch: arch,
                                        clock: TraceClock(reader.metadata))
            reader.forEachEvent { engine.process($0) }
            engine.finish()
            let actual = engine.findings.map(\.jsonLine)
            if actual == expected, reader.problems.isEmpty {
                print("PASS \(name) (\(engine.eventsSeen) events, \(actual.count) findings)")
                continue
            }
            failed += 1
            print("FAIL \(name)")
            for p in reader.problems { print("  trace problem: \(p)") }
            for line in expected where !actual.contains(line) { print("  - \(line)") }
            for line in actual where !expected.contains(line) { print("  + \(line)") }
            if Set(actual) == Set(expected), actual != expected { print("  (same findings, different order)") }
        }
        print("\(names.count - failed) passed, \(failed) failed")
        if failed > 0 { throw ExitCode(1) }
    }
}

func readText(_ path: String) -> String? {
    guard let f = fopen(path, "rb") else { return nil }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}
