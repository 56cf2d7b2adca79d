import FlightboxEvents

/// Judges block devices: per device and kind of operation (reads, writes,
/// flushes, discards, other), the latency of the requests completed in an aligned
/// window of event time against the same device's own learned baseline for
/// that operation, and every failed request.
///
/// Latency. Each (device, operation) keeps a log2 histogram of request
/// latencies, as libbpf-tools' biolatency does (bucket i holds [2^i, 2^(i+1)) ns),
/// learned from the windows judged normal, one window late: a window
/// followed by a slow one is not learned (the first window of an episode is
/// often half slow, and must not teach it). A window is slow when it has at
/// least `min_requests` of that operation, its median bucket starts at
/// `factor` times the top of the baseline's p99 bucket or more, and at
/// `min_latency` or more: the typical request of the window is slower than
/// almost every request of the past. Histograms rather than a mean or an
/// EWMA: block latency is multi-modal (cache hits, seeks, queueing) and
/// heavy-tailed, and quantiles of a histogram do not move for a few
/// outliers. The baseline halves its counts when it passes 2^16 requests,
/// so old behaviour fades without a clock. An operation is not judged
/// before `warmup` of event time since the device first did one, nor before
/// its baseline holds `baseline_min` requests.
///
/// Load. A device that is merely busy gets slower too: requests queue
/// behind each other. A window that moved `load_factor` times the device's
/// usual bytes per window (an EWMA over its active windows) while it had,
/// on average, `busy_depth` requests or more in flight (the sum of the
/// window's latencies over its length, Little's law: a saturated device)
/// is busy, not slow, and not judged; it is learned, so a heavier regime
/// becomes normal. A degraded device moves fewer bytes, not more: its
/// callers wait; and a burst that did not keep the device busy is judged.
///
/// Errors. A request completed with a non-zero `blk_status_t` is reported
/// the first time, without warm-up: `critical`; for BLK_STS_NOTSUPP alone a
/// `warning` (a read, write or flush the device does not do), or `info` when
/// only discards and write-zeroes failed (the kernel falls back or stops
/// asking). BLK_STS_AGAIN (a non-blocking submission that would have
/// waited) is normal control flow and ignored.
///
/// Who. A block record names the task that issued the request. Buffered
/// writes are issued by kernel workers (kworker writeback, jbd2 journal,
/// loop …), so when the issuers are kernel workers the finding also names
/// the processes that wrote to file systems on the device in the last
/// `writers_horizon` (the files family's `writes` summaries), or says that
/// the trace does not know them.
///
/// One finding per episode (`EpisodeTracker`, key: device and latency or
/// errors); a latency episode escalates once to `critical` when a window's
/// median reaches `critical_latency`. Deterministic: event time only,
/// aligned windows, devices sorted before anything is emitted.
public final class BlockDetector: Detector {
    public let name = "block"
    public let exclusions: Exclusions
    public let tickPeriodNs: UInt64?
    /// Block requests, the writes summaries that name writeback's writers,
    /// and the gauges that name devices.
    public var observedTypes: EventTypeSet { EventTypeSet(.block, .writes, .gauge) }

    let windowNs: UInt64
    let warmupNs: UInt64
    let baselineMin: UInt64
    let minRequests: UInt64
    let factor: Double
    let minLatencyNs: UInt64
    let criticalLatencyNs: UInt64
    let loadFactor: Double
    let busyDepth: Double
    let holdDownNs: UInt64
    let writersHorizonNs: UInt64
    let topN: Int

    public static let spec = DetectorSpec(
        name: "block", family: "block",
        judges: "a block device's request latency per operation against its own baseline (log2 histograms), and failed requests; names the issuing processes",
        parameters: [
            .duration("window", default: 1_000_000_000, range: 10_000_000...3_600_000_000_000,
                      doc: "aligned event-time window over which a device's requests are judged"),
            .duration("warmup", default: 10_000_000_000, range: 0...86_400_000_000_000,
                      doc: "event time an operation on a device is learned (since the device first did one) before its latency is judged"),
            .count("baseline_min", default: 200, range: 1...100_000_000,
                   doc: "requests the baseline of an operation on a device must hold before its latency is judged"),
            .count("min_requests", default: 8, range: 1...100_000_000,
                   doc: "requests of one operation in one window below which its latency is not judged"),
            .ratio("factor", default: 2, range: 1...1_000_000,
                   doc: "a window is slow when its median bucket starts at this many times the top of the baseline's p99 bucket"),
            .duration("min_latency", default: 1_000_000, range: 0...3_600_000_000_000,
                      doc: "a window whose median bucket starts below this is never slow"),
            .duration("critical_latency", default: 1_000_000_000, range: 1...3_600_000_000_000,
                      doc: "a slow window whose median bucket starts at this or above escalates the episode to critical"),
            .ratio("load_factor", default: 4, range: 1...1_000_000,
                   doc: "a window that moved this many times the device's usual bytes per window, with busy_depth requests in flight, is busy, not slow, and is not judged"),
            .ratio("busy_depth", default: 1, range: 0...1_000_000,
                   doc: "requests in flight on average over a window (its latencies summed over its length) from which a device that moved load_factor times its usual bytes is busy"),
            .duration("hold_down", default: 30_000_000_000, range: 0...86_400_000_000_000,
                      doc: "quiet time after which an episode is over and a new one may be reported"),
            .duration("writers_horizon", default: 30_000_000_000, range: 0...86_400_000_000_000,
                      doc: "how far back writers to a device's file systems are remembered, to name them when kernel workers issued its requests"),
            .count("top", default: 5, range: 1...100,
                   doc: "issuing processes and writers named in a finding"),
        ],
        make: { BlockDetector(settings: $0) }
    )

