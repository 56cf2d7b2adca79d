import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxRules

/// net_bytes fields (per connection, per execution and remote), the
/// Exfiltration rule, the cap.* fields and the capset rule, on synthetic streams.
final class NetBytesAndCapsTests: XCTestCase {
    let t = Streams()

    /// The helpers of RuleSetTests and BuiltInRuleTests, without their test cases.
    struct Streams {
        let synth = Synth()
        var snapshot: ProcessSnapshot { synth.snapshot }
        func exec(_ ts: UInt64, pid: UInt32, ppid: UInt32, comm: String, exe: String, argv: [String]) -> [UInt8] {
            synth.exec(ts, pid: pid, ppid: ppid, comm: comm, exe: exe, argv: argv)
        }
        func fork(_ ts: UInt64, parent: UInt32, child: UInt32, comm: String) -> [UInt8] { synth.fork(ts, parent: parent, child: child, comm: comm) }
        func exit(_ ts: UInt64, pid: UInt32) -> [UInt8] { ExitRecord.encode(ts: ts, flags: exitGroupFlag, pid: pid, tid: pid) }

        /// "rule pid output" per match of `yaml`'s rules over `records`.
        func matches(_ yaml: String, _ records: [[UInt8]]) throws -> [String] {
            let engine = RuleEngine(rules: try RuleSet(sources: [RuleSource(name: "t.yaml", text: yaml)]), snapshot: snapshot)
            var out: [String] = []
            for (i, r) in records.enumerated() {
                r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(i))!) { rule, input, agg in out.append("\(rule.name) \(input.event.pid) \(rule.render(input, agg))") } }
            }
            return out
        }

        /// Built-in rule names matched by `comm` (pid 70, parent `parent`) doing `events`.
        func run(_ comm: String, parent: String = "bash", _ events: (UInt32) -> [[UInt8]]) throws -> [String] {
            let recs = [exec(1, pid: 60, ppid: 1, comm: parent, exe: "/usr/bin/" + parent, argv: [parent]), fork(2, parent: 60, child: 70, comm: parent),
                        exec(3, pid: 70, ppid: 60, comm: comm, exe: "/usr/bin/" + comm, argv: [comm])] + events(70)
            let engine = RuleEngine(rules: RuleSet.builtIn(), snapshot: snapshot)
            var out: [String] = []
            for (i, r) in recs.enumerated() {
                r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(i))!) { rule, _, _ in out.append(rule.name) } }
            }
            return out
        }
    }

    func bytes(_ ts: UInt64, pid: UInt32, host: UInt8 = 9, port: UInt16 = 443, sent: UInt64, received: UInt64,
               totalSent: UInt64? = nil, totalReceived: UInt64? = nil, direction: UInt8 = 1) -> [UInt8] {
        NetbytesRecord.encode(ts: ts, pid: pid, tid: pid, bytesSent: sent, bytesReceived: received,
                              totalSent: totalSent ?? sent, totalReceived: totalReceived ?? received,
                              saddr: [10, 0, 0, 1] + [UInt8](repeating: 0, count: 12), daddr: [10, 0, 0, host] + [UInt8](repeating: 0, count: 12),
                              sport: 40000, dport: port, family: 2, reason: 2, direction: direction)
    }

    let fieldsRule = """
    - rule: Show
      condition: evt.type = net_bytes
      output: "%net.sip:%net.sport>%net.dip:%net.dport %net.direction conn %net.bytes_sent/%net.bytes_received interval %net.interval_sent/%net.interval_received host %net.host_sent/%net.host_received ratio %net.host_send_ratio"
      priority: info
    """

    func testFieldsSumPerExecutionAndRemoteOverConnectionsItOpened() throws {
        let m = try t.matches(fieldsRule, [
            t.exec(1, pid: 300, ppid: 1, comm: "up", exe: "/usr/bin/up", argv: ["up"]),
            bytes(10, pid: 300, sent: 1000, received: 10),
            // A second connection to the same host: the host totals add up, the connection's are its own.
            bytes(20, pid: 300, port: 8443, sent: 500, received: 0),
            // Another host: its own totals.
            bytes(30, pid: 300, host: 7, sent: 7, received: 70),
            // Accepted from a listener: a server's reply, never in the host totals.
            bytes(40, pid: 300, sent: 9999, received: 1, direction: 2),
            // The first connection again: its own totals grow, interval is this summary's.
            bytes(50, pid: 300, sent: 100, received: 5, totalSent: 1100, totalReceived: 15),
        ])
        XCTAssertEqual(m, [
            "Show 300 10.0.0.1:40000>10.0.0.9:443 out conn 1000/10 interval 1000/10 host 1000/10 ratio 100",
            "Show 300 10.0.0.1:40000>10.0.0.9:8443 out conn 500/0 interval 500/0 host 1500/10 ratio 150",
            "Show 300 10.0.0.1:40000>10.0.0.7:443 out conn 7/70 interval 7/70 host 7/70 ratio 0",
            "Show 300 10.0.0.1:40000>10.0.0.9:443 in conn 9999/1 interval 9999/1 host <na>/<na> ratio <na>",
            "Show 300 10.0.0.1:40000>10.0.0.9:443 out conn 1100/15 interval 100/5 host 1600/15 ratio 106",
        ].map { $0.replacingOccurrences(of: "<na>", with: naText) })
    }

    /// What output shows for an absent field.
    var naText: String {
        (try? t.matches("- rule: N\n  condition: evt.type = net_bytes\n  output: \"%cap.added\"\n  priority: info\n",
                        [bytes(1, pid: 1, sent: 1, received: 1)]).first?.split(separator: " ", maxSplits: 2).last.map(String.init)) ?? "?"
    }

    func testTotalsStartAfreshForANewExecutionAndAfterExit() throws {
        let rule = "- rule: S\n  condition: evt.type = net_bytes\n  output: \"%net.host_sent\"\n  priority: info\n"
        let m = try t.matches(rule, [
            t.exec(1, pid: 300, ppid: 1, comm: "a", exe: "/a", argv: ["a"]),
            bytes(2, pid: 300, sent: 10, received: 0),
            t.exec(3, pid: 300, ppid: 1, comm: "b", exe: "/b", argv: ["b"]), // a new image: a new execution
            bytes(4, pid: 300, sent: 20, received: 0),
            t.exit(5, pid: 300),
            t.fork(6, parent: 1, child: 300, comm: "c"), // pid reused
            bytes(7, pid: 300, sent: 30, received: 0),
        ])
        XCTAssertEqual(m, ["S 300 10", "S 300 20", "S 300 30"])
    }

    func testExfiltrationFiresOnceAcrossManySmallConnectionsAndSparesTransferTools() throws {
        // 30 connections of 1 MB each to one host: 20 MB is reached on the 20th.
        let chunks = (0..<30).map { bytes(UInt64(10 + $0), pid: 70, port: UInt16(9000 + $0), sent: 1_000_000, received: 100) }
        let engine = RuleEngine(rules: RuleSet.builtIn(), snapshot: t.snapshot)
        var hits: [(String, UInt64)] = []
        let recs = [t.exec(1, pid: 70, ppid: 1, comm: "python3", exe: "/usr/bin/python3", argv: ["python3", "up.py"])] + chunks
        for (i, r) in recs.enumerated() {
            r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(i))!) { rule, input, _ in hits.append((rule.name, input.event.sequence)) } }
        }
        // The engine matches on every summary past the thresholds; the
        // detector reports once per rule and execution.
        XCTAssertEqual(hits.first?.0, "Exfiltration")
        XCTAssertEqual(hits.first?.1, 20, "fires at the 20th connection, where 20 MB is reached")
        // rsync (and ssh under scp) are transfer tools: nothing.
        let b = t
        XCTAssertFalse(try b.run("rsync") { pid in (0..<30).map { bytes(UInt64(10 + $0), pid: pid, sent: 1_000_000, received: 100) } }.contains("Exfiltration"))
        XCTAssertFalse(try b.run("ssh", parent: "scp") { pid in [bytes(10, pid: pid, sent: 50_000_000, received: 100)] }.contains("Exfiltration"))
        // Balanced (a conversation): nothing; just under either threshold: nothing.
        XCTAssertFalse(try b.run("python3") { [bytes(10, pid: $0, sent: 50_000_000, received: 50_000_000)] }.contains("Exfiltration"))
        XCTAssertFalse(try b.run("python3") { [bytes(10, pid: $0, sent: 19_999_999, received: 0)] }.contains("Exfiltration"))
        XCTAssertFalse(try b.run("python3") { [bytes(10, pid: $0, sent: 20_000_000, received: 2_000_001)] }.contains("Exfiltration"))
        XCTAssertTrue(try b.run("python3") { [bytes(10, pid: $0, sent: 20_000_000, received: 2_000_000)] }.contains("Exfiltration"))
        // Loopback counts by default.
        XCTAssertTrue(try b.run("curl") { [bytes(10, pid: $0, host: 1, sent: 30_000_000, received: 0)] }.contains("Exfiltration"))
    }

    func testTrustedHostsAreAListUsersFill() throws {
        let user = RuleSource(name: "mine.yaml", text: "- list: exfiltration_trusted_hosts\n  items: [10.0.0.9]\n")
        let set = try RuleSet(sources: [DefaultRules.source, user])
        let engine = RuleEngine(rules: set, snapshot: t.snapshot)
        var out: [String] = []
        for (i, r) in [t.exec(1, pid: 70, ppid: 1, comm: "python3", exe: "/usr/bin/python3", argv: ["python3"]),
                       bytes(2, pid: 70, sent: 30_000_000, received: 0), bytes(3, pid: 70, host: 8, sent: 30_000_000, received: 0)].enumerated() {
            r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(i))!) { rule, input, _ in out.append("\(rule.name) \(input.event.sequence)") } }
        }
        XCTAssertEqual(out, ["Exfiltration 2"], "10.0.0.9 is trusted, 10.0.0.8 is not")
    }

    func capset(_ ts: UInt64, pid: UInt32, ret: Int64 = 0, old: (UInt64, UInt64, UInt64), new: (UInt64, UInt64, UInt64), op: UInt32 = 2) -> [UInt8] {
        PrivilegeRecord.encode(ts: ts, pid: pid, tid: pid, ret: ret, op: op, capEffective: new.0, capPermitted: new.1, capInheritable: new.2,
                               oldCapEffective: old.0, oldCapPermitted: old.1, oldCapInheritable: old.2)
    }

    func testCapabilityFields() throws {
        let rule = """
        - rule: C
          condition: evt.type in (capset, setid)
          output: "added %cap.added (%cap.added_names) raised %cap.raised (%cap.raised_names) eff %cap.old_effective>%cap.effective perm %cap.old_permitted>%cap.permitted inh %cap.old_inheritable>%cap.inheritable"
          priority: info
        """
        let m = try t.matches(rule, [
            capset(1, pid: 5, old: (0, 1 << 13, 0), new: (1 << 13, 1 << 13, 0)),               // re-raise within permitted
            capset(2, pid: 5, old: (0x100, 0x100, 0), new: (0x100, 0x100, 1 << 21 | 1 << 12)), // into inheritable from nowhere
            capset(3, pid: 5, old: (0, 0, 0), new: (0, 0, 1 << 45)),                           // a bit with no name
        ])
        XCTAssertEqual(m, [
            "C 5 added 0 (none) raised 8192 (cap_net_raw) eff 0>8192 perm 8192>8192 inh 0>0",
            "C 5 added 2101248 (cap_net_admin,cap_sys_admin) raised 0 (none) eff 256>256 perm 256>256 inh 0>2101248",
            "C 5 added 35184372088832 (cap_45) raised 0 (none) eff 0>0 perm 0>0 inh 0>35184372088832",
        ])
    }

    func testCapsetRuleNeedsSuccessAndACapabilityHeldNowhereBefore() throws {
        let b = t
        let add = (old: (UInt64(0x100), UInt64(0x100), UInt64(0)), new: (UInt64(0x100), UInt64(0x100), UInt64(1 << 21)))
        XCTAssertTrue(try b.run("x") { [capset(9, pid: $0, old: add.old, new: add.new)] }.contains("Capabilities added with capset"))
        // Failed (EPERM): nothing changed.
        XCTAssertFalse(try b.run("x") { [capset(9, pid: $0, ret: -1, old: add.old, new: add.new)] }.contains("Capabilities added with capset"))
        // Moving a permitted capability into inheritable (capsh --inh): not adding.
        XCTAssertFalse(try b.run("x") { [capset(9, pid: $0, old: (1 << 21, 1 << 21, 0), new: (1 << 21, 1 << 21, 1 << 21))] }.contains("Capabilities added with capset"))
        // A container runtime setting up a container: exempt.
        XCTAssertFalse(try b.run("runc") { [capset(9, pid: $0, old: add.old, new: add.new)] }.contains("Capabilities added with capset"))
        // A record from before these fields (all sets 0): nothing.
        XCTAssertFalse(try b.run("x") { [capset(9, pid: $0, old: (0, 0, 0), new: (0, 0, 0))] }.contains("Capabilities added with capset"))
    }
}
