import XCTest
#if canImport(Glibc)
import Glibc
#endif
import FlightboxEvents
@testable import FlightboxFormat

/// Deterministic pseudo-random numbers so failures reproduce.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func tempPath(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "flightbox-tests-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir + "/" + name
}

func testMetadata() -> TraceMetadata {
    TraceMetadata(host: "test", kernelRelease: "6.18", machine: "x86_64", clockNs: 1_000, realtimeNs: 1_700_000_000_000_000_000,
                  capture: .object([("codec", .string("zstd"))]))
}

/// A mixed stream of every event type with realistic variation.
func syntheticRecords(count: Int, seed: UInt64 = 1) -> [[UInt8]] {
    var rng = SplitMix(state: seed)
    var ts: UInt64 = 10_000
    var out: [[UInt8]] = []
    for i in 0..<count {
        ts += UInt64.random(in: 100...5_000, using: &rng)
        let pid = UInt32.random(in: 100...110, using: &rng)
        switch Int.random(in: 0..<100, using: &rng) {
        case 0..<90:
            out.append(EventEncoder.syscall(ts: ts, pid: pid, tid: pid, nr: UInt32.random(in: 0...300, using: &rng),
                                            duration: UInt64.random(in: 50...100_000, using: &rng), ret: Int64.random(in: -22...4096, using: &rng),
                                            args: [UInt64(i), 0x7fff_0000, 64], cpu: UInt16.random(in: 0...1, using: &rng)))
        case 90..<94:
            out.append(EventEncoder.fork(ts: ts, pid: pid, tid: pid, childPid: pid + 1000, childTid: pid + 1000, thread: rng.next() & 1 == 0, comm: "child\(i)"))
        case 94..<97:
            let argv = (0..<Int.random(in: 0...6, using: &rng)).map { "arg-\($0)-\(String(repeating: "x", count: Int.random(in: 0...40, using: &rng)))" }
            out.append(EventEncoder.exec(ts: ts, pid: pid, tid: pid, ppid: 1, uid: 0, comm: "prog\(i)", filename: "/usr/bin/prog\(i)", argv: argv))
        case 97..<99:
            out.append(EventEncoder.exit(ts: ts, pid: pid, tid: pid, status: Int32.random(in: 0...255, using: &rng) << 8, group: true, ppid: 1, lifetime: 5, comm: "prog"))
        default:
            out.append(EventEncoder.loss(ts: ts, cpu: 1, lost: UInt64.random(in: 1...100, using: &rng), firstTs: ts - 10))
        }
    }
    return out
}

@discardableResult
func writeTrace(_ path: String, _ records: [[UInt8]], codec: Codec = .zstd, blockBytes: Int = 4096, close: Bool = true) throws -> TraceWriter {
    let w = try TraceWriter(path: path, codec: codec, blockBytes: blockBytes, metadata: testMetadata(),
                            snapshot: ProcessSnapshot(timestamp: 1_000, processes: [ProcessRecord(pid: 100, ppid: 1, uid: 0, comm: "init-ish", exe: "/sbin/x", argv: ["x", "y"])]))
    for r in records { try w.append(r) }
    if close { try w.close() }
    return w
}

func readAll(_ reader: TraceReader) -> [(UInt64, [UInt8])] {
    var out: [(UInt64, [UInt8])] = []
    reader.forEachEvent { out.append(($0.sequence, Array($0.bytes))) }
    return out
}

final class TraceRoundTripTests: XCTestCase {
    func testRoundTripEveryCodec() throws {
        let records = syntheticRecords(count: 5_000)
        for codec in [Codec.zstd, .lz4, .none] {
            let path = tempPath("rt-\(codec.name).fbt")
            try writeTrace(path, records, codec: codec)
            let r = try TraceReader(path: path)
            XCTAssertTrue(r.closedCleanly)
            XCTAssertTrue(r.usedIndex)
            XCTAssertEqual(r.problems, [])
            let back = readAll(r)
            XCTAssertEqual(back.count, records.count, "\(codec)")
            for (i, (seq, bytes)) in back.enumerated() {
                XCTAssertEqual(seq, UInt64(i))
                XCTAssertEqual(bytes, records[i], "record \(i) differs with \(codec)")
            }
            XCTAssertEqual(r.snapshot?.processes.first?.argv, ["x", "y"])
            XCTAssertEqual(r.metadata.host, "test")
            XCTAssertEqual(r.metadata.schema["types"]?.arrayValue?.count, EventType.allCases.count)
            XCTAssertEqual(r.eventCount, UInt64(records.count))
        }
    }