    /// The operations judged apart: each has its own latency baseline.
    enum Op: Int, CaseIterable, Comparable, Codable {
        case read, write, flush, discard, other

        /// REQ_OP_* to the kind judged: write-zeroes is a write, secure erase
        /// a discard; zone management and driver pass-through (SMART queries,
        /// vendor commands) are other.
        init(_ reqOp: UInt32) {
            switch reqOp {
            case 0: self = .read
            case 1, 9: self = .write
            case 2: self = .flush
            case 3, 5: self = .discard
            default: self = .other
            }
        }

        var label: String { ["read", "write", "flush", "discard", "other"][rawValue] }
        static func < (a: Op, b: Op) -> Bool { a.rawValue < b.rawValue }
    }

    /// What an episode is about: a device, and slowness or failures.
    struct Key: Hashable, Comparable, Codable {
        var dev: UInt32
        var errors: Bool
        static func < (a: Key, b: Key) -> Bool { (a.dev, a.errors ? 1 : 0) < (b.dev, b.errors ? 1 : 0) }
    }

    static let buckets = 64

    /// One operation on one device.
    final class OpState: Codable {
        let firstSeen: UInt64
        var baseline = [UInt64](repeating: 0, count: BlockDetector.buckets)
        var baselineTotal: UInt64 = 0
        var window = [UInt64](repeating: 0, count: BlockDetector.buckets)
        var windowCount: UInt64 = 0
        var windowSum: Double = 0
        var windowMax: UInt64 = 0
        /// The last window judged normal, learned once the next one is too.
        var pending = [UInt64](repeating: 0, count: BlockDetector.buckets)
        var pendingCount: UInt64 = 0

        init(firstSeen: UInt64) { self.firstSeen = firstSeen }

        func resetWindow() {
            if windowCount > 0 { for i in window.indices { window[i] = 0 } }
            windowCount = 0
            windowSum = 0
            windowMax = 0
        }

        /// The window was normal: learns the one before it, and keeps this one
        /// pending. Past 2^16 requests every count of the baseline halves.
        func learn() {
            if pendingCount > 0 {
                for i in pending.indices where pending[i] > 0 { baseline[i] = baseline[i].addingClamped(pending[i]) }
                baselineTotal = baselineTotal.addingClamped(pendingCount)
            }
            for i in window.indices { pending[i] = window[i] } // in place: no copy of the array per window
            pendingCount = windowCount
            if baselineTotal > BlockDetector.baselineCap {
                baselineTotal = 0
                for i in baseline.indices {
                    baseline[i] /= 2
                    baselineTotal += baseline[i]
                }
            }
        }

        /// The window was slow: neither it nor the one before it is learned.
        func forget() {
            pendingCount = 0
        }
    }

    static let baselineCap: UInt64 = 1 << 16

    /// A task that issued requests to a device in the current window.
    struct Issuer: Codable {
        var comm: String
        /// The thread of its first request.
        var tid: UInt32
        var requests: UInt64 = 0
        /// Requests by operation (`Op.rawValue`), to name who issued the slow ones.
        var byOp = SIMD8<UInt64>(repeating: 0)
        var bytes: UInt64 = 0
        var errors: UInt64 = 0

        mutating func add(_ op: Op, bytes n: UInt64, failed: Bool) {
            requests += 1
            byOp[op.rawValue] += 1
            bytes = bytes.addingClamped(n)
            if failed { errors += 1 }
        }
    }

