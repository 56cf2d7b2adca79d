import FlightboxEvents

/// Judges application health checks (`probes:` in the configuration, stored
/// in the trace as `health_checks`) from their probe events:
///
/// - latency: per aligned window of the check's calls (every process
///   together: a service's workers are one service), the p99 or the max of
///   entry-to-return latency over a fixed limit, or over `baseline` times the
///   check's own baseline (the median of its last 16 healthy windows, once
///   `baseline_windows` were seen);
/// - errors: per window, the share of calls whose return value (or argument)
///   matches the check's condition (`ret < 0`), from `min_calls` calls up;
/// - heartbeat: a process that called the check must call it again within
///   `every` of event time; judged on the engine's ticks, so the absence of
///   calls is seen. A process that exits is "stopped", not "missed": with
///   status 0 that is its business, otherwise a finding says so;
/// - argument: a call whose argument matches the condition (`arg2 > 100000`).
///
/// One finding per episode and judgement (a check's latency, errors or
/// argument; a process's heartbeat), escalated once to critical at
/// `critical_times` the limit, over after `hold_down` without a deviation.
/// p99 comes from a log-linear histogram (8 buckets per power of two): the
/// bucket's upper bound, capped by the window's max, at most 12.5% high.
/// Windows are counted in event time as the calls arrive (at their return),
/// aligned to multiples of their length. Deterministic: event time only;
/// every state below is a plain Codable value, walked in check order.
public final class HealthDetector: Detector {
    public let name = "health"
    public var observedTypes: EventTypeSet { EventTypeSet(.probe, .exit) }
    public let exclusions: Exclusions
    /// Windows and heartbeat periods are multiples of this (the configuration checks it).
    public static let tickNs: UInt64 = 100_000_000
    public var tickPeriodNs: UInt64? { checks.isEmpty ? nil : HealthDetector.tickNs }

    public let checks: [HealthCheck]
    let holdDownNs: UInt64
    let criticalTimes: Double
    let baselineWindows: Int
    let baselineFloorNs: UInt64
    /// check id -> index in `checks` (ids are small: the configuration numbers them from 1).
    private let index: [UInt32: Int]
    public var state: State

    public static let spec = DetectorSpec(
        name: "health", family: "probes",
        judges: "the application health checks of the configuration's probes section: latency over a limit or the check's baseline, error returns, missed heartbeats, argument thresholds",
        parameters: [
            .duration("hold_down", default: 30_000_000_000, range: 0...86_400_000_000_000,
                      doc: "time without a deviation after which an episode is over and a new one may be reported"),
            .ratio("critical_times", default: 4, range: 1...1_000_000,
                   doc: "a latency, error share or heartbeat gap this many times its limit escalates the episode to critical"),
            .count("baseline_windows", default: 5, range: 1...16,
                   doc: "healthy windows a latency check with a baseline learns before it is judged"),
            .duration("baseline_floor", default: 100_000, range: 0...3_600_000_000_000,
                      doc: "a latency under this is never a deviation from a baseline (microsecond noise)"),
        ],
        make: { HealthDetector(settings: $0) }
    )

    public convenience init(settings: DetectorSettings) {
        self.init(checks: settings.checks, holdDownNs: settings.duration("hold_down"), criticalTimes: settings.ratio("critical_times"),
                  baselineWindows: Int(settings.count("baseline_windows")), baselineFloorNs: settings.duration("baseline_floor"),
                  exclusions: settings.exclude)
    }

    public init(checks: [HealthCheck], holdDownNs: UInt64 = 30_000_000_000, criticalTimes: Double = 4, baselineWindows: Int = 5,
                baselineFloorNs: UInt64 = 100_000, exclusions: Exclusions = Exclusions()) {
        self.checks = checks
        self.holdDownNs = holdDownNs
        self.criticalTimes = criticalTimes
        self.baselineWindows = baselineWindows
        self.baselineFloorNs = baselineFloorNs
        self.exclusions = exclusions
        var index: [UInt32: Int] = [:]
        for (i, c) in checks.enumerated() where index[c.id] == nil { index[c.id] = i }
        self.index = index
        state = State(checks: checks.map { CheckState(latencyHistogram: $0.latency != nil) })
    }

    // MARK: State

