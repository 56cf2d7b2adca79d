import XCTest
import FlightboxEvents
import FlightboxFormat
import FlightboxRecorder
import FlightboxRules

/// A process that lives across a flight segment boundary has one exec_id in
/// both segments, so findings and incidents correlate across it.
final class ImageStartsTests: XCTestCase {
    func testExecIdsAreStableAcrossASegmentBoundary() throws {
        let dir = flightDirectory("ring-exec-ids")
        let clock = ManualClock()
        var config = SegmentRing.Configuration(directory: dir)
        config.segmentNs = 1_000_000_000
        config.keepNs = 3_600_000_000_000
        // What /proc holds at each rotation: the shell, and from the second
        // segment on its child (forked and exec'd in the first).
        var scanned: [ProcessRecord] = [ProcessRecord(pid: 42, ppid: 1, uid: 0, comm: "bash", exe: "/usr/bin/bash", argv: ["bash"])]
        let ring = try SegmentRing(configuration: config, clock: clock, header: { number, _ in
            let meta = TraceMetadata(host: "t", kernelRelease: "6.18", machine: hostMachine, clockNs: clock.now(), realtimeNs: clock.now(),
                                     capture: .object([("flight_segment", .object([("number", .uint(number))]))]))
            return (meta, ProcessSnapshot(timestamp: clock.now(), processes: scanned))
        })
        let t0 = clock.now()
        for r in [EventEncoder.fork(ts: t0 + 10, pid: 42, tid: 42, childPid: 600, childTid: 600, thread: false, comm: "bash"),
                  ExecRecord.encode(ts: t0 + 20, pid: 600, tid: 600, ppid: 42, argc: 1, comm: "sleep", filename: Array("/usr/bin/sleep".utf8),
                                    argv: Array("sleep\0".utf8)),
                  EventEncoder.fork(ts: t0 + 30, pid: 42, tid: 42, childPid: 601, childTid: 601, thread: false, comm: "bash"),
                  ExitRecord.encode(ts: t0 + 40, flags: exitGroupFlag, pid: 601, tid: 601)] {
            _ = try r.withUnsafeBytes { try ring.append($0) }
        }
        scanned.append(ProcessRecord(pid: 600, ppid: 42, uid: 0, comm: "sleep", exe: "/usr/bin/sleep", argv: ["sleep"]))
        clock.advance(by: 1_500_000_000)
        ring.maintain(now: clock.now())
        let later = EventEncoder.syscall(ts: clock.now(), pid: 600, tid: 600, nr: nrGetppid, duration: 1_000, ret: 42)
        _ = try later.withUnsafeBytes { try ring.append($0) }
        try ring.flush()
        try ring.close()

        let paths = flightSegmentPaths(dir)
        XCTAssertEqual(paths.count, 2)
        // The first segment: the lineage sees the exec.
        let first = try TraceReader(path: paths[0])
        let live = LineageTable(snapshot: first.snapshot)
        first.forEachEvent { e in live.apply(e); live.retire(e) }
        let id = try XCTUnwrap(live.execution(600)?.execId.string)
        XCTAssertEqual(id, "\(t0 + 20):600")
        // The second: the snapshot carries the image start, so the same id.
        let second = try TraceReader(path: paths[1])
        XCTAssertEqual(second.snapshot?.processes.first { $0.pid == 600 }?.imageStartNs, t0 + 20)
        XCTAssertNil(second.snapshot?.processes.first { $0.pid == 42 }?.imageStartNs, "running before the recording: start 0 in both")
        XCTAssertEqual(LineageTable(snapshot: second.snapshot).execution(600)?.execId.string, id)
        XCTAssertEqual(LineageTable(snapshot: second.snapshot).execution(42)?.execId.string, live.execution(42)?.execId.string)
    }

    /// An exit forgets the pid: a reused pid is not given the old start.
    func testAnExitForgetsThePid() {
        var s = ImageStarts()
        for r in [EventEncoder.fork(ts: 5, pid: 1, tid: 1, childPid: 7, childTid: 7, thread: false, comm: "a"),
                  ExitRecord.encode(ts: 6, flags: exitGroupFlag, pid: 7, tid: 7),
                  EventEncoder.fork(ts: 8, pid: 1, tid: 1, childPid: 9, childTid: 9, thread: true, comm: "a")] {
            r.withUnsafeBytes { s.note($0) }
        }
        XCTAssertEqual(s.starts, [:], "an exited process and a thread: nothing")
        let snap = s.annotate(ProcessSnapshot(timestamp: 0, processes: [ProcessRecord(pid: 7, ppid: 1, uid: 0, comm: "b", exe: "", argv: [])]))
        XCTAssertNil(snap.processes[0].imageStartNs)
    }
}
