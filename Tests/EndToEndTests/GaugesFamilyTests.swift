import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

final class GaugesFamilyTests: XCTestCase {
    /// Free space on a small tmpfs drops by exactly the size of a file
    /// written to it, as sampled into the trace; per-process fd gauges cover
    /// the recorded command.
    func testFreeSpaceGaugeMovesByTheFileSize() throws {
        try requireBPF()
        let mnt = scratch("gauge-fs")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        XCTAssertEqual(try Tool.run("/bin/mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt]).status, 0)
        defer { _ = try? Tool.run("/bin/umount", [mnt]) }
        let trace = scratch("gauges.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "gauges", "--gauge-interval", "100ms", "--",
                                              "/bin/sh", "-c", "sleep 0.5; head -c 3145728 /dev/zero > \(mnt)/f; sleep 0.5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let gauges = try eventsJSON(trace, ["--type", "gauge"])
        let space = gauges.filter { $0["gauge"]?.stringValue == "fs_bytes_available" && $0["fields"]?["name"]?.stringValue == mnt }
        XCTAssertGreaterThanOrEqual(space.count, 5, "sampled every 100 ms")
        let values = space.compactMap { $0["fields"]?["value"]?.uintValue }
        XCTAssertEqual(space.first?["fields"]?["limit"]?.uintValue, 8 << 20)
        XCTAssertEqual(values.first, 8 << 20, "empty at the start")
        XCTAssertEqual(values.last, (8 << 20) - (3 << 20), "3 MiB less after the write")
        XCTAssertEqual(values, values.sorted(by: >), "only ever goes down here")
        let fds = gauges.filter { $0["gauge"]?.stringValue == "process_fds" }
        XCTAssertFalse(fds.isEmpty, "the command's processes are sampled")
        XCTAssertTrue(fds.allSatisfy { ($0["fields"]?["limit"]?.uintValue ?? 0) > 0 && ($0["fields"]?["value"]?.uintValue ?? 0) > 0 })
        for kind in ["system_fds", "tasks", "mem_available", "load1"] {
            XCTAssertTrue(gauges.contains { $0["gauge"]?.stringValue == kind && ($0["fields"]?["limit"]?.uintValue ?? 0) > 0 }, kind)
        }
    }
}
