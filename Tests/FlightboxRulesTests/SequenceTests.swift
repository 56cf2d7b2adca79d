import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxRules

/// `sequence:`: ordered steps by one lineage or process within a window.
final class SequenceTests: XCTestCase {
    let t = Synth()
    let s: UInt64 = 1_000_000_000

    func chmodX(_ ts: UInt64, pid: UInt32, path: String) -> [UInt8] {
        PrivilegeRecord.encode(ts: ts, pid: pid, tid: pid, ret: 0, nr: 90, op: 9, args: [0o755, 0, 0, 0], uid: 0, euid: 0, oldUid: 0, oldEuid: 0,
                               str: Array(path.utf8))
    }

    static let dropped = """
    - rule: Dropped
      sequence:
        within: 60s
        by: lineage
        steps:
          - condition: evt.type = open and fd.write
            key: fd.written
          - condition: evt.type = chmod_exec
            key: fd.written
          - condition: evt.type = exec
            key: proc.exe
      output: "%proc.exe after %agg.count steps"
      priority: warning
    """

    /// A shell (pid 200, from the snapshot) whose children write, chmod and run a file.
    func attack(write: UInt64 = 10, chmod: UInt64 = 11, run: UInt64 = 12, path: String = "/tmp/x", runPath: String = "/tmp/x") -> [[UInt8]] {
        [
            t.fork(write * s - 1, parent: 200, child: 300, comm: "bash"),
            t.exec(write * s, pid: 300, ppid: 200, comm: "curl", exe: "/usr/bin/curl", argv: ["curl"]),
            t.open(write * s + 1, pid: 300, path: path, flags: 0o1101),
            t.fork(chmod * s - 1, parent: 200, child: 301, comm: "bash"),
            chmodX(chmod * s, pid: 301, path: path),
            t.fork(run * s - 1, parent: 200, child: 302, comm: "bash"),
            t.exec(run * s, pid: 302, ppid: 200, comm: "x", exe: runPath, argv: [runPath]),
        ]
    }

    var snapshot: ProcessSnapshot {
        ProcessSnapshot(timestamp: 0, processes: [
            ProcessRecord(pid: 1, ppid: 0, uid: 0, comm: "systemd", exe: "/usr/lib/systemd/systemd", argv: ["/sbin/init"]),
            ProcessRecord(pid: 200, ppid: 1, uid: 1000, comm: "bash", exe: "/usr/bin/bash", argv: ["-bash"]),
            ProcessRecord(pid: 500, ppid: 1, uid: 0, comm: "bash", exe: "/usr/bin/bash", argv: ["-bash"]),
        ])
    }

    /// Each match: its output and the steps' sequence numbers.
    func run(_ yaml: String, _ records: [[UInt8]]) throws -> [String] {
        let set = try RuleSet(sources: [RuleSource(name: "t.yaml", text: yaml)])
        let engine = RuleEngine(rules: set, snapshot: snapshot)
        var out: [String] = []
        for (i, r) in records.enumerated() {
            r.withUnsafeBytes {
                engine.process(Event.validated($0, sequence: UInt64(i))!) { rule, input, m in
                    out.append(rule.render(input, m) + " " + (m?.steps?.map { "\($0.seq):\($0.kind.name)" } ?? []).joined(separator: ","))
                }
            }
        }
        return out
    }

    func testThreeStepsByOneLineageWithEveryStepInTheEvidence() throws {
        XCTAssertEqual(try run(SequenceTests.dropped, attack()), ["/tmp/x after 3 steps 2:open,4:chmod_exec,6:exec"])
    }

    func testOutOfOrderOrTooLateOrAnotherFileIsNothing() throws {
        // Run before the chmod: the steps are ordered.
        let a = attack()
        XCTAssertEqual(try run(SequenceTests.dropped, Array(a[0..<3]) + Array(a[5..<7]) + Array(a[3..<5])), [])
        // Run 61 s after the write: outside the window.
        XCTAssertEqual(try run(SequenceTests.dropped, attack(write: 10, chmod: 11, run: 71)), [])
        // Another file run.
        XCTAssertEqual(try run(SequenceTests.dropped, attack(runPath: "/tmp/y")), [])
        // A relative path written, the absolute one run: the same file.
        XCTAssertEqual(try run(SequenceTests.dropped, attack(path: "x", runPath: "/tmp/x")).count, 1)
    }

