import XCTest
import FlightboxEvents
@testable import FlightboxFormat

/// format/vectors: small traces with their expected decoding, checked both
/// ways. FLIGHTBOX_UPDATE_VECTORS=1 rewrites them (then read the diff).
final class VectorTests: XCTestCase {
    static let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("format/vectors")
    var updating: Bool { ProcessInfo.processInfo.environment["FLIGHTBOX_UPDATE_VECTORS"] == "1" }

    /// One record of every type (at least), fixed values, two blocks.
    static func vectorRecords() -> [[UInt8]] {
        var out = [
            EventEncoder.fork(ts: 1_000_100, pid: 100, tid: 100, childPid: 101, childTid: 101, thread: false, comm: "sh"),
            EventEncoder.exec(ts: 1_000_200, pid: 101, tid: 101, ppid: 100, uid: 1000, comm: "cat", filename: "/usr/bin/cat", argv: ["cat", "/etc/hostname"]),
            EventEncoder.syscall(ts: 1_000_300, pid: 101, tid: 101, nr: 257, duration: 2_500, ret: 3, args: [0xffffff9c, 0x7ffc_0000_1000, 0], cpu: 1),
            EventEncoder.syscall(ts: 1_000_400, pid: 101, tid: 101, nr: 0, duration: 1_200, ret: 9, args: [3, 0x7ffc_0000_2000, 131072], fdKind: .regular, cpu: 1),
            EventEncoder.syscall(ts: 1_000_500, pid: 101, tid: 102, nr: 0, duration: 20_000_000, ret: -4, args: [0, 0x7ffc_0000_3000, 1], fdKind: .fifo, cpu: 0),
            EventEncoder.loss(ts: 1_000_600, cpu: 1, lost: 7, firstTs: 1_000_550),
            EventEncoder.exit(ts: 1_000_700, pid: 101, tid: 102, status: 0, group: false, ppid: 100, lifetime: 400, comm: "cat"),
            EventEncoder.exit(ts: 1_000_800, pid: 101, tid: 101, status: 1 << 8, group: true, ppid: 100, lifetime: 600, comm: "cat"),
        ]
        // Every other type with each of its fields set to a distinct value.
        let covered: Set<EventType> = [.fork, .exec, .syscall, .loss, .exit]
        for (i, t) in EventType.allCases.filter({ !covered.contains($0) }).enumerated() {
            out.append(EventEncoder.sample(t, ts: 1_000_900 + UInt64(i) * 100, pid: 101, tid: 101))
        }
        return out
    }

    static func write(_ path: String, codec: Codec, close: Bool = true) throws {
        let meta = TraceMetadata(host: "vector", kernelRelease: "6.18.0", machine: "x86_64", clockNs: 1_000_000,
                                 realtimeNs: 1_764_028_800_000_000_000, capture: .object([("codec", .string(codec.name))]))
        let snap = ProcessSnapshot(timestamp: 1_000_000, processes: [ProcessRecord(pid: 100, ppid: 1, uid: 1000, comm: "sh", exe: "/bin/sh", argv: ["sh"])])
        let w = try TraceWriter(path: path, codec: codec, blockBytes: 256, metadata: meta, snapshot: snap)
        for (i, r) in vectorRecords().enumerated() {
            try w.append(r)
            if i == 8 { try w.flush() }
        }
        if close { try w.close() } else { try w.flush() }
    }

    /// What the reader of format 1.0 made of the vectors kept in
    /// format/vectors/v1.0: records read and a CRC-32C of their bytes,
    /// taken with that reader. This one must decode them byte for byte alike.
    static let legacy: [(String, Int, UInt32)] = [
        ("minimal-none", 8, 2413816271), ("minimal-zstd", 8, 2413816271), ("minimal-lz4", 8, 2413816271),
        ("unfinished-none", 8, 2413816271), ("cut-none", 4, 2779985269), ("corrupt-none", 4, 2616490410),
    ]

    func testVersion1_0VectorsDecodeByteForByte() throws {
        for (name, count, crc) in VectorTests.legacy {
            let r = try TraceReader(path: VectorTests.dir.appendingPathComponent("v1.0/\(name).fbt").path)
            var bytes: [UInt8] = []
            var n = 0
            r.forEachEvent { e in bytes += Array(e.bytes); n += 1 }
            XCTAssertEqual(n, count, name)
            XCTAssertEqual(bytes.withUnsafeBytes { crc32c($0) }, crc, "\(name): records decode differently from format 1.0's reader")
        }
    }

