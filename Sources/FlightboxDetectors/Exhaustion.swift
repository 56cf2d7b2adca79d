import FlightboxEvents

/// Predicts when a resource runs out, from the gauges, and reports it while
/// there is time to act; reports sustained memory and I/O pressure (PSI).
///
/// - Per resource and key (a mount, a cgroup, a process, the system), the
///   gauge samples of the last `window` of event time are kept, one point per
///   aligned `step` (the last sample in it). Every step the points are fitted
///   with a Theil–Sen line (`TrendEstimator`): its slope is the rate, and
///   where it meets the limit is the predicted exhaustion.
/// - The trend counts only when it is consistent: at least `min_samples`
///   points over at least `min_span`, rising, with at least `monotone_share`
///   of the moving steps rising, the samples within `max_noise` of the rise
///   over the window from the line (median distance), and no fall in the
///   window bigger than `max_drop` of that rise. A sawtooth (a garbage
///   collector, a rotated log), a burst that was freed, or a counter that
///   restarted fails one of them for as long as the window holds the fall.
/// - A consistent trend whose prediction is within `warning_horizon` for
///   `sustain` steps in a row opens a `warning` episode; it escalates once to
///   `critical` when the prediction comes within `critical_horizon`. The
///   episode lasts while the trend does and closes `hold_down` after it
///   stopped. A limit of none (0) or unlimited gives no prediction; a limit
///   that changes is taken as it is now.
/// - Filesystem growth names the processes that wrote most to the file
///   system in the last window (write summaries, matched by device); memory
///   running out names the processes whose resident memory grows fastest
///   (never judged alone: file mappings grow it harmlessly).
/// - PSI `memory` and `io` `some avg10` at or above `psi_threshold` for
///   `psi_sustain` is a `warning` (pressure now, not a prediction),
///   `critical` when `full avg10` reaches `psi_full_threshold` as long.
///   CPU pressure is the `scheduling` detector's, which names the tasks
///   that held the CPUs.
///
/// Deterministic: event time only, aligned steps, keys sorted before
/// anything is emitted; the wall-clock time of a prediction comes from the
/// trace's own clock mapping.
public final class ExhaustionDetector: Detector {
    public let name = "exhaustion"
    public let exclusions: Exclusions
    public let tickPeriodNs: UInt64?
    public var observedTypes: EventTypeSet { EventTypeSet(.gauge, .writes, .exit) }

    let windowNs: UInt64
    let stepNs: UInt64
    let minSamples: Int
    let minSpanNs: UInt64
    let monotoneShare: Double
    let maxNoise: Double
    let maxDrop: Double
    let warningHorizonNs: UInt64
    let criticalHorizonNs: UInt64
    let sustain: UInt64
    let holdDownNs: UInt64
    let topN: Int
    let psiThreshold: Double
    let psiFullThreshold: Double
    let psiSustainNs: UInt64

