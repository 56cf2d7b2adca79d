import XCTest
import CFlightboxSys
import FlightboxEvents
@testable import FlightboxFormat

/// Edits a trace's bytes as an attacker would, then makes every checksum
/// valid again, so what is tested is the reader's logic, not its CRCs.
struct TraceSurgeon {
    var bytes: [UInt8]

    init(path: String) throws { bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    /// (offset, stored length) of every block, by walking the headers.
    var blocks: [(offset: Int, type: UInt16, stored: Int)] {
        var out: [(Int, UInt16, Int)] = []
        var o = TraceLayout.headerSize
        while o + TraceLayout.blockHeaderSize <= bytes.count, u32(o) == TraceLayout.blockSync {
            let stored = Int(u32(o + 8))
            out.append((o, UInt16(truncatingIfNeeded: u32(o + 4)), stored))
            o += TraceLayout.blockHeaderSize + stored
        }
        return out
    }

    var eventBlocks: [(offset: Int, type: UInt16, stored: Int)] { blocks.filter { $0.type == BlockType.events.rawValue } }
    var indexBlock: (offset: Int, type: UInt16, stored: Int)? { blocks.first { $0.type == BlockType.index.rawValue } }

    func u32(_ o: Int) -> UInt32 { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt32.self) } }
    func u64(_ o: Int) -> UInt64 { bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: o, as: UInt64.self) } }
    mutating func put<T: FixedWidthInteger>(_ o: Int, _ v: T) {
        bytes.withUnsafeMutableBytes { $0.storeBytes(of: v.littleEndian, toByteOffset: o, as: T.self) }
    }

    /// Block header fields by their SPEC offset.
    mutating func setBlock(_ block: Int, count: UInt32? = nil, firstSequence: UInt64? = nil, firstTs: UInt64? = nil, lastTs: UInt64? = nil) {
        if let count { put(block + 40, count) }
        if let firstSequence { put(block + 32, firstSequence) }
        if let firstTs { put(block + 16, firstTs) }
        if let lastTs { put(block + 24, lastTs) }
    }

    /// Index entry `i` (40 bytes each after the index block's header).
    func indexEntryOffset(_ i: Int) -> Int { indexBlock!.offset + TraceLayout.blockHeaderSize + i * TraceLayout.indexEntrySize }

    /// Replaces the index's entries, moving the footer along.
    mutating func setIndexEntries(_ entries: [[UInt8]]) {
        let idx = indexBlock!
        let payload = entries.flatMap { $0 }
        let start = idx.offset + TraceLayout.blockHeaderSize
        let footer = Array(bytes.suffix(TraceLayout.footerSize))
        bytes = Array(bytes[..<start]) + payload + footer
        put(idx.offset + 8, UInt32(payload.count))
        put(idx.offset + 12, UInt32(payload.count))
        put(idx.offset + 40, UInt32(entries.count))
    }

    func indexEntries() -> [[UInt8]] {
        let idx = indexBlock!
        let start = idx.offset + TraceLayout.blockHeaderSize
        return stride(from: 0, to: idx.stored, by: TraceLayout.indexEntrySize).map { Array(bytes[(start + $0)..<(start + $0 + TraceLayout.indexEntrySize)]) }
    }

    mutating func sealed() -> [UInt8] {
        FuzzTests.fixChecksums(&bytes)
        return bytes
    }

    func write(_ name: String) throws -> String {
        var copy = self
        let path = tempPath(name)
        try Data(copy.sealed()).write(to: URL(fileURLWithPath: path))
        return path
    }
}

final class HostileTraceTests: XCTestCase {
    let records = syntheticRecords(count: 600, seed: 42)

    func source(_ name: String = "hostile-src.fbt", close: Bool = true) throws -> TraceSurgeon {
        let path = tempPath(name)
        try writeTrace(path, records, codec: .zstd, blockBytes: 4096, close: close)
        return try TraceSurgeon(path: path)
    }

    /// Every sequence number read at most once, and the count the reader
    /// reports equal to what it delivers.
    func assertConsistent(_ r: TraceReader, file: StaticString = #filePath, line: UInt = #line) -> [(UInt64, [UInt8])] {
        let got = readAll(r)
        let seqs = got.map(\.0)
        XCTAssertEqual(Set(seqs).count, seqs.count, "a sequence number was read twice", file: file, line: line)
        XCTAssertEqual(r.eventCount, UInt64(got.count), "eventCount and the records delivered disagree: \(r.problems)", file: file, line: line)
        for (seq, bytes) in got where Int(seq) < records.count {
            if bytes != records[Int(seq)] { XCTFail("record \(seq) is not the one written", file: file, line: line); break }
        }
        return got
    }

