import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxDetectors

private let s: UInt64 = 1_000_000_000
private let ms: UInt64 = 1_000_000
private let us: UInt64 = 1_000

/// sda (8:0), sdb (8:16), a virtio disk (254:0) and a partition of sda (8:1).
private let sda: UInt32 = 8 << 20, sdb: UInt32 = 8 << 20 | 16, vda: UInt32 = 254 << 20, sda1: UInt32 = 8 << 20 | 1
private let read: UInt32 = 0, write: UInt32 = 1, flush: UInt32 = 2, discard: UInt32 = 3

private func block(_ changes: [(String, SettingValue)] = [], exclude: Exclusions = Exclusions()) -> BlockDetector {
    var settings = BlockDetector.spec.defaults
    for (k, v) in changes { XCTAssertNil(settings.set(k, v)) }
    settings.exclude = exclude
    return BlockDetector(settings: settings)
}

/// `perSecond` requests a second over `seconds`, each of `latency` (a little
/// jitter, 0-3/16 more), issued by `pid`; the record's timestamp is the issue time.
private func requests(_ seconds: Range<UInt64>, perSecond: UInt64, latency: UInt64, dev: UInt32 = sda, op: UInt32 = read,
                      bytes: UInt32 = 4096, pid: UInt32 = 42, comm: String = "db", error: Int32 = 0) -> [[UInt8]] {
    seconds.flatMap { sec in
        (0..<perSecond).map { i in
            BlockRecord.encode(ts: sec * s + i * (s / perSecond), pid: pid, tid: pid, latencyNs: latency + latency * (i % 4) / 16,
                               sector: i * 8, dev: dev, bytes: bytes, op: op, error: error, comm: comm)
        }
    }
}

private func one(_ ts: UInt64, latency: UInt64 = 100 * us, dev: UInt32 = sda, op: UInt32 = read, pid: UInt32 = 42,
                 comm: String = "db", error: Int32 = 0, bytes: UInt32 = 4096) -> [UInt8] {
    BlockRecord.encode(ts: ts, pid: pid, tid: pid, latencyNs: latency, sector: 2048, dev: dev, bytes: bytes, op: op, error: error, comm: comm)
}

/// Merges streams by timestamp (stable), as the engine expects them ordered.
private func ordered(_ parts: [[UInt8]]...) -> [[UInt8]] {
    parts.flatMap { $0 }.enumerated().sorted { a, b in
        let ta = a.element.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        let tb = b.element.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        return (ta, a.offset) < (tb, b.offset)
    }.map(\.element)
}

private func judge(_ records: [[UInt8]], _ d: Detector = block()) -> [Finding] {
    detect(records, detectors: [d], snapshot: ProcessSnapshot(timestamp: 0, processes: [
        ProcessRecord(pid: 42, ppid: 1, uid: 0, comm: "db", exe: "/db", argv: ["db"]),
        ProcessRecord(pid: 77, ppid: 1, uid: 0, comm: "postgres", exe: "/postgres", argv: ["postgres"]),
    ]), arch: .x86_64)
}

/// 20 s of healthy reads (100 µs, 50 a second): a baseline of 1,000 requests.
private let healthy = requests(0..<20, perSecond: 50, latency: 100 * us)

final class BlockTests: XCTestCase {
    func testRegisteredWithItsFamilyAndParameters() {
        XCTAssertTrue(DetectorRegistry.names.contains("block"))
        XCTAssertEqual(BlockDetector.spec.family, "block")
        for p in ["window", "warmup", "baseline_min", "min_requests", "factor", "min_latency", "critical_latency", "load_factor", "hold_down", "writers_horizon", "top"] {
            XCTAssertNotNil(BlockDetector.spec.parameter(p), p)
        }
        XCTAssertEqual(DetectorConfiguration.defaults["block"]?.json["factor"], .double(2))
    }

