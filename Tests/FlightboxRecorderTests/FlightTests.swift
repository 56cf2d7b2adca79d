import XCTest
#if canImport(Glibc)
import Glibc
#endif
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat
import FlightboxRecorder

/// The flight recorder's ring and dumps, on a ManualClock with a scripted
/// source: the clock moves 50 ms per poll, and each poll's records carry
/// timestamps of that moment, as a live source's would.
final class SegmentRingTests: XCTestCase {
    /// Segments close by age; each is a whole trace of its own (metadata,
    /// snapshot, numbering from 0), and together they hold every event once, in order.
    func testSegmentsRotateByAgeAndEachReadsAlone() throws {
        let dir = flightDirectory("ring-age")
        let clock = ManualClock()
        var config = SegmentRing.Configuration(directory: dir)
        config.segmentNs = 1_000_000_000
        config.keepNs = 3_600_000_000_000
        let ring = try SegmentRing(configuration: config, clock: clock, header: segmentHeader(clock: clock))
        let source = SyntheticSource(steps: flightScript(polls: 100, perPoll: 20), clock: clock)
        _ = Recorder(source: source, writer: ring, clock: clock, stop: ManualStopRequests(), housekeeping: { ring.maintain(now: $0) }).run()
        let paths = flightSegmentPaths(dir)
        // 5 s of events, a segment closed at the first poll past each second.
        XCTAssertEqual(paths.count, 5, "\(paths)")
        XCTAssertEqual(try segmentArguments(paths), (0..<2000).map(UInt64.init))
        for (i, p) in paths.enumerated() {
            let r = try TraceReader(path: p)
            XCTAssertTrue(r.closedCleanly)
            XCTAssertEqual(r.eventBlocks.first?.firstSequence, 0, "numbered from 0: \(p)")
            XCTAssertEqual(r.sequenceGaps.count, 0)
            XCTAssertEqual(r.snapshot?.processes.map(\.pid), [42])
            XCTAssertEqual(r.metadata.capture["flight_segment"]?["number"]?.uintValue, UInt64(i + 1))
            // A segment's metadata clock is its start: its events are not before it.
            XCTAssertGreaterThanOrEqual(r.firstTimestamp ?? 0, r.metadata.clockNs - 50_000_000)
        }
        XCTAssertEqual(ring.statistics.eventsWritten, 2000)
    }

    /// By size: segments close at segmentBytes, and the oldest go whenever
    /// the directory would hold more than maxBytes.
    func testSizeBudgetRemovesTheOldestAndIsNeverPassed() throws {
        let dir = flightDirectory("ring-size")
        let clock = ManualClock()
        var config = SegmentRing.Configuration(directory: dir)
        config.segmentNs = 3_600_000_000_000
        config.segmentBytes = 64 << 10
        config.maxBytes = 256 << 10
        config.blockBytes = 16 << 10
        config.level = 1
        let ring = try SegmentRing(configuration: config, clock: clock, header: segmentHeader(clock: clock))
        var maxOnDisk: UInt64 = 0
        let source = SyntheticSource(steps: flightScript(polls: 400, perPoll: 200), clock: clock)
        _ = Recorder(source: source, writer: ring, clock: clock, stop: ManualStopRequests(), housekeeping: { now in
            let onDisk = flightSegmentPaths(dir).reduce(UInt64(0)) { $0 + (try! FileManager.default.attributesOfItem(atPath: $1)[.size] as! UInt64) }
            maxOnDisk = max(maxOnDisk, onDisk)
            ring.maintain(now: now)
        }).run()
        let paths = flightSegmentPaths(dir)
        XCTAssertGreaterThan(ring.statistics.evicted[.size] ?? 0, 3)
        XCTAssertEqual(ring.statistics.evicted[.age] ?? 0, 0)
        let largest = try paths.map { try FileManager.default.attributesOfItem(atPath: $0)[.size] as! UInt64 }.max()!
        XCTAssertLessThanOrEqual(maxOnDisk, config.maxBytes + largest, "budget plus one segment")
        XCTAssertLessThanOrEqual(ring.bytesOnDisk, config.maxBytes)
        // What is left is the newest events, contiguous up to the last.
        let args = try segmentArguments(paths)
        XCTAssertEqual(args.last, 400 * 200 - 1)
        XCTAssertEqual(args, Array(args.first!...args.last!))
        XCTAssertEqual(SegmentRing.number(ofName: (paths.first! as NSString).lastPathComponent)!, ring.statistics.evicted[.size]! + 1)
    }

