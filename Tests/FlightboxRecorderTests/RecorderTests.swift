import XCTest
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat
import FlightboxRecorder

/// The pipeline driven by scripted and replayed sources on a manual clock:
/// no root, no sleeping.
final class RecorderTests: XCTestCase {
    func testTheTraceHoldsExactlyTheEventsFedInOrder() throws {
        let path = scratchPath("exact.fbt")
        var ts: UInt64 = 2_000_000_000
        let records = calls(1000, from: &ts)
        let clock = ManualClock()
        let source = SyntheticSource(steps: steps(records, perStep: 37), clock: clock)
        let writer = try makeWriter(path)
        let outcome = Recorder(source: source, writer: writer, clock: clock, stop: ManualStopRequests()).run()
        XCTAssertEqual(outcome.reason, .sourceExhausted)
        XCTAssertNil(outcome.error)
        XCTAssertEqual(outcome.events, 1000)
        XCTAssertEqual(outcome.rejected, 0)
        XCTAssertNil(outcome.commandStatus)
        XCTAssertTrue(writer.isClosed)
        let stored = try storedEvents(path)
        XCTAssertEqual(stored.map(\.seq), Array(0..<1000))
        XCTAssertEqual(stored.map(\.bytes), records)
        XCTAssertTrue(try TraceReader(path: path).closedCleanly)
    }