    public static let spec = DetectorSpec(
        name: "exhaustion", family: "gauges",
        judges: "a resource (disk space and inodes, memory, a memory cgroup, swap, file descriptors per process and system-wide, pids and threads, a cgroup's pids) trending toward its limit, with the predicted time; sustained memory or I/O pressure (PSI)",
        parameters: [
            .duration("window", default: 600_000_000_000, range: 1_000_000_000...86_400_000_000_000,
                      doc: "event time of gauge samples the trend is fitted over"),
            .duration("step", default: 10_000_000_000, range: 10_000_000...3_600_000_000_000,
                      doc: "aligned event-time step: one point per step (its last sample), one judgement per step"),
            .count("min_samples", default: 10, range: 3...1000,
                   doc: "points in the window below which no trend is fitted"),
            .duration("min_span", default: 300_000_000_000, range: 0...86_400_000_000_000,
                      doc: "time the points must span before a trend counts (a start-up is not a trend)"),
            .ratio("monotone_share", default: 0.8, range: 0...1,
                   doc: "share of the steps that moved which must go up"),
            .ratio("max_noise", default: 0.1, range: 0...10,
                   doc: "median distance of the points from the line, as a share of the line's rise over the window, above which the fit is too poor"),
            .ratio("max_drop", default: 0.25, range: 0...10,
                   doc: "largest fall between two points in the window, as a share of the line's rise over it, above which it is a sawtooth or a reset, not a trend"),
            .duration("warning_horizon", default: 3_600_000_000_000, range: 1_000_000_000...31_536_000_000_000_000,
                      doc: "predicted exhaustion within this makes a warning"),
            .duration("critical_horizon", default: 600_000_000_000, range: 0...31_536_000_000_000_000,
                      doc: "predicted exhaustion within this escalates the episode to critical"),
            .count("sustain", default: 3, range: 1...3600,
                   doc: "consecutive steps the prediction must stay within warning_horizon before a warning"),
            .duration("hold_down", default: 60_000_000_000, range: 0...86_400_000_000_000,
                      doc: "time without a consistent rising trend after which an episode is over"),
            .count("top", default: 3, range: 1...100,
                   doc: "writers named in a filesystem finding"),
            .ratio("psi_threshold", default: 0.2, range: 0.001...1,
                   doc: "PSI memory or io some avg10 (a share) at or above which pressure counts"),
            .ratio("psi_full_threshold", default: 0.1, range: 0.001...1,
                   doc: "PSI memory or io full avg10 (a share) at or above which sustained pressure is critical"),
            .duration("psi_sustain", default: 30_000_000_000, range: 0...86_400_000_000_000,
                      doc: "how long pressure must stay at or above a threshold to make a finding"),
        ],
        make: { ExhaustionDetector(settings: $0) }
    )

    /// What runs out. The order is the order of findings within a step.
    enum Resource: Int, Comparable, Codable {
        case diskSpace = 0, diskInodes, memory, swap, cgroupMemory, processFds, systemFds, cgroupPids, pids, threads, pressure
        /// A process's resident memory: not judged (file mappings grow it
        /// harmlessly), it says who grows when memory runs out.
        case processMemory

        static func < (a: Resource, b: Resource) -> Bool { a.rawValue < b.rawValue }

        var name: String {
            switch self {
            case .diskSpace: "disk_space"
            case .diskInodes: "disk_inodes"
            case .memory: "memory"
            case .swap: "swap"
            case .cgroupMemory: "cgroup_memory"
            case .processFds: "process_fds"
            case .systemFds: "system_fds"
            case .cgroupPids: "cgroup_pids"
            case .pids: "pids"
            case .threads: "threads"
            case .pressure: "pressure"
            case .processMemory: "process_memory"
            }
        }

        /// How a gauge maps to a resource; `free`: the gauge counts what is
        /// left, so what is used is its limit less its value.
        static func of(_ kind: GaugeKind) -> (Resource, free: Bool)? {
            switch kind {
            case .fsBytes: (.diskSpace, true)
            case .fsInodes: (.diskInodes, true)
            case .memAvailable: (.memory, true)
            case .swapFree: (.swap, true)
            // The cgroup's charge counts page cache, which reclaim drops at
            // the limit: only what it cannot drop heads for an OOM kill.
            case .cgroupMemoryAnon: (.cgroupMemory, false)
            case .processFds: (.processFds, false)
            case .systemFds: (.systemFds, false)
            case .cgroupPids: (.cgroupPids, false)
            case .tasks: (.pids, false)
            case .threads: (.threads, false)
            case .processRSS: (.processMemory, false)
            default: nil
            }
        }

        var bytes: Bool { self == .diskSpace || self == .memory || self == .swap || self == .cgroupMemory || self == .processMemory }

        var unit: String {
            switch self {
            case .diskSpace, .memory, .swap, .cgroupMemory, .processMemory: "bytes"
            case .diskInodes: "inodes"
            case .processFds, .systemFds: "fds"
            case .cgroupPids, .pids, .threads, .pressure: "tasks"
            }
        }
    }

    struct Key: Hashable, Comparable, Codable {
        var resource: Resource
        var name: String
        var pid: UInt32
        static func < (a: Key, b: Key) -> Bool { (a.resource, a.name, a.pid) < (b.resource, b.name, b.pid) }
    }