    func testBucketsAndQuantiles() {
        XCTAssertEqual(BlockDetector.bucket(0), 0)
        XCTAssertEqual(BlockDetector.bucket(1), 0)
        XCTAssertEqual(BlockDetector.bucket(1023), 9)
        XCTAssertEqual(BlockDetector.bucket(1024), 10)
        XCTAssertEqual(BlockDetector.bucket(.max), 63)
        XCTAssertEqual(BlockDetector.high(63), .max)
        XCTAssertEqual(BlockDetector.low(10), 1024)
        var h = [UInt64](repeating: 0, count: 64)
        h[16] = 98
        h[22] = 2
        XCTAssertEqual(BlockDetector.quantile(h, total: 100, 0.5), 16)
        XCTAssertEqual(BlockDetector.quantile(h, total: 100, 0.98), 16)
        XCTAssertEqual(BlockDetector.quantile(h, total: 100, 0.99), 22)
    }

    func testDeviceNames() {
        XCTAssertEqual(BlockDetector.knownName(7 << 20 | 3), "loop3")
        XCTAssertEqual(BlockDetector.knownName(sda), "sda")
        XCTAssertEqual(BlockDetector.knownName(sdb), "sdb")
        XCTAssertEqual(BlockDetector.knownName(65 << 20 | 16 * 15), "sdaf")
        XCTAssertNil(BlockDetector.knownName(sda1), "a partition: requests name disks")
        XCTAssertNil(BlockDetector.knownName(vda), "a dynamic major")
        XCTAssertTrue(BlockDetector.fileSystem(sda1, isOn: sda))
        XCTAssertTrue(BlockDetector.fileSystem(vda, isOn: vda))
        XCTAssertFalse(BlockDetector.fileSystem(sdb, isOn: sda))
        XCTAssertTrue(BlockDetector.isKernelWorker("kworker/u8:2"))
        XCTAssertTrue(BlockDetector.isKernelWorker("jbd2/vda-8"))
        XCTAssertTrue(BlockDetector.isKernelWorker("loop0"))
        XCTAssertFalse(BlockDetector.isKernelWorker("md5sum"))
        XCTAssertFalse(BlockDetector.isKernelWorker("loopy"))
        XCTAssertTrue(BlockDetector.isKernelWorker("md127_raid1"))
        XCTAssertFalse(BlockDetector.isKernelWorker("loop2x"))
    }

    func testASlowDeviceIsOneWarningPerEpisode() {
        // Healthy for 20 s, then every read takes 30 ms for 5 s.
        let f = judge(ordered(healthy, requests(20..<25, perSecond: 20, latency: 30 * ms)))
        XCTAssertEqual(f.count, 1, "\(f.map(\.jsonLine))")
        guard let w = f.first else { return }
        XCTAssertEqual(w.severity, .warning)
        XCTAssertEqual(w.ts, 21 * s, "reported when the first slow window ends")
        XCTAssertEqual(w.pid, 42)
        XCTAssertEqual(w.comm, "db")
        XCTAssertEqual(w.evidence["kind"], .string("latency"))
        XCTAssertEqual(w.evidence["device"], .string("8:0"))
        XCTAssertEqual(w.evidence["device_name"], .string("sda"))
        XCTAssertEqual(w.evidence["episode_started_ns"], .uint(20 * s))
        guard case .array(let ops)? = w.evidence["ops"], let r = ops.first else { return XCTFail("no ops") }
        XCTAssertEqual(ops.count, 1)
        XCTAssertEqual(r["op"], .string("read"))
        XCTAssertEqual(r["requests"], .uint(20))
        XCTAssertEqual(r["slow_requests"], .uint(20))
        // Windows are learned one late, and the one before a slow window not at all: 19 of 20.
        XCTAssertEqual(r["baseline_requests"], .uint(950))
        // 100-118 µs: bucket [65536, 131072); 30-35 ms: [16.8 ms, 33.5 ms) and above.
        XCTAssertEqual(r["baseline_p99_ns"], .array([.uint(65_536), .uint(131_072)]))
        XCTAssertEqual(r["window_p50_ns"], .array([.uint(16_777_216), .uint(33_554_432)]))
        XCTAssertEqual(r["times_baseline_p99"], .double(128))
        XCTAssertTrue(w.summary.hasPrefix("sda (8:0) is slow: read median ≥ 16.777ms"), w.summary)
        XCTAssertTrue(w.summary.hasSuffix("issued by db (pid 42)"), w.summary)
    }

