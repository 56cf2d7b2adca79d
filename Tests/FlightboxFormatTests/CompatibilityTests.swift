import XCTest
import FlightboxEvents
@testable import FlightboxFormat

final class CompatibilityTests: XCTestCase {
    /// The current schema with the syscall type changed by `edit`.
    func schema(editingSyscall edit: (inout [(String, JSON)], inout [JSON]) -> Void) -> JSON {
        guard case .object(var top) = EventSchema.json, let ti = top.firstIndex(where: { $0.0 == "types" }),
              case .array(var types) = top[ti].1, let si = types.firstIndex(where: { $0["name"]?.stringValue == "syscall" }),
              case .object(var sc) = types[si], let fi = sc.firstIndex(where: { $0.0 == "fields" }), case .array(var fields) = sc[fi].1 else {
            fatalError("schema shape")
        }
        edit(&sc, &fields)
        sc[sc.firstIndex(where: { $0.0 == "fields" })!].1 = .array(fields)
        types[si] = .object(sc)
        top[ti].1 = .array(types)
        return .object(top)
    }

    func field(_ name: String, _ kind: String, _ offset: Int, _ size: Int) -> JSON {
        .object([("name", .string(name)), ("kind", .string(kind)), ("offset", .int(Int64(offset))), ("size", .int(Int64(size)))])
    }

    /// A newer writer appended a field to syscalls (80-byte records): this
    /// reader skips the field and reads the rest.
    func testNewerSchemaWithAppendedField() throws {
        let newer = schema { sc, fields in
            fields.append(field("cgroup_id", "u64", 72, 8))
            sc[sc.firstIndex(where: { $0.0 == "fixed_size" })!].1 = .int(80)
        }
        let path = tempPath("newer.fbt")
        let meta = TraceMetadata(host: "h", kernelRelease: "k", machine: "x86_64", clockNs: 0, realtimeNs: 0, capture: .null, schema: newer)
        let w = try TraceWriter(path: path, codec: .zstd, metadata: meta, snapshot: ProcessSnapshot(timestamp: 0, processes: []))
        for i in 0..<10 {
            var r = EventEncoder.syscall(ts: UInt64(100 + i), pid: 7, tid: 7, nr: 39, duration: UInt64(i), ret: Int64(i), args: [1, 2, 3])
            r += withUnsafeBytes(of: UInt64(0xC0FFEE).littleEndian, Array.init)
            r[10] = 80
            try w.append(r)
        }
        try w.close()
        var seen = 0
        let reader = try TraceReader(path: path)
        reader.forEachEvent { e in
            XCTAssertEqual(e.size, 72)
            let s = e.as(SyscallRecord.self)
            XCTAssertEqual(s?.nr, 39)
            XCTAssertEqual(s?.ret, Int64(seen))
            XCTAssertEqual(s?.args(2), 3)
            seen += 1
        }
        XCTAssertEqual(seen, 10)
        XCTAssertEqual(reader.problems, [])
    }

    /// An older writer had no fd_kind and put nr before ret: fields are found
    /// by name, and the missing one reads as zero.
    func testOlderSchemaWithMovedAndMissingFields() throws {
        let older = schema { sc, fields in
            fields = [field("duration_ns", "u64", 24, 8), field("nr", "u32", 32, 4), field("ret", "s64", 40, 8), field("args", "u64[3]", 48, 24)]
            sc[sc.firstIndex(where: { $0.0 == "fixed_size" })!].1 = .int(72)
        }
        let path = tempPath("older.fbt")
        let meta = TraceMetadata(host: "h", kernelRelease: "k", machine: "x86_64", clockNs: 0, realtimeNs: 0, capture: .null, schema: older)
        let w = try TraceWriter(path: path, codec: .lz4, metadata: meta, snapshot: ProcessSnapshot(timestamp: 0, processes: []))
        var r = EventEncoder.syscall(ts: 5, pid: 9, tid: 9, nr: 0, duration: 0)
        func put<T: FixedWidthInteger>(_ v: T, at o: Int) { withUnsafeBytes(of: v.littleEndian) { for (i, b) in $0.enumerated() { r[o + i] = b } } }
        put(UInt64(1234), at: 24)
        put(UInt32(0), at: 32) // read
        put(Int64(-11), at: 40)
        put(UInt64(0xAA), at: 48)
        put(UInt64(0xBB), at: 56)
        put(UInt64(0xCC), at: 64)
        try w.append(r)
        try w.close()
        var got: (UInt64, UInt32, Int64, UInt64, FdKind)?
        try TraceReader(path: path).forEachEvent { e in
            let s = e.as(SyscallRecord.self)!
            got = (s.durationNs, s.nr, s.ret, s.args(2), s.fdKindValue)
        }
        XCTAssertEqual(got?.0, 1234)
        XCTAssertEqual(got?.1, 0)
        XCTAssertEqual(got?.2, -11)
        XCTAssertEqual(got?.3, 0xCC)
        XCTAssertEqual(got?.4, .unresolved)
    }

