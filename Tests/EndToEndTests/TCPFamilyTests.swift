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