    /// By age: a closed segment goes once it was closed longer ago than keepNs.
    func testAgeRemovesSegmentsPastKeep() throws {
        let dir = flightDirectory("ring-keep")
        let clock = ManualClock()
        var config = SegmentRing.Configuration(directory: dir)
        config.segmentNs = 1_000_000_000
        config.keepNs = 2_000_000_000
        let ring = try SegmentRing(configuration: config, clock: clock, header: segmentHeader(clock: clock))
        let source = SyntheticSource(steps: flightScript(polls: 200, perPoll: 5), clock: clock)
        _ = Recorder(source: source, writer: ring, clock: clock, stop: ManualStopRequests(), housekeeping: { ring.maintain(now: $0) }).run()
        XCTAssertGreaterThanOrEqual(ring.statistics.evicted[.age] ?? 0, 6)
        let paths = flightSegmentPaths(dir)
        XCTAssertLessThanOrEqual(paths.count, 4, "2 s kept + the segments closing meanwhile")
        // The oldest event left is at most keep + one segment (+ a flush) old.
        let r = try TraceReader(path: paths.first!)
        XCTAssertGreaterThanOrEqual(r.firstTimestamp!, clock.now() - 3_900_000_000)
    }

    /// A recorder killed mid-segment leaves it open; the next one in the
    /// directory repairs it (closed, indexed, every flushed event kept),
    /// counts it against the budget and numbers on after it.
    func testRestartRepairsTheSegmentLeftOpenAndContinues() throws {
        let dir = flightDirectory("ring-restart")
        let clock = ManualClock()
        var config = SegmentRing.Configuration(directory: dir)
        config.segmentNs = 1_000_000_000
        do {
            let ring = try SegmentRing(configuration: config, clock: clock, header: segmentHeader(clock: clock))
            // Stopped without close, as a SIGKILL leaves it: the last segment open.
            var polls = 0
            for step in flightScript(polls: 35, perPoll: 10) {
                for r in step.records { try r.withUnsafeBytes { _ = try ring.append($0) } }
                polls += 1
                clock.advance(by: 50_000_000)
                if polls % 16 == 0 { try ring.flush() }
                ring.maintain(now: clock.now())
            }
        }
        let before = flightSegmentPaths(dir)
        XCTAssertEqual(before.count, 2)
        XCTAssertFalse(try TraceReader(path: before.last!).closedCleanly)
        var notices: [String] = []
        let ring = try SegmentRing(configuration: config, clock: clock, header: segmentHeader(clock: clock), notice: { notices.append($0) })
        XCTAssertTrue(try TraceReader(path: before.last!).closedCleanly)
        XCTAssertTrue(notices.contains { $0.contains("repaired seg-000000000002.fbt") }, "\(notices)")
        // Segment 1 closed at 1 s (poll 20); of segment 2, the block flushed
        // at poll 32 survives, the unflushed polls 32 to 39 do not.
        let kept = try segmentArguments(before)
        XCTAssertEqual(kept, Array(0..<320))
        XCTAssertEqual(ring.segments.map(\.number), [1, 2, 3])
        XCTAssertEqual(ring.segments.map(\.thisRun), [false, false, true])
        try ring.close()
    }
}

final class FlightDumpTests: XCTestCase {
    struct Run {
        var dir: String
        var ring: SegmentRing
        var dumps: FlightDumps
        var engineFindings: [Finding]
    }

