import ArgumentParser
import Dispatch
#if canImport(Glibc)
import Glibc
#endif
import FlightboxConfig
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat
import FlightboxRules

/// `flightbox test [DIR|FIXTURE]`: replays fixtures (folders holding trace.fbt)
/// and checks their findings against what the fixture claims: the exact golden
/// lines of expected-findings.jsonl, the patterns of expect.yaml, or both.
struct FixtureTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "test",
        abstract: "Replay fixture traces and check their findings against the fixtures' expectations.",
        discussion: """
        A fixture is a folder with trace.fbt and at least one expectation: expected-findings.jsonl \
        (the findings, byte for byte) and/or expect.yaml (findings that must appear, with tolerances, \
        and findings that must not; see fixtures/README.md). An optional config.yaml tunes its detectors.
        """
    )

    @Argument(help: "A folder of fixtures, or one fixture (a folder holding trace.fbt).") var path: String = "fixtures"
    @Option(help: "Detector configuration file (YAML) for every fixture, instead of each fixture's config.yaml or its trace's stored configuration.") var config: String?
    @Option(help: "Also write the results as JUnit XML to this file.") var junit: String?
    @Flag(help: "Rewrite expected-findings.jsonl with the findings that came, showing the changes (expect.yaml, a claim written by hand, is never rewritten).") var update = false
    @Option(help: "Fixtures replayed at once (default: one per CPU).") var jobs: Int?
    @Option(name: .customLong("rules"), help: ArgumentHelp("Security rules file (YAML, repeatable) for every fixture, over the built-in rules, instead of a fixture's rules.yaml or its trace's stored rules.", valueName: "file"))
    var rules: [String] = []

    func validate() throws {
        if let jobs { try checkRange(jobs, 1...1024, flag: "--jobs") }
    }

    func run() throws {
        let fileConfig = try config.map(loadDetectorConfiguration)
        let ruleSources = rules.isEmpty ? nil : try loadRuleSources(rules, over: fileConfig)
        let fixtures = try discoverFixtures(path)
        let started = monotonicSeconds()
        let results = runInParallel(count: fixtures.count, jobs: jobs ?? Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) { i in
            FixtureRun(name: fixtures[i].name, folder: fixtures[i].folder, config: fileConfig, rules: ruleSources, update: update).run()
        }
        let elapsed = monotonicSeconds() - started
        // In name order whatever finished first: the output is the same on every run.
        for r in results { print(r.report, terminator: "") }
        let failed = results.filter { !$0.passed }.count
        print("\(results.count - failed) passed, \(failed) failed")
        if let junit {
            guard writeFile(junit, junitXML(results, seconds: elapsed)) else {
                throw fail("cannot write \(junit): \(String(cString: strerror(errno)))")
            }
        }
        if failed > 0 { throw ExitCode(1) }
    }
}

/// The fixtures under `path` in name order, or `path` itself when it is one.
func discoverFixtures(_ path: String) throws -> [(name: String, folder: String)] {
    var path = path
    while path.count > 1, path.hasSuffix("/") { path.removeLast() }
    if access("\(path)/trace.fbt", F_OK) == 0 {
        return [(String(path.split(separator: "/").last ?? Substring(path)), path)]
    }
    guard let dir = opendir(path) else { throw fail("cannot open \(path): \(String(cString: strerror(errno)))") }
    var names: [String] = []
    while let ent = readdir(dir) {
        let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        if !name.hasPrefix("."), access("\(path)/\(name)/trace.fbt", F_OK) == 0 { names.append(name) }
    }
    closedir(dir)
    guard !names.isEmpty else { throw fail("no fixtures in \(path) (folders holding trace.fbt)") }
    return names.sorted().map { ($0, "\(path)/\($0)") }
}

/// Calls `body` for 0..<count on up to `jobs` threads; results in index order.
func runInParallel<T>(count: Int, jobs: Int, _ body: @escaping (Int) -> T) -> [T] {
    let work = ParallelWork(count: count, body: body)
    DispatchQueue.concurrentPerform(iterations: max(1, min(jobs, count))) { _ in work.drain() }
    return work.results()
}

/// The slots of a parallel run: each worker takes the next index from a
/// locked counter, so every slot is written by one worker only, and read
/// after concurrentPerform has joined them all.
final class ParallelWork<T>: @unchecked Sendable {
    private let slots: UnsafeMutableBufferPointer<T?>
    private let body: (Int) -> T
    private let next = TicketCounter()

    init(count: Int, body: @escaping (Int) -> T) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: nil)
        self.body = body
    }

    deinit {
        slots.deinitialize()
        slots.deallocate()
    }

    func drain() {
        while true {
            let i = next.take()
            guard i < slots.count else { return }
            slots[i] = body(i)
        }
    }

    func results() -> [T] { slots.map { $0! } }
}

