import XCTest
import FlightboxEvents
import FlightboxFormat
import FlightboxRules
@testable import FlightboxDetectors

final class SecurityDetectorTests: XCTestCase {
    let s: UInt64 = 1_000_000_000

    func exec(_ ts: UInt64, pid: UInt32, ppid: UInt32, comm: String, exe: String, argv: [String], stdin: (UInt8, UInt16) = (5, 0)) -> [UInt8] {
        ExecRecord.encode(ts: ts, pid: pid, tid: pid, ppid: ppid, uid: 0, argc: UInt16(argv.count), stdinKind: stdin.0, stdoutKind: stdin.0,
                          stdinFamily: stdin.1, stdoutFamily: stdin.1, comm: comm, filename: Array(exe.utf8), argv: argv.flatMap { Array($0.utf8) + [0] })
    }
    func fork(_ ts: UInt64, parent: UInt32, child: UInt32, comm: String) -> [UInt8] {
        ForkRecord.encode(ts: ts, pid: parent, tid: parent, childPid: child, childTid: child, comm: comm)
    }
    func exit(_ ts: UInt64, pid: UInt32) -> [UInt8] { ExitRecord.encode(ts: ts, flags: exitGroupFlag, pid: pid, tid: pid) }
    func open(_ ts: UInt64, pid: UInt32, path: String) -> [UInt8] {
        FileRecord.encode(ts: ts, pid: pid, tid: pid, ret: 3, op: 1, dirfd: -100, path: Array(path.utf8))
    }

    let snapshot = ProcessSnapshot(timestamp: 0, processes: [
        ProcessRecord(pid: 1, ppid: 0, uid: 0, comm: "systemd", exe: "/usr/lib/systemd/systemd", argv: ["/sbin/init"]),
        ProcessRecord(pid: 50, ppid: 1, uid: 0, comm: "bash", exe: "/usr/bin/bash", argv: ["bash"]),
    ])

