import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxDetectors

/// Synthetic process lifecycles: a supervisor (pid 100, "runsv") that forks
/// children which exec a program and end.
struct LifecycleStream {
    var records: [[UInt8]] = []
    var nextPid: UInt32 = 1000

    /// Fork by `parent` at `ts`, exec of `exe` 1 ms later, exit `lifetime` after the fork with `status`.
    @discardableResult
    mutating func run(_ exe: String, args: [String] = [], parent: UInt32 = 100, at ts: UInt64, lifetime: UInt64, status: Int32) -> UInt32 {
        let pid = nextPid
        nextPid += 1
        let argv = [exe] + args
        records.append(ForkRecord.encode(ts: ts, pid: parent, tid: parent, childPid: pid, childTid: pid, comm: "runsv"))
        records.append(ExecRecord.encode(ts: ts + 1_000_000, pid: pid, tid: pid, ppid: parent, uid: 0, argc: UInt16(argv.count),
                                         comm: String(exe.split(separator: "/").last ?? ""), filename: Array(exe.utf8),
                                         argv: argv.flatMap { Array($0.utf8) + [0] }))
        records.append(ExitRecord.encode(ts: ts + lifetime, flags: exitGroupFlag, pid: pid, tid: pid, status: status, ppid: parent,
                                         lifetimeNs: lifetime, comm: String(exe.split(separator: "/").last ?? "")))
        return pid
    }

    /// The records in time order (runs that overlap interleave), as the kernel writes them.
    var timeOrdered: LifecycleStream {
        var c = self
        c.records = records.enumerated().sorted {
            let a = $0.element.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            let b = $1.element.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
            return a != b ? a < b : $0.offset < $1.offset
        }.map(\.element)
        return c
    }

    /// `n` runs, each started `gap` after the previous one ended.
    mutating func loop(_ exe: String, args: [String] = [], parent: UInt32 = 100, n: Int, from start: UInt64, lifetime: UInt64,
                       gap: UInt64, status: Int32) -> UInt64 {
        var ts = start
        for _ in 0..<n {
            run(exe, args: args, parent: parent, at: ts, lifetime: lifetime, status: status)
            ts += lifetime + gap
        }
        return ts
    }
}

let segv: Int32 = 11
func exitStatus(_ code: Int32) -> Int32 { code << 8 }

final class CrashLoopTests: XCTestCase {
    let s: UInt64 = 1_000_000_000
    let snapshot = ProcessSnapshot(timestamp: 0, processes: [
        ProcessRecord(pid: 100, ppid: 1, uid: 0, comm: "runsv", exe: "/usr/bin/runsv", argv: ["runsv", "app"]),
        ProcessRecord(pid: 200, ppid: 1, uid: 0, comm: "make", exe: "/usr/bin/make", argv: ["make", "-k"]),
    ])

    func run(_ st: LifecycleStream, settings: DetectorSettings = CrashLoopDetector.spec.defaults) -> [Finding] {
        detect(st.records, detectors: [CrashLoopDetector(settings: settings)], snapshot: snapshot)
    }

    func testSegfaultsRestartedBySupervisorAreACriticalLoop() throws {
        var st = LifecycleStream()
        _ = st.loop("/usr/bin/app", args: ["--port", "80"], n: 5, from: 1_000 * s, lifetime: 5_000_000, gap: s, status: segv)
        let f = run(st)
        XCTAssertEqual(f.count, 1, "one finding per episode: \(f.map(\.jsonLine))")
        let x = try XCTUnwrap(f.first)
        XCTAssertEqual(x.severity, .critical)
        XCTAssertEqual(x.evidence["exe"]?.stringValue, "/usr/bin/app")
        XCTAssertEqual(x.evidence["args"]?.stringValue, "--port 80")
        XCTAssertEqual(x.evidence["failures"]?.uintValue, 3)
        XCTAssertEqual(x.evidence["restarts"]?.uintValue, 2)
        XCTAssertEqual(x.evidence["supervisor_pid"]?.uintValue, 100)
        XCTAssertEqual(x.evidence["supervisor_comm"]?.stringValue, "runsv")
        XCTAssertEqual(x.evidence["endings"]?.arrayValue?.first?["ending"]?.stringValue, "SIGSEGV")
        XCTAssertEqual(x.evidence["restart_delay_min_ns"]?.uintValue, s)
        XCTAssertTrue(x.summary.contains("3x SIGSEGV"), x.summary)
        // At the third crash: fork + 5 ms.
        XCTAssertEqual(x.ts, 1_000 * s + 2 * (5_000_000 + s) + 5_000_000)
    }