    /// One device.
    final class DeviceState: Codable {
        var ops = [OpState?](repeating: nil, count: Op.allCases.count)
        var windowBytes: UInt64 = 0
        var windowRequests: UInt64 = 0
        /// Latencies of the window summed, in ns: over the window's length, the mean depth.
        var windowLatency: Double = 0
        /// EWMA of bytes per active window, and how many windows taught it.
        var usualBytes: Double = 0
        var learnedWindows: UInt64 = 0
        var issuers: [UInt32: Issuer] = [:]
        /// Failed requests of the window, by blk_status_t and by REQ_OP_*
        /// (write-zeroes told apart from writes: the kernel falls back when
        /// a device does not do it).
        var statuses: [Int32: UInt64] = [:]
        var failedOps: [UInt32: UInt64] = [:]
        var firstErrorTs: UInt64 = .max
        var firstErrorSector: UInt64 = 0
        var firstErrorTid: UInt32 = 0
        var lastErrorSector: UInt64 = 0
    }

    /// A process that wrote to a file system, from the `writes` summaries.
    struct Writer: Codable {
        var comm: String
        var bytes: UInt64
        var lastTs: UInt64

        mutating func add(_ n: UInt64, at ts: UInt64) {
            bytes = bytes.addingClamped(n)
            lastTs = max(lastTs, ts)
        }
    }

    private var devices: [UInt32: DeviceState] = [:]
    /// Devices the configuration excludes.
    private var ignored: Set<UInt32> = []
    /// Device names from the `block_device` gauges, by dev_t.
    private var names: [UInt32: String] = [:]
    /// File-system dev_t -> pid -> what it wrote within the horizon.
    private var writers: [UInt32: [UInt32: Writer]] = [:]
    private var episodes: EpisodeTracker<Key>

    /// EWMA weight of a new window's bytes: 1/8, about the last 8 active windows.
    static let alpha = 0.125

    public convenience init() { self.init(settings: BlockDetector.spec.defaults) }

    public init(settings: DetectorSettings) {
        windowNs = settings.duration("window")
        tickPeriodNs = windowNs
        warmupNs = settings.duration("warmup")
        baselineMin = settings.count("baseline_min")
        minRequests = settings.count("min_requests")
        factor = settings.ratio("factor")
        minLatencyNs = settings.duration("min_latency")
        criticalLatencyNs = settings.duration("critical_latency")
        loadFactor = settings.ratio("load_factor")
        busyDepth = settings.ratio("busy_depth")
        holdDownNs = settings.duration("hold_down")
        writersHorizonNs = settings.duration("writers_horizon")
        topN = Int(settings.count("top"))
        exclusions = settings.exclude
        episodes = EpisodeTracker(holdDownNs: holdDownNs)
    }

    public func observe(_ e: Event, context: DetectorContext) {
        if let b = e.as(BlockRecord.self) {
            record(b, e, context: context)
        } else if let g = e.as(GaugeRecord.self) {
            guard g.gaugeKind == .blockDevice, g.value <= UInt64(UInt32.max) else { return }
            let dev = UInt32(g.value)
            if names[dev] == g.name { return }
            names[dev] = g.name
            // Excluded by the name just learned: forget what was learned under its number.
            if !ignored.contains(dev), excluded(dev) {
                ignored.insert(dev)
                devices[dev] = nil
            }
        } else if let w = e.as(WritesRecord.self), w.bytes > 0, w.fdKindValue == .regular {
            // In place: a copy of the inner dictionary would be made per summary.
            writers[w.dev, default: [:]][e.pid, default: Writer(comm: context.processes.comm(e.pid), bytes: 0, lastTs: 0)]
                .add(w.bytes, at: context.now)
        }
    }

    private func record(_ b: BlockRecord, _ e: Event, context: DetectorContext) {
        let dev = b.dev
        let d: DeviceState
        if let known = devices[dev] {
            d = known
        } else {
            if ignored.contains(dev) { return }
            if excluded(dev) {
                ignored.insert(dev) // decided once: the names are strings
                return
            }
            d = DeviceState()
            devices[dev] = d
        }
        let op = Op(b.op)
        let s: OpState
        if let known = d.ops[op.rawValue] {
            s = known
        } else {
            s = OpState(firstSeen: context.now)
            d.ops[op.rawValue] = s
        }
        let latency = b.latencyNs
        let bytes = UInt64(b.bytes)
        s.window[BlockDetector.bucket(latency)] += 1
        s.windowCount += 1
        s.windowSum += Double(latency)
        s.windowMax = max(s.windowMax, latency)
        d.windowBytes = d.windowBytes.addingClamped(bytes)
        d.windowRequests += 1
        d.windowLatency += Double(latency)
        let status = b.error
        let failed = status != 0 && status != BlockDetector.statusAgain
        // In place; the comm is decoded only for a new issuer.
        d.issuers[e.pid, default: Issuer(comm: b.comm, tid: e.tid)].add(op, bytes: bytes, failed: failed)
        if failed {
            d.statuses[status, default: 0] += 1
            d.failedOps[b.op, default: 0] += 1
            if e.timestamp < d.firstErrorTs {
                d.firstErrorTs = e.timestamp
                d.firstErrorSector = b.sector
                d.firstErrorTid = e.tid
            }
            d.lastErrorSector = b.sector
        }
    }