    /// Records `polls` polls through a ring and dumps; `onPoll` may trigger.
    func record(_ name: String, polls: Int, perPoll: Int = 20, slowEvery: Int? = nil, pre: UInt64 = 2_000_000_000, post: UInt64 = 1_000_000_000,
                minInterval: UInt64 = 5_000_000_000, maxDumps: Int = 10, detectOn: Severity? = nil,
                configure: ((inout SegmentRing.Configuration, inout FlightDumps.Configuration) -> Void)? = nil,
                onPoll: ((Int, UInt64, FlightDumps) -> Void)? = nil, afterPoll: ((UInt64) -> Void)? = nil) throws -> Run {
        let dir = flightDirectory(name)
        let clock = ManualClock()
        var config = SegmentRing.Configuration(directory: dir)
        config.segmentNs = 1_000_000_000
        config.keepNs = 60_000_000_000
        var dc = FlightDumps.Configuration(directory: dir + "/dumps")
        dc.preNs = pre
        dc.postNs = post
        dc.minIntervalNs = minInterval
        dc.maxDumps = maxDumps
        dc.settleNs = 200_000_000
        configure?(&config, &dc)
        let ring = try SegmentRing(configuration: config, clock: clock, header: segmentHeader(clock: clock))
        let dumps = try FlightDumps(configuration: dc, clock: clock)
        var steps = flightScript(polls: polls, perPoll: perPoll)
        if let slowEvery {
            // A getppid far slower than this process's usual (one that neither
            // waits by design nor may wait for the disk): a syscall-latency finding.
            for i in stride(from: slowEvery, to: polls, by: slowEvery) {
                let ts = 1_000_000_000 + UInt64(i) * 50_000_000 + 40_000_000
                steps[i].records.append(EventEncoder.syscall(ts: ts, pid: 42, tid: 42, nr: nrGetppid, duration: 50_000_000, args: [3]))
            }
        }
        var found: [Finding] = []
        let detectors = try DetectorConfiguration.defaults.makeDetectors(only: ["syscall-latency"])
        let engine = DetectorEngine(detectors: detectors, snapshot: testSnapshot) { f in
            found.append(f)
            dumps.observe(f)
            if let detectOn, f.severity >= detectOn { dumps.trigger(.init(kind: .finding, ts: f.ts, reason: f.summary, finding: f)) }
        }
        var poll = 0
        let source = SyntheticSource(steps: steps, clock: clock)
        _ = Recorder(source: source, writer: ring, engine: engine, clock: clock, stop: ManualStopRequests(), housekeeping: { now in
            onPoll?(poll, now, dumps)
            poll += 1
            dumps.poll(ring: ring)
            ring.maintain(now: now)
            afterPoll?(now)
        }).run()
        dumps.finish(ring: ring)
        return Run(dir: dir, ring: ring, dumps: dumps, engineFindings: found)
    }

    func dumpPaths(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/dumps")) ?? []).filter { $0.hasSuffix(".fbt") }.sorted().map { dir + "/dumps/" + $0 }
    }

    /// A dump holds the pre window (from the start of the segment holding its
    /// start) and the post window, every event once and in order, with the
    /// trigger in its metadata.
    func testADumpHoldsThePreAndPostWindows() throws {
        var triggerTs: UInt64 = 0
        let run = try record("dump-window", polls: 200, onPoll: { poll, now, dumps in
            if poll == 100 { triggerTs = now; dumps.trigger(.init(kind: .request, ts: now, reason: "test")) }
        })
        let paths = dumpPaths(run.dir)
        XCTAssertEqual(paths.count, 1)
        let r = try TraceReader(path: paths[0])
        XCTAssertTrue(r.closedCleanly)
        XCTAssertEqual(r.problems, [])
        let dump = try XCTUnwrap(r.metadata.capture["flight_dump"])
        XCTAssertEqual(dump["trigger_ts_ns"]?.uintValue, triggerTs)
        XCTAssertEqual(dump["triggers"]?.arrayValue?.count, 1)
        XCTAssertEqual(dump["reason"]?.stringValue, "test")
        XCTAssertLessThanOrEqual(r.firstTimestamp!, triggerTs - 2_000_000_000, "the whole pre window")
        XCTAssertGreaterThan(r.firstTimestamp!, triggerTs - 3_100_000_000, "at most one segment more")
        XCTAssertGreaterThanOrEqual(r.lastTimestamp!, triggerTs + 1_000_000_000, "the whole post window")
        let args = try segmentArguments([paths[0]])
        XCTAssertEqual(args, Array(args.first!...args.last!), "contiguous, each once")
        XCTAssertEqual(r.eventBlocks.first?.firstSequence, 0)
        XCTAssertEqual(r.sequenceGaps.count, 0)
        XCTAssertEqual(run.dumps.statistics.written, 1)
    }

