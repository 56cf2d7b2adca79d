import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

final class MemoryFamilyTests: XCTestCase {
    /// A process in a memory cgroup with a small limit touches more than the
    /// limit: the cgroup reclaims, then the kernel kills it. The OOM kill names
    /// the victim, its size and its cgroup; the exit says SIGKILL.
    func testOOMKillInASmallMemoryCgroup() throws {
        try requireBPF()
        let cgroup = try MemoryCgroup(limit: 32 << 20)
        defer { cgroup.remove() }
        let trace = scratch("oom.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "memory,process", "--", Tool.load, "oom", cgroup.path, "256"])
        XCTAssertFalse(r.stdout.contains("survived"), "the limit held: \(r.stdout)")
        let exits = try eventsJSON(trace, ["--type", "exit"])
        let victim = try XCTUnwrap(exits.first { $0["fields"]?["comm"]?.stringValue == "flightbox-load" && $0["process_exit"] == .bool(true) }, "\(exits)")
        XCTAssertEqual(victim["signal"]?.intValue, 9, "killed with SIGKILL")
        let pid = try XCTUnwrap(victim["pid"]?.uintValue)
        let ooms = try eventsJSON(trace, ["--type", "oom"])
        XCTAssertEqual(ooms.count, 1, "\(ooms)")
        let oom = try XCTUnwrap(ooms.first)
        XCTAssertEqual(oom["pid"]?.uintValue, pid)
        XCTAssertEqual(oom["fields"]?["comm"]?.stringValue, "flightbox-load")
        XCTAssertEqual(oom["fields"]?["memcg"]?.stringValue, cgroup.name)
        XCTAssertGreaterThan(oom["fields"]?["memcg_id"]?.uintValue ?? 0, 0)
        XCTAssertEqual(oom["fields"]?["uid"]?.uintValue, UInt64(getuid()))
        // Nearly all of the 32 MiB limit (8192 pages) is the victim's anonymous memory.
        let anon = oom["fields"]?["anon_rss"]?.uintValue ?? 0
        XCTAssertGreaterThan(anon, UInt64(24 * 256), "\(oom.serialized())")
        XCTAssertLessThanOrEqual(anon, UInt64(34 * 256))
        XCTAssertGreaterThanOrEqual(oom["fields"]?["total_vm"]?.uintValue ?? 0, anon)
        XCTAssertEqual(oom["fields"]?["trigger_pid"]?.uintValue, pid, "its own allocation ran out")
        let reclaims = try eventsJSON(trace, ["--type", "reclaim"]).filter { $0["pid"]?.uintValue == pid }
        XCTAssertFalse(reclaims.isEmpty, "the cgroup tried to reclaim before killing")
        XCTAssertTrue(reclaims.allSatisfy { $0["scope"]?.stringValue == "memcg" && ($0["fields"]?["duration_ns"]?.uintValue ?? 0) > 0 })
        // Touching 32 MiB a page at a time: at least that many minor faults, all summarized.
        let faults = try eventsJSON(trace, ["--type", "faults"]).filter { $0["pid"]?.uintValue == pid }
        XCTAssertGreaterThanOrEqual(faults.reduce(0) { $0 + ($1["fields"]?["user"]?.uintValue ?? 0) }, UInt64(24 * 256))
        XCTAssertGreaterThanOrEqual(faults.reduce(0) { $0 + ($1["fields"]?["minor"]?.uintValue ?? 0) }, UInt64(24 * 256))
    }

    /// A file read back through a mapping after leaving the page cache takes
    /// one major fault per page; fresh anonymous memory one minor fault per
    /// page. The summaries count both as the kernel accounted them.
    func testMajorAndMinorFaults() throws {
        try requireBPF()
        // /var/tmp, which is on a disk (FHS), unlike /tmp often: tmpfs pages
        // cannot leave the page cache.
        let where_ = "/var/tmp"
        let pages = 2000
        let trace = scratch("faults.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "memory", "--", Tool.load, "faults", where_, String(pages)])
        XCTAssertEqual(r.status, 0, r.stderr)
        let faults = try eventsJSON(trace, ["--type", "faults"]).filter { $0["comm"]?.stringValue == "flightbox-load" }
        XCTAssertFalse(faults.isEmpty)
        func total(_ k: String) -> UInt64 { faults.reduce(0) { $0 + ($1["fields"]?[k]?.uintValue ?? 0) } }
        XCTAssertGreaterThanOrEqual(total("major"), UInt64(pages) * 9 / 10, "\(faults.map { $0.serialized() })")
        XCTAssertLessThanOrEqual(total("major"), UInt64(pages) + 50)
        XCTAssertGreaterThanOrEqual(total("minor"), UInt64(pages))
        XCTAssertGreaterThanOrEqual(total("user"), 2 * UInt64(pages))
        for f in faults {
            XCTAssertLessThanOrEqual(f["fields"]?["first_ts"]?.uintValue ?? 0, f["ts_ns"]?.uintValue ?? 0)
            XCTAssertLessThanOrEqual((f["ts_ns"]?.uintValue ?? 0) - (f["fields"]?["first_ts"]?.uintValue ?? 0), 2_000_000_000, "one summary spans about a second at most")
        }
    }
}

extension MemoryFamilyTests {
    /// The memory detector, live and on replay of the same recording: the OOM
    /// kill is one critical finding, byte for byte the same both ways.
    func testMemoryDetectorLiveAndReplayAreByteIdentical() throws {
        try requireBPF()
        let cgroup = try MemoryCgroup(limit: 32 << 20)
        defer { cgroup.remove() }
        let trace = scratch("oom-detect.fbt"), live = scratch("oom-live.jsonl")
        _ = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "memory,process", "--detect", "--detectors", "memory",
                                          "--findings", live, "--", Tool.load, "oom", cgroup.path, "256"])
        let liveText = try String(contentsOfFile: live, encoding: .utf8)
        let replay = try Tool.flightbox("replay", trace, "--format", "json")
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertEqual(replay.stdout, liveText)
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        let kills = findings.filter { $0["evidence"]?["kind"]?.stringValue == "oom_kill" }
        XCTAssertEqual(kills.count, 1, replay.stdout)
        let k = try XCTUnwrap(kills.first)
        XCTAssertEqual(k["severity"]?.stringValue, "critical")
        XCTAssertEqual(k["detector"]?.stringValue, "memory")
        XCTAssertEqual(k["comm"]?.stringValue, "flightbox-load")
        XCTAssertEqual(k["evidence"]?["cgroup"]?.stringValue, cgroup.name)
        XCTAssertEqual(k["evidence"]?["victim_pid"]?.uintValue, k["pid"]?.uintValue)
        XCTAssertGreaterThan(k["evidence"]?["anon_rss_bytes"]?.uintValue ?? 0, 24 << 20)
        // Reclaim in a cgroup without swap is short: microseconds, not a stall worth a warning.
        XCTAssertFalse(findings.contains { $0["severity"]?.stringValue == "warning" }, replay.stdout)
    }

