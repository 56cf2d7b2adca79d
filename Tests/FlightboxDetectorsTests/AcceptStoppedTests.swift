import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxDetectors

/// Synthetic TCP records of a loopback server (pid 10, port 8080) and its
/// client (pid 42): the records the tcp family writes for each side.
struct ServerStream {
    var records: [[UInt8]] = []
    var server: UInt32 = 10
    var client: UInt32 = 42
    var port: UInt16 = 8080
    var local: [UInt8] = [127, 0, 0, 1]

    mutating func tcp(_ ts: UInt64, pid: UInt32, saddr: [UInt8], daddr: [UInt8], sport: UInt16, dport: UInt16, kind: UInt8,
                      old: UInt8 = 0, new: UInt8 = 0, latency: UInt64 = 0) {
        records.append(TCPRecord.encode(ts: ts, pid: pid, tid: pid, latencyNs: latency, saddr: saddr, daddr: daddr,
                                        sport: sport, dport: dport, family: 2, kind: kind, oldstate: old, newstate: new))
    }

    mutating func listen(_ ts: UInt64) { tcp(ts, pid: server, saddr: local, daddr: [0, 0, 0, 0], sport: port, dport: 0, kind: 1, old: 7, new: 10) }
    /// The listener's close; `port` 0 as older captures wrote it.
    mutating func closeListener(_ ts: UInt64, port: UInt16? = nil) {
        tcp(ts, pid: server, saddr: local, daddr: [0, 0, 0, 0], sport: port ?? self.port, dport: 0, kind: 1, old: 10, new: 7)
    }
    /// A connect accepted: the client's SYN_SENT -> ESTABLISHED and the server's SYN_RECV -> ESTABLISHED.
    mutating func accepted(_ ts: UInt64) {
        tcp(ts, pid: client, saddr: local, daddr: local, sport: 50000, dport: port, kind: 1, old: 2, new: 1, latency: 50_000)
        tcp(ts &+ 5_000, pid: server, saddr: local, daddr: local, sport: port, dport: 50000, kind: 1, old: 3, new: 1)
    }
    /// A connect refused: reset received, close in SYN_SENT.
    mutating func refused(_ ts: UInt64, to daddr: [UInt8]? = nil) {
        tcp(ts, pid: client, saddr: local, daddr: daddr ?? local, sport: 50001, dport: port, kind: 4)
        tcp(ts &+ 3_000, pid: client, saddr: local, daddr: daddr ?? local, sport: 0, dport: port, kind: 1, old: 2, new: 7, latency: 40_000)
    }
    /// A SYN from `remote` refused by the kernel, as the server's side records it.
    mutating func refusedSYN(_ ts: UInt64, from remote: [UInt8] = [10, 0, 0, 7]) {
        tcp(ts, pid: server, saddr: [10, 0, 0, 1], daddr: remote, sport: port, dport: 40000, kind: 5)
    }
    /// A connect given up after `wait` without an answer.
    mutating func unanswered(_ ts: UInt64, wait: UInt64 = 1_200_000_000) {
        tcp(ts, pid: client, saddr: local, daddr: local, sport: 0, dport: port, kind: 1, old: 2, new: 7, latency: wait)
    }

    /// Accepts every 50 ms from `start` for `duration`; returns the end.
    mutating func serve(from start: UInt64, for duration: UInt64) -> UInt64 {
        var ts = start
        while ts < start + duration {
            accepted(ts)
            ts += 50_000_000
        }
        return ts
    }
}

final class AcceptStoppedTests: XCTestCase {
    let s: UInt64 = 1_000_000_000
    let snapshot = ProcessSnapshot(timestamp: 0, processes: [
        ProcessRecord(pid: 10, ppid: 1, uid: 0, comm: "server", exe: "/server", argv: ["server"]),
        ProcessRecord(pid: 42, ppid: 1, uid: 0, comm: "client", exe: "/client", argv: ["client"]),
    ])

    func run(_ st: ServerStream, settings: DetectorSettings = AcceptStoppedDetector.spec.defaults) -> [Finding] {
        detect(st.records, detectors: [AcceptStoppedDetector(settings: settings)], snapshot: snapshot)
    }

