import FlightboxEvents

/// Judges the memory family: OOM kills, reclaim stalls, and per-process page
/// fault rates against the process's own baseline.
///
/// - Every OOM kill is a `critical` finding at once, one per kill, naming the
///   victim, the trigger, their sizes and the victim's memory cgroup.
/// - Reclaim: per aligned window of event time (`window`, 1 s) and per scope
///   (direct reclaim: the machine short of memory; memcg reclaim: a cgroup at
///   its limit), the thread-time stalled in reclaim is summed per process. A
///   window whose stalled time is at least `stall_share` of the window, or
///   that holds a single stall of at least `stall_single`, is a `warning`
///   episode naming the processes that stalled most; it escalates once to
///   `critical` when the stalled time reaches `stall_critical_share`.
/// - Faults: per process, major and minor faults per window (from the
///   kernel's per-thread summaries, spread over the span they cover) against
///   an EWMA baseline of the same process's earlier windows. A process is not
///   judged before `warmup` (its start-up, loading its binary, is not a
///   deviation), and a rate must hold for `sustain` consecutive windows, be at
///   least `major_min` / `minor_min` and `major_factor` / `minor_factor`
///   times the baseline. Major: `warning` (a thrashing or cold working set);
///   minor: `info` (a storm of fresh pages).
/// - MemAvailable under `mem_available_floor` of MemTotal (gauges): `info`.
///
/// One finding per episode (`EpisodeTracker`), quiet until the deviation has
/// been absent for `hold_down`. Deterministic: event time only, aligned
/// windows, keys sorted before anything is emitted.
public final class MemoryDetector: Detector {
    public let name = "memory"
    public var observedTypes: EventTypeSet { EventTypeSet(.oom, .reclaim, .faults, .exec, .exit, .gauge) }
    public let exclusions: Exclusions
    public let tickPeriodNs: UInt64?

    let windowNs: UInt64
    let stallShare: Double
    let stallSingleNs: UInt64
    let stallCriticalShare: Double
    let majorMin: UInt64
    let majorFactor: Double
    let minorMin: UInt64
    let minorFactor: Double
    let warmupWindows: UInt64
    let sustain: UInt64
    let holdDownNs: UInt64
    let topN: Int
    let memAvailableFloor: Double

    public static let spec = DetectorSpec(
        name: "memory", family: "memory",
        judges: "OOM kills; time stalled in direct or memory-cgroup reclaim per window; a process's major or minor fault rate against its own baseline; MemAvailable under a floor",
        parameters: [
            .duration("window", default: 1_000_000_000, range: 10_000_000...3_600_000_000_000,
                      doc: "aligned event-time window over which stalls and fault rates are summed"),
            .ratio("stall_share", default: 0.1, range: 0.001...1000,
                   doc: "thread-time stalled in reclaim in one window, as a share of the window, that makes a warning"),
            .duration("stall_single", default: 100_000_000, range: 1_000...3_600_000_000_000,
                      doc: "one reclaim stall this long makes a warning, whatever the share"),
            .ratio("stall_critical_share", default: 1.0, range: 0.001...1000,
                   doc: "stalled thread-time share of a window that escalates a reclaim episode to critical"),
            .count("major_min", default: 200, range: 1...1_000_000_000,
                   doc: "major faults of a process in one window below which it is never judged"),
            .ratio("major_factor", default: 8, range: 1...1_000_000,
                   doc: "major faults per window over the process's baseline that make a deviation"),
            .count("minor_min", default: 200_000, range: 1...1_000_000_000_000,
                   doc: "minor faults of a process in one window below which it is never judged"),
            .ratio("minor_factor", default: 16, range: 1...1_000_000,
                   doc: "minor faults per window over the process's baseline that make a storm"),
            .duration("warmup", default: 10_000_000_000, range: 0...86_400_000_000_000,
                      doc: "event time a process is learned (from its first fault summary or exec) before its faults are judged"),
            .count("sustain", default: 2, range: 1...3600,
                   doc: "consecutive windows a fault rate must deviate for"),
            .duration("hold_down", default: 30_000_000_000, range: 0...86_400_000_000_000,
                      doc: "quiet time after which an episode is over and a new one may be reported"),
            .count("top", default: 5, range: 1...100,
                   doc: "contributors named in a finding"),
            .ratio("mem_available_floor", default: 0.05, range: 0...1,
                   doc: "MemAvailable under this share of MemTotal is an info finding (0: off)"),
        ],
        make: { MemoryDetector(settings: $0) }
    )

