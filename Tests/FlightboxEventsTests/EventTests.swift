import XCTest
@testable import FlightboxEvents
import CFlightboxEvents

final class EventTests: XCTestCase {
    func view(_ b: [UInt8], _ body: (Event?) -> Void) {
        b.withUnsafeBytes { body(Event.validated($0, sequence: 7)) }
    }

    func testSyscallFieldsRoundTrip() throws {
        let rec = EventEncoder.syscall(ts: 123, pid: 10, tid: 11, nr: 39, duration: 456, ret: -2, args: [1, 2, 3], fdKind: .fifo, cpu: 1)
        XCTAssertEqual(rec.count, 72)
        view(rec) { e in
            guard let e else { return XCTFail("not valid") }
            XCTAssertEqual(e.type, .syscall)
            XCTAssertEqual(e.timestamp, 123)
            XCTAssertEqual(e.pid, 10)
            XCTAssertEqual(e.tid, 11)
            XCTAssertEqual(e.cpu, 1)
            guard let s = e.as(SyscallRecord.self) else { return XCTFail("not a syscall view") }
            XCTAssertNil(e.as(OOMRecord.self), "a syscall record is not an OOM record")
            XCTAssertEqual(s.nr, 39)
            XCTAssertEqual(syscallName(s.nr), "getpid")
            XCTAssertEqual(s.durationNs, 456)
            XCTAssertEqual(s.ret, -2)
            XCTAssertEqual(s.argsList, [1, 2, 3])
            XCTAssertEqual(s.fdKindValue, .fifo)
            XCTAssertEqual(e.sequence, 7)
        }
    }

    func testExecVariablePart() {
        let rec = EventEncoder.exec(ts: 1, pid: 5, tid: 5, ppid: 1, uid: 1000, comm: "echo", filename: "/bin/echo", argv: ["echo", "two words", ""])
        view(rec) { e in
            let x = e?.as(ExecRecord.self)
            XCTAssertEqual(x?.filename, "/bin/echo")
            XCTAssertEqual(x?.argv, ["echo", "two words", ""])
            XCTAssertEqual(x?.comm, "echo")
            XCTAssertEqual(x?.uid, 1000)
        }
    }

    func testExitStatus() {
        view(EventEncoder.exit(ts: 1, pid: 5, tid: 5, status: 3 << 8, group: true, ppid: 1, lifetime: 9, comm: "sh")) { e in
            XCTAssertEqual(e?.as(ExitRecord.self)?.exitCode, 3)
            XCTAssertEqual(e?.as(ExitRecord.self)?.exitSignal, 0)
            XCTAssertEqual(e?.as(ExitRecord.self)?.isGroupExit, true)
        }
        view(EventEncoder.exit(ts: 1, pid: 5, tid: 6, status: 9, group: false, ppid: 1, lifetime: 9, comm: "sh")) { e in
            XCTAssertEqual(e?.as(ExitRecord.self)?.exitSignal, 9)
            XCTAssertEqual(e?.as(ExitRecord.self)?.isGroupExit, false)
        }
    }

    func testValidationRejectsBadRecords() {
        var rec = EventEncoder.syscall(ts: 1, pid: 1, tid: 1, nr: 0, duration: 1)
        rec.withUnsafeBytes { XCTAssertNil(Event.validated(UnsafeRawBufferPointer(rebasing: $0[0..<20]), sequence: 0)) }
        rec[10] = 200 // size beyond the buffer
        view(rec) { XCTAssertNil($0) }
        rec[10] = 30 // smaller than a syscall's fixed part
        view(rec) { XCTAssertNil($0) }
        var exec = EventEncoder.exec(ts: 1, pid: 5, tid: 5, ppid: 1, uid: 0, comm: "x", filename: "/x", argv: ["x"])
        exec[38] = 0xff; exec[39] = 0x7f // argv_len (offset 38) past the record
        view(exec) { XCTAssertNil($0) }
        var unknown = EventEncoder.loss(ts: 1, cpu: 0, lost: 1, firstTs: 1)
        unknown[8] = 99 // an unknown type is a valid, skippable record
        view(unknown) { XCTAssertEqual($0?.type, nil); XCTAssertEqual($0?.rawType, 99) }
    }

    func testSchemaComesFromTheHeader() {
        let types = EventSchema.json["types"]?.arrayValue ?? []
        let syscall = types.first { $0["name"]?.stringValue == "syscall" }
        XCTAssertEqual(syscall?["fixed_size"]?.intValue, 72)
        let nr = syscall?["fields"]?.arrayValue?.first { $0["name"]?.stringValue == "nr" }
        XCTAssertEqual(nr?["offset"]?.intValue, 64)
    }

