import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

/// exhaustion on a real recording: the determinism contract, and a prediction checked against the truth.
final class ExhaustionEndToEndTests: XCTestCase {
    /// A process leaks 20 fds a second toward its RLIMIT_NOFILE of 256 and
    /// says when open(2) failed: one warning, then one critical, before that
    /// time, predicting it within 20%; live and on replay byte-identical, the
    /// predicted wall-clock time from the trace's own clock.
    func testAnFdLeakIsPredictedBeforeItFailsLiveAndOnReplay() throws {
        try requireBPF()
        let trace = scratch("exhaustion.fbt"), live = scratch("exhaustion.jsonl"), config = scratch("exhaustion.yaml")
        try """
        detectors:
          exhaustion: {window: 10s, step: 500ms, min_samples: 6, min_span: 3s, warning_horizon: 30s, critical_horizon: 2s, sustain: 2, hold_down: 2s}
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process,gauges", "--gauge-interval", "200ms", "--detect",
                                              "--detectors", "exhaustion", "--config", config, "--findings", live, "--",
                                              "/bin/sh", "-c", "ulimit -n 256 && exec \(Tool.load) use fds leak 20 1 30"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // "exhausted fds at NS ns after N units: Too many open files"
        let words = r.stdout.split(separator: " ")
        let failedAt = try XCTUnwrap(words.firstIndex(of: "at").flatMap { UInt64(words[$0 + 1]) }, r.stdout)
        let liveText = try String(contentsOfFile: live, encoding: .utf8)
        let replay = try Tool.flightbox("replay", trace, "--format", "json")
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertEqual(replay.stdout, liveText)
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        XCTAssertEqual(findings.compactMap { $0["severity"]?.stringValue }, ["warning", "critical"], replay.stdout)
        let w = try XCTUnwrap(findings.first)
        XCTAssertEqual(w["detector"]?.stringValue, "exhaustion")
        XCTAssertEqual(w["comm"]?.stringValue, "flightbox-load")
        XCTAssertEqual(w["evidence"]?["resource"]?.stringValue, "process_fds")
        XCTAssertEqual(w["evidence"]?["limit"]?.uintValue, 256)
        XCTAssertEqual(try XCTUnwrap(w["evidence"]?["rate_per_second"]?.doubleValue), 20, accuracy: 2)
        let at = try XCTUnwrap(w["ts_ns"]?.uintValue)
        let predicted = try XCTUnwrap(w["evidence"]?["predicted_exhaustion_ns"]?.uintValue)
        XCTAssertLessThan(at, failedAt, "warned before it failed")
        XCTAssertEqual(Double(predicted - at), Double(failedAt - at), accuracy: 0.2 * Double(failedAt - at), "within 20% of the real time left")
        let meta = try TraceReader(path: trace).metadata
        XCTAssertEqual(w["evidence"]?["predicted_exhaustion_wall_ns"]?.intValue, meta.wallClock(predicted))
        XCTAssertLessThan(try XCTUnwrap(findings.last?["ts_ns"]?.uintValue), failedAt, "critical before it failed too")
    }
}

private extension JSON {
    /// A number as parsed from a finding's text, whichever case the parser chose.
    var doubleValue: Double? {
        switch self {
        case .double(let d): d
        case .int(let i): Double(i)
        case .uint(let u): Double(u)
        default: nil
        }
    }
}
