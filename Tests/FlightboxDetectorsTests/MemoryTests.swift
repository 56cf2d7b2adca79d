import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxDetectors

private let s: UInt64 = 1_000_000_000
private let ms: UInt64 = 1_000_000

/// The memory detector with its defaults, some parameters changed.
private func memory(_ changes: [(String, SettingValue)] = [], exclude: Exclusions = Exclusions()) -> MemoryDetector {
    var settings = MemoryDetector.spec.defaults
    for (k, v) in changes { XCTAssertNil(settings.set(k, v)) }
    settings.exclude = exclude
    return MemoryDetector(settings: settings)
}

private func oom(ts: UInt64, pid: UInt32 = 42, trigger: UInt32 = 42, memcg: String = "batch", comm: String = "db") -> [UInt8] {
    OOMRecord.encode(ts: ts, pid: pid, tid: pid, totalVm: 12_000, anonRss: 8_000, fileRss: 100, shmemRss: 3, pgtablesBytes: 65536,
                     memcgId: 77, uid: 1000, oomScoreAdj: 500, triggerPid: trigger, triggerTid: trigger, comm: comm,
                     triggerComm: trigger == pid ? comm : "loader", memcg: memcg)
}

private func reclaim(ts: UInt64, pid: UInt32, duration: UInt64, memcg: Bool = true, pages: UInt64 = 10) -> [UInt8] {
    ReclaimRecord.encode(ts: ts, flags: memcg ? reclaimMemcgFlag : 0, pid: pid, tid: pid, durationNs: duration, reclaimed: pages)
}

/// One summary for pid in window w (written at w s + 600 ms, spanning 500 ms).
private func faults(window w: UInt64, pid: UInt32, major: UInt64 = 0, minor: UInt64 = 0) -> [UInt8] {
    FaultsRecord.encode(ts: w * s + 600 * ms, pid: pid, tid: pid, firstTs: w * s + 100 * ms, user: major &+ minor, major: major, minor: minor, comm: "db")
}

/// A tick-forcing event (a gauge of another kind) at time ts.
private func clock(_ ts: UInt64) -> [UInt8] { EventEncoder.gauge(ts: ts, kind: .load, value: 1, limit: 0) }

final class MemoryTests: XCTestCase {
    let snapshot = ProcessSnapshot(timestamp: 0, processes: [
        ProcessRecord(pid: 42, ppid: 1, uid: 0, comm: "db", exe: "/db", argv: ["db"]),
        ProcessRecord(pid: 43, ppid: 1, uid: 0, comm: "web", exe: "/web", argv: ["web"]),
    ])

    func testEveryOOMKillIsCriticalAtOnceWithItsEvidence() throws {
        let f = detect([oom(ts: 5 * ms), oom(ts: 7 * ms, pid: 43, trigger: 44, memcg: "web.slice", comm: "web")], detectors: [memory()], snapshot: snapshot)
        XCTAssertEqual(f.count, 2, "one per kill, no warm-up, no episode merging")
        let k = try XCTUnwrap(f.first)
        XCTAssertEqual(k.severity, .critical)
        XCTAssertEqual(k.detector, "memory")
        XCTAssertEqual(k.ts, 5 * ms)
        XCTAssertEqual(k.pid, 42)
        XCTAssertEqual(k.comm, "db")
        XCTAssertEqual(k.evidence["victim_pid"]?.uintValue, 42)
        XCTAssertEqual(k.evidence["trigger_pid"]?.uintValue, 42)
        XCTAssertEqual(k.evidence["anon_rss_bytes"]?.uintValue, 8_000 * 4096)
        XCTAssertEqual(k.evidence["file_rss_bytes"]?.uintValue, 100 * 4096)
        XCTAssertEqual(k.evidence["shmem_rss_bytes"]?.uintValue, 3 * 4096)
        XCTAssertEqual(k.evidence["total_vm_bytes"]?.uintValue, 12_000 * 4096)
        XCTAssertEqual(k.evidence["cgroup"]?.stringValue, "batch")
        XCTAssertEqual(k.evidence["memcg_id"]?.uintValue, 77)
        XCTAssertEqual(k.evidence["oom_score_adj"]?.intValue, 500)
        XCTAssertTrue(k.summary.contains("OOM-killed db (pid 42) in memory cgroup batch"), k.summary)
        XCTAssertTrue(k.summary.contains("on its own allocation"), k.summary)
        XCTAssertEqual(f[1].evidence["trigger_comm"]?.stringValue, "loader")
        XCTAssertTrue(f[1].summary.contains("an allocation by loader (pid 44)"), f[1].summary)
    }

