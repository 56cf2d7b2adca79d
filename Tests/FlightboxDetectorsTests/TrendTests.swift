import XCTest
@testable import FlightboxDetectors

final class TrendTests: XCTestCase {
    /// Samples one second apart from t = 1e12 ns (a realistic monotonic clock).
    func series(_ values: [Double], start: UInt64 = 1_000_000_000_000, stepNs: UInt64 = 1_000_000_000) -> [(t: UInt64, v: Double)] {
        values.enumerated().map { (start + UInt64($0.offset) * stepNs, $0.element) }
    }

    func testAnExactLineIsRecoveredAndPredicts() throws {
        // 100 MB used, growing 2 MB/s, toward a 200 MB limit.
        let t = try XCTUnwrap(TrendEstimator.fit(series((0..<30).map { 100e6 + 2e6 * Double($0) })))
        XCTAssertEqual(t.slopePerSecond, 2e6, accuracy: 1e-3)
        XCTAssertEqual(t.valueAtEnd, 158e6, accuracy: 1e-3)
        XCTAssertEqual(t.monotoneShare, 1)
        XCTAssertEqual(t.residualMAD, 0, accuracy: 1e-6)
        XCTAssertEqual(try XCTUnwrap(t.secondsUntil(reaching: 200e6)), 21, accuracy: 1e-6)
        XCTAssertNil(t.secondsUntilEmpty())
        // Free space falling 1 MB/s from 50 MB: empty 21 s after the last sample.
        let free = try XCTUnwrap(TrendEstimator.fit(series((0..<30).map { 50e6 - 1e6 * Double($0) })))
        XCTAssertEqual(try XCTUnwrap(free.secondsUntilEmpty()), 21, accuracy: 1e-6)
        XCTAssertNil(free.secondsUntil(reaching: 100e6))
    }

    func testNoiseAndOutliersBarelyMoveIt() throws {
        var rng = NoiseGenerator(state: 7)
        var values = (0..<60).map { 1_000 + 10 * Double($0) + Double(rng.next() % 21) - 10 }
        values[20] = 1_000_000 // a spike
        values[40] = 0          // a glitch
        let t = try XCTUnwrap(TrendEstimator.fit(series(values)))
        XCTAssertEqual(t.slopePerSecond, 10, accuracy: 0.5, "the spike and the glitch do not bend the line")
        XCTAssertGreaterThan(t.monotoneShare, 0.6)
    }

    func testTooFewPointsOrNoTimeSpreadGiveNothing() {
        XCTAssertNil(TrendEstimator.fit(series([1, 2, 3, 4])), "fewer than the minimum")
        XCTAssertNil(TrendEstimator.fit([(5, 1), (5, 2), (5, 3), (5, 4), (5, 5)]), "all at one time")
        XCTAssertNil(TrendEstimator.fit([(5, 1), (6, 2), (2, 3), (8, 4), (9, 5)]), "a point before the first: not in time order")
        XCTAssertNotNil(TrendEstimator.fit(series([1, 2, 3]), minSamples: 3))
    }

    func testFlatUsageNeverRunsOut() throws {
        let t = try XCTUnwrap(TrendEstimator.fit(series(Array(repeating: 5e9, count: 40))))
        XCTAssertEqual(t.slopePerSecond, 0)
        XCTAssertNil(t.secondsUntil(reaching: 8e9))
        XCTAssertNil(t.secondsUntilEmpty())
    }

    /// A sawtooth (allocate, collect) has a slope of about zero and a low
    /// monotone share: a detector must not read it as a leak.
    func testASawtoothIsNotATrend() throws {
        let values = (0..<60).map { Double(($0 % 10) * 100) }
        let t = try XCTUnwrap(TrendEstimator.fit(series(values)))
        XCTAssertLessThan(abs(t.slopePerSecond), 15, "\(t)")
        XCTAssertGreaterThan(t.residualMAD, 150, "samples far from the line: no consistent trend")
    }

    /// A limit of none (0) is no prediction; a value already past the limit is 0 s away.
    func testLimitsOfNoneAndAlreadyReached() throws {
        let t = try XCTUnwrap(TrendEstimator.fit(series((0..<10).map { Double($0) })))
        XCTAssertNil(t.secondsUntil(reaching: 0))
        XCTAssertEqual(t.secondsUntil(reaching: 3), 0)
    }

    /// A counter that resets (a process restarted) in the window: the
    /// estimator gives the line through most of the points; detectors cut the
    /// window at a reset rather than fit across it.
    func testAResetShowsInTheSpread() throws {
        let values = (0..<20).map { 100 * Double($0) } + (0..<20).map { 100 * Double($0) }
        let t = try XCTUnwrap(TrendEstimator.fit(series(values)))
        XCTAssertGreaterThan(t.residualMAD, 100, "the drop leaves the samples far from any one line")
    }

    /// Timestamps near 2^64: no overflow, times are taken relative to the first.
    func testHugeTimestamps() throws {
        let t = try XCTUnwrap(TrendEstimator.fit(series((0..<10).map { Double($0) }, start: .max - 20_000_000_000)))
        XCTAssertEqual(t.slopePerSecond, 1, accuracy: 1e-9)
    }
}

/// Deterministic numbers for the noise.
struct NoiseGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        return z ^ (z >> 27)
    }
}
