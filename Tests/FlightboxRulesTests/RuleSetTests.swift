import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxRules

final class RuleSetTests: XCTestCase {
    // MARK: synthetic events

    func exec(_ ts: UInt64, pid: UInt32, ppid: UInt32, comm: String, exe: String, argv: [String], uid: UInt32 = 0) -> [UInt8] {
        ExecRecord.encode(ts: ts, pid: pid, tid: pid, ppid: ppid, uid: uid, argc: UInt16(argv.count), comm: comm,
                          filename: Array(exe.utf8), argv: argv.flatMap { Array($0.utf8) + [0] })
    }
    func fork(_ ts: UInt64, parent: UInt32, child: UInt32, comm: String) -> [UInt8] {
        ForkRecord.encode(ts: ts, pid: parent, tid: parent, childPid: child, childTid: child, comm: comm)
    }
    func exit(_ ts: UInt64, pid: UInt32) -> [UInt8] { ExitRecord.encode(ts: ts, flags: exitGroupFlag, pid: pid, tid: pid) }
    func open(_ ts: UInt64, pid: UInt32, path: String, flags: UInt32 = 0, ret: Int64 = 3) -> [UInt8] {
        FileRecord.encode(ts: ts, pid: pid, tid: pid, ret: ret, op: 1, dirfd: -100, openFlags: flags, path: Array(path.utf8))
    }
    func setid(_ ts: UInt64, pid: UInt32, old: UInt32, new: UInt32) -> [UInt8] {
        PrivilegeRecord.encode(ts: ts, pid: pid, tid: pid, ret: 0, nr: 105, op: 1, args: [0, 0, 0, 0], uid: new, euid: new, oldUid: old, oldEuid: 0)
    }

    let snapshot = ProcessSnapshot(timestamp: 0, processes: [
        ProcessRecord(pid: 1, ppid: 0, uid: 0, comm: "systemd", exe: "/usr/lib/systemd/systemd", argv: ["/sbin/init"]),
        ProcessRecord(pid: 100, ppid: 1, uid: 0, comm: "nginx", exe: "/usr/sbin/nginx", argv: ["nginx"]),
    ])

