import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

/// tcp-anomaly on real recordings: the determinism contract, and quiet on healthy traffic.
final class TCPAnomalyEndToEndTests: XCTestCase {
    /// A listener that accepted 30 connects goes away; the client keeps
    /// connecting and is refused. Live and replayed findings are byte-identical.
    func testOutageIsOneCriticalFindingLiveAndOnReplay() throws {
        try requireBPF()
        let trace = scratch("outage.fbt"), live = scratch("outage.jsonl")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process,tcp", "--detect", "--detectors", "tcp-anomaly",
                                              "--findings", live, "--", Tool.load, "tcp-outage", "30", "400"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = r.stdout.split(separator: " ").compactMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(out.count, 3, r.stdout)
        XCTAssertEqual(out[1], 30, "accepted")
        XCTAssertGreaterThanOrEqual(out[2], 5, "refused")
        let liveText = try String(contentsOfFile: live, encoding: .utf8)
        let replay = try Tool.flightbox("replay", trace, "--format", "json", "--detectors", "tcp-anomaly")
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertEqual(replay.stdout, liveText)
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        XCTAssertEqual(findings.count, 1, replay.stdout)
        let f = try XCTUnwrap(findings.first)
        XCTAssertEqual(f["severity"]?.stringValue, "critical")
        XCTAssertEqual(f["comm"]?.stringValue, "flightbox-load")
        XCTAssertEqual(f["evidence"]?["endpoint"]?.stringValue, "127.0.0.1:\(out[0])")
        XCTAssertEqual(f["evidence"]?["kind"]?.stringValue, "stopped-accepting")
        XCTAssertEqual(f["evidence"]?["accepted_total"]?.uintValue, 30)
    }

    /// A dropped SYN retransmitted, a connect given up after 1.5 s, a single
    /// refused connect: each once, none a burst, so nothing.
    func testIsolatedFailuresAreNotFindings() throws {
        try requireBPF()
        for (name, args) in [("retransmit", ["retransmit", "1500"]), ("tcp", ["tcp", "5"])] {
            let trace = scratch("\(name).fbt"), live = scratch("\(name).jsonl")
            let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process,tcp", "--detect", "--detectors", "tcp-anomaly",
                                                  "--findings", live, "--", Tool.load] + args)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(try String(contentsOfFile: live, encoding: .utf8), "", name)
        }
    }
}