    struct Point: Codable {
        var t: UInt64
        var used: Double
        var limit: UInt64
    }

    /// One key's samples.
    struct Series: Codable {
        /// One point per step, oldest first, within the window.
        var points: [Point] = []
        /// The last sample of the step in progress.
        var pending: Point?
        /// Steps in a row whose prediction was within the warning horizon.
        var run: UInt64 = 0
    }

    /// What one step's fit says of a key.
    struct Assessment {
        var trend: Trend
        var current: Point
        var spanNs: UInt64
        var noise: Double
        var maxDrop: Double
        var seconds: Double
        var limitChangedFrom: UInt64?
    }

    private var series: [Key: Series] = [:]
    private var episodes: EpisodeTracker<Key>
    /// Bytes written per device and process, in this window and the one
    /// before (rotated every window): who fills a file system.
    private var writes: [UInt32: [UInt32: UInt64]] = [:]
    private var writesBefore: [UInt32: [UInt32: UInt64]] = [:]
    private var writesRotatedAt: UInt64 = 0
    /// Since when `writesBefore` and `writes` count (0: the stream's start).
    private var writesSince: UInt64 = 0
    private var writerComms: [UInt32: String] = [:]
    /// Mount point -> device and when last sampled, from the fs_device gauges.
    private var devices: [String: (dev: UInt32, at: UInt64)] = [:]
    /// Latest charge (cgroup_memory) per cgroup and when, for the evidence.
    private var charges: [String: (bytes: UInt64, at: UInt64)] = [:]
    /// PSI per resource ("memory", "io"): latest avg10 shares and since when
    /// they have been over the thresholds.
    private var pressure: [String: PressureState] = [:]

    struct PressureState: Codable {
        var some = 0.0, full = 0.0
        var someSince: UInt64?, fullSince: UInt64?
        var maxSome = 0.0, maxFull = 0.0
        var at: UInt64 = 0
    }

    /// More keys than this (series, mounts, cgroups, writers per device) are
    /// not followed: a hostile trace could name millions.
    static let maxKeys = 65_536

    public convenience init() { self.init(settings: ExhaustionDetector.spec.defaults) }

    public init(settings: DetectorSettings) {
        windowNs = settings.duration("window")
        stepNs = settings.duration("step")
        tickPeriodNs = stepNs
        minSamples = Int(settings.count("min_samples"))
        minSpanNs = settings.duration("min_span")
        monotoneShare = settings.ratio("monotone_share")
        maxNoise = settings.ratio("max_noise")
        maxDrop = settings.ratio("max_drop")
        warningHorizonNs = settings.duration("warning_horizon")
        criticalHorizonNs = settings.duration("critical_horizon")
        sustain = settings.count("sustain")
        holdDownNs = settings.duration("hold_down")
        topN = Int(settings.count("top"))
        psiThreshold = settings.ratio("psi_threshold")
        psiFullThreshold = settings.ratio("psi_full_threshold")
        psiSustainNs = settings.duration("psi_sustain")
        exclusions = settings.exclude
        episodes = EpisodeTracker(holdDownNs: holdDownNs)
    }