    func testAnOOMKillInAnExcludedCgroupIsDropped() {
        let byName = memory(exclude: Exclusions(cgroups: ["batch"]))
        XCTAssertTrue(detect([oom(ts: 1)], detectors: [byName], snapshot: snapshot).isEmpty)
        let byPath = memory(exclude: Exclusions(cgroups: ["/sys/fs/cgroup/memory/batch"]))
        XCTAssertTrue(detect([oom(ts: 1)], detectors: [byPath], snapshot: snapshot).isEmpty, "a path whose last component is the memcg")
        XCTAssertEqual(detect([oom(ts: 1, memcg: "other")], detectors: [byPath], snapshot: snapshot).count, 1)
    }

    func testReclaimStallsOpenOneEpisodeThenHoldDownThenANewOne() throws {
        var recs: [[UInt8]] = []
        // Windows 1..5: db stalls 150 ms a window in memcg reclaim (15%), web 20 ms.
        for w: UInt64 in 1...5 {
            for i: UInt64 in 0..<3 { recs.append(reclaim(ts: w * s + i * 100 * ms, pid: 42, duration: 50 * ms)) }
            recs.append(reclaim(ts: w * s + 500 * ms, pid: 43, duration: 20 * ms))
        }
        // Quiet for 40 s (more than the 30 s hold-down), then again.
        recs.append(clock(20 * s))
        recs.append(reclaim(ts: 46 * s, pid: 43, duration: 300 * ms))
        recs.append(clock(48 * s))
        let f = detect(recs, detectors: [memory()], snapshot: snapshot)
        XCTAssertEqual(f.count, 2, f.map(\.jsonLine).joined(separator: "\n"))
        let first = try XCTUnwrap(f.first)
        XCTAssertEqual(first.severity, .warning)
        XCTAssertEqual(first.ts, 2 * s, "at the end of the first window")
        XCTAssertEqual(first.pid, 42, "the process that stalled most")
        XCTAssertEqual(first.evidence["scope"]?.stringValue, "memcg")
        XCTAssertEqual(first.evidence["stalled_ns"]?.uintValue, 170 * ms)
        XCTAssertEqual(first.evidence["stalls"]?.uintValue, 4)
        XCTAssertEqual(first.evidence["window_start_ns"]?.uintValue, 1 * s)
        let top = first.evidence["top"]?.arrayValue ?? []
        XCTAssertEqual(top.compactMap { $0["pid"]?.uintValue }, [42, 43])
        XCTAssertEqual(top.first?["comm"]?.stringValue, "db")
        XCTAssertTrue(first.summary.contains("memory-cgroup reclaim"), first.summary)
        XCTAssertEqual(f[1].ts, 47 * s)
        XCTAssertEqual(f[1].pid, 43)
        XCTAssertEqual(f[1].evidence["max_stall_ns"]?.uintValue, 300 * ms)
    }

    func testDirectAndMemcgReclaimAreSeparateEpisodes() {
        let recs = [reclaim(ts: s, pid: 42, duration: 200 * ms, memcg: false), reclaim(ts: s + 1, pid: 43, duration: 200 * ms), clock(3 * s)]
        let f = detect(recs, detectors: [memory()], snapshot: snapshot)
        XCTAssertEqual(f.map { $0.evidence["scope"]?.stringValue ?? "" }, ["direct", "memcg"], "direct first: a stable order")
    }

    func testShortStallsAreNotAFinding() {
        // 200 stalls of 40 us (8 ms, 0.8% of a second) every second for a minute: a busy cgroup, not a stall.
        var recs: [[UInt8]] = []
        for w: UInt64 in 0..<60 { for i: UInt64 in 0..<200 { recs.append(reclaim(ts: w * s + i * 4 * ms, pid: 42, duration: 40_000)) } }
        XCTAssertTrue(detect(recs, detectors: [memory()], snapshot: snapshot).isEmpty)
    }

    func testReclaimEscalatesOnceToCritical() {
        var recs: [[UInt8]] = []
        recs.append(reclaim(ts: s, pid: 42, duration: 200 * ms))
        // Two threads stalled most of each of the next windows: 1.2 thread-seconds a second.
        for w: UInt64 in 2...4 {
            recs.append(reclaim(ts: w * s, pid: 42, duration: 600 * ms))
            recs.append(reclaim(ts: w * s + 1, pid: 43, duration: 600 * ms))
        }
        recs.append(clock(6 * s))
        let f = detect(recs, detectors: [memory()], snapshot: snapshot)
        XCTAssertEqual(f.map(\.severity), [.warning, .critical], "opened, escalated once, then suppressed")
        XCTAssertEqual(f.last?.evidence["escalated_from"]?.stringValue, "warning")
        XCTAssertEqual(f.last?.evidence["episode_started_ns"]?.uintValue, 2 * s)
    }