    /// What an episode is about; ordered for stable output.
    struct Key: Hashable, Comparable, Codable {
        enum Kind: Int, Codable { case directReclaim = 0, memcgReclaim, majorFaults, minorFaults, memAvailable }
        var kind: Kind
        var pid: UInt32
        static func < (a: Key, b: Key) -> Bool { (a.kind.rawValue, a.pid) < (b.kind.rawValue, b.pid) }
    }

    /// Reclaim stalls of one process in the current window.
    struct Stall: Codable {
        var ns: UInt64 = 0
        var count: UInt64 = 0
        var maxNs: UInt64 = 0
        var pages: UInt64 = 0
        var comm = ""
    }

    /// One reclaim scope in the current window.
    struct Scope: Codable {
        var byPid: [UInt32: Stall] = [:]
        var totalNs: UInt64 = 0
        var count: UInt64 = 0
        var maxNs: UInt64 = 0
        var pages: UInt64 = 0
    }

    /// A process's fault history.
    struct Proc: Codable {
        var comm: String
        var since: UInt64
        var major: Double = 0
        var minor: Double = 0
        var majorBase: Double = 0
        var minorBase: Double = 0
        var windows: UInt64 = 0
        var majorRun: UInt64 = 0
        var minorRun: UInt64 = 0
    }

    private var direct = Scope()
    private var memcg = Scope()
    private var procs: [UInt32: Proc] = [:]
    private var episodes: EpisodeTracker<Key>
    private var lowMemory: (value: UInt64, total: UInt64, ts: UInt64)?

    /// The EWMA weight of a new window: 1/8, about the last 8 windows.
    static let alpha = 0.125

    public convenience init() { self.init(settings: MemoryDetector.spec.defaults) }

    public init(settings: DetectorSettings) {
        windowNs = settings.duration("window")
        tickPeriodNs = windowNs
        stallShare = settings.ratio("stall_share")
        stallSingleNs = settings.duration("stall_single")
        stallCriticalShare = settings.ratio("stall_critical_share")
        majorMin = settings.count("major_min")
        majorFactor = settings.ratio("major_factor")
        minorMin = settings.count("minor_min")
        minorFactor = settings.ratio("minor_factor")
        let w = settings.duration("warmup")
        warmupWindows = w / windowNs + (w % windowNs == 0 ? 0 : 1)
        sustain = settings.count("sustain")
        holdDownNs = settings.duration("hold_down")
        topN = Int(settings.count("top"))
        memAvailableFloor = settings.ratio("mem_available_floor")
        exclusions = settings.exclude
        episodes = EpisodeTracker(holdDownNs: holdDownNs)
    }

    public func observe(_ e: Event, context: DetectorContext) {
        switch e.payload {
        case .oom(let o):
            oomKill(e, o, context: context)
        case .reclaim(let r):
            let d = r.durationNs
            let comm = context.processes.comm(e.pid)
            if r.isMemcg { memcg.add(pid: e.pid, comm: comm, ns: d, pages: r.reclaimed) } else { direct.add(pid: e.pid, comm: comm, ns: d, pages: r.reclaimed) }
        case .faults(let f):
            var p = procs[e.pid] ?? Proc(comm: context.processes.comm(e.pid), since: context.now)
            // A summary may cover more than a window (a thread that faults
            // rarely): only its share of one window counts in this one.
            let span = e.timestamp >= f.firstTs ? e.timestamp - f.firstTs : 0
            let scale = span > windowNs ? Double(windowNs) / Double(span) : 1
            p.major += Double(f.major) * scale
            p.minor += Double(f.minor) * scale
            if p.comm == "?" { p.comm = context.processes.comm(e.pid) }
            procs[e.pid] = p
        case .exec:
            // A new program: a new working set, learned from the start.
            procs[e.pid] = Proc(comm: context.processes.comm(e.pid), since: context.now)
        case .exit(let x) where x.isGroupExit:
            procs[e.pid] = nil
        case .gauge(let g) where g.gaugeKind == .memAvailable && memAvailableFloor > 0 && g.limit > 0:
            if Double(g.value) < memAvailableFloor * Double(g.limit) {
                lowMemory = (g.value, g.limit, e.timestamp)
            }
        default:
            break
        }
    }

