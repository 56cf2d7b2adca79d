import Foundation
import XCTest
import FlightboxEvents
import FlightboxFormat
import FlightboxRules
@testable import FlightboxDetectors

/// Checkpoints: a prefix run, checkpointed and restored into a fresh engine
/// that runs the suffix, gives exactly the whole run's findings of the suffix.
final class CheckpointTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("fixtures").path

    /// Every fixture trace with its stored configuration.
    func fixtureTraces() throws -> [(name: String, path: String)] {
        try FileManager.default.contentsOfDirectory(atPath: CheckpointTests.fixtures).sorted().compactMap { name in
            let path = CheckpointTests.fixtures + "/" + name + "/trace.fbt"
            return FileManager.default.fileExists(atPath: path) ? (name, path) : nil
        }
    }

    func configuration(_ reader: TraceReader) throws -> DetectorConfiguration {
        guard let stored = reader.metadata.capture["detectors"] else { return .defaults }
        return try DetectorConfiguration(json: stored)
    }

    func engine(_ reader: TraceReader, _ configuration: DetectorConfiguration, onFinding: ((Finding) -> Void)? = nil) throws -> DetectorEngine {
        let meta = reader.metadata
        return DetectorEngine(detectors: try configuration.makeDetectors(), snapshot: reader.snapshot,
                              arch: SyscallArch(schema: meta.schema, machine: meta.machine), clock: TraceClock(meta), onFinding: onFinding)
    }

    /// The whole run: the events it saw, and each finding with the number of events processed when it came.
    func wholeRun(_ reader: TraceReader, _ configuration: DetectorConfiguration) throws -> (events: Int, findings: [(after: Int, line: String)], findingCount: UInt64) {
        var seen = 0
        var whole: [(after: Int, line: String)] = []
        let full = try engine(reader, configuration) { whole.append((seen, $0.jsonLine)) }
        reader.forEachEvent { e in
            seen += 1
            full.process(e)
        }
        full.finish()
        return (seen, whole, full.findingCount)
    }

    /// (a) For every fixture and several split points, including the
    /// security rules' lineage, aggregates and incidents.
    func testSplitRunsGiveTheWholeRunsFindingsOnEveryFixture() throws {
        let traces = try fixtureTraces()
        XCTAssertGreaterThanOrEqual(traces.count, 20, "fixtures not found under \(CheckpointTests.fixtures)")
        var checked = 0, findingsAfterSplits = 0
        var largest = (name: "", bytes: 0, ms: 0.0)
        for (name, path) in traces {
            let reader = try TraceReader(path: path)
            let config = try configuration(reader)
            let (n, whole, wholeCount) = try wholeRun(reader, config)
            guard n > 4 else { continue }
            for k in Set([1, n / 4, n / 2, 3 * n / 4, n - 1]).sorted() {
                let prefix = try engine(reader, config)
                var bytes: [UInt8] = []
                var i = 0
                var took = 0.0
                reader.forEachEvent { e in
                    if i == k {
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        bytes = (try? prefix.checkpoint(configuration: config)) ?? []
                        took = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                    }
                    if i < k { prefix.process(e) }
                    i += 1
                }
                XCTAssertFalse(bytes.isEmpty, "\(name): no checkpoint at \(k)")
                if bytes.count > largest.bytes { largest = (name, bytes.count, took) }
                let suffix = try engine(reader, config)
                let restore = try suffix.restore(bytes, configuration: config)
                XCTAssertEqual(restore.restored, config.detectors.filter(\.enabled).map(\.spec.name), "\(name): \(restore.summary)")
                XCTAssertEqual(restore.eventsBefore, UInt64(k))
                i = 0
                reader.forEachEvent { e in
                    if i >= k { suffix.process(e) }
                    i += 1
                }
                suffix.finish()
                let expected = whole.filter { $0.after > k }.map(\.line)
                let got = suffix.findings.map(\.jsonLine)
                XCTAssertEqual(got, expected, "\(name): split at event \(k) of \(n)")
                XCTAssertEqual(suffix.findingCount, wholeCount, "\(name): finding count carried over at \(k)")
                findingsAfterSplits += expected.count
                checked += 1
            }
        }
        XCTAssertGreaterThan(findingsAfterSplits, 50, "the splits must leave findings to compare")
        print("checkpoint property: \(checked) splits over \(traces.count) fixtures, \(findingsAfterSplits) findings compared; largest checkpoint \(largest.bytes) bytes (\(largest.name)), taken in \(String(format: "%.1f", largest.ms)) ms")
    }

    /// A detector registered without checkpoint support would make every
    /// dump's replay start it fresh: each one must conform (Codable state
    /// and `extension X: CheckpointedDetector {}`).
    func testEveryRegisteredDetectorCheckpoints() {
        for spec in DetectorRegistry.all {
            XCTAssertTrue(spec.make(spec.defaults) is any CheckpointedDetector, "\(spec.name) is not a CheckpointedDetector")
        }
    }

    /// Without the checkpoint a suffix run differs on a fixture whose
    /// findings depend on history: the property above is not vacuous.
    func testASuffixWithoutTheCheckpointDiffers() throws {
        let reader = try TraceReader(path: CheckpointTests.fixtures + "/security-attack/trace.fbt")
        let config = try configuration(reader)
        let (seen, whole, _) = try wholeRun(reader, config)
        let k = seen / 2
        let fresh = try engine(reader, config)
        var i = 0
        reader.forEachEvent { e in
            if i >= k { fresh.process(e) }
            i += 1
        }
        fresh.finish()
        XCTAssertNotEqual(fresh.findings.map(\.jsonLine), whole.filter { $0.after > k }.map(\.line))
    }

    /// A checkpoint is the same bytes for the same state: restored (its
    /// dictionaries rebuilt in another order and capacity) and taken again,
    /// it does not change.
    func testTheSameStateIsTheSameBytes() throws {
        for name in ["security-attack", "exhaustion-pids-cgroup", "http-healthy", "system-wide"] {
            let reader = try TraceReader(path: CheckpointTests.fixtures + "/\(name)/trace.fbt")
            let config = try configuration(reader)
            let a = try engine(reader, config)
            var i = 0
            reader.forEachEvent { e in
                if i < 5000 { a.process(e) }
                i += 1
            }
            let first = try a.checkpoint(configuration: config)
            let b = try engine(reader, config)
            try b.restore(first, configuration: config)
            let again = try b.checkpoint(configuration: config)
            XCTAssertTrue(again == first, "\(name): \(again.count) bytes after a restore, \(first.count) before, or in another order")
        }
    }

    // MARK: Synthetic streams

    func syscall(_ ts: UInt64, pid: UInt32, nr: UInt32 = 0, ret: Int64 = 0, duration: UInt64 = 1000) -> [UInt8] {
        SyscallRecord.encode(ts: ts, pid: pid, tid: pid, durationNs: duration, ret: ret, nr: nr)
    }

    func run(_ engine: DetectorEngine, _ records: [[UInt8]], from: Int = 0) {
        for (i, r) in records.enumerated() where i >= from { r.withUnsafeBytes { engine.process(Event.validated($0, sequence: UInt64(i))!) } }
    }

    /// Episodes open before the checkpoint stay open after it (no second
    /// finding), warm-up is not restarted, and the tick boundaries carry on.
    func testEpisodeWarmUpAndTicksCarryOver() throws {
        let config = DetectorConfiguration.defaults
        let s: UInt64 = 1_000_000_000
        // A process failing open() with EMFILE now and then (its baseline),
        // then two bursts further apart than the hold-down: two episodes,
        // the second opened after the first closed.
        var records: [[UInt8]] = []
        for t in 0..<160 { records.append(syscall(UInt64(t) * s, pid: 7, nr: 2, ret: t % 2 == 0 ? -24 : 0)) }
        for t in Array(60..<75) + Array(120..<130) { for j in 0..<60 { records.append(syscall(UInt64(t) * s + UInt64(j + 1) * 1000, pid: 7, nr: 2, ret: -24)) } }
        records.sort { $0.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } < $1.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
        let whole = DetectorEngine(detectors: try config.makeDetectors(only: ["syscall-errors"]), snapshot: nil)
        var emittedAfter: [Int] = []
        var count = 0
        let counting = DetectorEngine(detectors: try config.makeDetectors(only: ["syscall-errors"]), snapshot: nil) { _ in emittedAfter.append(count) }
        for (i, r) in records.enumerated() {
            r.withUnsafeBytes {
                count = i + 1
                counting.process(Event.validated($0, sequence: UInt64(i))!)
            }
        }
        counting.finish()
        run(whole, records)
        whole.finish()
        XCTAssertEqual(whole.findings.count, 2, "two episodes: \(whole.findings.map(\.summary))")
        for k in stride(from: 1, to: records.count, by: max(1, records.count / 17)) {
            let a = DetectorEngine(detectors: try config.makeDetectors(only: ["syscall-errors"]), snapshot: nil)
            for (i, r) in records.prefix(k).enumerated() { r.withUnsafeBytes { a.process(Event.validated($0, sequence: UInt64(i))!) } }
            let bytes = try a.checkpoint(configuration: config)
            let b = DetectorEngine(detectors: try config.makeDetectors(only: ["syscall-errors"]), snapshot: nil)
            try b.restore(bytes, configuration: config)
            run(b, records, from: k)
            b.finish()
            let expected = zip(whole.findings, emittedAfter).filter { $0.1 > k }.map(\.0.jsonLine)
            XCTAssertEqual(b.findings.map(\.jsonLine), expected, "split at \(k)")
        }
    }

    /// Hostile timestamps (UInt64.max, time running backwards) survive a checkpoint.
    func testHostileTimestampsSurviveACheckpoint() throws {
        let config = DetectorConfiguration.defaults
        let records = [syscall(5, pid: 1), syscall(.max - 10, pid: 1, ret: -2), syscall(3, pid: 1, ret: -13), syscall(.max, pid: 2, ret: -2)]
        for k in 1..<records.count {
            let a = try DetectorEngine(detectors: config.makeDetectors(), snapshot: nil)
            run(a, Array(records.prefix(k)))
            let b = try DetectorEngine(detectors: config.makeDetectors(), snapshot: nil)
            try b.restore(try a.checkpoint(configuration: config), configuration: config)
            XCTAssertEqual(b.context.now, a.context.now)
            run(b, records, from: k)
            b.finish()
            let whole = try DetectorEngine(detectors: config.makeDetectors(), snapshot: nil)
            run(whole, records)
            whole.finish()
            XCTAssertEqual(b.findingCount, whole.findingCount, "split at \(k)")
        }
    }

    // MARK: (c) Damaged and foreign checkpoints

    func checkpointOfSecurityAttack() throws -> (bytes: [UInt8], config: DetectorConfiguration, reader: TraceReader) {
        let reader = try TraceReader(path: CheckpointTests.fixtures + "/security-attack/trace.fbt")
        let config = try configuration(reader)
        let e = try engine(reader, config)
        var i = 0
        reader.forEachEvent { ev in
            if i < 2000 { e.process(ev) }
            i += 1
        }
        return (try e.checkpoint(configuration: config), config, reader)
    }

    func testDamagedCheckpointIsOneClearErrorAndAFreshStart() throws {
        let (bytes, config, reader) = try checkpointOfSecurityAttack()
        var cases: [(String, [UInt8])] = [
            ("empty", []), ("not JSON", Array("hello".utf8)), ("cut", Array(bytes.prefix(bytes.count / 2))),
            ("another format", Array(#"{"format":"x","version":1}"#.utf8)),
            ("a later version", Array(#"{"format":"flightbox-checkpoint","version":99,"engine":{},"detectors":[]}"#.utf8)),
        ]
        // Every 97th byte flipped in turn: whatever decodes or not, never a trap.
        for at in stride(from: 0, to: bytes.count, by: 97) {
            var b = bytes
            b[at] ^= 0x5a
            cases.append(("byte \(at) flipped", b))
        }
        // Hostile but well-formed: a histogram of the wrong size, a parent reference out of range.
        let text = String(decoding: bytes, as: UTF8.self)
        cases.append(("parent out of range", Array(text.replacingOccurrences(of: #""parent":0"#, with: #""parent":999999"#).utf8)))
        var refused = 0
        for (what, b) in cases {
            let e = try engine(reader, config)
            do {
                try e.restore(b, configuration: config)
                // A flip inside a string or a number may still be a valid checkpoint: it must then run.
                var i = 0
                reader.forEachEvent { ev in
                    if i >= 2000 { e.process(ev) }
                    i += 1
                }
                e.finish()
            } catch {
                refused += 1
                XCTAssertFalse(error.description.contains("\n"), "\(what): one line: \(error)")
                XCTAssertTrue(error.description.hasPrefix("detector checkpoint not used: "), "\(what): \(error)")
                // Nothing was restored: the engine is as fresh as a new one.
                XCTAssertEqual(e.eventsSeen, 0, what)
                XCTAssertEqual(e.findingCount, 0, what)
            }
        }
        XCTAssertGreaterThan(refused, cases.count / 2)
    }

    func testAnotherConfigurationStartsThatDetectorFresh() throws {
        let (bytes, config, reader) = try checkpointOfSecurityAttack()
        var other = config
        var settings = other["security"]!
        settings.set("incident_min_rules", .count(3))
        other["security"] = settings
        let e = try engine(reader, other)
        let r = try e.restore(bytes, configuration: other)
        XCTAssertEqual(r.fresh.map(\.name), ["security"])
        XCTAssertFalse(r.restored.contains("security"))
        XCTAssertTrue(r.summary.contains("security (its configuration differs from the checkpoint's)"), r.summary)
    }

    func testRestoreIntoAnEngineThatRanIsRefused() throws {
        let (bytes, config, reader) = try checkpointOfSecurityAttack()
        let e = try engine(reader, config)
        run(e, [syscall(1, pid: 1)])
        XCTAssertThrowsError(try e.restore(bytes, configuration: config))
    }
}
