import XCTest
import FlightboxDetectors
import FlightboxEvents
@testable import FlightboxConfig

final class FixtureExpectationTests: XCTestCase {
    func parse(_ text: String) throws(ConfigError) -> FixtureExpectation { try FixtureExpectation.parse(text, file: "expect.yaml") }

    func finding(_ detector: String = "syscall-latency", _ severity: Severity = .warning, pid: UInt32 = 7, comm: String = "app",
                 evidence: JSON = .object([("syscall", .string("pwrite64")), ("latency_ns", .uint(145_372_452)), ("ratio", .double(0.762)),
                                           ("hogs", .array([.object([("pid", .uint(9))])]))])) -> Finding {
        Finding(ts: 1_851_412_812_445, detector: detector, severity: severity, pid: pid, tid: pid, comm: comm, summary: "pwrite64 took 145ms", evidence: evidence)
    }

    func failure(_ text: String) -> String {
        do { _ = try parse(text); return "parsed" } catch { return "\(error.line ?? 0):\(error.column ?? 0): \(error.reason)" }
    }

    func testPresentPatternsMatchWithTolerances() throws {
        let x = try parse("""
        findings:
          - detector: syscall-latency
            severity: warning
            comm: app
            pid: 7
            summary: took 145ms
            count: 1
            evidence:
              syscall: pwrite64
              latency_ns: { approx: 140ms, tolerance: 5% }
              ratio: { min: 0.5, max: 0.8 }
              hogs: { 0: { pid: 9 } }
        others: fail
        """)
        XCTAssertEqual(x.problems([finding()]), [])
        // 140 ms ± 5% is 133–147 ms: 150 ms is out, and the field is named.
        let off = finding(evidence: .object([("syscall", .string("pwrite64")), ("latency_ns", .uint(150_000_000)), ("ratio", .double(0.762)),
                                              ("hogs", .array([.object([("pid", .uint(9))])]))]))
        let problems = x.problems([off])
        XCTAssertEqual(problems.count, 2, "\(problems)")  // the count, and the finding nothing claims
        XCTAssertTrue(problems[0].hasPrefix("expected 1 finding matching detector=syscall-latency"), problems[0])
        XCTAssertTrue(problems[0].contains("differs: evidence.latency_ns: expected 140000000 ±5%, came 150000000"), problems[0])
        XCTAssertTrue(problems[1].hasPrefix("unexpected (others: fail): {\"ts_ns\":1851412812445"), problems[1])
        // Without a count, one match is enough and a second is fine.
        let loose = try parse("findings:\n  - detector: syscall-latency\n")
        XCTAssertEqual(loose.problems([finding(), finding()]), [])
        XCTAssertEqual(loose.problems([]), ["missing: detector=syscall-latency (expect.yaml:2)\n    came: no findings"])
    }

    func testIntegersCompareExactlyPastADoublesPrecision() throws {
        let x = try parse("findings:\n  - ts_ns: 1851412812445\n    evidence: { latency_ns: 145372452 }\n")
        XCTAssertEqual(x.problems([finding()]), [])
        let y = try parse("findings:\n  - ts_ns: 1851412812446\n")
        XCTAssertEqual(y.problems([finding()]).count, 1)
        let z = try parse("findings:\n  - evidence: { no_such: 1 }\n")
        XCTAssertTrue(z.problems([finding()])[0].contains("differs: evidence.no_such: expected 1, came nothing (no such field)"))
    }

    func testAbsentPatterns() throws {
        let x = try parse("absent:\n  - above: info\n  - detector: scheduling\n")
        XCTAssertEqual(x.problems([finding("memory", .info)]), [])
        XCTAssertEqual(x.problems([finding("memory", .warning)]).count, 1)
        XCTAssertTrue(x.problems([finding("scheduling", .info)])[0].hasPrefix("must not appear: detector=scheduling (expect.yaml:3)\n    came: {"))
        let none = try parse("absent:\n  - above: none\n")
        XCTAssertEqual(none.problems([]), [])
        XCTAssertEqual(none.problems([finding("memory", .info)]).count, 1)
    }

    func testErrorsNameLineColumnAndReason() {
        XCTAssertEqual(failure("finding:\n  - detector: x\n"), "1:1: unknown top-level key 'finding' (did you mean 'findings'?); known: findings, absent, others, golden")
        XCTAssertEqual(failure("findings:\n  - severity: high\n"), "2:15: findings.severity: expected info, warning or critical, found 'high'")
        XCTAssertEqual(failure("findings:\n  - evidence: { x: { approx: 5 } }\n"), "2:20: findings.evidence.x: approx needs a tolerance (e.g. 10% or 5ms)")
        XCTAssertEqual(failure("absent:\n  - count: 1\n"), "2:5: absent.count: only `findings` entries have a count (absent means none)")
        XCTAssertEqual(failure("findings:\n  - evidence: { x: { min: fast } }\n"), "2:27: findings.evidence.x.min: expected a number or a duration, found 'fast'")
        XCTAssertEqual(failure("others: maybe\n"), "1:9: others: expected fail or allow, found 'maybe'")
        XCTAssertEqual(failure("findings: [\n"), failure("findings: [\n"))
        XCTAssertTrue(failure("findings: [\n").contains("malformed YAML"))
    }
}