    func testServiceExitingNonZeroAfterASecondIsAWarning() throws {
        var st = LifecycleStream()
        _ = st.loop("/usr/sbin/daemon", n: 4, from: 1_000 * s, lifetime: 1_500_000_000, gap: 100_000_000, status: exitStatus(1))
        let f = run(st)
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(f.first?.severity, .warning)
        XCTAssertEqual(f.first?.evidence["kind"]?.stringValue, "failing-exits")
        XCTAssertEqual(f.first?.evidence["endings"]?.arrayValue?.first?["ending"]?.stringValue, "exit 1")
    }

    func testQuickNonZeroAnswersOfToolsAreNotFailures() {
        // grep run 200 times by make (same parent, same arguments), exit 1 in 2 ms, 10 ms apart.
        var st = LifecycleStream()
        _ = st.loop("/usr/bin/grep", args: ["-q", "needle", "a.txt"], parent: 200, n: 200, from: 1_000 * s, lifetime: 2_000_000,
                    gap: 10_000_000, status: exitStatus(1))
        XCTAssertEqual(run(st), [])
    }

    func testAScriptRerunningAFailingBuildAtOnceIsNotALoop() {
        // make -k runs 3 s and exits 2, run again by the same shell within a millisecond.
        var st = LifecycleStream()
        _ = st.loop("/usr/bin/make", args: ["-k"], parent: 50, n: 5, from: 1_000 * s, lifetime: 3 * s, gap: 500_000, status: exitStatus(2))
        XCTAssertEqual(run(st), [])
        // The same with a supervisor's delay is a loop (a retry loop that keeps failing).
        var slow = LifecycleStream()
        _ = slow.loop("/usr/bin/make", args: ["-k"], parent: 50, n: 5, from: 1_000 * s, lifetime: 3 * s, gap: s, status: exitStatus(2))
        XCTAssertEqual(run(slow).count, 1)
    }

    func testAPoolOfWorkersEndingSessionsIsNotALoop() throws {
        // A server (pid 100) runs per-connection processes, two or three at a
        // time, that last 2-5 s and exit 255 when their session ends badly.
        var st = LifecycleStream()
        var ts = 1_000 * s
        for i in 0..<12 {
            st.run("/usr/sbin/sshd-session", args: ["-R"], at: ts, lifetime: 2 * s + UInt64(i % 3) * s, status: exitStatus(255))
            ts += 800_000_000
        }
        XCTAssertEqual(run(st.timeOrdered), [], "sessions overlap: a pool, not a restarted service")
        // One at a time, the same sessions would be a loop: what makes the difference is the overlap.
        var alone = LifecycleStream()
        _ = alone.loop("/usr/sbin/sshd-session", args: ["-R"], n: 4, from: 1_000 * s, lifetime: 2 * s, gap: s, status: exitStatus(255))
        XCTAssertEqual(run(alone).count, 1)
        // The same pool's processes dying by SIGSEGV, each replaced, is a crash loop.
        var crashing = LifecycleStream()
        ts = 1_000 * s
        for i in 0..<12 {
            crashing.run("/usr/sbin/nginx", args: ["-g", "daemon off;"], at: ts, lifetime: 2 * s + UInt64(i % 3) * s, status: segv)
            ts += 800_000_000
        }
        let f = try XCTUnwrap(run(crashing.timeOrdered).first)
        XCTAssertEqual(f.severity, .critical)
    }

    func testStopRequestsAreNotFailures() {
        var st = LifecycleStream()
        var ts = st.loop("/usr/bin/app", n: 5, from: 1_000 * s, lifetime: 2 * s, gap: s, status: 15)  // SIGTERM
        ts = st.loop("/usr/bin/yes", n: 5, from: ts, lifetime: 1_000_000, gap: s, status: 13)  // SIGPIPE
        _ = st.loop("/usr/bin/app", n: 5, from: ts, lifetime: 2 * s, gap: s, status: 2)  // SIGINT
        XCTAssertEqual(run(st), [])
    }

    func testTwoServicesOfOneBinaryAreSeparate() {
        // Two instances of one binary with different arguments, each failing twice: no program failed 3 times.
        var st = LifecycleStream()
        var ts = 1_000 * s
        for _ in 0..<2 {
            st.run("/usr/bin/app", args: ["--config", "a"], at: ts, lifetime: 5_000_000, status: segv)
            st.run("/usr/bin/app", args: ["--config", "b"], at: ts + 100_000_000, lifetime: 5_000_000, status: segv)
            ts += s
        }
        XCTAssertEqual(run(st), [])
        // The same binary under two supervisors.
        var two = LifecycleStream()
        ts = 1_000 * s
        for _ in 0..<2 {
            two.run("/usr/bin/app", parent: 100, at: ts, lifetime: 5_000_000, status: segv)
            two.run("/usr/bin/app", parent: 300, at: ts + 100_000_000, lifetime: 5_000_000, status: segv)
            ts += s
        }
        XCTAssertEqual(run(two), [])
    }

