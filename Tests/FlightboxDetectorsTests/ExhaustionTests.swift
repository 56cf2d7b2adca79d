import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxDetectors

private let s: UInt64 = 1_000_000_000
private let ms: UInt64 = 1_000_000

/// The exhaustion detector with the fixtures' short windows (20 s window,
/// 1 s steps, warning within 60 s, critical within 15 s), some changed.
private func exhaustion(_ changes: [(String, SettingValue)] = [], exclude: Exclusions = Exclusions()) -> ExhaustionDetector {
    var settings = ExhaustionDetector.spec.defaults
    let short: [(String, SettingValue)] = [
        ("window", .duration(20 * s)), ("step", .duration(s)), ("min_samples", .count(8)), ("min_span", .duration(8 * s)),
        ("warning_horizon", .duration(60 * s)), ("critical_horizon", .duration(15 * s)), ("sustain", .count(3)),
        ("hold_down", .duration(5 * s)), ("psi_sustain", .duration(10 * s)),
    ]
    for (k, v) in short + changes { XCTAssertNil(settings.set(k, v), k) }
    settings.exclude = exclude
    return ExhaustionDetector(settings: settings)
}

/// Gauge samples every 500 ms from `start` s for `seconds` s; `value(t)` at t s after start.
private func samples(_ kind: GaugeKind, from start: UInt64 = 100, seconds: Double, pid: UInt32 = 0, name: String = "",
                     limit: (Double) -> UInt64, value: (Double) -> Double) -> [[UInt8]] {
    stride(from: 0.0, to: seconds, by: 0.5).map { t in
        EventEncoder.gauge(ts: start * s + UInt64(t * 1e9), kind: kind, value: UInt64(max(0, value(t)).rounded()), limit: limit(t), pid: pid, name: name)
    }
}

/// Merges record lists by timestamp (stable), as the recorder interleaves them.
private func merged(_ lists: [[UInt8]]...) -> [[UInt8]] {
    lists.flatMap { $0 }.enumerated().sorted { a, b in
        let ta = a.element.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        let tb = b.element.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        return (ta, a.offset) < (tb, b.offset)
    }.map(\.element)
}

private let snapshot = ProcessSnapshot(timestamp: 0, processes: [
    ProcessRecord(pid: 812, ppid: 1, uid: 0, comm: "postgres", exe: "/postgres", argv: ["postgres"]),
    ProcessRecord(pid: 900, ppid: 1, uid: 0, comm: "logger", exe: "/logger", argv: ["logger"]),
])

private func judge(_ records: [[UInt8]], _ d: ExhaustionDetector = exhaustion(), clock: TraceClock? = nil) -> [Finding] {
    let engine = DetectorEngine(detectors: [d], snapshot: snapshot, clock: clock)
    for (i, r) in records.enumerated() {
        r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(i))!) }
    }
    engine.finish()
    return engine.findings
}