    /// Runs `records` through an engine with `rules` (over nothing else) and returns "rule pid" per match.
    func matches(_ yaml: String, _ records: [[UInt8]], snapshot: ProcessSnapshot? = nil) throws -> [String] {
        let set = try RuleSet(sources: [RuleSource(name: "t.yaml", text: yaml)])
        let engine = RuleEngine(rules: set, snapshot: snapshot ?? self.snapshot)
        var out: [String] = []
        for (i, r) in records.enumerated() {
            r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(i))!) { rule, input, agg in out.append("\(rule.name) \(input.event.pid) \(rule.render(input, agg))") } }
        }
        return out
    }

    func error(_ yaml: String) -> RuleError? {
        do { _ = try RuleSet(sources: [RuleSource(name: "t.yaml", text: yaml)]); return nil } catch { return error }
    }

    // MARK: the built-in rules

    func testBuiltInRulesCompile() {
        let set = RuleSet.builtIn()
        XCTAssertGreaterThanOrEqual(set.rules.count, 15)
        for r in set.rules {
            XCTAssertFalse(r.techniques.isEmpty, "\(r.name) has no MITRE technique")
            XCTAssertNotEqual(r.kinds, .all, "\(r.name) does not constrain evt.type")
        }
    }

    func testEmbeddedDefaultRulesMatchTheFile() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("rules/default.yaml")
        XCTAssertEqual(try String(contentsOf: url, encoding: .utf8), DefaultRules.text)
    }

    // MARK: parser and type checker errors: one error, file, line, column

    func testUnknownFieldIsReportedAtItsColumn() {
        let e = error("- rule: R\n  condition: evt.type = open and fd.nme = /x\n  output: x\n  priority: warning\n")
        XCTAssertEqual(e, RuleError(file: "t.yaml", line: 2, column: 34, reason: "unknown field 'fd.nme' (fields of that class include 'fd.name')"))
    }

    func testSyntaxErrorInAFoldedConditionIsOnItsLine() {
        let yaml = "- rule: R\n  condition: >\n    evt.type = open and\n    (fd.name = /x or\n  output: x\n  priority: warning\n"
        let e = error(yaml)
        XCTAssertEqual(e?.line, 4)
        XCTAssertTrue(e?.reason.contains("unexpected end") ?? false, "\(String(describing: e))")
    }

    func testTypeErrors() {
        let head = "- rule: R\n  condition: "
        let tail = "\n  output: x\n  priority: warning\n"
        XCTAssertEqual(error(head + "evt.type = open and net.dport = http" + tail)?.reason, "'net.dport' is a number; 'http' is not")
        XCTAssertEqual(error(head + "evt.type = open and fd.name > 3" + tail)?.reason, "'>' compares numbers; 'fd.name' is a string")
        XCTAssertEqual(error(head + "evt.type = execve" + tail)?.column, 25)
        XCTAssertTrue(error(head + "evt.type = exec and proc.name" + tail)?.reason.contains("compare it with an operator") ?? false)
        XCTAssertTrue(error(head + "evt.type = exec and proc.name in shells" + tail)?.reason.contains("'in' needs a list") ?? false)
        XCTAssertTrue(error(head + "evt.type = exec and no_such_macro" + tail)?.reason.contains("unknown macro 'no_such_macro'") ?? false)
        XCTAssertTrue(error(head + "evt.type = exec and proc.aname[99] = sh" + tail)?.reason.contains("out of range") ?? false)
    }

    func testStructuralErrors() {
        XCTAssertEqual(error("- rule: R\n  condition: evt.type = exec\n  priority: warning\n")?.reason, "rule 'R': needs 'output'")
        XCTAssertEqual(error("- rule: R\n  condition: evt.type = exec\n  output: x\n  priority: loud\n")?.line, 4)
        let k = error("- rule: R\n  condition: evt.type = exec\n  output: x\n  priority: info\n  colour: red\n")
        XCTAssertEqual(k?.line, 5)
        XCTAssertEqual(k?.column, 3)
        XCTAssertEqual(error("- macro: a\n  condition: b\n- macro: b\n  condition: a\n- rule: R\n  condition: evt.type = exec and a\n  output: x\n  priority: info\n")?.reason,
                       "macro 'a' refers to itself (a -> b -> a)")
        XCTAssertTrue(error("- rule: R\n  condition: evt.type = exec\n  output: \"%proc.nam\"\n  priority: info\n")?.reason.hasPrefix("output: unknown field") ?? false)
        XCTAssertEqual(error("rule: R\n")?.line, 1)
        XCTAssertTrue(error("- rule: R\n  condition: 'a\n")?.reason.hasPrefix("malformed YAML") ?? false)
    }

    // MARK: evaluation

    func testOperatorsListsMacrosAndExceptions() throws {
        let yaml = """
        - list: secrets
          items: [/etc/shadow, /etc/gshadow]
        - list: more_secrets
          items: [secrets, /etc/sudoers]
        - macro: reading
          condition: evt.type = open and not fd.write
        - rule: Secret
          condition: reading and fd.name in (more_secrets)
          output: "%proc.name read %fd.name"
          priority: warning
          tags: [T1003.008]
          exceptions:
            - name: trusted
              condition: proc.name = sshd
        - rule: Keys
          condition: evt.type = open and (fd.name glob "*/.ssh/id_*" and not fd.name endswith .pub)
          output: "%fd.name"
          priority: warning
        - rule: Writes
          condition: evt.type = open and fd.write and fd.name startswith /etc/ and fd.name contains cron
          output: "%fd.name"
          priority: warning
        """
        let m = try matches(yaml, [
            exec(1, pid: 200, ppid: 1, comm: "cat", exe: "/usr/bin/cat", argv: ["cat"]),
            open(2, pid: 200, path: "/etc/shadow"),
            open(3, pid: 200, path: "/etc/sudoers"),
            open(4, pid: 200, path: "/etc/shadow", flags: 1), // a write: not `reading`
            open(5, pid: 200, path: "/root/.ssh/id_ed25519"),
            open(6, pid: 200, path: "/root/.ssh/id_ed25519.pub"),
            open(7, pid: 200, path: "/etc/cron.d/job", flags: 0o101),
            exec(8, pid: 201, ppid: 1, comm: "sshd", exe: "/usr/sbin/sshd", argv: ["sshd"]),
            open(9, pid: 201, path: "/etc/shadow"),
        ])
        XCTAssertEqual(m, ["Secret 200 cat read /etc/shadow", "Secret 200 cat read /etc/sudoers", "Keys 200 /root/.ssh/id_ed25519", "Writes 200 /etc/cron.d/job"])
    }

    func testAncestorsAndIntegers() throws {
        let yaml = """
        - rule: Shell from nginx
          condition: evt.type = exec and proc.name in (sh, bash) and proc.aname = nginx and proc.aname[2] = nginx
          output: "%proc.pname > %proc.name (%proc.cmdline) depth %proc.depth"
          priority: critical
        - rule: Root
          condition: evt.type = setid and user.old_uid != 0 and user.uid = 0 and user.old_uid >= 1000
          output: "%user.old_uid -> %user.uid"
          priority: critical
        """
        let m = try matches(yaml, [
            fork(1, parent: 100, child: 300, comm: "nginx"),
            exec(2, pid: 300, ppid: 100, comm: "php", exe: "/usr/bin/php", argv: ["php"]),
            fork(3, parent: 300, child: 301, comm: "php"),
            exec(4, pid: 301, ppid: 300, comm: "sh", exe: "/bin/sh", argv: ["sh", "-c", "id"]),
            exec(5, pid: 302, ppid: 1, comm: "sh", exe: "/bin/sh", argv: ["sh"]), // not under nginx
            setid(6, pid: 301, old: 1000, new: 0),
            setid(7, pid: 301, old: 0, new: 0),
        ])
        XCTAssertEqual(m, ["Shell from nginx 301 php > sh (sh -c id) depth 3", "Root 301 1000 -> 0"])
    }

    // MARK: lineage

    func testLineageFromASnapshotAndPidReuse() throws {
        let t = LineageTable(snapshot: snapshot)
        XCTAssertEqual(t.execution(100)?.parent?.comm.string, "systemd")
        XCTAssertEqual(t.execution(100)?.execId.string, "0:100")
        let recs = [fork(10, parent: 100, child: 500, comm: "nginx"), exec(20, pid: 500, ppid: 100, comm: "sh", exe: "/bin/sh", argv: ["sh"]),
                    exit(30, pid: 500), fork(40, parent: 1, child: 500, comm: "systemd"),
                    exec(50, pid: 500, ppid: 1, comm: "cron", exe: "/usr/sbin/cron", argv: ["cron"])]
        var ids: [String] = []
        for (i, r) in recs.enumerated() {
            r.withUnsafeBytes { b in
                let e = Event.validated(b, sequence: UInt64(i))!
                t.apply(e)
                t.retire(e)
                if let x = t.execution(500) { ids.append(x.execId.string) }
            }
        }
        // A fork, an exec (new image), exit, the pid reused: four executions, four ids.
        XCTAssertEqual(ids, ["10:500", "20:500", "40:500", "50:500"])
        let cron = t.execution(500)!
        XCTAssertEqual(cron.chain().map(\.comm.string), ["cron", "systemd"])
        XCTAssertEqual(cron.startSeq, 4)
    }

    func testLineageSurvivesAParentCycleInTheSnapshot() {
        let t = LineageTable(snapshot: ProcessSnapshot(timestamp: 0, processes: [
            ProcessRecord(pid: 7, ppid: 8, uid: 0, comm: "a", exe: "", argv: []),
            ProcessRecord(pid: 8, ppid: 7, uid: 0, comm: "b", exe: "", argv: []),
        ]))
        XCTAssertEqual(t.execution(7)?.chain().count, 2)
    }

    func testAForkAndExitLoopKeepsABoundedChain() {
        let t = LineageTable(snapshot: snapshot)
        var parent: UInt32 = 100
        for k in 0..<5000 {
            let child = UInt32(1000 + k)
            for r in [fork(UInt64(k * 10), parent: parent, child: child, comm: "respawn"), exit(UInt64(k * 10 + 1), pid: parent)] {
                r.withUnsafeBytes { b in
                    let e = Event.validated(b, sequence: UInt64(k))!
                    t.apply(e)
                    t.retire(e)
                }
            }
            parent = child
        }
        let chain = t.execution(parent)!.chain(limit: 100_000)
        XCTAssertLessThanOrEqual(chain.count, 2 * LineageTable.maxDepth + 1)
        XCTAssertGreaterThanOrEqual(chain.count, LineageTable.maxDepth)
    }

    func testDroppedExecutableIsTracked() throws {
        let yaml = "- rule: Dropped\n  condition: evt.type = exec and proc.exe_written\n  output: \"%proc.exe\"\n  priority: warning\n"
        let m = try matches(yaml, [
            open(1, pid: 100, path: "payload", flags: 0o101),
            exec(2, pid: 100, ppid: 1, comm: "payload", exe: "./payload", argv: ["./payload"]),
            exec(3, pid: 100, ppid: 1, comm: "ls", exe: "/bin/ls", argv: ["ls"]),
        ])
        XCTAssertEqual(m, ["Dropped 100 ./payload"])
        // Kept only when a rule reads the field (bare, compared, or in an output).
        XCTAssertTrue(try RuleSet(sources: [RuleSource(name: "t.yaml", text: yaml)]).usesExeWritten)
        XCTAssertTrue(try RuleSet(sources: [RuleSource(name: "t.yaml", text: yaml.replacingOccurrences(of: "and proc.exe_written", with: "and proc.exe_written = true"))]).usesExeWritten)
        XCTAssertFalse(RuleSet.builtIn().usesExeWritten)
        let m2 = try matches(yaml.replacingOccurrences(of: " and proc.exe_written", with: ""), [
            open(1, pid: 100, path: "payload", flags: 0o101),
            exec(2, pid: 100, ppid: 1, comm: "payload", exe: "./payload", argv: ["./payload"]),
        ])
        XCTAssertEqual(m2, ["Dropped 100 ./payload"])
    }

    func testGlob() {
        func g(_ s: String, _ p: String) -> Bool { Array(s.utf8).withUnsafeBytes { ByteMatch.glob($0, Array(p.utf8)) } }
        XCTAssertTrue(g("/home/a/.ssh/id_rsa", "*/.ssh/id_*"))
        XCTAssertTrue(g("/proc/12/fd/3", "/proc/*/fd/*"))
        XCTAssertFalse(g("/proc/12/maps", "/proc/*/fd/*"))
        XCTAssertTrue(g("abc", "a?c"))
        XCTAssertFalse(g("abcd", "a?c"))
    }
}

