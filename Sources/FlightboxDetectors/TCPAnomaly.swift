import FlightboxEvents

/// Network I/O: judges the TCP family per remote endpoint (the `addr:port` a
/// process connected to) and per process.
///
/// - Connects: a `SYN_SENT -> ESTABLISHED` is a success (its latency goes into
///   the endpoint's log2 histogram); a `SYN_SENT -> CLOSE` after a reset was
///   received on that socket is a refusal (ECONNREFUSED); one without a reset
///   that took at least `connect_timeout` timed out; any other is a connect
///   the application gave up on early (counted, not judged).
/// - `failure_burst` refused or timed-out connects to one endpoint in one
///   aligned window are a finding: critical when the endpoint had accepted
///   `min_accepted` connects before and now refuses ("a service stopped
///   accepting connections"), a warning when it times out, or when it was
///   never seen accepting.
/// - `slow_connects` connects in one window that took at least `latency_floor`
///   and landed `buckets_above_p99` log2 buckets above the p99 bucket of the
///   endpoint's own history (after `min_samples` connects) are a warning.
/// - Per process, retransmits per window against the median of its last
///   `baseline_windows` windows (after `warmup_windows`): at least
///   `retransmit_min` and at least `retransmit_ratio` x (median + 1) is a warning.
///
/// Windows are aligned to multiples of `window` in event time (engine ticks);
/// one finding per episode (`EpisodeTracker`, `hold_down`), escalation once.
public final class TCPAnomalyDetector: Detector {
    public let name = "tcp-anomaly"
    public var observedTypes: EventTypeSet { EventTypeSet(.tcp, .exit) }
    public let exclusions: Exclusions
    let windowNs: UInt64
    let holdDownNs: UInt64
    let connectTimeoutNs: UInt64
    let failureBurst: UInt64
    let minAccepted: UInt64
    let minSamples: UInt64
    let latencyFloorNs: UInt64
    let bucketsAbove: Int
    let slowConnects: UInt64
    let warmupWindows: UInt64
    let baselineWindows: Int
    let retransmitMin: UInt64
    let retransmitRatio: Double
    let forgetAfterNs: UInt64

    public static let spec = DetectorSpec(
        name: "tcp-anomaly", family: "tcp",
        judges: "per remote endpoint and process: refused and timed-out connects, connect latency against the endpoint's own history, retransmit rate against the process's baseline",
        parameters: [
            .duration("window", default: 10_000_000_000, range: 1_000_000...3_600_000_000_000,
                      doc: "aligned event-time window in which connect failures, slow connects and retransmits are counted"),
            .duration("hold_down", default: 60_000_000_000, range: 0...86_400_000_000_000,
                      doc: "quiet time after which an episode is over and the next deviation is reported again"),
            .duration("connect_timeout", default: 1_000_000_000, range: 1_000_000...3_600_000_000_000,
                      doc: "a connect closed in SYN_SENT without a reset after at least this long timed out"),
            .count("failure_burst", default: 5, range: 1...1_000_000,
                   doc: "refused or timed-out connects to one endpoint in one window that make a finding"),
            .count("min_accepted", default: 3, range: 1...1_000_000_000,
                   doc: "successful connects before an endpoint counts as one that used to accept"),
            .count("min_samples", default: 32, range: 1...1_000_000_000,
                   doc: "successful connects to an endpoint learned before its connect latency is judged"),
            .duration("latency_floor", default: 10_000_000, range: 0...3_600_000_000_000,
                      doc: "a connect faster than this is never slow, whatever the endpoint's baseline"),
            .count("buckets_above_p99", default: 3, range: 1...63,
                   doc: "log2 buckets above the endpoint's p99 connect-latency bucket that make a slow connect (3: at least 4x)"),
            .count("slow_connects", default: 3, range: 1...1_000_000,
                   doc: "slow connects to one endpoint in one window that make a finding"),
            .count("warmup_windows", default: 6, range: 1...100_000,
                   doc: "windows of a process's TCP activity before its retransmit rate is judged"),
            .count("baseline_windows", default: 30, range: 1...10_000,
                   doc: "past windows whose median retransmit count is a process's baseline"),
            .count("retransmit_min", default: 20, range: 1...1_000_000_000,
                   doc: "retransmits in one window below which a process is never flagged"),
            .ratio("retransmit_ratio", default: 4.0, range: 1.0...1_000_000.0,
                   doc: "retransmits in one window at least this times (baseline median + 1) are a jump"),
            .duration("forget_after", default: 3_600_000_000_000, range: 1_000_000_000...31_536_000_000_000_000,
                      doc: "an endpoint or process without TCP activity this long is forgotten (bounds memory; its baseline is learned again)"),
        ],
        make: { TCPAnomalyDetector(settings: $0) }
    )