    /// The determinism contract: the detectors see exactly the written
    /// sequence, so their findings equal a replay's byte for byte.
    func testDetectorsSeeExactlyTheWrittenSequence() throws {
        let path = scratchPath("determinism.fbt")
        var ts: UInt64 = 2_000_000_000
        var records = calls(300, from: &ts, nr: nrRead)
        ts += 10_000
        // The outlier: a 150 ms read of a regular file after 300 of a few µs (past the storage ceiling).
        records.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 43, nr: nrRead, duration: 150_000_000, ret: 4096, fdKind: .regular))
        records += calls(100, from: &ts, nr: nrRead)
        let clock = ManualClock(startNs: 2_000_000_000)
        var script = steps(records, perStep: 25)
        script.insert(.losses([EventEncoder.loss(ts: 2_000_050_000, cpu: 1, lost: 7, firstTs: 2_000_040_000)]), at: 3)
        let source = SyntheticSource(steps: script, clock: clock)
        let engine = DetectorEngine(detectors: try DetectorRegistry.make(list: nil), snapshot: testSnapshot)
        var seen: [(seq: UInt64, bytes: [UInt8])] = []
        let outcome = Recorder(source: source, writer: try makeWriter(path), engine: engine, sampler: CountingSampler(intervalNs: 200_000_000),
                               clock: clock, stop: ManualStopRequests(),
                               observer: { seen.append(($0.sequence, Array($0.bytes))) }).run()
        XCTAssertNil(outcome.error)

        let stored = try storedEvents(path)
        XCTAssertEqual(engine.eventsSeen, UInt64(stored.count))
        XCTAssertEqual(seen.map(\.seq), stored.map(\.seq))
        XCTAssertEqual(seen.map(\.bytes), stored.map(\.bytes))
        XCTAssertEqual(stored.map(\.seq), Array(0..<UInt64(stored.count)))
        XCTAssertGreaterThan(stored.count, records.count, "the loss and the samples are in the stream too")

        let live = engine.findings.map(\.jsonLine)
        XCTAssertEqual(live.count, 1, "\(live)")
        XCTAssertEqual(engine.findings.first?.evidence["latency_ns"]?.uintValue, 150_000_000)
        XCTAssertEqual(engine.findings.first?.comm, "db")
        XCTAssertEqual(live, try replayFindings(path, detectors: DetectorRegistry.make(list: nil)))
    }

    /// A trace re-recorded from a TraceReader source holds the same events
    /// under the same numbers, and gives the same findings live and on replay.
    func testATraceReRecordedThroughTheRecorderKeepsEveryEvent() throws {
        let original = scratchPath("original.fbt"), again = scratchPath("again.fbt")
        var ts: UInt64 = 2_000_000_000
        var records = calls(500, from: &ts, nr: nrRead)
        ts += 10_000
        records.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 42, nr: nrRead, duration: 180_000_000, fdKind: .regular))
        records += calls(200, from: &ts, nr: nrRead)
        var script = steps(records, perStep: 20)
        script.insert(.losses([EventEncoder.loss(ts: 2_000_100_000, cpu: 0, lost: 3, firstTs: 2_000_090_000)]), at: 5)
        let clock = ManualClock(startNs: 2_000_000_000)
        let first = DetectorEngine(detectors: try DetectorRegistry.make(list: nil), snapshot: testSnapshot)
        XCTAssertNil(Recorder(source: SyntheticSource(steps: script, clock: clock), writer: try makeWriter(original), engine: first,
                              sampler: CountingSampler(intervalNs: 500_000_000), clock: clock, stop: ManualStopRequests()).run().error)
        let blocks = try TraceReader(path: original).eventBlocks.count
        XCTAssertGreaterThan(blocks, 1, "the writer flush made several blocks")

        let replayClock = ManualClock()
        let source = try TraceFileSource(path: original)
        let second = DetectorEngine(detectors: try DetectorRegistry.make(list: nil), snapshot: source.reader.snapshot)
        let outcome = Recorder(source: source, writer: try makeWriter(again), engine: second, clock: replayClock, stop: ManualStopRequests()).run()
        XCTAssertEqual(outcome.reason, .sourceExhausted)
        XCTAssertNil(outcome.error)

        let before = try storedEvents(original), after = try storedEvents(again)
        XCTAssertEqual(after.map(\.seq), before.map(\.seq))
        XCTAssertEqual(after.map(\.bytes), before.map(\.bytes))
        XCTAssertEqual(first.findings.count, 1)
        XCTAssertEqual(second.findings.map(\.jsonLine), first.findings.map(\.jsonLine))
        XCTAssertEqual(try replayFindings(again, detectors: DetectorRegistry.make(list: nil)), first.findings.map(\.jsonLine))
    }

    /// Loss records and samples join the stream at the point the recorder
    /// notices them: losses after the poll that preceded them, samples when
    /// their interval comes round on the clock.
    func testLossesAndSamplesJoinTheStreamWhereTheyOccur() throws {
        let path = scratchPath("losses-gauges.fbt")
        var ts: UInt64 = 5_000_000_000
        let a = calls(3, from: &ts), b = calls(2, from: &ts)
        let loss = EventEncoder.loss(ts: 5_000_025_000, cpu: 1, lost: 12, firstTs: 5_000_015_000)
        let lastLoss = EventEncoder.loss(ts: 5_000_095_000, cpu: 0, lost: 2, firstTs: 5_000_090_000)
        let clock = ManualClock(startNs: 5_000_000_000)
        let source = SyntheticSource(steps: [.records(a), .losses([loss]), .records(b)], clock: clock, endsWithScript: false,
                                     finalLosses: [lastLoss])
        let sampler = CountingSampler(intervalNs: 1_000_000_000)
        var config = Recorder.Configuration(durationNs: 1_500_000_000)
        config.timers.pollTimeoutMs = 50
        let outcome = Recorder(source: source, writer: try makeWriter(path), sampler: sampler, clock: clock,
                               stop: ManualStopRequests(), configuration: config).run()
        XCTAssertEqual(outcome.reason, .durationElapsed)
        // Sampled after the first poll (the start), then a second later.
        XCTAssertEqual(sampler.samples, [5_050_000_000, 6_000_000_000])
        let gauge1 = EventEncoder.gauge(ts: 5_050_000_000, kind: .load, value: 1, limit: 200)
        let gauge2 = EventEncoder.gauge(ts: 6_000_000_000, kind: .load, value: 2, limit: 200)
        let expected = a + [gauge1, loss] + b + [gauge2, lastLoss]
        let stored = try storedEvents(path)
        XCTAssertEqual(stored.map(\.bytes), expected)
        XCTAssertEqual(stored.map(\.seq), Array(0..<UInt64(expected.count)))
    }

    /// The timers run on the injected clock: 100 polls of 50 ms are 5 s, in
    /// which the writer seals a block every 800 ms, the batches are flushed
    /// every 100 ms and the summaries swept every second.
    func testTimersFireByTheInjectedClock() throws {
        let path = scratchPath("timers.fbt")
        var ts: UInt64 = 2_000_000_000
        let records = calls(1000, from: &ts)
        let clock = ManualClock()
        let source = SyntheticSource(steps: steps(records, perStep: 10), clock: clock)
        let writer = try makeWriter(path)
        let outcome = Recorder(source: source, writer: writer, clock: clock, stop: ManualStopRequests()).run()
        XCTAssertEqual(outcome.reason, .sourceExhausted)
        XCTAssertEqual(clock.now(), 1_000_000_000 + 100 * 50_000_000)
        // Flushed after polls 16, 32, ... 96 (800 ms each), and the rest at close.
        XCTAssertEqual(try TraceReader(path: path).eventBlocks.map(\.count), [160, 160, 160, 160, 160, 160, 40])
        XCTAssertEqual(writer.eventBlocks, 7)
        XCTAssertEqual(source.calls.filter { $0 == .poll }.count, 100)
        XCTAssertEqual(source.calls.filter { $0 == .flushBatches }.count, 50 + 1, "every 100 ms, and at the end")
        XCTAssertEqual(source.calls.filter { $0 == .sweep(all: false) }.count, 5)
        XCTAssertEqual(source.calls.filter { $0 == .sweep(all: true) }.count, 1)
    }

    /// A failing writer (a full disk) ends the loop at once: nothing after
    /// the failure reaches the detectors, the source is detached but not
    /// drained into a writer that cannot take it, and the error is reported.
    func testAWriteErrorEndsTheLoopCleanlyAndIsReported() throws {
        let path = scratchPath("full.fbt")
        var ts: UInt64 = 2_000_000_000
        let records = calls(1000, from: &ts)
        let clock = ManualClock()
        let source = SyntheticSource(steps: steps(records, perStep: 100), clock: clock, heldUntilDrain: calls(5, from: &ts))
        let writer = FailingWriter(try makeWriter(path), failAfter: 250)
        let engine = DetectorEngine(detectors: [], snapshot: testSnapshot)
        var observed = 0
        let outcome = Recorder(source: source, writer: writer, engine: engine, clock: clock, stop: ManualStopRequests(),
                               observer: { _ in observed += 1 }).run()
        XCTAssertEqual(outcome.reason, .writeFailed)
        XCTAssertEqual(outcome.error?.description, TraceError.diskFull(path: writer.inner.path).description)
        guard case .write(let underlying)? = outcome.error else { return XCTFail("not a write error: \(String(describing: outcome.error))") }
        XCTAssertEqual(underlying as? TraceError, .diskFull(path: writer.inner.path))
        XCTAssertEqual(outcome.events, 250)
        XCTAssertEqual(engine.eventsSeen, 250)
        XCTAssertEqual(observed, 250)
        XCTAssertEqual(source.calls.filter { $0 == .poll }.count, 3, "no poll after the failure")
        XCTAssertEqual(Array(source.calls.drop { $0 != .detach }), [.detach, .flushBatches, .sweep(all: true), .losses])
        XCTAssertEqual(source.heldUntilDrain.count, 5, "not drained")
        XCTAssertFalse(writer.closed, "a failed trace is left as it is on disk")
    }

    /// A source that cannot be read ends the loop; what was read before,
    /// and what the source still holds, is in a cleanly closed trace.
    func testASourceErrorEndsTheLoopAndTheTraceIsClosed() throws {
        struct RingBroke: Error, CustomStringConvertible { var description: String { "the ring broke" } }
        let path = scratchPath("source-error.fbt")
        var ts: UInt64 = 2_000_000_000
        let records = calls(200, from: &ts), held = calls(5, from: &ts)
        let clock = ManualClock()
        let source = SyntheticSource(steps: steps(records, perStep: 100) + [.failure(RingBroke()), .records(calls(10, from: &ts))],
                                     clock: clock, heldUntilDrain: held)
        let outcome = Recorder(source: source, writer: try makeWriter(path), clock: clock, stop: ManualStopRequests()).run()
        XCTAssertEqual(outcome.reason, .sourceFailed)
        XCTAssertEqual(outcome.error?.description, "the ring broke; the trace holds everything read before it")
        XCTAssertEqual(try storedEvents(path).map(\.bytes), records + held)
        XCTAssertTrue(try TraceReader(path: path).closedCleanly)
    }

    /// Stopping detaches the source, flushes its batches, sweeps every
    /// summary, drains it and takes its last losses, in that order, then
    /// finishes the detectors and closes the trace.
    func testShutdownDrainsEverythingInOrder() throws {
        final class Finisher: Detector {
            let name = "finisher"
            var seen = 0
            func observe(_ event: Event, context: DetectorContext) { seen += 1 }
            func finish(context: DetectorContext) {
                context.emit(Finding(ts: context.now, detector: name, severity: .info, pid: 0, tid: 0, comm: "", summary: "saw \(seen)", evidence: .null))
            }
        }
        let path = scratchPath("shutdown.fbt")
        var ts: UInt64 = 2_000_000_000
        let records = calls(3, from: &ts), held = calls(4, from: &ts)
        let lastLoss = EventEncoder.loss(ts: ts + 1, cpu: 1, lost: 9, firstTs: ts)
        let clock = ManualClock()
        let source = SyntheticSource(steps: [.records(records)], clock: clock, endsWithScript: false, heldUntilDrain: held, finalLosses: [lastLoss])
        let engine = DetectorEngine(detectors: [Finisher()], snapshot: testSnapshot)
        let outcome = Recorder(source: source, writer: try makeWriter(path), engine: engine, clock: clock, stop: ManualStopRequests(),
                               configuration: .init(durationNs: 200_000_000)).run()
        XCTAssertEqual(outcome.reason, .durationElapsed)
        XCTAssertEqual(Array(source.calls.drop { $0 != .detach }), [.detach, .flushBatches, .sweep(all: true), .drainAll, .losses])
        XCTAssertEqual(try storedEvents(path).map(\.bytes), records + held + [lastLoss])
        XCTAssertEqual(engine.findings.map(\.summary), ["saw 8"], "the detectors finish after the last record")
        XCTAssertTrue(try TraceReader(path: path).closedCleanly)
    }

    func testAStopRequestOrTheDurationEndsTheRecording() throws {
        let stop = ManualStopRequests()
        let clock = ManualClock()
        let source = SyntheticSource(steps: Array(repeating: .idle, count: 5) + [.action { stop.request(signal: SIGINT) }],
                                     clock: clock, endsWithScript: false)
        let stopped = Recorder(source: source, writer: try makeWriter(scratchPath("stop.fbt")), clock: clock, stop: stop).run()
        XCTAssertEqual(stopped.reason, .stopRequested)
        XCTAssertEqual(source.calls.filter { $0 == .poll }.count, 6)

        let timed = SyntheticSource(steps: [], clock: clock, endsWithScript: false)
        let outcome = Recorder(source: timed, writer: try makeWriter(scratchPath("duration.fbt")), clock: clock,
                               stop: ManualStopRequests(), configuration: .init(durationNs: 1_000_000_000)).run()
        XCTAssertEqual(outcome.reason, .durationElapsed)
        XCTAssertEqual(timed.calls.filter { $0 == .poll }.count, 20, "1 s of 50 ms polls")
    }

    /// Records that are not whole (a size field that disagrees with the
    /// buffer) are neither written nor numbered.
    func testMalformedRecordsAreRejected() throws {
        let path = scratchPath("malformed.fbt")
        var ts: UInt64 = 2_000_000_000
        let good = calls(4, from: &ts)
        var short = good[0]
        short.removeLast(8)
        var oversized = good[1]
        oversized.append(contentsOf: [0, 0, 0, 0])
        let clock = ManualClock()
        let source = SyntheticSource(steps: [.records([good[0], short, good[1], oversized, good[2], Array(good[3].prefix(10)), good[3]])], clock: clock)
        let outcome = Recorder(source: source, writer: try makeWriter(path), clock: clock, stop: ManualStopRequests()).run()
        XCTAssertEqual(outcome.rejected, 3)
        XCTAssertEqual(outcome.events, 4)
        let stored = try storedEvents(path)
        XCTAssertEqual(stored.map(\.bytes), good)
        XCTAssertEqual(stored.map(\.seq), [0, 1, 2, 3])
    }
}
