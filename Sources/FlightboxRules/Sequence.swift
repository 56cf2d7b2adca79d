import FlightboxEvents

/// What a sequence rule saw when its last step matched.
public struct SequenceMatch {
    /// One per step, in step order.
    public struct Step: Equatable {
        public let seq: UInt64
        public let ts: UInt64
        public let kind: SecurityEventKind
        public let pid: UInt32
    }
    public let steps: [Step]
    /// The lineage anchor's exec_id (or the pid, `by: process`) and the key's value: what makes it one finding.
    public let key: String
}

/// `sequence:` — ordered steps, each a condition, by one lineage (or one
/// process) within `within` of the first step; with `key`, every step names
/// the same value (a path written, then made executable, then executed).
///
/// State: the partial matches, at most `maxPartials` per rule, in buckets
/// by the key's last path component (a written file is looked up, not
/// searched for), each bucket oldest first. A full table drops what has
/// expired, then the oldest sixteenth by (first step's time, key, order):
/// no dictionary order reaches the output. Plain values throughout.
public final class StepSequence {
    public static let maxPartials = 4096
    public static let maxSteps = 8
    public enum By: String, Sendable { case lineage, process }

    struct StepDefinition {
        let condition: Condition
        let kinds: KindSet
        let key: FieldAccess?
    }

    struct Partial: Equatable {
        /// Steps matched so far (1 ... steps.count - 1).
        var matched: Int
        var firstTs: UInt64
        /// The lineage anchor's exec_id bytes (`by: lineage`), or empty (`by: process`).
        var anchor: [UInt8]
        var pid: UInt32
        var key: [UInt8]
        var steps: [SequenceMatch.Step]
    }

    let steps: [StepDefinition]
    public let within: UInt64
    public let by: By
    public var stepCount: Int { steps.count }
    private(set) var partials: [[UInt8]: [Partial]] = [:]
    public private(set) var count = 0
    /// Partial matches dropped, unexpired, to make room for a new one.
    public private(set) var evicted: UInt64 = 0

    init(steps: [StepDefinition], within: UInt64, by: By) {
        self.steps = steps
        self.within = within
        self.by = by
    }

    /// Forgets partial matches whose window has passed by `now`.
    func expire(now: UInt64) {
        guard count > 0 else { return }
        for b in partials.keys {
            partials[b]!.removeAll { $0.firstTs &+ within <= now }
            if partials[b]!.isEmpty { partials[b] = nil }
        }
        count = partials.values.reduce(0) { $0 + $1.count }
    }

    /// Room for one more: expired partials go, then the oldest sixteenth.
    private func makeRoom(now: UInt64) {
        expire(now: now)
        guard count >= StepSequence.maxPartials else { return }
        var all: [(UInt64, [UInt8], Int)] = []
        for (b, list) in partials { for (n, p) in list.enumerated() { all.append((p.firstTs, b, n)) } }
        all.sort { ($0.0, $0.2) != ($1.0, $1.2) ? ($0.0, $0.2) < ($1.0, $1.2) : $0.1.lexicographicallyPrecedes($1.1) }
        var drop: [[UInt8]: Set<Int>] = [:]
        for v in all.prefix(max(1, StepSequence.maxPartials / 16)) { drop[v.1, default: []].insert(v.2) }
        for (b, idx) in drop {
            partials[b] = partials[b]!.enumerated().filter { !idx.contains($0.offset) }.map(\.element)
            if partials[b]!.isEmpty { partials[b] = nil }
            count -= idx.count
            evicted &+= UInt64(idx.count)
        }
    }

    /// The bucket of a key: its last path component (the whole key when it has no slash).
    static func bucket(_ key: [UInt8]) -> [UInt8] {
        guard let slash = key.lastIndex(of: 47) else { return key }
        return Array(key[(slash + 1)...])
    }

    /// The execution whose descendants (itself included) count as the lineage
    /// of `proc`'s act: its parent, so a file written by `curl` and run by
    /// the shell's next child are one lineage; the process itself when the
    /// parent is unknown or init (everything descends from pid 1).
    static func anchor(_ proc: Execution?) -> [UInt8]? {
        guard let proc else { return nil }
        if let p = proc.parent, p.pid != 1 { return Array(p.execId.string.utf8) }
        return Array(proc.execId.string.utf8)
    }

