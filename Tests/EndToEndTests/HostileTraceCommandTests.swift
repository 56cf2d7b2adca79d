import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

/// Every command on traces an attacker made, with every checksum valid, so
/// what is tested is the code behind them (issue 9's campaign): no command
/// traps or hangs, each says what is wrong, and `events` and `inspect` agree.
final class HostileTraceCommandTests: XCTestCase {
    /// A closed trace of `n` syscalls of one process in blocks of ~50, whose
    /// last syscall took 2^64 - 1 ns, with hostile numbers in its metadata.
    func makeTrace(_ name: String, n: Int = 600) throws -> String {
        let path = scratch(name)
        let meta = TraceMetadata(host: "hostile", kernelRelease: "6.18", machine: "x86_64", clockNs: 1_000, realtimeNs: 1_700_000_000_000_000_000,
                                 capture: .object([("codec", .string("zstd")), ("huge", .double(9.3e18)), ("tiny", .double(-1e300))]))
        let w = try TraceWriter(path: path, codec: .zstd, metadata: meta, snapshot: ProcessSnapshot(timestamp: 1_000, processes: [
            ProcessRecord(pid: 7, ppid: 1, uid: 0, comm: "victim", exe: "/v", argv: ["v"]),
        ]))
        for i in 0..<n {
            let slow = i == n - 1
            try w.append(EventEncoder.syscall(ts: 10_000 + UInt64(i) * 1_000, pid: 7, tid: 7, nr: 0, duration: slow ? .max : 2_000 + UInt64(i % 7), ret: 1, args: [3, 0, 64], fdKind: .regular))
            if i % 50 == 49 { try w.flush() }
        }
        try w.close()
        return path
    }

    /// (offset, length, type) of each block.
    func blocks(_ b: [UInt8]) -> [(offset: Int, length: Int, type: UInt16)] {
        var out: [(Int, Int, UInt16)] = []
        var o = TraceLayout.headerSize
        b.withUnsafeBytes { p in
            while o + TraceLayout.blockHeaderSize <= p.count, p.loadUnaligned(fromByteOffset: o, as: UInt32.self) == TraceLayout.blockSync {
                let n = TraceLayout.blockHeaderSize + Int(p.loadUnaligned(fromByteOffset: o + 8, as: UInt32.self))
                out.append((o, n, p.loadUnaligned(fromByteOffset: o + 4, as: UInt16.self)))
                o += n
            }
        }
        return out
    }

    func put<T: FixedWidthInteger>(_ b: inout [UInt8], _ at: Int, _ v: T) {
        b.withUnsafeMutableBytes { $0.storeBytes(of: v.littleEndian, toByteOffset: at, as: T.self) }
    }

