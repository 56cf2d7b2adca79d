import FlightboxEvents
import FlightboxFormat
import FlightboxRules

/// `security`: runs the security rules (the built-in `rules/default.yaml`
/// and any `--rules` files) over process, file, privilege, TCP and signal
/// events, and ties the findings of one lineage into incidents.
///
/// A rule match is a finding once per rule and execution (exec_id): a
/// process reading /etc/shadow a thousand times is one finding. Matches of
/// at least `incident_min_rules` distinct rules by one lineage — the
/// processes descending from the highest ancestor started inside the trace
/// — with no more than `incident_window` between consecutive steps become
/// one `critical` incident, emitted when the window after its last step
/// passes (or at the end of the stream), listing the steps in order.
public final class SecurityDetector: Detector {
    public let name = "security"
    public let exclusions: Exclusions
    public var tickPeriodNs: UInt64? { 1_000_000_000 }
    public var observedTypes: EventTypeSet { types }

    let ruleSet: RuleSet
    private var engine: RuleEngine?
    private let types: EventTypeSet
    let incidentWindow: UInt64
    let incidentMinRules: Int
    /// Per execution (exec_id), the rules (an aggregate rule: "rule \0 group")
    /// already reported for it. An execution's entry goes when its process
    /// exits or execs again, so the table follows the live processes and a
    /// finding never fires twice for one execution.
    private var reported: [String: Set<String>] = [:]
    private var reportedCount = 0
    /// Bound on the entries of all executions. Reached only by executions
    /// whose exit the trace lost (pruned then) or by that many live pairs.
    static let maxReported = 65_536
    let maxReported: Int
    /// Findings reported without being remembered because the table was
    /// full of live executions (they may be reported again).
    public private(set) var unremembered: UInt64 = 0
    private var incidents: [String: Incident] = [:]
    static let maxSteps = 32
    static let maxOpenIncidents = 4096

    struct Step: Codable {
        let ts: UInt64
        let seq: UInt64
        let rule: String
        let severity: Severity
        let techniques: [String]
        let pid: UInt32
        let comm: String
        let execId: String
        let summary: String
    }

    struct Incident: Codable {
        let root: String
        let rootComm: String
        let rootPid: UInt32
        var steps: [Step]
        var last: UInt64
        var dropped = 0
    }

    public static let spec = DetectorSpec(
        name: "security", family: "security",
        judges: "security rules (rules/default.yaml and --rules files) over process, file, privilege and TCP events; multi-step incidents per lineage",
        parameters: [
            .duration("incident_window", default: 300_000_000_000, range: 1_000_000_000...86_400_000_000_000,
                      doc: "longest gap between two steps of one incident"),
            .count("incident_min_rules", default: 2, range: 2...16, doc: "distinct rules one lineage must match to make an incident"),
        ],
        make: { SecurityDetector(settings: $0) }
    )

    public convenience init(settings: DetectorSettings) {
        self.init(settings: settings, maxReported: SecurityDetector.maxReported)
    }

    init(settings: DetectorSettings, maxReported: Int) {
        self.maxReported = maxReported
        exclusions = settings.exclude
        incidentWindow = settings.duration("incident_window")
        incidentMinRules = Int(settings.count("incident_min_rules"))
        let sources = settings.rules.isEmpty ? [DefaultRules.source] : settings.rules
        do { ruleSet = try RuleSet(sources: sources) } catch {
            // Sources reach here only after they compiled (loading the
            // configuration or the trace's stored copy checks them).
            preconditionFailure("security rules that were checked do not compile: \(error)")
        }
        var t = EventTypeSet(.fork, .exec, .exit, .file, .privilege)
        for r in ruleSet.kinds.recordTypes { t.formUnion(EventTypeSet(r)) }
        types = t
    }

    public func observe(_ event: Event, context: DetectorContext) {
        if engine == nil { engine = RuleEngine(rules: ruleSet, snapshot: context.snapshot) }
        let engine = engine!
        // The image an exit or exec ends: what was reported for it can be forgotten.
        var ended: String?
        if event.rawType == EventType.exec.rawValue || (event.rawType == EventType.exit.rawValue && event.as(ExitRecord.self)?.isGroupExit == true) {
            ended = engine.lineage.execution(event.pid)?.execId.string ?? "0:\(event.pid)"
        }
        engine.process(event) { rule, input, agg in report(rule, input, agg, context: context) }
        if let ended, let gone = reported.removeValue(forKey: ended) { reportedCount -= gone.count }
    }

