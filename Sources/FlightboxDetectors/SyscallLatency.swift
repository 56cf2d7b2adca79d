import FlightboxEvents

/// A log2 histogram of durations: bucket i holds values in [2^i, 2^(i+1)) ns
/// (bucket 0 also holds 0).
public struct Log2Histogram: Equatable, Sendable {
    public private(set) var counts = [UInt32](repeating: 0, count: 64)
    public private(set) var total: UInt64 = 0

    public init() {}

    @inlinable public static func bucket(_ v: UInt64) -> Int { v == 0 ? 0 : 63 - v.leadingZeroBitCount }

    public mutating func add(_ v: UInt64) {
        counts[Log2Histogram.bucket(v)] &+= 1
        total += 1
    }

    /// Index of the bucket holding quantile q (0...1).
    public func quantileBucket(_ q: Double) -> Int {
        let target = UInt64((Double(total) * q).rounded(.up))
        var seen: UInt64 = 0
        for (i, c) in counts.enumerated() {
            seen += UInt64(c)
            if seen >= max(target, 1) { return i }
        }
        return 63
    }

    public static func upperBound(_ bucket: Int) -> UInt64 { bucket >= 63 ? .max : (UInt64(1) << UInt64(bucket + 1)) - 1 }

    public var json: JSON {
        .array(counts.enumerated().filter { $0.element > 0 }.map { i, c in
            .object([("le_ns", .uint(Log2Histogram.upperBound(i))), ("count", .uint(UInt64(c)))])
        })
    }
}

/// Flags a syscall that took far longer than the same process's own history
/// of that syscall.
///
/// The rule, per (process, syscall): once `min_samples` calls are known, a call
/// is an outlier when it took at least `floor` and landed at least
/// `buckets_above_p99` log2 buckets above the bucket of the baseline's p99 (so at
/// least 2^(buckets_above_p99 - 1) times slower than any of the slowest 1%). After a
/// finding, the same (process, syscall) stays quiet for `cooldown` of event
/// time; outliers in that time are counted into the next finding.
///
/// 32-bit (ia32) syscalls are not judged. Calls that wait by design are never judged: sleeps, waits, polls, futexes,
/// signal waits, accept, and reads/writes/receives on pipes, sockets,
/// terminals and anonymous fds (eventfd, timerfd, ...), told apart by the fd
/// kind the kernel side resolves for slow calls.
public final class SyscallLatencyDetector: Detector {
    public let name = "syscall-latency"
    public var minSamples: UInt64
    public var floorNs: UInt64
    public var bucketsAbove: Int
    public var cooldownNs: UInt64
    public var criticalNs: UInt64
    public let exclusions: Exclusions

    public static let spec = DetectorSpec(
        name: "syscall-latency", family: "syscalls",
        judges: "a syscall that took far longer than the same process's own history of that syscall",
        parameters: [
            .count("min_samples", default: 64, range: 1...1_000_000_000,
                   doc: "calls of a (process, syscall) learned before any of them is judged"),
            .duration("floor", default: 1_000_000, range: 0...3_600_000_000_000,
                      doc: "a call faster than this is never flagged, whatever its baseline"),
            .count("buckets_above_p99", default: 4, range: 1...63,
                   doc: "log2 buckets above the baseline's p99 bucket that make an outlier (4: at least 8x slower)"),
            .duration("cooldown", default: 10_000_000_000, range: 0...86_400_000_000_000,
                      doc: "quiet time of a (process, syscall) after a finding; outliers in it are counted into the next one"),
            .duration("critical", default: 1_000_000_000, range: 1_000...86_400_000_000_000,
                      doc: "an outlier this slow is critical rather than a warning"),
        ],
        make: { SyscallLatencyDetector(settings: $0) }
    )

    struct State {
        var hist = Log2Histogram()
        var quietUntil: UInt64 = 0
        var suppressed: UInt64 = 0
        /// Set once the pid's list of numbers holds this one.
        var listed = false

        /// What an outlier is judged against: the baseline before the call.
        struct Outlier {
            let p50: Int
            let p99: Int
            let samples: UInt64
            let histogram: JSON
            let suppressed: UInt64
        }

        /// Judges one call against the baseline, then learns it. Mutates in
        /// place (called through the dictionaries' modify accessors), so the
        /// histogram is never copied on the hot path.
        mutating func observe(_ d: UInt64, at ts: UInt64, minSamples: UInt64, floorNs: UInt64, bucketsAbove: Int, cooldownNs: UInt64) -> Outlier? {
            defer { hist.add(d) }
            guard hist.total >= minSamples, d >= floorNs else { return nil }
            let p99 = hist.quantileBucket(0.99)
            guard Log2Histogram.bucket(d) >= p99 + bucketsAbove else { return nil }
            if ts < quietUntil {
                suppressed += 1
                return nil
            }
            let o = Outlier(p50: hist.quantileBucket(0.5), p99: p99, samples: hist.total, histogram: hist.json, suppressed: suppressed)
            quietUntil = ts.addingClamped(cooldownNs)
            suppressed = 0
            return o
        }
    }

