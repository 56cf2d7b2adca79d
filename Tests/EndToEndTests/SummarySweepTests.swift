import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

final class SummarySweepTests: XCTestCase {
    /// A process writes and faults, then goes quiet for 2.5 s and exits
    /// without closing its file: both summaries come out a second or so
    /// after the last activity, while it sleeps, before its exit.
    func testQuietSummariesAreWrittenOutBeforeTheProcessExits() throws {
        try requireBPF()
        let dir = try scratchDirectory("linger-dir")
        let trace = scratch("linger.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "files,memory", "--", Tool.load, "linger", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        let exit = try XCTUnwrap(try eventsJSON(trace, ["--type", "exit"]).first { $0["fields"]?["comm"]?.stringValue == "flightbox-load" })
        let pid = try XCTUnwrap(exit["pid"]?.uintValue)
        let exitTs = try XCTUnwrap(exit["ts_ns"]?.uintValue)
        let writes = try eventsJSON(trace, ["--type", "writes"]).filter { $0["pid"]?.uintValue == pid }
        XCTAssertEqual(writes.count, 1, "\(writes.map { $0.serialized() })")
        let w = try XCTUnwrap(writes.first)
        XCTAssertEqual(w["fields"]?["name"]?.stringValue, "flightbox-linger.dat")
        XCTAssertEqual(w["fields"]?["calls"]?.uintValue, 3)
        XCTAssertEqual(w["fields"]?["bytes"]?.uintValue, 3000)
        XCTAssertEqual(w["reason_name"]?.stringValue, "idle")
        let wts = try XCTUnwrap(w["ts_ns"]?.uintValue), last = try XCTUnwrap(w["fields"]?["last_ts"]?.uintValue)
        XCTAssertGreaterThanOrEqual(wts, last + 1_000_000_000, "quiet for the summary interval first")
        XCTAssertLessThan(wts, exitTs, "written out while the process slept")
        XCTAssertLessThan(w["seq"]?.uintValue ?? .max, exit["seq"]?.uintValue ?? 0)
        let faults = try eventsJSON(trace, ["--type", "faults"]).filter { $0["pid"]?.uintValue == pid }
        let quiet = try XCTUnwrap(faults.last, "\(faults)")
        XCTAssertGreaterThanOrEqual(faults.reduce(0) { $0 + ($1["fields"]?["user"]?.uintValue ?? 0) }, 256)
        XCTAssertLessThan(quiet["ts_ns"]?.uintValue ?? .max, exitTs, "the sweep wrote it, not the exit")
    }
}