    // MARK: numbers (item 1)

    func testHugeNumbersFormatWithoutTrapping() throws {
        for d in [9.2e15, 9.3e18, -1e300, 1e300, Double.greatestFiniteMagnitude, -Double.greatestFiniteMagnitude, .infinity, .nan, 1.8446744073709552e19] {
            let s = String(format3: d)
            XCTAssertFalse(s.isEmpty)
            _ = JSON.double(d).serialized()
        }
        XCTAssertEqual(String(format3: 1.5), "1.500")
        XCTAssertEqual(String(format3: -1e300), "-1e+300")
        XCTAssertEqual(JSON.double(-1e300).serialized(), "-1e+300")
        XCTAssertEqual(try JSONParser.parse(JSON.double(9.3e18).serialized()), .double(9.3e18))
    }

    func testMetadataWithHugeNumbersOpens() throws {
        let path = tempPath("huge-meta.fbt")
        let meta = TraceMetadata(host: "h", kernelRelease: "k", machine: "x86_64", clockNs: 1, realtimeNs: 2,
                                 capture: .object([("a", .double(9.5e15)), ("b", .double(-1e300)), ("c", .uint(.max))]))
        let w = try TraceWriter(path: path, codec: .zstd, metadata: meta, snapshot: ProcessSnapshot(timestamp: 1, processes: []))
        try w.append(EventEncoder.syscall(ts: 5, pid: 1, tid: 1, nr: 0, duration: .max))
        try w.close()
        let r = try TraceReader(path: path)
        XCTAssertTrue(r.metadata.capture.serialized().contains("-1e+300"))
        r.forEachEvent { e in
            XCTAssertEqual(e.as(SyscallRecord.self)?.durationNs, .max)
            _ = e.text(ts: "", comm: nil)
            _ = e.json().serialized()
        }
    }

    // MARK: counts and sequence numbers (items 2, 3, 7)

    func testBlockHoldingMoreRecordsThanItsCountIsReadToItsCount() throws {
        var t = try source()
        let b = t.eventBlocks[1].offset
        let count = t.u32(b + 40)
        t.setBlock(b, count: count - 3)
        let r = try TraceReader(path: try t.write("overfull.fbt"))
        let got = assertConsistent(r)
        XCTAssertEqual(got.count, records.count - 3)
        XCTAssertTrue(r.problems.contains { $0.offset == UInt64(b) && $0.message.contains("past the \(count - 3) its header counts") }, "\(r.problems)")
        XCTAssertEqual(r.sequenceGaps.reduce(0) { $0 + $1.missing }, 3)
    }

    func testSequenceNumbersNear2To64AreDamageNotATrap() throws {
        var t = try source()
        let b = t.eventBlocks[2].offset
        t.setBlock(b, firstSequence: .max - 2)
        let r = try TraceReader(path: try t.write("seq-overflow.fbt"))
        let got = assertConsistent(r)
        XCTAssertEqual(got.count, records.count - Int(t.u32(b + 40)))
        XCTAssertTrue(r.problems.contains { $0.message.contains("past 2^64") }, "\(r.problems)")

        // A block that ends exactly at 2^64 - 1 is legal; the writer refuses the number after.
        let path = tempPath("seq-top.fbt")
        let w = try writeTrace(path, [], close: false)
        try w.skip(toSequence: .max - 1)
        try w.append(records[0])
        XCTAssertThrowsError(try w.append(records[1])) { XCTAssertEqual($0 as? TraceError, .sequenceExhausted(path: path)) }
        XCTAssertThrowsError(try w.skip(toSequence: 5))
    }

    func testDuplicatedBlockIsReadOnceAndReported() throws {
        for close in [true, false] {
            var t = try source("dup-src-\(close).fbt", close: close)
            let whole = readAll(try TraceReader(path: tempPath("dup-src-\(close).fbt"))).count
            let victim = t.eventBlocks[2]
            let copy = Array(t.bytes[victim.offset..<(victim.offset + TraceLayout.blockHeaderSize + victim.stored)])
            let at = victim.offset + TraceLayout.blockHeaderSize + victim.stored
            t.bytes.insert(contentsOf: copy, at: at)
            if close {
                // The index still holds the right entries, but at offsets after the copy they point into the wrong place.
                var entries = t.indexEntries()
                for i in entries.indices {
                    let o = entries[i].withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
                    if o >= UInt64(at) { entries[i].withUnsafeMutableBytes { $0.storeBytes(of: o + UInt64(copy.count), as: UInt64.self) } }
                }
                t.setIndexEntries(entries)
            }
            let r = try TraceReader(path: try t.write("dup-\(close).fbt"))
            let got = assertConsistent(r)
            XCTAssertEqual(got.count, whole, "close \(close): \(r.problems)")
            XCTAssertTrue(r.problems.contains { $0.offset == UInt64(at) && $0.message.contains("duplicated block") }, "\(r.problems)")
            XCTAssertFalse(r.problems.contains { $0.message.contains("not in the index") }, "one fate per block: \(r.problems)")
        }
    }