    public func tick(boundary: UInt64, context: DetectorContext) {
        let start = boundary >= windowNs ? boundary - windowNs : 0
        judgeReclaim(direct, kind: .directReclaim, start: start, end: boundary, context: context)
        judgeReclaim(memcg, kind: .memcgReclaim, start: start, end: boundary, context: context)
        direct = Scope()
        memcg = Scope()
        judgeFaults(start: start, end: boundary, context: context)
        if let low = lowMemory {
            lowMemory = nil
            judgeMemAvailable(low, end: boundary, context: context)
        }
        _ = episodes.close(before: boundary)
    }

    /// The window in progress when the stream ends is judged as if it had
    /// ended at its aligned boundary: a stall just before the end is not lost.
    public func finish(context: DetectorContext) {
        guard context.now > 0 else { return }
        let (m, o1) = (context.now / windowNs).addingReportingOverflow(1)
        let (b, o2) = m.multipliedReportingOverflow(by: windowNs)
        tick(boundary: o1 || o2 ? .max : b, context: context)
    }

    // MARK: OOM

    private func oomKill(_ e: Event, _ o: OOMRecord, context: DetectorContext) {
        let memcgName = o.memcg
        if !memcgName.isEmpty, excludesCgroup(memcgName) { return }
        let page: UInt64 = 4096
        let victim = o.comm.isEmpty ? context.processes.comm(e.pid) : o.comm
        let trigger = o.triggerComm.isEmpty ? context.processes.comm(o.triggerPid) : o.triggerComm
        let anon = o.anonRss.multipliedClamped(by: page), file = o.fileRss.multipliedClamped(by: page)
        let shmem = o.shmemRss.multipliedClamped(by: page), vm = o.totalVm.multipliedClamped(by: page)
        var evidence: [(String, JSON)] = [
            ("kind", .string("oom_kill")),
            ("victim_pid", .uint(UInt64(e.pid))), ("victim_comm", .string(victim)),
            ("trigger_pid", .uint(UInt64(o.triggerPid))), ("trigger_comm", .string(trigger)),
            ("anon_rss_bytes", .uint(anon)), ("file_rss_bytes", .uint(file)), ("shmem_rss_bytes", .uint(shmem)),
            ("total_vm_bytes", .uint(vm)), ("pgtables_bytes", .uint(o.pgtablesBytes)),
            ("oom_score_adj", .int(Int64(o.oomScoreAdj))), ("uid", .uint(UInt64(o.uid))),
        ]
        if !memcgName.isEmpty { evidence.append(("cgroup", .string(memcgName))) }
        evidence.append(("memcg_id", .uint(o.memcgId)))
        let by = o.triggerPid == e.pid ? "its own allocation" : "an allocation by \(trigger) (pid \(o.triggerPid))"
        let inCg = memcgName.isEmpty ? "" : " in memory cgroup \(memcgName)"
        context.emit(Finding(
            ts: e.timestamp, detector: name, severity: .critical, pid: e.pid, tid: e.tid, comm: victim,
            summary: "The kernel OOM-killed \(victim) (pid \(e.pid))\(inCg) holding \(formatBytes(anon)) anonymous, \(formatBytes(file)) file and \(formatBytes(shmem)) shared memory, on \(by)",
            evidence: .object(evidence)))
    }

    /// A memcg name (last path component) matches an excluded name or the last component of an excluded path.
    private func excludesCgroup(_ name: String) -> Bool {
        if exclusions.excludes(cgroup: name) { return true }
        return exclusions.cgroups.contains { c in
            let p = c.hasSuffix("/") ? String(c.dropLast()) : c
            return p.split(separator: "/").last.map(String.init) == name
        }
    }

    // MARK: Reclaim

