#if canImport(Glibc)
import Glibc
#endif
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat

/// Dumps of the flight recorder: on a trigger, one trace under `directory`
/// holding the `preNs` before it and the `postNs` after it, with the triggers
/// and the live findings in its metadata.
///
/// A dump goes through two phases, both driven by `poll` from the recorder's
/// thread: collecting, until the post window has passed (a further trigger
/// meanwhile extends the post window instead of making another dump), then
/// writing, a few blocks per poll so the recorder keeps draining the kernel.
/// The segments it reads are opened (mapped) when writing starts and let go
/// one by one as they are copied. Until then they are kept from age eviction
/// (`SegmentRing.pinnedFrom`); one the ring removes for its size budget or a
/// full disk is let go at once (`SegmentRing.willRemove`), copied or not, so
/// its blocks never stay on disk behind the ring's back.
///
/// Dumps have a budget of their own: at most `maxDumps` dumps and `maxBytes`
/// bytes in `directory`, the oldest removed first; a dump that alone would
/// pass `maxBytes` is cut there (to within one block of the segments).
///
/// A dump starts at the first event of the segment that holds the start of
/// the pre window, so it has that segment's process snapshot: it holds at
/// least `preNs` before the trigger (less only when the recorder has not run
/// that long) and at most `preNs` plus one segment.
public final class FlightDumps {
    public struct Configuration: Sendable {
        public var directory: String
        public var preNs: UInt64 = 300_000_000_000
        public var postNs: UInt64 = 30_000_000_000
        /// A new dump starts at most this often; triggers in between are counted and dropped.
        public var minIntervalNs: UInt64 = 60_000_000_000
        /// Extensions stop once the post window reaches this long.
        public var maxPostNs: UInt64 = 300_000_000_000
        /// Dumps kept in `directory`; the oldest go first.
        public var maxDumps: Int = 10
        /// Bytes the dumps in `directory` may take: the oldest go first to
        /// make room for the next, and a dump is cut at this size.
        public var maxBytes: UInt64 = 1 << 30
        /// Triggers of one dump kept in its metadata (the first ones); the
        /// others are only counted, so a storm of findings costs no memory.
        public var maxTriggers: Int = 256
        /// What writing may take per poll, in clock ns.
        public var stepBudgetNs: UInt64 = 20_000_000
        /// Waited after the post window, for the events of its last moments
        /// that are still in the kernel's ring or a per-CPU batch.
        public var settleNs: UInt64 = 1_000_000_000
        /// Live findings remembered for dumps' metadata: at most this many,
        /// none older (in event time) than `findingsRetainNs` before the newest.
        public var findingsKept: Int = 10_000
        public var findingsRetainNs: UInt64 = 600_000_000_000
        public var codec: Codec = .zstd
        public var level: Int32 = 3

        public init(directory: String) { self.directory = directory }
    }

    /// What started or extended a dump.
    public struct Trigger: Sendable {
        public enum Kind: String, Sendable {
            /// A live finding at or above the dump severity.
            case finding
            /// SIGUSR1.
            case signal
            /// `flightbox dump` through the control socket.
            case request
        }

        public var kind: Kind
        /// Event time (CLOCK_MONOTONIC ns): the finding's, or when the request arrived.
        public var ts: UInt64
        public var reason: String
        public var finding: Finding?

        public init(kind: Kind, ts: UInt64, reason: String, finding: Finding? = nil) {
            self.kind = kind
            self.ts = ts
            self.reason = reason
            self.finding = finding
        }

        public var json: JSON {
            .object([("kind", .string(kind.rawValue)), ("ts_ns", .uint(ts)), ("reason", .string(reason))]
                + (finding.map { [("finding", $0.json)] } ?? []))
        }
    }

    /// What a trigger did.
    public enum Decision: Equatable, Sendable {
        /// A new dump, to be named `name`.
        case started(name: String)
        /// The dump being collected now ends later.
        case extended(name: String)
        /// Too soon after the last dump started (`minIntervalNs`).
        case rateLimited
    }

    /// A dump written.
    public struct Written: Sendable {
        public var path: String
        public var bytes: UInt64
        public var events: UInt64
        public var triggers: [Trigger]
        public var firstTs: UInt64?
        public var lastTs: UInt64?
    }

