import FlightboxEvents

/// A log2 histogram of durations: bucket i holds values in [2^i, 2^(i+1)) ns
/// (bucket 0 also holds 0).
public struct Log2Histogram: Equatable, Sendable, Codable {
    public private(set) var counts = [UInt32](repeating: 0, count: 64)
    public private(set) var total: UInt64 = 0

    public init() {}

    /// A histogram with these 64 counts (`total`: their sum).
    init(counts: UnsafePointer<UInt32>, total: UInt64) {
        self.counts = Array(UnsafeBufferPointer(start: counts, count: 64))
        self.total = total
    }

    @inlinable public static func bucket(_ v: UInt64) -> Int { v == 0 ? 0 : 63 - v.leadingZeroBitCount }

    public mutating func add(_ v: UInt64) {
        counts[Log2Histogram.bucket(v)] &+= 1
        total += 1
    }

    /// Index of the bucket holding quantile q (0...1).
    public func quantileBucket(_ q: Double) -> Int {
        counts.withUnsafeBufferPointer { Log2Histogram.quantileBucket(q, counts: $0.baseAddress!, total: total) }
    }

    /// Index of the bucket holding quantile q (0...1) of 64 raw counts.
    static func quantileBucket(_ q: Double, counts: UnsafePointer<UInt32>, total: UInt64) -> Int {
        let target = max(UInt64((Double(total) * q).rounded(.up)), 1)
        var seen: UInt64 = 0
        for i in 0..<64 {
            seen += UInt64(counts[i])
            if seen >= target { return i }
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
/// An outlier is not blamed on the syscall when something else explains it:
/// - *storage*: a file-system call (the storage class: reads of file data or
///   metadata, fsync; or a write; on a regular file, directory or block
///   device) during which its thread had block I/O in flight for
///   `storage_share` of the call waited for the disk — a slow disk is the
///   block detector's call; and a call of the storage class faster than
///   `storage_ceiling` may have waited for the disk through I/O the trace does
///   not attribute to it (no block family, readahead, a page another task is
///   reading), as a cold page cache does;
/// - *preempted*: a call during which its thread waited on a run queue for
///   `preempted_share` of it (scheduler family) was slow for want of a CPU —
///   the scheduling detector's call.
/// Such outliers are counted into the key's next finding, which also carries
/// the run-queue and block I/O time of its own call when there was any.
///
/// 32-bit (ia32) syscalls are not judged. Calls that wait by design are never judged: sleeps, waits, polls, futexes,
/// signal waits, accept, and reads/writes/receives on pipes, sockets,
/// terminals and anonymous fds (eventfd, timerfd, ...), told apart by the fd
/// kind the kernel side resolves for slow calls.
public final class SyscallLatencyDetector: Detector {
    public let name = "syscall-latency"
    public var observedTypes: EventTypeSet { EventTypeSet(.syscall, .sched, .block, .exit) }
    public var minSamples: UInt64
    public var floorNs: UInt64
    public var bucketsAbove: Int
    public var cooldownNs: UInt64
    public var criticalNs: UInt64
    public var storageCeilingNs: UInt64
    public var storageShare: Double
    public var preemptedShare: Double
    public let exclusions: Exclusions

    public static let spec = DetectorSpec(
        name: "syscall-latency", family: "syscalls",
        judges: "a syscall that took far longer than the same process's own history of that syscall, unless it waited for the disk or for a CPU",
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
            .duration("storage_ceiling", default: 100_000_000, range: 0...3_600_000_000_000,
                      doc: "a file-system call (storage class) faster than this is left to the block I/O family: a cold page cache makes it that slow (0: judged like any call)"),
            .ratio("storage_share", default: 0.5, range: 0.01...1,
                   doc: "share of a file-system call its thread had block I/O in flight for that makes it storage-bound, never blamed on the syscall"),
            .ratio("preempted_share", default: 0.5, range: 0.01...1,
                   doc: "share of a call its thread spent runnable on a run queue (scheduler family) that makes it preempted, never blamed on the syscall"),
        ],
        make: { SyscallLatencyDetector(settings: $0) }
    )

    /// What a (process, syscall) remembers besides its histogram.
    struct Episode: Codable {
        var quietUntil: UInt64 = 0
        var suppressed: UInt64 = 0
        /// Outliers explained by the disk or by a wait for a CPU since the last finding.
        var leftToStorage: UInt64 = 0
        var preempted: UInt64 = 0
    }

    /// What an outlier is judged against: the baseline before the call.
    struct Outlier {
        let p50: Int
        let p99: Int
        let samples: UInt64
        let histogram: JSON
        let suppressed: UInt64
        let leftToStorage: UInt64
        let preempted: UInt64
        let runqNs: UInt64
        let blockNs: UInt64
    }

    /// Why an outlier is not the syscall's own latency, if it is not.
    enum Cause { case syscall, storage, preempted }

    /// Judges a call that reached the floor against the baseline before it
    /// (the caller learns it afterwards); kept out of the per-call path.
    @inline(never)
    private func judge(_ ps: ProcessStates, slot i: Int, _ sc: SyscallRecord, tid: UInt32, at ts: UInt64, table: SyscallTable) -> Outlier? {
        let d = sc.durationNs
        let counts = ps.counts + i * 64
        let total = ps.totals[i]
        let p99 = Log2Histogram.quantileBucket(0.99, counts: counts, total: total)
        guard Log2Histogram.bucket(d) >= p99 + bucketsAbove else { return nil }
        let (cause, runqNs, blockNs) = attribute(sc, tid: tid, at: ts, table: table)
        switch cause {
        case .storage:
            ps.episodes[i].leftToStorage += 1
            return nil
        case .preempted:
            ps.episodes[i].preempted += 1
            return nil
        case .syscall:
            break
        }
        let e = ps.episodes[i]
        if ts < e.quietUntil {
            ps.episodes[i].suppressed += 1
            return nil
        }
        let hist = Log2Histogram(counts: counts, total: total)
        ps.episodes[i] = Episode(quietUntil: ts.addingClamped(cooldownNs))
        return Outlier(p50: hist.quantileBucket(0.5), p99: p99, samples: total, histogram: hist.json,
                       suppressed: e.suppressed, leftToStorage: e.leftToStorage, preempted: e.preempted,
                       runqNs: runqNs, blockNs: blockNs)
    }

    /// Whose latency a slow call is, with the run-queue and block I/O time
    /// of its thread during it.
    func attribute(_ sc: SyscallRecord, tid: UInt32, at ts: UInt64, table: SyscallTable) -> (Cause, runqNs: UInt64, blockNs: UInt64) {
        let d = sc.durationNs
        let end = ts.addingClamped(d)
        let runq = runqueueWaits.covered(tid: tid, from: ts, to: end)
        let block = blockIO.covered(tid: tid, from: ts, to: end)
        let storage = SyscallLatencyDetector.storage(sc, table: table)
        if storage != .none, block.window > 0, Double(block.ns) >= storageShare * Double(block.window) { return (.storage, runq.ns, block.ns) }
        if storage == .waits, d < storageCeilingNs { return (.storage, runq.ns, block.ns) }
        if runq.window > 0, Double(runq.ns) >= preemptedShare * Double(runq.window) { return (.preempted, runq.ns, block.ns) }
        return (.syscall, runq.ns, block.ns)
    }

    /// pid -> the states of its syscalls. Never iterated, so its order
    /// cannot leak into output. The last process looked up is kept at hand:
    /// consecutive calls are mostly one process's.
    @exclusivity(unchecked) private var processes: [UInt32: ProcessStates] = [:]
    @exclusivity(unchecked) private var lastPid: UInt32 = 0
    /// Unretained: `processes` holds it, and it is cleared when removed there.
    @exclusivity(unchecked) private var lastStates: Unmanaged<ProcessStates>?
    /// `SyscallFlags` per syscall number below `ProcessStates.direct`, in the
    /// numbering of `flagsArch`: made once rather than looked up per call.
    private let flags = UnsafeMutablePointer<UInt8>.allocate(capacity: ProcessStates.direct)
    @exclusivity(unchecked) private var flagsArch: SyscallArch?
    /// Each thread's recent run-queue waits and block I/O: the records of a
    /// thread's waits and I/O arrive before the record of the syscall that
    /// contains them (which arrives at its exit).
    let runqueueWaits = ThreadIntervals()
    let blockIO = ThreadIntervals()

    /// With the declared defaults.
    public convenience init() { self.init(settings: SyscallLatencyDetector.spec.defaults) }

    /// With resolved settings (`DetectorConfiguration`): the parameters of `spec`.
    public init(settings: DetectorSettings) {
        minSamples = settings.count("min_samples")
        floorNs = settings.duration("floor")
        bucketsAbove = Int(settings.count("buckets_above_p99"))
        cooldownNs = settings.duration("cooldown")
        criticalNs = settings.duration("critical")
        storageCeilingNs = settings.duration("storage_ceiling")
        storageShare = settings.ratio("storage_share")
        preemptedShare = settings.ratio("preempted_share")
        exclusions = settings.exclude
        flags.initialize(repeating: 0, count: ProcessStates.direct)
    }

    deinit { flags.deallocate() }

    /// Per syscall number: waits by design (the wait class).
    enum SyscallFlags {
        static let wait: UInt8 = 1
    }

    static func flags(_ nr: UInt32, table: SyscallTable) -> UInt8 {
        table.classes(nr).contains(.wait) ? SyscallFlags.wait : 0
    }

    @inline(__always) private func flags(_ nr: UInt32, context: DetectorContext) -> UInt8 {
        guard nr < UInt32(ProcessStates.direct) else { return Self.flags(nr, table: context.syscalls) }
        if flagsArch != context.arch {
            for n in 0..<ProcessStates.direct { flags[n] = Self.flags(UInt32(n), table: context.syscalls) }
            flagsArch = context.arch
        }
        return flags[Int(nr)]
    }

    /// Fd kinds on which an fd syscall only waits: pipes, sockets, ttys, anon fds.
    static let fdWaitKindBits: UInt16 = (1 << FdKind.fifo.rawValue) | (1 << FdKind.socket.rawValue) | (1 << FdKind.char.rawValue) | (1 << FdKind.anon.rawValue)

    @inline(__always) private func states(_ pid: UInt32) -> Unmanaged<ProcessStates> {
        if pid == lastPid, let ps = lastStates { return ps }
        return lookUp(pid)
    }

    private func lookUp(_ pid: UInt32) -> Unmanaged<ProcessStates> {
        let ps: ProcessStates
        if let known = processes[pid] {
            ps = known
        } else {
            ps = ProcessStates()
            processes[pid] = ps
        }
        lastPid = pid
        lastStates = Unmanaged.passUnretained(ps)
        return lastStates!
    }

    /// What the disk may have to do with a call.
    enum Storage {
        /// Nothing: not a file-system call, or not on a file.
        case none
        /// A buffered write (the write class): it waits for the disk only when
        /// it cannot keep up, or for O_SYNC and O_DIRECT, with the thread's own I/O.
        case write
        /// The storage class: waits for the disk on a cold page cache, or by design.
        case waits
    }

    /// `Storage` of a call: by its class, on a regular file, a directory, a
    /// block device, or a path (fd kind unresolved).
    static func storage(_ s: SyscallRecord, table: SyscallTable) -> Storage {
        switch s.fdKindValue {
        case .unresolved, .regular, .directory, .block, .symlink: break
        default: return .none
        }
        let c = table.classes(s.nr)
        return c.contains(.storage) ? .waits : c.contains(.write) ? .write : .none
    }

    public func observe(_ e: Event, context: DetectorContext) {
        guard let sc = e.as(SyscallRecord.self) else {
            observeOther(e)
            return
        }
        // ia32 calls are numbered differently and this detector has no table
        // of which ones wait by design: judging them would flag 32-bit sleeps.
        if sc.isCompat { return }
        let nr = sc.nr
        if flags(nr, context: context) & SyscallFlags.wait != 0 { return }
        let kind = sc.fdKind
        if kind < 16, Self.fdWaitKindBits & (1 << UInt16(kind)) != 0 { return }
        let d = sc.durationNs
        let ts = e.timestamp
        let outlier: Outlier? = states(e.pid)._withUnsafeGuaranteedRef { ps in
            let i = ps.slot(nr)
            let total = ps.totals[i]
            let o = total >= minSamples && d >= floorNs ? judge(ps, slot: i, sc, tid: e.tid, at: ts, table: context.syscalls) : nil
            // Learnt after it was judged.
            ps.counts[i * 64 + Log2Histogram.bucket(d)] &+= 1
            ps.totals[i] = total + 1
            return o
        }
        guard let o = outlier else { return }
        emit(o, e, sc, context: context)
    }

    /// Run-queue waits, block I/O and exits.
    private func observeOther(_ e: Event) {
        if let r = e.as(SchedRecord.self) {
            if r.isRunqueueWait { runqueueWaits.add(tid: e.tid, from: e.timestamp, to: e.timestamp.addingClamped(r.waitNs)) }
        } else if let r = e.as(BlockRecord.self) {
            blockIO.add(tid: e.tid, from: e.timestamp, to: e.timestamp.addingClamped(r.latencyNs))
        } else if let x = e.as(ExitRecord.self) {
            runqueueWaits.forget(tid: e.tid)
            blockIO.forget(tid: e.tid)
            // Forget the process: its pid may be reused by an unrelated one.
            if x.isGroupExit {
                if lastPid == e.pid { lastStates = nil }
                processes[e.pid] = nil
            }
        }
    }

    private func emit(_ o: Outlier, _ e: Event, _ sc: SyscallRecord, context: DetectorContext) {
        let nr = sc.nr
        let d = sc.durationNs
        let ts = e.timestamp
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
        // Time of the call the thread spent waiting for a CPU or with block
        // I/O in flight, when there was any: under the shares that would
        // explain the call, but part of its latency.
        if o.runqNs > 0 { evidence.append(("runqueue_wait_ns", .uint(o.runqNs))) }
        if o.blockNs > 0 { evidence.append(("block_io_in_flight_ns", .uint(o.blockNs))) }
        if o.suppressed > 0 { evidence.append(("outliers_suppressed_since_last", .uint(o.suppressed))) }
        if o.leftToStorage > 0 { evidence.append(("outliers_left_to_storage_since_last", .uint(o.leftToStorage))) }
        if o.preempted > 0 { evidence.append(("outliers_preempted_since_last", .uint(o.preempted))) }
        context.emit(Finding(
            ts: ts, detector: self.name,
            severity: d >= criticalNs ? .critical : .warning, pid: e.pid, tid: e.tid, comm: comm,
            summary: "\(name)\(on) took \(formatDuration(d)), \(String(format3: ratio))x this process's p99 (<= \(formatDuration(p99Upper))) over \(o.samples) calls",
            evidence: .object(evidence)))
    }
}

/// Recent time intervals of each thread (run-queue waits, block I/O in
/// flight), and how much of a later span they cover.
///
/// Bounded whatever the number of threads: a fixed table of `slots` threads
/// (a thread's slot is its tid modulo `slots`; a thread whose slot another
/// thread took loses its history, which can only leave a slow call blamed on
/// the syscall), each holding its `perThread` latest intervals. Buffers owned
/// here: no allocation per event.
final class ThreadIntervals {
    static let slots = 1024
    static let perThread = 16

    /// The tid of each slot's thread, 0 for none.
    private let tids: UnsafeMutablePointer<UInt32>
    /// Intervals added to each slot so far (the ring's write position).
    private let counts: UnsafeMutablePointer<UInt32>
    /// [slot * perThread + i]: interval starts and ends.
    private let starts: UnsafeMutablePointer<UInt64>
    private let ends: UnsafeMutablePointer<UInt64>

    init() {
        let n = ThreadIntervals.slots, m = n * ThreadIntervals.perThread
        tids = .allocate(capacity: n)
        tids.initialize(repeating: 0, count: n)
        counts = .allocate(capacity: n)
        counts.initialize(repeating: 0, count: n)
        starts = .allocate(capacity: m)
        starts.initialize(repeating: 0, count: m)
        ends = .allocate(capacity: m)
        ends.initialize(repeating: 0, count: m)
    }

    deinit {
        tids.deallocate()
        counts.deallocate()
        starts.deallocate()
        ends.deallocate()
    }

    @inline(__always) private static func slot(_ tid: UInt32) -> Int { Int(tid) & (slots - 1) }

    /// Remembers that `tid` waited (or had I/O in flight) from `start` to `end`.
    func add(tid: UInt32, from start: UInt64, to end: UInt64) {
        // tid 0: the idle task, or an event that names no task.
        guard tid != 0, end > start else { return }
        let s = ThreadIntervals.slot(tid)
        if tids[s] != tid {
            tids[s] = tid
            counts[s] = 0
        }
        let i = s * ThreadIntervals.perThread + Int(counts[s] % UInt32(ThreadIntervals.perThread))
        starts[i] = start
        ends[i] = end
        counts[s] &+= 1
        // Keep the count meaningful as "full" after wrapping.
        if counts[s] == 0 { counts[s] = UInt32(ThreadIntervals.perThread) }
    }

    func forget(tid: UInt32) {
        let s = ThreadIntervals.slot(tid)
        if tids[s] == tid {
            tids[s] = 0
            counts[s] = 0
        }
    }

    /// How much of [from, to) the thread's intervals cover (their union,
    /// as block requests overlap), and over how long a window: the whole span
    /// when the history reaches back to its start, else the part from the
    /// oldest interval still remembered (older ones inside the span were
    /// overwritten, so the share is judged on what is known).
    func covered(tid: UInt32, from a: UInt64, to b: UInt64) -> (ns: UInt64, window: UInt64) {
        guard b > a else { return (0, 0) }
        let s = ThreadIntervals.slot(tid)
        guard tid != 0, tids[s] == tid, counts[s] > 0 else { return (0, b - a) }
        let n = Int(min(counts[s], UInt32(ThreadIntervals.perThread)))
        let base = s * ThreadIntervals.perThread
        var lo = a
        if counts[s] >= UInt32(ThreadIntervals.perThread) {
            var oldest = UInt64.max
            for i in 0..<n { oldest = min(oldest, starts[base + i]) }
            if oldest > a { lo = min(oldest, b) }
        }
        guard b > lo else { return (0, 0) }
        // The parts of the intervals inside [lo, b), sorted by start (at
        // most perThread: insertion sort on the stack), then merged.
        return withUnsafeTemporaryAllocation(of: (UInt64, UInt64).self, capacity: ThreadIntervals.perThread) { clip in
            var k = 0
            for i in 0..<n {
                let cs = max(starts[base + i], lo), ce = min(ends[base + i], b)
                guard ce > cs else { continue }
                var j = k
                while j > 0, clip[j - 1].0 > cs {
                    clip[j] = clip[j - 1]
                    j -= 1
                }
                clip[j] = (cs, ce)
                k += 1
            }
            var total: UInt64 = 0
            var runStart: UInt64 = 0, runEnd: UInt64 = 0
            for i in 0..<k {
                let (cs, ce) = clip[i]
                if i == 0 || cs > runEnd {
                    total += runEnd - runStart
                    runStart = cs
                    runEnd = ce
                } else if ce > runEnd {
                    runEnd = ce
                }
            }
            total += runEnd - runStart
            return (total, b - lo)
        }
    }
}

/// The syscall states of one process: per syscall number seen, a log2
/// histogram of its latencies and its episode. Flat buffers owned here, found
/// by number through a direct table (a dictionary only for numbers no table
/// has): no hashing, no copy-on-write, no reference counting per call.
final class ProcessStates {
    /// Numbers below this are looked up directly (every architecture's are).
    static let direct = 512

    /// State index of each number below `direct`, -1 for none yet.
    private let slotByNr: UnsafeMutablePointer<Int32>
    private var overflow: [UInt32: Int] = [:]
    private var count = 0
    private var capacity = 0
    /// [state * 64 + bucket]: the histograms.
    private(set) var counts: UnsafeMutablePointer<UInt32>
    private(set) var totals: UnsafeMutablePointer<UInt64>
    private(set) var episodes: UnsafeMutablePointer<SyscallLatencyDetector.Episode>

    init() {
        slotByNr = .allocate(capacity: ProcessStates.direct)
        slotByNr.initialize(repeating: -1, count: ProcessStates.direct)
        counts = .allocate(capacity: 0)
        totals = .allocate(capacity: 0)
        episodes = .allocate(capacity: 0)
    }

    deinit {
        slotByNr.deallocate()
        counts.deallocate()
        totals.deallocate()
        episodes.deinitialize(count: count)
        episodes.deallocate()
    }

    /// The state index of `nr`, made on first use.
    @inline(__always) func slot(_ nr: UInt32) -> Int {
        if nr < UInt32(ProcessStates.direct) {
            let s = slotByNr[Int(nr)]
            if s >= 0 { return Int(s) }
            let n = append()
            slotByNr[Int(nr)] = Int32(n)
            return n
        }
        if let s = overflow[nr] { return s }
        let n = append()
        overflow[nr] = n
        return n
    }

    private func append() -> Int {
        if count == capacity { grow() }
        (counts + count * 64).initialize(repeating: 0, count: 64)
        (totals + count).initialize(to: 0)
        (episodes + count).initialize(to: SyscallLatencyDetector.Episode())
        count += 1
        return count - 1
    }

    private func grow() {
        let newCapacity = max(4, capacity * 2)
        let c = UnsafeMutablePointer<UInt32>.allocate(capacity: newCapacity * 64)
        c.moveInitialize(from: counts, count: count * 64)
        counts.deallocate()
        counts = c
        let t = UnsafeMutablePointer<UInt64>.allocate(capacity: newCapacity)
        t.moveInitialize(from: totals, count: count)
        totals.deallocate()
        totals = t
        let e = UnsafeMutablePointer<SyscallLatencyDetector.Episode>.allocate(capacity: newCapacity)
        e.moveInitialize(from: episodes, count: count)
        episodes.deallocate()
        episodes = e
        capacity = newCapacity
    }
}

// MARK: Checkpoints

extension SyscallLatencyDetector: CheckpointedDetector {
    public struct State: Codable {
        /// pid -> its syscalls' baselines and episodes.
        var processes: [UInt32: ProcessStates.Snapshot]
        var runqueueWaits: [ThreadIntervals.Slot]
        var blockIO: [ThreadIntervals.Slot]
    }

    public var state: State {
        get { State(processes: processes.mapValues(\.snapshot), runqueueWaits: runqueueWaits.snapshot, blockIO: blockIO.snapshot) }
        set {
            processes = newValue.processes.mapValues(ProcessStates.init(snapshot:))
            lastPid = 0
            lastStates = nil
            runqueueWaits.restore(newValue.runqueueWaits)
            blockIO.restore(newValue.blockIO)
        }
    }

    public func problem(with state: State) -> String? {
        for (pid, p) in state.processes {
            if Set(p.map(\.nr)).count != p.count { return "syscall-latency: pid \(pid) repeats a syscall" }
            if let bad = p.first(where: { $0.counts.count != 64 }) { return "syscall-latency: pid \(pid) syscall \(bad.nr) has \(bad.counts.count) histogram buckets, not 64" }
        }
        for s in state.runqueueWaits + state.blockIO {
            guard s.slot >= 0, s.slot < ThreadIntervals.slots, s.starts.count == ThreadIntervals.perThread, s.ends.count == ThreadIntervals.perThread else {
                return "syscall-latency: a thread interval slot is out of range"
            }
        }
        return nil
    }
}

extension ThreadIntervals {
    /// A slot in use.
    struct Slot: Codable {
        var slot: Int
        var tid: UInt32
        var count: UInt32
        var starts: [UInt64]
        var ends: [UInt64]
    }

    var snapshot: [Slot] {
        (0..<ThreadIntervals.slots).filter { tids[$0] != 0 }.map { s in
            let base = s * ThreadIntervals.perThread
            return Slot(slot: s, tid: tids[s], count: counts[s],
                        starts: Array(UnsafeBufferPointer(start: starts + base, count: ThreadIntervals.perThread)),
                        ends: Array(UnsafeBufferPointer(start: ends + base, count: ThreadIntervals.perThread)))
        }
    }

    /// Replaces every slot (sizes checked by `problem(with:)`).
    func restore(_ slots: [Slot]) {
        tids.update(repeating: 0, count: ThreadIntervals.slots)
        counts.update(repeating: 0, count: ThreadIntervals.slots)
        for s in slots {
            tids[s.slot] = s.tid
            counts[s.slot] = s.count
            let base = s.slot * ThreadIntervals.perThread
            for i in 0..<ThreadIntervals.perThread {
                starts[base + i] = s.starts[i]
                ends[base + i] = s.ends[i]
            }
        }
    }
}

extension ProcessStates {
    /// One syscall's state, in slot order.
    struct Entry: Codable {
        var nr: UInt32
        var counts: [UInt32]
        var total: UInt64
        var episode: SyscallLatencyDetector.Episode
    }

    typealias Snapshot = [Entry]

    var snapshot: Snapshot {
        var nrs = [UInt32](repeating: 0, count: count)
        for nr in 0..<ProcessStates.direct where slotByNr[nr] >= 0 { nrs[Int(slotByNr[nr])] = UInt32(nr) }
        for (nr, s) in overflow { nrs[s] = nr }
        return (0..<count).map { i in
            Entry(nr: nrs[i], counts: Array(UnsafeBufferPointer(start: counts + i * 64, count: 64)), total: totals[i], episode: episodes[i])
        }
    }

    /// Made again in the same slot order (sizes checked by `problem(with:)`).
    convenience init(snapshot: Snapshot) {
        self.init()
        for e in snapshot {
            let i = slot(e.nr)
            for b in 0..<64 { counts[i * 64 + b] = e.counts[b] }
            totals[i] = e.total
            episodes[i] = e.episode
        }
    }
}