    /// A process's first second (a binary loading, a cold file read back
    /// through a mapping: thousands of major faults) has no baseline: nothing.
    func testAStartupFullOfFaultsIsNotAFinding() throws {
        try requireBPF()
        let trace = scratch("faults-detect.fbt"), live = scratch("faults-live.jsonl")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "memory,process", "--detect", "--detectors", "memory",
                                              "--findings", live, "--", Tool.load, "faults", "/var/tmp", "2000"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try String(contentsOfFile: live, encoding: .utf8), "")
        XCTAssertEqual(try Tool.flightbox("replay", trace, "--format", "json").stdout, "")
    }
}

/// A memory cgroup of its own with a limit, under cgroup v2 or v1.
struct MemoryCgroup {
    let path: String
    let name: String

    init(limit: Int) throws {
        name = "flightbox-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fm = FileManager.default
        let v2 = "/sys/fs/cgroup"
        if let controllers = try? String(contentsOfFile: v2 + "/cgroup.controllers", encoding: .utf8), controllers.contains("memory") {
            try? "+memory".write(toFile: v2 + "/cgroup.subtree_control", atomically: false, encoding: .utf8)
            path = v2 + "/" + name
            try fm.createDirectory(atPath: path, withIntermediateDirectories: false)
            try "\(limit)".write(toFile: path + "/memory.max", atomically: false, encoding: .utf8)
            try? "0".write(toFile: path + "/memory.swap.max", atomically: false, encoding: .utf8)
        } else if fm.fileExists(atPath: "/sys/fs/cgroup/memory/memory.limit_in_bytes") {
            path = "/sys/fs/cgroup/memory/" + name
            try fm.createDirectory(atPath: path, withIntermediateDirectories: false)
            try "\(limit)".write(toFile: path + "/memory.limit_in_bytes", atomically: false, encoding: .utf8)
            try? "\(limit)".write(toFile: path + "/memory.memsw.limit_in_bytes", atomically: false, encoding: .utf8)
        } else {
            throw XCTSkip("no memory cgroup controller on this machine (neither cgroup v2 with memory nor v1 memory)")
        }
    }

    func remove() { rmdir(path) }
}
