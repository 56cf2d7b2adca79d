import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

final class BlockFamilyTests: XCTestCase {
    /// Direct-I/O writes of a known size reach the block layer as requests of
    /// that size, on the file's device, from the writer, with a latency.
    func testDirectWritesOfKnownSizes() throws {
        try requireBPF()
        let dir = try scratchDirectory("block-dir")
        var st = stat()
        XCTAssertEqual(stat(dir, &st), 0)
        let fsMajor = UInt32(truncatingIfNeeded: (st.st_dev >> 8) & 0xfff)
        let trace = scratch("block.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "block", "--", Tool.load, "direct-write", dir, "6", "65536"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let blocks = try eventsJSON(trace, ["--type", "block"])
        let writes = blocks.filter { $0["op_name"]?.stringValue == "write" && $0["fields"]?["bytes"]?.uintValue == 65536 && $0["comm"]?.stringValue == "flightbox-load" }
        guard writes.count >= 6 else {
            if blocks.isEmpty, stat(dir, &st) == 0, major(UInt64(st.st_dev)) == 0 {
                throw XCTSkip("\(dir) is not on a block device")
            }
            return XCTFail("expected 6 direct writes of 64 KiB: \(blocks.map { $0.serialized() })")
        }
        XCTAssertEqual(writes.count, 6)
        for w in writes {
            XCTAssertEqual(UInt32(w["device"]?.stringValue?.split(separator: ":").first ?? "") ?? 0, fsMajor, "the file's device")
            XCTAssertGreaterThan(w["fields"]?["latency_ns"]?.uintValue ?? 0, 0)
            XCTAssertEqual(w["fields"]?["error"]?.intValue, 0)
        }
    }
}

private func major(_ dev: UInt64) -> UInt64 { (dev >> 8) & 0xfff }