    func testClosedListenerWithClientsStillConnectingIsCritical() throws {
        var st = ServerStream()
        st.listen(1_000 * s)
        var ts = st.serve(from: 1_000 * s + s, for: 20 * s)
        st.closeListener(ts)
        for _ in 0..<100 { ts += 50_000_000; st.refused(ts) }
        let f = run(st)
        XCTAssertEqual(f.count, 1, "one finding per episode: \(f.map(\.jsonLine))")
        let x = try XCTUnwrap(f.first)
        XCTAssertEqual(x.severity, .critical)
        XCTAssertEqual(x.pid, 10)
        XCTAssertEqual(x.comm, "server")
        XCTAssertEqual(x.evidence["kind"]?.stringValue, "listener-closed")
        XCTAssertEqual(x.evidence["port"]?.uintValue, 8080)
        XCTAssertEqual(x.evidence["accepted_total"]?.uintValue, 400)
        XCTAssertEqual(x.evidence["clients"]?.arrayValue?.first?["comm"]?.stringValue, "client")
        // At the first refusal 2 s (the grace) or more after the close.
        let refused = try XCTUnwrap(x.evidence["refused"]?.uintValue)
        XCTAssertEqual(refused, 40)
        XCTAssertTrue(x.summary.contains("closed 2.0"), x.summary)
    }

    func testRemoteClientsRefusedAreSeenFromTheServersSide() throws {
        // Only the server is on this host: its accepts, its close, and the SYNs its kernel refused.
        var st = ServerStream()
        st.listen(1_000 * s)
        var ts = st.serve(from: 1_000 * s + s, for: 20 * s)
        st.closeListener(ts)
        for i in 0..<100 { ts += 50_000_000; st.refusedSYN(ts, from: [10, 0, 0, UInt8(7 + i % 2)]) }
        let x = try XCTUnwrap(run(st).first)
        XCTAssertEqual(x.evidence["kind"]?.stringValue, "listener-closed")
        XCTAssertEqual(x.evidence["refused"]?.uintValue, 40)
        XCTAssertEqual(x.evidence["client_addresses"]?.arrayValue?.first?["address"]?.stringValue, "10.0.0.7")
        XCTAssertEqual(x.evidence["client_addresses"]?.arrayValue?.count, 2)
    }

    func testBothSidesOfALocalRefusalCountOnce() throws {
        var st = ServerStream()
        st.listen(1_000 * s)
        var ts = st.serve(from: 1_000 * s + s, for: 20 * s)
        st.closeListener(ts)
        for _ in 0..<100 {
            ts += 50_000_000
            st.refusedSYN(ts - 20_000, from: [127, 0, 0, 1])
            st.refused(ts)
        }
        let x = try XCTUnwrap(run(st).first)
        // 41, not 82: the client's view of each refusal is not counted again (and the
        // 40th, recorded by the server 20 µs before the grace ended, did not judge yet).
        XCTAssertEqual(x.evidence["refused"]?.uintValue, 41)
    }

    func testListenerOpenButNotAcceptingIsCritical() throws {
        var st = ServerStream()
        st.listen(1_000 * s)
        var ts = st.serve(from: 1_000 * s + s, for: 20 * s)
        for _ in 0..<8 { st.unanswered(ts + 1_200_000_000); ts += 1_250_000_000 }
        let f = run(st)
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(f.first?.evidence["kind"]?.stringValue, "not-accepting")
        XCTAssertEqual(f.first?.evidence["unanswered"]?.uintValue, 5)
        XCTAssertEqual(f.first?.evidence["listeners_open"]?.uintValue, 1)
    }

    func testQuietListenerIsNotAFinding() {
        var st = ServerStream()
        st.listen(1_000 * s)
        let ts = st.serve(from: 1_000 * s + s, for: 20 * s)
        // Nobody comes for a minute; another port's traffic moves time on.
        var other = ServerStream()
        other.port = 9090
        _ = other.serve(from: ts, for: 60 * s)
        st.records += other.records
        XCTAssertEqual(run(st), [])
    }

    func testRestartWithinTheGraceIsNotAFinding() {
        var st = ServerStream()
        st.listen(1_000 * s)
        var ts = st.serve(from: 1_000 * s + s, for: 20 * s)
        st.closeListener(ts)
        for _ in 0..<20 { ts += 50_000_000; st.refused(ts) }  // 1 s of refusals
        st.listen(ts + 10_000_000)
        _ = st.serve(from: ts + 50_000_000, for: 20 * s)
        XCTAssertEqual(run(st), [])
    }