    func testNothingIsJudgedDuringTheWarmup() {
        // Slow from the 3rd second: the device has no baseline yet (10 s warm-up).
        let early = ordered(requests(0..<2, perSecond: 200, latency: 100 * us), requests(2..<9, perSecond: 20, latency: 30 * ms))
        XCTAssertEqual(judge(early), [])
        // Past the warm-up, but the baseline holds 100 requests, not 200.
        let thin = ordered(requests(0..<20, perSecond: 5, latency: 100 * us), requests(20..<25, perSecond: 20, latency: 30 * ms))
        XCTAssertEqual(judge(thin), [])
        XCTAssertEqual(judge(thin, block([("baseline_min", .count(100))])).count, 1)
        // Fewer than min_requests slow reads in a window.
        XCTAssertEqual(judge(ordered(healthy, requests(20..<25, perSecond: 5, latency: 30 * ms))), [])
    }

    func testADeviceSeenForTheFirstTimeLearnsItsOwnBaseline() {
        // sdb, a slow disk by nature (20 ms), appears at 15 s, after sda's warm-up:
        // it is learned for its own warm-up, then its 20 ms are its normal.
        let hdd = requests(15..<40, perSecond: 20, latency: 20 * ms, dev: sdb)
        XCTAssertEqual(judge(ordered(healthy, requests(20..<40, perSecond: 50, latency: 100 * us), hdd)), [])
        // Its slowness does not leak into sda's baseline: sda slowing to 20 ms is still found, and named.
        let f = judge(ordered(healthy, requests(20..<25, perSecond: 20, latency: 20 * ms), hdd))
        XCTAssertEqual(f.map { $0.evidence["device"] }, [.string("8:0")])
        // sdb slowing down after its own warm-up: 20 ms to 200 ms.
        let g = judge(ordered(healthy, requests(15..<30, perSecond: 20, latency: 20 * ms, dev: sdb), requests(30..<32, perSecond: 10, latency: 200 * ms, dev: sdb)))
        XCTAssertEqual(g.map { $0.evidence["device"] }, [.string("8:16")])
        XCTAssertEqual(g.first?.ts, 31 * s)
    }

    func testTheWindowBeforeASlowOneIsNotLearned() {
        // 400 requests of baseline; the episode's first window is 12 normal and 8
        // slow (median normal: not a finding). Learned, its 8 would be 2% of the
        // baseline and make its p99 slow: the next, wholly slow window would pass.
        let base = requests(0..<20, perSecond: 20, latency: 100 * us)
        let transition = ordered(requests(20..<21, perSecond: 12, latency: 100 * us), requests(20..<21, perSecond: 8, latency: 30 * ms))
        let f = judge(ordered(base, transition, requests(21..<22, perSecond: 20, latency: 30 * ms)))
        XCTAssertEqual(f.map(\.ts), [22 * s])
        guard case .array(let ops)? = f.first?.evidence["ops"] else { return XCTFail("no ops") }
        XCTAssertEqual(ops.first?["baseline_requests"], .uint(400))
    }

    func testReadsAndWritesHaveTheirOwnBaselines() {
        // Writes (with their flushes) take 5 ms on this device, reads 100 µs.
        let writes = requests(0..<30, perSecond: 20, latency: 5 * ms, op: write)
        let flushes = requests(0..<30, perSecond: 10, latency: 8 * ms, op: flush, bytes: 0)
        XCTAssertEqual(judge(ordered(healthy, requests(20..<30, perSecond: 50, latency: 100 * us), writes, flushes)), [])
        // Reads at the writes' usual 5 ms are a deviation for reads.
        let f = judge(ordered(healthy, requests(20..<30, perSecond: 50, latency: 5 * ms), writes, flushes))
        XCTAssertEqual(f.count, 1)
        guard case .array(let ops)? = f.first?.evidence["ops"] else { return XCTFail("no ops") }
        XCTAssertEqual(ops.map { $0["op"] }, [.string("read")])
    }

