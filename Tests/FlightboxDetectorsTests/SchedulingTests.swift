import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxDetectors

private let s: UInt64 = 1_000_000_000
private let ms: UInt64 = 1_000_000

/// The scheduling detector with its defaults, some parameters changed.
private func scheduling(_ changes: [(String, SettingValue)] = [], exclude: Exclusions = Exclusions()) -> SchedulingDetector {
    var settings = SchedulingDetector.spec.defaults
    for (k, v) in changes { XCTAssertNil(settings.set(k, v)) }
    settings.exclude = exclude
    return SchedulingDetector(settings: settings)
}

private func runq(_ ts: UInt64, pid: UInt32, cpu: UInt16, wait: UInt64, comm: String = "") -> [UInt8] {
    SchedRecord.encode(ts: ts, cpu: cpu, pid: pid, tid: pid, waitNs: wait, kind: 1, comm: comm)
}

private func offcpu(_ ts: UInt64, pid: UInt32, cpu: UInt16, wait: UInt64) -> [UInt8] {
    SchedRecord.encode(ts: ts, cpu: cpu, pid: pid, tid: pid, waitNs: wait, kind: 2, prevState: 1)
}

/// PSI cpu some avg10 in 1/100 %.
private func psi(_ ts: UInt64, _ value: UInt64) -> [UInt8] {
    EventEncoder.gauge(ts: ts, kind: .psiSome, value: value, limit: 10_000, name: "cpu")
}

/// What happens on the machine in one window.
private enum Window {
    /// db sleeps 20 times on CPU 0 and waits for a CPU 20 times `dbWait`
    /// (0: never over the recording's threshold); hog1 and hog2 (CPU-bound)
    /// share CPU 0 when `hogs`; sh (a sleeper too, on CPU 0) and batch (CPU 1)
    /// always.
    case healthy
    case starved(dbWait: UInt64)
}

/// Records of window w, in time order.
private func window(_ w: UInt64, _ kind: Window) -> [[UInt8]] {
    var recs: [[UInt8]] = []
    let step = s / 40
    for i: UInt64 in 0..<40 {
        let ts = w * s + i * step
        if i % 2 == 0 { recs.append(offcpu(ts, pid: 42, cpu: 0, wait: 30 * ms)) }
        switch kind {
        case .healthy:
            if i == 7 { recs.append(runq(ts + 1, pid: 42, cpu: 0, wait: 2 * ms)) }
            if i % 4 == 1 { recs.append(runq(ts + 2, pid: 50, cpu: 1, wait: 3 * ms)) }
        case .starved(let wait):
            if i % 2 == 1 { recs.append(runq(ts + 1, pid: 42, cpu: 0, wait: wait)) }
            recs.append(runq(ts + 2, pid: i % 2 == 0 ? 50 : 51, cpu: 0, wait: 15 * ms))
            if i % 5 == 0 { recs.append(runq(ts + 3, pid: 60, cpu: 0, wait: 4 * ms)) }
        }
        if i % 10 == 3 { recs.append(offcpu(ts + 4, pid: 60, cpu: 0, wait: 50 * ms)) }
        if i % 3 == 0 { recs.append(runq(ts + 5, pid: 70, cpu: 1, wait: 5 * ms)) }
    }
    return recs
}

private func stream(_ windows: [(ClosedRange<UInt64>, Window)]) -> [[UInt8]] {
    windows.flatMap { r, k in r.flatMap { window($0, k) } }
}

final class SchedulingTests: XCTestCase {
    let snapshot = ProcessSnapshot(timestamp: 0, processes: [
        ProcessRecord(pid: 42, ppid: 1, uid: 0, comm: "db", exe: "/db", argv: ["db"]),
        ProcessRecord(pid: 50, ppid: 1, uid: 0, comm: "hog1", exe: "/hog", argv: ["hog1"]),
        ProcessRecord(pid: 51, ppid: 1, uid: 0, comm: "hog2", exe: "/hog", argv: ["hog2"]),
        ProcessRecord(pid: 60, ppid: 1, uid: 0, comm: "sh", exe: "/bin/sh", argv: ["sh"]),
        ProcessRecord(pid: 70, ppid: 1, uid: 0, comm: "batch", exe: "/batch", argv: ["batch"]),
    ])

    func testASteadyHealthyStreamGivesNothing() {
        XCTAssertTrue(detect(stream([(0...59, .healthy)]), detectors: [scheduling()], snapshot: snapshot).isEmpty)
    }

