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
}