    func run(_ records: [[UInt8]], settings: DetectorSettings = SecurityDetector.spec.defaults, detector: SecurityDetector? = nil) -> [Finding] {
        let engine = DetectorEngine(detectors: [detector ?? SecurityDetector.spec.make(settings)], snapshot: snapshot)
        for (i, r) in records.enumerated() { r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(i))!) } }
        engine.finish()
        return engine.findings
    }

    /// An attacker's shell started inside the trace: reads /etc/shadow
    /// twice (one finding), then a child of it runs a reverse shell.
    var attack: [[UInt8]] {
        [
            fork(1 * s, parent: 50, child: 100, comm: "bash"),
            exec(1 * s + 1, pid: 100, ppid: 50, comm: "sh", exe: "/bin/sh", argv: ["sh", "x.sh"]),
            fork(2 * s, parent: 100, child: 101, comm: "sh"),
            exec(2 * s + 1, pid: 101, ppid: 100, comm: "cat", exe: "/usr/bin/cat", argv: ["cat", "/etc/shadow"]),
            open(2 * s + 2, pid: 101, path: "/etc/shadow"),
            open(2 * s + 3, pid: 101, path: "/etc/shadow"),
            exit(2 * s + 4, pid: 101),
            fork(3 * s, parent: 100, child: 102, comm: "sh"),
            exec(3 * s + 1, pid: 102, ppid: 100, comm: "bash", exe: "/bin/bash", argv: ["bash", "-i"], stdin: (6, 2)),
        ]
    }

    func testOneFindingPerRuleAndExecutionAndAnIncidentAfterTheWindow() {
        let f = run(attack)
        XCTAssertEqual(f.map { $0.evidence["rule"]?.stringValue ?? "" }, ["Read shadow password file", "Reverse shell", "incident"])
        XCTAssertEqual(f[0].pid, 101)
        XCTAssertEqual(f[0].evidence["mitre"], .array([.string("T1003.008")]))
        // The evidence: the exec of the process, then the event that matched, by sequence number.
        XCTAssertEqual(f[0].evidence["events"]?.arrayValue?.compactMap { $0["seq"]?.uintValue }, [3, 4])
        XCTAssertEqual(f[0].evidence["lineage"]?.arrayValue?.compactMap { $0["comm"]?.stringValue }, ["sh", "bash", "systemd"])
        XCTAssertEqual(f[0].evidence["exec_id"]?.stringValue, "\(2 * s + 1):101")
        XCTAssertEqual(f[1].severity, .critical)
        let incident = f[2]
        XCTAssertEqual(incident.severity, .critical)
        XCTAssertEqual(incident.pid, 100, "the lineage's root: the first process started in the trace")
        XCTAssertEqual(incident.evidence["steps"]?.arrayValue?.compactMap { $0["seq"]?.uintValue }, [4, 8])
        XCTAssertEqual(incident.evidence["root_exec_id"]?.stringValue, "\(1 * s + 1):100", "the image sh x.sh")
        XCTAssertTrue(incident.summary.contains("Read shadow password file -> Reverse shell"), incident.summary)
    }

    func testIncidentIsEmittedWhenTheWindowPassesNotBefore() {
        var recs = attack
        // Event time moves on: 4 min later (inside the 5 min window), then 6 min later.
        recs.append(open(240 * s, pid: 50, path: "/tmp/a"))
        let engine = DetectorEngine(detectors: [SecurityDetector.spec.make(SecurityDetector.spec.defaults)], snapshot: snapshot)
        for (i, r) in recs.enumerated() { r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(i))!) } }
        XCTAssertEqual(engine.findings.count, 2, "the incident waits for its window")
        open(400 * s, pid: 50, path: "/tmp/b").withUnsafeBytes { engine.process(Event.validated($0, sequence: 99)!) }
        XCTAssertEqual(engine.findings.last?.evidence["rule"]?.stringValue, "incident")
        engine.finish()
        XCTAssertEqual(engine.findings.count, 3, "emitted once")
    }

    func testStepsApartMoreThanTheWindowAreNoIncident() {
        var settings = SecurityDetector.spec.defaults
        XCTAssertNil(settings.set("incident_window", .duration(1_000_000_000)))
        var recs = Array(attack.prefix(7))
        recs += [fork(9 * s, parent: 100, child: 102, comm: "sh"),
                 exec(9 * s + 1, pid: 102, ppid: 100, comm: "bash", exe: "/bin/bash", argv: ["bash"], stdin: (6, 10))]
        XCTAssertEqual(run(recs, settings: settings).map { $0.evidence["rule"]?.stringValue ?? "" }, ["Read shadow password file", "Reverse shell"])
    }

    func testSeparateLineagesAreSeparate() {
        // Two shells forked by the long-running bash (from the snapshot): two roots.
        let recs = [
            fork(1 * s, parent: 50, child: 100, comm: "bash"),
            exec(1 * s + 1, pid: 100, ppid: 50, comm: "cat", exe: "/usr/bin/cat", argv: ["cat"]),
            open(1 * s + 2, pid: 100, path: "/etc/shadow"),
            fork(2 * s, parent: 50, child: 200, comm: "bash"),
            exec(2 * s + 1, pid: 200, ppid: 50, comm: "bash", exe: "/bin/bash", argv: ["bash"], stdin: (6, 2)),
        ]
        XCTAssertEqual(run(recs).map { $0.evidence["rule"]?.stringValue ?? "" }, ["Read shadow password file", "Reverse shell"])
    }

    func testPidReuseIsANewExecution() {
        let recs = [
            exec(1 * s, pid: 300, ppid: 50, comm: "cat", exe: "/usr/bin/cat", argv: ["cat"]), open(1 * s + 1, pid: 300, path: "/etc/shadow"),
            exit(1 * s + 2, pid: 300),
            exec(2 * s, pid: 300, ppid: 50, comm: "cat", exe: "/usr/bin/cat", argv: ["cat"]), open(2 * s + 1, pid: 300, path: "/etc/shadow"),
        ]
        let f = run(recs).filter { $0.evidence["rule"]?.stringValue == "Read shadow password file" }
        XCTAssertEqual(f.compactMap { $0.evidence["exec_id"]?.stringValue }, ["\(1 * s):300", "\(2 * s):300"])
    }

    func testHostileTimestampsNeitherCrashNorLoop() {
        var recs = attack
        recs.append(open(UInt64.max - 5, pid: 50, path: "/tmp/x"))
        recs.append(open(3, pid: 50, path: "/etc/shadow")) // back in time, from a snapshot process
        // Back in time inside the attacker's lineage: a step older than the
        // incident's first (a syscall record arrives at exit, stamped at entry).
        recs.append(open(5, pid: 102, path: "/etc/shadow"))
        let f = run(recs)
        XCTAssertEqual(f.filter { $0.evidence["rule"]?.stringValue == "incident" }.count, 1)
        XCTAssertEqual(f.last?.comm, "bash")
    }

    func testUserRulesRefineTheBuiltIns() throws {
        var settings = SecurityDetector.spec.defaults
        settings.rules = [DefaultRules.source, RuleSource(name: "mine.yaml", text: """
        - rule: Read shadow password file
          enabled: false
        - list: shell_binaries
          items: [fish]
          append: true
        - rule: Fish
          condition: evt.type = exec and proc.name in (shell_binaries) and proc.name = fish
          output: "%proc.name from %proc.pname"
          priority: notice
          tags: [T1059]
        """)]
        let recs = attack + [exec(4 * s, pid: 103, ppid: 100, comm: "fish", exe: "/usr/bin/fish", argv: ["fish"])]
        let f = run(recs, settings: settings)
        XCTAssertEqual(f.map { $0.evidence["rule"]?.stringValue ?? "" }, ["Reverse shell", "Fish", "incident"])
        XCTAssertEqual(f[1].severity, .info)
        XCTAssertEqual(f[1].summary, "Fish: fish from sh")
    }

    func testStoredRulesRoundTripAndABadStoredRuleIsRefused() throws {
        var c = DetectorConfiguration.defaults
        var sec = c["security"]!
        sec.rules = [DefaultRules.source, RuleSource(name: "x.yaml", text: "- rule: X\n  condition: evt.type = exec\n  output: x\n  priority: info\n")]
        c["security"] = sec
        XCTAssertEqual(try DetectorConfiguration(json: c.json), c)
        sec.rules = [RuleSource(name: "x.yaml", text: "- rule: X\n  condition: evt.type = exe\n  output: x\n  priority: info\n")]
        c["security"] = sec
        XCTAssertThrowsError(try DetectorConfiguration(json: c.json)) { e in
            XCTAssertTrue("\(e)".contains("x.yaml:2:25: unknown event type 'exe'"), "\(e)")
        }
    }

    func testObservesOnlyWhatItsRulesNeed() {
        let d = SecurityDetector(settings: SecurityDetector.spec.defaults)
        XCTAssertFalse(d.observedTypes.contains(rawType: EventType.syscall.rawValue))
        XCTAssertFalse(d.observedTypes.contains(rawType: EventType.sched.rawValue))
        XCTAssertTrue(d.observedTypes.contains(rawType: EventType.tcp.rawValue))
    }
}