    func testThresholdsComeFromSettings() {
        let recs = [reclaim(ts: s, pid: 42, duration: 60 * ms), clock(3 * s)]
        XCTAssertTrue(detect(recs, detectors: [memory()], snapshot: snapshot).isEmpty)
        XCTAssertEqual(detect(recs, detectors: [memory([("stall_share", .ratio(0.05))])], snapshot: snapshot).count, 1)
        XCTAssertEqual(detect(recs, detectors: [memory([("stall_share", .ratio(0.5)), ("stall_single", .duration(50 * ms))])], snapshot: snapshot).count, 1)
    }

    /// A steady process: 20 windows of 50 major and 5,000 minor faults.
    func steady(_ pid: UInt32 = 42, windows: ClosedRange<UInt64> = 0...19) -> [[UInt8]] {
        windows.map { faults(window: $0, pid: pid, major: 50, minor: 5_000) }
    }

    func testSteadyFaultsAreNotAFinding() {
        XCTAssertTrue(detect(steady(windows: 0...59) + [clock(70 * s)], detectors: [memory()], snapshot: snapshot).isEmpty)
    }

    func testASustainedMajorFaultRateOverTheBaselineIsOneWarning() throws {
        var recs = steady()
        for w: UInt64 in 20...29 { recs.append(faults(window: w, pid: 42, major: 3_000, minor: 5_000)) }
        recs.append(clock(40 * s))
        let f = detect(recs, detectors: [memory()], snapshot: snapshot)
        XCTAssertEqual(f.count, 1, f.map(\.jsonLine).joined(separator: "\n"))
        let t = try XCTUnwrap(f.first)
        XCTAssertEqual(t.severity, .warning)
        XCTAssertEqual(t.pid, 42)
        XCTAssertEqual(t.ts, 22 * s, "after two deviating windows (sustain)")
        XCTAssertEqual(t.evidence["kind"]?.stringValue, "major_fault_rate")
        XCTAssertEqual(t.evidence["observed"]?.uintValue, 3_000)
        XCTAssertEqual(t.evidence["baseline"]?.doubleValue ?? 0, 50, accuracy: 0.001)
        XCTAssertEqual(t.evidence["consecutive_windows"]?.uintValue, 2)
        XCTAssertTrue(t.summary.contains("db (pid 42) took 3000 major faults in 1.000s, 60.000x its baseline"), t.summary)
    }

    func testOneDeviatingWindowIsNotSustained() {
        var recs = steady()
        recs.append(faults(window: 20, pid: 42, major: 3_000, minor: 5_000))
        recs += steady(windows: 21...30)
        XCTAssertTrue(detect(recs + [clock(40 * s)], detectors: [memory()], snapshot: snapshot).isEmpty)
    }

    func testAMinorFaultStormIsInfo() {
        var recs = steady()
        for w: UInt64 in 20...22 { recs.append(faults(window: w, pid: 42, major: 50, minor: 400_000)) }
        let f = detect(recs + [clock(30 * s)], detectors: [memory()], snapshot: snapshot)
        XCTAssertEqual(f.map(\.severity), [.info])
        XCTAssertEqual(f.first?.evidence["kind"]?.stringValue, "minor_fault_storm")
    }

    func testAProcessSeenForTheFirstTimeIsNotJudgedDuringWarmup() {
        // Start-up: a huge first second (loading its binary), then thrashing
        // from the start: no baseline to judge against, nothing reported.
        var recs = [faults(window: 0, pid: 42, major: 5_000, minor: 900_000)]
        for w: UInt64 in 1...8 { recs.append(faults(window: w, pid: 42, major: 4_000, minor: 500_000)) }
        recs.append(clock(12 * s))
        XCTAssertTrue(detect(recs, detectors: [memory()], snapshot: snapshot).isEmpty)
        // With the warm-up shortened to 2 windows, the same stream is judged against the quiet start.
        var quietStart = [faults(window: 0, pid: 42, major: 5_000, minor: 900_000)]
        for w: UInt64 in 1...3 { quietStart.append(faults(window: w, pid: 42, major: 1, minor: 10)) }
        for w: UInt64 in 4...8 { quietStart.append(faults(window: w, pid: 42, major: 4_000, minor: 10)) }
        let f = detect(quietStart + [clock(12 * s)], detectors: [memory([("warmup", .duration(2 * s))])], snapshot: snapshot)
        XCTAssertEqual(f.map(\.severity), [.warning], "the start-up window was not learned: baseline ~1, not ~5000")
    }

