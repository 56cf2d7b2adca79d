import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxDetectors

let nrRead = syscallNumber(named: "read")!
let nrWrite = syscallNumber(named: "write")!
let nrNanosleep = syscallNumber(named: "nanosleep")!
let nrFutex = syscallNumber(named: "futex")!

/// Runs the engine over synthetic records and returns the findings.
func detect(_ records: [[UInt8]], detectors: [Detector] = [SyscallLatencyDetector()], snapshot: ProcessSnapshot? = nil,
            arch: SyscallArch = .host) -> [Finding] {
    let engine = DetectorEngine(detectors: detectors, snapshot: snapshot, arch: arch)
    for (i, r) in records.enumerated() {
        r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(i))!) }
    }
    engine.finish()
    return engine.findings
}

/// `n` fast calls of `nr` (1-3 µs) from pid 42, starting at `ts`.
func fastCalls(_ n: Int, nr: UInt32, from ts: inout UInt64, kind: FdKind = .unresolved, pid: UInt32 = 42) -> [[UInt8]] {
    (0..<n).map { i in
        ts += 10_000
        return EventEncoder.syscall(ts: ts, pid: pid, tid: pid, nr: nr, duration: 1_000 + UInt64(i % 3) * 1_000, fdKind: kind)
    }
}

final class SyscallLatencyTests: XCTestCase {
    let snapshot = ProcessSnapshot(timestamp: 0, processes: [ProcessRecord(pid: 42, ppid: 1, uid: 0, comm: "db", exe: "/db", argv: ["db"])])