    public struct Statistics: Sendable {
        public var written: UInt64 = 0
        public var triggers: UInt64 = 0
        public var extended: UInt64 = 0
        public var rateLimited: UInt64 = 0
        public var failed: UInt64 = 0
        public var removed: UInt64 = 0
        /// Dumps cut at `maxBytes`.
        public var cut: UInt64 = 0
        /// Segments the ring removed (size budget, full disk) before a dump had copied them.
        public var segmentsLost: UInt64 = 0
        public var last: Written?
        public var lastError: String?
    }

    private struct Collecting {
        var name: String
        /// The first `maxTriggers`; the rest are counted in `triggersDropped`.
        var triggers: [Trigger]
        var triggersDropped: UInt64 = 0
        var preStart: UInt64
        var triggerTs: UInt64
        var postEnd: UInt64
    }

    /// A class: the ring may take a segment away (`segmentRemoved`) while
    /// `step` copies, through `makeRoom` on a full disk.
    private final class Writing {
        let collected: Collecting
        /// nil once copied, or once the ring removed the segment.
        var readers: [TraceReader?]
        let segmentNumbers: [UInt64]
        let writer: TraceWriter
        var reader = 0
        var block = 0
        let blocks: [[IndexEntry]]
        var firstTs: UInt64?
        var lastTs: UInt64?

        init(collected: Collecting, readers: [TraceReader], segmentNumbers: [UInt64], writer: TraceWriter) {
            self.collected = collected
            self.readers = readers
            self.segmentNumbers = segmentNumbers
            self.writer = writer
            blocks = readers.map { $0.eventBlocks.sorted { ($0.firstSequence, $0.offset) < ($1.firstSequence, $1.offset) } }
        }
    }

    public let configuration: Configuration
    private let clock: any RecorderClock
    private var collecting: Collecting?
    private var writing: Writing?
    private var lastStart: UInt64?
    private var recentFindings: [Finding] = []
    private var sequenceInName: UInt64 = 0
    public private(set) var statistics = Statistics()
    /// Told about each dump started, written or failed, for a line on stderr.
    public var notice: ((String) -> Void)?
    /// Frees space when writing a dump meets a full disk (the ring's oldest
    /// segment: the segments a dump reads are mapped, so it may); false when
    /// nothing is left to free.
    public var makeRoom: (() -> Bool)?

    public init(configuration: Configuration, clock: any RecorderClock = MonotonicClock(), notice: ((String) -> Void)? = nil) throws {
        self.configuration = configuration
        self.clock = clock
        self.notice = notice
        if mkdir(configuration.directory, 0o700) != 0, errno != EEXIST {
            throw TraceError.cannotCreate(path: configuration.directory, errno: errno)
        }
    }

    /// True while a dump is being collected or written.
    public var isBusy: Bool { collecting != nil || writing != nil }

    /// Remembers a live finding, for the metadata of the dumps that cover it.
    public func observe(_ finding: Finding) {
        if recentFindings.count >= configuration.findingsKept { recentFindings.removeFirst(recentFindings.count / 2) }
        // No dump reaches further back than the ring keeps.
        if let first = recentFindings.first, finding.ts > configuration.findingsRetainNs, first.ts < finding.ts - configuration.findingsRetainNs {
            let cutoff = finding.ts - configuration.findingsRetainNs
            recentFindings.removeFirst(recentFindings.firstIndex { $0.ts >= cutoff } ?? recentFindings.count)
        }
        recentFindings.append(finding)
    }

    /// Starts a dump, or extends the one being collected.
    @discardableResult
    public func trigger(_ t: Trigger) -> Decision {
        statistics.triggers += 1
        if var c = collecting {
            let limit = c.triggerTs &+ configuration.maxPostNs
            c.postEnd = min(max(c.postEnd, t.ts &+ configuration.postNs), limit)
            if c.triggers.count < configuration.maxTriggers { c.triggers.append(t) } else { c.triggersDropped += 1 }
            collecting = c
            statistics.extended += 1
            return .extended(name: c.name)
        }
        if let lastStart, t.ts < lastStart &+ configuration.minIntervalNs {
            statistics.rateLimited += 1
            return .rateLimited
        }
        lastStart = t.ts
        sequenceInName += 1
        let name = FlightDumps.name(wallClockNs: realTime(), kind: t.kind, number: sequenceInName)
        collecting = Collecting(name: name, triggers: [t], preStart: t.ts > configuration.preNs ? t.ts - configuration.preNs : 0,
                                triggerTs: t.ts, postEnd: t.ts &+ configuration.postNs)
        notice?("dump \(name) started by \(t.kind.rawValue): \(t.reason)")
        return .started(name: name)
    }