extension RuleSetTests {
    func refused(_ ts: UInt64, pid: UInt32, port: UInt16, host: UInt8 = 1) -> [UInt8] {
        TCPRecord.encode(ts: ts, pid: pid, tid: pid, daddr: [127, 0, 0, host] + [UInt8](repeating: 0, count: 12), dport: port, family: 2, kind: 1, oldstate: 2, newstate: 7)
    }

    func testAggregateCountsDistinctValuesInAWindow() throws {
        let yaml = """
        - rule: Scan
          condition: evt.type = refused
          aggregate:
            distinct: net.dport
            count: 3
            window: 1s
          output: "%agg.count ports: %agg.values"
          priority: warning
        """
        let s: UInt64 = 1_000_000_000
        let m = try matches(yaml, [
            exec(1, pid: 400, ppid: 1, comm: "nmap", exe: "/usr/bin/nmap", argv: ["nmap"]),
            refused(s, pid: 400, port: 1), refused(s + 1, pid: 400, port: 1), // the same port twice: one value
            refused(s + 2, pid: 400, port: 2),
            refused(3 * s, pid: 400, port: 3), // ports 1 and 2 fell out of the window
            refused(3 * s + 1, pid: 400, port: 4), refused(3 * s + 2, pid: 400, port: 5),
            refused(3 * s + 3, pid: 401, port: 6), // another process: its own group
        ])
        XCTAssertEqual(m, ["Scan 400 3 ports: 3,4,5"])
    }

