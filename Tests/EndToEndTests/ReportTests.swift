import XCTest
import FlightboxEvents

/// `flightbox report`: one self-contained page, loaded in a real headless
/// Chromium (Debian's, installed by scripts/setup.sh).
final class ReportTests: XCTestCase {
    static let chromium = "/usr/bin/chromium"

    struct Loaded {
        var dom: String
        var console: String
        var screenshot: Data
    }

    /// Loads the page twice: once dumping the DOM after the script ran (with
    /// the console on stderr), once taking a screenshot.
    func load(_ page: String) throws -> Loaded {
        guard FileManager.default.isExecutableFile(atPath: ReportTests.chromium) else {
            if ProcessInfo.processInfo.environment["FLIGHTBOX_REQUIRE_BPF"] == "1" { XCTFail("no \(ReportTests.chromium): run scripts/setup.sh") }
            throw XCTSkip("Chromium is not installed (scripts/setup.sh installs it)")
        }
        let common = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--user-data-dir=" + (try scratchDirectory("chromium-profile")),
                      "--enable-logging=stderr", "--v=0", "--hide-scrollbars"]
        let dom = try Tool.run(ReportTests.chromium, common + ["--dump-dom", "file://" + page], timeout: 90)
        XCTAssertEqual(dom.status, 0, dom.stderr)
        let png = page + ".png"
        try? FileManager.default.removeItem(atPath: png)
        let shot = try Tool.run(ReportTests.chromium, common + ["--window-size=1200,2000", "--screenshot=" + png, "file://" + page], timeout: 90)
        XCTAssertEqual(shot.status, 0, shot.stderr)
        return Loaded(dom: dom.stdout, console: dom.stderr + shot.stderr, screenshot: (try? Data(contentsOf: URL(fileURLWithPath: png))) ?? Data())
    }

    func report(_ fixture: String) throws -> (page: String, html: String) {
        let page = scratch("\(fixture).html")
        let r = try Tool.flightbox("report", Tool.packageRoot + "/fixtures/\(fixture)/trace.fbt", "-o", page)
        XCTAssertEqual(r.status, 0, r.stderr)
        let html = try String(contentsOfFile: page, encoding: .utf8)
        // Self-contained: nothing fetched (the one URL is the SVG namespace, an identifier).
        XCTAssertFalse(html.replacingOccurrences(of: "http://www.w3.org/2000/svg", with: "").contains("http"), "a URL in the page")
        XCTAssertFalse(html.contains(" src="), "an external resource in the page")
        return (page, html)
    }

    func checkRendered(_ l: Loaded, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertTrue(l.dom.contains("data-rendered=\"ok\""), "the script did not finish", file: file, line: line)
        XCTAssertTrue(l.dom.contains("<ul id=\"errors\"></ul>"), "errors on the page", file: file, line: line)
        let consoleErrors = l.console.split(separator: "\n").filter { $0.contains("CONSOLE") || $0.contains("Uncaught") }
        XCTAssertEqual(consoleErrors, [], file: file, line: line)
        XCTAssertGreaterThan(l.screenshot.count, 10_000, "no screenshot", file: file, line: line)
        XCTAssertEqual(Array(l.screenshot.prefix(8)), [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A], file: file, line: line)
    }

    /// A finding on the timeline with its evidence and lineage, gauges drawn.
    func testReportOfAFindingLoadsInChromium() throws {
        let (page, _) = try report("cpu-hogs")
        let l = try load(page)
        checkRendered(l)
        let finding = try JSONParser.parse(try Tool.flightbox("replay", Tool.packageRoot + "/fixtures/cpu-hogs/trace.fbt", "--format", "json").lines[0])
        let summary = try XCTUnwrap(finding["summary"]?.stringValue)
        XCTAssertTrue(l.dom.contains(summary.replacingOccurrences(of: "&", with: "&amp;")), "the finding's summary")
        XCTAssertTrue(l.dom.contains("id=\"finding-0\""))
        XCTAssertTrue(l.dom.contains("&quot;runq_ns&quot;: 249334611") || l.dom.contains("\"runq_ns\": 249334611"), "the evidence")
        XCTAssertTrue(l.dom.contains("Lineage ("), "the lineage")
        XCTAssertTrue(l.dom.contains("fs_bytes_available /: "), "a gauge")
        XCTAssertFalse(l.dom.contains("<p class=\"empty\">No findings"))
    }

    /// Latency histograms per syscall and device, busiest processes; a
    /// healthy trace says it has no finding.
    func testReportOfABusyTraceLoadsInChromium() throws {
        let (page, _) = try report("cold-cache-healthy")
        let l = try load(page)
        checkRendered(l)
        XCTAssertTrue(l.dom.contains("<p class=\"empty\">No findings: every detector stayed quiet on this trace.</p>"))
        XCTAssertTrue(l.dom.contains("read: 30427 calls, max 34.530 ms"), "the read histogram")
        XCTAssertTrue(l.dom.contains("254:0 read: "), "a device histogram")
        let rows = l.dom.components(separatedBy: "<td class=\"n\">").count - 1
        XCTAssertEqual(rows, 40, "20 busiest processes, pid and events each")
    }
}
