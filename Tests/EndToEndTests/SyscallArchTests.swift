import XCTest
import FlightboxEvents
import FlightboxFormat

/// A trace is read with the syscall numbering it was recorded with, whatever
/// machine reads it.
final class SyscallArchTests: XCTestCase {
    /// A trace as an arm64 recorder writes it: machine aarch64, syscall_table arm64.
    func writeArm64Trace(_ path: String, _ records: [[UInt8]]) throws {
        guard case .object(let kv) = EventSchema.json else { return XCTFail("schema is not an object") }
        let schema = JSON.object(kv.map { $0.0 == "syscall_table" ? ($0.0, .string("arm64")) : $0 })
        let meta = TraceMetadata(host: "arm", kernelRelease: "6.18.0", machine: "aarch64", clockNs: 0, realtimeNs: 0,
                                 capture: .object([]), schema: schema)
        let w = try TraceWriter(path: path, codec: .zstd, metadata: meta,
                                snapshot: ProcessSnapshot(timestamp: 0, processes: [ProcessRecord(pid: 42, ppid: 1, uid: 0, comm: "db", exe: "/db", argv: ["db"])]))
        for r in records { try w.append(r) }
        try w.close()
    }

    func testArm64TraceIsNamedAndJudgedWithArm64Numbers() throws {
        let trace = scratch("arm64.fbt")
        defer { unlink(trace) }
        var recs: [[UInt8]] = []
        var ts: UInt64 = 1_000_000
        for i in 0..<200 {
            ts += 10_000
            recs.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 42, nr: 63, duration: 1_000 + UInt64(i % 3) * 1_000, fdKind: .regular))
        }
        // arm64 nanosleep (101; x86_64's ptrace) waits by design; a slow read (63; x86_64's uname), past the storage ceiling, is an outlier.
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 42, tid: 42, nr: 101, duration: 5_000_000_000))
        recs.append(EventEncoder.syscall(ts: ts + 2, pid: 42, tid: 42, nr: 63, duration: 150_000_000, ret: 4096, fdKind: .regular))
        try writeArm64Trace(trace, recs)

        let events = try eventsJSON(trace, ["--type", "syscall"])
        XCTAssertEqual(Set(events.compactMap { $0["syscall"]?.stringValue }), ["read", "nanosleep"])
        let text = try Tool.flightbox("events", trace, "--limit", "1")
        XCTAssertTrue(text.stdout.contains("read(0x0, 0x0, 0x0) = 0"), text.stdout)

        let replay = try Tool.flightbox("replay", trace, "--format", "json")
        XCTAssertEqual(replay.status, 0, replay.stderr)
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        XCTAssertEqual(findings.count, 1, replay.stdout)
        XCTAssertEqual(findings.first?["evidence"]?["syscall"]?.stringValue, "read")
        XCTAssertEqual(findings.first?["evidence"]?["nr"]?.uintValue, 63)
    }
}
