import FlightboxEvents

/// Crash loops: the same program failing again and again, restarted in
/// between by the same parent (a supervisor: systemd, a shell `while` loop,
/// a master process re-forking its workers).
///
/// A program is identified by its executable (the exec's filename; the
/// snapshot's exe, or the comm, for processes that started before the trace),
/// its arguments and the parent that started it: two services of one binary
/// differ by their arguments or their supervisor. A process ends in failure
/// when it is
/// - killed by a crash signal (SIGSEGV, SIGABRT, SIGBUS, SIGILL, SIGFPE,
///   SIGSYS, SIGTRAP, SIGKILL as the OOM killer or a watchdog sends it),
///   whatever its lifetime: no tool crashes by design; or
/// - ends with a non-zero exit code after running at least `min_lifetime`:
///   it ran like a service and gave up. A tool that answers "no" at once
///   (`grep` 1, `test` 1, a failing `make` recipe) lives milliseconds and is
///   never counted. SIGTERM, SIGINT, SIGHUP and SIGPIPE are requests to stop,
///   not failures.
///
/// A restart is an instance started after the program's previous failure.
/// After an exit code it counts only if it came at least `min_restart_delay`
/// later: supervisors wait before restarting (systemd's RestartSec 100 ms,
/// Docker 100 ms doubling, runit and s6 1 s, Kubernetes 10 s doubling) so as
/// not to spin, while a script that runs a failing `make` or test suite again
/// does so at once. Nor does an exit code count toward a loop when other
/// instances of the program were alive (at its start or its end): a pool of
/// workers or a server's per-connection processes, whose exit codes report
/// how a job or session ended. After a signal death any restart counts.
///
/// `burst` failures of one program within `window`, each but the first in an
/// instance started after the previous failure (a restart), is a crash loop:
/// critical when signal deaths are at least half of them, a warning when
/// they are exit codes. The defaults (3 in 60 s) take in systemd's
/// StartLimitBurst=5 in 10 s and supervisors that back off between restarts.
/// One finding per episode; the episode ends after `hold_down` without a failure.
public final class CrashLoopDetector: Detector {
    public let name = "crash-loop"
    public var observedTypes: EventTypeSet { EventTypeSet(.fork, .exec, .exit) }
    public let exclusions: Exclusions
    let windowNs: UInt64
    let burst: Int
    let minLifetimeNs: UInt64
    let holdDownNs: UInt64
    let minRestartDelayNs: UInt64

    public static let spec = DetectorSpec(
        name: "crash-loop", family: "process",
        judges: "per program (executable, arguments, parent): repeated signal deaths, or non-zero exits of processes that ran like services, with restarts in between",
        parameters: [
            .duration("window", default: 60_000_000_000, range: 1_000_000_000...86_400_000_000_000,
                      doc: "failures of one program are counted over this much event time"),
            .count("burst", default: 3, range: 2...10_000,
                   doc: "failures in the window, each but the first after a restart, that make a crash loop"),
            .duration("min_lifetime", default: 1_000_000_000, range: 0...86_400_000_000_000,
                      doc: "a non-zero exit counts only after running this long (a quick non-zero answer of a tool is not a failure); signal deaths count at any lifetime"),
            .duration("min_restart_delay", default: 50_000_000, range: 0...3_600_000_000_000,
                      doc: "after a non-zero exit, a restart sooner than this is a script running the program again, not a supervisor (signal deaths: any delay)"),
            .duration("hold_down", default: 120_000_000_000, range: 0...86_400_000_000_000,
                      doc: "quiet time after which a crash loop is over and the next one is reported again"),
        ],
        make: { CrashLoopDetector(settings: $0) }
    )

    /// With the declared defaults.
    public convenience init() { self.init(settings: CrashLoopDetector.spec.defaults) }

    public init(settings: DetectorSettings) {
        windowNs = max(settings.duration("window"), 1)
        burst = Int(settings.count("burst"))
        minLifetimeNs = settings.duration("min_lifetime")
        holdDownNs = settings.duration("hold_down")
        minRestartDelayNs = settings.duration("min_restart_delay")
        exclusions = settings.exclude
        episodes = EpisodeTracker(holdDownNs: holdDownNs)
    }