    /// One lookup of the state, mutated in place.
    private static func judge(_ s: inout State, fresh: inout Bool, _ d: UInt64, at ts: UInt64, _ me: SyscallLatencyDetector) -> State.Outlier? {
        if !s.listed {
            s.listed = true
            fresh = true
        }
        return s.observe(d, at: ts, minSamples: me.minSamples, floorNs: me.floorNs, bucketsAbove: me.bucketsAbove, cooldownNs: me.cooldownNs)
    }

    /// (pid << 32 | syscall number) -> state: one hash lookup per call.
    /// Never iterated, so its order cannot leak into output.
    private var states: [UInt64: State] = [:]
    /// The syscall numbers each process has state for, to forget it on exit.
    private var numbersByPid: [UInt32: [UInt32]] = [:]

    /// With the declared defaults.
    public convenience init() { self.init(settings: SyscallLatencyDetector.spec.defaults) }

    /// With resolved settings (`DetectorConfiguration`): the parameters of `spec`.
    public init(settings: DetectorSettings) {
        minSamples = settings.count("min_samples")
        floorNs = settings.duration("floor")
        bucketsAbove = Int(settings.count("buckets_above_p99"))
        cooldownNs = settings.duration("cooldown")
        criticalNs = settings.duration("critical")
        exclusions = settings.exclude
    }

    /// fd syscalls that only wait when the fd is a pipe, socket, tty or anon fd.
    static let fdWaitKinds: Set<FdKind> = [.fifo, .socket, .char, .anon]

    /// Syscalls that block by design whatever their arguments are the wait
    /// class of bpf/syscalls/classes.txt, in the numbering of `arch`.
    static func waitsByDesign(_ s: SyscallRecord, table: SyscallTable) -> Bool {
        if table.classes(s.nr).contains(.wait) { return true }
        return fdWaitKinds.contains(s.fdKindValue)
    }

    public func observe(_ e: Event, context: DetectorContext) {
        let sc: SyscallRecord
        switch e.payload {
        case .syscall(let r):
            sc = r
        case .exit(let x) where x.isGroupExit:
            // Forget the process: its pid may be reused by an unrelated one.
            for nr in numbersByPid.removeValue(forKey: e.pid) ?? [] { states[UInt64(e.pid) << 32 | UInt64(nr)] = nil }
            return
        default:
            return
        }
        // ia32 calls are numbered differently and this detector has no table
        // of which ones wait by design: judging them would flag 32-bit sleeps.
        if sc.isCompat || SyscallLatencyDetector.waitsByDesign(sc, table: context.syscalls) { return }
        let nr = sc.nr
        let d = sc.durationNs
        let ts = e.timestamp
        let key = UInt64(e.pid) << 32 | UInt64(nr)
        var fresh = false
        let outlier = Self.judge(&states[key, default: State()], fresh: &fresh, d, at: ts, self)
        if fresh { numbersByPid[e.pid, default: []].append(nr) }
        guard let o = outlier else { return }
        let p99Upper = Log2Histogram.upperBound(o.p99)
        let ratio = Double(d) / Double(max(p99Upper, 1))
        let name = sc.displayName(arch: context.arch)
        let kind = sc.fdKindValue
        let on = kind == .unresolved ? "" : " on a \(kind.name) fd"
        let comm = context.processes.comm(e.pid)
        var evidence: [(String, JSON)] = [
            ("syscall", .string(name)), ("nr", .uint(UInt64(nr))),
            ("latency_ns", .uint(d)), ("fd_kind", .string(kind.name)), ("ret", .int(sc.ret)),
            ("baseline_samples", .uint(o.samples)),
            ("baseline_p50_le_ns", .uint(Log2Histogram.upperBound(o.p50))), ("baseline_p99_le_ns", .uint(p99Upper)),
            ("times_p99", .double(ratio)), ("histogram", o.histogram),
        ]
        if o.suppressed > 0 { evidence.append(("outliers_suppressed_since_last", .uint(o.suppressed))) }
        context.emit(Finding(
            ts: ts, detector: self.name,
            severity: d >= criticalNs ? .critical : .warning, pid: e.pid, tid: e.tid, comm: comm,
            summary: "\(name)\(on) took \(formatDuration(d)), \(String(format3: ratio))x this process's p99 (<= \(formatDuration(p99Upper))) over \(o.samples) calls",
            evidence: .object(evidence)))
    }
}
