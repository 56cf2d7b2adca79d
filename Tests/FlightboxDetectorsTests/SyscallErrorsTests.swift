import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxDetectors

private let s: UInt64 = 1_000_000_000
private let ms: UInt64 = 1_000_000

// x86_64 numbers (the host of these tests' arch: .x86_64 engines).
private let read: UInt32 = 0, write: UInt32 = 1, openat: UInt32 = 257, accept4: UInt32 = 288, connect: UInt32 = 42

private func errors(_ changes: [(String, SettingValue)] = [], exclude: Exclusions = Exclusions()) -> SyscallErrorsDetector {
    var settings = SyscallErrorsDetector.spec.defaults
    for (k, v) in changes { XCTAssertNil(settings.set(k, v)) }
    settings.exclude = exclude
    return SyscallErrorsDetector(settings: settings)
}

/// `n` calls of `nr` failing with `errno` from `pid`, spread over the second `second` (from 100 ms on).
private func failures(_ n: Int, second: UInt64, nr: UInt32, errno: Int64, pid: UInt32 = 42, kind: FdKind = .unresolved, compat: Bool = false) -> [[UInt8]] {
    (0..<n).map { i in
        SyscallRecord.encode(ts: second * s + 100 * ms + UInt64(i) * (800 * ms / UInt64(max(n, 1))), flags: compat ? syscallCompatFlag : 0,
                             pid: pid, tid: pid, durationNs: 2_000, ret: -errno, nr: nr, fdKind: kind.rawValue)
    }
}

/// A successful call at ts: moves event time on.
private func ok(_ ts: UInt64, pid: UInt32 = 42) -> [UInt8] {
    SyscallRecord.encode(ts: ts, pid: pid, tid: pid, durationNs: 1_000, ret: 0, nr: read, fdKind: 0)
}

/// The stream starts at 0 (a successful call), so processes of the snapshot are warm from 5 s.
private func judge(_ records: [[UInt8]], _ d: Detector) -> [Finding] {
    detect([ok(0)] + records, detectors: [d], snapshot: ProcessSnapshot(timestamp: 0, processes: [
        ProcessRecord(pid: 42, ppid: 1, uid: 0, comm: "server", exe: "/server", argv: ["server"]),
        ProcessRecord(pid: 43, ppid: 1, uid: 0, comm: "worker", exe: "/worker", argv: ["worker"]),
    ]), arch: .x86_64)
}

/// Merges streams by timestamp (stable), as the engine expects them ordered.
private func ordered(_ parts: [[UInt8]]...) -> [[UInt8]] {
    parts.flatMap { $0 }.enumerated().sorted { a, b in
        let ta = a.element.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        let tb = b.element.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        return (ta, a.offset) < (tb, b.offset)
    }.map(\.element)
}

final class SyscallErrorsTests: XCTestCase {
    func testRegisteredWithItsFamily() {
        XCTAssertTrue(DetectorRegistry.names.contains("syscall-errors"))
        XCTAssertEqual(SyscallErrorsDetector.spec.family, "syscalls")
        XCTAssertEqual(errnoNumber("EMFILE"), 24)
        XCTAssertEqual(errnoNumber("e28"), 28)
        XCTAssertNil(errnoNumber("ENOPE"))
        XCTAssertEqual(errnoLabel(24), "EMFILE")
        XCTAssertEqual(errnoLabel(3000), "E3000")
        var settings = SyscallErrorsDetector.spec.defaults
        XCTAssertEqual(settings.set("report_first", .strings(["EIO", "ENOSPACE"])),
                       "'ENOSPACE' is not an errno (a name such as EMFILE, or E<number> from E1 to E4095)")
        XCTAssertNil(settings.set("ordinary", .strings(["ENOENT", "E4095"])))
    }

    func testConfiguredClasses() {
        // ENOSPC moved to the rate rule: a single one is no longer reported; EMFILE made ordinary: 200 is nothing.
        let d = errors([("report_first", .strings(["EIO"])), ("ordinary", .strings(["EMFILE"]))])
        XCTAssertEqual(judge(ordered(failures(1, second: 10, nr: write, errno: 28), failures(200, second: 10, nr: accept4, errno: 24)), d), [])
    }