    /// Ticks close episodes and forget programs that stopped failing.
    public var tickPeriodNs: UInt64? { 10_000_000_000 }

    /// What a program is: the same key for every restart of it.
    struct Program: Hashable, Comparable, Codable {
        var exe: String
        var args: String
        var parent: UInt32
        static func < (a: Program, b: Program) -> Bool { (a.exe, a.args, a.parent) < (b.exe, b.args, b.parent) }
    }

    /// A live process: the program it runs and since when.
    struct Instance: Codable {
        var program: Program
        var startedAt: UInt64
        /// Started after a failure of its program: a restart.
        var restart: Bool
        /// How long after that failure (0 when not a restart).
        var delayNs: UInt64 = 0
        /// Other instances of the program were alive when it started.
        var concurrent = false
    }

    /// One failed end of a program.
    struct Failure: Codable, Equatable {
        var ts: UInt64
        var pid: UInt32
        var code: Int32
        var signal: Int32
        var lifetimeNs: UInt64
        var restart: Bool
        var delayNs: UInt64
        /// Other instances were alive at its start or its end.
        var concurrent: Bool
    }

    /// A program's recent failures, oldest first, within the window.
    struct History: Codable {
        var failures: [Failure] = []
        var lastFailureAt: UInt64 = 0
        /// Failures since the program was first seen failing (the window's included).
        var total: UInt64 = 0
    }

    private var instances: [UInt32: Instance] = [:]
    /// Live instances per program (of the processes seen starting).
    private var live: [Program: Int] = [:]
    private var histories: [Program: History] = [:]
    private var episodes: EpisodeTracker<Program>
    /// The trace's process snapshot by pid, built on first use.
    private var snapshot: [UInt32: Known]?

    /// A process of the trace's snapshot, as a program.
    struct Known: Codable {
        var exe: String
        var ppid: UInt32
        var args: String
    }

    /// Signals that end a process that crashed or was killed for cause.
    static let crashSignals: Set<Int32> = [4, 5, 6, 7, 8, 9, 11, 31]
    static let signalNames: [Int32: String] = [
        1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE",
        9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM", 24: "SIGXCPU", 25: "SIGXFSZ", 31: "SIGSYS",
    ]
    static func signalName(_ s: Int32) -> String { signalNames[s] ?? "signal \(s)" }

    /// Arguments after argv[0], as one string of bounded length (an identity, not a record).
    static func argsText(_ argv: [String]) -> String {
        let s = argv.dropFirst().joined(separator: " ")
        return s.utf8.count <= 256 ? s : String(decoding: s.utf8.prefix(256), as: UTF8.self)
    }

    public func observe(_ e: Event, context: DetectorContext) {
        switch e.payload {
        case .fork(let f):
            guard !f.isThread else { return }
            // A child that does not exec runs its parent's program (a worker
            // forked by a master): its parent is the one that restarts it.
            let parentProgram = instances[e.pid]?.program ?? program(ofUnknown: e.pid, comm: context.processes.comm(e.pid), context: context)
            let p = Program(exe: parentProgram.exe, args: parentProgram.args, parent: e.pid)
            start(f.childPid, instance(p, at: e.timestamp))
        case .exec(let x):
            let exe = x.filenameLen > 0 ? x.filename : x.comm
            let parent = instances[e.pid]?.program.parent ?? x.ppid
            let p = Program(exe: exe, args: CrashLoopDetector.argsText(x.argv), parent: parent)
            // A restart is timed from the fork: a supervisor's delay comes before it.
            var i = instance(p, at: e.timestamp)
            if let forked = instances[e.pid], i.restart, let h = histories[p], forked.startedAt >= h.lastFailureAt {
                i.delayNs = forked.startedAt - h.lastFailureAt
            }
            start(e.pid, i)
        case .exit(let x):
            guard x.isGroupExit else { return }
            let instance = instances.removeValue(forKey: e.pid)
            let others = instance.map { stop($0.program) } ?? 0
            exited(e, x, instance: instance, othersAlive: others > 0, context: context)
        default:
            return
        }
    }

