import XCTest

/// `flightbox bench uprobes`, short: every mode runs, and every call of the
/// probed function is seen once by the modes that write an event per call.
/// Timings are machine-dependent and not asserted.
final class UprobesBenchTests: XCTestCase {
    func testEveryCallIsCountedInEveryMode() throws {
        try requireBPF()
        let r = try Tool.flightbox("bench", "uprobes", "--calls", "20000", "--rounds", "1")
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = Dictionary(r.lines.compactMap { line -> (String, [String])? in
            for mode in ["bare", "uprobe (entry)", "uprobe + uretprobe", "USDT probe"] where line.hasPrefix(mode + " ") {
                return (mode, line.dropFirst(mode.count).split(separator: " ").map(String.init))
            }
            return nil
        }, uniquingKeysWith: { a, _ in a })
        XCTAssertEqual(rows.count, 4, r.stdout)
        // Columns: ns/call, x bare, +ns/call, events/call, calls/s.
        XCTAssertEqual(rows["uprobe + uretprobe"]?[3], "1.000", r.stdout)
        XCTAssertEqual(rows["USDT probe"]?[3], "1.000", r.stdout)
        XCTAssertEqual(rows["uprobe (entry)"]?[3], "-")
        for (mode, cols) in rows {
            let ns = try XCTUnwrap(Double(cols[0]), "\(mode): \(cols)")
            XCTAssertGreaterThan(ns, 0, mode)
        }
        XCTAssertTrue(r.stdout.contains("every call counted: yes"), r.stdout)
    }
}