    /// A device excluded by dev_t ("7:0") or by its name ("loop0").
    private func excluded(_ dev: UInt32) -> Bool {
        guard !exclusions.devices.isEmpty else { return false }
        if exclusions.excludes(device: deviceName(dev)) { return true }
        if let n = name(dev), exclusions.excludes(device: n) { return true }
        return false
    }

    /// The device's name: from the gauges, else from a major number the kernel fixes.
    func name(_ dev: UInt32) -> String? { names[dev] ?? BlockDetector.knownName(dev) }

    /// Bucket of a latency: i for [2^i, 2^(i+1)) ns, 0 for 0.
    static func bucket(_ ns: UInt64) -> Int { ns == 0 ? 0 : 63 - ns.leadingZeroBitCount }
    /// The bounds of bucket i in ns (the top of the last one clamped).
    static func low(_ i: Int) -> UInt64 { i == 0 ? 0 : 1 << UInt64(i) }
    static func high(_ i: Int) -> UInt64 { i >= 63 ? .max : 1 << UInt64(i + 1) }

    /// The bucket where the `q` quantile of `h` (of `total` requests) falls.
    static func quantile(_ h: [UInt64], total: UInt64, _ q: Double) -> Int {
        let rank = max(1, UInt64((Double(total) * q).rounded(.up)))
        var seen: UInt64 = 0
        for (i, c) in h.enumerated() {
            seen = seen.addingClamped(c)
            if seen >= rank { return i }
        }
        return h.count - 1
    }

    public func tick(boundary: UInt64, context: DetectorContext) {
        let start = boundary >= windowNs ? boundary - windowNs : 0
        for dev in devices.keys.sorted() {
            let d = devices[dev]!
            guard d.windowRequests > 0 else { continue }
            judge(dev, d, start: start, end: boundary, context: context)
        }
        _ = episodes.close(before: boundary)
        if !writers.isEmpty {
            let horizon = boundary >= writersHorizonNs ? boundary - writersHorizonNs : 0
            for fs in writers.keys.sorted() {
                let kept = writers[fs]!.filter { $0.value.lastTs >= horizon }
                writers[fs] = kept.isEmpty ? nil : kept
            }
        }
    }

    /// The window in progress when the stream ends is judged as if it had
    /// ended at its aligned boundary: a failure just before the end is not lost.
    public func finish(context: DetectorContext) {
        guard context.now > 0, devices.values.contains(where: { $0.windowRequests > 0 }) else { return }
        let (m, o1) = (context.now / windowNs).addingReportingOverflow(1)
        let (b, o2) = m.multipliedReportingOverflow(by: windowNs)
        tick(boundary: o1 || o2 ? .max : b, context: context)
    }

    /// What one operation's window looked like against its baseline.
    struct Judged {
        var op: Op
        var requests: UInt64
        var p50: Int, p99: Int
        var baseP50: Int, baseP99: Int
        var baselineRequests: UInt64
        var mean: UInt64, max: UInt64
        var slow: UInt64
    }

