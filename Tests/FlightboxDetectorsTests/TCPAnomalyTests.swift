import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxDetectors

/// Synthetic TCP records from pid 42 ("client") to 127.0.0.1:`port`.
struct TCPStream {
    var records: [[UInt8]] = []
    var pid: UInt32 = 42
    var port: UInt16 = 8080
    var daddr: [UInt8] = [127, 0, 0, 1]
    var family: UInt16 = 2

    mutating func record(_ ts: UInt64, kind: UInt8, old: UInt8 = 0, new: UInt8 = 0, latency: UInt64 = 0) {
        records.append(TCPRecord.encode(ts: ts, pid: pid, tid: pid, latencyNs: latency, saddr: [127, 0, 0, 1], daddr: daddr,
                                        sport: 40000, dport: port, family: family, kind: kind, oldstate: old, newstate: new))
    }

    /// A successful connect that took `latency`.
    mutating func ok(_ ts: UInt64, latency: UInt64 = 60_000) { record(ts, kind: 1, old: 2, new: 1, latency: latency) }
    /// ECONNREFUSED: a reset received in SYN_SENT, then the close.
    mutating func refused(_ ts: UInt64) {
        record(ts, kind: 4)
        record(ts + 5_000, kind: 1, old: 2, new: 7, latency: 50_000)
    }
    /// SYN_SENT -> CLOSE without a reset after `latency`.
    mutating func closedConnecting(_ ts: UInt64, latency: UInt64) { record(ts, kind: 1, old: 2, new: 7, latency: latency) }
    mutating func retransmit(_ ts: UInt64) { record(ts, kind: 2) }
}

let second: UInt64 = 1_000_000_000
let t0: UInt64 = 1_000 * second

final class TCPAnomalyTests: XCTestCase {
    let snapshot = ProcessSnapshot(timestamp: 0, processes: [
        ProcessRecord(pid: 42, ppid: 1, uid: 0, comm: "client", exe: "/client", argv: ["client"]),
        ProcessRecord(pid: 43, ppid: 1, uid: 0, comm: "other", exe: "/other", argv: ["other"]),
    ])

    func run(_ s: TCPStream, settings: DetectorSettings = TCPAnomalyDetector.spec.defaults) -> [Finding] {
        detect(s.records, detectors: [TCPAnomalyDetector(settings: settings)], snapshot: snapshot)
    }

    func settings(_ values: [String: SettingValue] = [:], exclude: Exclusions = Exclusions()) -> DetectorSettings {
        var s = TCPAnomalyDetector.spec.defaults
        for (k, v) in values { XCTAssertNil(s.set(k, v)) }
        s.exclude = exclude
        return s
    }

    func testHealthyTrafficGivesNothing() {
        // 3,000 fast connects over 30 s (latency 20-300 µs), a retransmit
        // every 200, a few connects the application abandoned.
        var s = TCPStream()
        for i in 0..<3_000 {
            let ts = t0 + UInt64(i) * 10_000_000
            s.ok(ts, latency: 20_000 + UInt64(i * 7919 % 280_000))
            if i % 200 == 0 { s.retransmit(ts + 1_000) }
            if i % 700 == 0 { s.closedConnecting(ts + 2_000, latency: 3_000_000) }
        }
        XCTAssertEqual(run(s), [])
    }

    func testRefusedBurstToAnEndpointThatUsedToAcceptIsCritical() throws {
        var s = TCPStream()
        for i in 0..<20 { s.ok(t0 + UInt64(i) * 10_000_000) }
        for i in 0..<10 { s.refused(t0 + second + UInt64(i) * 20_000_000) }
        let f = run(s)
        XCTAssertEqual(f.count, 1, "\(f.map(\.jsonLine))")
        let x = try XCTUnwrap(f.first)
        XCTAssertEqual(x.detector, "tcp-anomaly")
        XCTAssertEqual(x.severity, .critical)
        XCTAssertEqual(x.pid, 42)
        XCTAssertEqual(x.comm, "client")
        XCTAssertEqual(x.ts, t0 + second + 4 * 20_000_000 + 5_000, "at the fifth refusal")
        XCTAssertEqual(x.evidence["endpoint"]?.stringValue, "127.0.0.1:8080")
        XCTAssertEqual(x.evidence["kind"]?.stringValue, "stopped-accepting")
        XCTAssertEqual(x.evidence["after"]?["refused"]?.uintValue, 5)
        XCTAssertEqual(x.evidence["after"]?["connects_ok"]?.uintValue, 20)
        XCTAssertEqual(x.evidence["after"]?["resets_received"]?.uintValue, 5)
        XCTAssertEqual(x.evidence["accepted_total"]?.uintValue, 20)
        XCTAssertEqual(x.evidence["window_start_ns"]?.uintValue, t0)
        XCTAssertEqual(x.evidence["episode_start_ns"]?.uintValue, x.ts)
        XCTAssertEqual(x.evidence["processes"]?.arrayValue?.first?["comm"]?.stringValue, "client")
        XCTAssertTrue(x.summary.hasPrefix("127.0.0.1:8080 stopped accepting connections: 5 refused connects from client (pid 42)"), x.summary)
    }