    /// Everything the detector knows, as plain values (for checkpoints).
    public struct State: Codable, Equatable, Sendable {
        /// Per check, in `checks` order.
        public var checks: [CheckState]
    }

    public struct CheckState: Codable, Equatable, Sendable {
        public var latency = LatencyWindow()
        public var errors = ErrorWindow()
        /// Healthy windows' statistic, oldest first, at most 16.
        public var baselineHistory: [UInt64] = []
        /// Per process that called it: its last call.
        public var beats: [UInt32: Beat] = [:]
        public var latencyEpisode = EpisodeState()
        public var errorEpisode = EpisodeState()
        public var argumentEpisode = EpisodeState()

        init(latencyHistogram: Bool) {
            if latencyHistogram { latency.histogram = [UInt32](repeating: 0, count: LatencyWindow.buckets) }
        }
    }

    public struct LatencyWindow: Codable, Equatable, Sendable {
        static let buckets = 512
        /// Start of the window, aligned; nil before the check's first call.
        public var start: UInt64?
        public var calls: UInt64 = 0
        public var maxNs: UInt64 = 0
        public var maxPid: UInt32 = 0
        public var maxTid: UInt32 = 0
        /// Its name when it made the call: the process may be gone (and
        /// forgotten) by the time the window is judged.
        public var maxComm = ""
        public var histogram: [UInt32] = []

        /// 0-15 exact, then 8 buckets per power of two.
        @inline(__always) static func bucket(_ v: UInt64) -> Int {
            if v < 16 { return Int(v) }
            let e = 63 - v.leadingZeroBitCount
            return 16 + (e - 4) * 8 + Int((v >> UInt64(e - 3)) & 7)
        }

        /// The largest value in bucket `i`.
        static func upperBound(_ i: Int) -> UInt64 {
            if i < 16 { return UInt64(i) }
            let e = (i - 16) / 8 + 4, sub = UInt64((i - 16) % 8)
            let width: UInt64 = 1 << UInt64(e - 3)
            let (low, o1) = (8 + sub).multipliedReportingOverflow(by: width)
            let (high, o2) = low.addingReportingOverflow(width - 1)
            return o1 || o2 ? .max : high
        }

        /// The quantile of `perMille` (990: p99): its bucket's upper bound,
        /// capped by the max. Integer ranks: no rounding of 0.99 x n.
        func quantile(perMille: UInt64) -> UInt64 {
            guard calls > 0 else { return 0 }
            let rank = max(1, (min(calls, UInt64.max / 1000) * perMille + 999) / 1000)
            var seen: UInt64 = 0
            for (i, n) in histogram.enumerated() where n > 0 {
                seen += UInt64(n)
                if seen >= rank { return min(LatencyWindow.upperBound(i), maxNs) }
            }
            return maxNs
        }

        mutating func reset(start: UInt64) {
            self.start = start
            calls = 0
            maxNs = 0
            maxPid = 0
            maxTid = 0
            maxComm = ""
            for i in histogram.indices { histogram[i] = 0 }
        }
    }

    public struct ErrorWindow: Codable, Equatable, Sendable {
        public var start: UInt64?
        public var calls: UInt64 = 0
        public var errors: UInt64 = 0
        /// The window's first failed call: its value, process and thread.
        public var firstValue: Int64 = 0
        public var firstPid: UInt32 = 0
        public var firstTid: UInt32 = 0
        public var firstComm = ""

        mutating func reset(start: UInt64) { self = ErrorWindow(start: start) }
    }

    public struct Beat: Codable, Equatable, Sendable {
        public var last: UInt64
        public var tid: UInt32
        public var comm: String
        public var episode = EpisodeState()
    }

    /// One judgement's episode: open from its first deviation until
    /// `hold_down` passed without one.
    public struct EpisodeState: Codable, Equatable, Sendable {
        public var open = false
        public var critical = false
        public var startedAt: UInt64 = 0
        public var lastBadAt: UInt64 = 0
        public var deviations: UInt64 = 0

        enum Decision { case open, escalate, suppress }

