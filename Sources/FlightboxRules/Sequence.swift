import FlightboxEvents

/// What a sequence rule saw when its last step matched.
public struct SequenceMatch {
    /// One per step, in step order.
    public struct Step: Equatable, Codable {
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
/// by a hash of the key's last path component (a step looks its file up
/// rather than searching), each bucket oldest first. A full table drops what
/// has expired, then the oldest sixteenth by (first step's time, bucket,
/// position): no dictionary order reaches the output. Plain values
/// throughout. A first step repeated for a partial already waiting (a log
/// opened for writing again and again) updates it in place, without
/// allocating.
public final class StepSequence {
    public static let maxPartials = 4096
    public static let maxSteps = 8
    public enum By: String, Sendable { case lineage, process }

    struct StepDefinition {
        let condition: Condition
        let kinds: KindSet
        let key: FieldAccess?
    }

    struct Partial: Equatable, Codable {
        /// Steps matched so far (1 ... steps.count - 1).
        var matched: Int
        var firstTs: UInt64
        /// The lineage anchor's exec_id bytes (`by: lineage`), or empty (`by: process`).
        var anchor: [UInt8]
        /// The anchor's pid: an image it exec'd is still its lineage.
        var anchorPid: UInt32
        var pid: UInt32
        var key: [UInt8]
        var steps: [SequenceMatch.Step]
    }

    let steps: [StepDefinition]
    public let within: UInt64
    public let by: By
    public var stepCount: Int { steps.count }
    var partials: [UInt64: [Partial]] = [:]
    public internal(set) var count = 0
    /// Partial matches dropped, unexpired, to make room for a new one.
    public internal(set) var evicted: UInt64 = 0

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
        var all: [(ts: UInt64, bucket: UInt64, index: Int)] = []
        for (b, list) in partials { for (n, p) in list.enumerated() { all.append((p.firstTs, b, n)) } }
        all.sort { ($0.ts, $0.bucket, $0.index) < ($1.ts, $1.bucket, $1.index) }
        var drop: [UInt64: Set<Int>] = [:]
        for v in all.prefix(max(1, StepSequence.maxPartials / 16)) { drop[v.bucket, default: []].insert(v.index) }
        for (b, idx) in drop {
            partials[b] = partials[b]!.enumerated().filter { !idx.contains($0.offset) }.map(\.element)
            if partials[b]!.isEmpty { partials[b] = nil }
            count -= idx.count
            evicted &+= UInt64(idx.count)
        }
    }

    /// FNV-1a of the key's last path component (the whole key without a slash).
    static func bucket(_ key: UnsafeRawBufferPointer) -> UInt64 {
        var start = key.count
        while start > 0, key[start - 1] != 47 { start -= 1 }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for i in start..<key.count { h = (h ^ UInt64(key[i])) &* 0x100_0000_01b3 }
        return h
    }

    /// The execution whose descendants (itself included) count as the lineage
    /// of `proc`'s act: its parent, so a file written by `curl` and run by
    /// the shell's next child are one lineage; the process itself when the
    /// parent is unknown or init (everything descends from pid 1).
    static func anchor(_ proc: Execution) -> Execution {
        if let p = proc.parent, p.pid != 1 { return p }
        return proc
    }

    /// Whether `proc` is the anchor, an image the anchor exec'd (same pid), or below either.
    static func inLineage(_ proc: Execution?, _ anchor: [UInt8], pid: UInt32) -> Bool {
        var e = proc
        var n = 0
        while let c = e, n <= Fields.maxAncestors {
            if c.pid == pid || ByteMatch.equal(c.execId.buffer, anchor) { return true }
            e = c.parent
            n += 1
        }
        return false
    }

    /// Paths as programs give them: equal, or one is the other's tail after a
    /// slash ("./x" or "x" written in the working directory, "/tmp/d/x" run).
    static func sameKey(_ a: UnsafeRawBufferPointer, _ b: [UInt8]) -> Bool {
        b.withUnsafeBytes { bb in
            func dotSlash(_ p: UnsafeRawBufferPointer) -> Int { p.count >= 2 && p[0] == 46 && p[1] == 47 ? 2 : 0 }
            let x = UnsafeRawBufferPointer(rebasing: a[dotSlash(a)...]), y = UnsafeRawBufferPointer(rebasing: bb[dotSlash(bb)...])
            let (short, long) = x.count <= y.count ? (x, y) : (y, x)
            if short.count == long.count { return ByteMatch.memcmpEqual(long, short, count: short.count, at: 0) }
            guard !short.isEmpty, long[long.count - short.count - 1] == 47 else { return false }
            return ByteMatch.memcmpEqual(long, short, count: short.count, at: long.count - short.count)
        }
    }