    /// `pid` runs `i` now (a fork, or an exec replacing what it ran).
    private func start(_ pid: UInt32, _ i: Instance) {
        var i = i
        if let old = instances[pid] { _ = stop(old.program) }
        let n = live[i.program, default: 0]
        i.concurrent = n > 0
        live[i.program] = n + 1
        instances[pid] = i
    }

    /// One instance of `p` ended; returns how many are still alive.
    private func stop(_ p: Program) -> Int {
        let n = max(live[p, default: 1] - 1, 0)
        live[p] = n > 0 ? n : nil
        return n
    }

    /// An instance of `p` started at `ts`: a restart when its program failed
    /// before and that failure is still in the window.
    private func instance(_ p: Program, at ts: UInt64) -> Instance {
        guard let h = histories[p], !h.failures.isEmpty, ts >= h.lastFailureAt, ts - h.lastFailureAt <= windowNs else {
            return Instance(program: p, startedAt: ts, restart: false)
        }
        return Instance(program: p, startedAt: ts, restart: true, delayNs: ts - h.lastFailureAt)
    }

    /// A process the stream never showed starting: from the snapshot, else its comm.
    private func program(ofUnknown pid: UInt32, comm: String, context: DetectorContext) -> Program {
        if snapshot == nil {
            var m: [UInt32: Known] = [:]
            for p in context.snapshot?.processes ?? [] {
                m[p.pid] = Known(exe: p.exe.isEmpty ? p.comm : p.exe, ppid: p.ppid, args: CrashLoopDetector.argsText(p.argv))
            }
            snapshot = m
        }
        if let s = snapshot?[pid] { return Program(exe: s.exe, args: s.args, parent: s.ppid) }
        return Program(exe: comm, args: "", parent: 0)
    }

    private func exited(_ e: Event, _ x: ExitRecord, instance: Instance?, othersAlive: Bool, context: DetectorContext) {
        let signal = x.status & 0x7f
        let code = (x.status >> 8) & 0xff
        let failed: Bool
        if signal != 0 {
            failed = CrashLoopDetector.crashSignals.contains(signal)
        } else {
            failed = code != 0 && x.lifetimeNs >= minLifetimeNs
        }
        guard failed else { return }
        let program = instance?.program ?? {
            var p = self.program(ofUnknown: e.pid, comm: x.comm, context: context)
            if p.parent == 0 { p.parent = x.ppid }
            return p
        }()
        var h = histories[program] ?? History()
        h.failures.append(Failure(ts: e.timestamp, pid: e.pid, code: code, signal: signal, lifetimeNs: x.lifetimeNs,
                                  restart: instance?.restart ?? false, delayNs: instance?.delayNs ?? 0,
                                  concurrent: othersAlive || (instance?.concurrent ?? false)))
        h.lastFailureAt = max(h.lastFailureAt, e.timestamp)
        h.total += 1
        // The window ends at the newest failure; timestamps running backwards never drop one.
        let cutoff = h.lastFailureAt >= windowNs ? h.lastFailureAt - windowNs : 0
        h.failures.removeAll { $0.ts < cutoff }
        // Bounded: only the last `burst * 4` failures are kept as evidence.
        if h.failures.count > burst * 4 { h.failures.removeFirst(h.failures.count - burst * 4) }
        histories[program] = h
        judge(program, h, e, context: context)
    }

