import XCTest
import FlightboxEvents

/// `flightbox test` as CI runs it: claims, diffs, JUnit, --update, --config.
final class FixtureTestCommandTests: XCTestCase {
    /// A scratch folder of fixtures: copies of latency-outlier's trace under `names`.
    func fixtures(_ names: [String], golden: String? = nil, expect: String? = nil) throws -> String {
        let root = try scratchDirectory("fixtures-\(UUID().uuidString.prefix(8))")
        for name in names {
            try FileManager.default.createDirectory(atPath: "\(root)/\(name)", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: Tool.packageRoot + "/fixtures/latency-outlier/trace.fbt", toPath: "\(root)/\(name)/trace.fbt")
            if let golden { try golden.write(toFile: "\(root)/\(name)/expected-findings.jsonl", atomically: true, encoding: .utf8) }
            if let expect { try expect.write(toFile: "\(root)/\(name)/expect.yaml", atomically: true, encoding: .utf8) }
        }
        return root
    }

    var goldenLine: String { get throws { try String(contentsOfFile: Tool.packageRoot + "/fixtures/latency-outlier/expected-findings.jsonl", encoding: .utf8) } }

    /// A broken claim fails with what was expected, what came and which field
    /// differed, exits 1, and the JUnit file says the same to a real XML parser.
    func testFailedClaimIsADiffAndAJUnitFailure() throws {
        let root = try fixtures(["a-good", "b-bad"], golden: nil, expect: "findings:\n  - detector: syscall-latency\n")
        try """
        findings:
          - detector: syscall-latency
            evidence:
              syscall: pwrite64
              latency_ns: { approx: 100ms, tolerance: 10% }
        absent:
          - above: info
        """.write(toFile: "\(root)/b-bad/expect.yaml", atomically: true, encoding: .utf8)
        let junit = root + "/junit.xml"
        let r = try Tool.flightbox("test", root, "--junit", junit)
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.hasPrefix("PASS a-good (1085 events, 1 findings)\nFAIL b-bad (1085 events, 1 findings)\n  expect.yaml:\n    missing: detector=syscall-latency evidence.syscall=pwrite64 evidence.latency_ns=100000000 ±10% (\(root)/b-bad/expect.yaml:2)\n        closest: {\"ts_ns\":1851412812445,"), r.stdout)
        XCTAssertTrue(r.stdout.contains("\n          differs: evidence.latency_ns: expected 100000000 ±10%, came 145372452\n"), r.stdout)
        XCTAssertTrue(r.stdout.contains("\n    must not appear: severity>info (\(root)/b-bad/expect.yaml:7)\n        came: {\"ts_ns\":1851412812445,"), r.stdout)
        XCTAssertTrue(r.stdout.hasSuffix("1 passed, 1 failed\n"), r.stdout)
        let check = try Tool.run("/usr/bin/python3", ["-c", """
            import sys, xml.etree.ElementTree as ET
            root = ET.parse(sys.argv[1]).getroot()
            suite = root.find('testsuite')
            cases = suite.findall('testcase')
            print(root.tag, suite.get('tests'), suite.get('failures'), [c.get('name') for c in cases])
            for c in cases:
                f = c.find('failure')
                print(c.get('name'), float(c.get('time')) >= 0, None if f is None else f.get('message'))
                if f is not None: print('differs: evidence.latency_ns' in f.text)
            """, junit])
        XCTAssertEqual(check.status, 0, check.stderr)
        XCTAssertEqual(check.stdout, """
            testsuites 2 1 ['a-good', 'b-bad']
            a-good True None
            b-bad True expect.yaml:
            True

            """)
    }

    /// Golden lines that differ are paired by detector and process, with the
    /// fields that changed; --update rewrites them (and says how) only when asked.
    func testGoldenDiffAndUpdate() throws {
        let line = try goldenLine
        let stale = line.replacingOccurrences(of: "\"latency_ns\":145372452", with: "\"latency_ns\":145000000")
        let root = try fixtures(["one"], golden: stale)
        let r = try Tool.flightbox("test", root + "/one/")
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("  expected-findings.jsonl differs (- expected, + came):\n      - {\"ts_ns\":1851412812445"), r.stdout)
        XCTAssertTrue(r.stdout.contains("\n          differs: evidence.latency_ns: 145000000 -> 145372452\n"), r.stdout)
        XCTAssertEqual(try String(contentsOfFile: root + "/one/expected-findings.jsonl", encoding: .utf8), stale, "not rewritten without --update")
        let u = try Tool.flightbox("test", "--update", root)
        XCTAssertEqual(u.status, 0, u.stdout)
        XCTAssertTrue(u.stdout.hasPrefix("PASS one (1085 events, 1 findings)\n  updated expected-findings.jsonl:\n      - "), u.stdout)
        XCTAssertEqual(try String(contentsOfFile: root + "/one/expected-findings.jsonl", encoding: .utf8), line)
        // expect.yaml is a claim written by hand: --update leaves it, and it still fails.
        let claim = "findings:\n  - detector: memory\n"
        try claim.write(toFile: root + "/one/expect.yaml", atomically: true, encoding: .utf8)
        let v = try Tool.flightbox("test", "--update", root)
        XCTAssertEqual(v.status, 1)
        XCTAssertTrue(v.stdout.contains("missing: detector=memory"), v.stdout)
        XCTAssertEqual(try String(contentsOfFile: root + "/one/expect.yaml", encoding: .utf8), claim)
        // A fixture with no expectation at all fails until one is written.
        try FileManager.default.removeItem(atPath: root + "/one/expect.yaml")
        try FileManager.default.removeItem(atPath: root + "/one/expected-findings.jsonl")
        let w = try Tool.flightbox("test", root)
        XCTAssertEqual(w.status, 1)
        XCTAssertTrue(w.stdout.contains("no expectation: add expect.yaml or expected-findings.jsonl"), w.stdout)
    }

    /// --config tunes every fixture's detectors: with syscall-latency off the
    /// claim of latency-outlier is missing.
    func testConfigIsPassedToEveryFixture() throws {
        let root = try fixtures(["x", "y"], golden: try goldenLine)
        let config = root + "/off.yaml"
        try "detectors:\n  syscall-latency:\n    enabled: false\n".write(toFile: config, atomically: true, encoding: .utf8)
        let r = try Tool.flightbox("test", root, "--config", config)
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stdout.contains("FAIL x (1085 events, 0 findings)"), r.stdout)
        XCTAssertTrue(r.stdout.hasSuffix("0 passed, 2 failed\n"), r.stdout)
        let bad = try Tool.flightbox("test", root, "--config", root + "/missing.yaml")
        XCTAssertEqual(bad.status, 2)
    }

    /// Fixtures run in parallel, reported in name order: the output does not
    /// depend on the number of workers.
    func testParallelOutputIsDeterministic() throws {
        let serial = try Tool.flightbox("test", Tool.packageRoot + "/fixtures", "--jobs", "1")
        let parallel = try Tool.flightbox("test", Tool.packageRoot + "/fixtures", "--jobs", "8")
        XCTAssertEqual(serial.status, 0, serial.stdout)
        XCTAssertEqual(serial.stdout, parallel.stdout)
    }
}
