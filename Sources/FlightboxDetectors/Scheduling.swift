import FlightboxEvents

/// Judges the scheduler family (and the PSI gauge): a latency-sensitive task
/// starved of CPU, named with the tasks that held the CPUs, and sustained CPU
/// pressure.
///
/// - Per aligned window of event time (`window`, 1 s), per process: the
///   run-queue time (sum of its recorded run-queue waits), their count and
///   longest, and its off-CPU waits (blocking sleeps); per CPU (the record's
///   `cpu`, where the task ran after the wait): the run-queue time of all tasks.
/// - A process is a *sleeper* (latency-sensitive: it mostly sleeps and wakes
///   often) when it has at least `min_sleeps` off-CPU waits in the window, or
///   as the median of its baseline windows. A sleeper whose run-queue time in
///   a window is at least `runq_min` and at least `runq_factor` times its
///   baseline — the median run-queue time of its last `baseline_windows`
///   windows, learned after `warmup_windows` — for `sustain` consecutive
///   windows is starved: a `warning`, escalated once to `critical` when it
///   waited `critical_share` of a window.
/// - The hogs: on the CPUs where the starved task waited in that window, the
///   tasks with at least `hog_min_waits` run-queue waits and no off-CPU wait in
///   the window. Such a task was runnable all the window (it never blocked)
///   and lost the CPU only to other runnable tasks: it is CPU-bound, and it
///   held those CPUs whenever it was not waiting.
/// - PSI `cpu some avg10` (gauges) at or above `psi_threshold` for
///   `psi_sustain` is a `warning` on its own, naming the tasks that waited
///   most on the run queue in the window.
///
/// Why these statistics: the stream holds only waits over the recording's
/// thresholds (1 ms run queue by default), so a healthy sleeper's run-queue
/// time per window is usually 0 and its history is a few bursts: the median of
/// whole windows ignores those bursts (a mean or EWMA would be dragged by one
/// bad second), and the absolute floor `runq_min`, far above 1 ms, keeps a
/// median of 0 from making every recorded wait a deviation. Windows that
/// deviate are not learned. One finding per episode (`EpisodeTracker`,
/// `hold_down`). Deterministic: event time only, aligned windows, keys sorted.
public final class SchedulingDetector: Detector {
    public let name = "scheduling"
    public var observedTypes: EventTypeSet { EventTypeSet(.sched, .gauge, .exec, .exit) }
    public let exclusions: Exclusions
    public let tickPeriodNs: UInt64?

    let windowNs: UInt64
    let runqMinNs: UInt64
    let runqFactor: Double
    let minSleeps: UInt64
    let sustain: UInt64
    let warmupWindows: UInt64
    let baselineWindows: Int
    let criticalShare: Double
    let hogMinWaits: UInt64
    let psiThreshold: Double
    let psiSustainNs: UInt64
    let holdDownNs: UInt64
    let topN: Int
    let forgetAfterNs: UInt64