    public func observe(_ e: Event, context: DetectorContext) {
        switch e.payload {
        case .gauge(let g):
            guard let kind = g.gaugeKind else { return }
            switch kind {
            case .fsDevice:
                let name = g.name
                if devices.count < ExhaustionDetector.maxKeys || devices[name] != nil { devices[name] = (UInt32(truncatingIfNeeded: g.value), e.timestamp) }
            case .cgroupMemory:
                let name = g.name
                if charges.count < ExhaustionDetector.maxKeys || charges[name] != nil { charges[name] = (g.value, e.timestamp) }
            case .psiSome, .psiFull:
                let resource = g.name
                guard resource == "memory" || resource == "io" else { return }
                var p = pressure[resource] ?? PressureState()
                let share = Double(g.value) / 10_000
                if kind == .psiSome { p.some = share } else { p.full = share }
                p.at = e.timestamp
                pressure[resource] = p
            default:
                guard let (resource, free) = Resource.of(kind) else { return }
                let perProcess = resource == .processFds || resource == .processMemory
                let name = perProcess ? "" : g.name
                if !name.isEmpty, excluded(resource, name) { return }
                let key = Key(resource: resource, name: name, pid: perProcess ? e.pid : 0)
                let used = free ? Double(g.limit >= g.value ? g.limit - g.value : 0) : Double(g.value)
                let point = Point(t: e.timestamp, used: used, limit: g.limit)
                if let last = series[key]?.points.last {
                    // Time never runs backwards within a series (hostile or reordered timestamps).
                    if e.timestamp > last.t { series[key]?.pending = point }
                } else if series[key] != nil || series.count < ExhaustionDetector.maxKeys {
                    series[key, default: Series()].pending = point
                }
            }
        case .writes(let w):
            guard w.bytes > 0, writes[w.dev] != nil || writes.count < ExhaustionDetector.maxKeys,
                  writes[w.dev]?[e.pid] != nil || (writes[w.dev]?.count ?? 0) < ExhaustionDetector.maxKeys else { return }
            if writesSince == 0 { writesSince = w.firstTs <= e.timestamp ? w.firstTs : e.timestamp }
            writes[w.dev, default: [:]][e.pid, default: 0] &+= w.bytes
            writerComms[e.pid] = context.processes.comm(e.pid)
        case .exit(let x) where x.isGroupExit:
            // Its number may come back as another process: its fds are not this one's.
            series[Key(resource: .processFds, name: "", pid: e.pid)] = nil
            series[Key(resource: .processMemory, name: "", pid: e.pid)] = nil
        default:
            break
        }
    }

    /// Cgroups by path (and what is below), mounts by mount point (as devices).
    private func excluded(_ r: Resource, _ name: String) -> Bool {
        switch r {
        case .cgroupMemory, .cgroupPids: exclusions.excludes(cgroup: name)
        case .diskSpace, .diskInodes: exclusions.excludes(device: name)
        default: false
        }
    }

    public func tick(boundary: UInt64, context: DetectorContext) {
        if boundary >= writesRotatedAt.addingClamped(windowNs) {
            writesBefore = writes
            writes = [:]
            writesSince = max(writesSince, writesRotatedAt)
            writesRotatedAt = boundary
            // What was not seen for a window is gone (an exited writer, an
            // unmounted file system, a removed cgroup): a long run stays bounded.
            let stale = boundary > windowNs ? boundary - windowNs : 0
            writerComms = writerComms.filter { pid, _ in writesBefore.values.contains { $0[pid] != nil } }
            devices = devices.filter { $0.value.at >= stale }
            charges = charges.filter { $0.value.at >= stale }
        }
        let oldest = boundary > windowNs ? boundary - windowNs : 0
        for key in series.keys.sorted() {
            // Out of the dictionary while it changes: no copy of its points.
            guard var s = series.removeValue(forKey: key) else { continue }
            if let p = s.pending {
                s.points.append(p)
                s.pending = nil
            }
            if let i = s.points.firstIndex(where: { $0.t >= oldest }), i > 0 { s.points.removeFirst(i) }
            if let last = s.points.last, last.t < oldest { s.points.removeAll() }
            // Not sampled for a window (unmounted, exited, removed): forgotten.
            guard !s.points.isEmpty else { continue }
            if key.resource != .processMemory { judge(key, &s, at: boundary, context: context) }
            series[key] = s
        }
        judgePressure(at: boundary, context: context)
        _ = episodes.close(before: boundary)
    }

    // MARK: Trends