    func testAStarvedSleeperWithTwoHogsIsOneWarningNamingBoth() throws {
        let recs = stream([(0...9, .healthy), (10...14, .starved(dbWait: 10 * ms)), (15...20, .healthy)])
        let f = detect(recs, detectors: [scheduling()], snapshot: snapshot)
        XCTAssertEqual(f.count, 1, f.map(\.summary).joined(separator: "\n"))
        let w = try XCTUnwrap(f.first)
        XCTAssertEqual(w.detector, "scheduling")
        XCTAssertEqual(w.severity, .warning)
        XCTAssertEqual(w.pid, 42)
        XCTAssertEqual(w.comm, "db")
        XCTAssertEqual(w.ts, 12 * s, "at the end of the second starved window (sustain 2)")
        XCTAssertEqual(w.evidence["kind"]?.stringValue, "runq_starvation")
        XCTAssertEqual(w.evidence["window_start_ns"]?.uintValue, 11 * s)
        XCTAssertEqual(w.evidence["runq_ns"]?.uintValue, 200 * ms)
        XCTAssertEqual(w.evidence["runq_waits"]?.uintValue, 20)
        XCTAssertEqual(w.evidence["offcpu_waits"]?.uintValue, 20)
        XCTAssertEqual(w.evidence["baseline_runq_ns"]?.uintValue, 2 * ms)
        XCTAssertEqual(w.evidence["baseline_windows"]?.uintValue, 10)
        XCTAssertEqual(w.evidence["consecutive_windows"]?.uintValue, 2)
        let hogs = try XCTUnwrap(w.evidence["hogs"]?.arrayValue)
        XCTAssertEqual(hogs.compactMap { $0["pid"]?.uintValue }, [50, 51], "sh blocks and batch is on CPU 1: neither is a hog")
        XCTAssertEqual(hogs.first?["comm"]?.stringValue, "hog1")
        XCTAssertEqual(hogs.first?["runq_waits"]?.uintValue, 20)
        XCTAssertEqual(hogs.first?["runq_ns"]?.uintValue, 300 * ms)
        let cpus = try XCTUnwrap(w.evidence["cpus"]?.arrayValue)
        XCTAssertEqual(cpus.compactMap { $0["cpu"]?.uintValue }, [0])
        XCTAssertEqual(cpus.first?["cpu_runq_ns"]?.uintValue, 200 * ms + 600 * ms + 32 * ms)
        XCTAssertTrue(w.summary.contains("db (pid 42)"), w.summary)
        XCTAssertTrue(w.summary.contains("hog1 (pid 50, 20 waits), hog2 (pid 51, 20 waits)"), w.summary)
        XCTAssertNil(w.evidence["psi_cpu_some_avg10"], "no PSI gauge in this stream")
    }

    func testPSIIsEvidenceWhenPresent() throws {
        var recs = stream([(0...9, .healthy), (10...12, .starved(dbWait: 10 * ms))])
        recs.insert(psi(11 * s + 500 * ms, 4_200), at: recs.firstIndex { $0.withUnsafeBytes { Event.validated($0, sequence: 0)!.timestamp } > 11 * s + 500 * ms }!)
        let f = detect(recs, detectors: [scheduling()], snapshot: snapshot)
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(f.first?.evidence["psi_cpu_some_avg10"]?.doubleValue ?? 0, 0.42, accuracy: 1e-9)
    }

    func testWarmUpAndAStarvationFromTheStartIsItsOwnBaseline() {
        // Starved from its first window: nothing to compare with during the
        // warm-up, and what it learned then is its normal.
        XCTAssertTrue(detect(stream([(0...9, .starved(dbWait: 10 * ms))]), detectors: [scheduling()], snapshot: snapshot).isEmpty)
        // Healthy for fewer windows than the warm-up, then starved: learned, not judged.
        XCTAssertTrue(detect(stream([(0...2, .healthy), (3...4, .starved(dbWait: 10 * ms))]), detectors: [scheduling()], snapshot: snapshot).isEmpty)
        // With no warm-up the same stream is judged.
        XCTAssertEqual(detect(stream([(0...2, .healthy), (3...4, .starved(dbWait: 10 * ms))]),
                              detectors: [scheduling([("warmup_windows", .count(1))])], snapshot: snapshot).count, 1)
    }

    func testOneStarvedWindowIsNotSustained() {
        let recs = stream([(0...9, .healthy), (10...10, .starved(dbWait: 10 * ms)), (11...20, .healthy)])
        XCTAssertTrue(detect(recs, detectors: [scheduling()], snapshot: snapshot).isEmpty)
        XCTAssertEqual(detect(recs, detectors: [scheduling([("sustain", .count(1))])], snapshot: snapshot).count, 1)
    }

    func testUnderTheFloorIsNotStarved() {
        // 20 waits of 4 ms: 80 ms, 40x the baseline but under runq_min (100 ms).
        let recs = stream([(0...9, .healthy), (10...14, .starved(dbWait: 4 * ms))])
        XCTAssertTrue(detect(recs, detectors: [scheduling()], snapshot: snapshot).isEmpty)
    }

    func testHoldDownThenANewEpisode() {
        let recs = stream([
            (0...9, .healthy), (10...14, .starved(dbWait: 10 * ms)),
            (15...24, .healthy),  // 10 s quiet: under the 30 s hold-down
            (25...29, .starved(dbWait: 10 * ms)),
            (30...69, .healthy),  // 40 s quiet: the episode is over
            (70...74, .starved(dbWait: 10 * ms)),
        ])
        let f = detect(recs, detectors: [scheduling()], snapshot: snapshot)
        XCTAssertEqual(f.map(\.ts), [12 * s, 72 * s])
        XCTAssertEqual(f.last?.evidence["episode_started_ns"]?.uintValue, 72 * s)
    }