    /// A trigger while a dump is collected extends it; one after it was
    /// written but within minInterval is dropped; later ones make new dumps,
    /// and only the newest maxDumps are kept.
    func testTriggersExtendRateLimitAndOldDumpsGo() throws {
        var decisions: [FlightDumps.Decision] = []
        var extendedTs: UInt64 = 0
        let run = try record("dump-extend", polls: 700, maxDumps: 2, onPoll: { poll, now, dumps in
            switch poll {
            case 100, 110: decisions.append(dumps.trigger(.init(kind: .signal, ts: now, reason: "SIGUSR1")))
                if poll == 110 { extendedTs = now }
            case 160: decisions.append(dumps.trigger(.init(kind: .signal, ts: now, reason: "SIGUSR1")))
            case 300, 450, 600: decisions.append(dumps.trigger(.init(kind: .request, ts: now, reason: "again")))
            default: break
            }
        })
        XCTAssertEqual(decisions.count, 6)
        guard case .started(let first) = decisions[0] else { return XCTFail("\(decisions)") }
        XCTAssertEqual(decisions[1], .extended(name: first))
        XCTAssertEqual(decisions[2], .rateLimited, "3 s after the first: under minInterval (5 s)")
        XCTAssertEqual(run.dumps.statistics.written, 4)
        XCTAssertEqual(run.dumps.statistics.removed, 2)
        let paths = dumpPaths(run.dir)
        XCTAssertEqual(paths.count, 2, "maxDumps")
        XCTAssertFalse(paths.contains { $0.hasSuffix(first) }, "the oldest went")
        // The extended one held its post window up to the later trigger + post.
        _ = extendedTs
    }

    /// The post window of an extended dump reaches past the second trigger.
    func testAnExtendedDumpCoversTheLaterTrigger() throws {
        var second: UInt64 = 0
        let run = try record("dump-extended", polls: 300, onPoll: { poll, now, dumps in
            if poll == 100 { dumps.trigger(.init(kind: .signal, ts: now, reason: "one")) }
            if poll == 115 { second = now; dumps.trigger(.init(kind: .signal, ts: now, reason: "two")) }
        })
        let r = try TraceReader(path: dumpPaths(run.dir)[0])
        XCTAssertGreaterThanOrEqual(r.lastTimestamp!, second + 1_000_000_000)
        XCTAssertEqual(r.metadata.capture["flight_dump"]?["triggers"]?.arrayValue?.map { $0["reason"]?.stringValue }, ["one", "two"])
    }

    /// A storm of triggers while a dump is collected: the first 256 are kept
    /// in its metadata, the others counted, so memory stays bounded.
    func testTriggersPastTheCapAreCountedNotKept() throws {
        let run = try record("dump-trigger-cap", polls: 200, onPoll: { poll, now, dumps in
            guard (100..<120).contains(poll) else { return }
            for i in 0..<20 { dumps.trigger(.init(kind: .finding, ts: now, reason: "storm \(poll) \(i)")) }
        })
        XCTAssertEqual(run.dumps.statistics.triggers, 400)
        XCTAssertEqual(run.dumps.statistics.extended, 399)
        let r = try TraceReader(path: dumpPaths(run.dir)[0])
        let dump = try XCTUnwrap(r.metadata.capture["flight_dump"])
        let reasons = dump["triggers"]?.arrayValue?.compactMap { $0["reason"]?.stringValue } ?? []
        XCTAssertEqual(reasons.count, 256)
        XCTAssertEqual(reasons.first, "storm 100 0")
        XCTAssertEqual(reasons.last, "storm 112 15", "the first 256, in order")
        XCTAssertEqual(dump["triggers_dropped"]?.uintValue, 144)
    }