/// A shared counter handing out each number once.
final class TicketCounter: @unchecked Sendable {
    private var value = 0
    private var lock = pthread_mutex_t()
    init() { pthread_mutex_init(&lock, nil) }
    deinit { pthread_mutex_destroy(&lock) }
    func take() -> Int {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        value += 1
        return value - 1
    }
}

/// One fixture's replay and verdict.
struct FixtureRun {
    let name: String
    let folder: String
    let config: DetectorConfiguration?
    /// --rules, over the built-in rules (nil: the fixture's rules.yaml, else the trace's stored rules).
    let rules: [RuleSource]?
    let update: Bool

    struct Result {
        var name: String
        var passed: Bool
        var summary: String
        /// Each problem a few lines: what was expected, what came, what differed.
        var problems: [String]
        /// What --update changed.
        var changes: [String]
        var seconds: Double
        var report: String {
            var s = "\(passed ? "PASS" : "FAIL") \(name) (\(summary))\n"
            for p in changes + problems { s += "  " + p.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n  ") + "\n" }
            return s
        }
    }

    func run() -> Result {
        let started = monotonicSeconds()
        var result = Result(name: name, passed: false, summary: "", problems: [], changes: [], seconds: 0)
        do {
            try check(&result)
        } catch {
            result.problems.append("\(error)")
        }
        result.passed = result.problems.isEmpty
        result.seconds = monotonicSeconds() - started
        return result
    }

