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
            .block: "block", .scheduler: "sched", .tcp: "tcp", .memory: "memory", .gauges: nil, .probes: "uprobe",
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

    /// Every family but probes, which is on when a configuration declares health checks.
    func testDefaultsAreEveryFamilyOnce() {
        XCTAssertEqual(Set(ProbeFamily.defaults), Set(ProbeFamily.allCases).subtracting([.probes]))
        XCTAssertEqual(ProbeFamily.defaults.count, ProbeFamily.allCases.count - 1)
        let config = CaptureConfig()
        XCTAssertEqual(config.families, ProbeFamily.defaults)
        XCTAssertEqual(config.filter, .none)
        XCTAssertEqual(config.ringBytes & (config.ringBytes - 1), 0, "the ring is a power of two")
        XCTAssertEqual(config.selfPid, UInt32(getpid()), "the recorder never traces itself")
    }

    /// Every event type but loss comes from one family: what --probes selects
    /// is what a trace can hold. Probe events come from the probes family,
    /// which attaches the health checks a configuration declares.
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
        XCTAssertEqual(ProbeFamily(producing: .probe), .probes)
    }

    /// The filter as the recorder announces it and as the trace's metadata stores it.
    func testFilterSummaryAndJSON() {
        let cases: [(CaptureFilter, String, String)] = [
            (.none, "system-wide", #"{"mode":"system"}"#),
            (.pid(42), "pid 42", #"{"mode":"pid","pid":42}"#),
            (.comm("nginx"), "comm nginx", #"{"mode":"comm","comm":"nginx"}"#),
            (.tracked([7, 9]), "command (pid 7,9 and descendants)", #"{"mode":"command","pids":[7,9]}"#),
            (.descendants(of: 42), "pid 42 and descendants", #"{"mode":"pid","pid":42,"descendants":true}"#),
            (.cgroup(CgroupTarget(path: "/sys/fs/cgroup/system.slice/nginx.service", id: 4242, level: 2, hierarchy: .unified)),
             "cgroup /sys/fs/cgroup/system.slice/nginx.service and below",
             #"{"mode":"cgroup","path":"/sys/fs/cgroup/system.slice/nginx.service","id":4242,"level":2,"hierarchy":"v2"}"#),
            (.cgroup(CgroupTarget(path: "/sys/fs/cgroup/pids/docker/abc", id: 77, level: 2, hierarchy: .v1(controller: "pids", ssid: 11))),
             "cgroup /sys/fs/cgroup/pids/docker/abc and below",
             #"{"mode":"cgroup","path":"/sys/fs/cgroup/pids/docker/abc","id":77,"level":2,"hierarchy":"v1","controller":"pids"}"#),
        ]
        for (filter, summary, json) in cases {
            XCTAssertEqual(filter.summary, summary)
            XCTAssertEqual(filter.json.serialized(), json)
        }
    }

    /// mountinfo lines of cgroup mounts: v1 controllers from the superblock
    /// options (not rw, not name=), v2, a bind-mounted subtree, escapes;
    /// other filesystems are not cgroups.
    func testCgroupMountsFromMountinfo() {
        let v1 = CgroupMount.parse("39 31 0:36 / /sys/fs/cgroup/pids rw,nosuid,relatime shared:17 - cgroup cgroup rw,pids")
        XCTAssertEqual(v1, CgroupMount(point: "/sys/fs/cgroup/pids", root: "/", unified: false, controllers: ["pids"], options: "rw,pids"))
        let both = CgroupMount.parse("32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct")
        XCTAssertEqual(both?.controllers, ["cpu", "cpuacct"])
        XCTAssertEqual(CgroupMount.parse("40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd")?.controllers, [])
        let v2 = CgroupMount.parse("28 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot")
        XCTAssertEqual(v2?.unified, true)
        XCTAssertEqual(v2?.controllers, [])
        let bound = CgroupMount.parse("612 600 0:26 /docker/abc /sys/fs/cgroup rw - cgroup2 cgroup2 rw")
        XCTAssertEqual(bound?.root, "/docker/abc")
        XCTAssertEqual(CgroupMount.parse(#"50 31 0:40 / /mnt/my\040cgroups rw - cgroup2 cgroup2 rw"#)?.point, "/mnt/my cgroups")
        XCTAssertNil(CgroupMount.parse("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755"))
        XCTAssertNil(CgroupMount.parse("garbage"))
        let mounts = [v1!, v2!]
        XCTAssertEqual(CgroupMount.containing("/sys/fs/cgroup/pids/a/b", in: mounts)?.point, "/sys/fs/cgroup/pids")
        XCTAssertEqual(CgroupMount.containing("/sys/fs/cgroup/pidsx", in: mounts)?.point, "/sys/fs/cgroup")
        XCTAssertNil(CgroupMount.containing("/tmp", in: mounts))
        XCTAssertEqual(CgroupTarget.kernelName("blkio"), "io")
    }

    /// The depth the kernel compares counts the mount's own root: a
    /// bind-mounted subtree's cgroups are deeper than their path below the mount.
    func testCgroupResolvesThisMachinesHierarchies() throws {
        guard geteuid() == 0, access("/sys/kernel/btf/vmlinux", R_OK) == 0 else { throw XCTSkip("needs root and the kernel's BTF") }
        for m in CgroupMount.all() where m.unified || !m.controllers.isEmpty {
            let t = try CgroupTarget.resolve(m.point)
            XCTAssertEqual(t.path, m.point)
            XCTAssertEqual(Int(t.level), m.root.split(separator: "/").count)
            if m.unified { XCTAssertEqual(t.hierarchy, .unified) } else if case .v1(let c, let ssid) = t.hierarchy {
                XCTAssertTrue(m.controllers.contains(c))
                XCTAssertGreaterThanOrEqual(ssid, 0)
            } else { XCTFail("\(m.point): \(t.hierarchy)") }
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
        XCTAssertEqual(unescapeMountField("/mnt/plain"), "/mnt/plain")
        XCTAssertEqual(unescapeMountField(#"/mnt/two\040words"#), "/mnt/two words")
        XCTAssertEqual(unescapeMountField(#"/mnt/back\134slash\011tab"#), "/mnt/back\\slash\ttab")
        XCTAssertEqual(unescapeMountField(#"/mnt/cut\04"#), #"/mnt/cut\04"#)
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