    /// The fit of a key's points, when it is a consistent rise toward a limit.
    func assess(_ points: [Point]) -> Assessment? {
        guard points.count >= minSamples, let first = points.first, let last = points.last,
              last.t - first.t >= minSpanNs, last.limit > 0 else { return nil }
        guard let trend = TrendEstimator.fit(points.map { (t: $0.t, v: $0.used) }, minSamples: minSamples),
              trend.slopePerSecond > 0, trend.monotoneShare >= monotoneShare else { return nil }
        let span = last.t - first.t
        let rise = trend.slopePerSecond * Double(span) / 1e9
        guard rise > 0 else { return nil }
        let noise = trend.residualMAD / rise
        var drop = 0.0
        for i in 1..<points.count where points[i].used < points[i - 1].used {
            drop = max(drop, points[i - 1].used - points[i].used)
        }
        guard noise <= maxNoise, drop <= maxDrop * rise else { return nil }
        let limit = Double(last.limit)
        // From the line's end, but never above the last few points (a fit may
        // overshoot); already at the limit (the line may lag a last jump): now.
        let level = min(trend.valueAtEnd, points.suffix(3).reduce(0) { max($0, $1.used) })
        let seconds = last.used >= limit ? 0 : max(0, (limit - level) / trend.slopePerSecond)
        let changed = points.first(where: { $0.limit != last.limit })?.limit
        return Assessment(trend: trend, current: last, spanNs: span, noise: noise, maxDrop: drop / rise, seconds: seconds, limitChangedFrom: changed)
    }

    private func judge(_ key: Key, _ s: inout Series, at boundary: UInt64, context: DetectorContext) {
        guard let a = assess(s.points) else {
            s.run = 0
            return
        }
        let within = a.seconds * 1e9 <= Double(warningHorizonNs)
        s.run = within ? s.run + 1 : 0
        let severity: Severity = a.seconds * 1e9 <= Double(criticalHorizonNs) ? .critical : .warning
        let ongoing = episodes.episode(key).map { !episodes.isOver($0, at: boundary) } ?? false
        // A new episode needs the prediction inside the horizon for `sustain` steps.
        if !ongoing, !within || s.run < sustain { return }
        // While the trend lasts the episode does, inside the horizon or not;
        // only a prediction inside it may escalate.
        let decision = episodes.observe(key, at: boundary, severity: within ? severity : .warning)
        if decision == .suppress { return }
        emit(key, a, severity: within ? severity : .warning, decision: decision, at: boundary, context: context)
    }