        mutating func deviation(at ts: UInt64, critical: Bool, holdDownNs: UInt64) -> Decision {
            if open, !(ts >= lastBadAt && ts - lastBadAt >= holdDownNs) {
                lastBadAt = max(lastBadAt, ts)
                deviations += 1
                if critical, !self.critical {
                    self.critical = true
                    return .escalate
                }
                return .suppress
            }
            self = EpisodeState(open: true, critical: critical, startedAt: ts, lastBadAt: ts, deviations: 1)
            return .open
        }

        mutating func closeIfQuiet(at now: UInt64, holdDownNs: UInt64) {
            if open, now >= lastBadAt, now - lastBadAt >= holdDownNs { self = EpisodeState() }
        }
    }

    // MARK: Events

    public func observe(_ event: Event, context: DetectorContext) {
        if let r = event.as(ProbeRecord.self) {
            guard let i = index[r.probeId] else { return }
            observe(r, check: i, event: event, context: context)
        } else if let x = event.as(ExitRecord.self), x.isGroupExit {
            exited(event.pid, record: x, context: context)
        }
    }

    private func observe(_ r: ProbeRecord, check i: Int, event: Event, context: DetectorContext) {
        let check = checks[i]
        if let p = check.pid, p != event.pid { return }
        if let c = check.comm, context.processes.comm(event.pid) != c { return }
        // Calls are counted in the window in which they arrive (event time
        // `now`): a return's timestamp is its entry, which may be earlier.
        let now = context.now
        if let l = check.latency, !r.isUSDT, !r.missedEntry {
            if state.checks[i].latency.start == nil { state.checks[i].latency.reset(start: now - now % l.windowNs) }
            let ns = r.latencyNs
            state.checks[i].latency.calls += 1
            state.checks[i].latency.histogram[LatencyWindow.bucket(ns)] &+= 1
            if ns > state.checks[i].latency.maxNs || state.checks[i].latency.calls == 1 {
                state.checks[i].latency.maxNs = ns
                state.checks[i].latency.maxPid = event.pid
                state.checks[i].latency.maxTid = event.tid
                state.checks[i].latency.maxComm = context.processes.comm(event.pid)
            }
        }
        if let e = check.errors, !(r.missedEntry && e.when.operand != .ret) {
            if state.checks[i].errors.start == nil { state.checks[i].errors.reset(start: now - now % e.windowNs) }
            state.checks[i].errors.calls += 1
            let v = e.when.operandValue(r)
            if e.when.matches(v) {
                state.checks[i].errors.errors += 1
                if state.checks[i].errors.errors == 1 {
                    state.checks[i].errors.firstValue = v
                    state.checks[i].errors.firstPid = event.pid
                    state.checks[i].errors.firstTid = event.tid
                    state.checks[i].errors.firstComm = context.processes.comm(event.pid)
                }
            }
        }
        if check.heartbeat != nil {
            let ts = max(event.timestamp, state.checks[i].beats[event.pid]?.last ?? 0)
            if state.checks[i].beats[event.pid] == nil {
                state.checks[i].beats[event.pid] = Beat(last: ts, tid: event.tid, comm: context.processes.comm(event.pid))
            } else {
                state.checks[i].beats[event.pid]!.last = ts
                state.checks[i].beats[event.pid]!.tid = event.tid
            }
        }
        if let a = check.argument, !r.missedEntry {
            let v = a.operandValue(r)
            if a.matches(v) {
                switch state.checks[i].argumentEpisode.deviation(at: now, critical: false, holdDownNs: holdDownNs) {
                case .open:
                    context.emit(Finding(
                        ts: event.timestamp, detector: name, severity: .warning, pid: event.pid, tid: event.tid,
                        comm: context.processes.comm(event.pid),
                        summary: "health check '\(check.name)': \(a) (it is \(v)) in \(context.processes.comm(event.pid))[\(event.pid)] at \(check.target)",
                        evidence: .object(base(check) + [("judgement", .string("argument")), ("condition", .string(a.description)), ("value", .int(v))])))
                case .escalate, .suppress: break
                }
            }
        }
    }