    /// Whether `key` is new for `execId` (and remembers it).
    private func firstReport(_ key: String, execId: String) -> Bool {
        if reported[execId]?.contains(key) == true { return false }
        if reportedCount >= maxReported, unremembered % 1024 == 0, let lineage = engine?.lineage {
            // Forget executions no longer running (their exit was lost); at
            // most once per 1024 findings while the table stays full.
            let live = Set(lineage.current.values.map(\.execId.string))
            for id in reported.keys.sorted() where !live.contains(id) { reportedCount -= reported.removeValue(forKey: id)!.count }
        }
        guard reportedCount < maxReported else { unremembered &+= 1; return true }
        reported[execId, default: []].insert(key)
        reportedCount += 1
        return true
    }

    static func severity(_ p: Priority) -> Severity {
        switch p {
        case .emergency, .alert, .critical: .critical
        case .error, .warning: .warning
        case .notice, .informational, .debug: .info
        }
    }

    private func report(_ rule: CompiledRule, _ input: RuleInput, _ agg: AggregateMatch?, context: DetectorContext) {
        let e = input.event
        let proc = input.proc
        let execId = proc?.execId.string ?? "0:\(e.pid)"
        // Once per rule and execution; an aggregate rule once per group.
        guard firstReport(agg.map { rule.name + "\u{0}" + $0.key } ?? rule.name, execId: execId) else { return }
        let severity = SecurityDetector.severity(rule.priority)
        let summary = rule.render(input, agg)
        var events: [JSON] = []
        if let s = proc?.startSeq, s != e.sequence {
            events.append(.object([("seq", .uint(s)), ("ts_ns", .uint(proc!.startNs)), ("type", .string("exec"))]))
        }
        if let steps = agg?.steps {
            // Every step before the last, with its own type and process.
            for st in steps.dropLast() {
                events.append(.object([("seq", .uint(st.seq)), ("ts_ns", .uint(st.ts)), ("type", .string(st.kind.name)), ("pid", .uint(UInt64(st.pid)))]))
            }
        } else if let agg {
            // The events counted (the first 64), then the one that reached the count.
            for s in agg.sequences.dropLast().prefix(64) { events.append(.object([("seq", .uint(s)), ("type", .string(input.kind.name))])) }
        }
        events.append(.object([("seq", .uint(e.sequence)), ("ts_ns", .uint(e.timestamp)), ("type", .string(input.kind.name))]))
        var aggregate: [(String, JSON)] = []
        if let agg, let sq = rule.sequence {
            aggregate = [("sequence", .object([("by", .string(sq.by.rawValue)), ("within_ns", .uint(sq.within)), ("steps", .uint(UInt64(agg.count)))]))]
        }
        if let agg, let a = rule.aggregate {
            aggregate = [("aggregate", .object([
                ("by", .array(a.byNames.map { .string($0) })), ("key", .string(agg.key.split(separator: "\u{1F}", omittingEmptySubsequences: false).joined(separator: " "))),
                ("count", .uint(UInt64(agg.count))), ("distinct", a.distinctName.map { .string($0) } ?? .null),
                ("values", .array(agg.values.prefix(64).map { .string($0) })), ("window_ns", .uint(a.window)),
                ("first_ts_ns", .uint(agg.firstTs)),
            ]))]
        }
        let comm = proc?.comm.string ?? context.processes.comm(e.pid)
        context.emit(Finding(
            ts: e.timestamp, detector: name, severity: severity, pid: e.pid, tid: e.tid, comm: comm,
            summary: "\(rule.name): \(summary)",
            evidence: .object([
                ("rule", .string(rule.name)), ("priority", .string(rule.priority.rawValue)),
                ("mitre", .array(rule.techniques.map { .string($0) })), ("tags", .array(rule.tags.map { .string($0) })),
                ("exec_id", .string(execId)), ("exe", .string(proc?.exe.string ?? "")),
                ("cmdline", .string(proc?.cmdline.string ?? "")), ("uid", .uint(UInt64(proc?.uid ?? 0))),
                ("lineage", SecurityDetector.lineage(proc)), ("events", .array(events)),
            ] + aggregate)))
        addStep(Step(ts: e.timestamp, seq: e.sequence, rule: rule.name, severity: severity, techniques: rule.techniques,
                     pid: e.pid, comm: comm, execId: execId, summary: summary), proc: proc, context: context)
    }

    /// The ancestors, nearest first (the process itself excluded), at most 8.
    static func lineage(_ proc: Execution?) -> JSON {
        .array((proc?.chain(limit: 9).dropFirst() ?? []).map { a in
            .object([("pid", .uint(UInt64(a.pid))), ("exec_id", .string(a.execId.string)), ("comm", .string(a.comm.string)),
                     ("exe", .string(a.exe.string))])
        })
    }

    /// The lineage an incident groups: the highest ancestor started inside
    /// the trace (a process running before it is its own root).
    static func root(_ proc: Execution?) -> Execution? {
        var root = proc
        var e = proc?.parent
        while let c = e {
            if !c.fromSnapshot { root = c }
            e = c.parent
        }
        return root
    }

