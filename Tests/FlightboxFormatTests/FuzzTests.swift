import XCTest
import CFlightboxSys
import FlightboxEvents
@testable import FlightboxFormat

/// Mutation fuzzing of the reader, in every test run. The reader must return
/// on any input; FLIGHTBOX_FUZZ_SECONDS runs it longer, FLIGHTBOX_FUZZ_SEED
/// replays a run. The input under test is saved to
/// $TMPDIR/flightbox-fuzz-current.fbt first, so a crash leaves it behind.
/// (scripts/fuzz.sh runs the same harness under coverage-guided libFuzzer.)
final class FuzzTests: XCTestCase {
    func seeds() throws -> [[UInt8]] {
        var out: [[UInt8]] = []
        for (i, codec) in [Codec.zstd, .lz4, .none].enumerated() {
            let path = tempPath("seed-\(i).fbt")
            try writeTrace(path, syntheticRecords(count: 300, seed: UInt64(i + 7)), codec: codec, blockBytes: 2048, close: i != 1)
            out.append(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        }
        return out
    }

    static func fixChecksums(_ b: inout [UInt8]) { TraceMutator.fixChecksums(&b) }

    func testReaderSurvivesMutatedTraces() throws {
        let env = ProcessInfo.processInfo.environment
        let seconds = Double(env["FLIGHTBOX_FUZZ_SECONDS"] ?? "") ?? 4
        let seed = UInt64(env["FLIGHTBOX_FUZZ_SEED"] ?? "") ?? UInt64(Date().timeIntervalSince1970)
        var rng = SplitMix(state: seed)
        var corpus = try seeds()
        let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("fixtures/latency-outlier/trace.fbt")
        if let d = try? Data(contentsOf: fixtures) { corpus.append(Array(d)) }
        for s in corpus { XCTAssertGreaterThan(s.withUnsafeBytes { TraceReader.exercise($0) }, 0, "seeds must read") }
        let current = NSTemporaryDirectory() + "flightbox-fuzz-current.fbt"
        let deadline = Date().addingTimeInterval(seconds)
        var runs = 0
        while Date() < deadline {
            let input = TraceMutator.mutate(corpus.randomElement(using: &rng)!, using: &rng)
            try? Data(input).write(to: URL(fileURLWithPath: current))
            _ = input.withUnsafeBytes { TraceReader.exercise($0) }
            runs += 1
        }
        print("fuzz: \(runs) mutated traces read without fault (seed \(seed), \(seconds) s)")
        XCTAssertGreaterThan(runs, 100)
    }
}