final class ExhaustionTests: XCTestCase {
    /// 10 fds + 8 a second toward a limit of 256: exhausted 30.75 s in. A
    /// warning once the window spans 8 s and 3 steps agree, predicting that
    /// time; one escalation to critical within 15 s; nothing else.
    func testASteadyLeakWarnsThenEscalatesOnceWithAnAccuratePrediction() throws {
        let recs = samples(.processFds, seconds: 30.5, pid: 812, limit: { _ in 256 }, value: { 10 + 8 * $0 })
        let clock = TraceClock(monotonicNs: 0, realtimeNs: 1_700_000_000 * s)
        let f = judge(recs, clock: clock)
        XCTAssertEqual(f.map(\.severity), [.warning, .critical], f.map(\.summary).joined(separator: "\n"))
        let w = try XCTUnwrap(f.first)
        let exhausted = 100 * s + 30_750 * ms
        XCTAssertEqual(w.detector, "exhaustion")
        XCTAssertEqual(w.pid, 812)
        XCTAssertEqual(w.comm, "postgres")
        XCTAssertEqual(w.ts, 111 * s, "span 8 s from the first point at 100.5 s, plus 3 steps of sustain")
        XCTAssertEqual(w.evidence["resource"]?.stringValue, "process_fds")
        XCTAssertEqual(w.evidence["process"]?.stringValue, "postgres[812]")
        XCTAssertEqual(w.evidence["limit"]?.uintValue, 256)
        XCTAssertEqual(try XCTUnwrap(w.evidence["rate_per_second"]?.doubleValue), 8, accuracy: 0.01)
        let predicted = try XCTUnwrap(w.evidence["predicted_exhaustion_ns"]?.uintValue)
        XCTAssertEqual(Double(predicted), Double(exhausted), accuracy: 0.6e9, "within the last step of the truth")
        XCTAssertEqual(w.evidence["predicted_exhaustion_wall_ns"]?.intValue, Int64(1_700_000_000 * s + predicted))
        XCTAssertEqual(w.evidence["predicted_exhaustion_wall"]?.stringValue, utcText(Int64(1_700_000_000 * s + predicted)))
        XCTAssertTrue(utcText(Int64(1_700_000_000 * s + predicted)).hasPrefix("2023-11-14T22:15:3"))
        XCTAssertEqual(w.evidence["fit"]?["method"]?.stringValue, "theil-sen")
        XCTAssertEqual(w.evidence["fit"]?["monotone_share"]?.doubleValue, 1)
        XCTAssertTrue(w.summary.hasPrefix("postgres[812] runs out of file descriptors in about 20 s"), w.summary)
        let c = f[1]
        XCTAssertEqual(c.evidence["escalated_from"]?.stringValue, "warning")
        XCTAssertEqual(c.evidence["episode_started_ns"]?.uintValue, w.ts)
        XCTAssertLessThanOrEqual(try XCTUnwrap(c.evidence["predicted_seconds"]?.doubleValue), 15)
        XCTAssertNil(judge(recs).first?.evidence["predicted_exhaustion_wall"], "no clock, no wall time")
    }

    /// A start-up that grows and then stays flat is not a trend: the window
    /// must span `min_span` and by then the flat part holds the median.
    func testAStartUpThatLevelsOffIsNotATrend() {
        let recs = samples(.processFds, seconds: 40, pid: 812, limit: { _ in 256 }, value: { min(10 + 30 * $0, 160) })
        XCTAssertEqual(judge(recs), [])
    }

    /// Growth whose prediction is beyond the horizon is not reported.
    func testGrowthBeyondTheHorizonIsQuiet() {
        let recs = samples(.processFds, seconds: 60, pid: 812, limit: { _ in 4096 }, value: { 10 + 2 * $0 })
        XCTAssertEqual(judge(recs), [], "about 34 min away, the horizon is 60 s")
    }

    /// A collector's sawtooth, a log written and truncated, a burst that is
    /// freed, a one-off spike, and large flat usage: never a finding.
    func testSawtoothTruncationBurstSpikeAndFlatNeverFire() {
        let limit: (Double) -> UInt64 = { _ in 64 << 20 }
        let sawtooth = samples(.cgroupMemoryAnon, seconds: 60, name: "/gc", limit: limit, value: { 8e6 * $0.truncatingRemainder(dividingBy: 5) })
        // A slow sawtooth: ramps of 9 s (longer than min_span) with a fall of 36 MB.
        let slow = samples(.cgroupMemoryAnon, seconds: 60, name: "/slow", limit: limit, value: { 4e6 * $0.truncatingRemainder(dividingBy: 9) })
        let truncate = samples(.fsBytes, seconds: 60, name: "/var/log", limit: limit, value: { 64e6 - 8e6 * $0.truncatingRemainder(dividingBy: 6) })
        let burst = samples(.processFds, seconds: 60, pid: 812, limit: { _ in 256 }, value: { $0 >= 10 && $0 < 12 ? 204 : 4 })
        let spike = samples(.systemFds, seconds: 60, limit: { _ in 10_000 }, value: { $0 == 30 ? 9_999 : 2_000 })
        let flat = samples(.cgroupPids, seconds: 60, name: "/big", limit: { _ in 100 }, value: { _ in 97 })
        XCTAssertEqual(judge(merged(sawtooth, slow, truncate, burst, spike, flat)), [])
    }

