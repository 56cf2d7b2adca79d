/// The rule engine's learned state for detector checkpoints: the lineage
/// (every execution still reachable, with its exec id, and the paths
/// written) and each aggregate rule's groups. Compiled rules are not state:
/// they are compiled again from the rules' text.
public struct RuleEngineSnapshot: Codable {
    /// Executions, every parent before its children.
    var executions: [ExecutionSnapshot]
    /// pid -> index in `executions` of its current image, by pid.
    var current: [PidExecution]
    /// Paths written, oldest first, with when.
    var written: [WrittenPath]
    /// Per aggregate rule, by rule name.
    var aggregates: [AggregateSnapshot]
    /// Per sequence rule, its partial matches.
    var sequences: [SequenceSnapshot]

    struct SequenceSnapshot: Codable {
        var rule: String
        var evicted: UInt64
        /// Buckets by number, each oldest first.
        var buckets: [Bucket]
    }

    struct Bucket: Codable {
        var bucket: UInt64
        var partials: [StepSequence.Partial]
    }

    struct ExecutionSnapshot: Codable {
        var pid: UInt32
        var startNs: UInt64
        var startSeq: UInt64?
        /// Index of the parent in `executions`, always lower.
        var parent: Int?
        var uid: UInt32
        var comm: String
        var exe: String
        var argv: [String]
        var depth: Int
        var fromSnapshot: Bool
        var exeWritten: Bool
    }

    struct PidExecution: Codable {
        var pid: UInt32
        var execution: Int
    }

    struct WrittenPath: Codable {
        var path: String
        var ts: UInt64
    }

    struct AggregateSnapshot: Codable {
        var rule: String
        var evicted: UInt64
        /// By key.
        var groups: [GroupSnapshot]
    }

    struct GroupSnapshot: Codable {
        var key: String
        var newest: UInt64
        var ts: [UInt64]
        var seq: [UInt64]
        var values: [String]
    }
}

/// Why a snapshot cannot be restored into a rule engine.
public struct RuleSnapshotError: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { reason }
}

extension RuleEngine {
    public var snapshot: RuleEngineSnapshot {
        var index: [ObjectIdentifier: Int] = [:]
        var executions: [RuleEngineSnapshot.ExecutionSnapshot] = []
        func add(_ top: Execution) {
            // Parents first, iteratively: chains run up to LineageTable.maxDepth deep and more.
            var chain: [Execution] = []
            var e: Execution? = top
            while let c = e, index[ObjectIdentifier(c)] == nil {
                chain.append(c)
                e = c.parent
            }
            for c in chain.reversed() {
                index[ObjectIdentifier(c)] = executions.count
                executions.append(.init(pid: c.pid, startNs: c.startNs, startSeq: c.startSeq, parent: c.parent.map { index[ObjectIdentifier($0)]! },
                                        uid: c.uid, comm: c.comm.string, exe: c.exe.string, argv: c.argv, depth: c.depth,
                                        fromSnapshot: c.fromSnapshot, exeWritten: c.exeWritten))
            }
        }
        let current = lineage.current.sorted { $0.key < $1.key }
        for (_, e) in current { add(e) }
        let aggregates = rules.compactMap { r in
            r.aggregate.map { a in
                RuleEngineSnapshot.AggregateSnapshot(rule: r.name, evicted: a.evicted, groups: a.groups.sorted { $0.key < $1.key }.map { k, g in
                    .init(key: k, newest: g.newest, ts: g.entries.map(\.ts), seq: g.entries.map(\.seq), values: g.entries.map(\.value))
                })
            }
        }
        let sequences = rules.compactMap { r in
            r.sequence.map { s in
                RuleEngineSnapshot.SequenceSnapshot(rule: r.name, evicted: s.evicted,
                                                    buckets: s.partials.sorted { $0.key < $1.key }.map { .init(bucket: $0.key, partials: $0.value) })
            }
        }
        return RuleEngineSnapshot(
            executions: executions, current: current.map { .init(pid: $0.key, execution: index[ObjectIdentifier($0.value)]!) },
            written: lineage.writtenOrder.compactMap { p in lineage.written[p].map { .init(path: p, ts: $0) } }, aggregates: aggregates,
            sequences: sequences)
    }