    /// A process is gone: its heartbeats stop being expected; an exit that
    /// is not a clean one is said.
    private func exited(_ pid: UInt32, record x: ExitRecord, context: DetectorContext) {
        for (i, check) in checks.enumerated() {
            guard let h = check.heartbeat, let beat = state.checks[i].beats.removeValue(forKey: pid) else { continue }
            guard x.status != 0 else { continue }
            let how = x.exitSignal != 0 ? "was killed by signal \(x.exitSignal)" : "exited with code \(x.exitCode)"
            let since = context.now >= beat.last ? context.now - beat.last : 0
            context.emit(Finding(
                ts: context.now, detector: name, severity: .warning, pid: pid, tid: pid, comm: context.processes.comm(pid),
                summary: "health check '\(check.name)' stopped: \(context.processes.comm(pid))[\(pid)] \(how) \(formatDuration(since)) after its last call (heartbeat every \(formatDuration(h.everyNs)))",
                evidence: .object(base(check) + [("judgement", .string("heartbeat")), ("state", .string("stopped")),
                                                ("exit_code", .int(Int64(x.exitCode))), ("signal", .int(Int64(x.exitSignal))),
                                                ("since_last_ns", .uint(since)), ("every_ns", .uint(h.everyNs))])))
        }
    }

    // MARK: Time

    public func tick(boundary: UInt64, context: DetectorContext) {
        judge(at: boundary, final: false, context: context)
    }

    public func finish(context: DetectorContext) {
        judge(at: context.now, final: true, context: context)
    }

    /// Closes the windows that ended by `now` (at the end: every window with
    /// calls), judges heartbeats, and ends quiet episodes.
    private func judge(at now: UInt64, final: Bool, context: DetectorContext) {
        for (i, check) in checks.enumerated() {
            if let l = check.latency, let start = state.checks[i].latency.start, final || now >= start.addingClamped(l.windowNs) {
                judgeLatency(i, l, end: now, context: context)
                state.checks[i].latency.reset(start: now - now % l.windowNs)
            }
            if let e = check.errors, let start = state.checks[i].errors.start, final || now >= start.addingClamped(e.windowNs) {
                judgeErrors(i, e, end: now, context: context)
                state.checks[i].errors.reset(start: now - now % e.windowNs)
            }
            if let h = check.heartbeat, !state.checks[i].beats.isEmpty {
                for pid in state.checks[i].beats.keys.sorted() {
                    judgeBeat(i, h, pid: pid, now: now, context: context)
                }
            }
            state.checks[i].latencyEpisode.closeIfQuiet(at: now, holdDownNs: holdDownNs)
            state.checks[i].errorEpisode.closeIfQuiet(at: now, holdDownNs: holdDownNs)
            state.checks[i].argumentEpisode.closeIfQuiet(at: now, holdDownNs: holdDownNs)
        }
    }

    private func judgeLatency(_ i: Int, _ l: HealthCheck.Latency, end: UInt64, context: DetectorContext) {
        let w = state.checks[i].latency
        guard w.calls >= max(l.minCalls, 1) else { return }
        let value = l.statistic == .max ? w.maxNs : w.quantile(perMille: 990)
        // The limit: the fixed one, or the baseline's, whichever is lower.
        var limit = l.aboveNs
        var baselineNs: UInt64?
        if let factor = l.baseline {
            let history = state.checks[i].baselineHistory
            if history.count >= baselineWindows {
                let b = history.sorted()[history.count / 2]
                baselineNs = b
                let scaled = max(UInt64(min(Double(b) * factor, 1.8e19)), baselineFloorNs)
                limit = min(limit ?? .max, scaled)
            }
        }
        guard let limit, value > limit else {
            if l.baseline != nil {
                state.checks[i].baselineHistory.append(value)
                if state.checks[i].baselineHistory.count > 16 { state.checks[i].baselineHistory.removeFirst() }
            }
            return
        }
        let critical = Double(value) >= Double(limit) * criticalTimes
        let decision = state.checks[i].latencyEpisode.deviation(at: end, critical: critical, holdDownNs: holdDownNs)
        guard decision != .suppress else { return }
        let check = checks[i], comm = w.maxComm
        let against = baselineNs.map { " (\(l.baseline.map { String(format3: $0).trimmingTrailingZeros() } ?? "")x its baseline \(formatDuration($0)))" } ?? ""
        context.emit(Finding(
            ts: end, detector: name, severity: critical ? .critical : .warning, pid: w.maxPid, tid: w.maxTid, comm: comm,
            summary: "health check '\(check.name)' is slow: \(l.statistic.rawValue) latency \(formatDuration(value)) over \(w.calls) calls in \(formatDuration(l.windowNs)) is over its limit \(formatDuration(limit))\(against); slowest \(formatDuration(w.maxNs)) in \(comm)[\(w.maxPid)]",
            evidence: .object(base(check) + [("judgement", .string("latency")), ("statistic", .string(l.statistic.rawValue)),
                                            ("value_ns", .uint(value)), ("limit_ns", .uint(limit))]
                              + (baselineNs.map { [("baseline_ns", .uint($0))] } ?? [])
                              + [("calls", .uint(w.calls)), ("max_ns", .uint(w.maxNs)), ("window_ns", .uint(l.windowNs))])))
    }