    /// With the declared defaults.
    public convenience init() { self.init(settings: TCPAnomalyDetector.spec.defaults) }

    public init(settings: DetectorSettings) {
        windowNs = max(settings.duration("window"), 1)
        holdDownNs = settings.duration("hold_down")
        connectTimeoutNs = settings.duration("connect_timeout")
        failureBurst = settings.count("failure_burst")
        minAccepted = settings.count("min_accepted")
        minSamples = settings.count("min_samples")
        latencyFloorNs = settings.duration("latency_floor")
        bucketsAbove = Int(settings.count("buckets_above_p99"))
        slowConnects = settings.count("slow_connects")
        warmupWindows = settings.count("warmup_windows")
        baselineWindows = Int(settings.count("baseline_windows"))
        retransmitMin = settings.count("retransmit_min")
        retransmitRatio = settings.ratio("retransmit_ratio")
        forgetAfterNs = settings.duration("forget_after")
        exclusions = settings.exclude
        episodes = EpisodeTracker(holdDownNs: holdDownNs)
    }

    public var tickPeriodNs: UInt64? { windowNs }

    // TCP states (include/net/tcp_states.h).
    static let established: UInt8 = 1, synSent: UInt8 = 2, close: UInt8 = 7
    /// A refused connect's reset and its close are this close in time, at most.
    static let resetPairingNs: UInt64 = 1_000_000

    /// Connect outcomes counted in one window.
    struct Counts: Equatable, Codable {
        var ok: UInt64 = 0
        var refused: UInt64 = 0
        var timedOut: UInt64 = 0
        var aborted: UInt64 = 0
        var slow: UInt64 = 0
        var resetsReceived: UInt64 = 0
        var resetsSent: UInt64 = 0
        var retransmits: UInt64 = 0

        var failures: UInt64 { refused + timedOut }

        var json: JSON {
            .object([
                ("connects_ok", .uint(ok)), ("refused", .uint(refused)), ("timed_out", .uint(timedOut)),
                ("aborted", .uint(aborted)), ("slow", .uint(slow)), ("resets_received", .uint(resetsReceived)),
                ("resets_sent", .uint(resetsSent)), ("retransmits", .uint(retransmits)),
            ])
        }
    }

    struct Endpoint: Codable {
        let name: String
        let excluded: Bool
        var lastActiveAt: UInt64 = 0
        var hist = Log2Histogram()
        /// Successful connects ever seen (before this window included).
        var accepted: UInt64 = 0
        var lastAcceptedAt: UInt64?
        var current = Counts()
        var previous = Counts()
        /// pid -> failed (or slow) connects in this window, to name the processes.
        var failingPids: [UInt32: UInt64] = [:]
        var slowPids: [UInt32: UInt64] = [:]
        /// Already judged in this window.
        var failureReported = false
        var slowReported = false

        mutating func closeWindow() {
            guard current != Counts() || !failingPids.isEmpty || previous != Counts() else { return }
            previous = current
            current = Counts()
            if !failingPids.isEmpty { failingPids = [:] }
            if !slowPids.isEmpty { slowPids = [:] }
            failureReported = false
            slowReported = false
        }
    }

    struct Process: Codable {
        var lastActiveAt: UInt64 = 0
        var windows: UInt64 = 0
        var current: UInt64 = 0
        var history: [UInt64] = []
        var reported = false
        /// endpoint -> retransmits in this window.
        var remotes: [EndpointKey: UInt64] = [:]

        mutating func closeWindow(keeping n: Int) {
            history.append(current)
            if history.count > n { history.removeFirst(history.count - n) }
            windows += 1
            current = 0
            reported = false
            if !remotes.isEmpty { remotes = [:] }
        }
    }