    private func judge(_ program: Program, _ h: History, _ e: Event, context: DetectorContext) {
        let restarts = h.failures.dropFirst().filter { $0.restart && ($0.signal != 0 || ($0.delayNs >= minRestartDelayNs && !$0.concurrent)) }.count
        guard h.failures.count >= burst, restarts >= burst - 1 else { return }
        let signals = h.failures.filter { $0.signal != 0 }.count
        let severity: Severity = signals * 2 >= h.failures.count ? .critical : .warning
        let decision = episodes.observe(program, at: e.timestamp, severity: severity)
        if decision == .suppress { return }
        let start = episodes.episode(program)?.startedAt ?? e.timestamp
        let supervisor = context.processes.comm(program.parent)
        let endings = CrashLoopDetector.endings(h.failures)
        let span = h.failures.last!.ts >= h.failures.first!.ts ? h.failures.last!.ts - h.failures.first!.ts : 0
        let lifetimes = h.failures.map(\.lifetimeNs).sorted()
        var ev: [(String, JSON)] = [
            ("kind", .string(signals * 2 >= h.failures.count ? "crash-signals" : "failing-exits")),
            ("exe", .string(program.exe)), ("args", .string(program.args)),
            ("supervisor_pid", .uint(UInt64(program.parent))), ("supervisor_comm", .string(supervisor)),
            ("failures", .uint(UInt64(h.failures.count))), ("restarts", .uint(UInt64(restarts))),
            ("failures_total", .uint(h.total)), ("window_ns", .uint(windowNs)), ("span_ns", .uint(span)),
            ("endings", .array(endings.map { .object([("ending", .string($0.ending)), ("count", .uint(UInt64($0.count)))]) })),
            ("lifetime_min_ns", .uint(lifetimes.first!)), ("lifetime_median_ns", .uint(lifetimes[(lifetimes.count - 1) / 2])),
            ("lifetime_max_ns", .uint(lifetimes.last!)),
            ("restart_delay_min_ns", .uint(h.failures.dropFirst().filter(\.restart).map(\.delayNs).min() ?? 0)),
            ("pids", .array(h.failures.suffix(5).map { .uint(UInt64($0.pid)) })),
            ("episode_start_ns", .uint(start)),
        ]
        if case .escalate(let from) = decision { ev.append(("escalated_from", .string(from.rawValue))) }
        let how = endings.map { "\($0.count)x \($0.ending)" }.joined(separator: ", ")
        let summary = "\(program.exe) is in a crash loop: \(h.failures.count) failures (\(how)) in \(formatDuration(span)), restarted \(restarts) times by \(supervisor) (pid \(program.parent))"
        context.emit(Finding(ts: e.timestamp, detector: name, severity: severity, pid: e.pid, tid: e.tid,
                             comm: context.processes.comm(e.pid), summary: summary, evidence: .object(ev)))
    }

    /// How the failures ended ("SIGSEGV", "exit 1"), by count (most first), then name.
    static func endings(_ failures: [Failure]) -> [(ending: String, count: Int)] {
        var counts: [String: Int] = [:]
        for f in failures { counts[f.signal != 0 ? signalName(f.signal) : "exit \(f.code)", default: 0] += 1 }
        return counts.map { (ending: $0.key, count: $0.value) }
            .sorted { $0.count != $1.count ? $0.count > $1.count : $0.ending < $1.ending }
    }

    /// Forgets programs whose last failure left the window (order-free), and ends quiet episodes.
    public func tick(boundary: UInt64, context: DetectorContext) {
        if histories.values.contains(where: { $0.lastFailureAt.addingClamped(windowNs) < boundary }) {
            histories = histories.filter { $0.value.lastFailureAt.addingClamped(windowNs) >= boundary }
        }
        _ = episodes.close(before: boundary)
    }
}

extension CrashLoopDetector: CheckpointedDetector {
    /// The snapshot table goes too: built from the first trace's snapshot,
    /// it must not be rebuilt from a later segment's.
    public struct State: Codable {
        var instances: [UInt32: Instance]
        var live: [Program: Int]
        var histories: [Program: History]
        var episodes: EpisodeTracker<Program>
        var snapshot: [UInt32: Known]?
    }

    public var state: State {
        get { State(instances: instances, live: live, histories: histories, episodes: episodes, snapshot: snapshot) }
        set {
            instances = newValue.instances
            live = newValue.live
            histories = newValue.histories
            episodes = newValue.episodes
            snapshot = newValue.snapshot
        }
    }
}