    func testFailuresToAnEndpointNeverSeenAcceptingAreAWarning() throws {
        var s = TCPStream()
        for i in 0..<10 { s.refused(t0 + UInt64(i) * 20_000_000) }
        let f = run(s)
        XCTAssertEqual(f.map(\.severity), [.warning])
        XCTAssertEqual(f.first?.evidence["kind"]?.stringValue, "never-accepted")
        XCTAssertEqual(f.first?.evidence["before"]?["refused"]?.uintValue, 0)
    }

    func testWarmUp() {
        // Two accepted connects are fewer than min_accepted (3): not "used to accept".
        var s = TCPStream()
        s.ok(t0)
        s.ok(t0 + 1_000_000)
        for i in 0..<5 { s.refused(t0 + 10_000_000 + UInt64(i) * 20_000_000) }
        XCTAssertEqual(run(s).map(\.severity), [.warning])
        // Below the burst: nothing.
        var quiet = TCPStream()
        for i in 0..<20 { quiet.ok(t0 + UInt64(i) * 1_000_000) }
        for i in 0..<4 { quiet.refused(t0 + second + UInt64(i) * 20_000_000) }
        XCTAssertEqual(run(quiet), [])
        // The burst is counted per aligned window: 4 + 4 across a boundary is not one.
        var split = TCPStream()
        for i in 0..<20 { split.ok(t0 + UInt64(i) * 1_000_000) }
        for i in 0..<8 { split.refused(t0 + 9 * second + 200_000_000 + UInt64(i) * 200_000_000) }
        XCTAssertEqual(run(split), [])
    }

    func testOneFindingPerEpisodeThenHoldDownThenANewEpisode() {
        var s = TCPStream()
        for i in 0..<20 { s.ok(t0 + UInt64(i) * 1_000_000) }
        // A refusal every 100 ms for 40 s: four windows with a burst, one episode.
        for i in 0..<400 { s.refused(t0 + second + UInt64(i) * 100_000_000) }
        // Quiet for more than the hold-down (60 s), then a new burst.
        let later = t0 + 200 * second
        for i in 0..<5 { s.refused(later + UInt64(i) * 10_000_000) }
        let f = run(s)
        XCTAssertEqual(f.count, 2, "\(f.map(\.jsonLine))")
        XCTAssertEqual(f.map(\.severity), [.critical, .critical])
        XCTAssertEqual(f.last?.evidence["episode_start_ns"]?.uintValue, f.last?.ts)
        XCTAssertGreaterThanOrEqual(f.last?.ts ?? 0, later)
        // Within the hold-down, the same burst is part of the first episode.
        var again = TCPStream()
        for i in 0..<20 { again.ok(t0 + UInt64(i) * 1_000_000) }
        for i in 0..<5 { again.refused(t0 + second + UInt64(i) * 10_000_000) }
        for i in 0..<5 { again.refused(t0 + 50 * second + UInt64(i) * 10_000_000) }
        XCTAssertEqual(run(again).count, 1)
    }