    func testRestartAfterTheGraceIsAFinding() {
        var st = ServerStream()
        st.listen(1_000 * s)
        var ts = st.serve(from: 1_000 * s + s, for: 20 * s)
        st.closeListener(ts)
        for _ in 0..<60 { ts += 50_000_000; st.refused(ts) }  // 3 s of refusals
        st.listen(ts + 10_000_000)
        _ = st.serve(from: ts + 50_000_000, for: 20 * s)
        XCTAssertEqual(run(st).count, 1)
    }

    func testWarmUpOneBurstOfAcceptsIsNotASteadyService() {
        // 60 accepts in 0.6 s (one window), then refusals for 10 s.
        var st = ServerStream()
        st.listen(1_000 * s)
        var ts = 1_000 * s + s
        for _ in 0..<60 { st.accepted(ts); ts += 10_000_000 }
        st.closeListener(ts)
        for _ in 0..<200 { ts += 50_000_000; st.refused(ts) }
        XCTAssertEqual(run(st), [])
    }

    func testRefusalsFromAnotherHostsPortAreNotOurs() {
        var st = ServerStream()
        st.listen(1_000 * s)
        var ts = st.serve(from: 1_000 * s + s, for: 20 * s)
        // The client connects to port 8080 of 10.0.0.9, a remote service.
        for _ in 0..<100 { ts += 50_000_000; st.refused(ts, to: [10, 0, 0, 9]) }
        XCTAssertEqual(run(st), [])
    }

    func testOldCapturesCloseWithoutAPort() {
        var st = ServerStream()
        st.listen(1_000 * s)
        var ts = st.serve(from: 1_000 * s + s, for: 20 * s)
        st.closeListener(ts, port: 0)
        for _ in 0..<100 { ts += 50_000_000; st.refused(ts) }
        XCTAssertEqual(run(st).first?.evidence["kind"]?.stringValue, "listener-closed")
    }

    func testClientsThatGiveUpWithinTheGraceAreJudgedAtTheWindowEnd() throws {
        var st = ServerStream()
        st.listen(1_000 * s)
        var ts = st.serve(from: 1_000 * s + s, for: 20 * s)
        st.closeListener(ts)
        for _ in 0..<10 { ts += 50_000_000; st.refused(ts) }  // 0.5 s of refusals, then the client gives up
        var other = ServerStream()
        other.port = 9090
        _ = other.serve(from: ts, for: 20 * s)
        st.records += other.records
        let x = try XCTUnwrap(run(st).first)
        XCTAssertEqual(x.ts % (5 * s), 0, "at a window boundary")
        XCTAssertEqual(x.evidence["refused"]?.uintValue, 10)
    }

    func testEpisodeClosesAfterHoldDownAndReopens() {
        var st = ServerStream()
        st.listen(1_000 * s)
        var ts = st.serve(from: 1_000 * s + s, for: 20 * s)
        st.closeListener(ts)
        for _ in 0..<100 { ts += 50_000_000; st.refused(ts) }
        st.listen(ts + 1_000)
        ts = st.serve(from: ts + 100 * s, for: 20 * s)
        st.closeListener(ts)
        for _ in 0..<100 { ts += 50_000_000; st.refused(ts) }
        XCTAssertEqual(run(st).count, 2)
    }

    func testHostileTimestampsDoNotTrap() {
        var st = ServerStream()
        st.listen(UInt64.max - 40 * s)
        var ts = st.serve(from: UInt64.max - 39 * s, for: 20 * s)
        st.closeListener(ts)
        st.refused(0)
        for _ in 0..<100 { ts += 50_000_000; st.refused(ts) }
        st.refused(UInt64.max - 10_000)
        _ = run(st)
    }

    func testSettingsAreDeclaredAndApplied() {
        var settings = AcceptStoppedDetector.spec.defaults
        XCTAssertNil(settings.set("grace", .duration(10 * s)))
        var st = ServerStream()
        st.listen(1_000 * s)
        var ts = st.serve(from: 1_000 * s + s, for: 20 * s)
        st.closeListener(ts)
        for _ in 0..<100 { ts += 50_000_000; st.refused(ts) }  // 5 s
        XCTAssertEqual(run(st, settings: settings), [])
        XCTAssertNotNil(DetectorRegistry.spec("accept-stopped"))
    }
}