    func testEpisodeHoldDownAndANewEpisode() {
        let d = { block([("hold_down", .duration(10 * s))]) }
        // Slow 20-25 s, healthy 25-28 s, slow again 28-30 s: within the hold-down, one episode.
        let within = ordered(healthy, requests(20..<25, perSecond: 20, latency: 30 * ms), requests(25..<28, perSecond: 50, latency: 100 * us),
                             requests(28..<30, perSecond: 20, latency: 30 * ms))
        XCTAssertEqual(judge(within, d()).count, 1)
        // Slow again at 40 s, 16 s after the last slow window: a new episode, reported.
        let after = ordered(healthy, requests(20..<25, perSecond: 20, latency: 30 * ms), requests(25..<40, perSecond: 50, latency: 100 * us),
                            requests(40..<42, perSecond: 20, latency: 30 * ms))
        let f = judge(after, d())
        XCTAssertEqual(f.map(\.ts), [21 * s, 41 * s])
        XCTAssertEqual(f.last?.evidence["episode_started_ns"], .uint(40 * s))
    }

    func testEscalatesOnceToCritical() {
        // 30 ms, then a median over 1 s (critical_latency), then worse still: warning, one escalation, nothing more.
        let f = judge(ordered(healthy, requests(20..<22, perSecond: 20, latency: 30 * ms), requests(22..<24, perSecond: 10, latency: 1_100 * ms),
                              requests(24..<26, perSecond: 10, latency: 3 * s)))
        XCTAssertEqual(f.map(\.severity), [.warning, .critical])
        XCTAssertEqual(f.last?.evidence["escalated_from"], .string("warning"))
        XCTAssertEqual(f.last?.evidence["episode_started_ns"], .uint(20 * s))
    }

    func testFailedRequestsAreReportedTheFirstTime() {
        // At 1 s, before any warm-up, on a device never seen: two failed writes.
        let f = judge(ordered(requests(0..<5, perSecond: 20, latency: 100 * us),
                              [one(1 * s + 500 * ms, op: write, error: 10), one(1 * s + 600 * ms, op: write, error: 10),
                               one(2 * s + 500 * ms, op: read, error: 10)], // same episode
                              [one(3 * s, dev: vda, op: read, error: 7)])) // another device: its own episode
        XCTAssertEqual(f.count, 2, "\(f.map(\.jsonLine))")
        guard f.count == 2 else { return }
        XCTAssertEqual(f[0].severity, .critical)
        XCTAssertEqual(f[0].ts, 2 * s)
        XCTAssertEqual(f[0].evidence["kind"], .string("errors"))
        XCTAssertEqual(f[0].evidence["failed_requests"], .uint(2))
        XCTAssertEqual(f[0].evidence["first_failure_ns"], .uint(1 * s + 500 * ms))
        XCTAssertEqual(f[0].evidence["statuses"], .array([.object([("status", .int(10)), ("name", .string("BLK_STS_IOERR")), ("count", .uint(2))])]))
        XCTAssertEqual(f[0].summary, "sda (8:0): 2 block I/O requests failed (write 2; BLK_STS_IOERR) of 22 in 1s; issued by db (pid 42)")
        XCTAssertEqual(f[1].evidence["device"], .string("254:0"))
        XCTAssertNil(f[1].evidence["device_name"])
        XCTAssertTrue(f[1].summary.contains("BLK_STS_MEDIUM"), f[1].summary)
    }

