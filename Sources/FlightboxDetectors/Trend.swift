/// A robust linear trend over a window of samples, for predicting when a
/// resource runs out (issue 11's exhaustion detector builds on it).
///
/// Theil–Sen: the slope is the median of the slopes between every pair of
/// samples, the intercept the median of what each sample says it is. Unlike
/// least squares (Prometheus' `predict_linear`), one spike or a few bad
/// samples do not move it: up to ~29% of them can be arbitrary. It costs
/// O(n²) for n samples, fine for the tens to hundreds of samples a window of
/// gauges holds. Alone it cannot tell a steady leak from a sawtooth (a
/// garbage collector, a rotated log), so it also reports how consistent the
/// trend is: the share of consecutive steps that go the trend's way, and the
/// spread of the samples around the line.
public struct Trend: Equatable, Sendable {
    /// Change per second of sample time.
    public let slopePerSecond: Double
    /// The line's value at `at` (the last sample's time).
    public let valueAtEnd: Double
    /// Time of the last sample, ns.
    public let at: UInt64
    public let samples: Int
    /// Share of consecutive steps (with a change) in the slope's direction, 0...1.
    public let monotoneShare: Double
    /// Median absolute distance of the samples from the line.
    public let residualMAD: Double

    /// Seconds until the line reaches `limit` from below (growth toward a
    /// limit); nil when it does not rise, or the limit is none (0).
    public func secondsUntil(reaching limit: Double) -> Double? {
        guard limit > 0, slopePerSecond > 0 else { return nil }
        return max(0, (limit - valueAtEnd) / slopePerSecond)
    }

    /// Seconds until the line falls to zero (what is left running out);
    /// nil when it does not fall.
    public func secondsUntilEmpty() -> Double? {
        guard slopePerSecond < 0 else { return nil }
        return max(0, valueAtEnd / -slopePerSecond)
    }
}

public enum TrendEstimator {
    /// The trend of `(time ns, value)` samples in time order; nil with fewer
    /// than `minSamples` or no time spread. Samples at one time count once
    /// per pair (pairs at equal times have no slope and are skipped).
    public static func fit(_ points: [(t: UInt64, v: Double)], minSamples: Int = 5) -> Trend? {
        guard points.count >= max(2, minSamples), let first = points.first, let last = points.last, last.t > first.t,
              points.allSatisfy({ $0.t >= first.t }) else { return nil }
        // Times relative to the first sample, in seconds: no precision lost on big timestamps.
        let ts = points.map { Double($0.t - first.t) / 1e9 }
        var slopes: [Double] = []
        slopes.reserveCapacity(points.count * (points.count - 1) / 2)
        for i in 0..<points.count {
            for j in (i + 1)..<points.count where ts[j] != ts[i] {
                slopes.append((points[j].v - points[i].v) / (ts[j] - ts[i]))
            }
        }
        guard !slopes.isEmpty else { return nil }
        let slope = median(&slopes)
        var intercepts = points.indices.map { points[$0].v - slope * ts[$0] }
        let intercept = median(&intercepts)
        var residuals = points.indices.map { abs(points[$0].v - (intercept + slope * ts[$0])) }
        let mad = median(&residuals)
        var moving = 0, withTrend = 0
        for i in 1..<points.count {
            let step = points[i].v - points[i - 1].v
            guard step != 0 else { continue }
            moving += 1
            if (step > 0) == (slope > 0) { withTrend += 1 }
        }
        return Trend(slopePerSecond: slope, valueAtEnd: intercept + slope * ts[ts.count - 1], at: last.t, samples: points.count,
                     monotoneShare: moving == 0 ? 0 : Double(withTrend) / Double(moving), residualMAD: mad)
    }

    /// The median (the mean of the middle two for an even count); sorts `xs`.
    static func median(_ xs: inout [Double]) -> Double {
        xs.sort()
        let n = xs.count
        return n % 2 == 1 ? xs[n / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2
    }
}