    public static let spec = DetectorSpec(
        name: "scheduling", family: "scheduler",
        judges: "a task that mostly sleeps starved on the run queue against its own baseline, naming the CPU-bound tasks that held its CPUs; sustained CPU pressure (PSI cpu some)",
        parameters: [
            .duration("window", default: 1_000_000_000, range: 10_000_000...3_600_000_000_000,
                      doc: "aligned event-time window over which run-queue and off-CPU waits are summed"),
            .duration("runq_min", default: 100_000_000, range: 1_000_000...3_600_000_000_000,
                      doc: "run-queue time of a task in one window below which it is never starved"),
            .ratio("runq_factor", default: 4, range: 1...1_000_000,
                   doc: "run-queue time per window over the task's baseline median that makes a deviation"),
            .count("min_sleeps", default: 5, range: 1...1_000_000,
                   doc: "off-CPU waits (sleeps) per window that make a task latency-sensitive"),
            .count("sustain", default: 2, range: 1...3600,
                   doc: "consecutive windows a task must be starved for"),
            .count("warmup_windows", default: 5, range: 0...100_000,
                   doc: "windows of a task's scheduler activity learned before it is judged"),
            .count("baseline_windows", default: 30, range: 1...10_000,
                   doc: "a task's last windows whose median run-queue time is its baseline"),
            .ratio("critical_share", default: 0.5, range: 0.001...1000,
                   doc: "run-queue time as a share of the window that escalates a starvation to critical"),
            .count("hog_min_waits", default: 3, range: 1...1_000_000,
                   doc: "run-queue waits on the starved task's CPUs in the window that make a never-blocking task a hog"),
            .ratio("psi_threshold", default: 0.2, range: 0.001...1,
                   doc: "PSI cpu some avg10 (a share: 0.2 is 20%) at or above which CPU pressure counts"),
            .duration("psi_sustain", default: 30_000_000_000, range: 0...86_400_000_000_000,
                      doc: "how long PSI cpu some must stay at or above psi_threshold to make a warning"),
            .duration("hold_down", default: 30_000_000_000, range: 0...86_400_000_000_000,
                      doc: "quiet time after which an episode is over and a new one may be reported"),
            .count("top", default: 5, range: 1...100,
                   doc: "hogs and CPUs named in a finding"),
            .duration("forget_after", default: 3_600_000_000_000, range: 1_000_000_000...86_400_000_000_000,
                      doc: "a task or CPU without scheduler records for this long is forgotten"),
        ],
        make: { SchedulingDetector(settings: $0) }
    )

    /// What an episode is about; ordered for stable output.
    struct Key: Hashable, Comparable, Codable {
        enum Kind: Int, Codable { case starved = 0, pressure }
        var kind: Kind
        var pid: UInt32
        static func < (a: Key, b: Key) -> Bool { (a.kind.rawValue, a.pid) < (b.kind.rawValue, b.pid) }
    }

    /// Waits of one task (or on one CPU) in the current window.
    struct Tally: Codable {
        var runqNs: UInt64 = 0
        var runqWaits: UInt64 = 0
        var runqMaxNs: UInt64 = 0
        var offNs: UInt64 = 0
        var offWaits: UInt64 = 0

        mutating func add(_ r: SchedRecord) {
            let w = r.waitNs
            if r.isRunqueueWait {
                runqNs = runqNs.addingClamped(w)
                runqWaits += 1
                runqMaxNs = max(runqMaxNs, w)
            } else {
                offNs = offNs.addingClamped(w)
                offWaits += 1
            }
        }
    }

    struct PidCPU: Hashable, Comparable, Codable {
        var pid: UInt32
        var cpu: UInt16
        static func < (a: PidCPU, b: PidCPU) -> Bool { (a.pid, a.cpu) < (b.pid, b.cpu) }
    }

    /// A task's history: its last windows, learned.
    struct History: Codable {
        var comm: String
        var since: UInt64
        var runq: [UInt64] = []
        var sleeps: [UInt64] = []
        var windows: UInt64 = 0
        var run: UInt64 = 0
        var lastActive: UInt64
    }

    /// A CPU's run-queue time per window, learned.
    struct CPUHistory: Codable {
        var runq: [UInt64] = []
        var lastActive: UInt64
    }

    private var byPid: [UInt32: Tally] = [:]
    private var byPidCPU: [PidCPU: Tally] = [:]
    private var byCPU: [UInt16: Tally] = [:]
    private var recordComms: [UInt32: String] = [:]
    private var exited: Set<UInt32> = []
    private var procs: [UInt32: History] = [:]
    private var cpus: [UInt16: CPUHistory] = [:]
    private var episodes: EpisodeTracker<Key>
    /// Latest PSI cpu some avg10 sample (share) and when; when it went over the threshold.
    private var psi: (share: Double, ts: UInt64)?
    private var psiAbove: (since: UInt64, max: Double, samples: UInt64)?
    private var load1: Double?

