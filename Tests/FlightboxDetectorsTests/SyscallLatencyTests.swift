import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxDetectors

let nrRead = syscallNumber(named: "read")!
/// Not a file-system call: judged like any call, whatever its latency (the
/// storage rules are tested on `read`).
let nrIoctl = syscallNumber(named: "ioctl")!
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
        var recs = fastCalls(200, nr: nrIoctl, from: &ts)
        ts += 10_000
        recs.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 43, nr: nrIoctl, duration: 50_000_000, ret: 4096, fdKind: .regular))
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
        XCTAssertTrue(finding.summary.contains("ioctl on a regular fd took 50.000ms"), finding.summary)
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
        var recs = fastCalls(10, nr: nrIoctl, from: &ts)
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 42, tid: 42, nr: nrIoctl, duration: 50_000_000, fdKind: .regular))
        XCTAssertEqual(detect(recs), [])
    }

    func testWaitsByDesignAreNotJudged() {
        var ts: UInt64 = 0
        var recs = fastCalls(200, nr: nrIoctl, from: &ts)
        recs += fastCalls(200, nr: nrNanosleep, from: &ts)
        recs += fastCalls(200, nr: nrFutex, from: &ts)
        for kind in [FdKind.fifo, .socket, .char, .anon] {
            ts += 100_000_000
            recs.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 42, nr: nrIoctl, duration: 90_000_000, fdKind: kind))
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
        var recs = fastCalls(200, nr: nrIoctl, from: &ts)
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 42, tid: 42, nr: nrIoctl, duration: 900_000, fdKind: .regular))
        XCTAssertEqual(detect(recs), [])
    }

    func testCooldownSuppressesAndCounts() {
        var ts: UInt64 = 0
        var recs = fastCalls(200, nr: nrIoctl, from: &ts)
        for i in 0..<5 {
            ts += 1_000_000_000 // one second apart: four inside the 10 s cooldown
            recs.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 42, nr: nrIoctl, duration: 50_000_000 + UInt64(i), fdKind: .regular))
            // Enough fast calls that the outliers stay under 1% and out of the p99.
            recs += fastCalls(200, nr: nrIoctl, from: &ts)
        }
        ts += 20_000_000_000
        recs.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 42, nr: nrIoctl, duration: 60_000_000, fdKind: .regular))
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
        var recs = fastCalls(100, nr: nrIoctl, from: &ts)
        for _ in 0..<30 {
            ts += 1_000_000_000
            recs.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 42, nr: nrIoctl, duration: 50_000_000, fdKind: .regular))
            recs += fastCalls(20, nr: nrIoctl, from: &ts)
        }
        let f = detect(recs)
        XCTAssertGreaterThanOrEqual(f.count, 1)
        XCTAssertLessThanOrEqual(f.count, 2, "learned within a few outliers, not one finding per slow call")
    }

    func testBaselinesArePerProcessAndForgottenAtExit() {
        var ts: UInt64 = 0
        var recs = fastCalls(200, nr: nrIoctl, from: &ts, pid: 42)
        // Another process with no history of its own: not judged.
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 77, tid: 77, nr: nrIoctl, duration: 50_000_000, fdKind: .regular))
        // pid 42 exits and the pid is reused: the old baseline must not apply.
        recs.append(EventEncoder.exit(ts: ts + 2, pid: 42, tid: 42, status: 0, group: true, ppid: 1, lifetime: 1, comm: "db"))
        recs.append(EventEncoder.syscall(ts: ts + 3, pid: 42, tid: 42, nr: nrIoctl, duration: 50_000_000, fdKind: .regular))
        XCTAssertEqual(detect(recs), [])
    }

    func testSameStreamSameFindings() {
        var ts: UInt64 = 0
        var recs: [[UInt8]] = []
        for pid in [UInt32(5), 3, 9, 1] { recs += fastCalls(100, nr: nrIoctl, from: &ts, pid: pid) }
        for pid in [UInt32(9), 1, 5, 3] {
            ts += 1
            recs.append(EventEncoder.syscall(ts: ts, pid: pid, tid: pid, nr: nrIoctl, duration: 30_000_000, fdKind: .regular))
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
        recs += fastCalls(100, nr: nrIoctl, from: &ts, pid: 50)
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 50, tid: 50, nr: nrIoctl, duration: 30_000_000, fdKind: .regular))
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
        var recs = fastCalls(100, nr: nrIoctl, from: &ts)
        recs.append(EventEncoder.syscall(ts: 1 << 63, pid: 42, tid: 42, nr: nrIoctl, duration: 50_000_000, fdKind: .regular))
        recs.append(EventEncoder.syscall(ts: .max, pid: 42, tid: 42, nr: nrIoctl, duration: .max, fdKind: .regular))
        let findings = detect(recs, detectors: [c, SyscallLatencyDetector()])
        XCTAssertLessThanOrEqual(c.ticks, 2 * Int(DetectorEngine.maxTicksPerJump))
        XCTAssertEqual(findings.count, 2, "two outliers 2^63 ns apart, far outside each other's cooldown")
    }
}