    func testOverlappingBlockIsReadFromTheFirstNumberNotYetRead() throws {
        var t = try source()
        let a = t.eventBlocks[1].offset, b = t.eventBlocks[2].offset
        let aEnd = t.u64(a + 32) + UInt64(t.u32(a + 40))
        // Block 2 now claims to start 5 records earlier: those 5 numbers are block 1's.
        t.setBlock(b, firstSequence: aEnd - 5)
        let r = try TraceReader(path: try t.write("overlap.fbt"))
        let got = readAll(r)
        XCTAssertEqual(Set(got.map(\.0)).count, got.count)
        XCTAssertEqual(r.eventCount, UInt64(got.count))
        XCTAssertEqual(got.count, records.count - 5, "the 5 renumbered records of block 2 are not read twice")
        XCTAssertTrue(r.problems.contains { $0.offset == UInt64(a) && $0.message.contains("overlap") }, "\(r.problems)")
    }

    /// A header claiming 4 billion records cannot swallow the blocks after it
    /// (they would all look like duplicates) nor report billions missing.
    func testAHugeClaimedCountHidesNothing() throws {
        var t = try source()
        let b = t.eventBlocks[0].offset
        t.setBlock(b, count: .max)
        let r = try TraceReader(path: try t.write("huge-count.fbt"))
        let got = assertConsistent(r)
        XCTAssertEqual(got.count, records.count)
        XCTAssertTrue(r.problems.contains { $0.offset == UInt64(b) && $0.message.contains("more than its") }, "\(r.problems)")
        XCTAssertEqual(r.sequenceGaps.reduce(0) { $0 + $1.missing }, 0)

        // And a first sequence number near 2^63 claims no more missing records than the file could hold.
        var u = try source("gap-src.fbt")
        u.setBlock(u.eventBlocks[1].offset, firstSequence: 1 << 62)
        let r2 = try TraceReader(path: try u.write("huge-gap.fbt"))
        XCTAssertLessThanOrEqual(r2.sequenceGaps.reduce(0) { $0 + $1.missing }, TraceReader.maxRecords(fileSize: r2.fileSize))
    }

    /// Of two blocks with the same numbers, the one whose payload verifies is
    /// read, wherever it is in the file.
    func testAnIntactCopyWinsOverADamagedOne() throws {
        var t = try source("copy-src.fbt", close: false)
        let x = t.eventBlocks[1]
        let copy = Array(t.bytes[x.offset..<(x.offset + TraceLayout.blockHeaderSize + x.stored)])
        t.bytes.insert(contentsOf: copy, at: x.offset + TraceLayout.blockHeaderSize + x.stored)
        var bytes = t.sealed()
        bytes[x.offset + TraceLayout.blockHeaderSize + 3] ^= 0x55 // the first copy's payload, after the checksums were made
        let path = tempPath("copy.fbt")
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let whole = readAll(try TraceReader(path: tempPath("copy-src.fbt"))).count
        let r = try TraceReader(path: path)
        XCTAssertEqual(assertConsistent(r).count, whole, "\(r.problems)")
    }

    /// A header whose length runs past the end of the file, in the middle of
    /// a file without an index, hides nothing that follows it.
    func testALengthPastTheEndMidFileIsSkipped() throws {
        var t = try source("past-src.fbt", close: false)
        let whole = readAll(try TraceReader(path: tempPath("past-src.fbt"))).count
        let b = t.eventBlocks[2]
        t.put(b.offset + 8, UInt32(t.bytes.count))
        let r = try TraceReader(path: try t.write("past-end.fbt"))
        let got = readAll(r)
        XCTAssertGreaterThan(got.count, whole / 2, "the blocks after it are read: \(r.problems)")
        XCTAssertTrue(r.problems.contains { $0.message.contains("past the end of the file, yet a valid block follows") }, "\(r.problems)")
    }