    /// A reader gives back its decode buffer (1 MiB at least) when it goes:
    /// the flight recorder opens readers for every dump, for months.
    func testReadersLeaveNoMemoryBehind() throws {
        let path = tempPath("reader-memory.fbt")
        try writeTrace(path, syntheticRecords(count: 2_000))
        // The process's virtual size (statm's first field, in pages): a leaked
        // buffer stays mapped (malloc's own mapping, or a heap that cannot shrink).
        func inUse() -> Int {
            guard let h = FileHandle(forReadingAtPath: "/proc/self/statm") else { return 0 }
            defer { try? h.close() }
            let text = String(decoding: h.readDataToEndOfFile(), as: UTF8.self)
            return (Int(text.split(separator: " ").first ?? "") ?? 0) * Int(sysconf(Int32(_SC_PAGESIZE)))
        }
        func readOnce() throws { XCTAssertEqual(readAll(try TraceReader(path: path)).count, 2_000) }
        try readOnce()
        let before = inUse()
        for _ in 0..<32 { try readOnce() }
        XCTAssertLessThan(inUse() - before, 8 << 20, "32 readers, each with a 1 MiB buffer, left them allocated")
    }

    func testFileModeIs0600() throws {
        let path = tempPath("mode.fbt")
        _ = FileManager.default.createFile(atPath: path, contents: Data("old".utf8), attributes: [.posixPermissions: 0o644])
        try writeTrace(path, syntheticRecords(count: 10))
        let attrs = try FileManager.default.attributesOfItem(atPath: path)
        XCTAssertEqual((attrs[.posixPermissions] as? NSNumber)?.intValue, 0o600)
    }

    func testXorFilterIsReversible() {
        var rng = SplitMix(state: 99)
        for _ in 0..<200 {
            let records = syntheticRecords(count: Int.random(in: 1...60, using: &rng), seed: rng.next())
            let flat = records.flatMap { $0 }
            var filtered = [UInt8](repeating: 0, count: flat.count)
            flat.withUnsafeBytes { src in filtered.withUnsafeMutableBytes { XorFilter.encode(src.baseAddress!, $0.baseAddress!, count: flat.count) } }
            let types = records.map { $0[8] }
            if Set(types).count < types.count { XCTAssertNotEqual(filtered, flat, "two records of one type: the filter must change bytes") }
            let bad = filtered.withUnsafeMutableBytes { XorFilter.decode($0.baseAddress!, count: flat.count) }
            XCTAssertNil(bad)
            XCTAssertEqual(filtered, flat)
        }
    }

    func testSeekReadsOnlyOverlappingBlocks() throws {
        let records = syntheticRecords(count: 20_000)
        let path = tempPath("seek.fbt")
        try writeTrace(path, records)
        let r = try TraceReader(path: path)
        XCTAssertGreaterThan(r.eventBlocks.count, 20)
        let all = readAll(r)
        let from = records[5000].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        let to = records[6000].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        let window = r.blocks(from: from, to: to)
        XCTAssertLessThan(window.count, r.eventBlocks.count / 4)
        var got: [UInt64] = []
        r.forEachEvent(from: from, to: to) { got.append($0.sequence) }
        let expected = all.filter { rec in
            let ts = rec.1.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            return ts >= from && ts <= to
        }.map(\.0)
        XCTAssertEqual(got, expected)
        XCTAssertEqual(got.count, 1001)
    }
}