    func testFlagsASlowCallAgainstItsBaseline() {
        var ts: UInt64 = 1_000_000
        var recs = fastCalls(200, nr: nrRead, from: &ts)
        ts += 10_000
        recs.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 43, nr: nrRead, duration: 50_000_000, ret: 4096, fdKind: .regular))
        let f = detect(recs, snapshot: snapshot)
        XCTAssertEqual(f.count, 1)
        guard let finding = f.first else { return }
        XCTAssertEqual(finding.detector, "syscall-latency")
        XCTAssertEqual(finding.severity, .warning)
        XCTAssertEqual(finding.pid, 42)
        XCTAssertEqual(finding.tid, 43)
        XCTAssertEqual(finding.comm, "db")
        XCTAssertEqual(finding.ts, ts)
        XCTAssertEqual(finding.evidence["latency_ns"]?.uintValue, 50_000_000)
        XCTAssertEqual(finding.evidence["baseline_samples"]?.uintValue, 200)
        XCTAssertEqual(finding.evidence["baseline_p99_le_ns"]?.uintValue, 4095)
        XCTAssertEqual(finding.evidence["fd_kind"]?.stringValue, "regular")
        let hist = finding.evidence["histogram"]?.arrayValue ?? []
        XCTAssertEqual(hist.compactMap { $0["count"]?.uintValue }.reduce(0, +), 200)
        XCTAssertTrue(finding.summary.contains("read on a regular fd took 50.000ms"), finding.summary)
        XCTAssertTrue(finding.jsonLine.hasPrefix(#"{"ts_ns":"#))
        XCTAssertTrue(finding.jsonLine.contains(#""detector":"syscall-latency","severity":"warning","pid":42,"tid":43,"comm":"db","summary":"#))
    }

    func testCriticalAtOneSecond() {
        var ts: UInt64 = 0
        var recs = fastCalls(100, nr: nrWrite, from: &ts)
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 42, tid: 42, nr: nrWrite, duration: 2_000_000_000, fdKind: .regular))
        XCTAssertEqual(detect(recs).first?.severity, .critical)
    }

    func testNoBaselineNoFinding() {
        var ts: UInt64 = 0
        var recs = fastCalls(10, nr: nrRead, from: &ts)
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 42, tid: 42, nr: nrRead, duration: 50_000_000, fdKind: .regular))
        XCTAssertEqual(detect(recs), [])
    }

    func testWaitsByDesignAreNotJudged() {
        var ts: UInt64 = 0
        var recs = fastCalls(200, nr: nrRead, from: &ts)
        recs += fastCalls(200, nr: nrNanosleep, from: &ts)
        recs += fastCalls(200, nr: nrFutex, from: &ts)
        for kind in [FdKind.fifo, .socket, .char, .anon] {
            ts += 100_000_000
            recs.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 42, nr: nrRead, duration: 90_000_000, fdKind: kind))
        }
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 42, tid: 42, nr: nrNanosleep, duration: 5_000_000_000))
        recs.append(EventEncoder.syscall(ts: ts + 2, pid: 42, tid: 42, nr: nrFutex, duration: 5_000_000_000))
        XCTAssertEqual(detect(recs), [])
    }

    /// What waits by design follows the numbering of the events: 101 is
    /// nanosleep on arm64 (never judged) and ptrace on x86_64 (judged).
    func testWaitsByDesignFollowTheTraceArchitecture() {
        var ts: UInt64 = 0
        var recs = fastCalls(200, nr: 101, from: &ts)
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 42, tid: 42, nr: 101, duration: 5_000_000_000))
        XCTAssertEqual(detect(recs, arch: .arm64), [])
        let x86 = detect(recs, arch: .x86_64)
        XCTAssertEqual(x86.count, 1)
        XCTAssertEqual(x86.first?.evidence["syscall"]?.stringValue, "ptrace")
    }

    func testBelowAbsoluteFloorIsNotFlagged() {
        var ts: UInt64 = 0
        var recs = fastCalls(200, nr: nrRead, from: &ts)
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 42, tid: 42, nr: nrRead, duration: 900_000, fdKind: .regular))
        XCTAssertEqual(detect(recs), [])
    }

    func testCooldownSuppressesAndCounts() {
        var ts: UInt64 = 0
        var recs = fastCalls(200, nr: nrRead, from: &ts)
        for i in 0..<5 {
            ts += 1_000_000_000 // one second apart: four inside the 10 s cooldown
            recs.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 42, nr: nrRead, duration: 50_000_000 + UInt64(i), fdKind: .regular))
            // Enough fast calls that the outliers stay under 1% and out of the p99.
            recs += fastCalls(200, nr: nrRead, from: &ts)
        }
        ts += 20_000_000_000
        recs.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 42, nr: nrRead, duration: 60_000_000, fdKind: .regular))
        let f = detect(recs)
        XCTAssertEqual(f.count, 2)
        guard f.count == 2 else { return }
        XCTAssertNil(f[0].evidence["outliers_suppressed_since_last"])
        XCTAssertEqual(f[1].evidence["outliers_suppressed_since_last"]?.uintValue, 4)
    }

    /// A process whose slow calls are a steady 1% or more has them in its own
    /// p99: they are its normal, and stop being flagged.
    func testFrequentSlowCallsBecomeTheBaseline() {
        var ts: UInt64 = 0
        var recs = fastCalls(100, nr: nrRead, from: &ts)
        for _ in 0..<30 {
            ts += 1_000_000_000
            recs.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 42, nr: nrRead, duration: 50_000_000, fdKind: .regular))
            recs += fastCalls(20, nr: nrRead, from: &ts)
        }
        let f = detect(recs)
        XCTAssertGreaterThanOrEqual(f.count, 1)
        XCTAssertLessThanOrEqual(f.count, 2, "learned within a few outliers, not one finding per slow call")
    }

    func testBaselinesArePerProcessAndForgottenAtExit() {
        var ts: UInt64 = 0
        var recs = fastCalls(200, nr: nrRead, from: &ts, pid: 42)
        // Another process with no history of its own: not judged.
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 77, tid: 77, nr: nrRead, duration: 50_000_000, fdKind: .regular))
        // pid 42 exits and the pid is reused: the old baseline must not apply.
        recs.append(EventEncoder.exit(ts: ts + 2, pid: 42, tid: 42, status: 0, group: true, ppid: 1, lifetime: 1, comm: "db"))
        recs.append(EventEncoder.syscall(ts: ts + 3, pid: 42, tid: 42, nr: nrRead, duration: 50_000_000, fdKind: .regular))
        XCTAssertEqual(detect(recs), [])
    }

    func testSameStreamSameFindings() {
        var ts: UInt64 = 0
        var recs: [[UInt8]] = []
        for pid in [UInt32(5), 3, 9, 1] { recs += fastCalls(100, nr: nrRead, from: &ts, pid: pid) }
        for pid in [UInt32(9), 1, 5, 3] {
            ts += 1
            recs.append(EventEncoder.syscall(ts: ts, pid: pid, tid: pid, nr: nrRead, duration: 30_000_000, fdKind: .regular))
        }
        let a = detect(recs).map(\.jsonLine)
        let b = detect(recs).map(\.jsonLine)
        XCTAssertEqual(a.count, 4)
        XCTAssertEqual(a, b)
        XCTAssertEqual(detect(recs).map(\.pid), [9, 1, 5, 3], "findings come in stream order")
    }

    func testCommFollowsExecAndFork() {
        var ts: UInt64 = 0
        var recs: [[UInt8]] = [
            EventEncoder.fork(ts: 1, pid: 1, tid: 1, childPid: 50, childTid: 50, thread: false, comm: "sh"),
            EventEncoder.exec(ts: 2, pid: 50, tid: 50, ppid: 1, uid: 0, comm: "postgres", filename: "/usr/bin/postgres", argv: ["postgres"]),
        ]
        ts = 10
        recs += fastCalls(100, nr: nrRead, from: &ts, pid: 50)
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 50, tid: 50, nr: nrRead, duration: 30_000_000, fdKind: .regular))
        XCTAssertEqual(detect(recs).first?.comm, "postgres")
    }
}

