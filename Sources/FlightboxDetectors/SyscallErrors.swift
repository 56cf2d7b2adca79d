import Foundation
import FlightboxEvents

/// Judges failed syscalls: per process and errno, the failures counted in
/// aligned windows of event time against the same process's own baseline
/// for that errno.
///
/// Three classes of errno, by configuration:
/// - `report_first` (EIO, ENOSPC, EDQUOT, EROFS): the first failure with one
///   of them is a finding, no warm-up, no baseline: the disk or the file
///   system is failing or full. EIO is `critical` (a `warning` on a character
///   device: a terminal that hung up answers reads with EIO), the others `warning`.
/// - `ordinary` (ENOENT, EAGAIN, EINTR, ERESTART*, ENOTTY, ECHILD, EEXIST,
///   EINPROGRESS, …): normal control flow — path lookups, non-blocking I/O,
///   isatty, wait. Judged only when the count in a window reaches
///   `ordinary_min` and `ordinary_factor` times the baseline.
/// - every other errno (ENOMEM, EMFILE, ENFILE, ECONNREFUSED, ETIMEDOUT,
///   EACCES, EPERM, …): a `warning` when the count in a window reaches `min`
///   and `factor` times the baseline.
///
/// The baseline of a (process, errno) is an EWMA (weight 1/8, about the last
/// 8 windows) of its failures per window, windows without a failure counted
/// as zero (decayed lazily, so quiet keys cost nothing). An EWMA of counts is
/// robust enough here because only large factors over it are judged, and a
/// deviating window is not learned, so the baseline stays what was normal
/// while an episode lasts. A process is not judged before `warmup` of event
/// time since it was first seen (fork, exec, or the start of the stream for
/// one already running): start-up probes files and features by failing.
///
/// One finding per episode (`EpisodeTracker`, key: process and errno);
/// a rate episode escalates once to `critical` when the count reaches
/// `critical_times` times the threshold that made it a deviation. 32-bit
/// (ia32) syscalls are ignored. Deterministic: event time only, aligned
/// windows, keys sorted before anything is emitted.
public final class SyscallErrorsDetector: Detector {
    public let name = "syscall-errors"
    public var observedTypes: EventTypeSet { EventTypeSet(.syscall, .fork, .exec, .exit) }
    public let exclusions: Exclusions
    public let tickPeriodNs: UInt64?

    let windowNs: UInt64
    let minCount: UInt64
    let factor: Double
    let ordinaryMin: UInt64
    let ordinaryFactor: Double
    let criticalTimes: Double
    let warmupNs: UInt64
    let holdDownNs: UInt64
    let topN: Int
    let ordinary: Set<Int32>
    let reportFirst: Set<Int32>

    public static let spec = DetectorSpec(
        name: "syscall-errors", family: "syscalls",
        judges: "a process's rate of syscalls failing with one errno against its own baseline for that errno; the first EIO, ENOSPC, EDQUOT or EROFS",
        parameters: [
            .duration("window", default: 1_000_000_000, range: 10_000_000...3_600_000_000_000,
                      doc: "aligned event-time window over which failures are counted"),
            .count("min", default: 20, range: 1...1_000_000_000,
                   doc: "failures with one errno in one window below which a process is never judged"),
            .ratio("factor", default: 8, range: 1...1_000_000,
                   doc: "failures per window over the process's baseline for the errno that make a deviation"),
            .count("ordinary_min", default: 5_000, range: 1...1_000_000_000,
                   doc: "as min, for the errnos of normal control flow (ordinary)"),
            .ratio("ordinary_factor", default: 64, range: 1...1_000_000,
                   doc: "as factor, for the errnos of normal control flow (ordinary)"),
            .ratio("critical_times", default: 16, range: 1...1_000_000,
                   doc: "a window this many times over the deviation threshold escalates the episode to critical"),
            .duration("warmup", default: 5_000_000_000, range: 0...86_400_000_000_000,
                      doc: "event time a process is learned (since its fork, exec or the start of the stream) before its rates are judged"),
            .duration("hold_down", default: 30_000_000_000, range: 0...86_400_000_000_000,
                      doc: "quiet time after which an episode is over and a new one may be reported"),
            .count("top", default: 5, range: 1...100,
                   doc: "failing syscalls named in a finding"),
            .strings("ordinary", default: ["ENOENT", "EAGAIN", "EINTR", "ERESTARTSYS", "ERESTARTNOINTR", "ERESTARTNOHAND",
                                           "ERESTART_RESTARTBLOCK", "ENOTTY", "ECHILD", "EEXIST", "EINPROGRESS", "ENODATA",
                                           "ENOSYS", "ENOTDIR", "ESRCH", "EBADF", "EINVAL", "ENXIO", "EOPNOTSUPP", "ENOTCONN", "ETIME"],
                     maxEntries: 200, doc: "errnos of normal control flow (names such as ENOENT, or E<number>): judged only against ordinary_min and ordinary_factor",
                     entry: errnoProblem),
            .strings("report_first", default: ["EIO", "ENOSPC", "EDQUOT", "EROFS"], maxEntries: 200,
                     doc: "errnos reported the first time they are seen (EIO critical, the others warning)", entry: errnoProblem),
        ],
        make: { SyscallErrorsDetector(settings: $0) }
    )