    public convenience init() { self.init(settings: SchedulingDetector.spec.defaults) }

    public init(settings: DetectorSettings) {
        windowNs = settings.duration("window")
        tickPeriodNs = windowNs
        runqMinNs = settings.duration("runq_min")
        runqFactor = settings.ratio("runq_factor")
        minSleeps = settings.count("min_sleeps")
        sustain = settings.count("sustain")
        warmupWindows = settings.count("warmup_windows")
        baselineWindows = Int(settings.count("baseline_windows"))
        criticalShare = settings.ratio("critical_share")
        hogMinWaits = settings.count("hog_min_waits")
        psiThreshold = settings.ratio("psi_threshold")
        psiSustainNs = settings.duration("psi_sustain")
        holdDownNs = settings.duration("hold_down")
        topN = Int(settings.count("top"))
        forgetAfterNs = settings.duration("forget_after")
        exclusions = settings.exclude
        episodes = EpisodeTracker(holdDownNs: holdDownNs)
    }

    public func observe(_ e: Event, context: DetectorContext) {
        switch e.payload {
        case .sched(let r):
            // Attributed to the window in progress when the record arrives
            // (at the end of the wait); pid 0 is the idle task.
            guard e.pid != 0 else { return }
            byPid[e.pid, default: Tally()].add(r)
            if r.isRunqueueWait {
                byPidCPU[PidCPU(pid: e.pid, cpu: e.cpu), default: Tally()].add(r)
                byCPU[e.cpu, default: Tally()].add(r)
            } else if byCPU[e.cpu] == nil {
                // A CPU where anything ran is known, and learns its quiet windows.
                byCPU[e.cpu] = Tally()
            }
            if recordComms[e.pid] == nil { recordComms[e.pid] = r.comm }
        case .gauge(let g):
            switch g.gaugeKind {
            case .psiSome where g.name == "cpu":
                pressure(share: Double(g.value) / 10_000, at: e.timestamp, context: context)
            case .load:
                load1 = Double(g.value) / 100
            default:
                break
            }
        case .exec:
            // A new program: a new baseline.
            procs[e.pid] = nil
        case .exit(let x) where x.isGroupExit:
            exited.insert(e.pid)
        default:
            break
        }
    }

    public func tick(boundary: UInt64, context: DetectorContext) {
        let start = boundary >= windowNs ? boundary - windowNs : 0
        judgeStarvation(start: start, end: boundary, context: context)
        learnCPUs(end: boundary)
        for pid in exited { procs[pid] = nil }
        exited.removeAll(keepingCapacity: true)
        byPid.removeAll(keepingCapacity: true)
        byPidCPU.removeAll(keepingCapacity: true)
        byCPU.removeAll(keepingCapacity: true)
        recordComms.removeAll(keepingCapacity: true)
        if boundary >= forgetAfterNs {
            let horizon = boundary - forgetAfterNs
            procs = procs.filter { $0.value.lastActive >= horizon }
            cpus = cpus.filter { $0.value.lastActive >= horizon }
        }
        _ = episodes.close(before: boundary)
    }

    /// The window in progress when the stream ends is judged as if it had
    /// ended at its aligned boundary.
    public func finish(context: DetectorContext) {
        guard context.now > 0 else { return }
        tick(boundary: DetectorEngine.boundary(after: context.now, period: windowNs), context: context)
    }

    // MARK: Starvation

    private func comm(_ pid: UInt32, _ context: DetectorContext) -> String {
        let c = context.processes.comm(pid)
        return c == "?" ? (recordComms[pid] ?? c) : c
    }