/// The attribution rules: a slow call explained by the disk or by a wait for
/// a CPU is not blamed on the syscall.
final class SyscallLatencyAttributionTests: XCTestCase {
    let nrGetdents = syscallNumber(named: "getdents64")!
    let nrStat = syscallNumber(named: "newfstatat")!

    func runq(_ tid: UInt32, at ts: UInt64, _ wait: UInt64) -> [UInt8] {
        SchedRecord.encode(ts: ts, pid: 42, tid: tid, waitNs: wait, kind: 1, comm: "db")
    }

    func offCPU(_ tid: UInt32, at ts: UInt64, _ wait: UInt64) -> [UInt8] {
        SchedRecord.encode(ts: ts, pid: 42, tid: tid, waitNs: wait, kind: 2, prevState: 2, comm: "db")
    }

    func blockIO(_ tid: UInt32, at ts: UInt64, _ latency: UInt64) -> [UInt8] {
        BlockRecord.encode(ts: ts, pid: 42, tid: tid, latencyNs: latency, dev: 8 << 20, bytes: 4096, comm: "db")
    }

    func call(_ nr: UInt32, at ts: UInt64, _ d: UInt64, _ kind: FdKind = .regular, tid: UInt32 = 42) -> [UInt8] {
        EventEncoder.syscall(ts: ts, pid: 42, tid: tid, nr: nr, duration: d, ret: 4096, fdKind: kind)
    }

    /// What `find`, `cat` and an interpreter's start-up do on a cold page
    /// cache: reads, getdents and stats of a few ms against cached ones of a
    /// few µs. Without the block family nothing says the disk was read, and
    /// these latencies are what a disk read takes: no finding. The same
    /// latency on a call that is no file-system call is flagged.
    func testColdCacheReadsUnderTheCeilingAreNotFlagged() {
        var ts: UInt64 = 1_000_000
        var recs = fastCalls(200, nr: nrRead, from: &ts, kind: .regular)
        recs += fastCalls(200, nr: nrGetdents, from: &ts, kind: .directory)
        recs += fastCalls(200, nr: nrStat, from: &ts)
        recs += fastCalls(200, nr: nrIoctl, from: &ts, kind: .regular)
        for (i, d) in [4_000_000, 8_000_000, 6_500_000, 90_000_000].enumerated() {
            ts += 20_000_000_000 // past every cooldown: each would be a finding of its own
            recs.append(call(nrRead, at: ts, UInt64(d)))
            recs.append(call(nrGetdents, at: ts + 1, UInt64(d), .directory))
            recs.append(call(nrStat, at: ts + 2, UInt64(d), .unresolved))
            if i == 0 { recs.append(call(nrIoctl, at: ts + 3, UInt64(d))) }
        }
        let f = detect(recs)
        XCTAssertEqual(f.map { $0.evidence["syscall"]?.stringValue }, ["ioctl"])
    }