    /// A trace written when the file record's open flags were called `flags`,
    /// like the header's own `flags`: each is read as its own field (the
    /// adapter maps by part and name, and knows the rename).
    func testRenamedFieldAndHeaderFieldOfTheSameNameStayApart() throws {
        func rename(_ j: JSON) -> JSON {
            switch j {
            case .object(let kv): return .object(kv.map { k, v in (k, k == "name" && v == .string("open_flags") ? .string("flags") : rename(v)) })
            case .array(let a): return .array(a.map(rename))
            default: return j
            }
        }
        let older = rename(EventSchema.json)
        XCTAssertNotEqual(older, EventSchema.json)
        // And a field the file lacks, so the adapter has to move fields.
        let path = tempPath("renamed.fbt")
        let meta = TraceMetadata(host: "h", kernelRelease: "k", machine: "x86_64", clockNs: 0, realtimeNs: 0, capture: .null, schema: older)
        let w = try TraceWriter(path: path, codec: .zstd, metadata: meta, snapshot: ProcessSnapshot(timestamp: 0, processes: []))
        try w.append(FileRecord.encode(ts: 5, flags: fileTruncatedFlag, pid: 9, tid: 9, ret: 3, op: 1, dirfd: -100, openFlags: 0o1101, mode: 0o644, path: Array("/tmp/x".utf8)))
        try w.close()
        var seen = 0
        try TraceReader(path: path).forEachEvent { e in
            let f = e.as(FileRecord.self)!
            XCTAssertEqual(f.openFlags, 0o1101)
            XCTAssertEqual(e.flags, fileTruncatedFlag)
            XCTAssertEqual(f.mode, 0o644)
            XCTAssertEqual(f.path, "/tmp/x")
            seen += 1
        }
        XCTAssertEqual(seen, 1)
    }

    /// Blocks of a type this reader does not know are skipped, whole.
    func testUnknownBlockTypeIsSkipped() throws {
        let path = tempPath("unknown-block.fbt")
        let records = syntheticRecords(count: 500)
        try writeTrace(path, records, close: false)
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let first = Int(try TraceReader(path: path).eventBlocks[1].offset)
        // A type-77 block, 40 bytes of payload, inserted between event blocks.
        let payload = [UInt8](repeating: 0x5a, count: 40)
        var header = [UInt8](repeating: 0, count: TraceLayout.blockHeaderSize)
        header.withUnsafeMutableBytes { p in
            BlockHeader(type: 77, codec: 0, filter: 0, storedLength: 40, rawLength: 40, firstTimestamp: 0, lastTimestamp: 0,
                        firstSequence: 0, count: 1, payloadChecksum: payload.withUnsafeBytes { crc32c($0) }).encode(into: p.baseAddress!)
        }
        bytes.insert(contentsOf: header + payload, at: first)
        let out = tempPath("unknown-block2.fbt")
        try Data(bytes).write(to: URL(fileURLWithPath: out))
        let r = try TraceReader(path: out)
        XCTAssertEqual(readAll(r).map(\.1), Array(records.prefix(Int(r.eventCount))))
        // A mis-parse would show as a missing block marker or a checksum error.
        XCTAssertFalse(r.problems.contains { $0.message.contains("FBLK") || $0.message.contains("checksum") }, "\(r.problems)")
    }

    /// Records longer than this build's fixed part (fields appended without a
    /// schema change the reader knows of) are read, the extra bytes ignored.
    func testUnknownTrailingBytesAreSkipped() throws {
        let path = tempPath("trailing.fbt")
        var r = EventEncoder.exit(ts: 1, pid: 1, tid: 1, status: 0, group: true, ppid: 0, lifetime: 1, comm: "x")
        r += [1, 2, 3, 4, 5, 6, 7, 8]
        r[10] = UInt8(r.count)
        try writeTrace(path, [r, EventEncoder.loss(ts: 2, cpu: 0, lost: 1, firstTs: 2)])
        let got = readAll(try TraceReader(path: path))
        XCTAssertEqual(got.count, 2)
        XCTAssertEqual(got[0].1.count, 64)
    }
}

final class LargeTraceTests: XCTestCase {
    /// A bigger trace cut at sampled offsets: always readable up to the last
    /// whole block, never a crash.
    func testSampledTruncationOfALargeTrace() throws {
        let records = syntheticRecords(count: 150_000, seed: 5)
        let path = tempPath("large.fbt")
        try writeTrace(path, records, blockBytes: 64 << 10)
        let whole = try Data(contentsOf: URL(fileURLWithPath: path))
        let reader = try TraceReader(path: path)
        let ends: [(Int, Int)] = whole.withUnsafeBytes { p in
            reader.eventBlocks.map { e in
                let stored = Int(p.loadUnaligned(fromByteOffset: Int(e.offset) + 8, as: UInt32.self))
                return (Int(e.offset) + TraceLayout.blockHeaderSize + stored, Int(e.firstSequence) + Int(e.count))
            }
        }
        var rng = SplitMix(state: 11)
        let cut = tempPath("large-cut.fbt")
        for _ in 0..<60 {
            let n = Int.random(in: Int(reader.eventBlocks[0].offset)..<whole.count, using: &rng)
            try whole.prefix(n).write(to: URL(fileURLWithPath: cut))
            let r = try TraceReader(path: cut)
            var count = 0
            r.forEachEvent { _ in count += 1 }
            XCTAssertEqual(count, ends.last(where: { $0.0 <= n })?.1 ?? 0, "cut at \(n)")
            XCTAssertEqual(r.endOfData, UInt64(ends.last(where: { $0.0 <= n })?.0 ?? Int(reader.eventBlocks[0].offset)), "cut at \(n)")
        }
    }
}