final class TraceDamageTests: XCTestCase {
    func testNotATrace() throws {
        let path = tempPath("text.txt")
        try Data("hello, this is not a trace\n".utf8).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TraceReader(path: path)) { e in
            XCTAssertEqual(e as? TraceError, .notATrace(path: path))
            XCTAssertTrue("\(e)".contains("not a Flightbox trace"))
        }
        let empty = tempPath("empty.fbt")
        _ = FileManager.default.createFile(atPath: empty, contents: Data())
        XCTAssertThrowsError(try TraceReader(path: empty))
        XCTAssertThrowsError(try TraceReader(path: tempPath("missing.fbt"))) { e in
            XCTAssertTrue("\(e)".contains("No such file"))
        }
    }

    /// A file cut at every byte: the reader never crashes, and recovers
    /// exactly the events of the blocks that are whole. Cuts are read from
    /// memory (no file per cut), and the trace is small with many blocks, so
    /// every boundary kind (header, metadata, snapshot, event block header,
    /// payload, index, footer) is cut at every byte in a second or two;
    /// CompatibilityTests cuts a large trace at sampled offsets.
    func testTruncationAtEveryByte() throws {
        let records = syntheticRecords(count: 160)
        let path = tempPath("whole.fbt")
        let w = try writeTrace(path, [], close: false)
        for (i, r) in records.enumerated() {
            try w.append(r)
            if i % 20 == 19 { try w.flush() }
        }
        try w.close()
        let whole = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        // Where each event block ends, and how many events are whole by then.
        let reader = try TraceReader(path: path)
        var ends: [(Int, Int)] = []
        for e in reader.eventBlocks {
            let stored = whole.withUnsafeBytes { Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: Int(e.offset) + 8, as: UInt32.self))) }
            ends.append((Int(e.offset) + TraceLayout.blockHeaderSize + stored, Int(e.firstSequence) + Int(e.count)))
        }
        XCTAssertGreaterThanOrEqual(ends.count, 8)
        let metadataEnd = Int(reader.eventBlocks[0].offset)
        for n in 0..<whole.count {
            guard let r = try? whole.withUnsafeBytes({ try TraceReader(bytes: UnsafeRawBufferPointer(rebasing: $0[0..<n])) }) else {
                XCTAssertLessThan(n, metadataEnd, "cut at \(n) should still open")
                continue
            }
            let expected = ends.last(where: { $0.0 <= n })?.1 ?? 0
            let got = readAll(r)
            XCTAssertEqual(got.count, expected, "cut at \(n)")
            if n < whole.count {
                XCTAssertFalse(r.closedCleanly, "cut at \(n)")
            }
            XCTAssertEqual(r.eventCount, UInt64(expected), "cut at \(n)")
            for (i, g) in got.enumerated() where g.1 != records[i] { XCTFail("cut at \(n): record \(i) differs"); break }
        }
    }

    func testCorruptPayloadIsReportedAndOtherBlocksSurvive() throws {
        let records = syntheticRecords(count: 2_000)
        let path = tempPath("corrupt.fbt")
        try writeTrace(path, records)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let r0 = try TraceReader(path: path)
        let victim = r0.eventBlocks[3]
        bytes[Int(victim.offset) + TraceLayout.blockHeaderSize + 10] ^= 0x40
        let bad = tempPath("corrupt2.fbt")
        try bytes.write(to: URL(fileURLWithPath: bad))
        let r = try TraceReader(path: bad)
        let got = readAll(r)
        XCTAssertEqual(got.count, records.count - Int(victim.count))
        XCTAssertTrue(r.problems.contains { $0.offset == victim.offset && $0.message.contains("checksum") }, "\(r.problems)")
    }

    func testCorruptBlockHeaderWithoutIndexResyncs() throws {
        let records = syntheticRecords(count: 2_000)
        let path = tempPath("hdr.fbt")
        try writeTrace(path, records, close: false)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let r0 = try TraceReader(path: path)
        XCTAssertFalse(r0.closedCleanly)
        let victim = r0.eventBlocks[2]
        bytes[Int(victim.offset) + 20] ^= 0xff
        let bad = tempPath("hdr2.fbt")
        try bytes.write(to: URL(fileURLWithPath: bad))
        let r = try TraceReader(path: bad)
        // The writer never closed: its last open block is not in the file.
        XCTAssertEqual(readAll(r).count, Int(r0.eventCount) - Int(victim.count))
        XCTAssertTrue(r.problems.contains { $0.offset == victim.offset && $0.message.contains("header checksum") }, "\(r.problems)")
    }

    func testHostileSizeIsRejectedBeforeAllocation() throws {
        let path = tempPath("hostile.fbt")
        try writeTrace(path, syntheticRecords(count: 500), close: false)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let r0 = try TraceReader(path: path)
        let victim = Int(r0.eventBlocks[0].offset)
        // Claim a 3 GiB raw payload, with a header checksum that matches.
        bytes.withUnsafeMutableBytes { p in
            let h = p.baseAddress! + victim
            h.storeBytes(of: UInt32(3 << 30), toByteOffset: 12, as: UInt32.self)
            h.storeBytes(of: crc32c(UnsafeRawBufferPointer(start: h, count: 52)), toByteOffset: 52, as: UInt32.self)
        }
        let bad = tempPath("hostile2.fbt")
        try bytes.write(to: URL(fileURLWithPath: bad))
        let r = try TraceReader(path: bad)
        XCTAssertTrue(r.problems.contains { $0.message.contains("over the") }, "\(r.problems)")
    }
}