    /// One index entry pointing past the index costs that entry, not the
    /// index, and the file still counts as closed cleanly.
    func testOneBadIndexEntryCostsOnlyItself() throws {
        var t = try source()
        var entries = t.indexEntries()
        entries[0].withUnsafeMutableBytes { $0.storeBytes(of: UInt64.max / 2, as: UInt64.self) }
        t.setIndexEntries(entries)
        let r = try TraceReader(path: try t.write("bad-entry.fbt"))
        XCTAssertEqual(assertConsistent(r).count, records.count)
        XCTAssertTrue(r.closedCleanly)
        XCTAssertTrue(r.usedIndex)
        XCTAssertTrue(r.problems.contains { $0.message.contains("no event block starts") }, "\(r.problems)")
    }

    /// Thousands of damaged blocks: each reported once, the list bounded, in linear time.
    func testManyDamagedBlocksAreReportedInBoundedTime() throws {
        let path = tempPath("many-damaged.fbt")
        let w = try writeTrace(path, [], close: false)
        for i in 0..<20_000 {
            try w.append(EventEncoder.syscall(ts: UInt64(i), pid: 1, tid: 1, nr: 0, duration: 1))
            try w.flush()
        }
        var t = try TraceSurgeon(path: path)
        var bytes = t.sealed()
        for b in t.eventBlocks { bytes[b.offset + TraceLayout.blockHeaderSize] ^= 1 } // every payload, after the checksums
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let start = Date()
        let r = try TraceReader(path: path)
        XCTAssertEqual(readAll(r).count, 0)
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        XCTAssertLessThanOrEqual(r.problems.count, TraceReader.maxProblems + 2)
        XCTAssertTrue(r.problems.last?.message.contains("more problems not listed") == true, "\(r.problems.suffix(2))")
    }

    /// A snapshot too large for a block (many processes, long command lines)
    /// is cut to fit rather than written as a block readers would refuse.
    func testAnOversizedSnapshotIsCutToFit() throws {
        let long = String(repeating: "x", count: 4000)
        let snap = ProcessSnapshot(timestamp: 1, processes: (0..<300).map { ProcessRecord(pid: UInt32($0), ppid: 1, uid: 0, comm: "p", exe: "/p", argv: [long, long]) })
        let full = Array(snap.json.serialized().utf8).count
        let payload = TraceWriter.snapshotPayload(snap, limit: full / 2)
        XCTAssertLessThanOrEqual(payload.count, full / 2)
        let cut = try XCTUnwrap(ProcessSnapshot(json: try JSONParser.parse(payload)))
        XCTAssertEqual(cut.processes.count, 300, "cutting arguments was enough")
        XCTAssertEqual(cut.processes[0].argv[0].utf8.count, 256)
        let tiny = TraceWriter.snapshotPayload(snap, limit: 2_000)
        XCTAssertLessThanOrEqual(tiny.count, 2_000)
        XCTAssertNotNil(ProcessSnapshot(json: try JSONParser.parse(tiny)))
    }

    // MARK: timestamps (item 4)

    func testBlockWithLastTimestampBeforeFirst() throws {
        var t = try source()
        let b = t.eventBlocks[0].offset
        t.setBlock(b, firstTs: .max, lastTs: 3)
        let r = try TraceReader(path: try t.write("backwards.fbt"))
        _ = assertConsistent(r)
        XCTAssertTrue(r.problems.contains { $0.message.contains("before first_ts") })
        XCTAssertLessThanOrEqual(r.firstTimestamp!, r.lastTimestamp!)
        _ = r.blocks(from: 0, to: .max)
    }

    // MARK: the index (items 5, 8, 9)

    func testIndexClaimingAnyCountsCannotAmplifyWork() throws {
        var t = try source()
        var entries = t.indexEntries()
        // 5,000 entries all naming the first block, each claiming 4 billion records.
        var e = entries[0]
        e.withUnsafeMutableBytes { $0.storeBytes(of: UInt32.max, toByteOffset: 32, as: UInt32.self) }
        entries = Array(repeating: e, count: 5_000)
        t.setIndexEntries(entries)
        let start = Date()
        let r = try TraceReader(path: try t.write("amplified.fbt"))
        let got = assertConsistent(r)
        XCTAssertEqual(got.count, records.count)
        XCTAssertLessThan(Date().timeIntervalSince(start), 5)
        XCTAssertLessThan(r.problems.count, 20, "problems are bounded too")
        XCTAssertTrue(r.problems.contains { $0.message.contains("repeats the block") })
    }

