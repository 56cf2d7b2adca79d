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
    /// A sequence rule's steps, in step order (nil for an aggregate).
    public var steps: [SequenceMatch.Step]? = nil
}

/// The state of one aggregate rule: per group, the recent matching events
/// (at most `count`), in event time. Deterministic: groups are looked up,
/// and when they must be dropped they are ordered by event time then key,
/// never by the dictionary's order. State is plain values (no classes), so
/// it can be saved and restored.
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
    /// Groups forgotten while their window was still open, to make room for
    /// a new key (the least recently active first).
    public internal(set) var evicted: UInt64 = 0

    struct Entry: Equatable, Codable {
        var ts: UInt64
        var seq: UInt64
        var value: String
    }

    struct Group: Equatable, Codable {
        var entries: [Entry] = []
        /// The newest event time seen in the group.
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

    /// Forgets the groups whose window has passed by `now` (event time): a
    /// flood of one-off keys does not hold slots until the table is full.
    func expire(now: UInt64) {
        guard !groups.isEmpty else { return }
        groups = groups.filter { $0.value.newest &+ window > now }
    }

    /// Makes room for one more group: the expired ones go, then, if still
    /// full, the least recently active sixteenth (by newest event time, then
    /// key), so a flood of new keys costs a sort per 256 keys, not per key.
    private func makeRoom(now: UInt64) {
        expire(now: now)
        guard groups.count >= Aggregate.maxGroups else { return }
        let victims = groups.map { ($0.value.newest, $0.key) }.sorted { $0 < $1 }.prefix(max(1, Aggregate.maxGroups / 16))
        for (_, key) in victims { groups[key] = nil }
        evicted &+= UInt64(victims.count)
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
        if groups[key] == nil, groups.count >= Aggregate.maxGroups { makeRoom(now: ts) }
        let entry = Entry(ts: ts, seq: i.event.sequence, value: value)
        // Updated in place (the default subscript), one hash per event.
        guard let m = push(entry, key: key, into: &groups[key, default: Group()]) else { return nil }
        // The group starts afresh.
        groups[key] = nil
        return m
    }

    private func push(_ entry: Entry, key: String, into g: inout Group) -> AggregateMatch? {
        let ts = entry.ts
        g.newest = max(g.newest, ts)
        // Drop what fell out of the window (entries are in arrival order;
        // timestamps may step back a little, so compare each).
        g.entries.removeAll { $0.ts &+ window <= ts }
        if distinct != nil, let k = g.entries.firstIndex(where: { $0.value == entry.value }) {
            g.entries.remove(at: k)
        }
        g.entries.append(entry)
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
        return AggregateMatch(count: g.entries.count, values: distinct == nil ? [] : g.entries.map(\.value), key: key,
                              firstTs: g.entries.map(\.ts).min() ?? ts, sequences: g.entries.map(\.seq))
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