    private func judgeReclaim(_ s: Scope, kind: Key.Kind, start: UInt64, end: UInt64, context: DetectorContext) {
        guard s.count > 0 else { return }
        let share = Double(s.totalNs) / Double(windowNs)
        guard share >= stallShare || s.maxNs >= stallSingleNs else { return }
        let severity: Severity = share >= stallCriticalShare ? .critical : .warning
        let key = Key(kind: kind, pid: 0)
        let decision = episodes.observe(key, at: end, severity: severity)
        if decision == .suppress { return }
        let top = s.byPid.sorted { ($0.value.ns, $1.key) > ($1.value.ns, $0.key) }.prefix(topN)
        guard let first = top.first else { return }
        let scope = kind == .memcgReclaim ? "memory-cgroup reclaim" : "direct reclaim"
        let why = share >= stallShare ? "\(percent(share)) of the window" : "a single stall of \(formatDuration(s.maxNs))"
        var evidence: [(String, JSON)] = [
            ("kind", .string(kind == .memcgReclaim ? "memcg_reclaim_stall" : "direct_reclaim_stall")),
            ("scope", .string(kind == .memcgReclaim ? "memcg" : "direct")),
            ("window_start_ns", .uint(start)), ("window_ns", .uint(windowNs)),
            ("stalled_ns", .uint(s.totalNs)), ("stall_share", .double(share)),
            ("stalls", .uint(s.count)), ("max_stall_ns", .uint(s.maxNs)), ("reclaimed_pages", .uint(s.pages)),
            ("processes", .uint(UInt64(s.byPid.count))),
            ("threshold_share", .double(stallShare)), ("threshold_single_ns", .uint(stallSingleNs)),
            ("baseline", .string("none: any reclaim stall over the thresholds is a deviation")),
            ("top", .array(top.map { pid, st in
                .object([("pid", .uint(UInt64(pid))), ("comm", .string(st.comm)), ("stalled_ns", .uint(st.ns)),
                         ("stalls", .uint(st.count)), ("max_stall_ns", .uint(st.maxNs)), ("reclaimed_pages", .uint(st.pages))])
            })),
        ]
        var summary = "Processes stalled \(formatDuration(s.totalNs)) in \(scope) in \(formatDuration(windowNs)) (\(why)), most \(first.value.comm) (pid \(first.key)) \(formatDuration(first.value.ns)) over \(first.value.count) stalls"
        if case .escalate(let from) = decision {
            evidence.append(("escalated_from", .string(from.rawValue)))
            if let ep = episodes.episode(key) { evidence.append(("episode_started_ns", .uint(ep.startedAt))) }
            summary += "; worse than when the episode began"
        }
        context.emit(Finding(ts: end, detector: name, severity: severity, pid: first.key, tid: first.key, comm: first.value.comm,
                             summary: summary, evidence: .object(evidence)))
    }

    // MARK: Faults

    private func judgeFaults(start: UInt64, end: UInt64, context: DetectorContext) {
        guard !procs.isEmpty else { return }
        var deviations: [(Key, Severity, Proc, Double, Double, UInt64)] = []
        for pid in procs.keys.sorted() {
            guard var p = procs[pid] else { continue }
            let judged = p.windows >= warmupWindows && p.windows > 0
            var majorOff = false, minorOff = false
            if judged {
                majorOff = p.major >= Double(majorMin) && p.major >= majorFactor * max(p.majorBase, 1)
                minorOff = p.minor >= Double(minorMin) && p.minor >= minorFactor * max(p.minorBase, 1)
            }
            p.majorRun = majorOff ? p.majorRun + 1 : 0
            p.minorRun = minorOff ? p.minorRun + 1 : 0
            if p.majorRun >= sustain { deviations.append((Key(kind: .majorFaults, pid: pid), .warning, p, p.major, p.majorBase, p.majorRun)) }
            if p.minorRun >= sustain { deviations.append((Key(kind: .minorFaults, pid: pid), .info, p, p.minor, p.minorBase, p.minorRun)) }
            // The first window is partial and holds the start-up: not learned.
            // A deviating window is not learned either, so the baseline stays
            // what was normal while the episode lasts.
            if p.windows > 0 {
                if !majorOff { p.majorBase = learn(p.majorBase, p.major, p.windows) }
                if !minorOff { p.minorBase = learn(p.minorBase, p.minor, p.windows) }
            }
            p.windows += 1
            p.major = 0
            p.minor = 0
            procs[pid] = p
        }
        for (key, severity, p, observed, base, run) in deviations {
            let decision = episodes.observe(key, at: end, severity: severity)
            if decision == .suppress { continue }
            let major = key.kind == .majorFaults
            let what = major ? "major" : "minor"
            let ratio = observed / max(base, 1)
            var evidence: [(String, JSON)] = [
                ("kind", .string(major ? "major_fault_rate" : "minor_fault_storm")),
                ("window_start_ns", .uint(start)), ("window_ns", .uint(windowNs)),
                ("observed", .uint(wholeClamped(observed))), ("baseline", .double(base)),
                ("times_baseline", .double(ratio)), ("consecutive_windows", .uint(run)),
                ("threshold_min", .uint(major ? majorMin : minorMin)), ("threshold_factor", .double(major ? majorFactor : minorFactor)),
                ("baseline_windows", .uint(p.windows > 0 ? p.windows - 1 : 0)), ("process_seen_since_ns", .uint(p.since)),
            ]
            if case .escalate(let from) = decision { evidence.append(("escalated_from", .string(from.rawValue))) }
            let meaning = major ? "its working set is thrashing or cold (pages read back from disk)" : "a storm of fresh pages"
            context.emit(Finding(
                ts: end, detector: name, severity: severity, pid: key.pid, tid: key.pid, comm: p.comm,
                summary: "\(p.comm) (pid \(key.pid)) took \(wholeClamped(observed)) \(what) faults in \(formatDuration(windowNs)), \(String(format3: ratio))x its baseline of \(String(format3: base)) for \(run) windows: \(meaning)",
                evidence: .object(evidence)))
        }
    }