    func testCrashesOutsideTheWindowAreNotALoop() {
        var st = LifecycleStream()
        _ = st.loop("/usr/bin/app", n: 5, from: 1_000 * s, lifetime: 5_000_000, gap: 61 * s, status: segv)
        XCTAssertEqual(run(st), [])
    }

    func testWarmUpNeedsRestartsNotOnlyCrashes() {
        // Three crashing instances running side by side (none a restart of another): not a loop.
        var st = LifecycleStream()
        for i in 0..<3 { st.run("/usr/bin/app", at: 1_000 * s + UInt64(i) * 1_000, lifetime: 2 * s, status: segv) }
        XCTAssertEqual(run(st), [])
    }

    func testEpisodeClosesAfterHoldDownAndReopens() {
        var st = LifecycleStream()
        var ts = st.loop("/usr/bin/app", n: 6, from: 1_000 * s, lifetime: 5_000_000, gap: s, status: segv)
        // Quiet for longer than the hold-down (120 s), with other traffic moving time on.
        st.run("/usr/bin/true", parent: 1, at: ts + 200 * s, lifetime: 1_000_000, status: 0)
        ts += 300 * s
        _ = st.loop("/usr/bin/app", n: 3, from: ts, lifetime: 5_000_000, gap: s, status: segv)
        let f = run(st)
        XCTAssertEqual(f.count, 2, "\(f.map(\.jsonLine))")
        XCTAssertEqual(f.last?.evidence["failures_total"]?.uintValue, 3, "the old history was forgotten")
    }

    func testEscalatesOnceFromExitsToSignals() {
        var st = LifecycleStream()
        var ts = st.loop("/usr/bin/app", n: 3, from: 1_000 * s, lifetime: 2 * s, gap: s, status: exitStatus(1))
        ts = st.loop("/usr/bin/app", n: 6, from: ts, lifetime: 2 * s, gap: s, status: 6)  // SIGABRT
        let f = run(st)
        XCTAssertEqual(f.map(\.severity), [.warning, .critical])
        XCTAssertEqual(f.last?.evidence["escalated_from"]?.stringValue, "warning")
    }

    func testForkedWorkersOfAMasterAreAProgram() throws {
        // A master (pid 100) re-forks a worker that segfaults; the worker does not exec.
        var records: [[UInt8]] = []
        var ts = 1_000 * s
        for i in 0..<3 {
            let pid = UInt32(2000 + i)
            records.append(ForkRecord.encode(ts: ts, pid: 100, tid: 100, childPid: pid, childTid: pid, comm: "runsv"))
            records.append(ExitRecord.encode(ts: ts + 10_000_000, flags: exitGroupFlag, pid: pid, tid: pid, status: 7, ppid: 100, lifetimeNs: 10_000_000, comm: "runsv"))
            ts += s
        }
        let f = detect(records, detectors: [CrashLoopDetector()], snapshot: snapshot)
        let x = try XCTUnwrap(f.first)
        XCTAssertEqual(x.evidence["exe"]?.stringValue, "/usr/bin/runsv", "the master's program, from the snapshot")
        XCTAssertEqual(x.evidence["endings"]?.arrayValue?.first?["ending"]?.stringValue, "SIGBUS")
    }

    func testHostileTimestampsDoNotTrap() {
        var st = LifecycleStream()
        _ = st.loop("/usr/bin/app", n: 4, from: UInt64.max - 10 * s, lifetime: 5_000_000, gap: s, status: segv)
        st.run("/usr/bin/app", at: 0, lifetime: 5_000_000, status: segv)
        st.run("/usr/bin/app", at: UInt64.max - 6_000_000, lifetime: 5_000_000, status: segv)
        let f = run(st)
        XCTAssertEqual(f.count, 1)
    }

    func testSettingsAreDeclaredAndApplied() {
        var settings = CrashLoopDetector.spec.defaults
        XCTAssertNil(settings.set("burst", .count(5)))
        var st = LifecycleStream()
        _ = st.loop("/usr/bin/app", n: 4, from: 1_000 * s, lifetime: 5_000_000, gap: s, status: segv)
        XCTAssertEqual(run(st, settings: settings), [])
        XCTAssertNotNil(DetectorRegistry.spec("crash-loop"))
    }
}
