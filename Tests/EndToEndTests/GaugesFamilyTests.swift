import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

final class GaugesFamilyTests: XCTestCase {
    /// Free space on a small tmpfs drops by exactly the size of a file
    /// written to it, as sampled into the trace; per-process fd gauges cover
    /// the recorded command.
    func testFreeSpaceGaugeMovesByTheFileSize() throws {
        try requireBPF()
        let mnt = scratch("gauge-fs")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        XCTAssertEqual(try Tool.run("/bin/mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt]).status, 0)
        defer { _ = try? Tool.run("/bin/umount", [mnt]) }
        let trace = scratch("gauges.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "gauges", "--gauge-interval", "100ms", "--",
                                              "/bin/sh", "-c", "ulimit -n 300; sleep 0.5; head -c 3145728 /dev/zero > \(mnt)/f; sleep 0.5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let gauges = try eventsJSON(trace, ["--type", "gauge"])
        let space = gauges.filter { $0["gauge"]?.stringValue == "fs_bytes_available" && $0["fields"]?["name"]?.stringValue == mnt }
        XCTAssertGreaterThanOrEqual(space.count, 5, "sampled every 100 ms")
        let values = space.compactMap { $0["fields"]?["value"]?.uintValue }
        XCTAssertEqual(space.first?["fields"]?["limit"]?.uintValue, 8 << 20)
        XCTAssertEqual(values.first, 8 << 20, "empty at the start")
        XCTAssertEqual(values.last, (8 << 20) - (3 << 20), "3 MiB less after the write")
        XCTAssertEqual(values, values.sorted(by: >), "only ever goes down here")
        let fds = gauges.filter { $0["gauge"]?.stringValue == "process_fds" }
        XCTAssertFalse(fds.isEmpty, "the command's processes are sampled")
        XCTAssertTrue(fds.allSatisfy { ($0["fields"]?["limit"]?.uintValue ?? 0) > 0 && ($0["fields"]?["value"]?.uintValue ?? 0) > 0 })
        XCTAssertTrue(fds.contains { $0["fields"]?["limit"]?.uintValue == 300 }, "each process's own soft RLIMIT_NOFILE (ulimit -n 300)")
        // The mount's device as write summaries name it (kernel dev_t: major << 20 | minor).
        let majMin = try Tool.run("/bin/mountpoint", ["-d", mnt]).stdout.split(separator: "\n").first?.split(separator: ":").compactMap { UInt64($0) } ?? []
        XCTAssertEqual(majMin.count, 2)
        let device = gauges.filter { $0["gauge"]?.stringValue == "fs_device" && $0["fields"]?["name"]?.stringValue == mnt }
        XCTAssertFalse(device.isEmpty)
        XCTAssertTrue(device.allSatisfy { $0["fields"]?["value"]?.uintValue == majMin[0] << 20 | majMin[1] }, "\(majMin)")
        for kind in ["system_fds", "tasks", "mem_available", "load1"] {
            XCTAssertTrue(gauges.contains { $0["gauge"]?.stringValue == kind && ($0["fields"]?["limit"]?.uintValue ?? 0) > 0 }, kind)
        }
        // Block devices by name, with their dev_t and size, as /sys/block has them.
        let devices = gauges.filter { $0["gauge"]?.stringValue == "block_device" }
        let sysBlock = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/block")) ?? []
        for name in sysBlock.sorted() {
            guard let sectors = try? String(contentsOfFile: "/sys/block/\(name)/size", encoding: .utf8), let n = UInt64(sectors.trimmingCharacters(in: .whitespacesAndNewlines)), n > 0,
                  let dev = try? String(contentsOfFile: "/sys/block/\(name)/dev", encoding: .utf8) else { continue }
            let parts = dev.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ":").compactMap { UInt64($0) }
            let sampled = devices.first { $0["fields"]?["name"]?.stringValue == name }
            XCTAssertEqual(sampled?["fields"]?["value"]?.uintValue, parts.count == 2 ? parts[0] << 20 | parts[1] : nil, name)
            XCTAssertEqual(sampled?["fields"]?["limit"]?.uintValue, n * 512, name)
        }
    }

    /// The gauges resource-exhaustion prediction needs beside those: a memory
    /// cgroup's charge against its limit, a followed process's resident
    /// memory, threads against threads-max, and PSI's 60 s averages.
    func testCgroupMemoryRSSThreadsAndPressureGauges() throws {
        try requireBPF()
        let cgroup = try MemoryCgroup(limit: 48 << 20)
        defer { cgroup.remove() }
        let trace = scratch("gauges-exhaustion.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "gauges", "--gauge-interval", "100ms", "--",
                                              "/bin/sh", "-c", "echo $$ > \(cgroup.path)/cgroup.procs && exec sleep 0.6"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let gauges = try eventsJSON(trace, ["--type", "gauge"])
        let name = String(cgroup.path.dropFirst(cgroup.path.hasPrefix("/sys/fs/cgroup/memory/") ? "/sys/fs/cgroup/memory".count : "/sys/fs/cgroup".count))
        let memory = gauges.filter { $0["gauge"]?.stringValue == "cgroup_memory" && $0["fields"]?["name"]?.stringValue == name }
        XCTAssertFalse(memory.isEmpty, "the cgroup \(name) is sampled: \(Set(gauges.compactMap { $0["gauge"]?.stringValue }))")
        XCTAssertTrue(memory.allSatisfy { $0["fields"]?["limit"]?.uintValue == 48 << 20 }, "its limit")
        XCTAssertTrue(memory.contains { ($0["fields"]?["value"]?.uintValue ?? 0) > 0 }, "the command's memory is charged to it")
        XCTAssertTrue(gauges.filter { $0["gauge"]?.stringValue == "cgroup_memory" }.allSatisfy { ($0["fields"]?["limit"]?.uintValue ?? 0) < 1 << 62 },
                      "unlimited cgroups are not sampled")
        let anon = memory.compactMap { m in gauges.first { $0["gauge"]?.stringValue == "cgroup_memory_anon" && $0["ts_ns"] == m["ts_ns"] && $0["fields"]?["name"]?.stringValue == name } }
        XCTAssertEqual(anon.count, memory.count, "anonymous memory sampled with each charge")
        XCTAssertTrue(zip(anon, memory).allSatisfy { a, m in
            (a["fields"]?["value"]?.uintValue ?? .max) <= (m["fields"]?["value"]?.uintValue ?? 0) && a["fields"]?["limit"] == m["fields"]?["limit"]
        }, "never more than the charge, which also counts page cache")
        let rss = gauges.filter { $0["gauge"]?.stringValue == "process_rss" }
        XCTAssertFalse(rss.isEmpty, "the followed command's resident memory")
        XCTAssertTrue(rss.allSatisfy { ($0["fields"]?["value"]?.uintValue ?? 0) > 0 && ($0["fields"]?["limit"]?.uintValue ?? 0) > ($0["fields"]?["value"]?.uintValue ?? 0) })
        XCTAssertTrue(gauges.contains { $0["gauge"]?.stringValue == "threads" && ($0["fields"]?["limit"]?.uintValue ?? 0) > 0 })
        if FileManager.default.fileExists(atPath: "/proc/pressure/cpu") {
            XCTAssertTrue(gauges.contains { $0["gauge"]?.stringValue == "psi_some_avg60" && $0["fields"]?["name"]?.stringValue == "cpu" })
        }
    }
}
