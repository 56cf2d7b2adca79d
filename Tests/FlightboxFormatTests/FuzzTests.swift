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

    /// Recomputes every block header and payload CRC, and the footer's, so a
    /// mutation gets past the checksums to the code behind them.
    static func fixChecksums(_ b: inout [UInt8]) {
        b.withUnsafeMutableBytes { p in
            guard let base = p.baseAddress, p.count >= TraceLayout.headerSize else { return }
            var o = TraceLayout.headerSize
            while o + TraceLayout.blockHeaderSize <= p.count {
                guard base.loadUnaligned(fromByteOffset: o, as: UInt32.self) == TraceLayout.blockSync else { break }
                let stored = Int(base.loadUnaligned(fromByteOffset: o + 8, as: UInt32.self))
                let end = o + TraceLayout.blockHeaderSize + stored
                if stored <= p.count, end <= p.count {
                    let crc = fb_crc32c(0, base + o + TraceLayout.blockHeaderSize, stored)
                    base.storeBytes(of: crc, toByteOffset: o + 44, as: UInt32.self)
                }
                base.storeBytes(of: fb_crc32c(0, base + o, 52), toByteOffset: o + 52, as: UInt32.self)
                guard end <= p.count else { break }
                o = end
            }
            if p.count >= 32 + TraceLayout.footerSize {
                let f = base + p.count - TraceLayout.footerSize
                if memcmp(f, TraceLayout.footerMagic, 8) == 0 {
                    f.storeBytes(of: fb_crc32c(0, f, 28), toByteOffset: 28, as: UInt32.self)
                }
            }
        }
    }

    static func mutate(_ input: [UInt8], _ rng: inout SplitMix) -> [UInt8] {
        var b = input
        let interesting: [UInt64] = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000_0000_0000, .max, 24, 72, 4096]
        for _ in 0..<Int.random(in: 1...4, using: &rng) where !b.isEmpty {
            let at = Int.random(in: 0..<b.count, using: &rng)
            switch Int.random(in: 0..<7, using: &rng) {
            case 0: b[at] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            case 1: b[at] = UInt8.random(in: 0...255, using: &rng)
            case 2:
                let v = interesting.randomElement(using: &rng)!
                let width = [1, 2, 4, 8].randomElement(using: &rng)!
                for k in 0..<width where at + k < b.count { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
            case 3: b.removeSubrange(at..<min(b.count, at + Int.random(in: 1...64, using: &rng)))
            case 4: b.insert(contentsOf: (0..<Int.random(in: 1...32, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
            case 5: b = Array(b.prefix(at))
            default:
                let from = Int.random(in: 0..<b.count, using: &rng)
                let chunk = b[from..<min(b.count, from + Int.random(in: 1...256, using: &rng))]
                b.insert(contentsOf: chunk, at: at)
            }
        }
        if rng.next() & 1 == 0 { fixChecksums(&b) }
        return b
    }

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
            let input = FuzzTests.mutate(corpus.randomElement(using: &rng)!, &rng)
            try? Data(input).write(to: URL(fileURLWithPath: current))
            _ = input.withUnsafeBytes { TraceReader.exercise($0) }
            runs += 1
        }
        print("fuzz: \(runs) mutated traces read without fault (seed \(seed), \(seconds) s)")
        XCTAssertGreaterThan(runs, 100)
    }
}
