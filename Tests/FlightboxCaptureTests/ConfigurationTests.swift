import XCTest
#if canImport(Glibc)
import Glibc
#endif
import FlightboxEvents
@testable import FlightboxCapture

/// The capture's configuration logic: what needs neither root nor BPF.
final class ConfigurationTests: XCTestCase {
    /// Families share objects where they share hooks; gauges need none.
    func testEachFamilyMapsToItsBPFObject() {
        let expected: [ProbeFamily: String?] = [
            .syscalls: "syscalls", .files: "syscalls", .privilege: "syscalls", .process: "process", .signals: "signals",
            .block: "block", .scheduler: "sched", .tcp: "tcp", .memory: "memory", .gauges: nil,
        ]
        XCTAssertEqual(Set(expected.keys), Set(ProbeFamily.allCases))
        for family in ProbeFamily.allCases {
            XCTAssertEqual(family.object, expected[family]!, family.rawValue)
        }
    }

    /// Every object a family names is embedded, and decodes to an ELF file.
    func testEveryFamilysObjectIsEmbedded() throws {
        try XCTSkipIf(getenv("FLIGHTBOX_BPF_OBJECT_DIR") != nil, "objects come from FLIGHTBOX_BPF_OBJECT_DIR")
        for name in Set(ProbeFamily.allCases.compactMap(\.object)) + ["bench"] {
            let bytes = try XCTUnwrap(objectBytes(name), "no embedded object \(name)")
            XCTAssertEqual(Array(bytes.prefix(4)), [0x7f, 0x45, 0x4c, 0x46], "\(name) is not ELF")
        }
        XCTAssertNil(objectBytes("no-such-family"))
    }

    func testDefaultsAreEveryFamilyOnce() {
        XCTAssertEqual(Set(ProbeFamily.defaults), Set(ProbeFamily.allCases))
        XCTAssertEqual(ProbeFamily.defaults.count, ProbeFamily.allCases.count)
        let config = CaptureConfig()
        XCTAssertEqual(config.families, ProbeFamily.defaults)
        XCTAssertEqual(config.filter, .none)
        XCTAssertEqual(config.ringBytes & (config.ringBytes - 1), 0, "the ring is a power of two")
        XCTAssertEqual(config.selfPid, UInt32(getpid()), "the recorder never traces itself")
    }

    /// Every event type but loss comes from one family: what --probes
    /// selects is what a trace can hold.
    func testEveryEventTypeHasItsProducingFamily() {
        for type in EventType.allCases {
            if type == .loss {
                XCTAssertNil(ProbeFamily(producing: type))
            } else {
                XCTAssertNotNil(ProbeFamily(producing: type), type.name)
            }
        }
        XCTAssertEqual(ProbeFamily(producing: .exec), .process)
        XCTAssertEqual(ProbeFamily(producing: .writes), .files)
        XCTAssertEqual(ProbeFamily(producing: .oom), .memory)
        XCTAssertEqual(ProbeFamily(producing: .sched), .scheduler)
    }

    /// The filter as the recorder announces it and as the trace's metadata stores it.
    func testFilterSummaryAndJSON() {
        let cases: [(CaptureFilter, String, String)] = [
            (.none, "system-wide", #"{"mode":"system"}"#),
            (.pid(42), "pid 42", #"{"mode":"pid","pid":42}"#),
            (.comm("nginx"), "comm nginx", #"{"mode":"comm","comm":"nginx"}"#),
            (.tracked([7, 9]), "command (pid 7,9 and descendants)", #"{"mode":"command","pids":[7,9]}"#),
        ]
        for (filter, summary, json) in cases {
            XCTAssertEqual(filter.summary, summary)
            XCTAssertEqual(filter.json.serialized(), json)
        }
    }

    func testBase64Decoding() {
        XCTAssertEqual(base64Decode(""), [])
        XCTAssertEqual(base64Decode("Zg=="), Array("f".utf8))
        XCTAssertEqual(base64Decode("Zm9vYmFy"), Array("foobar".utf8))
        XCTAssertEqual(base64Decode("+/8="), [0xfb, 0xff])
        XCTAssertNil(base64Decode("Zm9v!"))
    }

    /// /proc/mounts escapes space, tab, newline and backslash as octal.
    func testMountPointsAreUnescaped() {
        let sampler = GaugeSampler(intervalNs: 1_000_000_000, processes: .holdingAtLeast(32))
        XCTAssertEqual(sampler.unescapeMount("/mnt/plain"), "/mnt/plain")
        XCTAssertEqual(sampler.unescapeMount(#"/mnt/two\040words"#), "/mnt/two words")
        XCTAssertEqual(sampler.unescapeMount(#"/mnt/back\134slash\011tab"#), "/mnt/back\\slash\ttab")
        XCTAssertEqual(sampler.unescapeMount(#"/mnt/cut\04"#), #"/mnt/cut\04"#)
    }

    /// One sample of this machine: whole gauge records stamped with the
    /// time given, system gauges included, this process's fds as asked.
    func testAGaugeSampleIsWholeRecordsStampedWithItsTime() throws {
        let sampler = GaugeSampler(intervalNs: 1_000_000_000, processes: .tree([UInt32(getpid())]))
        let records = sampler.sample(at: 123_456)
        XCTAssertFalse(records.isEmpty)
        var kinds: [UInt32] = []
        for r in records {
            try r.withUnsafeBytes { buf in
                let e = try XCTUnwrap(Event.validated(buf, sequence: 0))
                XCTAssertEqual(e.size, buf.count)
                XCTAssertEqual(e.timestamp, 123_456)
                kinds.append(try XCTUnwrap(e.as(GaugeRecord.self)).kind)
            }
        }
        XCTAssertTrue(kinds.contains(GaugeKind.memAvailable.rawValue))
        XCTAssertTrue(kinds.contains(GaugeKind.load.rawValue))
        XCTAssertFalse(kinds.contains(GaugeKind.processFds.rawValue), "the sampler never samples the recorder itself")
    }

    /// Errors say what failed and what to do.
    func testErrorsSayWhatToDo() {
        XCTAssertTrue(CaptureError.notPrivileged.description.contains("sudo"))
        XCTAssertTrue(CaptureError.noBTF(path: "/x").description.contains("--btf"))
        XCTAssertTrue(CaptureError.unknownFamily("foo").description.contains("known: syscalls,process"))
        XCTAssertEqual(CaptureError.ringBuffer(errno: EIO).description, "reading the BPF ring buffer failed: Input/output error")
    }

    /// Preflight refuses before anything is loaded: without privilege, or
    /// with no BTF at the path given.
    func testPreflightNamesWhatIsMissing() {
        XCTAssertThrowsError(try Preflight.check(btfPath: "/nonexistent/vmlinux")) { error in
            let text = "\(error)"
            if geteuid() == 0 {
                XCTAssertEqual(text, CaptureError.noBTF(path: "/nonexistent/vmlinux").description)
            } else {
                XCTAssertTrue(text.contains("needs root") || text.contains("BTF"), text)
            }
        }
    }
}