    /// While a dump is written (one small block per poll here, so the ring's
    /// writing overtakes the copy), the ring goes on removing segments for its
    /// size budget: a removed segment is let go at once, so the segments'
    /// blocks on disk, those removed but still mapped included, never pass
    /// the budget plus one segment. The budget wins: the dump goes without
    /// the segments removed before it copied them, and holds every event it
    /// copied once, in order.
    func testSegmentsRemovedWhileADumpIsWrittenLeaveTheDisk() throws {
        var dirPath = ""
        var maxOnDisk: UInt64 = 0, maxHidden: UInt64 = 0, largest: UInt64 = 0
        var budget: UInt64 = 0
        var writtenAt: Int?
        let run = try record("dump-size-pin", polls: 400, perPoll: 200, pre: 3_000_000_000, configure: { ring, dumps in
            ring.segmentNs = 3_600_000_000_000
            ring.segmentBytes = 64 << 10
            ring.maxBytes = 256 << 10
            // Small blocks, one copied per poll: the ring's writing overtakes the copy.
            ring.blockBytes = 4 << 10
            ring.level = 1
            dumps.stepBudgetNs = 0
            dirPath = ring.directory
            budget = ring.maxBytes
        }, onPoll: { poll, now, dumps in
            if poll == 150 { dumps.trigger(.init(kind: .request, ts: now, reason: "test")) }
            if writtenAt == nil, dumps.statistics.written == 1 { writtenAt = poll }
        }, afterPoll: { _ in
            let sizes = flightSegmentPaths(dirPath).map { (try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? UInt64) ?? 0 }
            largest = max(largest, sizes.max() ?? 0)
            let hidden = removedButMapped(under: dirPath + "/seg-")
            maxHidden = max(maxHidden, hidden)
            maxOnDisk = max(maxOnDisk, sizes.reduce(0, +) + hidden)
        })
        XCTAssertGreaterThan(run.ring.statistics.evicted[.size] ?? 0, 5)
        XCTAssertEqual(maxHidden, 0, "no removed segment stays mapped past the poll that removed it")
        XCTAssertGreaterThan(run.dumps.statistics.segmentsLost, 0, "the ring removed segments the dump had not copied yet")
        XCTAssertLessThanOrEqual(maxOnDisk, budget + largest, "budget plus one segment")
        XCTAssertEqual(run.dumps.statistics.written, 1)
        let path = try XCTUnwrap(dumpPaths(run.dir).first)
        let r = try TraceReader(path: path)
        XCTAssertTrue(r.closedCleanly)
        // Collected until poll 174 (post window and settling), then written block by block.
        XCTAssertGreaterThan(try XCTUnwrap(writtenAt), 190, "written over many polls")
        let args = try segmentArguments([path])
        XCTAssertEqual(args, args.sorted(), "in order")
        XCTAssertEqual(Set(args).count, args.count, "each once")
    }

    /// maxBytes: the oldest dumps go to make room for the next, the newest
    /// stays; a dump that alone would pass it is cut there and still reads.
    func testDumpBytesBudgetRemovesTheOldestAndCuts() throws {
        func run(_ name: String, maxBytes: UInt64) throws -> Run {
            try record(name, polls: 560, perPoll: 200, configure: { ring, dumps in
                ring.blockBytes = 16 << 10
                dumps.maxBytes = maxBytes
            }, onPoll: { poll, now, dumps in
                if [100, 250, 400].contains(poll) { dumps.trigger(.init(kind: .request, ts: now, reason: "at \(poll)")) }
            })
        }
        func sizes(_ dir: String) -> [UInt64] {
            dumpPaths(dir).map { (try? FileManager.default.attributesOfItem(atPath: $0)[.size] as? UInt64) ?? 0 }
        }
        let free = try run("dump-bytes-free", maxBytes: 1 << 30)
        let s = sizes(free.dir)
        XCTAssertEqual(s.count, 3)
        XCTAssertEqual(free.dumps.statistics.removed, 0)

        // Room for one dump and a half: each new one removes the one before.
        let limit = s[0] + s[1] / 2
        let tight = try run("dump-bytes-tight", maxBytes: limit)
        XCTAssertEqual(tight.dumps.statistics.written, 3)
        XCTAssertEqual(tight.dumps.statistics.removed, 2)
        XCTAssertEqual(tight.dumps.statistics.cut, 0)
        let left = dumpPaths(tight.dir)
        XCTAssertEqual(left.count, 1)
        XCTAssertEqual(try TraceReader(path: left[0]).metadata.capture["flight_dump"]?["reason"]?.stringValue, "at 400", "the newest stays")

        // Smaller than one dump: each is cut, and reads from its start.
        let small = (s.min() ?? 0) / 3
        let cut = try run("dump-bytes-cut", maxBytes: small)
        XCTAssertEqual(cut.dumps.statistics.written, 3)
        XCTAssertEqual(cut.dumps.statistics.cut, 3)
        let paths = dumpPaths(cut.dir)
        XCTAssertEqual(paths.count, 1, "each made room for the next")
        for p in paths {
            let r = try TraceReader(path: p)
            XCTAssertTrue(r.closedCleanly)
            XCTAssertLessThanOrEqual(UInt64(r.fileSize), small + (24 << 10), "cut at the budget (within a segment block, with the index)")
            let args = try segmentArguments([p])
            XCTAssertEqual(args, Array(args.first!...args.last!), "contiguous from its start")
        }
    }