    func testExecStartsAFreshBaselineAndExitForgetsTheProcess() {
        var recs = steady()
        recs.append(EventEncoder.exec(ts: 20 * s + 1, pid: 42, tid: 42, ppid: 1, uid: 0, comm: "newprog", filename: "/newprog", argv: ["newprog"]))
        for w: UInt64 in 20...25 { recs.append(faults(window: w, pid: 42, major: 3_000, minor: 5_000)) }
        recs.append(EventEncoder.exit(ts: 26 * s, pid: 42, tid: 42, status: 0, group: true, ppid: 1, lifetime: 1, comm: "newprog"))
        for w: UInt64 in 27...29 { recs.append(faults(window: w, pid: 42, major: 3_000, minor: 5_000)) }
        XCTAssertTrue(detect(recs + [clock(40 * s)], detectors: [memory()], snapshot: snapshot).isEmpty,
                      "a new program is in its warm-up; a reused pid is a new process")
    }

    func testFindingsForSeveralProcessesComeInPidOrder() {
        var recs: [[UInt8]] = []
        for w: UInt64 in 0...19 { for pid: UInt32 in [43, 42] { recs.append(faults(window: w, pid: pid, major: 50)) } }
        for w: UInt64 in 20...22 { for pid: UInt32 in [43, 42] { recs.append(faults(window: w, pid: pid, major: 3_000)) } }
        let f = detect(recs + [clock(30 * s)], detectors: [memory()], snapshot: snapshot)
        XCTAssertEqual(f.map(\.pid), [42, 43])
        XCTAssertEqual(f.map(\.jsonLine), detect(recs + [clock(30 * s)], detectors: [memory()], snapshot: snapshot).map(\.jsonLine), "deterministic")
    }

    func testHoldDownSuppressesARepeatAndThenReportsANewEpisode() {
        var recs = steady()
        for w: UInt64 in 20...23 { recs.append(faults(window: w, pid: 42, major: 3_000)) }
        for w: UInt64 in 24...34 { recs.append(faults(window: w, pid: 42, major: 50)) }  // 11 s quiet: < 30 s hold-down
        for w: UInt64 in 35...37 { recs.append(faults(window: w, pid: 42, major: 3_000)) }
        for w: UInt64 in 38...80 { recs.append(faults(window: w, pid: 42, major: 50)) }  // 43 s quiet: episode over
        for w: UInt64 in 81...83 { recs.append(faults(window: w, pid: 42, major: 3_000)) }
        let f = detect(recs + [clock(90 * s)], detectors: [memory()], snapshot: snapshot)
        XCTAssertEqual(f.map(\.ts), [22 * s, 83 * s], f.map(\.jsonLine).joined(separator: "\n"))
    }

    func testMemAvailableUnderTheFloorIsOneInfo() {
        var recs: [[UInt8]] = []
        for w: UInt64 in 0..<10 {
            recs.append(EventEncoder.gauge(ts: w * s + 1, kind: .memAvailable, value: w < 5 ? 4 << 30 : 100 << 20, limit: 8 << 30))
        }
        recs.append(clock(12 * s))
        let f = detect(recs, detectors: [memory()], snapshot: snapshot)
        XCTAssertEqual(f.map(\.severity), [.info])
        XCTAssertEqual(f.first?.evidence["mem_available_bytes"]?.uintValue, 100 << 20)
        XCTAssertTrue(detect(recs, detectors: [memory([("mem_available_floor", .ratio(0))])], snapshot: snapshot).isEmpty, "0: off")
    }

    func testHostileValuesAndTimestampsDoNotTrap() {
        let recs: [[UInt8]] = [
            faults(window: 1, pid: 42, major: .max, minor: .max),
            FaultsRecord.encode(ts: 5 * s, pid: 42, tid: 42, firstTs: .max, major: .max &- 3, minor: 1, comm: "db"),  // a wrapped counter, first_ts after ts
            reclaim(ts: 2 * s, pid: 42, duration: .max, pages: .max),
            reclaim(ts: 2 * s, pid: 42, duration: .max, pages: .max),
            oom(ts: 3 * s),
            reclaim(ts: 1, pid: 43, duration: 1),  // time running backwards
            clock(.max - 5),
            faults(window: 0, pid: 44, major: 1),
            reclaim(ts: .max, pid: 42, duration: .max),
            clock(.max),
        ]
        let a = detect(recs, detectors: [memory()], snapshot: snapshot)
        let b = detect(recs, detectors: [memory()], snapshot: snapshot)
        XCTAssertEqual(a.map(\.jsonLine), b.map(\.jsonLine))
        XCTAssertEqual(a.filter { $0.evidence["kind"]?.stringValue == "oom_kill" }.count, 1)
    }

    func testRegisteredWithItsParameters() {
        XCTAssertNotNil(DetectorRegistry.spec("memory"))
        XCTAssertEqual(DetectorRegistry.spec("memory")?.family, "memory")
        XCTAssertEqual(MemoryDetector.spec.defaults.duration("window"), s)
        XCTAssertEqual(memory([("window", .duration(2 * s))]).tickPeriodNs, 2 * s)
    }
}