    /// Why `snapshot` cannot be restored into this engine, or nil.
    public func problem(with s: RuleEngineSnapshot) -> String? {
        for (i, e) in s.executions.enumerated() {
            if let p = e.parent, p < 0 || p >= i { return "execution \(i) names parent \(p), not an earlier one" }
            // A chain is cut at LineageTable.maxDepth generations: depths stay far below this.
            if e.depth < 0 || e.depth > 1 << 40 { return "execution \(i) has depth \(e.depth)" }
        }
        if s.current.contains(where: { $0.execution < 0 || $0.execution >= s.executions.count }) { return "a process names an execution out of range" }
        var byName: [String: Aggregate] = [:]
        for r in rules { if let a = r.aggregate { byName[r.name] = a } }
        for a in s.aggregates {
            guard byName[a.rule] != nil else { return "aggregate rule '\(a.rule)' is not among the rules" }
            if a.groups.contains(where: { $0.ts.count != $0.seq.count || $0.ts.count != $0.values.count }) { return "aggregate rule '\(a.rule)' has a group of uneven lists" }
        }
        var sequences: [String: StepSequence] = [:]
        for r in rules { if let q = r.sequence { sequences[r.name] = q } }
        for q in s.sequences {
            guard let rule = sequences[q.rule] else { return "sequence rule '\(q.rule)' is not among the rules" }
            for b in q.buckets {
                // A partial has matched at least its first step and not its last.
                if b.partials.contains(where: { $0.matched < 1 || $0.matched >= rule.stepCount || $0.steps.count > StepSequence.maxSteps }) {
                    return "sequence rule '\(q.rule)' has a partial match of an impossible step"
                }
            }
        }
        return nil
    }

    /// Replaces the lineage and the aggregates' groups (`problem(with:)` must be nil).
    public func restore(_ s: RuleEngineSnapshot) {
        var made: [Execution] = []
        made.reserveCapacity(s.executions.count)
        for e in s.executions {
            made.append(Execution(pid: e.pid, startNs: e.startNs, startSeq: e.startSeq, parent: e.parent.map { made[$0] }, uid: e.uid, comm: e.comm,
                                  exe: e.exe, argv: e.argv, depth: e.depth, fromSnapshot: e.fromSnapshot, exeWritten: e.exeWritten))
        }
        lineage.current = Dictionary(s.current.map { ($0.pid, made[$0.execution]) }, uniquingKeysWith: { _, b in b })
        lineage.written = Dictionary(s.written.map { ($0.path, $0.ts) }, uniquingKeysWith: { _, b in b })
        var seen = Set<String>()
        lineage.writtenOrder = s.written.map(\.path).filter { seen.insert($0).inserted }
        let byRule = Dictionary(s.aggregates.map { ($0.rule, $0) }, uniquingKeysWith: { _, b in b })
        for r in rules {
            guard let a = r.aggregate else { continue }
            let snap = byRule[r.name]
            a.evicted = snap?.evicted ?? 0
            a.groups = [:]
            for g in snap?.groups ?? [] {
                a.groups[g.key] = Aggregate.Group(entries: (0..<g.ts.count).map { .init(ts: g.ts[$0], seq: g.seq[$0], value: g.values[$0]) }, newest: g.newest)
            }
        }
        let bySequence = Dictionary(s.sequences.map { ($0.rule, $0) }, uniquingKeysWith: { _, b in b })
        for r in rules {
            guard let q = r.sequence else { continue }
            let snap = bySequence[r.name]
            q.evicted = snap?.evicted ?? 0
            q.partials = Dictionary((snap?.buckets ?? []).map { ($0.bucket, $0.partials) }, uniquingKeysWith: { a, b in a + b })
            q.count = q.partials.values.reduce(0) { $0 + $1.count }
        }
    }
}

extension SecurityEventKind: Codable {}
