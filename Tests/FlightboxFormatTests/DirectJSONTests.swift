import XCTest
import FlightboxEvents
import FlightboxFormat

/// `Event.writeJSON` (what `events --format json` prints) writes exactly the
/// bytes of `Event.json().serialized()`, the tree every other path uses.
final class DirectJSONTests: XCTestCase {
    func direct(_ e: Event, comm: String?, arch: SyscallArch = .host) -> String {
        var out: [UInt8] = []
        e.writeJSON(into: &out, comm: comm, arch: arch)
        return String(decoding: out, as: UTF8.self)
    }

    /// Every type, its sample and thousands of variants with every payload
    /// byte scrambled (hostile values: negative numbers, control characters
    /// and invalid UTF-8 in strings, unknown enum values), with and without comm.
    func testEveryTypeAndScrambledPayloadsMatchTheTree() {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> UInt8 {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            return UInt8(truncatingIfNeeded: state)
        }
        var compared = 0
        for t in EventType.allCases {
            let sample = EventEncoder.sample(t)
            for round in 0..<500 {
                var rec = sample
                if round > 0 {
                    // Header kept (type, size), then every byte of the fixed part scrambled;
                    // trailing length fields may then point outside: such records are refused.
                    for i in 24..<rec.count where next() & 1 == 0 { rec[i] = next() }
                }
                rec.withUnsafeBytes { b in
                    guard let e = Event.validated(b, sequence: UInt64(round)) else { return }
                    for comm in [nil, "c\u{1}\"\\é"] as [String?] {
                        XCTAssertEqual(direct(e, comm: comm), e.json(comm: comm).serialized(), "\(t.name) round \(round)")
                        compared += 1
                    }
                }
            }
        }
        XCTAssertGreaterThan(compared, EventType.allCases.count * 400)
        // A type this build does not know: no "fields".
        var unknown = EventEncoder.sample(.syscall)
        unknown[16] = 250; unknown[17] = 0
        unknown.withUnsafeBytes { b in
            guard let e = Event.validated(b, sequence: 1) else { return }
            XCTAssertEqual(direct(e, comm: nil), e.json().serialized())
        }
    }

    /// The first 20,000 events of every fixture (every type they hold), in
    /// the fixture's own syscall numbering.
    func testEveryFixtureEventMatchesTheTree() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("fixtures").path
        var events = 0
        for name in try FileManager.default.contentsOfDirectory(atPath: root).sorted() where FileManager.default.fileExists(atPath: "\(root)/\(name)/trace.fbt") {
            let reader = try TraceReader(path: "\(root)/\(name)/trace.fbt")
            let arch = SyscallArch(schema: reader.metadata.schema, machine: reader.metadata.machine)
            var mismatch: String?
            var seen = 0
            reader.forEachEvent { e in
                seen += 1
                guard mismatch == nil, seen <= 20_000 else { return }
                events += 1
                let a = direct(e, comm: "x", arch: arch), b = e.json(comm: "x", arch: arch).serialized()
                if a != b { mismatch = "\(name) seq \(e.sequence):\n\(a)\n\(b)" }
            }
            XCTAssertNil(mismatch)
        }
        XCTAssertGreaterThan(events, 100_000)
    }
}