    private func judge(_ dev: UInt32, _ d: DeviceState, start: UInt64, end: UInt64, context: DetectorContext) {
        let depth = d.windowLatency / Double(windowNs)
        let busy = d.learnedWindows > 0 && Double(d.windowBytes) >= loadFactor * max(d.usualBytes, 1) && depth >= busyDepth
        var slowOps: [Judged] = []
        var critical = false
        for op in Op.allCases {
            guard let s = d.ops[op.rawValue], s.windowCount > 0 else { continue }
            let warm = end >= s.firstSeen && end - s.firstSeen >= warmupNs && s.baselineTotal >= baselineMin
            var isSlow = false
            if warm, s.windowCount >= minRequests {
                let p50 = BlockDetector.quantile(s.window, total: s.windowCount, 0.5)
                let baseP99 = BlockDetector.quantile(s.baseline, total: s.baselineTotal, 0.99)
                let threshold = max(Double(minLatencyNs), factor * Double(BlockDetector.high(baseP99)))
                // The first bucket that is slow: where the threshold falls.
                let slowBucket = (0..<BlockDetector.buckets).first { Double(BlockDetector.low($0)) >= threshold } ?? BlockDetector.buckets
                if p50 >= slowBucket {
                    isSlow = !busy
                    if isSlow {
                        let slowCount = s.window[slowBucket...].reduce(0, +)
                        slowOps.append(Judged(op: op, requests: s.windowCount,
                                              p50: p50, p99: BlockDetector.quantile(s.window, total: s.windowCount, 0.99),
                                              baseP50: BlockDetector.quantile(s.baseline, total: s.baselineTotal, 0.5), baseP99: baseP99,
                                              baselineRequests: s.baselineTotal,
                                              mean: UInt64(min(s.windowSum / Double(s.windowCount), 1.8e19)), max: s.windowMax, slow: slowCount))
                        if BlockDetector.low(p50) >= criticalLatencyNs { critical = true }
                    }
                }
            }
            // A slow window is not learned, nor the one before it: the
            // baseline stays what was normal.
            if isSlow {
                s.forget()
            } else {
                s.learn()
            }
        }
        if slowOps.isEmpty {
            d.usualBytes = d.learnedWindows == 0 ? Double(d.windowBytes) : d.usualBytes + BlockDetector.alpha * (Double(d.windowBytes) - d.usualBytes)
            d.learnedWindows += 1
        } else {
            let key = Key(dev: dev, errors: false)
            let severity: Severity = critical ? .critical : .warning
            let decision = episodes.observe(key, at: start, severity: severity)
            if decision != .suppress {
                reportLatency(dev, d, slowOps, severity: severity, decision: decision, depth: depth,
                              start: start, end: end, context: context)
            }
        }
        let failed = d.statuses.values.reduce(0, +)
        if failed > 0 {
            // BLK_STS_NOTSUPP alone: a discard or write-zeroes the device does
            // not do is notable (the kernel falls back or stops asking); a
            // read, write or flush it does not do is a warning.
            let onlyUnsupported = d.statuses.keys.allSatisfy { $0 == BlockDetector.statusNotSupported }
            let onlyOptional = d.failedOps.keys.allSatisfy { BlockDetector.optionalOps.contains($0) }
            let severity: Severity = !onlyUnsupported ? .critical : onlyOptional ? .info : .warning
            let key = Key(dev: dev, errors: true)
            let decision = episodes.observe(key, at: min(d.firstErrorTs, end), severity: severity)
            if decision != .suppress {
                reportErrors(dev, d, failed: failed, severity: severity, decision: decision, start: start, end: end, context: context)
            }
        }
        // The window is over.
        for case let s? in d.ops { s.resetWindow() }
        d.windowBytes = 0
        d.windowRequests = 0
        d.windowLatency = 0
        d.issuers.removeAll(keepingCapacity: true)
        d.statuses.removeAll(keepingCapacity: true)
        d.failedOps.removeAll(keepingCapacity: true)
        d.firstErrorTs = .max
    }

    // MARK: findings

    /// The issuers of the window, most requests first.
    /// Named as the process table knows them now (a process that issued its
    /// first request before its exec is named by what it became), else by the
    /// record's comm of their first request (a process that has exited).
    /// Ranked by their failed requests (`byErrors`), or by their requests of
    /// the operations in `ops` (those that were slow).
    private func topIssuers(_ d: DeviceState, byErrors: Bool = false, ops: [Op] = [], context: DetectorContext) -> [(pid: UInt32, issuer: Issuer)] {
        func weight(_ i: Issuer) -> UInt64 { byErrors ? i.errors : ops.reduce(0) { $0 + i.byOp[$1.rawValue] } }
        return d.issuers.map { pid, issuer in
            var named = issuer
            if let comm = context.processes.comms[pid] { named.comm = comm }
            return (pid: pid, issuer: named)
        }
            .filter { weight($0.issuer) > 0 }
            .sorted { a, b in
                let (x, y) = (weight(a.issuer), weight(b.issuer))
                return x != y ? x > y : a.pid < b.pid
            }
    }

