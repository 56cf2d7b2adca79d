import Foundation
import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxDetectors

private let s: UInt64 = 1_000_000_000
private let ms: UInt64 = 1_000_000

/// A function's return: entered at `ts`, `latency` long, returning `ret`.
private func call(_ id: UInt32, _ ts: UInt64, latency: UInt64 = 1 * ms, ret: Int64 = 0, pid: UInt32 = 42, args: [UInt64] = []) -> [UInt8] {
    ProbeRecord.encode(ts: ts, flags: probeReturnFlag, pid: pid, tid: pid, latencyNs: latency, ret: ret, args: args, probeId: id, nargs: UInt32(args.count))
}

private func usdt(_ id: UInt32, _ ts: UInt64, args: [UInt64], pid: UInt32 = 42) -> [UInt8] {
    ProbeRecord.encode(ts: ts, flags: probeUSDTFlag, pid: pid, tid: pid, args: args, probeId: id, nargs: UInt32(args.count))
}

/// Any event: moves event time on (the engine ticks on every event).
private func clock(_ ts: UInt64) -> [UInt8] { EventEncoder.gauge(ts: ts, kind: .load, value: 1, limit: 0) }

private func ordered(_ parts: [[UInt8]]...) -> [[UInt8]] {
    parts.flatMap { $0 }.enumerated().sorted { a, b in
        let ta = a.element.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        let tb = b.element.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        return (ta, a.offset) < (tb, b.offset)
    }.map(\.element)
}

private let app = "/srv/app"
private let snapshot = ProcessSnapshot(timestamp: 0, processes: [
    ProcessRecord(pid: 42, ppid: 1, uid: 0, comm: "app", exe: app, argv: ["app"]),
    ProcessRecord(pid: 43, ppid: 1, uid: 0, comm: "other", exe: app, argv: ["other"]),
])

private func judge(_ records: [[UInt8]], _ checks: [HealthCheck], holdDown: UInt64 = 5 * s) -> [Finding] {
    detect(records, detectors: [HealthDetector(checks: checks, holdDownNs: holdDown)], snapshot: snapshot, arch: .x86_64)
}

private func ticks(_ from: UInt64, _ to: UInt64, every: UInt64 = 50 * ms) -> [[UInt8]] {
    stride(from: from, through: to, by: Int(every)).map { clock($0) }
}

final class HealthTests: XCTestCase {
    let latency = HealthCheck(id: 1, name: "work", target: .function(binary: app, symbol: "work"),
                              latency: .init(statistic: .max, aboveNs: 30 * ms, windowNs: 1 * s))

    func testRegisteredWithItsFamily() {
        XCTAssertTrue(DetectorRegistry.names.contains("health"))
        XCTAssertEqual(HealthDetector.spec.family, "probes")
        XCTAssertNil(HealthDetector(checks: []).tickPeriodNs, "no checks: nothing to tick")
        XCTAssertEqual(HealthDetector(checks: [latency]).tickPeriodNs, 100 * ms)
    }

    func testLatencyOverItsLimitIsOneEpisodeEscalatedOnce() {
        var recs: [[UInt8]] = []
        // Three healthy windows of 10 ms calls.
        for w in 0..<3 as Range<UInt64> { for k in 0..<5 as Range<UInt64> { recs.append(call(1, w * s + k * 100 * ms + 1, latency: 10 * ms)) } }
        // Window 3 has one 50 ms call; window 4 one 60 ms (same episode); window 5 one of 200 ms (critical: 4x 30 ms).
        recs.append(call(1, 3 * s + 500 * ms, latency: 50 * ms))
        recs.append(call(1, 4 * s + 500 * ms, latency: 60 * ms))
        recs.append(call(1, 5 * s + 500 * ms, latency: 200 * ms))
        let f = judge(ordered(recs, ticks(0, 7 * s)), [latency])
        XCTAssertEqual(f.map(\.severity), [.warning, .critical], f.map(\.summary).joined(separator: "\n"))
        guard f.count == 2 else { return }
        XCTAssertEqual(f[0].ts, 4 * s, "judged when its window closes")
        XCTAssertEqual(f[0].evidence["value_ns"]?.uintValue, 50 * ms)
        XCTAssertEqual(f[0].evidence["limit_ns"]?.uintValue, 30 * ms)
        XCTAssertEqual(f[0].evidence["calls"]?.uintValue, 1)
        XCTAssertEqual(f[0].comm, "app")
        XCTAssertTrue(f[0].summary.hasPrefix("health check 'work' is slow: max latency 50.000ms"), f[0].summary)
        XCTAssertEqual(f[1].evidence["value_ns"]?.uintValue, 200 * ms)
    }