    func testEscalatesOnceToCritical() throws {
        let recs = stream([
            (0...9, .healthy), (10...11, .starved(dbWait: 10 * ms)),
            (12...16, .starved(dbWait: 30 * ms)),  // 600 ms a window: over critical_share 0.5
        ])
        let f = detect(recs, detectors: [scheduling()], snapshot: snapshot)
        XCTAssertEqual(f.map(\.severity), [.warning, .critical])
        XCTAssertEqual(f.last?.evidence["escalated_from"]?.stringValue, "warning")
        XCTAssertEqual(f.last?.evidence["episode_started_ns"]?.uintValue, 12 * s)
        XCTAssertEqual(f.last?.ts, 13 * s)
    }

    func testSustainedCPUPressureIsOneWarning() throws {
        var recs: [[UInt8]] = []
        for t: UInt64 in 0..<10 { recs.append(psi(t * s, 500)) }
        for t: UInt64 in 10..<20 { recs.append(psi(t * s, 3_000)) }  // 10 s: not sustained
        recs.append(psi(20 * s, 1_000))
        for t: UInt64 in 21..<80 { recs.append(psi(t * s, 3_500)) }  // 59 s
        let f = detect(recs, detectors: [scheduling()], snapshot: snapshot)
        XCTAssertEqual(f.count, 1, f.map(\.summary).joined(separator: "\n"))
        let p = try XCTUnwrap(f.first)
        XCTAssertEqual(p.severity, .warning)
        XCTAssertEqual(p.ts, 51 * s, "30 s after it went over the threshold at 21 s")
        XCTAssertEqual(p.evidence["kind"]?.stringValue, "cpu_pressure")
        XCTAssertEqual(p.evidence["above_since_ns"]?.uintValue, 21 * s)
        XCTAssertEqual(p.evidence["psi_cpu_some_avg10"]?.doubleValue ?? 0, 0.35, accuracy: 1e-9)
        XCTAssertTrue(p.summary.contains("35.0%"), p.summary)
        // Memory or io pressure is not CPU pressure.
        let io = (0..<80).map { t in EventEncoder.gauge(ts: UInt64(t) * s, kind: .psiSome, value: 9_000, limit: 10_000, name: "io") }
        XCTAssertTrue(detect(io, detectors: [scheduling()], snapshot: snapshot).isEmpty)
    }

    func testExclusions() throws {
        let recs = stream([(0...9, .healthy), (10...14, .starved(dbWait: 10 * ms))])
        XCTAssertTrue(detect(recs, detectors: [scheduling(exclude: Exclusions(comms: ["db"]))], snapshot: snapshot).isEmpty)
        let f = detect(recs, detectors: [scheduling(exclude: Exclusions(pids: [51]))], snapshot: snapshot)
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(f.first?.evidence["hogs"]?.arrayValue?.compactMap { $0["pid"]?.uintValue }, [50], "an excluded task is not named")
    }

    func testHostileTimestampsAndValues() {
        var recs = stream([(0...9, .healthy), (10...12, .starved(dbWait: 10 * ms))])
        recs += [
            runq(.max - 5, pid: 42, cpu: 0, wait: .max),
            runq(.max - 5, pid: 42, cpu: .max, wait: .max),
            offcpu(3, pid: 42, cpu: 0, wait: .max),  // time running backwards
            psi(2, 10_000), psi(.max, 10_000), psi(1, .max),
            runq(.max, pid: 50, cpu: 0, wait: .max),
            offcpu(.max, pid: 0, cpu: 0, wait: 1),
        ]
        let a = detect(recs, detectors: [scheduling()], snapshot: snapshot)
        let b = detect(recs, detectors: [scheduling()], snapshot: snapshot)
        XCTAssertEqual(a.map(\.jsonLine), b.map(\.jsonLine))
        // The jump to the end of time ends the episode (time moved on by more
        // than the hold-down): the starved window judged there opens another,
        // and the wait of UInt64.max escalates it, once.
        let starved = a.filter { $0.evidence["kind"]?.stringValue == "runq_starvation" }
        XCTAssertEqual(starved.map(\.severity), [.warning, .warning, .critical], a.map(\.jsonLine).joined(separator: "\n"))
        XCTAssertEqual(a.filter { $0.evidence["kind"]?.stringValue == "cpu_pressure" }.count, 1)
    }

    func testRegisteredWithItsParameters() {
        XCTAssertEqual(DetectorRegistry.spec("scheduling")?.family, "scheduler")
        XCTAssertTrue(DetectorRegistry.names.contains("scheduling"))
        XCTAssertEqual(SchedulingDetector.spec.defaults.duration("runq_min"), 100 * ms)
        XCTAssertEqual(scheduling([("window", .duration(2 * s))]).tickPeriodNs, 2 * s)
    }
}