    private func judgeErrors(_ i: Int, _ e: HealthCheck.Errors, end: UInt64, context: DetectorContext) {
        let w = state.checks[i].errors
        guard w.calls >= max(e.minCalls, 1), w.errors > 0 else { return }
        let share = Double(w.errors) / Double(w.calls)
        guard share >= e.rate else { return }
        let critical = share >= min(1, e.rate * criticalTimes)
        let decision = state.checks[i].errorEpisode.deviation(at: end, critical: critical, holdDownNs: holdDownNs)
        guard decision != .suppress else { return }
        let check = checks[i], comm = w.firstComm
        let percent = { (r: Double) in String(format3: r * 100).trimmingTrailingZeros() + "%" }
        context.emit(Finding(
            ts: end, detector: name, severity: critical ? .critical : .warning, pid: w.firstPid, tid: w.firstTid, comm: comm,
            summary: "health check '\(check.name)' is failing: \(w.errors) of \(w.calls) calls (\(percent(share))) matched \(e.when) in \(formatDuration(e.windowNs)), limit \(percent(e.rate)); first \(w.firstValue) in \(comm)[\(w.firstPid)]",
            evidence: .object(base(check) + [("judgement", .string("errors")), ("condition", .string(e.when.description)),
                                            ("calls", .uint(w.calls)), ("errors", .uint(w.errors)), ("share", .double(share)),
                                            ("rate", .double(e.rate)), ("first_value", .int(w.firstValue)), ("window_ns", .uint(e.windowNs))])))
    }

    private func judgeBeat(_ i: Int, _ h: HealthCheck.Heartbeat, pid: UInt32, now: UInt64, context: DetectorContext) {
        guard var beat = state.checks[i].beats[pid] else { return }
        defer { state.checks[i].beats[pid] = beat }
        beat.episode.closeIfQuiet(at: now, holdDownNs: holdDownNs)
        guard now > beat.last, now - beat.last > h.everyNs else { return }
        let gap = now - beat.last
        let critical = Double(gap) >= Double(h.everyNs) * criticalTimes
        guard beat.episode.deviation(at: now, critical: critical, holdDownNs: holdDownNs) != .suppress else { return }
        let check = checks[i], comm = beat.comm
        context.emit(Finding(
            ts: now, detector: name, severity: critical ? .critical : .warning, pid: pid, tid: beat.tid, comm: comm,
            summary: "health check '\(check.name)' missed its heartbeat: \(comm)[\(pid)] has not called \(check.target) for \(formatDuration(gap)) (expected every \(formatDuration(h.everyNs)))",
            evidence: .object(base(check) + [("judgement", .string("heartbeat")), ("state", .string("missed")),
                                            ("since_last_ns", .uint(gap)), ("every_ns", .uint(h.everyNs)), ("last_call_ts_ns", .uint(beat.last))])))
    }

    private func base(_ check: HealthCheck) -> [(String, JSON)] {
        [("check", .string(check.name)), ("probe_id", .uint(UInt64(check.id))), ("target", .string(check.target.description))]
    }
}

extension HealthDetector: CheckpointedDetector {
    /// The checks' tables are indexed in `checks` order: a state made for
    /// another number of checks, or with a histogram of another size, is refused.
    public func problem(with state: State) -> String? {
        if state.checks.count != checks.count { return "health: \(state.checks.count) checks' state for \(checks.count) checks" }
        for (c, s) in zip(checks, state.checks) where c.latency != nil && s.latency.histogram.count != LatencyWindow.buckets {
            return "health: \(c.name): a latency histogram without \(LatencyWindow.buckets) buckets"
        }
        return nil
    }
}