    /// A limit of none (0) gives no prediction, however steep the growth.
    func testNoLimitNoPrediction() {
        XCTAssertEqual(judge(samples(.processFds, seconds: 40, pid: 812, limit: { _ in 0 }, value: { 10 + 80 * $0 })), [])
    }

    /// A limit lowered mid-stream is the limit from then on, and the finding says it changed.
    func testALimitThatChangesIsTakenAsItIsNow() throws {
        let recs = samples(.processFds, seconds: 30, pid: 812, limit: { $0 < 15 ? 100_000 : 256 }, value: { 10 + 4 * $0 })
        let f = judge(recs)
        let w = try XCTUnwrap(f.first, "quiet while the limit is 100,000, a warning once it is 256")
        XCTAssertEqual(w.ts, 118 * s, "the third step after the change (at 115 s): 116, 117, 118")
        XCTAssertEqual(w.evidence["limit"]?.uintValue, 256)
        XCTAssertEqual(w.evidence["limit_changed_from"]?.uintValue, 100_000)
        // Raised out of reach: the growth goes on, the episode with it, but nothing more is said.
        let raised = samples(.processFds, seconds: 40, pid: 812, limit: { $0 < 15 ? 256 : 1_000_000 }, value: { 10 + 8 * $0 })
        XCTAssertEqual(judge(raised).map(\.severity), [.warning])
    }

    /// A counter that resets (a restart) is a fall: no trend until the
    /// window no longer holds it; then growth toward the limit is a new episode.
    func testAResetClosesTheEpisodeAndTheNextGrowthOpensANewOne() throws {
        // A leak of 8 fds/s from 10, reset at 25 s, then one of 4 fds/s.
        let recs = samples(.processFds, seconds: 80, pid: 812, limit: { _ in 256 }, value: { t in t < 25 ? 10 + 8 * t : 10 + 4 * (t - 25) })
        let f = judge(recs)
        XCTAssertEqual(f.map(\.severity), [.warning, .critical, .warning, .critical], f.map(\.summary).joined(separator: "\n"))
        XCTAssertGreaterThanOrEqual(f[2].ts, 125 * s + 20 * s, "not while the window holds the reset at 125 s")
        XCTAssertNil(f[2].evidence["escalated_from"], "a new episode")
    }

    /// A key first seen late in the stream is learned from its first sample,
    /// like one seen at the start: the window must span min_span of its own.
    func testAKeyFirstSeenLateIsJudgedOnItsOwnSpan() throws {
        let flat = samples(.cgroupPids, seconds: 130, name: "/old", limit: { _ in 64 }, value: { _ in 10 })
        let late = samples(.processFds, from: 200, seconds: 30, pid: 900, limit: { _ in 256 }, value: { 10 + 8 * $0 })
        let f = judge(merged(flat, late))
        XCTAssertEqual(f.first?.ts, 211 * s)
        XCTAssertEqual(f.first?.comm, "logger")
        XCTAssertEqual(f.count, 2)
    }

    /// An exited process's fds are forgotten: its pid's next process starts afresh.
    func testAnExitForgetsTheProcess() {
        var recs = samples(.processFds, seconds: 9, pid: 812, limit: { _ in 256 }, value: { 10 + 8 * $0 })
        recs.append(ExitRecord.encode(ts: 109 * s + 100 * ms, flags: exitGroupFlag, pid: 812, tid: 812))
        recs += samples(.processFds, from: 109, seconds: 3, pid: 812, limit: { _ in 256 }, value: { 90 + 8 * $0 })
        XCTAssertEqual(judge(recs), [], "neither lived long enough to span 8 s")
    }