    /// A connect in progress: (owner, endpoint). Not the local port: the
    /// kernel has released it by the time a failed connect's CLOSE is seen.
    struct SocketKey: Hashable, Comparable, Codable {
        let pid: UInt32
        let endpoint: EndpointKey
        static func < (a: SocketKey, b: SocketKey) -> Bool { (a.pid, a.endpoint) < (b.pid, b.endpoint) }
    }

    /// What an episode is about, ordered for stable output.
    struct EpisodeKey: Hashable, Comparable, Codable {
        let kind: String
        let subject: String
        let pid: UInt32
        static func < (a: EpisodeKey, b: EpisodeKey) -> Bool {
            (a.kind, a.subject, a.pid) < (b.kind, b.subject, b.pid)
        }
    }

    /// Never iterated for output, only in `tick`, whose work does not depend on order.
    private var endpoints: [EndpointKey: Endpoint] = [:]
    private var processes: [UInt32: Process] = [:]
    /// Sockets that received a reset while connecting (consumed by their close).
    private var resetWhileConnecting: [SocketKey: UInt64] = [:]
    private var episodes: EpisodeTracker<EpisodeKey>
    private var windowStart: UInt64?

    /// A remote endpoint as the record has it: cheap to hash, named only when needed.
    struct EndpointKey: Hashable, Comparable, Codable {
        let w0: UInt64, w1: UInt64
        let port: UInt16, family: UInt16

        static func < (a: EndpointKey, b: EndpointKey) -> Bool { (a.w0, a.w1, a.port, a.family) < (b.w0, b.w1, b.port, b.family) }

        init(_ r: TCPRecord) {
            w0 = r.daddr.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
            w1 = r.daddr.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
            port = r.dport
            family = r.family
        }

        /// "127.0.0.1:5432", "[0:0:0:0:0:0:0:1]:80"; IPv4-mapped IPv6 addresses as IPv4.
        var name: String {
            var d = [UInt8](repeating: 0, count: 16)
            withUnsafeBytes(of: w0) { for i in 0..<8 { d[i] = $0[i] } }
            withUnsafeBytes(of: w1) { for i in 0..<8 { d[8 + i] = $0[i] } }
            if family == 10 {
                if d[0..<10].allSatisfy({ $0 == 0 }), d[10] == 0xff, d[11] == 0xff {
                    return "\(d[12]).\(d[13]).\(d[14]).\(d[15]):\(port)"
                }
                let groups = stride(from: 0, to: 16, by: 2).map { String(UInt16(d[$0]) << 8 | UInt16(d[$0 + 1]), radix: 16) }
                return "[\(groups.joined(separator: ":"))]:\(port)"
            }
            return "\(d[0]).\(d[1]).\(d[2]).\(d[3]):\(port)"
        }
    }

    public func observe(_ e: Event, context: DetectorContext) {
        let r: TCPRecord
        switch e.payload {
        case .tcp(let t):
            r = t
        case .exit(let x) where x.isGroupExit:
            processes[e.pid] = nil
            return
        default:
            return
        }
        if windowStart == nil { windowStart = e.timestamp - e.timestamp % windowNs }
        if processes[e.pid] == nil { processes[e.pid] = Process() }
        processes[e.pid]!.lastActiveAt = max(processes[e.pid]!.lastActiveAt, e.timestamp)
        let name = EndpointKey(r)
        switch r.kind {
        case 1:
            guard r.oldstate == TCPAnomalyDetector.synSent else { return }
            connectEnded(r, endpoint: name, e, context: context)
        case 2:
            processes[e.pid]!.current += 1
            processes[e.pid]!.remotes[name, default: 0] += 1
            endpoints[name]?.current.retransmits += 1
            judgeRetransmits(e, context: context)
        case 3:
            endpoints[name]?.current.resetsSent += 1
        case 4:
            // Remembered for the close that follows in SYN_SENT (a refusal);
            // a reset on an established connection is only counted.
            resetWhileConnecting[SocketKey(pid: e.pid, endpoint: name)] = e.timestamp
            endpoints[name]?.current.resetsReceived += 1
        default:
            return
        }
    }

    static func newEndpoint(_ name: String, _ exclusions: Exclusions) -> Endpoint {
        Endpoint(name: name, excluded: exclusions.excludes(endpoint: name))
    }