    func testAggregateErrors() {
        XCTAssertEqual(error("- rule: R\n  condition: evt.type = refused\n  aggregate: {count: 1, window: 1s}\n  output: x\n  priority: info\n")?.reason,
                       "aggregate: count is a whole number from 2 to 10000")
        XCTAssertEqual(error("- rule: R\n  condition: evt.type = refused\n  aggregate: {count: 5, window: 1s, distinct: fd.write}\n  output: x\n  priority: info\n")?.reason,
                       "aggregate: 'fd.write' must be a string or a number")
        XCTAssertEqual(error("- rule: R\n  condition: evt.type = refused\n  aggregate: {count: 5}\n  output: x\n  priority: info\n")?.reason,
                       "rule 'R': aggregate needs 'count' and 'window'")
    }
}

/// Every built-in rule, on a synthetic stream that should fire it and one
/// that should not (the benign neighbour a careless rule would also catch).
final class BuiltInRuleTests: XCTestCase {
    let t = Synth()

    func priv(_ ts: UInt64, pid: UInt32, op: UInt32, ret: Int64 = 0, args: [UInt64] = [0, 0, 0, 0], uid: UInt32 = 0, oldUid: UInt32 = 0,
              str: String = "", fdKind: UInt8 = 0, family: UInt16 = 0) -> [UInt8] {
        PrivilegeRecord.encode(ts: ts, pid: pid, tid: pid, ret: ret, nr: 0, op: op, args: args, uid: uid, euid: uid, oldUid: oldUid, oldEuid: 0,
                               fdKind: fdKind, sockFamily: family, str: Array(str.utf8))
    }
    func netBytes(_ ts: UInt64, pid: UInt32, sent: UInt64, received: UInt64, direction: UInt8 = 1) -> [UInt8] {
        NetbytesRecord.encode(ts: ts, pid: pid, tid: pid, bytesSent: sent, bytesReceived: received, totalSent: sent, totalReceived: received,
                              daddr: [10, 0, 0, 9] + [UInt8](repeating: 0, count: 12), dport: 443, family: 2, reason: 1, direction: direction)
    }
    func capset(_ ts: UInt64, pid: UInt32, old: (UInt64, UInt64, UInt64), new: (UInt64, UInt64, UInt64)) -> [UInt8] {
        PrivilegeRecord.encode(ts: ts, pid: pid, tid: pid, op: 2, capEffective: new.0, capPermitted: new.1, capInheritable: new.2,
                               oldCapEffective: old.0, oldCapPermitted: old.1, oldCapInheritable: old.2)
    }
    func connect(_ ts: UInt64, pid: UInt32) -> [UInt8] {
        TCPRecord.encode(ts: ts, pid: pid, tid: pid, daddr: [10, 0, 0, 9] + [UInt8](repeating: 0, count: 12), dport: 4444, family: 2, kind: 1, oldstate: 7, newstate: 2)
    }
    func run(_ comm: String, exe: String = "", parent: String = "bash", _ events: (UInt32) -> [[UInt8]]) throws -> [String] {
        // pid 100 is nginx in the snapshot; 60 a bash under it or not.
        let pexe = "/usr/bin/" + parent
        let recs = [t.exec(1, pid: 60, ppid: 1, comm: parent, exe: pexe, argv: [parent]), t.fork(2, parent: 60, child: 70, comm: parent),
                    t.exec(3, pid: 70, ppid: 60, comm: comm, exe: exe.isEmpty ? "/usr/bin/" + comm : exe, argv: [comm])] + events(70)
        let set = RuleSet.builtIn()
        let engine = RuleEngine(rules: set, snapshot: t.snapshot)
        var out: [String] = []
        for (i, r) in recs.enumerated() {
            r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(i))!) { rule, _, _ in out.append(rule.name) } }
        }
        return out
    }

    func testEachBuiltInRuleFiresAndItsNeighbourDoesNot() throws {
        let w: UInt32 = 0o1101 // O_WRONLY|O_CREAT|O_TRUNC
        let cases: [(String, [String], [String])] = [
            ("Read shadow password file", try run("cat") { [t.open(9, pid: $0, path: "/etc/shadow")] }, try run("sshd") { [t.open(9, pid: $0, path: "/etc/shadow")] }),
            ("Read SSH private key", try run("python3") { [t.open(9, pid: $0, path: "/root/.ssh/id_rsa")] }, try run("python3") { [t.open(9, pid: $0, path: "/root/.ssh/id_rsa.pub")] }),
            ("Write to sudoers", try run("sh") { [t.open(9, pid: $0, path: "/etc/sudoers.d/evil", flags: w)] }, try run("sh") { [t.open(9, pid: $0, path: "/etc/sudoers.d/evil")] }),
            ("Write to ld.so.preload", try run("sh") { [t.open(9, pid: $0, path: "/etc/ld.so.preload", flags: w)] }, try run("dpkg") { [t.open(9, pid: $0, path: "/etc/ld.so.preload", flags: w)] }),
            ("Modify PAM configuration", try run("sh") { [t.open(9, pid: $0, path: "/etc/pam.d/sshd", flags: w)] }, try run("sh") { [t.open(9, pid: $0, path: "/etc/pam.d/sshd")] }),
            ("Write to cron", try run("sh") { [t.open(9, pid: $0, path: "/etc/cron.d/job", flags: w)] }, try run("crontab") { [t.open(9, pid: $0, path: "/var/spool/cron/root", flags: w)] }),
            ("Write to SSH authorized keys", try run("sh") { [t.open(9, pid: $0, path: "/root/.ssh/authorized_keys", flags: 0o2101)] }, try run("sh") { [t.open(9, pid: $0, path: "/root/.ssh/authorized_keys")] }),
            ("Write to password database", try run("python3") { [t.open(9, pid: $0, path: "/etc/passwd", flags: w)] }, try run("useradd") { [t.open(9, pid: $0, path: "/etc/passwd", flags: w)] }),
            ("Fileless execution", try run("x", exe: "/dev/fd/3") { _ in [] }, try run("x", exe: "/usr/bin/x") { _ in [] }),
            ("Dropped executable run", try run("sh") { [t.open(9, pid: $0, path: "/tmp/p", flags: w), t.exec(10, pid: $0, ppid: 60, comm: "p", exe: "/tmp/p", argv: ["p"])] },
             try run("make") { [t.open(9, pid: $0, path: "/tmp/p", flags: w), t.fork(10, parent: $0, child: 71, comm: "make"),
                                t.exec(11, pid: 71, ppid: $0, comm: "p", exe: "/tmp/p", argv: ["p"])] }),
            ("Shell spawned by a network service", try run("sh", parent: "nginx") { _ in [] }, try run("sh", parent: "bash") { _ in [] }),
            ("Shell connected out", try run("bash") { [connect(9, pid: $0)] }, try run("curl") { [connect(9, pid: $0)] }),
            ("Write to another process's memory file", try run("python3") { [t.open(9, pid: $0, path: "/proc/42/mem", flags: 2)] }, try run("python3") { [t.open(9, pid: $0, path: "/proc/self/mem", flags: 2)] }),
            ("Container escape through a kernel callback", try run("sh") { [t.open(9, pid: $0, path: "/sys/fs/cgroup/x/release_agent", flags: w)] }, try run("sh") { [t.open(9, pid: $0, path: "/sys/fs/cgroup/x/release_agent")] }),
            ("Setuid to root by a non-root process", try run("x") { [priv(9, pid: $0, op: 1, uid: 0, oldUid: 1000)] }, try run("sudo", exe: "/usr/bin/sudo") { [priv(9, pid: $0, op: 1, uid: 0, oldUid: 1000)] }),
            ("Ptrace attach to another process", try run("x") { [priv(9, pid: $0, op: 3, args: [16, 42, 0, 0])] }, try run("gdb") { [priv(9, pid: $0, op: 3, args: [16, 42, 0, 0])] }),
            ("Ptrace code injection", try run("x") { [priv(9, pid: $0, op: 3, args: [5, 42, 0, 0])] }, try run("x") { [priv(9, pid: $0, op: 3, args: [2, 42, 0, 0])] }),
            ("Write to another process's memory", try run("x") { [priv(9, pid: $0, op: 4, ret: 8, args: [42, 0, 0, 0])] }, try run("x") { [priv(9, pid: $0, op: 4, ret: 8, args: [70, 0, 0, 0])] }),
            ("Kernel module loaded", try run("x") { [priv(9, pid: $0, op: 5)] }, try run("modprobe") { [priv(9, pid: $0, op: 5)] }),
            ("BPF program loaded by an unexpected process", try run("x") { [priv(9, pid: $0, op: 6, ret: 5, args: [5, 0, 0, 0])] }, try run("x") { [priv(9, pid: $0, op: 6, ret: 5, args: [1, 0, 0, 0])] }),
            ("Stdio redirected to a network socket", try run("python3") { [priv(9, pid: $0, op: 10, ret: 1, args: [3, 1, 0, 0], fdKind: 6, family: 2)] },
             try run("python3") { [priv(9, pid: $0, op: 10, ret: 1, args: [3, 1, 0, 0], fdKind: 6, family: 1)] }),
            // 25 MB out for 1 KB back; the neighbour downloads the same amount.
            ("Exfiltration", try run("python3") { [netBytes(9, pid: $0, sent: 25_000_000, received: 1000)] },
             try run("python3") { [netBytes(9, pid: $0, sent: 1000, received: 25_000_000)] }),
            // cap_sys_admin into inheritable from nowhere; the neighbour re-raises cap_net_raw, still permitted.
            ("Capabilities added with capset", try run("x") { [capset(9, pid: $0, old: (0x100, 0x100, 0), new: (0x100, 0x100, 1 << 21))] },
             try run("ping") { [capset(9, pid: $0, old: (0, 1 << 13, 0), new: (1 << 13, 1 << 13, 0))] }),
        ]
        for (rule, positive, negative) in cases {
            XCTAssertTrue(positive.contains(rule), "\(rule) did not fire: \(positive)")
            XCTAssertFalse(negative.contains(rule), "\(rule) fired on its neighbour: \(negative)")
        }
        let tested = Set(cases.map(\.0) + ["Reverse shell", "Port scan", "Connect sweep", "Beaconing"])
        XCTAssertEqual(Set(RuleSet.builtIn().rules.map(\.name)).subtracting(tested), [], "a built-in rule without a case here")
    }

    func testReverseShellAtExecAndItsNeighbours() throws {
        func shell(stdin: (UInt8, UInt16), comm: String = "sh", parent: String = "python3") throws -> [String] {
            let recs = [t.fork(0, parent: 200, child: 60, comm: "bash"), t.exec(1, pid: 60, ppid: 200, comm: parent, exe: "/usr/bin/" + parent, argv: [parent]),
                        ExecRecord.encode(ts: 2, pid: 60, tid: 60, ppid: 1, argc: 1, stdinKind: stdin.0, stdoutKind: stdin.0, stdinFamily: stdin.1,
                                          stdoutFamily: stdin.1, comm: comm, filename: Array("/bin/\(comm)".utf8), argv: Array(comm.utf8) + [0])]
            // The exec replaces python's image in the same pid: the shell's parent is the snapshot's bash.
            let engine = RuleEngine(rules: RuleSet.builtIn(), snapshot: t.snapshot)
            var out: [String] = []
            for (i, r) in recs.enumerated() { r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(i))!) { rule, _, _ in out.append(rule.name) } } }
            return out
        }
        XCTAssertEqual(try shell(stdin: (6, 2)), ["Reverse shell"])
        XCTAssertEqual(try shell(stdin: (6, 10)), ["Reverse shell"])
        XCTAssertEqual(try shell(stdin: (6, 1)), [], "a Unix socket (systemd, ssh sessions)")
        XCTAssertEqual(try shell(stdin: (5, 0)), [], "a pipe")
        XCTAssertEqual(try shell(stdin: (6, 2), comm: "id"), [], "not a shell")
        XCTAssertEqual(try shell(stdin: (0, 0)), [], "a trace recorded before the field existed")
    }
}