    /// A short-lived process (a database backend per connection) is gone by the
    /// time its window is judged: the finding still names it.
    func testAFindingNamesAProcessThatIsGoneByItsJudgement() {
        let exit = EventEncoder.exit(ts: 300 * ms, pid: 42, tid: 42, status: 0, group: true, ppid: 1, lifetime: 1, comm: "app")
        let f = judge(ordered([call(1, 100 * ms, latency: 50 * ms)], [exit], ticks(0, 2 * s)), [latency])
        XCTAssertEqual(f.map(\.comm), ["app"])
        XCTAssertTrue(f.first?.summary.hasSuffix("in app[42]") == true, f.first?.summary ?? "")
    }

    func testAnEpisodeEndsAfterTheHoldDownAndTheNextOneIsReported() {
        let recs = [call(1, 500 * ms, latency: 50 * ms), call(1, 10 * s + 500 * ms, latency: 50 * ms)]
        XCTAssertEqual(judge(ordered(recs, ticks(0, 12 * s)), [latency], holdDown: 5 * s).count, 2)
        XCTAssertEqual(judge(ordered(recs, ticks(0, 12 * s)), [latency], holdDown: 20 * s).count, 1)
    }

    func testP99ComesFromTheHistogramAtMostAnEighthHigh() {
        var w = HealthDetector.LatencyWindow()
        w.histogram = [UInt32](repeating: 0, count: HealthDetector.LatencyWindow.buckets)
        for v: UInt64 in [0, 1, 15, 16, 17, 1000, 1_234_567, 999_999_999_999, .max] {
            let b = HealthDetector.LatencyWindow.bucket(v)
            XCTAssertLessThan(b, HealthDetector.LatencyWindow.buckets)
            let upper = HealthDetector.LatencyWindow.upperBound(b)
            XCTAssertGreaterThanOrEqual(upper, v)
            XCTAssertLessThanOrEqual(Double(upper), Double(v) * 1.125 + 1)
            if b > 0 { XCTAssertLessThan(HealthDetector.LatencyWindow.upperBound(b - 1), v) }
        }
        // 99 calls of 1 ms and one of 100 ms: the p99 is 1 ms (its bucket), the max 100 ms.
        let check = HealthCheck(id: 1, name: "p", target: .function(binary: app, symbol: "p"),
                                latency: .init(statistic: .p99, aboveNs: 2 * ms, windowNs: 1 * s))
        var recs = (0..<99).map { call(1, UInt64($0) * 5 * ms + 1, latency: 1 * ms) }
        recs.append(call(1, 600 * ms, latency: 100 * ms))
        XCTAssertEqual(judge(ordered(recs, ticks(0, 2 * s)), [check]), [], "one slow call in a hundred is under the p99")
        recs.append(call(1, 700 * ms, latency: 100 * ms))
        let f = judge(ordered(recs, ticks(0, 2 * s)), [check])
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(f.first?.evidence["value_ns"]?.uintValue, 100 * ms, "capped by the window's max")
    }

    func testBaselineIsLearnedThenJudged() {
        let check = HealthCheck(id: 1, name: "b", target: .function(binary: app, symbol: "b"),
                                latency: .init(statistic: .p99, baseline: 3, windowNs: 1 * s))
        var recs: [[UInt8]] = []
        // Window 0 is slow (20 ms) but nothing is learned yet: not judged. Windows 1-5 learn ~1 ms.
        recs.append(call(1, 100 * ms, latency: 20 * ms))
        for w in 1..<6 as Range<UInt64> { for k in 0..<10 as Range<UInt64> { recs.append(call(1, w * s + k * 50 * ms + 1, latency: 1 * ms)) } }
        // Window 6: 2.5 ms (under 3x). Window 7: 10 ms (over).
        recs.append(call(1, 6 * s + 100 * ms, latency: 2_500_000))
        recs.append(call(1, 7 * s + 100 * ms, latency: 10 * ms))
        let f = judge(ordered(recs, ticks(0, 9 * s)), [check])
        XCTAssertEqual(f.count, 1, f.map(\.summary).joined(separator: "\n"))
        XCTAssertEqual(f.first?.ts, 8 * s)
        let baseline = f.first?.evidence["baseline_ns"]?.uintValue ?? 0
        XCTAssertGreaterThanOrEqual(baseline, 1 * ms)
        XCTAssertLessThanOrEqual(baseline, 1_125_000)
        XCTAssertTrue(f.first?.summary.contains("x its baseline") == true, f.first?.summary ?? "")
    }