    private func addStep(_ step: Step, proc: Execution?, context: DetectorContext) {
        let r = SecurityDetector.root(proc)
        let key = r?.execId.string ?? step.execId
        if var inc = incidents[key] {
            if inc.steps.count < SecurityDetector.maxSteps { inc.steps.append(step) } else { inc.dropped += 1 }
            inc.last = step.ts
            incidents[key] = inc
        } else {
            if incidents.count >= SecurityDetector.maxOpenIncidents { close(upTo: .max, context: context, all: true) }
            incidents[key] = Incident(root: key, rootComm: r?.comm.string ?? step.comm, rootPid: r?.pid ?? step.pid, steps: [step], last: step.ts)
        }
    }

    public func tick(boundary: UInt64, context: DetectorContext) {
        engine?.expire(now: boundary)
        close(upTo: boundary, context: context, all: false)
    }

    public func finish(context: DetectorContext) {
        close(upTo: .max, context: context, all: true)
    }

    /// Emits the incidents whose window after the last step has passed, in
    /// the order of their first step.
    private func close(upTo boundary: UInt64, context: DetectorContext, all: Bool) {
        let due = incidents.values.filter { all || $0.last &+ incidentWindow <= boundary }.sorted { $0.steps[0].seq < $1.steps[0].seq }
        for inc in due {
            incidents[inc.root] = nil
            let rules = Set(inc.steps.map(\.rule))
            guard rules.count >= incidentMinRules else { continue }
            let first = inc.steps[0], last = inc.steps[inc.steps.count - 1]
            // Steps come in arrival order, and a syscall's record arrives at its
            // exit stamped with its entry: a later step can be older.
            let span = inc.steps.map(\.ts).max()! - inc.steps.map(\.ts).min()!
            var techniques: [String] = []
            for s in inc.steps { for t in s.techniques where !techniques.contains(t) { techniques.append(t) } }
            let names = inc.steps.map(\.rule).reduce(into: [String]()) { if $0.last != $1 { $0.append($1) } }
            context.emit(Finding(
                ts: last.ts, detector: name, severity: .critical, pid: inc.rootPid, tid: inc.rootPid, comm: inc.rootComm,
                summary: "incident: \(rules.count) rules in one lineage (root \(inc.rootComm)[\(inc.rootPid)], exec \(inc.root)) within \(String(format3: Double(span) / 1e9))s: \(names.joined(separator: " -> "))",
                evidence: .object([
                    ("rule", .string("incident")), ("root_exec_id", .string(inc.root)), ("root_comm", .string(inc.rootComm)),
                    ("mitre", .array(techniques.map { .string($0) })), ("first_ts_ns", .uint(first.ts)), ("last_ts_ns", .uint(last.ts)),
                    ("steps_dropped", .uint(UInt64(inc.dropped))),
                    ("steps", .array(inc.steps.map { s in
                        .object([("seq", .uint(s.seq)), ("ts_ns", .uint(s.ts)), ("rule", .string(s.rule)), ("severity", .string(s.severity.rawValue)),
                                 ("pid", .uint(UInt64(s.pid))), ("comm", .string(s.comm)), ("exec_id", .string(s.execId)), ("summary", .string(s.summary))])
                    })),
                ])))
        }
    }
}

// MARK: Checkpoints

extension SecurityDetector: CheckpointedDetector {
    public struct State: Codable {
        /// Sorted.
        /// exec_id -> "rule \0 key" reported for it.
        var reported: [String: Set<String>]
        var reportedCount: Int
        var unremembered: UInt64
        var incidents: [String: Incident]
        /// nil before the first event (the engine is made then, from the trace's snapshot).
        var rules: RuleEngineSnapshot?
    }

    public var state: State {
        get { State(reported: reported, reportedCount: reportedCount, unremembered: unremembered, incidents: incidents, rules: engine?.snapshot) }
        set {
            reported = newValue.reported
            reportedCount = newValue.reportedCount
            unremembered = newValue.unremembered
            incidents = newValue.incidents
            if let s = newValue.rules {
                // The lineage comes from the checkpoint, not from a snapshot.
                let e = RuleEngine(rules: ruleSet, snapshot: nil)
                e.restore(s)
                engine = e
            } else {
                engine = nil
            }
        }
    }

    public func problem(with state: State) -> String? {
        if state.incidents.values.contains(where: { $0.steps.isEmpty }) { return "security: an incident without steps" }
        if let s = state.rules, let problem = RuleEngine(rules: ruleSet, snapshot: nil).problem(with: s) { return "security: \(problem)" }
        return nil
    }
}