/// The synthetic records of RuleSetTests, for other test classes.
struct Synth {
    let snapshot = ProcessSnapshot(timestamp: 0, processes: [
        ProcessRecord(pid: 1, ppid: 0, uid: 0, comm: "systemd", exe: "/usr/lib/systemd/systemd", argv: ["/sbin/init"]),
        ProcessRecord(pid: 100, ppid: 1, uid: 0, comm: "nginx", exe: "/usr/sbin/nginx", argv: ["nginx"]),
        ProcessRecord(pid: 200, ppid: 1, uid: 1000, comm: "bash", exe: "/usr/bin/bash", argv: ["-bash"]),
    ])
    func exec(_ ts: UInt64, pid: UInt32, ppid: UInt32, comm: String, exe: String, argv: [String]) -> [UInt8] {
        ExecRecord.encode(ts: ts, pid: pid, tid: pid, ppid: ppid, argc: UInt16(argv.count), comm: comm,
                          filename: Array(exe.utf8), argv: argv.flatMap { Array($0.utf8) + [0] })
    }
    func fork(_ ts: UInt64, parent: UInt32, child: UInt32, comm: String) -> [UInt8] {
        ForkRecord.encode(ts: ts, pid: parent, tid: parent, childPid: child, childTid: child, comm: comm)
    }
    func open(_ ts: UInt64, pid: UInt32, path: String, flags: UInt32 = 0) -> [UInt8] {
        FileRecord.encode(ts: ts, pid: pid, tid: pid, ret: 3, op: 1, dirfd: -100, openFlags: flags, path: Array(path.utf8))
    }
}