    private func judgeStarvation(start: UInt64, end: UInt64, context: DetectorContext) {
        guard !byPid.isEmpty else { return }
        var starved: [(pid: UInt32, tally: Tally, history: History, base: UInt64, baseSleeps: UInt64)] = []
        for pid in byPid.keys.sorted() {
            guard let t = byPid[pid] else { continue }
            var h = procs[pid] ?? History(comm: comm(pid, context), since: start, lastActive: end)
            if h.comm == "?" { h.comm = comm(pid, context) }
            let base = medianOf(h.runq)
            let baseSleeps = medianOf(h.sleeps)
            let judged = h.windows >= warmupWindows && h.windows > 0
            let sleeper = t.offWaits >= minSleeps || baseSleeps >= minSleeps
            let deviating = judged && sleeper && t.runqNs >= runqMinNs && Double(t.runqNs) >= runqFactor * Double(base)
            h.run = deviating ? h.run + 1 : 0
            if h.run >= sustain { starved.append((pid, t, h, base, baseSleeps)) }
            // A deviating window is not learned: the baseline stays what was normal.
            if !deviating {
                h.runq.append(t.runqNs)
                h.sleeps.append(t.offWaits)
                if h.runq.count > baselineWindows { h.runq.removeFirst(h.runq.count - baselineWindows) }
                if h.sleeps.count > baselineWindows { h.sleeps.removeFirst(h.sleeps.count - baselineWindows) }
                h.windows += 1
            }
            h.lastActive = end
            procs[pid] = h
        }
        for s in starved { reportStarved(s, start: start, end: end, context: context) }
    }