    static func inLineage(_ proc: Execution?, _ anchor: [UInt8]) -> Bool {
        var e = proc
        var n = 0
        while let c = e, n <= Fields.maxAncestors {
            if ByteMatch.equal(c.execId.buffer, anchor) { return true }
            e = c.parent
            n += 1
        }
        return false
    }

    /// Paths as programs give them: equal, or one is the other's tail after a
    /// slash ("./x" or "x" written in the working directory, "/tmp/d/x" run).
    static func sameKey(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Bool {
        var x = Array(a)
        var y = b
        if x.starts(with: [46, 47]) { x.removeFirst(2) }
        if y.starts(with: [46, 47]) { y.removeFirst(2) }
        if x == y { return true }
        let (short, long) = x.count < y.count ? (x, y) : (y, x)
        guard !short.isEmpty, long.count > short.count, long[long.count - short.count - 1] == 47 else { return false }
        return Array(long.suffix(short.count)) == short
    }

    static func keyBytes(_ access: FieldAccess?, _ i: RuleInput) -> [UInt8]? {
        switch access {
        case nil: return []
        case .string(let get)?: return get(i).map { Array($0) }
        case .int(let get)?: return get(i).map { Array(String($0).utf8) }
        default: return nil
        }
    }

    /// Advances the partial matches with one event (which passed the rule's
    /// filter); returns the match when a sequence completes. Later steps are
    /// tried first, so one event does not both start and finish a sequence.
    func advance(_ i: RuleInput) -> SequenceMatch? {
        let e = i.event
        for k in stride(from: steps.count - 1, through: 0, by: -1) {
            let step = steps[k]
            guard step.kinds.contains(i.kind), step.condition(i) else { continue }
            let here = SequenceMatch.Step(seq: e.sequence, ts: e.timestamp, kind: i.kind, pid: e.pid)
            if k == 0 {
                guard let key = StepSequence.keyBytes(step.key, i) else { continue }
                let anchor: [UInt8]
                if by == .lineage { guard let a = StepSequence.anchor(i.proc) else { continue }; anchor = a } else { anchor = [] }
                let b = StepSequence.bucket(key)
                // A repeated first step (a file written in chunks, then chmod +x) restarts its partial.
                if let j = partials[b]?.firstIndex(where: { $0.matched == 1 && $0.anchor == anchor && $0.key == key }) {
                    partials[b]!.remove(at: j)
                    count -= 1
                }
                if count >= StepSequence.maxPartials { makeRoom(now: e.timestamp) }
                partials[b, default: []].append(Partial(matched: 1, firstTs: e.timestamp, anchor: anchor, pid: e.pid, key: key, steps: [here]))
                count += 1
                return nil
            }
            var key: [UInt8] = []
            if step.key != nil {
                guard let k = StepSequence.keyBytes(step.key, i) else { continue }
                key = k
            }
            let b = StepSequence.bucket(key)
            // The oldest waiting partial that this event continues.
            guard let j = partials[b]?.firstIndex(where: { p in
                p.matched == k && e.timestamp >= p.firstTs && e.timestamp - p.firstTs <= within
                    && (by == .process ? p.pid == e.pid : StepSequence.inLineage(i.proc, p.anchor))
                    && (step.key == nil || key.withUnsafeBytes { StepSequence.sameKey($0, p.key) })
            }) else { continue }
            partials[b]![j].matched += 1
            partials[b]![j].steps.append(here)
            if partials[b]![j].matched == steps.count {
                let p = partials[b]!.remove(at: j)
                if partials[b]!.isEmpty { partials[b] = nil }
                count -= 1
                let id = by == .process ? "pid \(p.pid)" : String(decoding: p.anchor, as: UTF8.self)
                return SequenceMatch(steps: p.steps, key: id + "\u{1F}" + String(decoding: p.key, as: UTF8.self))
            }
            return nil
        }
        return nil
    }
}

extension SequenceMatch {
    /// As the match a rule reports: the count is the number of steps.
    var aggregateMatch: AggregateMatch {
        AggregateMatch(count: steps.count, values: [], key: key, firstTs: steps.first?.ts ?? 0, sequences: steps.map(\.seq), steps: steps)
    }
}