extension BuiltInRuleTests {
    func connect(_ ts: UInt64, pid: UInt32, host: [UInt8], port: UInt16 = 443) -> [UInt8] {
        TCPRecord.encode(ts: ts, pid: pid, tid: pid, daddr: host + [UInt8](repeating: 0, count: 12), dport: port, family: 2, kind: 1, oldstate: 7, newstate: 2)
    }

    func beacons(_ times: [UInt64], host: [UInt8] = [10, 0, 0, 9]) throws -> [String] {
        try run("implant") { pid in times.map { connect($0, pid: pid, host: host) } }
    }

    func testBeaconingIsARegularPeriodNotABurst() throws {
        let s: UInt64 = 1_000_000_000
        // Every 60 s with up to 2 s of jitter: a beacon at the 8th connect.
        let regular = (0..<10).map { UInt64($0) * 60 * s + UInt64(($0 * 7) % 3) * s }
        XCTAssertEqual(try beacons(regular).filter { $0 == "Beaconing" }.count, 1)
        // The same count at irregular gaps (a person browsing): nothing.
        let irregular: [UInt64] = [0, 5, 70, 71, 300, 302, 900, 1500, 1501, 2000].map { $0 * s }
        XCTAssertEqual(try beacons(irregular).filter { $0 == "Beaconing" }, [])
        // Many connects in a burst (under the 1 s minimum period): nothing.
        XCTAssertEqual(try beacons((0..<10).map { UInt64($0) * 100_000_000 }).filter { $0 == "Beaconing" }, [])
        // Loopback: nothing.
        XCTAssertEqual(try beacons(regular, host: [127, 0, 0, 1]).filter { $0 == "Beaconing" }, [])
    }
}