    /// Everything a reader makes of a file, as stable JSON.
    static func describe(_ path: String) throws -> String {
        let r = try TraceReader(path: path)
        var events: [JSON] = []
        r.forEachEvent { events.append($0.json()) }
        return JSON.object([
            ("version", .string("\(r.versionMajor).\(r.versionMinor)")),
            ("closed_cleanly", .bool(r.closedCleanly)), ("used_index", .bool(r.usedIndex)), ("end_of_data", .uint(r.endOfData)),
            ("metadata", r.metadata.json), ("snapshot", r.snapshot?.json ?? .null),
            ("blocks", .array(r.eventBlocks.map { .object([("offset", .uint($0.offset)), ("first_ts", .uint($0.firstTimestamp)),
                                                           ("last_ts", .uint($0.lastTimestamp)), ("first_seq", .uint($0.firstSequence)), ("count", .uint(UInt64($0.count)))]) })),
            ("events", .array(events)),
            ("problems", .array(r.problems.map { .object([("offset", .uint($0.offset)), ("message", .string($0.message))]) })),
        ]).serialized() + "\n"
    }

    func check(_ name: String, make: (String) throws -> Void, encodeMustMatch: Bool) throws {
        let vector = VectorTests.dir.appendingPathComponent(name + ".fbt")
        let expected = VectorTests.dir.appendingPathComponent(name + ".json")
        let fresh = tempPath("vector-" + name + ".fbt")
        try make(fresh)
        if updating {
            try? FileManager.default.removeItem(at: vector)
            try FileManager.default.copyItem(atPath: fresh, toPath: vector.path)
            try VectorTests.describe(vector.path).write(to: expected, atomically: true, encoding: .utf8)
        }
        // Decode: the kept file reads as its JSON says.
        XCTAssertEqual(try VectorTests.describe(vector.path), try String(contentsOf: expected, encoding: .utf8), "\(name): decoding changed")
        // Encode: this build writes the same bytes.
        if encodeMustMatch {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: fresh)), try Data(contentsOf: vector), "\(name): encoding changed")
        }
    }

    func testUncompressedVectorBothWays() throws {
        try check("minimal-none", make: { try VectorTests.write($0, codec: .none) }, encodeMustMatch: true)
    }

    /// Compressed bytes may differ between zstd or lz4 versions; the decoding may not.
    func testCompressedVectorsDecode() throws {
        try check("minimal-zstd", make: { try VectorTests.write($0, codec: .zstd) }, encodeMustMatch: false)
        try check("minimal-lz4", make: { try VectorTests.write($0, codec: .lz4) }, encodeMustMatch: false)
    }

    func testDamagedVectors() throws {
        try check("unfinished-none", make: { try VectorTests.write($0, codec: .none, close: false) }, encodeMustMatch: true)
        try check("cut-none", make: { p in
            try VectorTests.write(p, codec: .none)
            let d = try Data(contentsOf: URL(fileURLWithPath: p))
            let r = try TraceReader(path: p)
            try d.prefix(Int(r.eventBlocks[1].offset) + 70).write(to: URL(fileURLWithPath: p))
        }, encodeMustMatch: true)
        try check("corrupt-none", make: { p in
            try VectorTests.write(p, codec: .none)
            var d = try Data(contentsOf: URL(fileURLWithPath: p))
            let r = try TraceReader(path: p)
            d[Int(r.eventBlocks[0].offset) + TraceLayout.blockHeaderSize + 30] ^= 0x01
            try d.write(to: URL(fileURLWithPath: p))
        }, encodeMustMatch: true)
    }

    /// A trace recorded by Flightbox v1 on a real kernel stays readable, with
    /// the same decoding, forever.
    func testRecordedV1TraceStaysReadable() throws {
        let path = VectorTests.dir.appendingPathComponent("recorded-v1.fbt").path
        let expected = VectorTests.dir.appendingPathComponent("recorded-v1.json")
        let r = try TraceReader(path: path)
        var byType: [String: UInt64] = [:]
        var lines: [UInt8] = []
        var records: [UInt8] = []
        r.forEachEvent { e in
            records += Array(e.bytes)
            byType[e.type?.name ?? "unknown", default: 0] += 1
            lines += Array(e.json().serialized().utf8)
            lines.append(10)
        }
        let summary = JSON.object([
            ("closed_cleanly", .bool(r.closedCleanly)), ("events", .uint(r.eventCount)),
            ("by_type", .object(byType.keys.sorted().map { ($0, .uint(byType[$0]!)) })),
            // The records' bytes as read (2635663094 with format 1.0's reader: must never change).
            ("records_crc32c", .uint(UInt64(records.withUnsafeBytes { crc32c($0) }))),
            // Their JSON: changes only when the output format does.
            ("events_json_crc32c", .uint(UInt64(lines.withUnsafeBytes { crc32c($0) }))),
            ("kernel", .string(r.metadata.kernelRelease)), ("problems", .int(Int64(r.problems.count))),
        ]).serialized() + "\n"
        if updating { try summary.write(to: expected, atomically: true, encoding: .utf8) }
        XCTAssertEqual(summary, try String(contentsOf: expected, encoding: .utf8))
        XCTAssertTrue(summary.contains("\"records_crc32c\":2635663094"), "recorded-v1's records decode differently from format 1.0's reader")
    }
}