    /// What an episode is about: a process and an errno; ordered for stable output.
    struct Key: Hashable, Comparable, Codable {
        var pid: UInt32
        var errno: Int32
        /// EACCES opening a directory: a tree walk (find, du, a backup) meeting
        /// a directory it may not read, judged as normal control flow.
        var walk = false
        static func < (a: Key, b: Key) -> Bool { (a.pid, a.errno, a.walk ? 1 : 0) < (b.pid, b.errno, b.walk ? 1 : 0) }
    }

    /// Failures of one key in the current window.
    struct Window: Codable {
        var count: UInt64 = 0
        var bySyscall: [UInt32: UInt64] = [:]
        var firstTs: UInt64 = .max
        var tid: UInt32 = 0
        var charDevice = false
        var comm = ""
    }

    /// What is known of a key from earlier windows.
    struct History: Codable {
        var base: Double = 0
        /// Index (boundary / window) of the window last learned.
        var lastWindow: UInt64 = 0
        var windows: UInt64 = 0
    }

    private var current: [Key: Window] = [:]
    private var history: [Key: History] = [:]
    /// pid -> event time its program started (fork or exec) in the stream.
    private var born: [UInt32: UInt64] = [:]
    /// Processes that exited in the current window.
    private var gone: Set<UInt32> = []
    private var episodes: EpisodeTracker<Key>

    /// The EWMA weight of a new window: 1/8, about the last 8 windows.
    static let alpha = 0.125

    public convenience init() { self.init(settings: SyscallErrorsDetector.spec.defaults) }

    public init(settings: DetectorSettings) {
        windowNs = settings.duration("window")
        tickPeriodNs = windowNs
        minCount = settings.count("min")
        factor = settings.ratio("factor")
        ordinaryMin = settings.count("ordinary_min")
        ordinaryFactor = settings.ratio("ordinary_factor")
        criticalTimes = settings.ratio("critical_times")
        warmupNs = settings.duration("warmup")
        holdDownNs = settings.duration("hold_down")
        topN = Int(settings.count("top"))
        ordinary = Set(settings.strings("ordinary").compactMap(errnoNumber))
        reportFirst = Set(settings.strings("report_first").compactMap(errnoNumber))
        exclusions = settings.exclude
        episodes = EpisodeTracker(holdDownNs: holdDownNs)
    }

    public func observe(_ e: Event, context: DetectorContext) {
        guard let sc = e.as(SyscallRecord.self) else {
            switch e.payload {
            case .fork(let f) where !f.isThread:
                born[f.childPid] = context.now
            case .exec:
                // A new program: new habits, learned from the start.
                born[e.pid] = context.now
                for k in history.keys where k.pid == e.pid { history[k] = nil }
            case .exit(let x) where x.isGroupExit:
                // Forgotten once its last window is judged: a process that
                // fails and exits at once is still reported.
                gone.insert(e.pid)
            default:
                break
            }
            return
        }
        let ret = sc.ret
        // Only failures: -4095...-1 (larger negatives are addresses, e.g. of mmap).
        guard ret < 0, ret >= -4095, !sc.isCompat else { return }
        // A timed wait (futex, poll, semtimedop …) that timed out did what it was asked.
        if ret == -110, context.syscalls.classes(sc.nr).contains(.wait) { return }
        let key = Key(pid: e.pid, errno: Int32(-ret), walk: ret == -13 && SyscallErrorsDetector.opensDirectory(sc, arch: context.arch))
        var w = current[key] ?? Window(comm: context.processes.comm(e.pid))
        w.count += 1
        w.bySyscall[sc.nr, default: 0] += 1
        if e.timestamp < w.firstTs { w.firstTs = e.timestamp; w.tid = e.tid }
        if sc.fdKindValue == .char { w.charDevice = true }
        current[key] = w
    }


