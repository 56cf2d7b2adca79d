import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

final class TCPFamilyTests: XCTestCase {
    /// N connections to a loopback listener and one to a closed port:
    /// connects with their latency, accepts, and the refused one's reset.
    func testLoopbackConnectionsAndARefusedOne() throws {
        try requireBPF()
        let trace = scratch("tcp.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "tcp", "--", Tool.load, "tcp", "5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let ports = r.stdout.split(separator: " ").compactMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(ports.count, 3, r.stdout)
        let (listen, refused) = (ports[0], ports[1])
        XCTAssertEqual(ports[2], 5, "five connections made")
        let tcp = try eventsJSON(trace, ["--type", "tcp"])
        let connects = tcp.filter { $0["old_state_name"]?.stringValue == "SYN_SENT" && $0["new_state_name"]?.stringValue == "ESTABLISHED" }
        XCTAssertEqual(connects.count, 5)
        for c in connects {
            XCTAssertEqual(c["dst_ip"]?.stringValue, "127.0.0.1")
            XCTAssertEqual(c["fields"]?["dport"]?.uintValue, listen)
            XCTAssertGreaterThan(c["fields"]?["latency_ns"]?.uintValue ?? 0, 0)
            XCTAssertEqual(c["comm"]?.stringValue, "flightbox-load", "attributed to the connecting process")
        }
        let accepts = tcp.filter { $0["old_state_name"]?.stringValue == "SYN_RECV" && $0["new_state_name"]?.stringValue == "ESTABLISHED" }
        XCTAssertEqual(accepts.count, 5)
        XCTAssertTrue(accepts.allSatisfy { $0["fields"]?["sport"]?.uintValue == listen })
        // The listener's close names its port, which the kernel has released by then.
        let closed = try XCTUnwrap(tcp.first { $0["old_state_name"]?.stringValue == "LISTEN" && $0["new_state_name"]?.stringValue == "CLOSE" })
        XCTAssertEqual(closed["fields"]?["sport"]?.uintValue, listen)
        let failed = try XCTUnwrap(tcp.first { $0["old_state_name"]?.stringValue == "SYN_SENT" && $0["new_state_name"]?.stringValue == "CLOSE" })
        XCTAssertEqual(failed["fields"]?["dport"]?.uintValue, refused)
        XCTAssertGreaterThan(failed["fields"]?["latency_ns"]?.uintValue ?? 0, 0)
        XCTAssertTrue(tcp.contains { $0["kind_name"]?.stringValue == "reset_received" && $0["fields"]?["dport"]?.uintValue == refused })
    }

    /// A listener with a full accept queue drops a SYN, and the connecting
    /// side retransmits it a second later: from a timer, in interrupt
    /// context, yet attributed to the process that connected.
    func testDroppedSYNIsRetransmitted() throws {
        try requireBPF()
        let trace = scratch("retransmit.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "tcp", "--", Tool.load, "retransmit", "1500"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let port = try XCTUnwrap(UInt64(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), r.stdout)
        let tcp = try eventsJSON(trace, ["--type", "tcp"])
        let retransmits = tcp.filter { $0["kind_name"]?.stringValue == "retransmit" }
        XCTAssertGreaterThanOrEqual(retransmits.count, 1, "\(tcp.map { $0.serialized() })")
        let syn = try XCTUnwrap(retransmits.first)
        XCTAssertEqual(syn["fields"]?["dport"]?.uintValue, port)
        XCTAssertEqual(syn["dst_ip"]?.stringValue, "127.0.0.1")
        XCTAssertEqual(syn["comm"]?.stringValue, "flightbox-load")
        let opened = try XCTUnwrap(tcp.last { $0["new_state_name"]?.stringValue == "SYN_SENT" && $0["fields"]?["dport"]?.uintValue == port })
        let wait = (syn["ts_ns"]?.uintValue ?? 0) - (opened["ts_ns"]?.uintValue ?? 0)
        XCTAssertGreaterThan(wait, 900_000_000, "the initial retransmission timeout is 1 s")
        // The given-up connect ends SYN_SENT -> CLOSE after about 1.5 s.
        XCTAssertTrue(tcp.contains { $0["old_state_name"]?.stringValue == "SYN_SENT" && $0["new_state_name"]?.stringValue == "CLOSE" && ($0["fields"]?["latency_ns"]?.uintValue ?? 0) > 1_400_000_000 })
    }

    /// Bytes per connection, summarized in the kernel: the client's and the
    /// server's side of one loopback connection, their directions, an
    /// interval summary while the client trickles, a peek not counted, and
    /// the totals at the socket's end.
    func testBytesPerConnectionAreSummarizedInTheKernel() throws {
        try requireBPF()
        let trace = scratch("netbytes.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process,tcp", "--", Tool.load, "netbytes", "15"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = r.stdout.split(separator: " ").compactMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(out.count, 3, r.stdout)
        let (port, server, sent) = (out[0], out[1], out[2])
        XCTAssertEqual(sent, 1_000_016)
        let all = try eventsJSON(trace, ["--type", "netbytes"])
        let client = all.filter { $0["fields"]?["dport"]?.uintValue == port }
        let served = all.filter { $0["fields"]?["sport"]?.uintValue == port }
        XCTAssertEqual(client.count + served.count, all.count, "only this connection moved bytes: \(all.map { $0.serialized() })")
        func sum(_ es: [JSON], _ k: String) -> UInt64 { es.reduce(0) { $0 + ($1["fields"]?[k]?.uintValue ?? 0) } }
        // The client: every byte it sent, in at least two summaries (one
        // when its trickle spanned a second), the last at the socket's end
        // with the connection's totals.
        XCTAssertGreaterThanOrEqual(client.count, 2, "\(client.map { $0.serialized() })")
        XCTAssertEqual(sum(client, "bytes_sent"), 1_000_016)
        XCTAssertEqual(sum(client, "bytes_received"), 1234)
        XCTAssertTrue(client.contains { $0["reason_name"]?.stringValue == "interval" })
        let last = try XCTUnwrap(client.last)
        XCTAssertEqual(last["reason_name"]?.stringValue, "close")
        XCTAssertEqual(last["fields"]?["total_sent"]?.uintValue, 1_000_016)
        XCTAssertEqual(last["fields"]?["total_received"]?.uintValue, 1234)
        XCTAssertTrue(client.allSatisfy { $0["direction_name"]?.stringValue == "out" && $0["dst_ip"]?.stringValue == "127.0.0.1" && $0["comm"]?.stringValue == "flightbox-load" })
        XCTAssertTrue(client.allSatisfy { ($0["fields"]?["first_ts"]?.uintValue ?? 0) <= ($0["fields"]?["last_ts"]?.uintValue ?? 0) })
        // The server (another process): the peek left the bytes queued, so
        // they are counted once, when read.
        XCTAssertTrue(served.allSatisfy { $0["pid"]?.uintValue == server && $0["direction_name"]?.stringValue == "in" }, "\(served.map { $0.serialized() })")
        XCTAssertEqual(sum(served, "bytes_received"), 1_000_016)
        XCTAssertEqual(sum(served, "bytes_sent"), 1234)
        XCTAssertEqual(served.last?["fields"]?["total_received"]?.uintValue, 1_000_016)
        // One record per summary, not per call: 27 sends at most 3 records.
        XCTAssertLessThanOrEqual(client.count, 3)
        XCTAssertGreaterThanOrEqual(sum(client, "sends"), 26)
    }

    /// A listener closes and its client keeps connecting: each SYN the
    /// kernel refuses for want of a listener is a `refused` record from the
    /// server's side (the reset it sends has no socket), attributed to the
    /// port's last listener, with the client's address and port.
    func testRefusedSYNsAreRecordedFromTheServersSide() throws {
        try requireBPF()
        let trace = scratch("refused.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "tcp", "--", Tool.load, "tcp-outage", "10", "300"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = r.stdout.split(separator: " ").compactMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(out.count, 3, r.stdout)
        let (port, refusedCount) = (out[0], out[2])
        XCTAssertGreaterThan(refusedCount, 5)
        let tcp = try eventsJSON(trace, ["--type", "tcp"])
        let refused = tcp.filter { $0["kind_name"]?.stringValue == "refused" }
        XCTAssertEqual(UInt64(refused.count), refusedCount, "one per refused connect")
        let listenerPid = try XCTUnwrap(tcp.first { $0["new_state_name"]?.stringValue == "LISTEN" }?["pid"]?.uintValue)
        for e in refused {
            XCTAssertEqual(e["fields"]?["sport"]?.uintValue, port)
            XCTAssertEqual(e["src_ip"]?.stringValue, "127.0.0.1")
            XCTAssertEqual(e["dst_ip"]?.stringValue, "127.0.0.1")
            XCTAssertGreaterThan(e["fields"]?["dport"]?.uintValue ?? 0, 0, "the client's port")
            XCTAssertEqual(e["pid"]?.uintValue, listenerPid)
        }
        // Each comes before the client's reset for the same connection.
        let first = try XCTUnwrap(refused.first)
        let reset = try XCTUnwrap(tcp.first { $0["kind_name"]?.stringValue == "reset_received" && $0["fields"]?["sport"]?.uintValue == first["fields"]?["dport"]?.uintValue })
        XCTAssertLessThanOrEqual(first["ts_ns"]?.uintValue ?? .max, reset["ts_ns"]?.uintValue ?? 0)
    }
}
