import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxDetectors

/// How the engine shows events to detectors.
final class EventFilterTests: XCTestCase {
    /// Records the types it is shown; observes what it is told to, or
    /// everything when it declares nothing (a detector written before
    /// `observedTypes` existed).
    final class Recorder: Detector {
        let name: String
        let types: EventTypeSet?
        var seen: [UInt16] = []
        var observedTypes: EventTypeSet { types ?? .all }
        init(_ name: String, _ types: EventTypeSet?) {
            self.name = name
            self.types = types
        }
        func observe(_ event: Event, context: DetectorContext) { seen.append(event.rawType) }
    }

    final class Legacy: Detector {
        let name = "legacy"
        var seen = 0
        func observe(_ event: Event, context: DetectorContext) { seen += 1 }
    }

    func stream() -> [[UInt8]] {
        var unknown = EventEncoder.syscall(ts: 6, pid: 1, tid: 1, nr: 0, duration: 1)
        unknown[8] = 200 // a type no schema has yet: 200
        unknown[9] = 0
        return [
            EventEncoder.syscall(ts: 1, pid: 1, tid: 1, nr: 0, duration: 1),
            EventEncoder.fork(ts: 2, pid: 1, tid: 1, childPid: 2, childTid: 2, thread: false, comm: "child"),
            SchedRecord.encode(ts: 3, pid: 2, tid: 2, waitNs: 5, kind: 1, comm: "child"),
            BlockRecord.encode(ts: 4, pid: 2, tid: 2, latencyNs: 5, comm: "child"),
            EventEncoder.exit(ts: 5, pid: 2, tid: 2, status: 0, group: true, ppid: 1, lifetime: 3, comm: "child"),
            unknown,
        ]
    }

    func testDetectorsSeeOnlyTheTypesTheyObserve() {
        let syscalls = Recorder("s", EventTypeSet(.syscall))
        let lifecycle = Recorder("l", EventTypeSet(.fork, .exit))
        let everything = Recorder("a", nil)
        let legacy = Legacy()
        _ = detect(stream(), detectors: [syscalls, lifecycle, everything, legacy])
        XCTAssertEqual(syscalls.seen, [1])
        XCTAssertEqual(lifecycle.seen, [2, 4])
        XCTAssertEqual(everything.seen, [1, 2, 10, 8, 4, 200])
        XCTAssertEqual(legacy.seen, 6, "a detector that declares nothing is shown every event")
    }

    func testEventTypeSet() {
        let s = EventTypeSet(.syscall, .oom)
        XCTAssertTrue(s.contains(rawType: 1))
        XCTAssertTrue(s.contains(rawType: 16))
        XCTAssertFalse(s.contains(rawType: 2))
        XCTAssertFalse(s.contains(rawType: 200))
        XCTAssertTrue(EventTypeSet.all.contains(rawType: 200))
        XCTAssertTrue(EventTypeSet.all.contains(rawType: .max))
        XCTAssertEqual(EventTypeSet.bucket(62), 62)
        XCTAssertEqual(EventTypeSet.bucket(63), 63)
        XCTAssertEqual(EventTypeSet.bucket(.max), 63)
    }

    /// Process exclusions still apply per detector with the type filter,
    /// and lifecycle events of an excluded process still reach it.
    func testExclusionsWithTypeFilter() {
        final class Excluding: Detector {
            let name = "x"
            let exclusions: Exclusions
            var seen: [UInt16] = []
            var observedTypes: EventTypeSet { EventTypeSet(.sched, .exit) }
            init(_ e: Exclusions) { exclusions = e }
            func observe(_ event: Event, context: DetectorContext) { seen.append(event.rawType) }
        }
        let x = Excluding(Exclusions(pids: [2]))
        let all = Recorder("a", nil)
        _ = detect(stream(), detectors: [x, all])
        XCTAssertEqual(x.seen, [4], "pid 2's sched record is excluded, its exit is not")
        XCTAssertEqual(all.seen.count, 6)
    }

    /// The engine keeps the detectors alive however the caller holds them.
    func testDetectorsLiveAsLongAsTheEngine() {
        weak var weakRecorder: Recorder?
        let engine: DetectorEngine = {
            let r = Recorder("r", nil)
            weakRecorder = r
            return DetectorEngine(detectors: [r], snapshot: nil)
        }()
        for (i, rec) in stream().enumerated() { rec.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(i))!) } }
        XCTAssertEqual(weakRecorder?.seen.count, 6)
    }
}
