import XCTest
@testable import FlightboxDetectors

final class EpisodeTests: XCTestCase {
    func testOneReportPerEpisodeThenHoldDownThenANewEpisode() {
        var t = EpisodeTracker<String>(holdDownNs: 10)
        XCTAssertEqual(t.observe("a", at: 100, severity: .warning), .open)
        XCTAssertEqual(t.observe("a", at: 105, severity: .warning), .suppress)
        XCTAssertEqual(t.observe("a", at: 114, severity: .warning), .suppress, "each repeat extends the episode")
        XCTAssertEqual(t.episode("a")?.occurrences, 3)
        XCTAssertEqual(t.episode("a")?.suppressed, 2)
        XCTAssertEqual(t.episode("a")?.startedAt, 100)
        XCTAssertEqual(t.observe("a", at: 124, severity: .warning), .open, "quiet for the hold-down: a new episode")
        XCTAssertEqual(t.episode("a")?.startedAt, 124)
    }

    func testKeysAreIndependent() {
        var t = EpisodeTracker<Int>(holdDownNs: 10)
        XCTAssertEqual(t.observe(1, at: 0, severity: .info), .open)
        XCTAssertEqual(t.observe(2, at: 1, severity: .info), .open, "a key seen for the first time opens its own episode")
        XCTAssertEqual(t.observe(1, at: 2, severity: .info), .suppress)
    }

    func testEscalatesOnceAndNeverDown() {
        var t = EpisodeTracker<Int>(holdDownNs: 100)
        XCTAssertEqual(t.observe(1, at: 0, severity: .info), .open)
        XCTAssertEqual(t.observe(1, at: 1, severity: .warning), .escalate(from: .info))
        XCTAssertEqual(t.observe(1, at: 2, severity: .critical), .suppress, "at most one escalation per episode")
        XCTAssertEqual(t.observe(1, at: 3, severity: .info), .suppress)
        XCTAssertEqual(t.episode(1)?.severity, .warning)
        _ = t.close(before: 1_000)
        XCTAssertEqual(t.observe(1, at: 1_000, severity: .info), .open)
        XCTAssertEqual(t.observe(1, at: 1_001, severity: .critical), .escalate(from: .info), "a new episode may escalate again")
    }

    func testCloseReturnsEndedEpisodesInKeyOrder() {
        var t = EpisodeTracker<Int>(holdDownNs: 10)
        for k in [5, 3, 9, 1] { _ = t.observe(k, at: UInt64(k), severity: .warning) }
        _ = t.observe(9, at: 20, severity: .warning)
        let ended = t.close(before: 19)
        XCTAssertEqual(ended.map(\.key), [1, 3, 5], "ordered by key, whatever the hash order")
        XCTAssertEqual(t.open.map(\.key), [9])
        XCTAssertEqual(t.close(before: 30).map(\.key), [9])
        XCTAssertTrue(t.open.isEmpty)
    }

    func testHostileTimestampsDoNotTrap() {
        var t = EpisodeTracker<Int>(holdDownNs: .max)
        XCTAssertEqual(t.observe(1, at: .max, severity: .warning), .open)
        XCTAssertEqual(t.observe(1, at: .max, severity: .warning), .suppress)
        XCTAssertEqual(t.observe(1, at: 0, severity: .warning), .suppress, "time running backwards stays in the episode")
        XCTAssertTrue(t.close(before: .max - 1).isEmpty)
    }
}