extension SecurityDetectorTests {
    /// More executions than the table of reported findings holds each match
    /// a rule: a finding already reported for a live execution does not fire
    /// again, with or without the others' exits in the trace.
    func testAReportedFindingDoesNotFireAgainAfterAFlood() {
        for withExits in [true, false] {
            var recs = [open(1 * s, pid: 50, path: "/etc/shadow")]
            // A small table (the real one holds 65,536), so the test is quick.
            let d = SecurityDetector(settings: SecurityDetector.spec.defaults, maxReported: 1000)
            let n = UInt32(d.maxReported + 100)
            for k in 0..<n {
                let pid = 1000 + k, ts = 2 * s + UInt64(k) * 10
                recs.append(fork(ts, parent: 50, child: pid, comm: "bash"))
                recs.append(open(ts + 1, pid: pid, path: "/etc/shadow"))
                if withExits { recs.append(exit(ts + 2, pid: pid)) }
            }
            recs.append(open(10 * s, pid: 50, path: "/etc/shadow"))
            let f = run(recs, detector: d).filter { $0.evidence["rule"]?.stringValue == "Read shadow password file" }
            XCTAssertEqual(f.filter { $0.pid == 50 }.count, 1, "exits in the trace: \(withExits)")
            XCTAssertEqual(d.unremembered, withExits ? 0 : UInt64(n) + 1 - UInt64(d.maxReported), "the others are live: reported, not remembered")
            XCTAssertEqual(f.count, Int(n) + 1)
        }
    }

    /// An execution's entry goes at its exit: a new process that reuses the
    /// pid is a new execution and reports again.
    func testAReusedPidIsANewExecution() {
        let f = run([
            fork(1 * s, parent: 50, child: 300, comm: "bash"), open(1 * s + 1, pid: 300, path: "/etc/shadow"), exit(1 * s + 2, pid: 300),
            fork(2 * s, parent: 50, child: 300, comm: "bash"), open(2 * s + 1, pid: 300, path: "/etc/shadow"),
            open(2 * s + 2, pid: 300, path: "/etc/shadow"),
        ]).filter { $0.evidence["rule"]?.stringValue == "Read shadow password file" }
        XCTAssertEqual(f.map { $0.evidence["exec_id"]?.stringValue ?? "" }, ["\(1 * s):300", "\(2 * s):300"])
    }
}