    func testEscalatesOnceFromTimeoutsToRefusals() {
        var s = TCPStream()
        for i in 0..<20 { s.ok(t0 + UInt64(i) * 1_000_000) }
        // Window 1: connects time out (a warning); window 2: refused (critical); window 3: refused again.
        for i in 0..<5 { s.closedConnecting(t0 + second + UInt64(i) * 1_000_000_000, latency: 2 * second) }
        for i in 0..<5 { s.refused(t0 + 11 * second + UInt64(i) * 10_000_000) }
        for i in 0..<5 { s.refused(t0 + 21 * second + UInt64(i) * 10_000_000) }
        let f = run(s)
        XCTAssertEqual(f.map(\.severity), [.warning, .critical], "\(f.map(\.jsonLine))")
        XCTAssertEqual(f.first?.evidence["kind"]?.stringValue, "connect-failures")
        XCTAssertEqual(f.first?.evidence["after"]?["timed_out"]?.uintValue, 5)
        XCTAssertEqual(f.last?.evidence["escalated_from"]?.stringValue, "warning")
        XCTAssertEqual(f.last?.evidence["episode_start_ns"]?.uintValue, f.first?.ts)
        XCTAssertEqual(f.last?.evidence["before"]?["timed_out"]?.uintValue, 5, "the window before")
    }

    func testAbandonedConnectsAreNotFailures() {
        var s = TCPStream()
        for i in 0..<20 { s.ok(t0 + UInt64(i) * 1_000_000) }
        for i in 0..<50 { s.closedConnecting(t0 + second + UInt64(i) * 10_000_000, latency: 500_000_000) }
        XCTAssertEqual(run(s), [])
        // With a shorter connect_timeout they are timeouts.
        XCTAssertEqual(run(s, settings: settings(["connect_timeout": .duration(100_000_000)])).map(\.severity), [.warning])
    }

    func testSlowConnectsAgainstTheEndpointsBaseline() throws {
        var s = TCPStream()
        for i in 0..<100 { s.ok(t0 + UInt64(i) * 10_000_000, latency: 80_000 + UInt64(i % 5) * 10_000) }
        for i in 0..<3 { s.ok(t0 + 2 * second + UInt64(i) * 100_000_000, latency: 50_000_000) }
        let f = run(s)
        XCTAssertEqual(f.count, 1)
        let x = try XCTUnwrap(f.first)
        XCTAssertEqual(x.severity, .warning)
        XCTAssertEqual(x.evidence["kind"]?.stringValue, "slow-connects")
        XCTAssertEqual(x.evidence["baseline_samples"]?.uintValue, 100, "slow connects are not learned")
        XCTAssertEqual(x.evidence["baseline_p99_le_ns"]?.uintValue, 131_071)
        XCTAssertEqual(x.evidence["slow_connects"]?.uintValue, 3)
        // A new endpoint has no baseline: the same slow connects say nothing.
        var fresh = TCPStream()
        for i in 0..<10 { fresh.ok(t0 + UInt64(i) * 10_000_000, latency: 80_000) }
        for i in 0..<3 { fresh.ok(t0 + second + UInt64(i) * 10_000_000, latency: 50_000_000) }
        XCTAssertEqual(run(fresh), [])
        // Slow, but under the floor (10 ms): nothing.
        var floor = TCPStream()
        for i in 0..<100 { floor.ok(t0 + UInt64(i) * 10_000_000, latency: 80_000) }
        for i in 0..<3 { floor.ok(t0 + 2 * second + UInt64(i) * 10_000_000, latency: 5_000_000) }
        XCTAssertEqual(run(floor), [])
    }

    func testRetransmitJumpAgainstTheProcessBaseline() throws {
        var s = TCPStream()
        // One connect and two retransmits per 10 s window for 100 s, then 40 in one window.
        for w in 0..<10 {
            let ws = t0 + UInt64(w) * 10 * second
            s.ok(ws + second)
            s.retransmit(ws + 2 * second)
            s.retransmit(ws + 3 * second)
        }
        for i in 0..<40 { s.retransmit(t0 + 100 * second + UInt64(i) * 10_000_000) }
        let f = run(s)
        XCTAssertEqual(f.count, 1, "\(f.map(\.jsonLine))")
        let x = try XCTUnwrap(f.first)
        XCTAssertEqual(x.severity, .warning)
        XCTAssertEqual(x.pid, 42)
        XCTAssertEqual(x.evidence["kind"]?.stringValue, "retransmit-jump")
        XCTAssertEqual(x.evidence["baseline_median"]?.uintValue, 2)
        XCTAssertEqual(x.evidence["retransmits"]?.uintValue, 20, "(2 + 1) x 4 = 12 < 20 = retransmit_min")
        XCTAssertEqual(x.evidence["remotes"]?.arrayValue?.first?["endpoint"]?.stringValue, "127.0.0.1:8080")
        // Before the warm-up (6 windows), the same storm is not judged.
        var early = TCPStream()
        early.ok(t0)
        for i in 0..<40 { early.retransmit(t0 + 20 * second + UInt64(i) * 10_000_000) }
        XCTAssertEqual(run(early), [])
    }