    func testSteadyOrdinaryErrorsGiveNothing() {
        // A busy, healthy process: path lookups failing with ENOENT, non-blocking
        // reads with EAGAIN, interrupted waits, isatty; for a minute, with bursts of 10x.
        var parts: [[[UInt8]]] = []
        for sec in 0..<60 as Range<UInt64> {
            let burst = sec % 10 == 9 ? 10 : 1
            parts.append(failures(300 * burst, second: sec, nr: openat, errno: 2))
            parts.append(failures(2_000, second: sec, nr: read, errno: 11))
            parts.append(failures(5, second: sec, nr: 230, errno: 4))
            parts.append(failures(3, second: sec, nr: 16, errno: 25))
        }
        XCTAssertEqual(judge(ordered(parts.flatMap { $0 }), errors()), [])
    }

    func testAnOrdinaryErrnoFiresOnlyOnAHugeJump() throws {
        var parts: [[UInt8]] = []
        for sec in 0..<20 as Range<UInt64> { parts += failures(sec == 15 ? 40_000 : 100, second: sec, nr: read, errno: 11) }
        let f = judge(ordered(parts), errors())
        XCTAssertEqual(f.count, 1)
        let x = try XCTUnwrap(f.first)
        XCTAssertEqual(x.evidence["kind"]?.stringValue, "ordinary_error_rate")
        XCTAssertEqual(x.evidence["errno"]?.stringValue, "EAGAIN")
        XCTAssertEqual(x.severity, .warning)
    }

    func testEMFILEStormIsOneWarningWithItsEvidence() throws {
        var parts: [[UInt8]] = []
        for sec in 0..<30 as Range<UInt64> {
            parts += failures(10, second: sec, nr: openat, errno: 2)
            if (10..<15).contains(sec) {
                parts += failures(150, second: sec, nr: accept4, errno: 24)
                parts += failures(50, second: sec, nr: openat, errno: 24)
            }
        }
        let f = judge(ordered(parts), errors())
        XCTAssertEqual(f.count, 1, "\(f.map(\.summary))")
        let x = try XCTUnwrap(f.first)
        XCTAssertEqual(x.detector, "syscall-errors")
        XCTAssertEqual(x.severity, .warning)
        XCTAssertEqual(x.pid, 42)
        XCTAssertEqual(x.comm, "server")
        XCTAssertEqual(x.ts, 11 * s, "at the end of the first storming window")
        XCTAssertEqual(x.evidence["kind"]?.stringValue, "error_rate")
        XCTAssertEqual(x.evidence["errno"]?.stringValue, "EMFILE")
        XCTAssertEqual(x.evidence["errno_number"]?.intValue, 24)
        XCTAssertEqual(x.evidence["failures"]?.uintValue, 200)
        XCTAssertEqual(x.evidence["baseline_per_window"]?.doubleValue, 0)
        XCTAssertEqual(x.evidence["window_start_ns"]?.uintValue, 10 * s)
        XCTAssertEqual(x.evidence["window_ns"]?.uintValue, s)
        XCTAssertEqual(x.evidence["episode_started_ns"]?.uintValue, 10 * s + 100 * ms, "its first failure")
        guard case .array(let calls)? = x.evidence["syscalls"] else { return XCTFail("no syscalls") }
        XCTAssertEqual(calls.map { $0["syscall"]?.stringValue }, ["accept4", "openat"])
        XCTAssertEqual(calls.map { $0["count"]?.uintValue }, [150, 50])
        XCTAssertEqual(x.summary, "server (pid 42) had 200 syscalls fail with EMFILE (too many open files) in 1s, where it had none before: accept4 150, openat 50")
        XCTAssertTrue(x.summary.contains("accept4 150, openat 50"), x.summary)
    }

    func testWarmUp() {
        // The same storm 2 s after the process started is its start-up: not judged.
        let young = judge(ordered(failures(200, second: 2, nr: accept4, errno: 24), [ok(20 * s)]), errors())
        XCTAssertEqual(young, [])
        // After a fork, warm-up counts from the fork.
        let forked = judge(ordered([EventEncoder.fork(ts: 10 * s, pid: 42, tid: 42, childPid: 50, childTid: 50, thread: false, comm: "child")],
                                 failures(200, second: 12, nr: accept4, errno: 24, pid: 50), [ok(20 * s)]), errors())
        XCTAssertEqual(forked, [])
        let later = judge(ordered([EventEncoder.fork(ts: 10 * s, pid: 42, tid: 42, childPid: 50, childTid: 50, thread: false, comm: "child")],
                                failures(200, second: 16, nr: accept4, errno: 24, pid: 50), [ok(20 * s)]), errors())
        XCTAssertEqual(later.map(\.pid), [50])
        XCTAssertEqual(later.first?.comm, "child")
    }