    private func reportStarved(_ s: (pid: UInt32, tally: Tally, history: History, base: UInt64, baseSleeps: UInt64),
                               start: UInt64, end: UInt64, context: DetectorContext) {
        let t = s.tally
        let share = Double(t.runqNs) / Double(windowNs)
        let severity: Severity = share >= criticalShare ? .critical : .warning
        let key = Key(kind: .starved, pid: s.pid)
        let decision = episodes.observe(key, at: end, severity: severity)
        if decision == .suppress { return }

        // The CPUs it waited on, and the CPU-bound tasks that waited there too.
        let mine = byPidCPU.filter { $0.key.pid == s.pid }.sorted { ($0.value.runqNs, $1.key.cpu) > ($1.value.runqNs, $0.key.cpu) }
        let cpuSet = Set(mine.map(\.key.cpu))
        var hogs: [UInt32: (waits: UInt64, ns: UInt64, cpus: [UInt16])] = [:]
        for (k, v) in byPidCPU where k.pid != s.pid && cpuSet.contains(k.cpu) {
            var h = hogs[k.pid] ?? (0, 0, [])
            h.waits += v.runqWaits
            h.ns = h.ns.addingClamped(v.runqNs)
            h.cpus.append(k.cpu)
            hogs[k.pid] = h
        }
        let ranked = hogs.filter { pid, h in h.waits >= hogMinWaits && (byPid[pid]?.offWaits ?? 0) == 0 }
            .sorted { ($0.value.ns, $0.value.waits, $1.key) > ($1.value.ns, $1.value.waits, $0.key) }
            .prefix(topN)
        let hogJSON: [JSON] = ranked.map { pid, h in
            .object([("pid", .uint(UInt64(pid))), ("comm", .string(comm(pid, context))),
                     ("runq_waits", .uint(h.waits)), ("runq_ns", .uint(h.ns)), ("offcpu_waits", .uint(0)),
                     ("cpus", .array(h.cpus.sorted().map { .uint(UInt64($0)) }))])
        }
        let cpuJSON: [JSON] = mine.prefix(topN).map { k, v in
            let all = byCPU[k.cpu] ?? Tally()
            return .object([("cpu", .uint(UInt64(k.cpu))), ("task_runq_waits", .uint(v.runqWaits)), ("task_runq_ns", .uint(v.runqNs)),
                            ("cpu_runq_waits", .uint(all.runqWaits)), ("cpu_runq_ns", .uint(all.runqNs)),
                            ("cpu_baseline_runq_ns", .uint(medianOf(cpus[k.cpu]?.runq ?? [])))])
        }
        let mean = t.runqWaits > 0 ? t.runqNs / t.runqWaits : 0
        var evidence: [(String, JSON)] = [
            ("kind", .string("runq_starvation")),
            ("window_start_ns", .uint(start)), ("window_ns", .uint(windowNs)),
            ("runq_ns", .uint(t.runqNs)), ("runq_share", .double(share)), ("runq_waits", .uint(t.runqWaits)),
            ("max_wait_ns", .uint(t.runqMaxNs)), ("mean_wait_ns", .uint(mean)),
            ("offcpu_waits", .uint(t.offWaits)), ("offcpu_ns", .uint(t.offNs)),
            ("baseline_runq_ns", .uint(s.base)), ("baseline_offcpu_waits", .uint(s.baseSleeps)),
            ("baseline", .string("median run-queue time per window of the task's last \(s.history.runq.count) windows")),
            ("baseline_windows", .uint(UInt64(s.history.runq.count))),
            ("consecutive_windows", .uint(s.history.run)),
            ("threshold_runq_ns", .uint(runqMinNs)), ("threshold_factor", .double(runqFactor)),
            ("cpus", .array(cpuJSON)),
            ("hogs", .array(hogJSON)),
            ("hogs_derived", .string("tasks with at least \(hogMinWaits) run-queue waits on these CPUs in the window and no off-CPU wait: runnable the whole window, so CPU-bound")),
        ]
        if let p = psi { evidence += [("psi_cpu_some_avg10", .double(p.share)), ("psi_ts_ns", .uint(p.ts))] }
        if let l = load1 { evidence.append(("load1", .double(l))) }
        let sleeps = t.offWaits == 1 ? "1 sleep" : "\(t.offWaits) sleeps"
        let on = mine.count == 1 ? "CPU" : "CPUs"
        var summary = "\(s.history.comm) (pid \(s.pid)), which sleeps and wakes often (\(sleeps)), waited \(formatDuration(t.runqNs)) for a CPU in \(formatDuration(windowNs)) (\(percent(share)); its median was \(formatDuration(s.base))) on \(on) \(mine.map { String($0.key.cpu) }.joined(separator: ", "))"
        if ranked.isEmpty {
            summary += "; no CPU-bound task was seen waiting there"
        } else {
            let names = ranked.map { pid, h in "\(comm(pid, context)) (pid \(pid), \(h.waits) wait\(h.waits == 1 ? "" : "s"))" }
            summary += ", held by CPU-bound \(names.joined(separator: ", "))"
        }
        if case .escalate(let from) = decision {
            evidence.append(("escalated_from", .string(from.rawValue)))
            summary += "; worse than when the episode began"
        }
        if let ep = episodes.episode(key) { evidence.append(("episode_started_ns", .uint(ep.startedAt))) }
        context.emit(Finding(ts: end, detector: name, severity: severity, pid: s.pid, tid: s.pid, comm: s.history.comm,
                             summary: summary, evidence: .object(evidence)))
    }

    /// Every CPU seen so far learns the window, 0 when nothing waited on it.
    private func learnCPUs(end: UInt64) {
        for cpu in byCPU.keys where cpus[cpu] == nil { cpus[cpu] = CPUHistory(lastActive: end) }
        for cpu in cpus.keys.sorted() {
            guard var h = cpus[cpu] else { continue }
            let t = byCPU[cpu]
            h.runq.append(t?.runqNs ?? 0)
            if h.runq.count > baselineWindows { h.runq.removeFirst(h.runq.count - baselineWindows) }
            if t != nil { h.lastActive = end }
            cpus[cpu] = h
        }
    }

    // MARK: Pressure