    /// An open(2) or openat(2) with O_DIRECTORY.
    static func opensDirectory(_ sc: SyscallRecord, arch: SyscallArch) -> Bool {
        let oDirectory: UInt64 = arch == .arm64 ? 0o40000 : 0o200000
        switch syscallName(sc.nr, arch: arch) {
        case "openat": return sc.args(2) & oDirectory != 0
        case "open": return sc.args(1) & oDirectory != 0
        default: return false
        }
    }

    public func tick(boundary: UInt64, context: DetectorContext) {
        let start = boundary >= windowNs ? boundary - windowNs : 0
        let index = boundary / windowNs
        if !current.isEmpty {
            let window = current
            current = [:]
            for key in window.keys.sorted() {
                judge(key, window[key]!, start: start, end: boundary, index: index, context: context)
            }
        }
        if !gone.isEmpty {
            // Their pids may be reused by unrelated processes.
            for k in history.keys where gone.contains(k.pid) { history[k] = nil }
            for pid in gone { born[pid] = nil }
            gone = []
        }
        _ = episodes.close(before: boundary)
        // Bound memory: a key whose baseline decayed to nothing is as good as unknown.
        if index % 64 == 0 {
            for (k, h) in history where decayed(h, to: index) < 0.01 && episodes.episode(k) == nil { history[k] = nil }
        }
    }

    /// The window in progress when the stream ends is judged as if it had
    /// ended at its aligned boundary: a failure just before the end is not lost.
    public func finish(context: DetectorContext) {
        guard context.now > 0, !current.isEmpty else { return }
        let (m, o1) = (context.now / windowNs).addingReportingOverflow(1)
        let (b, o2) = m.multipliedReportingOverflow(by: windowNs)
        tick(boundary: o1 || o2 ? .max : b, context: context)
    }

    /// The baseline of `h` at window `index`, the windows since it was last learned counted as zero.
    private func decayed(_ h: History, to index: UInt64) -> Double {
        guard index > h.lastWindow + 1, h.base > 0 else { return h.base }
        let missed = index - h.lastWindow - 1
        return missed > 400 ? 0 : h.base * pow(1 - SyscallErrorsDetector.alpha, Double(missed))
    }

    private func judge(_ key: Key, _ w: Window, start: UInt64, end: UInt64, index: UInt64, context: DetectorContext) {
        var h = history[key] ?? History(base: 0, lastWindow: index, windows: 0)
        let base = decayed(h, to: index)
        let since = born[key.pid] ?? context.firstTimestamp
        let warm = end >= since && end - since >= warmupNs
        let observed = Double(w.count)
        var severity: Severity?
        var threshold: Double = 0
        let kind: String
        if reportFirst.contains(key.errno) {
            kind = "first_error"
            severity = key.errno == 5 && !w.charDevice ? .critical : .warning
        } else {
            let isOrdinary = ordinary.contains(key.errno) || key.walk
            kind = isOrdinary ? "ordinary_error_rate" : "error_rate"
            threshold = max(Double(isOrdinary ? ordinaryMin : minCount), (isOrdinary ? ordinaryFactor : factor) * max(base, 1))
            if warm, observed >= threshold {
                severity = observed >= criticalTimes * threshold ? .critical : .warning
            }
        }
        // A deviating window is not learned: the baseline stays what was normal.
        // A key's first window seeds its baseline during the warm-up (the
        // process's start-up); after it, the process had no such failure
        // before, so the EWMA starts from zero: the first, partial window of a
        // storm cannot become its baseline.
        if severity == nil || kind == "first_error" {
            h.base = h.windows == 0 && !warm ? observed : base + SyscallErrorsDetector.alpha * (observed - base)
            h.windows += 1
        }
        h.lastWindow = index
        history[key] = h
        guard let severity else { return }
        // The episode begins with the first failure of its first window.
        let decision = episodes.observe(key, at: min(w.firstTs, end), severity: severity)
        if decision == .suppress { return }
        report(key, w, kind: kind, severity: severity, decision: decision, base: base, threshold: threshold,
               baselineWindows: h.windows, since: since, start: start, end: end, context: context)
    }