    func testARateAgainstItsOwnBaseline() {
        // ECONNREFUSED at 100/s for a minute is this process's normal; 300 is not 8x of it.
        var parts: [[UInt8]] = []
        for sec in 0..<40 as Range<UInt64> { parts += failures(sec == 30 ? 300 : 100, second: sec, nr: connect, errno: 111) }
        XCTAssertEqual(judge(ordered(parts), errors()), [])
        parts = []
        for sec in 0..<40 as Range<UInt64> { parts += failures(sec == 30 ? 1_000 : 100, second: sec, nr: connect, errno: 111) }
        let f = judge(ordered(parts), errors())
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(f.first?.evidence["errno"]?.stringValue, "ECONNREFUSED")
        XCTAssertEqual(f.first?.evidence["baseline_per_window"]?.doubleValue ?? 0, 100, accuracy: 0.5)
        XCTAssertTrue(f.first?.summary.contains("10.0x its baseline of 100.0 per window: connect 1000") == true, f.first?.summary ?? "")
    }

    func testFirstENOSPCAndEIOAreReportedOncePerEpisode() throws {
        var parts: [[UInt8]] = []
        // During the warm-up: reported anyway. Then every second for 10 s: the same episodes.
        for sec in 1..<11 as Range<UInt64> {
            parts += failures(3, second: sec, nr: write, errno: 28)
            parts += failures(1, second: sec, nr: read, errno: 5)
        }
        parts += failures(1, second: 3, nr: read, errno: 5, pid: 43, kind: .char)
        // After the hold-down (30 s of quiet): a new episode.
        parts += failures(1, second: 60, nr: write, errno: 28)
        let f = judge(ordered(parts), errors())
        XCTAssertEqual(f.map { "\($0.pid) \($0.evidence["errno"]?.stringValue ?? "") \($0.severity) \($0.ts / s)" },
                       ["42 EIO critical 2", "42 ENOSPC warning 2", "43 EIO warning 4", "42 ENOSPC warning 61"])
        let nospc = f[1]
        XCTAssertEqual(nospc.evidence["kind"]?.stringValue, "first_error")
        XCTAssertEqual(nospc.evidence["failures"]?.uintValue, 3)
        XCTAssertEqual(nospc.evidence["first_failure_ns"]?.uintValue, s + 100 * ms)
        XCTAssertTrue(nospc.summary.contains("ENOSPC (no space left on device)"), nospc.summary)
        XCTAssertNotNil(f[2].evidence["note"], "EIO on a character device: a terminal that hung up")
    }

    func testAProcessThatFailsAndExitsAtOnceIsReportedByName() {
        let fork = EventEncoder.fork(ts: 1 * s, pid: 42, tid: 42, childPid: 60, childTid: 60, thread: false, comm: "dd")
        let exit = EventEncoder.exit(ts: 1 * s + 500 * ms, pid: 60, tid: 60, status: 1 << 8, group: true, ppid: 42, lifetime: 500 * ms, comm: "dd")
        let f = judge(ordered([fork], failures(1, second: 1, nr: write, errno: 28, pid: 60), [exit]), errors())
        XCTAssertEqual(f.map { "\($0.pid) \($0.comm) \($0.severity)" }, ["60 dd warning"])
    }

    func testTheFirstPartialWindowOfAStormIsNotItsBaseline() throws {
        // 10 EMFILEs at the end of one window (under min), 100 in the next.
        let f = judge(ordered(failures(10, second: 10, nr: accept4, errno: 24), failures(100, second: 11, nr: accept4, errno: 24)), errors())
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(try XCTUnwrap(f.first?.evidence["baseline_per_window"]?.doubleValue), 1.25, accuracy: 1e-9)
    }

    func testHoldDown() {
        var parts: [[UInt8]] = []
        for sec: UInt64 in [10, 11, 30, 31] { parts += failures(100, second: sec, nr: accept4, errno: 24) }
        // Quiet from 32 s: the episode ends at 62 s; 70 s is a new one.
        parts += failures(100, second: 70, nr: accept4, errno: 24)
        let f = judge(ordered(parts), errors())
        XCTAssertEqual(f.map { $0.ts / s }, [11, 71])
        XCTAssertEqual(f.map(\.severity), [.warning, .warning])
    }