    /// A finding at or above the dump severity triggers a dump holding it,
    /// and the dump's replay gives the findings the live detectors gave in it.
    func testAFindingTriggersADumpThatReplaysToTheLiveFindings() throws {
        let run = try record("dump-finding", polls: 240, perPoll: 20, slowEvery: 80, detectOn: .warning)
        XCTAssertFalse(run.engineFindings.isEmpty)
        let paths = dumpPaths(run.dir)
        XCTAssertGreaterThanOrEqual(paths.count, 1)
        for path in paths {
            let r = try TraceReader(path: path)
            let dump = try XCTUnwrap(r.metadata.capture["flight_dump"])
            let trigger = try XCTUnwrap(dump["triggers"]?.arrayValue?.first)
            XCTAssertEqual(trigger["kind"]?.stringValue, "finding")
            XCTAssertEqual(trigger["finding"]?["detector"]?.stringValue, "syscall-latency")
            // The same findings (when, what, how bad, whom); their evidence
            // counts the baseline each engine saw, which for the replay starts
            // at the dump's first event (see FlightDumps.replayNote).
            func identity(_ f: Finding) -> String { "\(f.ts) \(f.detector) \(f.severity) \(f.pid)/\(f.tid) \(f.comm)" }
            let live = (dump["live_findings"]?.arrayValue ?? []).map { identity(Finding(json: $0)!) }
            let replayed = try replayFindings(path, detectors: DetectorConfiguration.defaults.makeDetectors(only: ["syscall-latency"]))
                .map { identity(Finding(json: try JSONParser.parse($0))!) }
            XCTAssertEqual(replayed, live)
            XCTAssertTrue(live.contains(identity(Finding(json: trigger["finding"]!)!)))
        }
    }
}

/// An empty directory for one test.
func flightDirectory(_ name: String) -> String {
    let dir = scratchPath(name)
    try? FileManager.default.removeItem(atPath: dir)
    mkdir(dir, 0o700)
    return dir
}

func segmentHeader(clock: ManualClock) -> SegmentRing.Header {
    { number, _ in
        let meta = TraceMetadata(host: "flight-test", kernelRelease: "6.18", machine: hostMachine, clockNs: clock.now(),
                                 realtimeNs: 1_700_000_000_000_000_000 + clock.now(),
                                 capture: .object([("codec", .string("zstd")), ("flight_segment", .object([("number", .uint(number))]))]))
        return (meta, ProcessSnapshot(timestamp: clock.now(), processes: testSnapshot.processes))
    }
}

/// `polls` steps of `perPoll` getppid calls each, stamped at the clock
/// time of their poll (the first poll runs at the clock's start).
func flightScript(polls: Int, perPoll: Int, start: UInt64 = 1_000_000_000, pid: UInt32 = 42, nr: UInt32 = nrGetppid) -> [SyntheticSource.Step] {
    (0..<polls).map { i in
        let base = start + UInt64(i) * 50_000_000
        return .records((0..<perPoll).map { j in
            EventEncoder.syscall(ts: base + UInt64(j) * 1_000, pid: pid, tid: pid, nr: nr, duration: 1_000 + UInt64(j % 7) * 100,
                                     args: [UInt64(i * perPoll + j), UInt64(i * perPoll + j) &* 0x9E37_79B9_7F4A_7C15])
        })
    }
}

/// The getppid argument of every event in the segments, in ring order.
func segmentArguments(_ paths: [String]) throws -> [UInt64] {
    var out: [UInt64] = []
    for p in paths {
        let r = try TraceReader(path: p)
        XCTAssertEqual(r.problems, [], p)
        r.forEachEvent { e in
            if let s = e.as(SyscallRecord.self) { out.append(s.args(0)) }
        }
    }
    return out
}

/// Bytes of this process's mappings of files under `prefix` that were
/// removed: on disk still, though no name shows them.
func removedButMapped(under prefix: String) -> UInt64 {
    // Read to its end: /proc files have no size for Foundation to go by.
    guard let handle = FileHandle(forReadingAtPath: "/proc/self/maps") else { return 0 }
    defer { try? handle.close() }
    let maps = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
    var total: UInt64 = 0
    for line in maps.split(separator: "\n") where line.hasSuffix(" (deleted)") && line.contains(prefix) {
        let range = line.prefix { $0 != " " }.split(separator: "-")
        if range.count == 2, let a = UInt64(range[0], radix: 16), let b = UInt64(range[1], radix: 16) { total += b - a }
    }
    return total
}

func flightSegmentPaths(_ dir: String) -> [String] {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { SegmentRing.number(ofName: $0) != nil }.sorted().map { dir + "/" + $0 }
}


let hostMachine: String = {
    var uts = utsname()
    uname(&uts)
    return withUnsafeBytes(of: uts.machine) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
}()