    func testAnotherLineageDoesNotContinueASequence() throws {
        var recs = Array(attack().prefix(5))
        // The run is by a child of another shell (pid 500).
        recs += [t.fork(12 * s - 1, parent: 500, child: 302, comm: "bash"), t.exec(12 * s, pid: 302, ppid: 500, comm: "x", exe: "/tmp/x", argv: ["/tmp/x"])]
        XCTAssertEqual(try run(SequenceTests.dropped, recs), [])
        // by: process: the three steps must be one pid.
        let byProcess = SequenceTests.dropped.replacingOccurrences(of: "by: lineage", with: "by: process")
        XCTAssertEqual(try run(byProcess, attack()), [])
        let one: [[UInt8]] = [
            t.open(1 * s, pid: 500, path: "/tmp/z", flags: 0o101), chmodX(2 * s, pid: 500, path: "/tmp/z"),
            t.exec(3 * s, pid: 500, ppid: 1, comm: "z", exe: "/tmp/z", argv: ["/tmp/z"]),
        ]
        XCTAssertEqual(try run(byProcess, one), ["/tmp/z after 3 steps 0:open,1:chmod_exec,2:exec"])
    }

    func testAStepWithoutAKeyAndHostileTimestamps() throws {
        let yaml = """
        - rule: Write then connect
          condition: proc.name != curl
          sequence:
            within: 5s
            steps: [evt.type = open and fd.write, evt.type = connect]
          output: "%proc.name"
          priority: notice
        """
        func connect(_ ts: UInt64, pid: UInt32) -> [UInt8] {
            TCPRecord.encode(ts: ts, pid: pid, tid: pid, daddr: [10, 0, 0, 9] + [UInt8](repeating: 0, count: 12), dport: 443, family: 2, kind: 1, oldstate: 7, newstate: 2)
        }
        XCTAssertEqual(try run(yaml, [t.open(1 * s, pid: 500, path: "/a", flags: 1), connect(2 * s, pid: 500)]), ["bash 0:open,1:connect"])
        // The filter applies to every step.
        XCTAssertEqual(try run(yaml, [t.exec(1, pid: 500, ppid: 1, comm: "curl", exe: "/usr/bin/curl", argv: ["curl"]),
                                      t.open(1 * s, pid: 500, path: "/a", flags: 1), connect(2 * s, pid: 500)]), [])
        // A later step stamped before the first, or near 2^64: no match, no trap.
        XCTAssertEqual(try run(yaml, [t.open(5 * s, pid: 500, path: "/a", flags: 1), connect(1 * s, pid: 500)]), [])
        XCTAssertEqual(try run(yaml, [t.open(.max - 1, pid: 500, path: "/a", flags: 1), connect(.max, pid: 500), connect(0, pid: 500)]), ["bash 0:open,1:connect"])
    }

    /// A flood of first steps: the table stays at its bound, the oldest go,
    /// and a sequence started after the flood still completes.
    func testBoundedStateEvictsTheOldest() throws {
        let set = try RuleSet(sources: [RuleSource(name: "t.yaml", text: SequenceTests.dropped)])
        let engine = RuleEngine(rules: set, snapshot: snapshot)
        let sq = try XCTUnwrap(engine.rules[0].sequence)
        var n: UInt64 = 0
        func feed(_ r: [UInt8]) { r.withUnsafeBytes { engine.process(Event.validated($0, sequence: n)!) { _, _, _ in } }; n += 1 }
        for k in 0..<(StepSequence.maxPartials + 10) { feed(t.open(s + UInt64(k), pid: 200, path: "/tmp/f\(k)", flags: 0o101)) }
        XCTAssertLessThanOrEqual(sq.count, StepSequence.maxPartials)
        XCTAssertEqual(sq.evicted, UInt64(StepSequence.maxPartials / 16))
        func bucket(_ name: String) -> UInt64 { Array(name.utf8).withUnsafeBytes { StepSequence.bucket($0) } }
        XCTAssertNil(sq.partials[bucket("f0")], "the oldest went")
        XCTAssertNil(sq.partials[bucket("f255")])
        XCTAssertNotNil(sq.partials[bucket("f256")])
        XCTAssertNotNil(sq.partials[bucket("f\(StepSequence.maxPartials + 9)")])
        // Expired at a tick.
        engine.expire(now: 100 * s)
        XCTAssertEqual(sq.count, 0)
        XCTAssertTrue(sq.partials.isEmpty)
    }