    /// Moves the dumps on: starts writing the collected one once its post
    /// window has passed, and writes a few blocks of the one being written.
    /// `ring` is the recorder's; it is rotated when writing starts, so the
    /// segments read are all closed.
    public func poll(ring: SegmentRing) {
        let now = clock.now()
        if writing == nil, let c = collecting, now >= c.postEnd &+ configuration.settleNs {
            collecting = nil
            beginWriting(c, ring: ring, now: now)
        }
        if writing != nil { step(until: now &+ configuration.stepBudgetNs) }
        // Segments a dump still needs are kept from age eviction.
        ring.pinnedFrom = pinFor(ring: ring)
    }

    /// The ring is removing segment `number` (its size budget, a full disk):
    /// the dump being written lets it go now, so its blocks leave the disk
    /// with its name; if it was not copied yet, the dump goes without it.
    public func segmentRemoved(_ number: UInt64) {
        guard let w = writing, let i = w.segmentNumbers.firstIndex(of: number), w.readers[i] != nil else { return }
        w.readers[i] = nil
        statistics.segmentsLost += 1
        notice?("dump \(w.collected.name): segment \(SegmentRing.name(number)) removed by the ring before it was \(i == w.reader && w.block > 0 ? "wholly " : "")copied; left out")
    }

    /// Writes every dump now, however short its post window: the recorder is
    /// stopping. Call after the ring is closed.
    public func finish(ring: SegmentRing) {
        if writing != nil { step(until: .max) }
        if let c = collecting {
            collecting = nil
            beginWriting(c, ring: ring, now: clock.now())
            if writing != nil { step(until: .max) }
        }
    }

