import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

final class FilesFamilyTests: XCTestCase {
    /// Opens, renames and unlinks of known paths, with flags and results.
    func testFileOperationsWithPathsFlagsAndResults() throws {
        try requireBPF()
        let dir = try scratchDirectory("files-dir")
        let long = dir + "/" + String(repeating: "x", count: 250) + "/deeper"
        let trace = scratch("files.fbt")
        let script = "touch \(dir)/a; mv \(dir)/a \(dir)/b; rm \(dir)/b; cat \(dir)/missing 2>/dev/null; cat \(long) 2>/dev/null; true"
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "files", "--", "/bin/sh", "-c", script])
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = try eventsJSON(trace, ["--type", "file"])
        XCTAssertTrue(try eventsJSON(trace, ["--type", "syscall"]).isEmpty, "--probes files records no syscall events")
        func find(_ op: String, _ path: String) -> JSON? {
            files.first { $0["op_name"]?.stringValue == op && $0["fields"]?["path"]?.stringValue == path }
        }
        let created = try XCTUnwrap(find("open", "\(dir)/a"), "\(files.map { $0.serialized() })")
        XCTAssertGreaterThanOrEqual(created["fields"]?["ret"]?.intValue ?? -1, 0)
        XCTAssertNotEqual((created["fields"]?["open_flags"]?.uintValue ?? 0) & 0o100, 0, "O_CREAT")
        XCTAssertEqual(created["comm"]?.stringValue, "touch")
        let renamed = try XCTUnwrap(find("rename", "\(dir)/a"))
        XCTAssertEqual(renamed["fields"]?["path2"]?.stringValue, "\(dir)/b")
        XCTAssertEqual(renamed["fields"]?["ret"]?.intValue, 0)
        XCTAssertEqual(try XCTUnwrap(find("unlink", "\(dir)/b"))["fields"]?["ret"]?.intValue, 0)
        XCTAssertEqual(try XCTUnwrap(find("open", "\(dir)/missing"))["fields"]?["ret"]?.intValue, -2, "ENOENT")
        let cut = try XCTUnwrap(files.first { $0["truncated"] == .bool(true) }, "a path over 255 bytes is flagged")
        XCTAssertEqual(cut["fields"]?["path"]?.stringValue?.utf8.count, 255)
        XCTAssertTrue(long.hasPrefix(cut["fields"]?["path"]?.stringValue ?? "-"))
    }
}

extension FilesFamilyTests {
    /// Writes are summarized per file, not per call: known sizes to a known
    /// file add up, a failed write is counted, a long writer gets one summary
    /// per second, and writes to a pipe are not summarized.
    func testWritesAreSummarizedPerFile() throws {
        try requireBPF()
        let dir = try scratchDirectory("writes-dir")
        let trace = scratch("writes.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "files", "--", Tool.load, "writes", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        let writes = try eventsJSON(trace, ["--type", "writes"])
        var st = stat()
        XCTAssertEqual(stat(dir, &st), 0)
        let a = writes.filter { $0["fields"]?["name"]?.stringValue == "flightbox-writes-a.dat" }
        XCTAssertEqual(a.count, 1, "\(writes.map { $0.serialized() })")
        let sa = try XCTUnwrap(a.first)
        XCTAssertEqual(sa["fields"]?["calls"]?.uintValue, 15)
        XCTAssertEqual(sa["fields"]?["bytes"]?.uintValue, 10 * 4096 + 100 + 3 * 512)
        XCTAssertEqual(sa["fields"]?["errors"]?.uintValue, 1, "the write from a bad buffer")
        XCTAssertEqual(sa["reason_name"]?.stringValue, "close")
        XCTAssertEqual(sa["fd_kind_name"]?.stringValue, "regular")
        XCTAssertEqual(sa["comm"]?.stringValue, "flightbox-load")
        XCTAssertEqual(sa["device"]?.stringValue, "\((st.st_dev >> 8) & 0xfff):\((st.st_dev & 0xff) | ((st.st_dev >> 12) & 0xfff00))")
        XCTAssertGreaterThan(sa["fields"]?["time_ns"]?.uintValue ?? 0, 0)
        XCTAssertLessThanOrEqual(sa["fields"]?["first_ts"]?.uintValue ?? 0, sa["fields"]?["last_ts"]?.uintValue ?? 0)
        let b = writes.filter { $0["fields"]?["name"]?.stringValue == "flightbox-writes-b.dat" }
        XCTAssertGreaterThanOrEqual(b.count, 2, "1.5 s of writes: one summary per second, then the close")
        XCTAssertEqual(b.reduce(0) { $0 + ($1["fields"]?["calls"]?.uintValue ?? 0) }, 15)
        XCTAssertEqual(b.reduce(0) { $0 + ($1["fields"]?["bytes"]?.uintValue ?? 0) }, 15)
        XCTAssertEqual(b.first?["reason_name"]?.stringValue, "interval")
        XCTAssertEqual(b.last?["reason_name"]?.stringValue, "close")
        for s in b { XCTAssertLessThanOrEqual((s["fields"]?["last_ts"]?.uintValue ?? 0) - (s["fields"]?["first_ts"]?.uintValue ?? 0), 1_000_000_000 + 150_000_000) }
        XCTAssertEqual(writes.count, a.count + b.count, "the pipe's writes are not summarized")
    }
}