    func testStatusesThatAreNotFailures() {
        // BLK_STS_AGAIN: a non-blocking submission that would have waited.
        XCTAssertEqual(judge([one(1 * s, error: 12), one(2 * s)]), [])
        // BLK_STS_NOTSUPP on a discard and a write-zeroes: info (the kernel falls back);
        // a real I/O error later in the episode escalates it.
        let f = judge([one(1 * s, op: discard, error: 1), one(1 * s + 5, op: 9, error: 1), one(2 * s + 1, op: write, error: 10),
                       one(3 * s + 1, op: write, error: 10), one(4 * s)])
        XCTAssertEqual(f.map(\.severity), [.info, .critical])
        XCTAssertEqual(f.first?.evidence["ops"], .array([.object([("op", .string("discard")), ("failed", .uint(1))]),
                                                        .object([("op", .string("write-zeroes")), ("failed", .uint(1))])]))
        XCTAssertEqual(f.last?.evidence["escalated_from"], .string("info"))
        // A flush the device does not do: a warning (what was written may not be durable).
        XCTAssertEqual(judge([one(1 * s, op: flush, error: 1), one(2 * s)]).map(\.severity), [.warning])
    }

    func testABusyDeviceIsNotASlowOne() {
        // A copy: 2,000 requests a second of 128 KiB, queued behind each other at 20 ms.
        let copy = requests(20..<24, perSecond: 2_000, latency: 20 * ms, op: write, bytes: 131_072, pid: 99, comm: "cp")
        let writes = requests(0..<20, perSecond: 50, latency: 80 * us, op: write)
        XCTAssertEqual(judge(ordered(healthy, writes, copy)), [])
        // A copy that lasts: once its bytes are usual, its latencies are too (busy windows are learned).
        let long = requests(20..<60, perSecond: 2_000, latency: 20 * ms, op: write, bytes: 131_072, pid: 99, comm: "cp")
        XCTAssertEqual(judge(ordered(healthy, writes, long)), [])
        // Without the load rule it would have been a finding: the rule is what keeps it quiet.
        let f = judge(ordered(healthy, writes, copy), block([("load_factor", .ratio(1_000_000))]))
        XCTAssertEqual(f.count, 1)
        XCTAssertEqual(f.first?.comm, "cp")
        XCTAssertEqual(f.first?.evidence["mean_in_flight"], .double(43.75), "2,000 requests of 21.875 ms on average in 1 s")
        XCTAssertEqual(judge(ordered(healthy, writes, copy), block([("busy_depth", .ratio(50))])).count, 1)
        // A slow device moving fewer bytes than usual is judged, though.
        XCTAssertEqual(judge(ordered(healthy, writes, requests(20..<24, perSecond: 20, latency: 20 * ms, op: write))).count, 1)
    }

    func testKernelWorkersAreAttributedToTheWriters() {
        // postgres writes to a file system on sda1; writeback by a kworker gets slow on sda.
        let summaries = [WritesRecord.encode(ts: 18 * s, pid: 77, tid: 77, firstTs: 17 * s, lastTs: 18 * s, bytes: 64 << 20, ino: 12,
                                             dev: sda1, fd: 5, calls: 1_000, fdKind: FdKind.regular.rawValue, name: "wal")]
        let worker = requests(0..<25, perSecond: 20, latency: 100 * us, op: write, pid: 300, comm: "kworker/u8:2")
        let slow = requests(25..<27, perSecond: 20, latency: 50 * ms, op: write, pid: 300, comm: "kworker/u8:2")
        let f = judge(ordered(healthy, worker, summaries, slow))
        XCTAssertEqual(f.count, 1)
        guard let w = f.first else { return }
        XCTAssertEqual(w.comm, "kworker/u8:2")
        XCTAssertEqual(w.evidence["writers"], .array([.object([("pid", .uint(77)), ("comm", .string("postgres")), ("bytes_written", .uint(64 << 20))])]))
        XCTAssertTrue(w.summary.hasSuffix("issued by kworker/u8:2 (pid 300) on behalf of postgres (pid 77)"), w.summary)
        // Without the writes summaries (the files family off) the finding says it does not know.
        let g = judge(ordered(healthy, worker, slow))
        XCTAssertNil(g.first?.evidence["writers"])
        XCTAssertTrue(g.first?.evidence["note"]?.stringValue?.contains("no writer") ?? false)
        // Writers older than the horizon are forgotten.
        let h = judge(ordered(healthy, worker, summaries, slow), block([("writers_horizon", .duration(5 * s))]))
        XCTAssertNil(h.first?.evidence["writers"])
    }