    /// Evidence on who issued the requests, and a phrase for the summary.
    private func who(_ dev: UInt32, _ issuers: [(pid: UInt32, issuer: Issuer)], at now: UInt64) -> (evidence: [(String, JSON)], phrase: String) {
        let top = issuers.prefix(topN)
        var evidence: [(String, JSON)] = [
            ("issuers", .array(top.map { i in
                .object([("pid", .uint(UInt64(i.pid))), ("comm", .string(i.issuer.comm)), ("requests", .uint(i.issuer.requests)),
                         ("by_op", .object(Op.allCases.filter { i.issuer.byOp[$0.rawValue] > 0 }.map { ($0.label, .uint(i.issuer.byOp[$0.rawValue])) })),
                         ("bytes", .uint(i.issuer.bytes)), ("errors", .uint(i.issuer.errors)),
                         ("kernel_worker", .bool(BlockDetector.isKernelWorker(i.issuer.comm)))])
            })),
        ]
        var phrase = top.prefix(3).map { "\($0.issuer.comm) (pid \($0.pid))" }.joined(separator: ", ")
        if issuers.count > 3 { phrase += " and \(issuers.count - 3) more" }
        if top.contains(where: { BlockDetector.isKernelWorker($0.issuer.comm) }) {
            let horizon = now >= writersHorizonNs ? now - writersHorizonNs : 0
            var byPid: [UInt32: Writer] = [:]
            for fs in writers.keys.sorted() where BlockDetector.fileSystem(fs, isOn: dev) {
                for (pid, w) in writers[fs]!.sorted(by: { $0.key < $1.key }) where w.lastTs >= horizon {
                    var merged = byPid[pid] ?? Writer(comm: w.comm, bytes: 0, lastTs: 0)
                    merged.bytes = merged.bytes.addingClamped(w.bytes)
                    merged.lastTs = max(merged.lastTs, w.lastTs)
                    byPid[pid] = merged
                }
            }
            let ranked = byPid.sorted { $0.value.bytes != $1.value.bytes ? $0.value.bytes > $1.value.bytes : $0.key < $1.key }.prefix(topN)
            if ranked.isEmpty {
                evidence.append(("note", .string("kernel workers (writeback, journal, loop) issue requests on behalf of others; no writer to a file system on this device is known from the trace within \(SettingValue.durationText(writersHorizonNs)) (the files family's writes summaries name them)")))
            } else {
                evidence.append(("writers", .array(ranked.map { w in
                    .object([("pid", .uint(UInt64(w.key))), ("comm", .string(w.value.comm)), ("bytes_written", .uint(w.value.bytes))])
                })))
                evidence.append(("note", .string("kernel workers issue buffered writes on behalf of the processes that wrote to file systems on this device within \(SettingValue.durationText(writersHorizonNs)) (writers)")))
                phrase += " on behalf of " + ranked.prefix(3).map { "\($0.value.comm) (pid \($0.key))" }.joined(separator: ", ")
            }
        }
        return (evidence, phrase)
    }

    private func deviceEvidence(_ dev: UInt32) -> [(String, JSON)] {
        var e: [(String, JSON)] = [("device", .string(deviceName(dev)))]
        if let n = name(dev) { e.append(("device_name", .string(n))) }
        return e
    }

    private func label(_ dev: UInt32) -> String {
        name(dev).map { "\($0) (\(deviceName(dev)))" } ?? deviceName(dev)
    }

    private func bucketJSON(_ i: Int) -> JSON { .array([.uint(BlockDetector.low(i)), .uint(BlockDetector.high(i))]) }

    private func reportLatency(_ dev: UInt32, _ d: DeviceState, _ slow: [Judged], severity: Severity,
                               decision: EpisodeTracker<Key>.Decision, depth: Double, start: UInt64, end: UInt64,
                               context: DetectorContext) {
        let issuers = topIssuers(d, ops: slow.map(\.op), context: context)
        let (whoEvidence, whoPhrase) = who(dev, issuers, at: end)
        var evidence: [(String, JSON)] = [("kind", .string("latency"))] + deviceEvidence(dev)
        evidence.append(("ops", .array(slow.map { j in
            .object([
                ("op", .string(j.op.label)), ("requests", .uint(j.requests)), ("slow_requests", .uint(j.slow)),
                ("window_p50_ns", bucketJSON(j.p50)), ("window_p99_ns", bucketJSON(j.p99)),
                ("window_mean_ns", .uint(j.mean)), ("window_max_ns", .uint(j.max)),
                ("baseline_p50_ns", bucketJSON(j.baseP50)), ("baseline_p99_ns", bucketJSON(j.baseP99)),
                ("baseline_requests", .uint(j.baselineRequests)),
                ("times_baseline_p99", .double(Double(BlockDetector.low(j.p50)) / Double(BlockDetector.high(j.baseP99)))),
            ])
        })))
        evidence += [
            ("window_start_ns", .uint(start)), ("window_ns", .uint(windowNs)),
            ("window_requests", .uint(d.windowRequests)), ("window_bytes", .uint(d.windowBytes)),
            ("usual_bytes_per_window", .double(d.usualBytes.rounded())),
            ("mean_in_flight", .double((min(depth, 1e12) * 1000).rounded() / 1000)),
        ]
        evidence += whoEvidence
        evidence.append(("episode_started_ns", .uint(episodes.episode(Key(dev: dev, errors: false))?.startedAt ?? start)))
        let first = slow[0]
        var summary = "\(label(dev)) is slow: \(first.op.label) median ≥ \(formatDuration(BlockDetector.low(first.p50))) (mean \(formatDuration(first.mean))) against a baseline p99 under \(formatDuration(BlockDetector.high(first.baseP99))) " +
            "over \(first.requests) requests in \(SettingValue.durationText(windowNs))"
        if slow.count > 1 { summary += " (and " + slow.dropFirst().map { "\($0.op.label)s" }.joined(separator: ", ") + ")" }
        summary += "; issued by \(whoPhrase.isEmpty ? "?" : whoPhrase)"
        if case .escalate(let from) = decision {
            evidence.append(("escalated_from", .string(from.rawValue)))
            summary += "; worse than when the episode began"
        }
        let lead = issuers.first
        context.emit(Finding(ts: end, detector: name, severity: severity, pid: lead?.pid ?? 0, tid: lead?.issuer.tid ?? 0,
                             comm: lead?.issuer.comm ?? "?", summary: summary, evidence: .object(evidence)))
    }