    /// Every wire type is in the schema, its fields inside its fixed part and
    /// apart from each other, and format/SPEC.md gives it with that size.
    func testSchemaAndSpecCoverEveryType() throws {
        let types = EventSchema.json["types"]?.arrayValue ?? []
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let spec = try String(contentsOf: root.appendingPathComponent("format/SPEC.md"), encoding: .utf8)
        for t in EventType.allCases {
            let entry = try XCTUnwrap(types.first { $0["id"]?.intValue == Int64(t.rawValue) }, "\(t.name) missing from the schema")
            XCTAssertEqual(entry["name"]?.stringValue, t.name)
            XCTAssertEqual(entry["fixed_size"]?.intValue, Int64(t.fixedSize))
            var end = 24
            for f in entry["fields"]?.arrayValue ?? [] {
                let at = Int(f["offset"]?.intValue ?? -1), size = Int(f["size"]?.intValue ?? 0)
                XCTAssertGreaterThanOrEqual(at, end, "\(t.name).\(f["name"]?.stringValue ?? "?") overlaps the field before it")
                end = at + size
            }
            XCTAssertLessThanOrEqual(end, t.fixedSize, "\(t.name)'s fields run past its fixed part")
            XCTAssertEqual(t.fixedSize % 8, 0, "\(t.name) keeps 8-byte alignment")
            XCTAssertTrue(spec.contains("### \(t.rawValue) \(t.name) (\(t.fixedSize) bytes"), "format/SPEC.md does not give \(t.name) as \(t.fixedSize) bytes")
        }
    }

    func testJSONIsStableAndParses() throws {
        let v = JSON.object([("b", .int(-1)), ("a", .string("q\"\n\u{1}")), ("c", .array([.double(1.5), .bool(true), .null]))])
        let s = v.serialized()
        XCTAssertEqual(s, #"{"b":-1,"a":"q\"\n\u0001","c":[1.500,true,null]}"#)
        XCTAssertEqual(try JSONParser.parse(s).serialized(), s)
        XCTAssertThrowsError(try JSONParser.parse("{\"a\":"))
        XCTAssertThrowsError(try JSONParser.parse(String(repeating: "[", count: 100)))
    }

    /// Every type's typed view reads back what its encoder wrote, and a view
    /// of one type cannot be had from a record of another.
    func testEveryTypedViewRoundTrips() {
        for t in EventType.allCases {
            let rec = EventEncoder.sample(t)
            rec.withUnsafeBytes { b in
                guard let e = Event.validated(b, sequence: 3) else { return XCTFail("\(t.name): sample not valid") }
                XCTAssertEqual(e.type, t)
                XCTAssertEqual(e.size, rec.count)
                if case .unknown = e.payload { XCTFail("\(t.name): no typed view") }
                XCTAssertEqual(e.as(SyscallRecord.self) != nil, t == .syscall)
                XCTAssertEqual(e.as(OOMRecord.self) != nil, t == .oom)
                XCTAssertFalse(e.text(ts: "", comm: nil).isEmpty)
            }
        }
        EventEncoder.sample(.exec).withUnsafeBytes { b in
            let x = Event.validated(b, sequence: 0)!.as(ExecRecord.self)!
            XCTAssertEqual(x.argv, ["argv-1", "argv-2"])
            XCTAssertEqual(x.filename, "filename")
            XCTAssertEqual(x.comm, "comm")
            XCTAssertEqual(x.ppid, 3)
        }
        EventEncoder.sample(.privilege).withUnsafeBytes { b in
            let p = Event.validated(b, sequence: 0)!.as(PrivilegeRecord.self)!
            XCTAssertEqual(p.strings, ["str", "str2", "str3"])
            XCTAssertEqual(p.argsList, [5, 6, 7, 8])
        }
    }

    /// GaugeKind's numbers are enum fb_gauge_kind's.
    func testGaugeKindsAreTheHeaders() {
        let c: [UInt32] = [FB_GAUGE_FS_BYTES, FB_GAUGE_FS_INODES, FB_GAUGE_PROC_FDS, FB_GAUGE_SYS_FDS, FB_GAUGE_TASKS, FB_GAUGE_CGROUP_PIDS,
                           FB_GAUGE_MEM_AVAILABLE, FB_GAUGE_SWAP_FREE, FB_GAUGE_PSI_SOME, FB_GAUGE_PSI_FULL, FB_GAUGE_LOAD,
                           FB_GAUGE_CGROUP_MEMORY, FB_GAUGE_PROC_RSS, FB_GAUGE_THREADS, FB_GAUGE_PSI_SOME_AVG60, FB_GAUGE_PSI_FULL_AVG60,
                           FB_GAUGE_FS_DEVICE, FB_GAUGE_CGROUP_MEMORY_ANON, FB_GAUGE_BLOCK_DEVICE].map(\.rawValue)
        XCTAssertEqual(GaugeKind.allCases.map(\.rawValue), c)
        XCTAssertEqual(Set(GaugeKind.allCases.map(\.name)).count, GaugeKind.allCases.count)
    }
}