    private func emit(_ key: Key, _ a: Assessment, severity: Severity, decision: EpisodeTracker<Key>.Decision, at boundary: UInt64, context: DetectorContext) {
        let r = key.resource
        let rate = a.trend.slopePerSecond
        let predictedNs = a.seconds.isFinite ? boundary.addingClamped(wholeClamped(a.seconds * 1e9)) : UInt64.max
        let comm = key.pid > 0 ? context.processes.comm(key.pid) : ""
        var evidence: [(String, JSON)] = [
            ("kind", .string("exhaustion_predicted")), ("resource", .string(r.name)), ("key", .string(keyText(key, comm: comm))),
        ]
        switch r {
        case .diskSpace, .diskInodes: evidence.append(("mount", .string(key.name)))
        case .cgroupMemory, .cgroupPids: evidence.append(("cgroup", .string(key.name)))
        case .processFds: evidence.append(("process", .string("\(comm)[\(key.pid)]")))
        default: break
        }
        evidence += [
            ("unit", .string(r.unit)), ("current", .uint(wholeClamped(a.current.used))), ("limit", .uint(a.current.limit)),
            ("used_share", .double(a.current.used / Double(a.current.limit))),
            ("rate_per_second", .double(rate)),
            ("window_ns", .uint(windowNs)), ("window_start_ns", .uint(a.current.t - a.spanNs)), ("span_ns", .uint(a.spanNs)),
            ("samples", .uint(UInt64(a.trend.samples))),
            ("fit", .object([
                ("method", .string("theil-sen")), ("monotone_share", .double(a.trend.monotoneShare)),
                ("residual_mad", .double(a.trend.residualMAD)), ("noise", .double(a.noise)), ("max_drop", .double(a.maxDrop)),
                ("quality", .double(max(0, 1 - a.noise))),
            ])),
            ("predicted_seconds", .double(a.seconds)), ("predicted_exhaustion_ns", .uint(predictedNs)),
        ]
        if let clock = context.clock, predictedNs != .max {
            let wall = clock.wallClockNs(predictedNs)
            evidence += [("predicted_exhaustion_wall_ns", .int(wall)), ("predicted_exhaustion_wall", .string(utcText(wall)))]
        }
        evidence += [("warning_horizon_ns", .uint(warningHorizonNs)), ("critical_horizon_ns", .uint(criticalHorizonNs))]
        if let from = a.limitChangedFrom { evidence.append(("limit_changed_from", .uint(from))) }
        var by = ""
        if r == .cgroupMemory, let charge = charges[key.name] { evidence.append(("charged_bytes", .uint(charge.bytes))) }
        if r == .memory {
            let top = growers().prefix(topN)
            evidence.append(("growing", .array(top.map { g in
                .object([("pid", .uint(UInt64(g.pid))), ("comm", .string(context.processes.comm(g.pid))),
                         ("rss_bytes", .uint(g.rss)), ("rate_per_second", .double(g.rate))])
            })))
            if let g = top.first { by = ", growing most: \(context.processes.comm(g.pid))[\(g.pid)] at \(formatBytes(wholeClamped(g.rate)))/s" }
        }
        if r == .diskSpace || r == .diskInodes, let dev = devices[key.name]?.dev {
            let top = writers(dev)
            evidence.append(("device", .string("\(dev >> 20):\(dev & 0xfffff)")))
            evidence.append(("writes_since_ns", .uint(writesSince)))
            evidence.append(("writers", .array(top.list.prefix(topN).map { pid, bytes in
                .object([("pid", .uint(UInt64(pid))), ("comm", .string(writerComms[pid] ?? "?")), ("bytes", .uint(bytes))])
            })))
            if let (pid, bytes) = top.list.first, top.total > 0 {
                let share = Double(bytes) / Double(top.total)
                let who = "\(writerComms[pid] ?? "?")[\(pid)] (\(percent(share)) of \(formatBytes(top.total)) written in the last \(approx(Double(boundary - min(boundary, writesSince)) / 1e9)))"
                by = share >= 0.5 ? ", written mostly by \(who)" : ", its biggest writer \(who)"
            }
        }
        if case .escalate(let from) = decision {
            evidence.append(("escalated_from", .string(from.rawValue)))
            if let ep = episodes.episode(key) { evidence.append(("episode_started_ns", .uint(ep.startedAt))) }
        }
        context.emit(Finding(ts: boundary, detector: name, severity: severity, pid: key.pid, tid: key.pid, comm: comm,
                             summary: summary(key, a, comm: comm) + by, evidence: .object(evidence)))
    }

    /// Processes whose resident memory grew over the window, fastest first
    /// (Theil–Sen over their own points; a process needs min_samples of them).
    private func growers() -> [(pid: UInt32, rss: UInt64, rate: Double)] {
        var out: [(pid: UInt32, rss: UInt64, rate: Double)] = []
        for (key, s) in series where key.resource == .processMemory {
            guard let last = s.points.last,
                  let t = TrendEstimator.fit(s.points.map { (t: $0.t, v: $0.used) }, minSamples: minSamples), t.slopePerSecond > 0 else { continue }
            out.append((key.pid, wholeClamped(last.used), t.slopePerSecond))
        }
        return out.sorted { ($0.rate, $1.pid) > ($1.rate, $0.pid) }
    }

    /// The processes that wrote most to device `dev` in the last one or two windows.
    private func writers(_ dev: UInt32) -> (list: [(UInt32, UInt64)], total: UInt64) {
        var sum: [UInt32: UInt64] = writesBefore[dev] ?? [:]
        for (pid, b) in writes[dev] ?? [:] { sum[pid, default: 0] &+= b }
        let list = sum.sorted { ($0.value, $1.key) > ($1.value, $0.key) }
        return (list, list.reduce(0) { $0 &+ $1.1 })
    }

    private func keyText(_ key: Key, comm: String) -> String {
        switch key.resource {
        case .processFds: "\(comm)[\(key.pid)]"
        case .diskSpace, .diskInodes, .cgroupMemory, .cgroupPids: key.name
        default: "system"
        }
    }