    func testEscalatesOnce() throws {
        var parts: [[UInt8]] = []
        parts += failures(50, second: 10, nr: accept4, errno: 24)
        parts += failures(1_000, second: 11, nr: accept4, errno: 24)
        parts += failures(5_000, second: 12, nr: accept4, errno: 24)
        parts += failures(50, second: 13, nr: accept4, errno: 24)
        let f = judge(ordered(parts), errors())
        XCTAssertEqual(f.map(\.severity), [.warning, .critical])
        let c = try XCTUnwrap(f.last)
        XCTAssertEqual(c.evidence["escalated_from"]?.stringValue, "warning")
        XCTAssertEqual(c.evidence["episode_started_ns"]?.uintValue, 10 * s + 100 * ms)
        XCTAssertTrue(c.summary.hasSuffix("worse than when the episode began"), c.summary)
    }

    func testATreeWalkMeetingUnreadableDirectoriesIsNormal() throws {
        // find as an unprivileged user: openat(fd, name, O_DIRECTORY|O_NOFOLLOW|...) = -EACCES, in bursts.
        func walk(_ n: Int, second: UInt64, flags: UInt64) -> [[UInt8]] {
            (0..<n).map { i in
                SyscallRecord.encode(ts: second * s + 100 * ms + UInt64(i) * 100_000, pid: 42, tid: 42, durationNs: 2_000, ret: -13,
                                     args: [5, 0x1000, flags], nr: openat, fdKind: 0)
            }
        }
        var parts: [[UInt8]] = []
        for sec in 0..<10 as Range<UInt64> { parts += walk(sec == 8 ? 2_000 : 4, second: sec, flags: 0xb0900) }
        XCTAssertEqual(judge(ordered(parts), errors()), [])
        // The same opens of files, not directories: a burst of permission denials.
        parts = []
        for sec in 0..<10 as Range<UInt64> { parts += walk(sec == 8 ? 200 : 4, second: sec, flags: 0x80000) }
        let f = judge(ordered(parts), errors())
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(f.first?.evidence["errno"]?.stringValue, "EACCES")
        XCTAssertNil(f.first?.evidence["opening_directories"])
    }

    func testCompatCallsAreIgnored() {
        let f = judge(ordered(failures(500, second: 10, nr: 5, errno: 24, compat: true), failures(2, second: 11, nr: 4, errno: 28, compat: true)), errors())
        XCTAssertEqual(f, [])
    }

    func testExclusionsAndExec() {
        let excluded = judge(ordered(failures(200, second: 10, nr: accept4, errno: 24)), errors(exclude: Exclusions(comms: ["server"])))
        XCTAssertEqual(excluded, [])
        // A new program after exec is warmed up again.
        let exec = EventEncoder.exec(ts: 9 * s, pid: 42, tid: 42, ppid: 1, uid: 0, comm: "other", filename: "/other", argv: ["other"])
        XCTAssertEqual(judge(ordered([exec], failures(200, second: 10, nr: accept4, errno: 24)), errors()), [])
    }

    func testTwoProcessesInKeyOrderAndDeterministic() {
        let stream = ordered(failures(100, second: 10, nr: accept4, errno: 24, pid: 43), failures(100, second: 10, nr: connect, errno: 111),
                             failures(100, second: 10, nr: accept4, errno: 24))
        let a = judge(stream, errors()), b = judge(stream, errors())
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.map { "\($0.pid) \($0.evidence["errno"]?.stringValue ?? "")" }, ["42 EMFILE", "42 ECONNREFUSED", "43 EMFILE"])
    }

    func testHostileTimestamps() {
        var stream: [[UInt8]] = []
        stream += failures(1, second: 1, nr: write, errno: 5)
        stream.append(SyscallRecord.encode(ts: .max - 3, pid: 42, tid: 42, durationNs: .max, ret: -28, nr: write, fdKind: 0))
        stream.append(SyscallRecord.encode(ts: 5, pid: 42, tid: 42, durationNs: 1, ret: -28, nr: write, fdKind: 0))
        stream.append(SyscallRecord.encode(ts: .max, pid: 42, tid: 42, durationNs: 0, ret: -24, nr: accept4, fdKind: 0))
        stream.append(SyscallRecord.encode(ts: 0, pid: 42, tid: 42, durationNs: 0, ret: .min, nr: .max, fdKind: 0xff))
        stream.append(SyscallRecord.encode(ts: .max, pid: 42, tid: 42, durationNs: 0, ret: -5000, nr: 1, fdKind: 0))
        let f = judge(stream, errors())
        let g = judge(stream, errors())
        XCTAssertEqual(f, g)
        XCTAssertEqual(f.filter { $0.evidence["errno"]?.stringValue == "EIO" }.count, 1)
        XCTAssertEqual(f.filter { $0.evidence["errno"]?.stringValue == "ENOSPC" }.count, 1)
    }
}
