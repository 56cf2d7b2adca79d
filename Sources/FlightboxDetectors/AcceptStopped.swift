import FlightboxEvents

/// A service that stopped accepting connections, judged per local listening
/// port from the TCP family, on the server's side and its clients' side.
///
/// - A port's accepts are its listener's completed handshakes
///   (`SYN_RECV -> ESTABLISHED`, attributed to the listener's owner); it
///   accepted steadily once it made `min_accepts` of them in at least
///   `min_active_windows` aligned windows.
/// - Its failed connects are, on the server's side, the SYNs the kernel
///   refused for want of a listener (`refused` records: any client, local or
///   remote); and, on the clients' side when they are on this host, connects
///   to it (the port, on an address the listener was seen on, or loopback)
///   that ended in `SYN_SENT -> CLOSE`: refused when a reset came back (counted
///   only from traces without server-side refusals, so never twice),
///   unanswered when they waited at least `connect_timeout` (a SYN the
///   listener dropped: its accept queue was full).
/// - A port that accepted steadily stopped accepting when, since its last
///   accept (or since its listener closed), at least `failure_burst` connects
///   failed and `grace` passed: its listener closed and did not come back
///   (`listener-closed`), or it is open and accepts nothing
///   (`not-accepting`). Critical: clients are turned away now.
///
/// Not a finding: a quiet port (nobody connects, nothing fails); a restart
/// whose listener is back within `grace`; refusals from ports this host never
/// saw accepting (a scan, or a client of a dead remote service: the security
/// and tcp-anomaly detectors' business).
/// One finding per episode (`hold_down`); the episode ends once the port
/// accepts again and stays quiet, or nothing fails for the hold-down.
public final class AcceptStoppedDetector: Detector {
    public let name = "accept-stopped"
    public var observedTypes: EventTypeSet { EventTypeSet(.tcp) }
    public let exclusions: Exclusions
    let windowNs: UInt64
    let minAccepts: UInt64
    let minActiveWindows: UInt64
    let failureBurst: UInt64
    let graceNs: UInt64
    let connectTimeoutNs: UInt64
    let holdDownNs: UInt64
    let forgetAfterNs: UInt64

    public static let spec = DetectorSpec(
        name: "accept-stopped", family: "tcp",
        judges: "per local listening port: a listener that accepted steadily and now refuses or leaves unanswered the connects clients keep making",
        parameters: [
            .duration("window", default: 5_000_000_000, range: 100_000_000...3_600_000_000_000,
                      doc: "aligned event-time window in which a port's accepts are counted (a steady port accepts in several)"),
            .count("min_accepts", default: 10, range: 1...1_000_000_000,
                   doc: "accepted connections before a port counts as a service that accepts"),
            .count("min_active_windows", default: 2, range: 1...100_000,
                   doc: "windows with at least one accept before a port counts as accepting steadily (not one burst)"),
            .count("failure_burst", default: 5, range: 1...1_000_000,
                   doc: "failed connects to the port since its last accept (or its listener's close) that make a finding"),
            .duration("grace", default: 2_000_000_000, range: 0...3_600_000_000_000,
                      doc: "how long a port may refuse before it is judged: a restart whose listener is back sooner is not a finding"),
            .duration("connect_timeout", default: 1_000_000_000, range: 1_000_000...3_600_000_000_000,
                      doc: "a connect closed in SYN_SENT without a reset after at least this long went unanswered"),
            .duration("hold_down", default: 60_000_000_000, range: 0...86_400_000_000_000,
                      doc: "quiet time after which an episode is over and the next outage is reported again"),
            .duration("forget_after", default: 3_600_000_000_000, range: 1_000_000_000...31_536_000_000_000_000,
                      doc: "a port without TCP activity this long is forgotten (bounds memory; it must accept steadily again to be judged)"),
        ],
        make: { AcceptStoppedDetector(settings: $0) }
    )