    func testErrorShareNeedsItsMinimumOfCalls() {
        let check = HealthCheck(id: 2, name: "fail", target: .function(binary: app, symbol: "fail"),
                                errors: .init(when: Condition(.ret, .eq, -5), rate: 0.5, windowNs: 1 * s, minCalls: 3))
        var recs = [call(2, 100 * ms, ret: -5), call(2, 200 * ms, ret: -5)] // 2 calls: under min_calls
        for k in 0..<10 as Range<UInt64> { recs.append(call(2, 1 * s + k * 50 * ms + 1, ret: k == 0 ? -5 : k == 1 ? -4 : 0)) } // 1 in 10
        for k in 0..<6 as Range<UInt64> { recs.append(call(2, 2 * s + k * 50 * ms + 1, ret: k < 3 ? -5 : 0)) } // 3 in 6: warning
        for k in 0..<4 as Range<UInt64> { recs.append(call(2, 3 * s + k * 50 * ms + 1, ret: -5, pid: 43)) } // 4 in 4: critical
        let f = judge(ordered(recs, ticks(0, 5 * s)), [check])
        XCTAssertEqual(f.map(\.severity), [.warning, .critical])
        XCTAssertEqual(f.first?.evidence["errors"]?.uintValue, 3)
        XCTAssertEqual(f.first?.evidence["calls"]?.uintValue, 6)
        XCTAssertEqual(f.last?.pid, 43)
        XCTAssertEqual(f.last?.evidence["first_value"], .int(-5))
    }

    let beat = HealthCheck(id: 3, name: "beat", target: .function(binary: app, symbol: "beat"), heartbeat: .init(everyNs: 500 * ms))

    func testAMissedHeartbeatIsSeenOnTicksWithoutAnyCall() {
        // Beats every 100 ms until 1 s, then none; only other events move time on.
        let beats = stride(from: 0, through: 1 * s, by: Int(100 * ms)).map { call(3, $0 + 1) }
        let f = judge(ordered(beats, ticks(0, 4 * s)), [beat])
        XCTAssertEqual(f.map(\.severity), [.warning, .critical], f.map(\.summary).joined(separator: "\n"))
        guard f.count == 2 else { return }
        XCTAssertEqual(f[0].ts, 1_600 * ms, "the first tick with more than 500 ms since the last beat")
        XCTAssertEqual(f[0].evidence["since_last_ns"]?.uintValue, 600 * ms - 1)
        XCTAssertEqual(f[0].evidence["state"]?.stringValue, "missed")
        XCTAssertEqual(f[1].ts, 3_100 * ms, "critical at 4x the period")
        XCTAssertTrue(f[0].summary.contains("app[42] has not called /srv/app:beat for "), f[0].summary)
    }

    func testAHeartbeatNeverSeenIsNotMissedAndAResumedOneOpensANewEpisodeAfterTheHoldDown() {
        XCTAssertEqual(judge(ticks(0, 10 * s), [beat]), [], "first seen opens the key: no call, no expectation")
        var beats = [call(3, 1)] + stride(from: 2 * s, through: 3 * s, by: Int(100 * ms)).map { call(3, $0) }
        beats += stride(from: 10 * s, through: 11 * s, by: Int(100 * ms)).map { call(3, $0) }
        let f = judge(ordered(beats, ticks(0, 12 * s)), [beat], holdDown: 1 * s)
        // Missed at 0.6 s until the beats resume at 2 s (a gap just under 4x: no escalation); the
        // episode ends 1 s after its last miss; missed again at 3.6 s (a new episode), critical at
        // 5 s (2 s, 4x); resumed at 10 s; a third episode at 11.6 s.
        XCTAssertEqual(f.map(\.ts), [600 * ms, 3_600 * ms, 5_000 * ms, 11_600 * ms], f.map(\.summary).joined(separator: "\n"))
        XCTAssertEqual(f.map(\.severity), [.warning, .warning, .critical, .warning])
    }

    func testAProcessThatExitsIsStoppedNotMissed() {
        let beats = stride(from: 0, through: 1 * s, by: Int(100 * ms)).map { call(3, $0 + 1) }
        let clean = EventEncoder.exit(ts: 1_200 * ms, pid: 42, tid: 42, status: 0, group: true, ppid: 1, lifetime: 1, comm: "app")
        XCTAssertEqual(judge(ordered(beats, [clean], ticks(0, 5 * s)), [beat]), [], "a clean exit is the process's business")
        let killed = EventEncoder.exit(ts: 1_200 * ms, pid: 42, tid: 42, status: 9, group: true, ppid: 1, lifetime: 1, comm: "app")
        let f = judge(ordered(beats, [killed], ticks(0, 5 * s)), [beat])
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(f.first?.evidence["state"]?.stringValue, "stopped")
        XCTAssertEqual(f.first?.evidence["signal"], .int(9))
        XCTAssertTrue(f.first?.summary.contains("stopped: app[42] was killed by signal 9") == true, f.first?.summary ?? "")
    }