    /// Past the ceiling a file-system call with no block I/O of its thread is
    /// judged like any call, and the storage outliers before it are counted.
    func testReadPastTheCeilingIsFlagged() {
        var ts: UInt64 = 1_000_000
        var recs = fastCalls(200, nr: nrRead, from: &ts, kind: .regular)
        recs.append(call(nrRead, at: ts + 1, 6_000_000))
        recs.append(call(nrRead, at: ts + 10_000_000, 150_000_000))
        let f = detect(recs)
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(f.first?.evidence["latency_ns"]?.uintValue, 150_000_000)
        XCTAssertEqual(f.first?.evidence["outliers_left_to_storage_since_last"]?.uintValue, 1)
        XCTAssertNil(f.first?.evidence["block_io_in_flight_ns"])
        // A ceiling of 0 judges file-system calls like any other: the cold
        // read is the finding, the slow one is in its cooldown.
        var s = SyscallLatencyDetector.spec.defaults
        s.set("storage_ceiling", .duration(0))
        let all = detect(recs, detectors: [SyscallLatencyDetector(settings: s)])
        XCTAssertEqual(all.map { $0.evidence["latency_ns"]?.uintValue }, [6_000_000])
    }

    /// A read during which its thread had block I/O in flight for most of the
    /// call waited for the disk: however slow, a slow disk is the block
    /// detector's call. Another thread's I/O, or I/O outside the call, excuse
    /// nothing; overlapping requests count once (their union).
    func testStorageBoundReadsAreLeftToTheBlockFamily() {
        var ts: UInt64 = 1_000_000_000
        var recs = fastCalls(200, nr: nrRead, from: &ts, kind: .regular)
        let t0 = ts + 1_000_000
        // 300 ms read, 250 ms of it with two overlapping requests in flight.
        recs.append(blockIO(42, at: t0 + 10_000_000, 200_000_000))
        recs.append(blockIO(42, at: t0 + 100_000_000, 160_000_000))
        recs.append(call(nrRead, at: t0, 300_000_000))
        XCTAssertEqual(detect(recs), [], "storage-bound")

        // The same read with the I/O on another thread of the process: judged.
        var other = fastCalls(200, nr: nrRead, from: &ts, kind: .regular)
        other.append(blockIO(43, at: t0 + 10_000_000, 250_000_000))
        other.append(call(nrRead, at: t0, 300_000_000))
        XCTAssertEqual(detect(other).count, 1)

        // Two requests of 100 and 90 ms that overlap by 50 ms: 140 ms in
        // flight, and 5 ms of one that began before the call: 145 ms, under
        // half of the 300 ms call (their sum, 195 ms, is over).
        var partial = fastCalls(200, nr: nrRead, from: &ts, kind: .regular)
        partial.append(blockIO(42, at: t0 + 500_000_000, 10_000_000)) // after the call: not in it
        partial.append(blockIO(42, at: t0 - 50_000_000, 55_000_000))  // 5 ms inside
        partial.append(blockIO(42, at: t0 + 100_000_000, 100_000_000))
        partial.append(blockIO(42, at: t0 + 150_000_000, 90_000_000))
        partial.append(call(nrRead, at: t0, 300_000_000))
        let f = detect(partial)
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(f.first?.evidence["block_io_in_flight_ns"]?.uintValue, 145_000_000)
    }

    /// A buffered write copies into the page cache: it waits for the disk
    /// only when the disk cannot keep up, so the ceiling does not apply and a
    /// 50 ms write is judged; a write during which its thread's own I/O was in
    /// flight (O_SYNC, O_DIRECT) is storage-bound like a read.
    func testWritesAreJudgedUnderTheCeilingUnlessTheirIOExplainsThem() {
        var ts: UInt64 = 1_000_000_000
        var recs = fastCalls(200, nr: nrWrite, from: &ts, kind: .regular)
        let t0 = ts + 1_000_000
        recs.append(call(nrWrite, at: t0, 50_000_000))
        XCTAssertEqual(detect(recs).count, 1)
        var direct = fastCalls(200, nr: nrWrite, from: &ts, kind: .regular)
        direct.append(blockIO(42, at: t0 + 1_000_000, 45_000_000))
        direct.append(call(nrWrite, at: t0, 50_000_000))
        XCTAssertEqual(detect(direct), [])
    }