    func testExclusionsByDeviceNameOrNumber() {
        let stream = ordered(healthy, requests(20..<25, perSecond: 20, latency: 30 * ms), [one(22 * s, error: 10)])
        XCTAssertEqual(judge(stream).count, 2)
        XCTAssertEqual(judge(stream, block(exclude: Exclusions(devices: ["sda"]))), [])
        XCTAssertEqual(judge(stream, block(exclude: Exclusions(devices: ["8:0"]))), [])
        XCTAssertEqual(judge(stream, block(exclude: Exclusions(devices: ["sdb"]))).count, 2)
        XCTAssertEqual(judge(stream, block(exclude: Exclusions(comms: ["db"]))), [])
    }

    func testDevicesAreNamedByTheGauges() {
        // A virtio disk has a dynamic major: only the block_device gauge names it.
        let name = [EventEncoder.gauge(ts: 500 * ms, kind: .blockDevice, value: UInt64(vda), limit: 256 << 30, name: "vda")]
        let stream = ordered(requests(0..<20, perSecond: 50, latency: 100 * us, dev: vda), requests(20..<22, perSecond: 20, latency: 30 * ms, dev: vda))
        XCTAssertNil(judge(stream).first?.evidence["device_name"])
        let f = judge(ordered(stream, name))
        XCTAssertEqual(f.first?.evidence["device_name"], .string("vda"))
        XCTAssertTrue(f.first?.summary.hasPrefix("vda (254:0) is slow") ?? false, f.first?.summary ?? "")
        // Excluded by that name, though its first requests came before the gauge.
        XCTAssertEqual(judge(ordered(stream, name), block(exclude: Exclusions(devices: ["vda"]))), [])
    }

    func testDevicesAreReportedInOrder() {
        // Both slow in the same window: findings by device, whatever the order of their events.
        let stream = ordered(requests(0..<20, perSecond: 50, latency: 100 * us, dev: sdb), healthy,
                             requests(20..<21, perSecond: 20, latency: 30 * ms, dev: sdb), requests(20..<21, perSecond: 20, latency: 30 * ms))
        let f = judge(stream)
        XCTAssertEqual(f.map { $0.evidence["device"] }, [.string("8:0"), .string("8:16")])
        XCTAssertEqual(judge(stream).map(\.jsonLine), f.map(\.jsonLine), "deterministic")
    }

    func testHostileTimestampsAndLatencies() {
        // Latencies of 0 and UInt64.max, bytes of UInt32.max, a timestamp that
        // runs backwards and one near the end of time: no trap, no endless loop.
        var stream = [one(0, bytes: .max)] + healthy
        stream += (0..<10).map { i in one(20 * s + UInt64(i) * 10 * ms, latency: .max) }
        stream.append(one(20 * s + 500 * ms, latency: 0))
        stream.append(one(3 * s, latency: 40 * ms))
        stream.append(one(UInt64.max - 5, latency: .max, error: 10))
        stream.append(one(UInt64.max, latency: 1))
        let f = judge(stream)
        let latency = f.first { $0.evidence["kind"] == .string("latency") }
        XCTAssertNotNil(latency, "\(f.map(\.jsonLine))")
        guard case .array(let ops)? = latency?.evidence["ops"] else { return XCTFail("no ops") }
        XCTAssertEqual(ops.first?["window_max_ns"], .uint(.max))
        XCTAssertEqual(ops.first?["window_p50_ns"], .array([.uint(1 << 63), .uint(.max)]))
        XCTAssertEqual(latency?.severity, .critical)
        XCTAssertTrue(f.contains { $0.evidence["kind"] == .string("errors") })
    }
}
