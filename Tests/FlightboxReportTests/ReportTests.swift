import XCTest
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxReport

final class ProtoWriterTests: XCTestCase {
    /// The wire format's own examples (protobuf.dev/programming-guides/encoding).
    func testWireFormat() {
        var w = ProtoWriter()
        w.uint(1, 150)
        XCTAssertEqual(w.bytes, [0x08, 0x96, 0x01])
        w = ProtoWriter()
        w.string(2, "testing")
        XCTAssertEqual(w.bytes, [0x12, 0x07] + Array("testing".utf8))
        w = ProtoWriter()
        w.int(1, -2)  // int64: ten bytes of two's complement, not zigzag
        XCTAssertEqual(w.bytes, [0x08, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])
        w = ProtoWriter()
        w.double(5, 1.0)
        XCTAssertEqual(w.bytes, [0x29, 0, 0, 0, 0, 0, 0, 0xF0, 0x3F])
        w = ProtoWriter()
        w.message(3) { $0.uint(1, 150) }
        XCTAssertEqual(w.bytes, [0x1A, 0x03, 0x08, 0x96, 0x01])
        w = ProtoWriter()
        w.uint(60, 1)  // a field number past 15: a two-byte tag
        XCTAssertEqual(w.bytes, [0xE0, 0x03, 0x01])
    }
}

final class HTMLReportTests: XCTestCase {
    let meta = TraceMetadata(host: "h", kernelRelease: "k", machine: "x86_64", clockNs: 0, realtimeNs: 1_700_000_000_000_000_000, capture: .object([]))

    func feed(_ report: HTMLReport, _ records: [[UInt8]]) {
        for (i, r) in records.enumerated() {
            r.withUnsafeBytes { b in report.add(Event.validated(b, sequence: UInt64(i))!) }
        }
    }

    /// A gauge draining steadily gets a predicted exhaustion where its line
    /// meets zero; a level that only wobbles near its limit gets none.
    func testTrendTowardExhaustionIsDrawnOnlyForASteadyTrend() throws {
        let report = HTMLReport(title: "t", metadata: meta, snapshot: nil, arch: .host)
        var records: [[UInt8]] = []
        for s in 0..<30 {
            let t = UInt64(s) * 1_000_000_000
            // 100 GB free, 1 GB a second less: empty 100 s after the start.
            records.append(EventEncoder.gauge(ts: t, kind: .fsBytes, value: 100_000_000_000 - UInt64(s) * 1_000_000_000, limit: 200_000_000_000, name: "/data"))
            records.append(EventEncoder.gauge(ts: t, kind: .systemFds, value: 1000 + UInt64(s % 2) * 10 + UInt64(s % 3), limit: 1100, name: ""))
        }
        feed(report, records)
        let gauges = try XCTUnwrap(report.data["gauges"]?.arrayValue)
        XCTAssertEqual(gauges.map { $0["name"]?.stringValue }, ["fs_bytes_available /data", "system_fds "])
        let p = try XCTUnwrap(gauges[0]["prediction"])
        XCTAssertEqual(p["at_ns"]?.uintValue, 100_000_000_000)
        XCTAssertEqual(p["value"], .double(0))
        XCTAssertEqual(p["seconds"], .double(71))
        XCTAssertEqual(gauges[0]["bytes"], .bool(true))
        XCTAssertNil(gauges[1]["prediction"], "a wobble is no trend")
    }

    /// A finding's lineage is its process's ancestors at that moment, from
    /// the snapshot, forks and execs, the process first.
    func testLineageFollowsForksAndExecs() throws {
        let snap = ProcessSnapshot(timestamp: 0, processes: [ProcessRecord(pid: 1, ppid: 0, uid: 0, comm: "init", exe: "/sbin/init", argv: ["/sbin/init"])])
        let report = HTMLReport(title: "t", metadata: meta, snapshot: snap, arch: .host)
        feed(report, [
            ForkRecord.encode(ts: 10, pid: 1, tid: 1, childPid: 50, childTid: 50, comm: "init"),
            ExecRecord.encode(ts: 20, pid: 50, tid: 50, ppid: 1, comm: "sshd", filename: Array("/usr/sbin/sshd".utf8), argv: Array("sshd\0-D\0".utf8)),
            ForkRecord.encode(ts: 30, pid: 50, tid: 50, childPid: 60, childTid: 60, comm: "sshd"),
            ExecRecord.encode(ts: 40, pid: 60, tid: 60, ppid: 50, comm: "bash", filename: Array("/bin/bash".utf8), argv: Array("bash\0-c\0id\0".utf8)),
        ])
        report.add(finding: Finding(ts: 41, detector: "d", severity: .critical, pid: 60, tid: 60, comm: "bash", summary: "s", evidence: .object([])))
        let lineage = try XCTUnwrap(report.data["findings"]?.arrayValue?.first?["lineage"]?.arrayValue)
        XCTAssertEqual(lineage.map { $0["comm"]?.stringValue }, ["bash", "sshd", "init"])
        XCTAssertEqual(lineage.map { $0["pid"]?.uintValue }, [60, 50, 1])
        XCTAssertEqual(lineage[0]["argv"], .array([.string("bash"), .string("-c"), .string("id")]))
        XCTAssertEqual(lineage[1]["exe"], .string("/usr/sbin/sshd"))
    }

    /// Histograms keep the empty buckets between used ones (the axis stays
    /// log2); "</script>" in data cannot end the page's script.
    func testHistogramsAndEscaping() throws {
        let report = HTMLReport(title: "<t>", metadata: meta, snapshot: nil, arch: .host)
        feed(report, [
            SyscallRecord.encode(ts: 1, pid: 7, tid: 7, durationNs: 1000, nr: 0),
            SyscallRecord.encode(ts: 2, pid: 7, tid: 7, durationNs: 1_000_000, nr: 0),
        ])
        report.add(finding: Finding(ts: 2, detector: "d", severity: .info, pid: 7, tid: 7, comm: "x", summary: "</script><b>", evidence: .object([])))
        let h = try XCTUnwrap(report.data["syscalls"]?.arrayValue?.first)
        let buckets = try XCTUnwrap(h["buckets"]?.arrayValue)
        XCTAssertEqual(buckets.first, .array([.uint(1023), .uint(1)]))
        XCTAssertEqual(buckets.last, .array([.uint(1_048_575), .uint(1)]))
        XCTAssertEqual(buckets.count, 11)
        let html = report.html
        XCTAssertEqual(html.components(separatedBy: "</script>").count, 3, "only the two script elements end")
        XCTAssertTrue(html.contains("<title>Flightbox report: &lt;t&gt;</title>"))
    }
}