    /// With the declared defaults.
    public convenience init() { self.init(settings: AcceptStoppedDetector.spec.defaults) }

    public init(settings: DetectorSettings) {
        windowNs = max(settings.duration("window"), 1)
        minAccepts = settings.count("min_accepts")
        minActiveWindows = settings.count("min_active_windows")
        failureBurst = settings.count("failure_burst")
        graceNs = settings.duration("grace")
        connectTimeoutNs = settings.duration("connect_timeout")
        holdDownNs = settings.duration("hold_down")
        forgetAfterNs = settings.duration("forget_after")
        exclusions = settings.exclude
        episodes = EpisodeTracker(holdDownNs: holdDownNs)
    }

    public var tickPeriodNs: UInt64? { windowNs }

    // TCP states (include/net/tcp_states.h).
    static let established: UInt8 = 1, synSent: UInt8 = 2, synRecv: UInt8 = 3, close: UInt8 = 7, listen: UInt8 = 10
    /// A refused connect's reset and its close are this close in time, at most.
    static let resetPairingNs: UInt64 = 1_000_000

    /// An address as the record has it (16 bytes, IPv4 in the first 4).
    struct Address: Hashable, Codable {
        var w0: UInt64, w1: UInt64

        init(_ p: UnsafeRawBufferPointer) {
            w0 = p.loadUnaligned(fromByteOffset: 0, as: UInt64.self)
            w1 = p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)
        }

        /// 127.0.0.0/8, ::1, or IPv4-mapped 127/8.
        func isLoopback(family: UInt16) -> Bool {
            let b0 = UInt8(truncatingIfNeeded: w0), b12 = UInt8(truncatingIfNeeded: w1 >> 32)
            if family == 2 { return b0 == 127 }
            if w0 == 0, w1 == UInt64(1) << 56 { return true }
            return w0 == 0 && UInt32(truncatingIfNeeded: w1) == 0xffff_0000 && b12 == 127
        }