    private func connectEnded(_ r: TCPRecord, endpoint name: EndpointKey, _ e: Event, context: DetectorContext) {
        let sock = SocketKey(pid: e.pid, endpoint: name)
        // The kernel traces the reset and then the close in one go (tcp_reset,
        // tcp_done): a reset more than 1 ms away was another connection's.
        var reset = false
        if let t = resetWhileConnecting.removeValue(forKey: sock) {
            reset = (e.timestamp >= t ? e.timestamp - t : t - e.timestamp) <= TCPAnomalyDetector.resetPairingNs
        }
        // Out of the table while it changes, so its histogram is not copied.
        let known = endpoints.removeValue(forKey: name)
        let isNew = known == nil
        var ep = known ?? TCPAnomalyDetector.newEndpoint(name.name, exclusions)
        ep.lastActiveAt = max(ep.lastActiveAt, e.timestamp)
        defer { endpoints[name] = ep }
        if ep.excluded { return }
        // The reset came before the endpoint was known: count it now.
        if isNew, reset { ep.current.resetsReceived += 1 }
        let d = r.latencyNs
        if r.newstate == TCPAnomalyDetector.established {
            var slow = false
            if ep.hist.total >= minSamples, d >= latencyFloorNs {
                let p99 = ep.hist.quantileBucket(0.99)
                slow = Log2Histogram.bucket(d) >= p99 + bucketsAbove
            }
            if slow {
                ep.current.slow += 1
                ep.slowPids[e.pid, default: 0] += 1
                if ep.current.slow >= slowConnects, !ep.slowReported {
                    ep.slowReported = true
                    reportSlow(ep, name: ep.name, latency: d, e, context: context)
                }
            }
            // Slow connects are not learned: a handful of them would otherwise
            // move the p99 they are judged against (a lasting shift stays one episode).
            if !slow { ep.hist.add(d) }
            ep.current.ok += 1
            ep.accepted += 1
            ep.lastAcceptedAt = e.timestamp
            return
        }
        guard r.newstate == TCPAnomalyDetector.close else { return }
        if reset {
            ep.current.refused += 1
        } else if d >= connectTimeoutNs {
            ep.current.timedOut += 1
        } else {
            ep.current.aborted += 1
            return
        }
        ep.failingPids[e.pid, default: 0] += 1
        if ep.current.failures >= failureBurst, !ep.failureReported {
            ep.failureReported = true
            reportFailures(ep, name: ep.name, e, context: context)
        }
    }

    /// The pids of `counts` by count (most first), then pid.
    static func top(_ counts: [UInt32: UInt64]) -> [(pid: UInt32, count: UInt64)] {
        counts.map { (pid: $0.key, count: $0.value) }.sorted { $0.count != $1.count ? $0.count > $1.count : $0.pid < $1.pid }
    }

    private func processesJSON(_ counts: [UInt32: UInt64], context: DetectorContext) -> JSON {
        .array(TCPAnomalyDetector.top(counts).prefix(5).map {
            .object([("pid", .uint(UInt64($0.pid))), ("comm", .string(context.processes.comm($0.pid))), ("count", .uint($0.count))])
        })
    }

    /// Reports or suppresses through the episode tracker; returns the decision.
    private func decide(_ key: EpisodeKey, at ts: UInt64, severity: Severity) -> (EpisodeTracker<EpisodeKey>.Decision, UInt64) {
        let d = episodes.observe(key, at: ts, severity: severity)
        return (d, episodes.episode(key)?.startedAt ?? ts)
    }

    private func episodeJSON(_ d: EpisodeTracker<EpisodeKey>.Decision, start: UInt64) -> [(String, JSON)] {
        var out: [(String, JSON)] = [("episode_start_ns", .uint(start))]
        if case .escalate(let from) = d { out.append(("escalated_from", .string(from.rawValue))) }
        return out
    }