extension RuleSetTests {
    func testRegularAggregateErrors() {
        XCTAssertEqual(error("- rule: R\n  condition: evt.type = connect\n  aggregate: {count: 5, window: 1h, regular: 0.1, distinct: net.dport}\n  output: x\n  priority: info\n")?.reason,
                       "rule 'R': aggregate: 'regular' times repeats of one thing; it excludes 'distinct'")
        XCTAssertEqual(error("- rule: R\n  condition: evt.type = connect\n  aggregate: {count: 5, window: 1h, regular: 2}\n  output: x\n  priority: info\n")?.line, 3)
    }
}

extension RuleSetTests {
    static let byPort = """
    - rule: Refused twice
      condition: evt.type = refused
      aggregate: {by: [net.dport], count: 2, window: 10s}
      output: "port %net.dport"
      priority: warning
    """

    func engine(_ yaml: String) throws -> (RuleEngine, Aggregate) {
        let set = try RuleSet(sources: [RuleSource(name: "t.yaml", text: yaml)])
        let e = RuleEngine(rules: set, snapshot: snapshot)
        return (e, try XCTUnwrap(e.rules[0].aggregate))
    }

    func feed(_ engine: RuleEngine, _ records: [[UInt8]], from seq: Int = 0) -> [String] {
        var out: [String] = []
        for (i, r) in records.enumerated() {
            r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(seq + i))!) { rule, input, agg in out.append(rule.render(input, agg)) } }
        }
        return out
    }

    /// A flood of distinct keys inside the window fills every group slot: a
    /// new key still gets one (the least recently active groups make room).
    func testAFloodOfKeysDoesNotLockAnAggregateRuleOut() throws {
        let (e, agg) = try engine(RuleSetTests.byPort)
        let s: UInt64 = 1_000_000_000
        let flood = (0..<Aggregate.maxGroups).map { refused(s + UInt64($0), pid: 400, port: UInt16(1 + $0)) }
        XCTAssertEqual(feed(e, flood), [])
        XCTAssertEqual(agg.groups.count, Aggregate.maxGroups)
        // Port 1 is touched again, so it is the most recent, not the oldest.
        XCTAssertEqual(feed(e, [refused(2 * s, pid: 400, port: 60_001)], from: 5000), [])
        XCTAssertEqual(feed(e, [refused(2 * s + 1, pid: 400, port: 60_001)], from: 5001), ["port 60001"])
        XCTAssertEqual(agg.evicted, UInt64(Aggregate.maxGroups / 16))
        // The oldest sixteenth went (ports 1...256), by event time, not the dictionary's order.
        let kept = Set(agg.groups.keys)
        XCTAssertFalse(kept.contains("1"))
        XCTAssertFalse(kept.contains("256"))
        XCTAssertTrue(kept.contains("257"))
        XCTAssertTrue(kept.contains("4096"))
    }

    /// Groups whose window passed are forgotten at a tick, not kept until the table is full.
    func testExpiredGroupsGoAtATick() throws {
        let (e, agg) = try engine(RuleSetTests.byPort)
        let s: UInt64 = 1_000_000_000
        _ = feed(e, (0..<100).map { refused(s + UInt64($0) * s / 10, pid: 400, port: UInt16(1 + $0)) })
        XCTAssertEqual(agg.groups.count, 100)
        e.expire(now: 12 * s) // keys last seen at or before 2 s (ports 1...11) are gone
        XCTAssertEqual(agg.groups.count, 89)
        XCTAssertNil(agg.groups["11"])
        XCTAssertNotNil(agg.groups["12"])
        e.expire(now: 100 * s)
        XCTAssertEqual(agg.groups.count, 0)
        XCTAssertEqual(agg.evicted, 0)
    }
}

extension RuleSetTests {
    func testSHA256KnownAnswers() {
        XCTAssertEqual(SHA256.hex(Array("".utf8)), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(SHA256.hex(Array("abc".utf8)), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // Two blocks (56 bytes leave no room for the length in the first).
        XCTAssertEqual(SHA256.hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }
}
