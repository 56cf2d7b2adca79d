import Foundation
import XCTest
import FlightboxEvents
@testable import FlightboxFormat

/// The detector checkpoint block (type 5, SPEC "Detector checkpoint block").
final class CheckpointBlockTests: XCTestCase {
    let payload = Array(#"{"format":"flightbox-checkpoint","version":1,"detectors":[]}"#.utf8) + [UInt8](repeating: 0x20, count: 5000)

    func traceWithCheckpoint(_ name: String, codec: Codec = .zstd) throws -> (path: String, records: [[UInt8]]) {
        let path = tempPath(name)
        let records = syntheticRecords(count: 400, seed: 3)
        let w = try TraceWriter(path: path, codec: codec, blockBytes: 4096, metadata: testMetadata(),
                                snapshot: ProcessSnapshot(timestamp: 1_000, processes: []))
        try w.writeCheckpoint(payload, ts: 777)
        for r in records { try w.append(r) }
        // Not after the first event: it would not be the state before the file's first event.
        XCTAssertThrowsError(try w.writeCheckpoint(payload, ts: 778))
        try w.close()
        return (path, records)
    }

    func testWrittenBeforeTheEventsAndReadBack() throws {
        for codec in [Codec.zstd, .lz4, .none] {
            let (path, records) = try traceWithCheckpoint("checkpoint-\(codec.name).fbt", codec: codec)
            let r = try TraceReader(path: path)
            XCTAssertEqual(r.problems, [])
            XCTAssertEqual(r.checkpoint?.timestamp, 777)
            guard case .success(let back)? = r.readCheckpoint() else { return XCTFail("no checkpoint read back (\(codec))") }
            XCTAssertEqual(back, payload)
            // The events are as they would be without it: a reader that skips the block reads the same trace.
            XCTAssertEqual(readAll(r).map(\.1), records)
        }
    }

    func testATraceWithoutOneHasNone() throws {
        let path = tempPath("no-checkpoint.fbt")
        try writeTrace(path, syntheticRecords(count: 10))
        let r = try TraceReader(path: path)
        XCTAssertNil(r.checkpoint)
        XCTAssertNil(r.readCheckpoint())
    }

    /// A damaged payload is one clear problem, and the events still read.
    func testDamagedCheckpointIsAProblemNotAFailure() throws {
        let (path, records) = try traceWithCheckpoint("checkpoint-damaged.fbt")
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let at = try XCTUnwrap(TraceReader(path: path).checkpoint).offset
        bytes[Int(at) + TraceLayout.blockHeaderSize + 3] ^= 0xff
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let r = try TraceReader(path: path)
        guard case .failure(let problem)? = r.readCheckpoint() else { return XCTFail("a damaged checkpoint must be refused") }
        XCTAssertTrue(problem.description.contains("checksum"), problem.description)
        XCTAssertFalse(problem.description.contains("\n"))
        XCTAssertEqual(readAll(r).count, records.count)
    }

    /// A checkpoint block after an event block is not the state before the
    /// first event: readers ignore it (and one before it still counts).
    func testACheckpointAfterEventsIsIgnored() throws {
        let (path, _) = try traceWithCheckpoint("checkpoint-moved.fbt")
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        let blocks = TraceMutator.blocks(original)
        let cp = try XCTUnwrap(blocks.first { $0.type == BlockType.checkpoint.rawValue })
        let firstEvents = try XCTUnwrap(blocks.first { $0.type == BlockType.events.rawValue })
        // Swap the checkpoint and the first event block.
        var moved = Array(original[0..<cp.offset])
        moved += original[firstEvents.offset..<(firstEvents.offset + firstEvents.length)]
        moved += original[cp.offset..<(cp.offset + cp.length)]
        moved += original[(firstEvents.offset + firstEvents.length)...]
        let r = try moved.withUnsafeBytes { try TraceReader(bytes: $0, name: "moved") }
        XCTAssertNil(r.checkpoint)
    }

    /// Repair (of a segment a killed recorder left open) keeps the checkpoint.
    func testRepairKeepsTheCheckpoint() throws {
        let (path, records) = try traceWithCheckpoint("checkpoint-repair.fbt")
        let out = tempPath("checkpoint-repaired.fbt")
        _ = try TraceRepair.copy(try TraceReader(path: path), to: out)
        let r = try TraceReader(path: out)
        guard case .success(let back)? = r.readCheckpoint() else { return XCTFail("repair lost the checkpoint") }
        XCTAssertEqual(back, payload)
        XCTAssertEqual(r.checkpoint?.timestamp, 777)
        XCTAssertEqual(readAll(r).count, records.count)
    }

    func testFuzzSeedsWithACheckpointRead() throws {
        let (path, _) = try traceWithCheckpoint("checkpoint-fuzz.fbt")
        var rng = SplitMix(state: 11)
        let seed = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        XCTAssertGreaterThan(seed.withUnsafeBytes { TraceReader.exercise($0) }, 0)
        for _ in 0..<300 {
            let input = TraceMutator.mutate(seed, using: &rng)
            _ = input.withUnsafeBytes { TraceReader.exercise($0) }
        }
    }
}