    private func reportFailures(_ ep: Endpoint, name: String, _ e: Event, context: DetectorContext) {
        // Mostly refusals: nothing listens there any more.
        let refusal = ep.current.refused > 0 && ep.current.refused * 2 >= ep.current.failures
        let usedToAccept = ep.accepted >= minAccepted
        let severity: Severity = usedToAccept && refusal ? .critical : .warning
        let key = EpisodeKey(kind: "connect-failures", subject: name, pid: 0)
        let (decision, start) = decide(key, at: e.timestamp, severity: severity)
        if decision == .suppress { return }
        let who = TCPAnomalyDetector.top(ep.failingPids).first ?? (pid: e.pid, count: 0)
        let comm = context.processes.comm(who.pid)
        let c = ep.current
        let what = c.refused > 0 && c.timedOut > 0 ? "\(c.refused) refused and \(c.timedOut) timed-out connects"
            : c.refused > 0 ? "\(c.refused) refused connects" : "\(c.timedOut) timed-out connects"
        let summary: String
        if usedToAccept && refusal {
            summary = "\(name) stopped accepting connections: \(what) from \(comm) (pid \(who.pid)) after \(ep.accepted) successful ones (\(SettingValue.durationText(windowNs)) window)"
        } else if usedToAccept {
            summary = "connects to \(name) are failing: \(what) from \(comm) (pid \(who.pid)) after \(ep.accepted) successful ones (\(SettingValue.durationText(windowNs)) window)"
        } else {
            summary = "\(what) from \(comm) (pid \(who.pid)) to \(name), never seen accepting (\(SettingValue.durationText(windowNs)) window)"
        }
        var ev: [(String, JSON)] = [
            ("endpoint", .string(name)), ("kind", .string(usedToAccept && refusal ? "stopped-accepting" : usedToAccept ? "connect-failures" : "never-accepted")),
            ("window_ns", .uint(windowNs)), ("window_start_ns", .uint(windowStart ?? 0)),
            ("before", ep.previous.json), ("after", c.json),
            ("accepted_total", .uint(ep.accepted)),
        ]
        if let last = ep.lastAcceptedAt { ev.append(("last_accepted_ns", .uint(last))) }
        ev.append(("baseline_connect_p50_le_ns", .uint(ep.hist.total > 0 ? Log2Histogram.upperBound(ep.hist.quantileBucket(0.5)) : 0)))
        ev.append(("processes", processesJSON(ep.failingPids, context: context)))
        ev += episodeJSON(decision, start: start)
        context.emit(Finding(ts: e.timestamp, detector: self.name, severity: severity,
                             pid: who.pid, tid: who.pid == e.pid ? e.tid : who.pid, comm: comm, summary: summary, evidence: .object(ev)))
    }

    private func reportSlow(_ ep: Endpoint, name: String, latency d: UInt64, _ e: Event, context: DetectorContext) {
        let key = EpisodeKey(kind: "connect-latency", subject: name, pid: 0)
        let (decision, start) = decide(key, at: e.timestamp, severity: .warning)
        if decision == .suppress { return }
        let who = TCPAnomalyDetector.top(ep.slowPids).first ?? (pid: e.pid, count: 0)
        let comm = context.processes.comm(who.pid)
        let p99 = Log2Histogram.upperBound(ep.hist.quantileBucket(0.99))
        let p50 = Log2Histogram.upperBound(ep.hist.quantileBucket(0.5))
        var ev: [(String, JSON)] = [
            ("endpoint", .string(name)), ("kind", .string("slow-connects")),
            ("latency_ns", .uint(d)), ("slow_connects", .uint(ep.current.slow)),
            ("baseline_samples", .uint(ep.hist.total)), ("baseline_p50_le_ns", .uint(p50)), ("baseline_p99_le_ns", .uint(p99)),
            ("window_ns", .uint(windowNs)), ("window_start_ns", .uint(windowStart ?? 0)),
            ("before", ep.previous.json), ("after", ep.current.json), ("histogram", ep.hist.json),
            ("processes", processesJSON(ep.slowPids, context: context)),
        ]
        ev += episodeJSON(decision, start: start)
        context.emit(Finding(ts: e.timestamp, detector: self.name, severity: .warning, pid: who.pid,
                             tid: who.pid == e.pid ? e.tid : who.pid, comm: comm,
                             summary: "\(ep.current.slow) connects from \(comm) (pid \(who.pid)) to \(name) took up to \(formatDuration(d)) (\(SettingValue.durationText(windowNs)) window), against a p99 of <= \(formatDuration(p99)) over \(ep.hist.total) connects",
                             evidence: .object(ev)))
    }