    /// A call its thread spent mostly runnable on a run queue was slow for want
    /// of a CPU (the scheduling detector's call): not flagged, but counted into
    /// the next finding, which shows its own run-queue time. Off-CPU waits
    /// (blocked in the call) are the call's own latency.
    func testPreemptedCallsAreNotBlamedOnTheSyscall() {
        var ts: UInt64 = 1_000_000
        var recs = fastCalls(200, nr: nrIoctl, from: &ts, kind: .regular)
        let t0 = ts + 1_000_000
        // 50 ms ioctl, four run-queue waits of 8 ms: 32 ms (64%).
        for i in 0..<4 { recs.append(runq(42, at: t0 + 2_000_000 + UInt64(i) * 12_000_000, 8_000_000)) }
        recs.append(call(nrIoctl, at: t0, 50_000_000))
        // 50 ms ioctl blocked off-CPU for 40 ms and 10 ms on a run queue.
        let t1 = t0 + 100_000_000
        recs.append(offCPU(42, at: t1 + 1_000_000, 40_000_000))
        recs.append(runq(42, at: t1 + 41_000_000, 5_000_000))
        recs.append(runq(42, at: t1 + 46_000_000, 5_000_000)) // 4 ms of it inside the call
        recs.append(call(nrIoctl, at: t1, 50_000_000))
        let f = detect(recs)
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(f.first?.ts, t1)
        XCTAssertEqual(f.first?.evidence["runqueue_wait_ns"]?.uintValue, 9_000_000)
        XCTAssertEqual(f.first?.evidence["outliers_preempted_since_last"]?.uintValue, 1)
        // Preemption of another thread excuses nothing.
        var other = fastCalls(200, nr: nrIoctl, from: &ts, kind: .regular)
        other.append(runq(43, at: t0 + 1_000_000, 45_000_000))
        other.append(call(nrIoctl, at: t0, 50_000_000))
        XCTAssertEqual(detect(other).count, 1)
    }

    /// A call preempted more times than a thread's remembered history holds is
    /// judged on the part of it the history covers.
    func testLongPreemptedCallBeyondTheHistory() {
        var ts: UInt64 = 1_000_000
        var recs = fastCalls(200, nr: nrIoctl, from: &ts, kind: .regular)
        let t0 = ts + 1_000_000
        // 400 ms: 100 run-queue waits of 3 ms, one every 4 ms (75%).
        for i in 0..<100 { recs.append(runq(42, at: t0 + UInt64(i) * 4_000_000, 3_000_000)) }
        recs.append(call(nrIoctl, at: t0, 400_000_000))
        XCTAssertEqual(detect(recs), [])
        // A thread whose slot another thread took has lost its history: the
        // call is judged on its own (a false blame, never a missed one).
        recs.insert(runq(42 + UInt32(ThreadIntervals.slots), at: t0 + 399_000_000, 1_000_000), at: recs.count - 1)
        XCTAssertEqual(detect(recs).count, 1)
    }

    /// The history is per thread and forgotten when the thread exits (tids
    /// are reused).
    func testThreadHistoryIsForgottenAtExit() {
        var ts: UInt64 = 1_000_000
        var recs = fastCalls(200, nr: nrIoctl, from: &ts, kind: .regular)
        let t0 = ts + 1_000_000
        recs.append(runq(42, at: t0 + 1_000_000, 45_000_000))
        recs.append(EventEncoder.exit(ts: t0 + 2_000_000, pid: 42, tid: 42, status: 0, group: false, ppid: 1, lifetime: 1, comm: "db"))
        recs.append(call(nrIoctl, at: t0, 50_000_000))
        XCTAssertEqual(detect(recs).count, 1)
    }