    private func reportErrors(_ dev: UInt32, _ d: DeviceState, failed: UInt64, severity: Severity,
                              decision: EpisodeTracker<Key>.Decision, start: UInt64, end: UInt64, context: DetectorContext) {
        let issuers = topIssuers(d, byErrors: true, context: context)
        let (whoEvidence, whoPhrase) = who(dev, issuers, at: end)
        var evidence: [(String, JSON)] = [("kind", .string("errors"))] + deviceEvidence(dev)
        let statuses = d.statuses.sorted { $0.key < $1.key }
        let ops = d.failedOps.sorted { $0.key < $1.key }.map { (BlockDetector.opName($0.key), $0.value) }
        evidence += [
            ("failed_requests", .uint(failed)), ("window_requests", .uint(d.windowRequests)),
            ("statuses", .array(statuses.map { .object([("status", .int(Int64($0.key))), ("name", .string(BlockDetector.statusName($0.key))), ("count", .uint($0.value))]) })),
            ("ops", .array(ops.map { .object([("op", .string($0.0)), ("failed", .uint($0.1))]) })),
            ("first_failure_ns", .uint(d.firstErrorTs)), ("first_sector", .uint(d.firstErrorSector)), ("last_sector", .uint(d.lastErrorSector)),
            ("window_start_ns", .uint(start)), ("window_ns", .uint(windowNs)),
        ]
        evidence += whoEvidence
        evidence.append(("episode_started_ns", .uint(episodes.episode(Key(dev: dev, errors: true))?.startedAt ?? d.firstErrorTs)))
        let opsText = ops.map { "\($0.0) \($0.1)" }.joined(separator: ", ")
        let statusText = statuses.map { BlockDetector.statusName($0.key) }.joined(separator: ", ")
        var summary = "\(label(dev)): \(failed) block I/O request\(failed == 1 ? "" : "s") failed (\(opsText); \(statusText)) of \(d.windowRequests) in \(SettingValue.durationText(windowNs)); issued by \(whoPhrase.isEmpty ? "?" : whoPhrase)"
        if case .escalate(let from) = decision {
            evidence.append(("escalated_from", .string(from.rawValue)))
            summary += "; worse than when the episode began"
        }
        let lead = issuers.first
        context.emit(Finding(ts: end, detector: name, severity: severity, pid: lead?.pid ?? 0, tid: lead == nil ? 0 : d.firstErrorTid,
                             comm: lead?.issuer.comm ?? "?", summary: summary, evidence: .object(evidence)))
    }

    // MARK: names

    static let statusNotSupported: Int32 = 1
    /// Discard, secure erase, write-zeroes: operations a device may not do.
    static let optionalOps: Set<UInt32> = [3, 5, 9]

    /// A REQ_OP_* by name, as `flightbox events` shows it.
    static func opName(_ op: UInt32) -> String {
        switch op {
        case 0: "read"
        case 1: "write"
        case 2: "flush"
        case 3: "discard"
        case 5: "secure-erase"
        case 9: "write-zeroes"
        default: "op\(op)"
        }
    }
    static let statusAgain: Int32 = 12