    /// The median of a window history (the lower middle of an even count).
    static func median(_ h: [UInt64]) -> UInt64 {
        guard !h.isEmpty else { return 0 }
        let s = h.sorted()
        return s[(s.count - 1) / 2]
    }

    private func judgeRetransmits(_ e: Event, context: DetectorContext) {
        guard var p = processes[e.pid], !p.reported, p.windows >= warmupWindows, p.current >= retransmitMin else { return }
        let median = TCPAnomalyDetector.median(p.history)
        guard Double(p.current) >= retransmitRatio * Double(median + 1) else { return }
        p.reported = true
        processes[e.pid] = p
        let key = EpisodeKey(kind: "retransmits", subject: "", pid: e.pid)
        let (decision, start) = decide(key, at: e.timestamp, severity: .warning)
        if decision == .suppress { return }
        let comm = context.processes.comm(e.pid)
        let remotes = p.remotes.map { (endpoint: $0.key.name, count: $0.value) }
            .sorted { $0.count != $1.count ? $0.count > $1.count : $0.endpoint < $1.endpoint }.prefix(5)
        let ev: [(String, JSON)] = [
            ("kind", .string("retransmit-jump")), ("retransmits", .uint(p.current)),
            ("baseline_median", .uint(median)), ("baseline_windows", .uint(UInt64(p.history.count))),
            ("window_ns", .uint(windowNs)), ("window_start_ns", .uint(windowStart ?? 0)),
            ("before", .uint(p.history.last ?? 0)), ("after", .uint(p.current)),
            ("remotes", .array(remotes.map { .object([("endpoint", .string($0.endpoint)), ("count", .uint($0.count))]) })),
        ] + episodeJSON(decision, start: start)
        context.emit(Finding(ts: e.timestamp, detector: self.name, severity: .warning, pid: e.pid, tid: e.tid, comm: comm,
                             summary: "\(comm) (pid \(e.pid)) retransmitted \(p.current) TCP segments in a \(SettingValue.durationText(windowNs)) window, against a median of \(median) per window over the last \(p.history.count)",
                             evidence: .object(ev)))
    }

    /// Closes the window ending at `boundary`: order-independent bookkeeping only.
    public func tick(boundary: UInt64, context: DetectorContext) {
        windowStart = boundary
        for i in endpoints.values.indices {
            endpoints.values[i].closeWindow()
        }
        for i in processes.values.indices {
            processes.values[i].closeWindow(keeping: baselineWindows)
        }
        // Forget what has been idle for forget_after (each entry on its own: order-free).
        if boundary >= forgetAfterNs {
            let cutoff = boundary - forgetAfterNs
            if endpoints.values.contains(where: { $0.lastActiveAt < cutoff }) {
                endpoints = endpoints.filter { $0.value.lastActiveAt >= cutoff }
            }
            if processes.values.contains(where: { $0.lastActiveAt < cutoff }) {
                processes = processes.filter { $0.value.lastActiveAt >= cutoff }
            }
        }
        // A reset whose close never came (an established connection's) is
        // forgotten after a window; a connect's close follows its reset at once.
        let stale = boundary > windowNs ? boundary - windowNs : 0
        resetWhileConnecting = resetWhileConnecting.filter { $0.value >= stale }
        _ = episodes.close(before: boundary)
    }
}

// MARK: Checkpoints

extension TCPAnomalyDetector: CheckpointedDetector {
    public struct State: Codable {
        var endpoints: [EndpointKey: Endpoint]
        var processes: [UInt32: Process]
        var resetWhileConnecting: [SocketKey: UInt64]
        var episodes: EpisodeTracker<EpisodeKey>
        var windowStart: UInt64?
    }

    public var state: State {
        get { State(endpoints: endpoints, processes: processes, resetWhileConnecting: resetWhileConnecting, episodes: episodes, windowStart: windowStart) }
        set {
            endpoints = newValue.endpoints
            processes = newValue.processes
            resetWhileConnecting = newValue.resetWhileConnecting
            episodes = newValue.episodes
            windowStart = newValue.windowStart
        }
    }

    public func problem(with state: State) -> String? {
        state.endpoints.values.contains { $0.hist.counts.count != 64 } ? "tcp-anomaly: a latency histogram without 64 buckets" : nil
    }
}