    /// Waits and I/O at the end of time, of zero length, or of tid 0 neither
    /// trap nor excuse anything.
    func testHostileIntervals() {
        var ts: UInt64 = 1_000_000
        var recs = fastCalls(200, nr: nrIoctl, from: &ts, kind: .regular)
        recs.append(runq(42, at: .max - 5, .max))
        recs.append(blockIO(42, at: .max, .max))
        recs.append(runq(42, at: 7, 0))
        recs.append(runq(0, at: ts, 1_000_000_000))
        recs.append(call(nrIoctl, at: ts + 1, 50_000_000))
        recs.append(call(nrIoctl, at: .max - 10, .max))
        let f = detect(recs)
        XCTAssertEqual(f.count, 1)
        XCTAssertNil(f.first?.evidence["runqueue_wait_ns"])
    }

    /// The shares are parameters.
    func testSharesAreParameters() {
        var ts: UInt64 = 1_000_000
        var recs = fastCalls(200, nr: nrIoctl, from: &ts, kind: .regular)
        recs.append(runq(42, at: ts + 2_000_000, 20_000_000))
        recs.append(call(nrIoctl, at: ts + 1_000_000, 50_000_000))
        XCTAssertEqual(detect(recs).count, 1, "40% is under the default half")
        var s = SyscallLatencyDetector.spec.defaults
        s.set("preempted_share", .ratio(0.3))
        XCTAssertEqual(detect(recs, detectors: [SyscallLatencyDetector(settings: s)]), [])
    }
}

/// The flat per-process state: lookups that bypass the hashing must still
/// keep processes and numbers apart.
final class SyscallLatencyStateTests: XCTestCase {
    /// Calls of two processes interleaved one by one (the last process looked
    /// up changes on every call), and a number past the direct table.
    func testInterleavedProcessesAndHugeNumbers() {
        var ts: UInt64 = 1_000_000
        var recs: [[UInt8]] = []
        for i in 0..<200 {
            ts += 10_000
            recs.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 42, nr: nrIoctl, duration: 1_000 + UInt64(i % 3) * 1_000))
            recs.append(EventEncoder.syscall(ts: ts + 1, pid: 77, tid: 77, nr: nrIoctl, duration: 60_000_000))
            recs.append(EventEncoder.syscall(ts: ts + 2, pid: 42, tid: 42, nr: 100_000, duration: 1_000))
        }
        recs.append(EventEncoder.syscall(ts: ts + 10, pid: 42, tid: 42, nr: nrIoctl, duration: 50_000_000))
        recs.append(EventEncoder.syscall(ts: ts + 11, pid: 42, tid: 42, nr: 100_000, duration: 50_000_000))
        let f = detect(recs)
        // pid 77's calls are all slow: that is its baseline, never an outlier.
        XCTAssertEqual(f.map(\.pid), [42, 42])
        XCTAssertEqual(f.map { $0.evidence["nr"]?.uintValue }, [UInt64(nrIoctl), 100_000])
        XCTAssertEqual(f.map { $0.evidence["baseline_samples"]?.uintValue }, [200, 200])
        XCTAssertEqual(f.first?.evidence["baseline_p99_le_ns"]?.uintValue, 4095)
    }

    /// A pid reused after its process exited starts from nothing, even when
    /// it was the last process looked up.
    func testReusedPidAfterExitStartsAfresh() {
        var ts: UInt64 = 1_000_000
        var recs = fastCalls(200, nr: nrIoctl, from: &ts)
        recs.append(EventEncoder.exit(ts: ts + 1, pid: 42, tid: 42, status: 0, group: true, ppid: 1, lifetime: 1, comm: "db"))
        recs += fastCalls(10, nr: nrIoctl, from: &ts)
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 42, tid: 42, nr: nrIoctl, duration: 50_000_000))
        XCTAssertEqual(detect(recs), [])
    }
}