    private func summary(_ key: Key, _ a: Assessment, comm: String) -> String {
        let when = a.seconds == 0 ? "now" : a.seconds.isFinite ? "in about \(approx(a.seconds))" : "eventually"
        let limit = a.current.limit
        let rate = a.trend.slopePerSecond
        let perSecond = key.resource.bytes ? "\(formatBytes(wholeClamped(rate)))/s" : "\(short(rate)) \(key.resource.unit)/s"
        let share = percent(a.current.used / Double(limit))
        switch key.resource {
        case .diskSpace: return "\(key.name) fills \(when) at \(perSecond) (\(share) of \(formatBytes(limit)) used)"
        case .diskInodes: return "\(key.name) runs out of inodes \(when) at \(perSecond) (\(share) of \(limit) used)"
        case .memory: return "Memory runs out \(when): MemAvailable falls \(perSecond) (\(share) of \(formatBytes(limit)) in use)"
        case .swap: return "Swap runs out \(when), filling at \(perSecond) (\(share) of \(formatBytes(limit)) used)"
        case .cgroupMemory:
            return "Memory cgroup \(key.name) reaches its limit of \(formatBytes(limit)) \(when): its anonymous memory grows \(perSecond) (\(formatBytes(wholeClamped(a.current.used))) now)"
        case .processFds: return "\(comm)[\(key.pid)] runs out of file descriptors \(when): \(wholeClamped(a.current.used)) open of its limit of \(limit), \(perSecond) more"
        case .systemFds: return "The system runs out of file handles \(when): \(wholeClamped(a.current.used)) of fs.file-max \(limit), \(perSecond) more"
        case .cgroupPids: return "Cgroup \(key.name) reaches pids.max \(limit) \(when): \(wholeClamped(a.current.used)) tasks, \(perSecond) more"
        case .pids: return "The system runs out of pids \(when): \(wholeClamped(a.current.used)) tasks of pid_max \(limit), \(perSecond) more"
        case .threads: return "The system reaches threads-max \(when): \(wholeClamped(a.current.used)) tasks of \(limit), \(perSecond) more"
        case .pressure, .processMemory: return ""
        }
    }

    // MARK: Pressure

    private func judgePressure(at boundary: UInt64, context: DetectorContext) {
        for resource in pressure.keys.sorted() {
            guard var p = pressure[resource] else { continue }
            // A stale sample (gauges stopped) says nothing about now.
            let fresh = boundary - min(boundary, p.at) <= max(stepNs, 2_000_000_000) * 2
            if fresh, p.some >= psiThreshold {
                if p.someSince == nil { p.someSince = p.at; p.maxSome = 0 }
                p.maxSome = max(p.maxSome, p.some)
            } else { p.someSince = nil }
            if fresh, p.full >= psiFullThreshold {
                if p.fullSince == nil { p.fullSince = p.at; p.maxFull = 0 }
                p.maxFull = max(p.maxFull, p.full)
            } else { p.fullSince = nil }
            pressure[resource] = p
            let someFor = p.someSince.map { p.at - min(p.at, $0) } ?? 0
            let fullFor = p.fullSince.map { p.at - min(p.at, $0) } ?? 0
            let critical = p.fullSince != nil && fullFor >= psiSustainNs
            guard critical || (p.someSince != nil && someFor >= psiSustainNs) else { continue }
            let key = Key(resource: .pressure, name: resource, pid: 0)
            let severity: Severity = critical ? .critical : .warning
            let decision = episodes.observe(key, at: boundary, severity: severity)
            if decision == .suppress { continue }
            var evidence: [(String, JSON)] = [
                ("kind", .string("pressure_sustained")), ("resource", .string(resource)),
                ("psi_some_avg10", .double(p.some)), ("psi_full_avg10", .double(p.full)),
                ("some_above_since_ns", p.someSince.map { .uint($0) } ?? .null), ("full_above_since_ns", p.fullSince.map { .uint($0) } ?? .null),
                ("max_some", p.someSince != nil ? .double(p.maxSome) : .null), ("max_full", p.fullSince != nil ? .double(p.maxFull) : .null),
                ("threshold", .double(psiThreshold)), ("full_threshold", .double(psiFullThreshold)), ("sustain_ns", .uint(psiSustainNs)),
            ]
            if case .escalate(let from) = decision { evidence.append(("escalated_from", .string(from.rawValue))) }
            let what = resource == "io" ? "I/O" : "memory"
            let summary = critical
                ? "\(what.prefix(1).uppercased() + what.dropFirst()) pressure: every runnable task stalled on \(what) \(percent(p.full)) of the last 10 s (PSI \(resource) full avg10), at or above \(percent(psiFullThreshold)) for \(formatDuration(fullFor))"
                : "\(what.prefix(1).uppercased() + what.dropFirst()) pressure: some task stalled on \(what) \(percent(p.some)) of the last 10 s (PSI \(resource) some avg10), at or above \(percent(psiThreshold)) for \(formatDuration(someFor))"
            context.emit(Finding(ts: boundary, detector: name, severity: severity, pid: 0, tid: 0, comm: "", summary: summary, evidence: .object(evidence)))
        }
    }
}