    /// Filesystem growth names the processes writing to its device, largest first.
    func testDiskGrowthNamesItsWriters() throws {
        let dev: UInt32 = 8 << 20 | 3
        let space = samples(.fsBytes, seconds: 20, name: "/var", limit: { _ in 1 << 30 }, value: { 400e6 - 12e6 * $0 })
        let mapping = [EventEncoder.gauge(ts: 100 * s, kind: .fsDevice, value: UInt64(dev), limit: 0, name: "/var")]
        let writes = (0..<18).flatMap { i -> [[UInt8]] in
            let ts = 101 * s + UInt64(i) * s
            return [WritesRecord.encode(ts: ts, pid: 812, tid: 812, firstTs: ts - s, bytes: 11_000_000, dev: dev, name: "wal"),
                    WritesRecord.encode(ts: ts, pid: 900, tid: 900, firstTs: ts - s, bytes: 1_000_000, dev: dev, name: "log"),
                    WritesRecord.encode(ts: ts, pid: 900, tid: 900, firstTs: ts - s, bytes: 5_000_000, dev: dev + 1, name: "other")]
        }
        let f = judge(merged(mapping, space, writes))
        let w = try XCTUnwrap(f.first)
        XCTAssertEqual(w.evidence["resource"]?.stringValue, "disk_space")
        XCTAssertEqual(w.evidence["mount"]?.stringValue, "/var")
        XCTAssertEqual(w.evidence["device"]?.stringValue, "8:3")
        XCTAssertEqual(w.evidence["writers"]?.arrayValue?[0]["comm"]?.stringValue, "postgres")
        XCTAssertEqual(w.evidence["writers"]?.arrayValue?[1]["pid"]?.uintValue, 900)
        XCTAssertEqual(w.evidence["writers"]?.arrayValue?.count, 2, "writes to another device are not counted")
        XCTAssertTrue(w.summary.hasPrefix("/var fills in about 23 s"), w.summary)
        XCTAssertTrue(w.summary.contains("at 11.444MiB/s"), w.summary)
        XCTAssertTrue(w.summary.contains("written mostly by postgres[812] (91.667%"), w.summary)
    }

    /// Memory running out names the processes whose resident memory grows
    /// fastest; their RSS alone is never a finding (file mappings grow it).
    func testMemoryRunningOutNamesTheProcessesThatGrow() throws {
        let available = samples(.memAvailable, seconds: 20, limit: { _ in 4 << 30 }, value: { 500e6 - 10e6 * $0 })
        let postgres = samples(.processRSS, seconds: 20, pid: 812, limit: { _ in 4 << 30 }, value: { 1e9 + 8e6 * $0 })
        let logger = samples(.processRSS, seconds: 20, pid: 900, limit: { _ in 4 << 30 }, value: { 2e8 + 1e6 * $0 })
        let flat = samples(.processRSS, seconds: 20, pid: 901, limit: { _ in 4 << 30 }, value: { _ in 3e9 })
        let f = judge(merged(available, postgres, logger, flat))
        let w = try XCTUnwrap(f.first)
        XCTAssertEqual(f.count, 1, "one warning, none for the processes")
        XCTAssertEqual(w.evidence["resource"]?.stringValue, "memory")
        XCTAssertEqual(w.evidence["growing"]?.arrayValue?.compactMap { $0["pid"]?.uintValue }, [812, 900], "fastest first, the flat one left out")
        XCTAssertTrue(w.summary.hasPrefix("Memory runs out in about 40 s: MemAvailable falls 9.537MiB/s"), w.summary)
        XCTAssertTrue(w.summary.hasSuffix("growing most: postgres[812] at 7.629MiB/s"), w.summary)
        XCTAssertEqual(judge(merged(postgres, logger)), [], "RSS growth alone")
    }

