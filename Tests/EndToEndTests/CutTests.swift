import XCTest
import FlightboxEvents
import FlightboxFormat

/// `flightbox cut`: a window of a trace as a trace of its own.
final class CutTests: XCTestCase {
    /// The events without their sequence numbers (a cut numbers from 0).
    func unnumbered(_ events: [JSON]) -> [String] {
        events.map { e in
            guard case .object(let kv) = e else { return e.serialized() }
            return JSON.object(kv.filter { $0.0 != "seq" }).serialized()
        }
    }

    /// The cut holds exactly the events `events --from --to` prints, with the
    /// same process names (its snapshot is right at the window's start), and
    /// it replays, inspects and reads as a cleanly closed trace.
    func testCutHoldsExactlyTheWindowAndReplays() throws {
        let source = Tool.packageRoot + "/fixtures/system-wide/trace.fbt"
        let reader = try TraceReader(path: source)
        let first = try XCTUnwrap(reader.firstTimestamp), last = try XCTUnwrap(reader.lastTimestamp)
        let from = first + (last - first) / 3, to = first + (last - first) * 2 / 3
        let cut = scratch("window.fbt")
        let r = try Tool.flightbox("cut", source, "--from", String(from), "--to", String(to), "-o", cut)
        XCTAssertEqual(r.status, 0, r.stderr)
        let expected = try eventsJSON(source, ["--from", String(from), "--to", String(to)])
        let got = try eventsJSON(cut)
        XCTAssertGreaterThan(got.count, 1000)
        XCTAssertLessThan(got.count, try eventsJSON(source).count)
        XCTAssertEqual(unnumbered(got), unnumbered(expected))
        XCTAssertEqual(got.map { $0["seq"]?.uintValue }, (0..<UInt64(got.count)).map { $0 })
        XCTAssertTrue(got.allSatisfy { ($0["ts_ns"]?.uintValue).map { $0 >= from && $0 <= to } ?? false })
        XCTAssertTrue(r.stdout.hasPrefix("cut \(source) -> \(cut): \(got.count) events, "), r.stdout)
        let inspect = try inspectJSON(cut)
        XCTAssertEqual(inspect["lost"]?.uintValue, 0)
        XCTAssertEqual(inspect["events"]?.uintValue, UInt64(got.count))
        XCTAssertEqual(inspect["closed_cleanly"], .bool(true))
        let replay = try Tool.flightbox("replay", cut)
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertEqual(replay.stderr, "flightbox: \(got.count) events replayed, \(replay.lines.count) findings\n")

        // The snapshot at --from: every process forked or exec'd before the
        // window and still alive, with its exec's argv, none that exited.
        let c = try TraceReader(path: cut)
        XCTAssertTrue(c.closedCleanly)
        XCTAssertEqual(c.problems, [])
        let snap = try XCTUnwrap(c.snapshot)
        XCTAssertEqual(snap.timestamp, from)
        var alive: [UInt32: [String]] = [:]
        var exited: Set<UInt32> = []
        for p in reader.snapshot?.processes ?? [] { alive[p.pid] = p.argv }
        reader.forEachEvent(to: from) { e in
            guard e.timestamp < from else { return }
            if let f = e.as(ForkRecord.self), !f.isThread { alive[f.childPid] = alive[e.pid] ?? [] }
            if let x = e.as(ExecRecord.self) { alive[e.pid] = x.argv; exited.remove(e.pid) }
            if let x = e.as(ExitRecord.self), x.isGroupExit { alive[e.pid] = nil; exited.insert(e.pid) }
        }
        XCTAssertFalse(exited.isEmpty, "the window starts after some process exited")
        XCTAssertEqual(Dictionary(uniqueKeysWithValues: snap.processes.map { ($0.pid, $0.argv) }), alive)
        XCTAssertEqual(snap.processes.map(\.pid), snap.processes.map(\.pid).sorted())
    }

    /// A cut of the whole trace replays to the original's findings; a window
    /// without the incident replays to none.
    func testCutOfAFixtureKeepsItsFindings() throws {
        let source = Tool.packageRoot + "/fixtures/cpu-hogs/trace.fbt"
        let whole = scratch("whole.fbt")
        XCTAssertEqual(try Tool.flightbox("cut", source, "-o", whole).status, 0)
        let a = try Tool.flightbox("replay", source, "--format", "json"), b = try Tool.flightbox("replay", whole, "--format", "json")
        XCTAssertEqual(a.stdout, b.stdout)
        XCTAssertEqual(a.lines.count, 1)
        let quiet = scratch("quiet.fbt")
        XCTAssertEqual(try Tool.flightbox("cut", source, "--from", "+0s", "--to", "+3s", "-o", quiet).status, 0)
        let q = try Tool.flightbox("replay", quiet, "--format", "json")
        XCTAssertEqual(q.status, 0)
        XCTAssertEqual(q.stdout, "")
    }

    func testUsageErrors() throws {
        let source = Tool.packageRoot + "/fixtures/cpu-hogs/trace.fbt"
        let same = try Tool.flightbox("cut", source, "-o", source)
        XCTAssertEqual(same.status, 2)
        XCTAssertTrue(same.stderr.hasPrefix("flightbox: cut writes a new trace:"), same.stderr)
        let backwards = try Tool.flightbox("cut", source, "--from", "+3s", "--to", "+1s", "-o", scratch("never.fbt"))
        XCTAssertEqual(backwards.status, 2)
        XCTAssertEqual(backwards.stderr, "flightbox: --from +3s is later than --to +1s: the window holds nothing\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch("never.fbt")))
    }
}