    func testDroppedIndexEntryDoesNotHideABlock() throws {
        var t = try source()
        var entries = t.indexEntries()
        let hidden = t.eventBlocks[3].offset
        entries.remove(at: 3)
        t.setIndexEntries(entries)
        let r = try TraceReader(path: try t.write("dropped-entry.fbt"))
        let got = assertConsistent(r)
        XCTAssertEqual(got.count, records.count)
        XCTAssertTrue(r.problems.contains { $0.offset == UInt64(hidden) && $0.message.contains("not in the index") }, "\(r.problems)")
    }

    func testIndexDisagreeingWithABlockLosesToTheBlock() throws {
        var t = try source()
        var entries = t.indexEntries()
        let b = t.eventBlocks[1].offset
        entries[1].withUnsafeMutableBytes {
            $0.storeBytes(of: UInt64(7), toByteOffset: 24, as: UInt64.self)
            $0.storeBytes(of: UInt32(1), toByteOffset: 32, as: UInt32.self)
        }
        t.setIndexEntries(entries)
        let r = try TraceReader(path: try t.write("disagree.fbt"))
        let got = assertConsistent(r)
        XCTAssertEqual(got.count, records.count)
        XCTAssertTrue(r.problems.contains { $0.offset == UInt64(b) && $0.message.contains("block header wins") }, "\(r.problems)")
    }

    func testIndexPointingNowhereIsIgnored() throws {
        var t = try source()
        var entries = t.indexEntries()
        entries[0].withUnsafeMutableBytes { $0.storeBytes(of: UInt64(40), as: UInt64.self) }
        t.setIndexEntries(entries)
        let r = try TraceReader(path: try t.write("nowhere.fbt"))
        XCTAssertEqual(assertConsistent(r).count, records.count)
        XCTAssertTrue(r.problems.contains { $0.message.contains("no event block starts") }, "\(r.problems)")
    }

    func testDecompressionBombIsRefused() throws {
        // A zstd block of 1 MiB of zeros claims far more raw bytes than any
        // real block: refused before decoding, whatever its CRC.
        let zeros = [UInt8](repeating: 0, count: 8 << 20)
        let comp = Compressor(codec: .zstd, level: 19)
        var out = [UInt8](repeating: 0, count: comp.bound(zeros.count))
        let n = try zeros.withUnsafeBytes { src in try out.withUnsafeMutableBytes { try comp.compress(src, into: $0.baseAddress!, capacity: $0.count) } }
        XCTAssertGreaterThan(zeros.count, TraceLayout.maxRawLength(stored: n), "the bomb must exceed the ratio for this test to mean anything")
        var t = try source(close: false)
        let b = t.eventBlocks[0]
        let header = Array(t.bytes[b.offset..<(b.offset + TraceLayout.blockHeaderSize)])
        t.bytes = Array(t.bytes[..<b.offset]) + header + out.prefix(n) + t.bytes[(b.offset + TraceLayout.blockHeaderSize + b.stored)...]
        t.put(b.offset + 8, UInt32(n))
        t.put(b.offset + 12, UInt32(zeros.count))
        let r = try TraceReader(path: try t.write("bomb.fbt"))
        _ = readAll(r)
        XCTAssertTrue(r.problems.contains { $0.message.contains("beyond the ratio") }, "\(r.problems)")
    }

    // MARK: files that are not regular (item 6)

    func testFIFOIsAClearErrorNotAHang() throws {
        let path = tempPath("fifo-\(UInt32.random(in: 0...UInt32.max))")
        XCTAssertEqual(mkfifo(path, 0o600), 0)
        defer { unlink(path) }
        XCTAssertThrowsError(try TraceReader(path: path)) { e in
            XCTAssertEqual(e as? TraceError, .notRegularFile(path: path, kind: "a FIFO"))
        }
        XCTAssertThrowsError(try TraceReader(path: NSTemporaryDirectory())) { e in
            XCTAssertTrue("\(e)".contains("a directory"), "\(e)")
        }
    }

    // MARK: malformed records (item 18)

    func testMalformedRecordIsReportedOnce() throws {
        let path = tempPath("malformed.fbt")
        var recs = Array(records.prefix(20))
        recs[10].withUnsafeMutableBytes { $0.storeBytes(of: UInt16(5000), toByteOffset: 10, as: UInt16.self) } // size past the block
        try writeTrace(path, recs, codec: .none, blockBytes: 1 << 20)
        let r = try TraceReader(path: path)
        XCTAssertEqual(readAll(r).count, 10)
        let reports = r.problems.filter { $0.message.contains("malformed") }
        XCTAssertEqual(reports.count, 1, "\(r.problems)")
        XCTAssertTrue(reports[0].message.contains("10 records"), "\(reports)")
    }
}
