import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

final class SchedulerFamilyTests: XCTestCase {
    /// Two busy tasks pinned to one CPU wait for it in turn; a sleeping task
    /// is off the CPU for as long as it sleeps. Both computed in the kernel.
    func testRunQueueLatencyAndOffCPUTime() throws {
        try requireBPF()
        let trace = scratch("sched.fbt")
        let l = Tool.load
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "scheduler", "--",
                                              "/bin/sh", "-c", "\(l) spin 400 0 & \(l) spin 400 0 & \(l) trickle 4 60; wait"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let execs = try eventsJSON(trace, ["--type", "exec"])
        let spinners = execs.filter { $0["fields"]?["argv"]?.arrayValue?.dropFirst().first?.stringValue == "spin" }.compactMap { $0["pid"]?.uintValue }
        let sleeper = try XCTUnwrap(execs.first { $0["fields"]?["argv"]?.arrayValue?.dropFirst().first?.stringValue == "trickle" }?["pid"]?.uintValue)
        XCTAssertEqual(spinners.count, 2)
        let sched = try eventsJSON(trace, ["--type", "sched"])
        for pid in spinners {
            let waits = sched.filter { $0["pid"]?.uintValue == pid && $0["kind_name"]?.stringValue == "runqueue" }.compactMap { $0["fields"]?["wait_ns"]?.uintValue }
            XCTAssertGreaterThanOrEqual(waits.count, 10, "pid \(pid) shares its CPU")
            XCTAssertTrue(waits.allSatisfy { $0 >= 1_000_000 }, "only waits over the threshold")
            XCTAssertGreaterThan(waits.reduce(0, +), 100_000_000, "about half of 400 ms is spent waiting")
        }
        let off = sched.filter { $0["pid"]?.uintValue == sleeper && $0["kind_name"]?.stringValue == "offcpu" }
        XCTAssertGreaterThanOrEqual(off.count, 3, "\(sched.filter { $0["pid"]?.uintValue == sleeper })")
        for e in off {
            XCTAssertGreaterThanOrEqual(e["fields"]?["wait_ns"]?.uintValue ?? 0, 55_000_000)
            XCTAssertLessThan(e["fields"]?["wait_ns"]?.uintValue ?? .max, 500_000_000)
            XCTAssertEqual((e["fields"]?["prev_state"]?.uintValue ?? 0) & 3, 1, "TASK_INTERRUPTIBLE (plus flags such as TASK_FREEZABLE): a sleep")
        }
    }

    /// The scheduling detector, live and on replay of the same recording: a
    /// service pinned to CPU 0 (4 ms of CPU a request, 20 ms asleep between
    /// requests) runs alone, then two CPU hogs join it on CPU 0. One warning
    /// names the service, starved on CPU 0, and both hogs; byte for byte the
    /// same both ways.
    func testSchedulingDetectorNamesTheHogsLiveAndOnReplay() throws {
        try requireBPF()
        let trace = scratch("sched-detect.fbt"), live = scratch("sched-live.jsonl"), config = scratch("sched.yaml")
        try "detectors:\n  scheduling:\n    warmup_windows: 2\n".write(toFile: config, atomically: true, encoding: .utf8)
        let l = Tool.load
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process,scheduler,gauges", "--detect", "--detectors", "scheduling",
                                              "--config", config, "--findings", live, "--",
                                              "/bin/sh", "-c", "\(l) serve 250 4 20 0 & sleep 3; \(l) spin 2500 0 & \(l) spin 2500 0 & wait"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let liveText = try String(contentsOfFile: live, encoding: .utf8)
        let replay = try Tool.flightbox("replay", trace, "--format", "json")
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertEqual(replay.stdout, liveText)
        let execs = try eventsJSON(trace, ["--type", "exec"])
        func pids(_ mode: String) -> [UInt64] {
            execs.filter { $0["fields"]?["argv"]?.arrayValue?.dropFirst().first?.stringValue == mode }.compactMap { $0["pid"]?.uintValue }
        }
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        XCTAssertEqual(findings.count, 1, replay.stdout)
        let f = try XCTUnwrap(findings.first)
        XCTAssertEqual(f["detector"]?.stringValue, "scheduling")
        XCTAssertEqual(f["severity"]?.stringValue, "warning")
        XCTAssertEqual(f["pid"]?.uintValue, pids("serve").first)
        XCTAssertEqual(Set(f["evidence"]?["hogs"]?.arrayValue?.compactMap { $0["pid"]?.uintValue } ?? []), Set(pids("spin")), replay.stdout)
        XCTAssertEqual(f["evidence"]?["cpus"]?.arrayValue?.first?["cpu"]?.uintValue, 0)
        XCTAssertGreaterThanOrEqual(f["evidence"]?["runq_ns"]?.uintValue ?? 0, 100_000_000)
    }
}