        var isUnspecified: Bool { w0 == 0 && w1 == 0 }
    }

    /// A local listening port and what is known of it.
    struct Port: Codable {
        var lastActiveAt: UInt64 = 0
        /// Listening sockets open on it (listen seen minus close seen; a
        /// listener older than the trace is known only by its accepts).
        var listeners: Int = 0
        var owner: UInt32 = 0
        var listenedAt: UInt64?
        var closedAt: UInt64?
        var closedBy: UInt32 = 0
        /// Addresses the port was seen on (bound or accepting), at most 8.
        var addresses: [Address] = []
        var accepts: UInt64 = 0
        var activeWindows: UInt64 = 0
        var acceptsThisWindow: UInt64 = 0
        /// Accepts per window over the last windows with any (at most 6), for the evidence.
        var recentWindows: [UInt64] = []
        var lastAcceptAt: UInt64?
        /// Failed connects since the last accept or close.
        var refused: UInt64 = 0
        var unanswered: UInt64 = 0
        var firstFailureAt: UInt64 = 0
        var lastFailureAt: UInt64 = 0
        /// pid -> failed connects, to name the clients on this host.
        var clients: [UInt32: UInt64] = [:]
        /// Remote address -> refused SYNs, for clients seen only from the server's side.
        var remotes: [Remote: UInt64] = [:]

        var failures: UInt64 { refused + unanswered }

        mutating func resetFailures() {
            refused = 0
            unanswered = 0
            firstFailureAt = 0
            lastFailureAt = 0
            if !clients.isEmpty { clients = [:] }
            if !remotes.isEmpty { remotes = [:] }
        }

        mutating func learn(_ a: Address) {
            if a.isUnspecified || addresses.contains(a) || addresses.count >= 8 { return }
            addresses.append(a)
        }
    }

    /// A client's address, as a refused SYN gives it.
    struct Remote: Hashable, Codable {
        var address: Address
        var family: UInt16

        var text: String {
            var b = [UInt8](repeating: 0, count: 16)
            withUnsafeBytes(of: address.w0) { for i in 0..<8 { b[i] = $0[i] } }
            withUnsafeBytes(of: address.w1) { for i in 0..<8 { b[8 + i] = $0[i] } }
            if family == 2 { return b.prefix(4).map(String.init).joined(separator: ".") }
            return stride(from: 0, to: 16, by: 2).map { String(UInt16(b[$0]) << 8 | UInt16(b[$0 + 1]), radix: 16) }.joined(separator: ":")
        }
    }

    /// A client connect in progress that received a reset: (client pid, port).
    struct ResetKey: Hashable, Codable {
        let pid: UInt32
        let port: UInt16
    }

    private var ports: [UInt16: Port] = [:]
    /// pid -> ports it listens on, to name a listener's close in older
    /// captures (whose record has lost its port). Not cleared at a process's
    /// exit: its listeners close after its exit record (files are closed last).
    private var listening: [UInt32: [UInt16]] = [:]
    private var resets: [ResetKey: UInt64] = [:]
    private var episodes: EpisodeTracker<UInt16>
    /// The capture records refused SYNs on the server's side (`refused`
    /// records): clients' refusals are then not counted again.
    private var serverSideRefusals = false

    public func observe(_ e: Event, context: DetectorContext) {
        guard case .tcp(let r) = e.payload else { return }
        switch r.kind {
        case 1: stateChange(r, e, context: context)
        case 4:
            // The reset a refused connect gets, just before its close.
            if !serverSideRefusals, ports[r.dport] != nil { resets[ResetKey(pid: e.pid, port: r.dport)] = e.timestamp }
        case 5:
            serverSideRefusals = true
            refusedSYN(r, e, context: context)
        default: return
        }
    }

    private func stateChange(_ r: TCPRecord, _ e: Event, context: DetectorContext) {
        let old = r.oldstate, new = r.newstate
        if new == AcceptStoppedDetector.listen {
            var p = ports[r.sport] ?? Port()
            p.listeners += 1
            p.owner = e.pid
            p.listenedAt = e.timestamp
            p.closedAt = nil
            // A new listener starts afresh: refusals while it was down are
            // judged only if it stays down past the grace.
            p.resetFailures()
            p.lastActiveAt = max(p.lastActiveAt, e.timestamp)
            p.learn(Address(r.saddr))
            ports[r.sport] = p
            if !(listening[e.pid]?.contains(r.sport) ?? false) { listening[e.pid, default: []].append(r.sport) }
        } else if old == AcceptStoppedDetector.listen, new == AcceptStoppedDetector.close {
            // The kernel has released the port by now: the record's is 0 on
            // older captures; the owner's only listening port names it then.
            var port = r.sport
            if port == 0, let mine = listening[e.pid], mine.count == 1 { port = mine[0] }
            guard port != 0, var p = ports[port] else { return }
            p.listeners = max(p.listeners - 1, 0)
            if p.listeners == 0 {
                p.closedAt = e.timestamp
                p.closedBy = e.pid
                p.resetFailures()
            }
            p.lastActiveAt = max(p.lastActiveAt, e.timestamp)
            ports[port] = p
            listening[e.pid]?.removeAll { $0 == port }
            if listening[e.pid]?.isEmpty == true { listening[e.pid] = nil }
        } else if old == AcceptStoppedDetector.synRecv, new == AcceptStoppedDetector.established {
            accepted(r, e)
        } else if old == AcceptStoppedDetector.synSent, new == AcceptStoppedDetector.close {
            connectFailed(r, e, context: context)
        }
    }

    private func accepted(_ r: TCPRecord, _ e: Event) {
        var p = ports[r.sport] ?? Port()
        p.accepts += 1
        if p.acceptsThisWindow == 0 { p.activeWindows += 1 }
        p.acceptsThisWindow += 1
        p.lastAcceptAt = max(p.lastAcceptAt ?? 0, e.timestamp)
        p.lastActiveAt = max(p.lastActiveAt, e.timestamp)
        if p.owner == 0 { p.owner = e.pid }
        p.learn(Address(r.saddr))
        p.resetFailures()
        ports[r.sport] = p
    }

    /// A SYN to `r.sport` refused by the kernel for want of a listener.
    private func refusedSYN(_ r: TCPRecord, _ e: Event, context: DetectorContext) {
        // Out of the table while it changes, so its dictionaries are not copied.
        guard var p = ports.removeValue(forKey: r.sport) else { return }
        p.refused += 1
        failed(&p, at: e.timestamp)
        p.remotes[Remote(address: Address(r.daddr), family: r.family), default: 0] += 1
        ports[r.sport] = p
        judge(r.sport, at: e.timestamp, context: context)
    }

    private func failed(_ p: inout Port, at ts: UInt64) {
        if p.firstFailureAt == 0 { p.firstFailureAt = ts }
        p.lastFailureAt = max(p.lastFailureAt, ts)
        p.lastActiveAt = max(p.lastActiveAt, ts)
    }

    private func connectFailed(_ r: TCPRecord, _ e: Event, context: DetectorContext) {
        guard var p = ports[r.dport] else { return }
        let daddr = Address(r.daddr)
        // Ours: an address the port was seen on, or loopback when it listens on any.
        guard p.addresses.contains(daddr) || daddr.isLoopback(family: r.family) else { return }
        var refused = false
        if let t = resets.removeValue(forKey: ResetKey(pid: e.pid, port: r.dport)) {
            refused = (e.timestamp >= t ? e.timestamp - t : t - e.timestamp) <= AcceptStoppedDetector.resetPairingNs
        }
        if refused {
            // Counted already from the server's side when the capture has it.
            if serverSideRefusals { return }
            p.refused += 1
        } else if r.latencyNs >= connectTimeoutNs {
            p.unanswered += 1
        } else {
            return
        }
        // The table's copy released, so `p`'s dictionaries are not copied.
        ports[r.dport] = nil
        failed(&p, at: e.timestamp)
        p.clients[e.pid, default: 0] += 1
        ports[r.dport] = p
        judge(r.dport, at: e.timestamp, context: context)
    }

    /// Whether port `port` has stopped accepting at `now`, and the finding if so.
    private func judge(_ port: UInt16, at now: UInt64, context: DetectorContext) {
        guard let p = ports[port], p.accepts >= minAccepts, p.activeWindows >= minActiveWindows,
              p.failures >= failureBurst else { return }
        // Since when it has not accepted: its listener's close, else its last accept.
        let closed = p.listeners == 0 && p.closedAt != nil
        let since = closed ? p.closedAt! : max(p.lastAcceptAt ?? p.firstFailureAt, p.listenedAt ?? 0)
        guard now >= since, now - since >= graceNs else { return }
        let decision = episodes.observe(port, at: now, severity: .critical)
        if decision == .suppress { return }
        let start = episodes.episode(port)?.startedAt ?? now
        let owner = closed ? p.closedBy : p.owner
        let ownerComm = context.processes.comm(owner)
        let clients = p.clients.map { (pid: $0.key, count: $0.value) }
            .sorted { $0.count != $1.count ? $0.count > $1.count : $0.pid < $1.pid }
        let what = p.refused > 0 && p.unanswered > 0 ? "\(p.refused) connects refused and \(p.unanswered) unanswered"
            : p.refused > 0 ? "\(p.refused) connects refused" : "\(p.unanswered) connects unanswered"
        let summary: String
        if closed {
            summary = "port \(port) stopped accepting connections: its listener (\(ownerComm), pid \(owner)) closed \(formatDuration(now - since)) ago and did not come back; \(what) since, after \(p.accepts) accepted"
        } else {
            summary = "port \(port) stopped accepting connections: its listener (\(ownerComm), pid \(owner)) is open but accepted nothing for \(formatDuration(now - since)); \(what) since, after \(p.accepts) accepted"
        }
        var ev: [(String, JSON)] = [
            ("port", .uint(UInt64(port))), ("kind", .string(closed ? "listener-closed" : "not-accepting")),
            ("listener_pid", .uint(UInt64(owner))), ("listener_comm", .string(ownerComm)),
            ("listeners_open", .uint(UInt64(p.listeners))),
            ("accepted_total", .uint(p.accepts)), ("accepting_windows", .uint(p.activeWindows)),
            ("recent_accepts_per_window", .array(p.recentWindows.map { .uint($0) })), ("window_ns", .uint(windowNs)),
            ("refused", .uint(p.refused)), ("unanswered", .uint(p.unanswered)),
            ("first_failure_ns", .uint(p.firstFailureAt)), ("not_accepting_since_ns", .uint(since)),
        ]
        if let a = p.lastAcceptAt { ev.append(("last_accept_ns", .uint(a))) }
        if let c = p.closedAt { ev.append(("listener_closed_ns", .uint(c))) }
        ev.append(("clients", .array(clients.prefix(5).map {
            .object([("pid", .uint(UInt64($0.pid))), ("comm", .string(context.processes.comm($0.pid))), ("count", .uint($0.count))])
        })))
        let remotes = p.remotes.map { (address: $0.key.text, count: $0.value) }
            .sorted { $0.count != $1.count ? $0.count > $1.count : $0.address < $1.address }
        ev.append(("client_addresses", .array(remotes.prefix(5).map {
            .object([("address", .string($0.address)), ("count", .uint($0.count))])
        })))
        ev.append(("episode_start_ns", .uint(start)))
        context.emit(Finding(ts: now, detector: name, severity: .critical, pid: owner, tid: owner, comm: ownerComm,
                             summary: summary, evidence: .object(ev)))
    }

    /// Closes the window: accept counts roll over; ports that refused all
    /// through the grace without a new failure are judged now; idle ports
    /// are forgotten (each on its own: order-free, except the judging, done
    /// in port order).
    public func tick(boundary: UInt64, context: DetectorContext) {
        for i in ports.values.indices where ports.values[i].acceptsThisWindow > 0 {
            ports.values[i].recentWindows.append(ports.values[i].acceptsThisWindow)
            if ports.values[i].recentWindows.count > 6 { ports.values[i].recentWindows.removeFirst() }
            ports.values[i].acceptsThisWindow = 0
        }
        // Clients that gave up within the grace leave no failure to judge at:
        // the window's end judges them (ports in an episode already are).
        for port in ports.keys.sorted() where ports[port]!.failures >= failureBurst && episodes.episode(port) == nil {
            judge(port, at: boundary, context: context)
        }
        if boundary >= forgetAfterNs {
            let cutoff = boundary - forgetAfterNs
            if ports.values.contains(where: { $0.lastActiveAt < cutoff }) {
                ports = ports.filter { $0.value.lastActiveAt >= cutoff }
            }
        }
        // A reset whose close never came (an established connection's) is stale after a window.
        let stale = boundary > windowNs ? boundary - windowNs : 0
        if resets.values.contains(where: { $0 < stale }) { resets = resets.filter { $0.value >= stale } }
        _ = episodes.close(before: boundary)
    }
}

extension AcceptStoppedDetector: CheckpointedDetector {
    public struct State: Codable {
        var ports: [UInt16: Port]
        var listening: [UInt32: [UInt16]]
        var resets: [ResetKey: UInt64]
        var episodes: EpisodeTracker<UInt16>
        var serverSideRefusals: Bool
    }

    public var state: State {
        get { State(ports: ports, listening: listening, resets: resets, episodes: episodes, serverSideRefusals: serverSideRefusals) }
        set {
            ports = newValue.ports
            listening = newValue.listening
            resets = newValue.resets
            episodes = newValue.episodes
            serverSideRefusals = newValue.serverSideRefusals
        }
    }
}