    private func report(_ key: Key, _ w: Window, kind: String, severity: Severity, decision: EpisodeTracker<Key>.Decision,
                        base: Double, threshold: Double, baselineWindows: UInt64, since: UInt64, start: UInt64, end: UInt64,
                        context: DetectorContext) {
        let comm = w.comm
        let en = errnoLabel(key.errno)
        let walking = key.walk ? " opening directories" : ""
        let calls = w.bySyscall.map { (name: syscallName($0.key, arch: context.arch), count: $0.value) }
            .sorted { ($0.count, $1.name) > ($1.count, $0.name) }
        let top = calls.prefix(topN)
        let callsText = top.map { "\($0.name) \($0.count)" }.joined(separator: ", ") + (calls.count > topN ? ", …" : "")
        let episodeStart = episodes.episode(key)?.startedAt ?? w.firstTs
        var evidence: [(String, JSON)] = [
            ("kind", .string(kind)),
            ("errno", .string(en)), ("errno_number", .int(Int64(key.errno))),
            ("failures", .uint(w.count)),
            ("syscalls", .array(top.map { .object([("syscall", .string($0.name)), ("count", .uint($0.count))]) })),
            ("first_failure_ns", .uint(w.firstTs)),
            ("window_start_ns", .uint(start)), ("window_ns", .uint(windowNs)),
            ("baseline_per_window", .double(base)), ("observed_per_window", .uint(w.count)),
        ]
        if kind != "first_error" {
            evidence += [("times_baseline", .double(Double(w.count) / max(base, 1))), ("threshold", .double(threshold)),
                         ("baseline_windows", .uint(baselineWindows)), ("process_seen_since_ns", .uint(since))]
            if key.walk { evidence.append(("opening_directories", .bool(true))) }
        } else if key.errno == 5 && w.charDevice {
            evidence.append(("note", .string("on a character device (a terminal that hung up answers with EIO): warning, not critical")))
        }
        evidence.append(("episode_started_ns", .uint(episodeStart)))
        var summary: String
        if kind == "first_error" {
            summary = "\(comm) (pid \(key.pid)) had \(w.count) syscall\(w.count == 1 ? "" : "s") fail with \(en) (\(errnoMeaning(key.errno))) in \(SettingValue.durationText(windowNs)): \(callsText)"
        } else {
            summary = "\(comm) (pid \(key.pid)) had \(w.count) syscalls fail with \(en) (\(errnoMeaning(key.errno)))\(walking) in \(SettingValue.durationText(windowNs)), " +
                (base < 0.05 ? "where it had none before" : "\(short(Double(w.count) / max(base, 1)))x its baseline of \(short(base)) per window") + ": \(callsText)"
        }
        if case .escalate(let from) = decision {
            evidence.append(("escalated_from", .string(from.rawValue)))
            summary += "; worse than when the episode began"
        }
        context.emit(Finding(ts: end, detector: name, severity: severity, pid: key.pid, tid: w.tid, comm: comm,
                             summary: summary, evidence: .object(evidence)))
    }
}