    /// blk_status_t names (include/linux/blk_types.h).
    static func statusName(_ s: Int32) -> String {
        switch s {
        case 1: "BLK_STS_NOTSUPP"
        case 2: "BLK_STS_TIMEOUT"
        case 3: "BLK_STS_NOSPC"
        case 4: "BLK_STS_TRANSPORT"
        case 5: "BLK_STS_TARGET"
        case 6: "BLK_STS_RESV_CONFLICT"
        case 7: "BLK_STS_MEDIUM"
        case 8: "BLK_STS_PROTECTION"
        case 9: "BLK_STS_RESOURCE"
        case 10: "BLK_STS_IOERR"
        case 11: "BLK_STS_DM_REQUEUE"
        case 12: "BLK_STS_AGAIN"
        case 13: "BLK_STS_DEV_RESOURCE"
        case 16: "BLK_STS_OFFLINE"
        case 17: "BLK_STS_DURATION_LIMIT"
        default: "blk_status \(s)"
        }
    }

    /// A name for devices whose major number is fixed by the kernel
    /// (Documentation/admin-guide/devices.txt): loop and SCSI disks. Others
    /// (virtio, NVMe, device-mapper) get dynamic majors: named only by the
    /// `block_device` gauges (the gauges family), else by major:minor.
    static func knownName(_ dev: UInt32) -> String? {
        let major = dev >> 20, minor = dev & 0xfffff
        switch major {
        case 7: return "loop\(minor)"
        case 8, 65...71, 128...135:
            // 16 minors a disk, 16 disks a major; whole disks only (the block
            // record names the disk: its first minor).
            guard minor % 16 == 0 else { return nil }
            let group: UInt32 = major == 8 ? 0 : major <= 71 ? major - 64 : major - 120
            return "sd" + diskLetters(group * 16 + minor / 16)
        default: return nil
        }
    }

    /// 0 -> a, 25 -> z, 26 -> aa: how sd disks are lettered.
    static func diskLetters(_ n: UInt32) -> String {
        var n = Int(n), s = ""
        repeat {
            s = String(UnicodeScalar(UInt8(97 + n % 26))) + s
            n = n / 26 - 1
        } while n >= 0
        return s
    }

    /// Whether a file system's dev_t lies on a disk (whose requests carry the
    /// disk's first minor): the disk itself, or a partition numbered right
    /// after it on the same major (sd, vd, mmcblk). Partitions on the
    /// extended major (259) are not matched.
    static func fileSystem(_ fs: UInt32, isOn dev: UInt32) -> Bool {
        if fs == dev { return true }
        guard fs >> 20 == dev >> 20 else { return false }
        let (f, d) = (fs & 0xfffff, dev & 0xfffff)
        return f > d && f < d + 16
    }

    /// Kernel threads that issue I/O on behalf of others: writeback and
    /// work-queue workers, journals, loop and md devices, reclaim.
    static func isKernelWorker(_ comm: String) -> Bool {
        if kernelWorkerPrefixes.contains(where: { comm.hasPrefix($0) }) { return true }
        // loop0 and md127_raid1: a device number, then nothing or an underscore.
        for p in ["loop", "md"] where comm.hasPrefix(p) {
            let rest = comm.utf8.dropFirst(p.utf8.count)
            let digits = rest.prefix { $0 >= 48 && $0 <= 57 }
            if !digits.isEmpty, rest.count == digits.count || rest.dropFirst(digits.count).first == UInt8(ascii: "_") { return true }
        }
        return false
    }

    static let kernelWorkerPrefixes = ["kworker/", "jbd2/", "kswapd", "flush-", "xfsaild/", "xfs-", "btrfs-", "kcompactd",
                                       "dm-", "kdmflush", "ext4-rsv", "f2fs_", "z_wr_", "nfsd", "kthreadd"]
}

// MARK: Checkpoints

extension BlockDetector: CheckpointedDetector {
    public struct State: Codable {
        var devices: [UInt32: DeviceState]
        var ignored: Set<UInt32>
        var names: [UInt32: String]
        var writers: [UInt32: [UInt32: Writer]]
        var episodes: EpisodeTracker<Key>
    }

    public var state: State {
        get { State(devices: devices, ignored: ignored, names: names, writers: writers, episodes: episodes) }
        set {
            devices = newValue.devices
            ignored = newValue.ignored
            names = newValue.names
            writers = newValue.writers
            episodes = newValue.episodes
        }
    }

    public func problem(with state: State) -> String? {
        for (dev, d) in state.devices {
            guard d.ops.count == Op.allCases.count else { return "block: device \(dev) has \(d.ops.count) operations, not \(Op.allCases.count)" }
            for case let o? in d.ops where o.baseline.count != BlockDetector.buckets || o.window.count != BlockDetector.buckets || o.pending.count != BlockDetector.buckets {
                return "block: device \(dev) has a histogram without \(BlockDetector.buckets) buckets"
            }
        }
        return nil
    }
}