/// "45 s", "4 min", "2.5 h", "3 days": a predicted time, as a person says it.
func approx(_ seconds: Double) -> String {
    if seconds < 90 { return "\(Int(seconds.rounded())) s" }
    if seconds < 90 * 60 { return "\(Int((seconds / 60).rounded())) min" }
    if seconds < 48 * 3600 { return "\(short((seconds / 3600 * 10).rounded() / 10)) h" }
    return "\(short((seconds / 86400 * 10).rounded() / 10)) days"
}

/// UTC "2026-11-25T18:52:19Z" of wall-clock ns since the epoch, without the
/// C library's time zone (days to civil date, Howard Hinnant's algorithm).
func utcText(_ ns: Int64) -> String {
    // A hostile trace can put the prediction anywhere: keep the arithmetic below in range.
    let ns = max(ns, Int64.min + 1_000_000_000)
    let secs = ns >= 0 ? ns / 1_000_000_000 : (ns - 999_999_999) / 1_000_000_000
    let days = secs >= 0 ? secs / 86400 : (secs - 86399) / 86400
    let rem = secs - days * 86400
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let d = doy - (153 * mp + 2) / 5 + 1
    let m = mp < 10 ? mp + 3 : mp - 9
    let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
    func p(_ v: Int64, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
    return "\(p(y, 4))-\(p(m, 2))-\(p(d, 2))T\(p(rem / 3600, 2)):\(p(rem / 60 % 60, 2)):\(p(rem % 60, 2))Z"
}

// MARK: Checkpoints

extension ExhaustionDetector: CheckpointedDetector {
    public struct State: Codable {
        var series: [Key: Series]
        var episodes: EpisodeTracker<Key>
        var writes: [UInt32: [UInt32: UInt64]]
        var writesBefore: [UInt32: [UInt32: UInt64]]
        var writesRotatedAt: UInt64
        var writesSince: UInt64
        var writerComms: [UInt32: String]
        var devices: [String: Stamped]
        var charges: [String: Stamped]
        var pressure: [String: PressureState]
    }

    /// A value and when it was seen (the device of a mount, a cgroup's charge).
    struct Stamped: Codable {
        var value: UInt64, at: UInt64
    }

    public var state: State {
        get {
            State(series: series, episodes: episodes, writes: writes, writesBefore: writesBefore, writesRotatedAt: writesRotatedAt,
                  writesSince: writesSince, writerComms: writerComms,
                  devices: devices.mapValues { Stamped(value: UInt64($0.dev), at: $0.at) },
                  charges: charges.mapValues { Stamped(value: $0.bytes, at: $0.at) }, pressure: pressure)
        }
        set {
            series = newValue.series
            episodes = newValue.episodes
            writes = newValue.writes
            writesBefore = newValue.writesBefore
            writesRotatedAt = newValue.writesRotatedAt
            writesSince = newValue.writesSince
            writerComms = newValue.writerComms
            devices = newValue.devices.mapValues { (UInt32(truncatingIfNeeded: $0.value), $0.at) }
            charges = newValue.charges.mapValues { ($0.value, $0.at) }
            pressure = newValue.pressure
        }
    }
}