/// Linux errno numbers (the generic table, x86_64 and arm64 alike) by name.
let errnoNumbers: [String: Int32] = [
    "EPERM": 1, "ENOENT": 2, "ESRCH": 3, "EINTR": 4, "EIO": 5, "ENXIO": 6, "E2BIG": 7, "ENOEXEC": 8, "EBADF": 9,
    "ECHILD": 10, "EAGAIN": 11, "EWOULDBLOCK": 11, "ENOMEM": 12, "EACCES": 13, "EFAULT": 14, "EBUSY": 16, "EEXIST": 17,
    "EXDEV": 18, "ENODEV": 19, "ENOTDIR": 20, "EISDIR": 21, "EINVAL": 22, "ENFILE": 23, "EMFILE": 24, "ENOTTY": 25,
    "ETXTBSY": 26, "EFBIG": 27, "ENOSPC": 28, "ESPIPE": 29, "EROFS": 30, "EMLINK": 31, "EPIPE": 32, "ERANGE": 34,
    "EDEADLK": 35, "ENAMETOOLONG": 36, "ENOLCK": 37, "ENOSYS": 38, "ENOTEMPTY": 39, "ELOOP": 40, "ENOMSG": 42,
    "ENODATA": 61, "ETIME": 62, "ENOLINK": 67, "EPROTO": 71, "EOVERFLOW": 75, "EILSEQ": 84, "EUSERS": 87,
    "ENOTSOCK": 88, "EDESTADDRREQ": 89, "EMSGSIZE": 90, "EPROTOTYPE": 91, "ENOPROTOOPT": 92, "EPROTONOSUPPORT": 93,
    "EOPNOTSUPP": 95, "EAFNOSUPPORT": 97, "EADDRINUSE": 98, "EADDRNOTAVAIL": 99, "ENETDOWN": 100, "ENETUNREACH": 101,
    "ENETRESET": 102, "ECONNABORTED": 103, "ECONNRESET": 104, "ENOBUFS": 105, "EISCONN": 106, "ENOTCONN": 107,
    "ETIMEDOUT": 110, "ECONNREFUSED": 111, "EHOSTDOWN": 112, "EHOSTUNREACH": 113, "EALREADY": 114, "EINPROGRESS": 115,
    "ESTALE": 116, "EDQUOT": 122, "ECANCELED": 125, "EOWNERDEAD": 130, "ERFKILL": 132, "EHWPOISON": 133,
    "ERESTARTSYS": 512, "ERESTARTNOINTR": 513, "ERESTARTNOHAND": 514, "ENOIOCTLCMD": 515, "ERESTART_RESTARTBLOCK": 516,
    "ENOTSUPP": 524,
]

private let errnoNamesByNumber: [Int32: String] = {
    var m: [Int32: String] = [:]
    for (n, v) in errnoNumbers where n != "EWOULDBLOCK" { m[v] = n }
    return m
}()

/// An errno named in a configuration: "EMFILE", or "E24".
func errnoNumber(_ text: String) -> Int32? {
    let t = text.uppercased()
    if let n = errnoNumbers[t] { return n }
    if t.hasPrefix("E"), let n = Int32(t.dropFirst()), n > 0, n < 4096 { return n }
    return nil
}

/// Why a configured errno is not one, or nil.
@Sendable func errnoProblem(_ text: String) -> String? {
    errnoNumber(text) == nil ? "'\(text)' is not an errno (a name such as EMFILE, or E<number> from E1 to E4095)" : nil
}

/// "EMFILE", or "E<n>" for a number without a name.
func errnoLabel(_ n: Int32) -> String { errnoNamesByNumber[n] ?? "E\(n)" }

/// 3 decimals at most, no trailing zeros: "200", "12.5".
func short(_ v: Double) -> String { String(format3: v).trimmingTrailingZeros() }

/// A few words on what an errno means, for summaries.
func errnoMeaning(_ n: Int32) -> String {
    switch n {
    case 1: "operation not permitted"
    case 2: "no such file or directory"
    case 4: "interrupted"
    case 5: "I/O error"
    case 9: "bad file descriptor"
    case 11: "try again"
    case 12: "out of memory"
    case 13: "permission denied"
    case 22: "invalid argument"
    case 23: "too many open files in the system"
    case 24: "too many open files"
    case 28: "no space left on device"
    case 30: "read-only file system"
    case 32: "broken pipe"
    case 104: "connection reset"
    case 110: "timed out"
    case 111: "connection refused"
    case 113: "no route to host"
    case 122: "disk quota exceeded"
    default: "errno \(n)"
    }
}

// MARK: Checkpoints

extension SyscallErrorsDetector: CheckpointedDetector {
    public struct State: Codable {
        var current: [Key: Window]
        var history: [Key: History]
        var born: [UInt32: UInt64]
        var gone: Set<UInt32>
        var episodes: EpisodeTracker<Key>
    }

    public func problem(with state: State) -> String? {
        // Window numbers are event time over the window: far below these.
        state.history.values.contains { $0.lastWindow >= UInt64.max / 2 } ? "syscall-errors: a window number out of range" : nil
    }

    public var state: State {
        get { State(current: current, history: history, born: born, gone: gone, episodes: episodes) }
        set {
            current = newValue.current
            history = newValue.history
            born = newValue.born
            gone = newValue.gone
            episodes = newValue.episodes
        }
    }
}