    private func check(_ result: inout Result) throws {
        let goldenPath = "\(folder)/expected-findings.jsonl"
        let expectPath = "\(folder)/expect.yaml"
        let expectation = access(expectPath, F_OK) == 0 ? try FixtureExpectation.load(path: expectPath) : nil
        let goldenText = readText(goldenPath)
        // A fixture's own config.yaml stands where --config would.
        var configuration = config
        if configuration == nil, access("\(folder)/config.yaml", F_OK) == 0 { configuration = try ConfigFile.load(path: "\(folder)/config.yaml") }
        let reader = try TraceReader(path: "\(folder)/trace.fbt")
        if configuration == nil, let stored = reader.metadata.capture["detectors"] {
            do { configuration = try DetectorConfiguration(json: stored) } catch {
                throw FixtureFailure("the detector configuration stored in the trace is unusable (\(error)); pass --config FILE")
            }
        }
        let arch = SyscallArch(schema: reader.metadata.schema, machine: reader.metadata.machine)
        // A fixture's own rules.yaml stands where --rules would.
        let ownRules = rules == nil && access("\(folder)/rules.yaml", F_OK) == 0 ? try loadRuleSources(["\(folder)/rules.yaml"]) : nil
        let engine = DetectorEngine(detectors: try withRules(rules ?? ownRules, configuration ?? .defaults).makeDetectors(), snapshot: reader.snapshot, arch: arch,
                                    clock: TraceClock(reader.metadata))
        reader.forEachEvent { engine.process($0) }
        engine.finish()
        let findings = engine.findings
        let actual = findings.map(\.jsonLine)
        result.summary = "\(engine.eventsSeen) events, \(actual.count) findings"
        for p in reader.problems { result.problems.append("trace problem: \(p)") }

        let useGolden = expectation?.golden ?? true
        if goldenText == nil, expectation == nil, !update {
            result.problems.append("no expectation: add expect.yaml or expected-findings.jsonl (`flightbox test --update \(folder)` writes the findings that came)")
        }
        if useGolden, goldenText != nil || (update && expectation == nil) {
            let expected = (goldenText ?? "").split(separator: "\n").map(String.init)
            if actual != expected {
                let diff = goldenDiff(expected: expected, actual: actual)
                if update {
                    let text = actual.map { $0 + "\n" }.joined()
                    guard writeFile(goldenPath, text) else { throw FixtureFailure("cannot write \(goldenPath): \(String(cString: strerror(errno)))") }
                    result.changes.append("updated expected-findings.jsonl:" + diff.map { "\n    " + $0 }.joined())
                } else {
                    result.problems.append("expected-findings.jsonl differs (- expected, + came):" + diff.map { "\n    " + $0 }.joined())
                }
            }
        }
        if let expectation {
            let problems = expectation.problems(findings)
            if !problems.isEmpty { result.problems.append("expect.yaml:" + problems.map { "\n  " + $0.split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\n  ") }.joined()) }
        }
    }
}

struct FixtureFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// Golden lines that went and came; a line that went and one that came from
/// the same detector and process are paired, with the fields that differ.
func goldenDiff(expected: [String], actual: [String]) -> [String] {
    let gone = expected.filter { !actual.contains($0) }
    var came = actual.filter { !expected.contains($0) }
    var out: [String] = []
    for line in gone {
        out.append("- \(line)")
        guard let old = try? JSONParser.parse(line) else { continue }
        if let i = came.firstIndex(where: { c in
            guard let new = try? JSONParser.parse(c) else { return false }
            return new["detector"] == old["detector"] && new["pid"] == old["pid"]
        }) {
            out.append("+ \(came[i])")
            if let new = try? JSONParser.parse(came[i]) {
                for d in jsonDifferences(old, new, path: "") { out.append("    differs: \(d)") }
            }
            came.remove(at: i)
        }
    }
    for line in came { out.append("+ \(line)") }
    if out.isEmpty, expected != actual { out.append("(the same findings, in another order)") }
    return out
}

/// Paths where two JSON values differ, "evidence.latency_ns: 145372452 -> 150000000".
func jsonDifferences(_ a: JSON, _ b: JSON, path: String) -> [String] {
    if case .object(let x) = a, case .object(let y) = b {
        var out: [String] = []
        let keys = x.map(\.0) + y.map(\.0).filter { k in !x.contains { $0.0 == k } }
        for k in keys {
            let p = path.isEmpty ? k : "\(path).\(k)"
            switch (a[k], b[k]) {
            case let (u?, v?): out += jsonDifferences(u, v, path: p)
            case let (u?, nil): out.append("\(p): \(u.serialized()) -> (gone)")
            case let (nil, v?): out.append("\(p): (none) -> \(v.serialized())")
            default: break
            }
        }
        return out
    }
    return a == b ? [] : ["\(path): \(a.serialized()) -> \(b.serialized())"]
}

/// JUnit XML as CI systems read it: one testsuite, one testcase per fixture.
func junitXML(_ results: [FixtureRun.Result], seconds: Double) -> String {
    let failures = results.filter { !$0.passed }.count
    var s = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    s += "<testsuites name=\"flightbox test\" tests=\"\(results.count)\" failures=\"\(failures)\" errors=\"0\" time=\"\(secondsText(seconds))\">\n"
    s += "  <testsuite name=\"fixtures\" tests=\"\(results.count)\" failures=\"\(failures)\" errors=\"0\" skipped=\"0\" time=\"\(secondsText(seconds))\">\n"
    for r in results {
        s += "    <testcase classname=\"flightbox.fixtures\" name=\"\(xmlEscape(r.name))\" time=\"\(secondsText(r.seconds))\">\n"
        if !r.passed {
            let first = r.problems.first.map { String($0.prefix(while: { $0 != "\n" })) } ?? "failed"
            s += "      <failure type=\"FindingsMismatch\" message=\"\(xmlEscape(first))\">\(xmlEscape(r.problems.joined(separator: "\n")))</failure>\n"
        }
        s += "      <system-out>\(xmlEscape(([r.summary] + r.changes).joined(separator: "\n")))</system-out>\n"
        s += "    </testcase>\n"
    }
    s += "  </testsuite>\n</testsuites>\n"
    return s
}

func secondsText(_ s: Double) -> String {
    let ms = Int((s * 1000).rounded())
    let frac = String(ms % 1000)
    return "\(ms / 1000)." + String(repeating: "0", count: 3 - frac.count) + frac
}

/// Text as XML character data or an attribute value; characters XML 1.0
/// cannot hold (controls other than tab and newlines) become U+FFFD.
func xmlEscape(_ s: String) -> String {
    var out = ""
    out.reserveCapacity(s.utf8.count)
    for u in s.unicodeScalars {
        switch u {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "\t", "\n", "\r": out.unicodeScalars.append(u)
        default:
            if u.value < 0x20 || u.value == 0xFFFE || u.value == 0xFFFF { out += "\u{FFFD}" } else { out.unicodeScalars.append(u) }
        }
    }
    return out
}

func monotonicSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

/// Writes `text` to `path` through a temporary file and rename(2): a reader
/// never sees half of it.
func writeFile(_ path: String, _ text: String) -> Bool {
    let tmp = "\(path).tmp\(getpid())"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return false }
    var ok = true
    var bytes = Array(text.utf8)
    var off = 0
    while off < bytes.count {
        let n = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
        if n < 0 { if errno == EINTR { continue }; ok = false; break }
        off += n
    }
    if close(fd) != 0 { ok = false }
    if ok, rename(tmp, path) == 0 { return true }
    let saved = errno
    unlink(tmp)
    errno = saved
    return false
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
