import FlightboxEvents

/// What an aggregate rule saw when it matched.
public struct AggregateMatch {
    public let count: Int
    /// The distinct values, in the order first seen (empty without `distinct`).
    public let values: [String]
    public let key: String
    public let firstTs: UInt64
    /// Sequence numbers of the events counted, oldest first.
    public let sequences: [UInt64]
}

/// The state of one aggregate rule: per group, the recent matching events
/// (at most `count`), in event time. Deterministic: groups are looked up,
/// never iterated in an order that reaches the output.
public final class Aggregate {
    public static let maxGroups = 4096
    public static let maxCount = 10_000
    let by: [FieldAccess]
    public let byNames: [String]
    let distinct: FieldAccess?
    public let distinctName: String?
    public let count: Int
    public let window: UInt64
    /// `regular`: match only when the gaps between the counted events vary
    /// by at most this share of their mean (coefficient of variation), with
    /// a mean gap of at least `minPeriod` — a beacon, not a burst.
    public let regular: Double?
    public static let minPeriod: UInt64 = 1_000_000_000
    var groups: [String: Group] = [:]
    /// Matching events not counted because every group slot was busy.
    public internal(set) var overflow: UInt64 = 0

    final class Group {
        var entries: [(ts: UInt64, seq: UInt64, value: String)] = []
        var newest: UInt64 = 0
    }

    init(by: [FieldAccess], byNames: [String], distinct: FieldAccess?, distinctName: String?, count: Int, window: UInt64, regular: Double?) {
        self.regular = regular
        self.by = by
        self.byNames = byNames
        self.distinct = distinct
        self.distinctName = distinctName
        self.count = count
        self.window = window
    }

    static func text(_ a: FieldAccess, _ i: RuleInput) -> String? {
        switch a {
        case .string(let get): get(i).map { String(decoding: $0, as: UTF8.self) }
        case .int(let get): get(i).map { String($0) }
        default: nil
        }
    }

    /// Counts a matching event; returns the match when its group reaches the
    /// count (and starts the group afresh).
    func add(_ i: RuleInput) -> AggregateMatch? {
        var key = ""
        for (n, a) in by.enumerated() {
            guard let t = Aggregate.text(a, i) else { return nil }
            if n > 0 { key += "\u{1F}" }
            key += t
        }
        let value: String
        if let d = distinct {
            guard let v = Aggregate.text(d, i) else { return nil }
            value = v
        } else {
            value = ""
        }
        let ts = i.event.timestamp
        let g: Group
        if let existing = groups[key] {
            g = existing
        } else {
            if groups.count >= Aggregate.maxGroups {
                // Forget the groups whose window has passed; the set removed
                // does not depend on the dictionary's order.
                groups = groups.filter { $0.value.newest &+ window > ts }
                if groups.count >= Aggregate.maxGroups { overflow &+= 1; return nil }
            }
            g = Group()
            groups[key] = g
        }
        g.newest = max(g.newest, ts)
        // Drop what fell out of the window (entries are in arrival order;
        // timestamps may step back a little, so compare each).
        g.entries.removeAll { $0.ts &+ window <= ts }
        if distinct != nil, let k = g.entries.firstIndex(where: { $0.value == value }) {
            g.entries.remove(at: k)
        }
        g.entries.append((ts, i.event.sequence, value))
        if g.entries.count > count { g.entries.removeFirst(g.entries.count - count) }
        guard g.entries.count >= count else { return nil }
        if let limit = regular {
            // Gaps in arrival order; a beacon's are nearly equal.
            var gaps: [Double] = []
            for k in 1..<g.entries.count { gaps.append(Double(g.entries[k].ts &- g.entries[k - 1].ts)) }
            let mean = gaps.reduce(0, +) / Double(gaps.count)
            let variance = gaps.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(gaps.count)
            guard mean >= Double(Aggregate.minPeriod), variance.squareRoot() <= limit * mean else { return nil }
        }
        let m = AggregateMatch(count: g.entries.count, values: distinct == nil ? [] : g.entries.map(\.value), key: key,
                               firstTs: g.entries.map(\.ts).min() ?? ts, sequences: g.entries.map(\.seq))
        groups[key] = nil
        return m
    }

    /// "10s", "500ms", "1m", "250us": nanoseconds.
    static func parseDuration(_ s: String) -> UInt64? {
        for (unit, scale) in [("ms", UInt64(1_000_000)), ("us", 1_000), ("ns", 1), ("s", 1_000_000_000), ("m", 60_000_000_000), ("h", 3_600_000_000_000)]
        where s.hasSuffix(unit) {
            guard let n = UInt64(s.dropLast(unit.count)) else { return nil }
            let (v, o) = n.multipliedReportingOverflow(by: scale)
            return o ? nil : v
        }
        return nil
    }
}