    private func pressure(share: Double, at ts: UInt64, context: DetectorContext) {
        psi = (share, ts)
        guard share >= psiThreshold else {
            psiAbove = nil
            return
        }
        var a = psiAbove ?? (since: ts, max: share, samples: 0)
        a.max = max(a.max, share)
        a.samples += 1
        psiAbove = a
        // Time running backwards (hostile timestamps) never lengthens the run.
        let lasted = ts >= a.since ? ts - a.since : 0
        guard lasted >= psiSustainNs else { return }
        let key = Key(kind: .pressure, pid: 0)
        guard episodes.observe(key, at: ts, severity: .warning) == .open else { return }
        let top = byPid.sorted { ($0.value.runqNs, $1.key) > ($1.value.runqNs, $0.key) }.prefix(topN).filter { $0.value.runqWaits > 0 }
        let topJSON: [JSON] = top.map { pid, t in
            .object([("pid", .uint(UInt64(pid))), ("comm", .string(comm(pid, context))), ("runq_waits", .uint(t.runqWaits)),
                     ("runq_ns", .uint(t.runqNs)), ("offcpu_waits", .uint(t.offWaits)), ("cpu_bound", .bool(t.offWaits == 0))])
        }
        var evidence: [(String, JSON)] = [
            ("kind", .string("cpu_pressure")),
            ("psi_cpu_some_avg10", .double(share)), ("threshold", .double(psiThreshold)),
            ("above_since_ns", .uint(a.since)), ("sustained_ns", .uint(lasted)), ("sustain_ns", .uint(psiSustainNs)),
            ("max_psi", .double(a.max)), ("samples_above", .uint(a.samples)),
            ("window_start_ns", .uint(ts - ts % windowNs)),
            ("top_runq", .array(topJSON)),
        ]
        if let l = load1 { evidence.append(("load1", .double(l))) }
        var summary = "CPU pressure: some task waited for a CPU \(percent(share)) of the last 10 s (PSI cpu some avg10), at or above \(percent(psiThreshold)) for \(formatDuration(lasted))"
        if let first = top.first {
            summary += "; most run-queue time this window: \(comm(first.key, context)) (pid \(first.key)) \(formatDuration(first.value.runqNs))"
        }
        context.emit(Finding(ts: ts, detector: name, severity: .warning, pid: 0, tid: 0, comm: "",
                             summary: summary, evidence: .object(evidence)))
    }
}

/// The median of whole numbers (the lower middle of an even count), 0 for none.
func medianOf(_ values: [UInt64]) -> UInt64 {
    guard !values.isEmpty else { return 0 }
    return values.sorted()[(values.count - 1) / 2]
}

// MARK: Checkpoints

extension SchedulingDetector: CheckpointedDetector {
    public struct State: Codable {
        var byPid: [UInt32: Tally]
        var byPidCPU: [PidCPU: Tally]
        var byCPU: [UInt16: Tally]
        var recordComms: [UInt32: String]
        var exited: Set<UInt32>
        var procs: [UInt32: History]
        var cpus: [UInt16: CPUHistory]
        var episodes: EpisodeTracker<Key>
        var psi: PSI?
        var psiAbove: PSIAbove?
        var load1: Double?
    }

    struct PSI: Codable {
        var share: Double, ts: UInt64
    }

    struct PSIAbove: Codable {
        var since: UInt64, max: Double, samples: UInt64
    }

    public var state: State {
        get {
            State(byPid: byPid, byPidCPU: byPidCPU, byCPU: byCPU, recordComms: recordComms, exited: exited, procs: procs, cpus: cpus,
                  episodes: episodes, psi: psi.map { PSI(share: $0.share, ts: $0.ts) },
                  psiAbove: psiAbove.map { PSIAbove(since: $0.since, max: $0.max, samples: $0.samples) }, load1: load1)
        }
        set {
            byPid = newValue.byPid
            byPidCPU = newValue.byPidCPU
            byCPU = newValue.byCPU
            recordComms = newValue.recordComms
            exited = newValue.exited
            procs = newValue.procs
            cpus = newValue.cpus
            episodes = newValue.episodes
            psi = newValue.psi.map { ($0.share, $0.ts) }
            psiAbove = newValue.psiAbove.map { ($0.since, $0.max, $0.samples) }
            load1 = newValue.load1
        }
    }
}