    /// `dump-<UTC time to the ms>-<n>-<kind>.fbt`: names sort by time.
    static func name(wallClockNs: Int64, kind: Trigger.Kind, number: UInt64) -> String {
        var secs = time_t(wallClockNs / 1_000_000_000)
        var t = tm()
        gmtime_r(&secs, &t)
        func p(_ v: Int32, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
        let ms = Int32(wallClockNs / 1_000_000 % 1000)
        let stamp = "\(p(t.tm_year + 1900, 4))\(p(t.tm_mon + 1, 2))\(p(t.tm_mday, 2))T\(p(t.tm_hour, 2))\(p(t.tm_min, 2))\(p(t.tm_sec, 2)).\(p(ms, 3))Z"
        return "dump-\(stamp)-\(number)-\(kind.rawValue).fbt"
    }

    // MARK: Writing

    /// The first segment a dump still needs: the first one not yet copied
    /// of the dump being written, or the first one of the dump collected.
    private func pinFor(ring: SegmentRing) -> UInt64? {
        if let w = writing, let i = w.readers[w.reader...].firstIndex(where: { $0 != nil }) { return w.segmentNumbers[i] }
        guard let c = collecting else { return nil }
        return firstSegment(for: c, in: ring.segments)?.number
    }

    /// The segment of this run holding the pre window's start (or the first one of this run).
    private func firstSegment(for c: Collecting, in segments: [SegmentRing.Segment]) -> SegmentRing.Segment? {
        let own = segments.filter(\.thisRun)
        return own.last(where: { $0.startNs <= c.preStart }) ?? own.first
    }

    private func beginWriting(_ c: Collecting, ring: SegmentRing, now: UInt64) {
        // Closing the open segment puts everything up to now on disk, with its index.
        ring.rotateNow()
        let segments = ring.closed.filter(\.thisRun)
        guard let first = firstSegment(for: c, in: segments) else {
            fail(c.name, "no segment of this run is left to read")
            return
        }
        var readers: [TraceReader] = []
        var numbers: [UInt64] = []
        var bytes: UInt64 = 0
        for seg in segments where seg.number >= first.number {
            do {
                let r = try TraceReader(path: seg.path)
                readers.append(r)
                numbers.append(seg.number)
                bytes += seg.bytes
            } catch {
                // Removed meanwhile (a full disk) or unreadable: the dump holds the rest.
                notice?("dump \(c.name): segment \(SegmentRing.name(seg.number)) unreadable (\(error)); left out")
            }
        }
        guard let base = readers.first else {
            fail(c.name, "no segment could be read")
            return
        }
        var metadata = base.metadata
        // The first segment's detector checkpoint goes with the dump, which
        // starts where that segment does: its replay continues from the live state.
        var checkpoint: [UInt8]?
        switch base.readCheckpoint() {
        case .success(let bytes): checkpoint = bytes
        case .failure(let problem): notice?("dump \(c.name): the detector checkpoint of \(SegmentRing.name(numbers[0])) is unusable (\(problem)); the dump replays from a fresh start")
        case nil: break
        }
        let segmentInfo = base.metadata.capture["flight_segment"]
        let findings = recentFindings.filter { f in f.ts >= (base.firstTimestamp ?? 0) && f.ts <= c.postEnd &+ configuration.settleNs }
        let dump = JSON.object([
            ("reason", .string(c.triggers[0].reason)),
            ("triggers", .array(c.triggers.map(\.json))),
            // Triggers past the first maxTriggers, counted only.
            ("triggers_dropped", .uint(c.triggersDropped)),
            ("pre_ns", .uint(configuration.preNs)), ("post_ns", .uint(configuration.postNs)),
            ("pre_start_ts_ns", .uint(c.preStart)), ("trigger_ts_ns", .uint(c.triggerTs)), ("post_end_ts_ns", .uint(c.postEnd)),
            // Where the dump's events begin: the start of its first segment (at or before pre_start_ts_ns
            // once the recorder has run --pre), whatever its first event's time.
            ("start_ts_ns", .uint(first.startNs)),
            ("segments", .array(numbers.map { .string(SegmentRing.name($0)) })),
            ("live_findings", .array(findings.map(\.json))),
            // The stream number of the dump's first event: the live detectors numbered events across segments.
            ("first_sequence", .uint(segmentInfo?["first_sequence"]?.uintValue ?? 0)),
            ("checkpoint", .bool(checkpoint != nil)),
            ("replay", .string(checkpoint != nil ? FlightDumps.replayNote : FlightDumps.replayNoteWithoutCheckpoint)),
        ])
        if case .object(var fields) = metadata.capture {
            fields.removeAll { $0.0 == "flight_segment" }
            fields.append(("flight_dump", dump))
            metadata.capture = .object(fields)
        }
        let path = configuration.directory + "/" + c.name
        // Room first: the dump takes about what its segments take (same codec).
        removeOldDumps(keepingNewest: false, room: min(bytes, configuration.maxBytes))
        // Told from here on about the segments the ring removes.
        ring.willRemove = { [weak self] in self?.segmentRemoved($0.number) }
        do {
            // Blocks of at most a 32nd of the budget, so a cut (checked against
            // the unsealed block's raw bytes) lands close to it.
            let blockBytes = Int(min(UInt64(TraceLayout.defaultBlockBytes), max(16 << 10, configuration.maxBytes / 32)))
            let writer = try TraceWriter(path: path, publish: .whenClosed, codec: configuration.codec, level: configuration.level,
                                         blockBytes: blockBytes, metadata: metadata, snapshot: base.snapshot ?? ProcessSnapshot(timestamp: metadata.clockNs, processes: []))
            if let checkpoint, let at = base.checkpoint { try writer.writeCheckpoint(checkpoint, ts: at.timestamp) }
            writing = Writing(collected: c, readers: readers, segmentNumbers: numbers, writer: writer)
        } catch {
            fail(c.name, "\(error)")
        }
    }

    /// Copies blocks until the clock passes `deadline` or the dump is done.
    private func step(until deadline: UInt64) {
        guard let w = writing else { return }
        var failure: (any Error)?
        var cut = false
        while w.reader < w.readers.count, failure == nil {
            guard let r = w.readers[w.reader], w.block < w.blocks[w.reader].count else {
                // Copied (or removed by the ring): its mapping goes now.
                w.readers[w.reader] = nil
                w.reader += 1
                w.block = 0
                continue
            }
            // Raw bytes bound the unsealed block's compressed size.
            if w.writer.bytesWritten + UInt64(w.writer.pendingBytes) >= configuration.maxBytes {
                cut = true
                break
            }
            let entry = w.blocks[w.reader][w.block]
            r.decodeBlock(entry) { e in
                guard failure == nil else { return }
                do {
                    while true {
                        do {
                            try w.writer.append(e.bytes)
                            break
                        } catch let error as TraceError where error.isDiskFull {
                            // The block is still in memory: writing again after a removal loses nothing.
                            guard makeRoom?() == true else { throw error }
                        }
                    }
                    let ts = e.timestamp
                    if w.firstTs.map({ ts < $0 }) ?? true { w.firstTs = ts }
                    if w.lastTs.map({ ts > $0 }) ?? true { w.lastTs = ts }
                } catch { failure = error }
            }
            w.block += 1
            if clock.now() >= deadline { break }
        }
        if let failure {
            writing = nil
            fail(w.collected.name, "\(failure)")
            return
        }
        guard w.reader >= w.readers.count || cut else { return }
        writing = nil
        w.readers = []
        if cut {
            statistics.cut += 1
            notice?("dump \(w.collected.name) cut at \(w.writer.bytesWritten) bytes (--max-dump-bytes \(configuration.maxBytes))")
        }
        do {
            try w.writer.close()
        } catch {
            fail(w.collected.name, "\(error)")
            return
        }
        let written = Written(path: w.writer.path, bytes: w.writer.bytesWritten, events: w.writer.nextSequence,
                              triggers: w.collected.triggers, firstTs: w.firstTs, lastTs: w.lastTs)
        statistics.written += 1
        statistics.last = written
        notice?("dump written: \(written.path) (\(written.events) events, \(written.bytes) bytes)")
        removeOldDumps(keepingNewest: true)
    }

    private func fail(_ name: String, _ why: String) {
        statistics.failed += 1
        statistics.lastError = "\(name): \(why)"
        notice?("dump \(name) failed: \(why)")
    }

    /// Removes dumps oldest first (names sort by time) until at most
    /// `maxDumps` are left and they take at most `maxBytes` less `room`;
    /// the newest one stays when `keepingNewest` (the dump just written).
    private func removeOldDumps(keepingNewest: Bool, room: UInt64 = 0) {
        var dumps = FlightDumps.onDisk(configuration.directory)
        let kept = keepingNewest ? 1 : 0
        var total = dumps.reduce(UInt64(0)) { $0 + $1.bytes }
        let limit = configuration.maxBytes > room ? configuration.maxBytes - room : 0
        while dumps.count > kept, dumps.count > configuration.maxDumps - (keepingNewest ? 0 : 1) || total > limit {
            let oldest = dumps.removeFirst()
            unlink(configuration.directory + "/" + oldest.name)
            total -= oldest.bytes
            statistics.removed += 1
        }
    }

    /// The dumps in `directory`, oldest first, with their sizes.
    public static func onDisk(_ directory: String) -> [(name: String, bytes: UInt64)] {
        guard let dir = opendir(directory) else { return [] }
        var found: [(name: String, bytes: UInt64)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            guard name.hasPrefix("dump-"), name.hasSuffix(".fbt") else { continue }
            var st = stat()
            if stat(directory + "/" + name, &st) == 0 { found.append((name, UInt64(st.st_size))) }
        }
        closedir(dir)
        return found.sorted { $0.name < $1.name }
    }

    /// What a dump's replay gives, stored in each dump's metadata.
    public static let replayNote = """
        This dump starts where a segment did and carries that segment's detector checkpoint: the state of the live \
        detectors after every event before the dump's first. Replaying it restores that state (flightbox replay does \
        unless told --no-checkpoint) and numbers events as the live detectors did (from first_sequence), so it gives \
        the findings the live detectors made while processing the dump's events; live_findings lists those by time, \
        which can differ at the edges (a finding stamped with an earlier episode start, or made at the recorder's stop).
        """

    /// The same, for a dump whose first segment has no usable checkpoint
    /// (the recorder's first segment, or a damaged one).
    public static let replayNoteWithoutCheckpoint = """
        Replaying this dump runs the detectors of the recording from the dump's first event, with its process snapshot; \
        the live detectors had run since the recorder started. Findings that depend only on events inside the dump \
        (those of event-driven detectors, and every finding once a detector's warm-up and window lie inside the dump) \
        replay identically; a detector still warming up at the dump's start, an episode opened before it or a \
        baseline learned before it can make replay findings differ from live_findings near the start.
        """
}

extension Finding {
    /// The finding as a JSON value, keys in the order of `jsonLine`.
    public var json: JSON {
        .object([
            ("ts_ns", .uint(ts)), ("detector", .string(detector)), ("severity", .string(severity.rawValue)),
            ("pid", .uint(UInt64(pid))), ("tid", .uint(UInt64(tid))), ("comm", .string(comm)),
            ("summary", .string(summary)), ("evidence", evidence),
        ])
    }
}

func realTime() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}