    func testAResetIsPairedOnlyWithTheCloseThatFollowsIt() {
        // A reset on an established connection, then, 2 s later, connects
        // that time out: timeouts (a warning), not refusals (critical).
        var s = TCPStream()
        for i in 0..<20 { s.ok(t0 + UInt64(i) * 1_000_000) }
        s.record(t0 + second, kind: 4)
        for i in 0..<5 { s.closedConnecting(t0 + 3 * second + UInt64(i) * 10_000_000, latency: 2 * second) }
        let f = run(s)
        XCTAssertEqual(f.map(\.severity), [.warning])
        XCTAssertEqual(f.first?.evidence["after"]?["timed_out"]?.uintValue, 5)
        XCTAssertEqual(f.first?.evidence["after"]?["refused"]?.uintValue, 0)
    }

    func testIdleEndpointsAreForgotten() {
        // Accepted, then silent for longer than forget_after (1 h): the
        // refusals are to an endpoint no longer known to have accepted.
        var s = TCPStream()
        for i in 0..<20 { s.ok(t0 + UInt64(i) * 1_000_000) }
        s.record(t0 + 3_700 * second, kind: 2) // time moves on
        for i in 0..<5 { s.refused(t0 + 3_700 * second + UInt64(i) * 1_000_000) }
        XCTAssertEqual(run(s).first?.evidence["kind"]?.stringValue, "never-accepted")
        XCTAssertEqual(run(s, settings: settings(["forget_after": .duration(7_200 * second)])).first?.evidence["kind"]?.stringValue,
                       "stopped-accepting")
    }

    func testExcludedEndpointIsNotJudged() {
        var s = TCPStream()
        for i in 0..<20 { s.ok(t0 + UInt64(i) * 1_000_000) }
        for i in 0..<10 { s.refused(t0 + second + UInt64(i) * 20_000_000) }
        XCTAssertEqual(run(s, settings: settings(exclude: Exclusions(endpoints: ["127.0.0.1:8080"]))), [])
        XCTAssertEqual(run(s, settings: settings(exclude: Exclusions(endpoints: ["127.0.0.1:9090"]))).count, 1)
    }

    func testHostileTimestamps() {
        var s = TCPStream()
        for i in 0..<20 { s.ok(t0 + UInt64(i) * 1_000_000) }
        s.refused(0)
        s.refused(UInt64.max - 10_000)
        s.refused(1)
        for i in 0..<10 { s.refused(t0 + UInt64(i)) }
        s.retransmit(.max)
        s.ok(.max, latency: .max)
        s.closedConnecting(.max, latency: .max)
        let a = run(s), b = run(s)
        XCTAssertEqual(a, b, "deterministic")
        XCTAssertLessThanOrEqual(a.count, 2)
    }

    func testTwoEndpointsAndIPv6Names() {
        var s = TCPStream()
        var v6 = TCPStream()
        v6.family = 10
        v6.port = 5432
        v6.daddr = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 7]
        for i in 0..<20 { s.ok(t0 + UInt64(i) * 1_000_000); v6.ok(t0 + UInt64(i) * 1_000_000 + 500) }
        for i in 0..<5 { s.refused(t0 + second + UInt64(i) * 1_000_000); v6.refused(t0 + second + UInt64(i) * 1_000_000 + 500) }
        var merged = TCPStream()
        merged.records = zip(s.records, v6.records).flatMap { [$0, $1] }
        let f = run(merged)
        XCTAssertEqual(f.compactMap { $0.evidence["endpoint"]?.stringValue }, ["127.0.0.1:8080", "10.0.0.7:5432"])
        XCTAssertEqual(TCPAnomalyDetector.median([5, 1, 3, 2]), 2)
    }
}