    /// EWMA, seeded with the first learned window.
    private func learn(_ base: Double, _ v: Double, _ windows: UInt64) -> Double {
        windows <= 1 && base == 0 ? v : base + MemoryDetector.alpha * (v - base)
    }

    // MARK: MemAvailable

    private func judgeMemAvailable(_ low: (value: UInt64, total: UInt64, ts: UInt64), end: UInt64, context: DetectorContext) {
        let key = Key(kind: .memAvailable, pid: 0)
        guard episodes.observe(key, at: end, severity: .info) == .open else { return }
        let share = Double(low.value) / Double(low.total)
        context.emit(Finding(
            ts: low.ts, detector: name, severity: .info, pid: 0, tid: 0, comm: "",
            summary: "MemAvailable fell to \(formatBytes(low.value)) (\(percent(share)) of \(formatBytes(low.total))), under the floor of \(percent(memAvailableFloor))",
            evidence: .object([("kind", .string("mem_available_low")), ("mem_available_bytes", .uint(low.value)),
                               ("mem_total_bytes", .uint(low.total)), ("share", .double(share)), ("floor", .double(memAvailableFloor))])))
    }
}

extension MemoryDetector.Scope {
    mutating func add(pid: UInt32, comm: String, ns: UInt64, pages: UInt64) {
        var s = byPid[pid] ?? MemoryDetector.Stall(comm: comm)
        s.ns = s.ns.addingClamped(ns)
        s.count += 1
        s.maxNs = max(s.maxNs, ns)
        s.pages = s.pages.addingClamped(pages)
        byPid[pid] = s
        totalNs = totalNs.addingClamped(ns)
        count += 1
        maxNs = max(maxNs, ns)
        self.pages = self.pages.addingClamped(pages)
    }
}

extension UInt64 {
    func multipliedClamped(by n: UInt64) -> UInt64 {
        let (v, o) = multipliedReportingOverflow(by: n)
        return o ? .max : v
    }
}

/// A non-negative count held as a Double, rounded, as a UInt64 that cannot trap (hostile summaries).
func wholeClamped(_ v: Double) -> UInt64 {
    guard v.isFinite, v > 0 else { return 0 }
    return v >= 18_446_744_073_709_549_568 ? .max : UInt64(v.rounded())
}

func percent(_ share: Double) -> String { "\(String(format3: share * 100).trimmingTrailingZeros())%" }

/// "31.9MiB", "512KiB", "100B".
func formatBytes(_ b: UInt64) -> String {
    let units: [(String, UInt64)] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)]
    for (u, s) in units where b >= s {
        let v = Double(b) / Double(s)
        return "\(String(format3: v).trimmingTrailingZeros())\(u)"
    }
    return "\(b)B"
}

// MARK: Checkpoints

extension MemoryDetector: CheckpointedDetector {
    public struct State: Codable {
        var direct: Scope
        var memcg: Scope
        var procs: [UInt32: Proc]
        var episodes: EpisodeTracker<Key>
        var lowMemory: LowMemory?
    }

    struct LowMemory: Codable {
        var value: UInt64, total: UInt64, ts: UInt64
    }

    public var state: State {
        get { State(direct: direct, memcg: memcg, procs: procs, episodes: episodes, lowMemory: lowMemory.map { LowMemory(value: $0.value, total: $0.total, ts: $0.ts) }) }
        set {
            direct = newValue.direct
            memcg = newValue.memcg
            procs = newValue.procs
            episodes = newValue.episodes
            lowMemory = newValue.lowMemory.map { ($0.value, $0.total, $0.ts) }
        }
    }
}