    /// A first step repeated (a file written again, then made executable)
    /// refreshes its partial: one waits, and the evidence has the latest.
    func testARepeatedFirstStepRefreshesItsPartial() throws {
        let set = try RuleSet(sources: [RuleSource(name: "t.yaml", text: SequenceTests.dropped)])
        let engine = RuleEngine(rules: set, snapshot: snapshot)
        var out: [String] = []
        let recs = [t.open(1 * s, pid: 200, path: "/tmp/x", flags: 0o101), t.open(2 * s, pid: 200, path: "/tmp/x", flags: 0o1), chmodX(3 * s, pid: 200, path: "/tmp/x"),
                    t.exec(4 * s, pid: 200, ppid: 1, comm: "x", exe: "/tmp/x", argv: ["/tmp/x"])]
        for (n, r) in recs.enumerated() {
            r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(n))!) { _, _, m in out.append((m?.steps ?? []).map { "\($0.seq)" }.joined(separator: ",")) } }
            if n == 1 { XCTAssertEqual(engine.rules[0].sequence?.count, 1) }
        }
        XCTAssertEqual(out, ["1,2,3"])
    }

    func testPathKeys() {
        func same(_ a: String, _ b: String) -> Bool { Array(a.utf8).withUnsafeBytes { StepSequence.sameKey($0, Array(b.utf8)) } }
        XCTAssertTrue(same("/tmp/x", "/tmp/x"))
        XCTAssertTrue(same("./x", "/tmp/x"))
        XCTAssertTrue(same("x", "/tmp/x"))
        XCTAssertTrue(same("/tmp/x", "./x"))
        XCTAssertTrue(same("d/x", "/tmp/d/x"))
        XCTAssertFalse(same("/tmp/xx", "x"))
        XCTAssertFalse(same("/tmp/x", "/var/x"))
        XCTAssertFalse(same("", "/tmp/x"))
    }

    func testErrorsHaveFileLineAndColumn() {
        func error(_ yaml: String) -> String? {
            do { _ = try RuleSet(sources: [RuleSource(name: "t.yaml", text: yaml)]); return nil } catch { return error.description }
        }
        let head = "- rule: R\n  output: x\n  priority: info\n  sequence:\n"
        XCTAssertEqual(error(head + "    within: 1m\n    steps: [evt.type = open, evt.type = exex]\n"),
                       "t.yaml:6:41: unknown event type 'exex'; known: " + SecurityEventKind.allCases.map(\.name).joined(separator: ", "))
        XCTAssertEqual(error(head + "    within: 1m\n    steps:\n      - {condition: evt.type = open, key: fd.name}\n      - condition: evt.type = exec and fd.nme = x\n        key: proc.exe\n"),
                       "t.yaml:8:40: unknown field 'fd.nme' (fields of that class include 'fd.name')")
        XCTAssertEqual(error(head + "    within: 1m\n    steps: [evt.type = open]\n"), "t.yaml:6:12: sequence: steps: a list of 2 to 8 conditions")
        XCTAssertEqual(error(head + "    steps: [evt.type = open, evt.type = exec]\n"), "t.yaml:5:5: rule 'R': sequence needs 'within' and 'steps'")
        XCTAssertEqual(error(head + "    within: 1m\n    by: parent\n    steps: [evt.type = open, evt.type = exec]\n"), "t.yaml:6:9: sequence: by is lineage or process")
        XCTAssertEqual(error(head + "    within: 1m\n    steps:\n      - {condition: evt.type = open, key: fd.name}\n      - evt.type = exec\n"),
                       "t.yaml:7:7: rule 'R': sequence: give every step a key, or none")
        XCTAssertEqual(error(head + "    within: 1m\n    steps:\n      - {condition: evt.type = open, key: fd.write}\n      - {condition: evt.type = exec, key: proc.exe}\n"),
                       "t.yaml:7:43: sequence: key: 'fd.write' must be a string or a number")
        XCTAssertEqual(error("- rule: R\n  output: x\n  priority: info\n"), "t.yaml:1:3: rule 'R': needs 'condition'")
    }
}