    /// Sustained memory pressure is a warning, full pressure critical; CPU
    /// pressure is the scheduling detector's.
    func testSustainedMemoryPressureAndFullPressure() throws {
        let some = samples(.psiSome, seconds: 40, name: "memory", limit: { _ in 10_000 }, value: { $0 >= 5 ? 3_500 : 500 })
        let full = samples(.psiFull, seconds: 40, name: "memory", limit: { _ in 10_000 }, value: { $0 >= 20 ? 1_500 : 0 })
        let cpu = samples(.psiSome, seconds: 40, name: "cpu", limit: { _ in 10_000 }, value: { _ in 9_000 })
        let f = judge(merged(some, full, cpu))
        XCTAssertEqual(f.map(\.severity), [.warning, .critical])
        XCTAssertEqual(f[0].evidence["resource"]?.stringValue, "memory")
        XCTAssertEqual(f[0].ts, 116 * s, "10 s after the first sample over 20%")
        XCTAssertTrue(f[0].summary.hasPrefix("Memory pressure: some task stalled on memory 35.0%"), f[0].summary)
        XCTAssertEqual(f[1].evidence["escalated_from"]?.stringValue, "warning")
    }

    /// Time running backwards and timestamps near 2^64 neither trap nor invent a trend.
    func testHostileTimestamps() {
        var recs = samples(.processFds, seconds: 5, pid: 812, limit: { _ in 256 }, value: { 10 + 8 * $0 })
        recs.append(EventEncoder.gauge(ts: 50 * s, kind: .processFds, value: 255, limit: 256, pid: 812))
        recs.append(EventEncoder.gauge(ts: .max - 10, kind: .processFds, value: 255, limit: 256, pid: 812))
        recs.append(EventEncoder.gauge(ts: .max, kind: .fsBytes, value: 0, limit: .max, name: "/"))
        XCTAssertEqual(judge(recs), [])
    }

    /// Excluded cgroups and mounts (devices) are not followed.
    func testExclusions() {
        let recs = samples(.cgroupPids, seconds: 30, name: "/batch/jobs", limit: { _ in 64 }, value: { 2 + 2 * $0 })
        XCTAssertEqual(judge(recs).count, 2)
        XCTAssertEqual(judge(recs, exhaustion(exclude: Exclusions(cgroups: ["/batch"]))), [])
    }

    /// Two resources judged in the same step come out in a fixed order.
    func testFindingsOfOneStepAreOrderedByResourceAndKey() {
        let a = samples(.cgroupPids, seconds: 12, name: "/b", limit: { _ in 64 }, value: { 2 + 2 * $0 })
        let b = samples(.cgroupPids, seconds: 12, name: "/a", limit: { _ in 64 }, value: { 2 + 2 * $0 })
        let c = samples(.fsInodes, seconds: 12, name: "/", limit: { _ in 1000 }, value: { 1000 - 2 - 20 * $0 })
        let f = judge(merged(a, b, c))
        XCTAssertEqual(f.compactMap { $0.evidence["key"]?.stringValue }, ["/", "/a", "/b"])
    }

    func testUTCText() {
        XCTAssertEqual(utcText(0), "1970-01-01T00:00:00Z")
        XCTAssertEqual(utcText(951_782_400 * 1_000_000_000), "2000-02-29T00:00:00Z")
        XCTAssertEqual(utcText(-1), "1969-12-31T23:59:59Z")
        XCTAssertFalse(utcText(.min).isEmpty, "a hostile prediction is text, not a trap")
        XCTAssertFalse(utcText(.max).isEmpty)
        XCTAssertEqual(approx(44.6), "45 s")
        XCTAssertEqual(approx(250), "4 min")
        XCTAssertEqual(approx(9000), "2.5 h")
    }
}