    /// The key of a step's event (empty without a key; nil when the event has no such field).
    @inline(__always)
    static func withKey<R>(_ access: FieldAccess?, _ i: RuleInput, _ body: (UnsafeRawBufferPointer) -> R?) -> R? {
        switch access {
        case nil: return body(UnsafeRawBufferPointer(start: nil, count: 0))
        case .string(let get)?: return get(i).flatMap(body)
        case .int(let get)?: return get(i).flatMap { v in Array(String(v).utf8).withUnsafeBytes(body) }
        default: return nil
        }
    }

    /// Advances the partial matches with one event (which passed the rule's
    /// filter); returns the match when a sequence completes. Later steps are
    /// tried first, so one event does not both start and finish a sequence.
    func advance(_ i: RuleInput) -> SequenceMatch? {
        for k in stride(from: steps.count - 1, through: 0, by: -1) {
            let step = steps[k]
            guard step.kinds.contains(i.kind), step.condition(i) else { continue }
            if k == 0 {
                // nil: the event lacks the key or a lineage; go on to no other step.
                _ = StepSequence.withKey(step.key, i) { start(i, key: $0) }
                return nil
            }
            switch StepSequence.withKey(step.key, i, { key in continueStep(k, i, key: key, keyed: step.key != nil) }) {
            case .some(.some(let m)): return m
            case .some(.none): return nil
            case .none: continue
            }
        }
        return nil
    }

    /// A first step: a new partial, or the waiting one for the same lineage and key refreshed.
    private func start(_ i: RuleInput, key: UnsafeRawBufferPointer) -> Bool? {
        let e = i.event
        let here = SequenceMatch.Step(seq: e.sequence, ts: e.timestamp, kind: i.kind, pid: e.pid)
        var anchor: Execution?
        if by == .lineage {
            guard let p = i.proc else { return nil }
            anchor = StepSequence.anchor(p)
        }
        let b = StepSequence.bucket(key)
        if let j = partials[b]?.firstIndex(where: { p in
            p.matched == 1 && (anchor.map { ByteMatch.equal($0.execId.buffer, p.anchor) } ?? (p.pid == e.pid)) && ByteMatch.equal(key, p.key)
        }) {
            // Refreshed in place and moved last: the bucket stays oldest first.
            var p = partials[b]!.remove(at: j)
            p.firstTs = e.timestamp
            p.pid = e.pid
            p.steps[0] = here
            partials[b]!.append(p)
            return true
        }
        if count >= StepSequence.maxPartials { makeRoom(now: e.timestamp) }
        let p = Partial(matched: 1, firstTs: e.timestamp, anchor: anchor.map { Array($0.execId.buffer) } ?? [], anchorPid: anchor?.pid ?? e.pid, pid: e.pid,
                        key: Array(key), steps: [here])
        partials[b, default: []].append(p)
        count += 1
        return true
    }

    /// A later step: the oldest waiting partial it continues, if any (nil: none).
    private func continueStep(_ k: Int, _ i: RuleInput, key: UnsafeRawBufferPointer, keyed: Bool) -> SequenceMatch?? {
        let e = i.event
        let b = StepSequence.bucket(key)
        guard let j = partials[b]?.firstIndex(where: { p in
            p.matched == k && e.timestamp >= p.firstTs && e.timestamp - p.firstTs <= within
                && (by == .process ? p.pid == e.pid : StepSequence.inLineage(i.proc, p.anchor, pid: p.anchorPid))
                && (!keyed || StepSequence.sameKey(key, p.key))
        }) else { return nil }
        let here = SequenceMatch.Step(seq: e.sequence, ts: e.timestamp, kind: i.kind, pid: e.pid)
        partials[b]![j].matched += 1
        partials[b]![j].steps.append(here)
        guard partials[b]![j].matched == steps.count else { return .some(nil) }
        let p = partials[b]!.remove(at: j)
        if partials[b]!.isEmpty { partials[b] = nil }
        count -= 1
        let id = by == .process ? "pid \(p.pid)" : String(decoding: p.anchor, as: UTF8.self)
        return .some(SequenceMatch(steps: p.steps, key: id + "\u{1F}" + String(decoding: p.key, as: UTF8.self)))
    }
}

extension SequenceMatch {
    /// As the match a rule reports: the count is the number of steps.
    var aggregateMatch: AggregateMatch {
        AggregateMatch(count: steps.count, values: [], key: key, firstTs: steps.first?.ts ?? 0, sequences: steps.map(\.seq), steps: steps)
    }
}