final class EngineTests: XCTestCase {
    final class Ticker: Detector {
        let name = "ticker"
        var tickPeriodNs: UInt64? { 1_000 }
        var ticks: [UInt64] = []
        func observe(_ event: Event, context: DetectorContext) {}
        func tick(boundary: UInt64, context: DetectorContext) {
            ticks.append(boundary)
            context.emit(Finding(ts: boundary, detector: name, severity: .info, pid: 0, tid: 0, comm: "", summary: "tick", evidence: .null))
        }
    }

    func testTicksFollowEventTimeAtAlignedBoundaries() {
        let t = Ticker()
        let recs = [1_500, 1_200, 2_100, 4_000, 3_999].map { EventEncoder.syscall(ts: UInt64($0), pid: 1, tid: 1, nr: 0, duration: 1) }
        let f = detect(recs, detectors: [t])
        // Event time is the running maximum; 1200 and 3999 arrive late and move nothing.
        XCTAssertEqual(t.ticks, [2_000, 3_000, 4_000])
        XCTAssertEqual(f.map(\.ts), [2_000, 3_000, 4_000])
    }

    func testUnknownDetectorIsAClearError() {
        XCTAssertThrowsError(try DetectorRegistry.make(list: ["nope"])) { e in
            XCTAssertTrue("\(e)".contains("unknown detector 'nope'"))
        }
    }
}

final class HostileTimeTests: XCTestCase {
    final class Counter: Detector {
        let name = "counter"
        var tickPeriodNs: UInt64? { 1_000_000_000 }
        var ticks = 0
        func observe(_ event: Event, context: DetectorContext) {}
        func tick(boundary: UInt64, context: DetectorContext) { ticks += 1 }
    }

    /// Timestamps from a damaged or hostile trace must neither trap nor make
    /// replay loop over billions of empty windows.
    func testHugeTimeJumpsAreBoundedAndDoNotTrap() {
        let c = Counter()
        var ts: UInt64 = 0
        var recs = fastCalls(100, nr: nrRead, from: &ts)
        recs.append(EventEncoder.syscall(ts: 1 << 63, pid: 42, tid: 42, nr: nrRead, duration: 50_000_000, fdKind: .regular))
        recs.append(EventEncoder.syscall(ts: .max, pid: 42, tid: 42, nr: nrRead, duration: .max, fdKind: .regular))
        let findings = detect(recs, detectors: [c, SyscallLatencyDetector()])
        XCTAssertLessThanOrEqual(c.ticks, 2 * Int(DetectorEngine.maxTicksPerJump))
        XCTAssertEqual(findings.count, 2, "two outliers 2^63 ns apart, far outside each other's cooldown")
    }
}