    func hostile(_ name: String, _ edit: (inout [UInt8], [(offset: Int, length: Int, type: UInt16)]) -> Void) throws -> String {
        let src = try makeTrace(name + ".src.fbt")
        var b = Array(try Data(contentsOf: URL(fileURLWithPath: src)))
        edit(&b, blocks(b))
        TraceMutator.fixChecksums(&b)
        let path = scratch(name + ".fbt")
        try Data(b).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// Runs inspect (text and JSON), events, replay and repair; none may trap
    /// or hang, and events and inspect count the same records.
    @discardableResult
    func exerciseCommands(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> (events: [JSON], info: JSON, repaired: String) {
        let repaired = path + ".repaired.fbt"
        for args in [["inspect", path], ["inspect", path, "--format", "json"], ["events", path, "--format", "json"], ["replay", path, "--format", "json"],
                     ["repair", path, "-o", repaired], ["inspect", repaired], ["events", repaired]] {
            let r = try Tool.run(Tool.flightbox, args, timeout: 60)
            XCTAssertFalse(r.signaled, "\(args.joined(separator: " ")) died of signal \(r.status): \(r.stderr)", file: file, line: line)
            XCTAssertTrue(r.status == 0 || r.status == 1, "\(args.joined(separator: " ")): exit \(r.status): \(r.stderr)", file: file, line: line)
        }
        let events = try eventsJSON(path)
        let info = try inspectJSON(path)
        XCTAssertEqual(info["events"]?.uintValue, UInt64(events.count), "inspect and events agree", file: file, line: line)
        let seqs = events.compactMap { $0["seq"]?.uintValue }
        XCTAssertEqual(Set(seqs).count, seqs.count, "no record read twice", file: file, line: line)
        // repair keeps every record's number and bytes
        let fixed = try eventsJSON(repaired)
        XCTAssertEqual(fixed.compactMap { $0["seq"]?.uintValue }.sorted(), seqs.sorted(), "repair never renumbers", file: file, line: line)
        return (events, info, repaired)
    }

    func testHugeNumbersAndAnEndlessSyscall() throws {
        let path = try makeTrace("numbers.fbt")
        let (events, _, _) = try exerciseCommands(path)
        XCTAssertEqual(events.count, 600)
        let replay = try Tool.flightbox("replay", path, "--format", "json")
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertTrue(replay.stdout.contains("\"latency_ns\":18446744073709551615"), replay.stdout)
        XCTAssertTrue(try Tool.flightbox("inspect", path).stdout.contains("-1e+300"))
    }

    func testBlockHoldingMoreRecordsThanItsCount() throws {
        let path = try hostile("overfull") { b, bl in
            let ev = bl.filter { $0.type == BlockType.events.rawValue }
            put(&b, ev[2].offset + 40, UInt32(10))
        }
        let (events, info, _) = try exerciseCommands(path)
        XCTAssertEqual(events.count, 600 - 40)
        XCTAssertEqual(info["missing"]?.uintValue, 40)
        XCTAssertTrue(try Tool.flightbox("events", path).stderr.contains("past the 10 its header counts"))
    }

    func testSequenceNumbersNear2To64() throws {
        let path = try hostile("seq-top") { b, bl in
            let ev = bl.filter { $0.type == BlockType.events.rawValue }
            put(&b, ev[3].offset + 32, UInt64.max - 5)
        }
        let (events, _, _) = try exerciseCommands(path)
        XCTAssertEqual(events.count, 550)
    }

    func testBackwardTimestampsAndAHostileIndex() throws {
        let path = try hostile("backwards") { b, bl in
            let ev = bl.filter { $0.type == BlockType.events.rawValue }
            put(&b, ev[0].offset + 16, UInt64.max)
            put(&b, ev[0].offset + 24, UInt64(5))
            // Every index entry claims 4 billion records.
            let idx = bl.first { $0.type == BlockType.index.rawValue }!
            for e in stride(from: idx.offset + TraceLayout.blockHeaderSize, to: idx.offset + idx.length, by: TraceLayout.indexEntrySize) {
                put(&b, e + 32, UInt32.max)
            }
        }
        let (events, info, _) = try exerciseCommands(path)
        XCTAssertEqual(events.count, 600)
        XCTAssertEqual(info["events"]?.uintValue, 600, "counts bounded by the blocks, not the index")
    }

    func testDuplicatedBlockIsReadOnce() throws {
        let path = try hostile("duplicate") { b, bl in
            let ev = bl.filter { $0.type == BlockType.events.rawValue }
            let x = ev[4]
            b.insert(contentsOf: b[x.offset..<(x.offset + x.length)], at: x.offset + x.length)
            // The index now points one block short from there on; cut it off: an unfinished file.
            let idx = blocks(b).first { $0.type == BlockType.index.rawValue }!
            b = Array(b[..<idx.offset])
        }
        let (events, info, _) = try exerciseCommands(path)
        XCTAssertEqual(events.count, 600)
        XCTAssertEqual(info["events"]?.uintValue, 600)
        XCTAssertTrue(try Tool.flightbox("events", path).stderr.contains("duplicated block"))
    }

    func testDroppedIndexEntryIsNoticed() throws {
        let path = try hostile("dropped-entry") { b, bl in
            let idx = bl.first { $0.type == BlockType.index.rawValue }!
            let e = idx.offset + TraceLayout.blockHeaderSize + 2 * TraceLayout.indexEntrySize
            b.removeSubrange(e..<(e + TraceLayout.indexEntrySize))
            let n = UInt32(idx.length - TraceLayout.blockHeaderSize - TraceLayout.indexEntrySize)
            put(&b, idx.offset + 8, n)
            put(&b, idx.offset + 12, n)
            put(&b, idx.offset + 40, n / UInt32(TraceLayout.indexEntrySize))
        }
        let (events, _, _) = try exerciseCommands(path)
        XCTAssertEqual(events.count, 600)
        XCTAssertTrue(try Tool.flightbox("events", path).stderr.contains("not in the index"))
    }

    func testIndexAndBlockHeaderDisagreeing() throws {
        let path = try hostile("disagree") { b, bl in
            let idx = bl.first { $0.type == BlockType.index.rawValue }!
            let e = idx.offset + TraceLayout.blockHeaderSize + 1 * TraceLayout.indexEntrySize
            put(&b, e + 24, UInt64(9_999))
            put(&b, e + 32, UInt32(3))
        }
        let (events, info, _) = try exerciseCommands(path)
        XCTAssertEqual(events.count, 600)
        XCTAssertEqual(info["events"]?.uintValue, 600)
    }

    /// Repair hands over records in this build's layout, so the copy carries
    /// this build's schema. A trace whose file records had a smaller fixed
    /// part (no `mode`, lengths at 44) must repair to one that still reads
    /// right: labelled with the old schema, the copy's paths were read from
    /// the wrong place.
    func testRepairOfAnOlderLayoutKeepsEveryField() throws {
        func field(_ name: String, _ kind: String, _ offset: Int, _ size: Int) -> JSON {
            .object([("name", .string(name)), ("kind", .string(kind)), ("offset", .int(Int64(offset))), ("size", .int(Int64(size)))])
        }
        let olderFile = JSON.object([
            ("id", .int(6)), ("name", .string("file")), ("fixed_size", .int(48)),
            ("fields", .array([field("ret", "s64", 24, 8), field("op", "u32", 32, 4), field("dirfd", "s32", 36, 4), field("flags", "u32", 40, 4),
                               field("path_len", "u16", 44, 2), field("path2_len", "u16", 46, 2)])),
            ("trailing", .array([.object([("name", .string("path")), ("length_field", .string("path_len")), ("kind", .string("bytes"))]),
                                 .object([("name", .string("path2")), ("length_field", .string("path2_len")), ("kind", .string("bytes"))])])),
        ])
        guard case .object(var schema) = EventSchema.json, let t = schema.firstIndex(where: { $0.0 == "types" }),
              case .array(var types) = schema[t].1, let f = types.firstIndex(where: { $0["name"] == .string("file") }) else { return XCTFail("schema") }
        types[f] = olderFile
        schema[t].1 = .array(types)
        let path = scratch("older-layout.fbt")
        let meta = TraceMetadata(host: "h", kernelRelease: "6.18", machine: "x86_64", clockNs: 0, realtimeNs: 0, capture: .object([("codec", .string("zstd"))]),
                                 schema: .object(schema))
        let w = try TraceWriter(path: path, codec: .zstd, metadata: meta, snapshot: ProcessSnapshot(timestamp: 0, processes: []))
        var rec = EventEncoder.header(type: .file, size: 48 + 6, ts: 5, pid: 9, tid: 9)
        EventEncoder.put(&rec, 24, Int64(3))
        EventEncoder.put(&rec, 32, UInt32(1))
        EventEncoder.put(&rec, 36, Int32(-100))
        EventEncoder.put(&rec, 40, UInt32(0o1101))
        EventEncoder.put(&rec, 44, UInt16(6))
        rec.replaceSubrange(48..<54, with: Array("/etc/x".utf8))
        try w.append(rec)
        try w.close()
        let repaired = path + ".repaired.fbt"
        let r = try Tool.flightbox("repair", path, "-o", repaired)
        XCTAssertEqual(r.status, 0, r.stderr)
        for file in [path, repaired] {
            let e = try XCTUnwrap(try eventsJSON(file).first, file)
            XCTAssertEqual(e["fields"]?["open_flags"]?.uintValue, 0o1101, file)
            XCTAssertEqual(e["fields"]?["path"]?.stringValue, "/etc/x", file)
        }
    }

    func testAFIFOIsRefusedNotWaitedOn() throws {
        let path = scratch("fifo")
        unlink(path)
        XCTAssertEqual(mkfifo(path, 0o600), 0)
        for cmd in ["inspect", "events", "replay", "repair"] {
            let r = try Tool.run(Tool.flightbox, [cmd, path], timeout: 10)
            XCTAssertFalse(r.signaled, "\(cmd) hung or died on a FIFO")
            XCTAssertEqual(r.status, 1, "\(cmd): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("a FIFO, not a regular file"), "\(cmd): \(r.stderr)")
        }
    }
}