    func testArgumentThresholdOnAUSDTProbe() {
        let check = HealthCheck(id: 4, name: "req", target: .usdt(binary: app, provider: "app", name: "request"), arguments: 3,
                                argument: Condition(.arg(2), .gt, 40_000))
        let recs = [usdt(4, 1 * s, args: [1, 10_000, 0]), usdt(4, 2 * s, args: [2, 50_000, 0]), usdt(4, 3 * s, args: [3, 60_000, 0]),
                    usdt(4, 20 * s, args: [4, 70_000, 0])]
        let f = judge(ordered(recs, ticks(0, 21 * s, every: 1 * s)), [check])
        XCTAssertEqual(f.map(\.ts), [2 * s, 20 * s], "one per episode, a new one after the hold-down")
        XCTAssertEqual(f.first?.evidence["value"], .int(50_000))
        XCTAssertEqual(f.first?.evidence["condition"]?.stringValue, "arg2 > 40000")
    }

    func testPidAndCommLimitsAndUnknownIds() {
        var limited = latency
        limited.comm = "other"
        let recs = [call(1, 100 * ms, latency: 90 * ms, pid: 42), call(9, 200 * ms, latency: 90 * ms)]
        XCTAssertEqual(judge(ordered(recs, ticks(0, 2 * s)), [limited]), [], "app is not 'other'; id 9 is no check")
        limited.comm = nil
        limited.pid = 43
        XCTAssertEqual(judge(ordered(recs, ticks(0, 2 * s)), [limited]), [])
        limited.pid = 42
        XCTAssertEqual(judge(ordered(recs, ticks(0, 2 * s)), [limited]).count, 1)
    }

    func testHostileTimestampsNeitherTrapNorLoop() {
        let recs = [call(1, .max, latency: .max), call(3, .max - 1), call(1, 0, latency: 50 * ms), call(3, 0), clock(.max)]
        _ = judge(recs, [latency, beat])
        let backwards = [call(1, 10 * s, latency: 50 * ms), clock(12 * s), call(1, 1 * s, latency: 50 * ms), clock(13 * s)]
        XCTAssertEqual(judge(backwards, [latency]).count, 1)
    }

    func testStateIsCodable() throws {
        let d = HealthDetector(checks: [latency, beat])
        let engine = DetectorEngine(detectors: [d], snapshot: snapshot, arch: .x86_64)
        for r in ordered([call(1, 100 * ms, latency: 50 * ms), call(3, 200 * ms)], ticks(0, 1 * s)) {
            r.withUnsafeBytes { engine.process(Event.validated($0, sequence: 0)!) }
        }
        let data = try JSONEncoder().encode(d.state)
        XCTAssertEqual(try JSONDecoder().decode(HealthDetector.State.self, from: data), d.state)
        XCTAssertEqual(d.state.checks[1].beats[42]?.last, 200 * ms)
    }

    func testChecksRoundTripThroughTheirStoredForm() throws {
        let checks = [
            latency,
            HealthCheck(id: 2, name: "fail", target: .offset(binary: app, offset: 0x1f40), pid: 7, comm: "app", arguments: 2, int32Return: false, stringArgument: 2,
                        latency: .init(statistic: .p99, aboveNs: 5 * ms, baseline: 2.5, windowNs: 2 * s, minCalls: 3),
                        errors: .init(when: Condition(.arg(2), .ne, 0), rate: 0.25, windowNs: 1 * s, minCalls: 4), heartbeat: .init(everyNs: 1 * s),
                        argument: Condition(.arg(1), .ge, -3)),
            HealthCheck(id: 3, name: "u", target: .usdt(binary: "libpq.so.5", provider: "p", name: "n"), argument: Condition(.arg(1), .lt, 0)),
        ]
        for c in checks { XCTAssertEqual(try HealthCheck(json: c.json), c) }
        XCTAssertThrowsError(try HealthCheck(json: .object([("id", .uint(1)), ("name", .string("x"))])))
        var settings = HealthDetector.spec.defaults
        settings.checks = checks
        var config = DetectorConfiguration.defaults
        config["health"] = settings
        XCTAssertEqual(try DetectorConfiguration(json: config.json), config)
    }

    func testConditions() {
        XCTAssertEqual(try Condition.parse("ret < 0").get(), Condition(.ret, .lt, 0))
        XCTAssertEqual(try Condition.parse("ret==-5").get(), Condition(.ret, .eq, -5))
        XCTAssertEqual(try Condition.parse("arg4 >= 0x10").get(), Condition(.arg(4), .ge, 16))
        XCTAssertEqual(try Condition.parse("arg2 <= -0x10").get(), Condition(.arg(2), .le, -16))
        for bad in ["ret", "arg5 > 1", "x < 1", "ret <> 1", "ret < one"] { XCTAssertThrowsError(try Condition.parse(bad).get(), bad) }
        XCTAssertEqual(Condition(.arg(2), .ne, 3).description, "arg2 != 3")
    }
}
