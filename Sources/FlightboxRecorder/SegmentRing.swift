#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture
import FlightboxEvents
import FlightboxFormat

/// The flight recorder's writer: a ring of trace segments in one directory,
/// each a whole trace of its own (its own metadata and process snapshot, its
/// own numbering from 0), so any one segment reads and replays alone.
///
/// A segment is closed and the next one started at a `flush()` once it is
/// `segmentNs` old or `segmentBytes` big. Closed segments go oldest first
/// when older than `keepNs`, and whenever the closed ones and the open one
/// together pass `maxBytes`; so the directory holds at most `maxBytes`, or
/// one segment when a single segment is bigger than that.
///
/// A full disk (ENOSPC, EDQUOT) is met by removing the oldest closed segment
/// and writing again, until only the open segment is left; then that one is
/// given up (it stays readable up to its last whole block), records are
/// dropped and counted, and every `flush()` tries to start a new segment.
/// Recording never stops for a full disk.
///
/// Not thread-safe: the recorder's thread appends, flushes and closes.
public final class SegmentRing: EventWriter {
    public struct Configuration: Sendable {
        public var directory: String
        /// Age at which the open segment is closed, in clock ns.
        public var segmentNs: UInt64 = 60_000_000_000
        /// Size at which the open segment is closed (checked at each flush).
        public var segmentBytes: UInt64 = 64 << 20
        /// Closed segments older than this (since they were closed) go.
        public var keepNs: UInt64 = 600_000_000_000
        /// Closed segments go, oldest first, while the directory holds more.
        public var maxBytes: UInt64 = 1 << 30
        public var codec: Codec = .zstd
        public var level: Int32 = 3
        public var blockBytes: Int = TraceLayout.defaultBlockBytes

        public init(directory: String) { self.directory = directory }
    }

    /// One segment file.
    public struct Segment: Sendable, Equatable {
        /// Its place in the ring, from its name: segments are made in this order.
        public var number: UInt64
        public var path: String
        public var bytes: UInt64
        /// Clock time it was started (its metadata's clock) and closed; a
        /// segment of an earlier run has times derived from its file's mtime.
        public var startNs: UInt64
        public var endNs: UInt64
        /// Made by this recorder (not left by an earlier run).
        public var thisRun: Bool
    }

    /// Why a segment went.
    public enum Eviction: String, Sendable, CaseIterable {
        case age, size, diskFull = "disk_full"
    }

    public struct Statistics: Sendable {
        /// Records written into segments.
        public var eventsWritten: UInt64 = 0
        /// Records dropped because the disk was full and no segment was left to remove.
        public var eventsDropped: UInt64 = 0
        public var segmentsStarted: UInt64 = 0
        public var evicted: [Eviction: UInt64] = [:]
        /// Times a write met a full disk.
        public var diskFull: UInt64 = 0
        /// Bytes written into segments, closed and open.
        public var bytesWritten: UInt64 = 0
        /// Detector checkpoints written at segment starts, and their raw bytes.
        public var checkpoints: UInt64 = 0
        public var checkpointBytes: UInt64 = 0
    }

    /// Makes a new segment's metadata and process snapshot; called at each
    /// rotation, with the stream number its first record will get (the
    /// segment's own records are numbered from 0: a replay adds it back).
    public typealias Header = (_ number: UInt64, _ firstSequence: UInt64) -> (TraceMetadata, ProcessSnapshot)

    /// The live detectors' checkpoint and the event time they reached, taken
    /// when a segment gets its first record, before the record is written:
    /// the state after exactly the records before it. nil: none.
    public typealias Checkpoint = () -> (bytes: [UInt8], ts: UInt64)?

    public let configuration: Configuration
    private let clock: any RecorderClock
    private let header: Header
    /// Image starts of the processes seen, for the next segment's snapshot.
    private var imageStarts = ImageStarts()
    /// Told about rotations and evictions worth a line on stderr (a full disk).
    public var notice: ((String) -> Void)?

    /// Closed segments on disk, oldest first.
    public private(set) var closed: [Segment] = []
    private var current: TraceWriter?
    private var currentSegment: Segment?
    private var nextNumber: UInt64 = 1
    private var rotateDue = false
    private var appendsSinceCheck = 0
    private var closedBytesWritten: UInt64 = 0
    /// Segments from this number on are kept from age eviction (a dump still
    /// needs them); the size budget still applies.
    public var pinnedFrom: UInt64?
    /// Told before a closed segment is removed (age, size, full disk): a
    /// reader that maps it must let it go, or its blocks stay on disk, out
    /// of the budget's sight, until it does.
    public var willRemove: ((Segment) -> Void)?
    public private(set) var statistics = Statistics()
    /// Records dropped since the last segment was open (for the notice).
    private var droppedSequence: UInt64 = 0
    /// The stream's next record number: across segments, dropped records
    /// included, so the detectors see every record under one numbering.
    private var streamSequence: UInt64 = 0
    /// Makes the checkpoint each segment starts with (`Checkpoint`).
    public var checkpoint: Checkpoint?
    /// The open segment has no record yet, so its checkpoint is still to be written.
    private var checkpointDue = false

    /// Takes over `configuration.directory`: segments an earlier run left
    /// count against the budget, and the last one, if a killed recorder left
    /// it open, is repaired (closed with its index) first. Starts the first
    /// segment.
    public init(configuration: Configuration, clock: any RecorderClock = MonotonicClock(), header: @escaping Header,
                notice: ((String) -> Void)? = nil) throws {
        self.configuration = configuration
        self.clock = clock
        self.header = header
        self.notice = notice
        try adoptEarlierSegments()
        let now = clock.now()
        evict(now: now)
        openSegment(now: now)
        if current == nil, let error = lastOpenError { throw error }
    }

    // MARK: EventWriter

    /// The stream's numbering, not the open segment's (which starts at 0).
    public var nextSequence: UInt64 { streamSequence }

    @discardableResult
    public func append(_ record: UnsafeRawBufferPointer) throws -> UInt64 {
        if checkpointDue { writeCheckpoint() }
        imageStarts.note(record)
        while let w = current {
            do {
                try w.append(record)
                let s = streamSequence
                streamSequence &+= 1
                statistics.eventsWritten += 1
                // Due segments close after the record that makes them due, so
                // the next record is numbered in the next segment; a poll that
                // drains a flooded ring for long does not stretch a segment.
                appendsSinceCheck &+= 1
                if w.bytesWritten >= configuration.segmentBytes || appendsSinceCheck >= 1024 {
                    appendsSinceCheck = 0
                    maintain(now: clock.now())
                }
                return s
            } catch let e as TraceError where e.isDiskFull {
                // append seals a full block before taking the record: the block
                // is still in memory, so writing again after a removal loses nothing.
                diskFull()
            }
        }
        statistics.eventsDropped += 1
        droppedSequence &+= 1
        streamSequence &+= 1
        return streamSequence &- 1
    }

    /// Writes the open segment's checkpoint, making room on a full disk by
    /// removing the oldest closed segment; a checkpoint that cannot be made
    /// or written is left out, never the segment (which then replays from a
    /// fresh start, and says so).
    private func writeCheckpoint() {
        checkpointDue = false
        guard let make = checkpoint, let c = make() else { return }
        while let w = current {
            do {
                try w.writeCheckpoint(c.bytes, ts: c.ts)
                statistics.checkpoints += 1
                statistics.checkpointBytes += UInt64(c.bytes.count)
                return
            } catch let e as TraceError where e.isDiskFull {
                // The writer cut the partial block off: it writes on from its last whole block.
                statistics.diskFull += 1
                if evictOldest(.diskFull) { continue }
                notice?("\(SegmentRing.name(currentSegment?.number ?? 0)) has no detector checkpoint: the disk is full")
                return
            } catch {
                notice?("\(SegmentRing.name(currentSegment?.number ?? 0)) has no detector checkpoint: \(error)")
                return
            }
        }
    }

    /// Seals the open block, then does what `maintain` does.
    public func flush() throws {
        write { try $0.flush() }
        maintain(now: clock.now())
    }

    /// Closes the open segment if it is due (by age or size) and starts the
    /// next, starts one if none is open (after a full disk), and removes what
    /// is too old or over the budget. Called between records: after each
    /// poll (the recorder's housekeeping) keeps segments to their length
    /// within a poll; `flush()` calls it too.
    public func maintain(now: UInt64) {
        if let w = current, let seg = currentSegment {
            if w.bytesWritten >= configuration.segmentBytes { rotateDue = true }
            // An empty segment is not closed: it would only hold a snapshot.
            if w.nextSequence > 0, rotateDue || now &- seg.startNs >= configuration.segmentNs {
                rotate(now: now)
            }
        } else {
            openSegment(now: now)
        }
        evict(now: now)
    }

    /// Closes the open segment (index, footer, fsync); one that holds no
    /// event (started at the last rotation) is removed instead.
    public func close() throws {
        let now = clock.now()
        if let w = current, w.nextSequence == 0, let seg = currentSegment {
            current = nil
            currentSegment = nil
            unlink(seg.path)
        }
        closeCurrent(now: now)
        evict(now: now)
    }

    // MARK: Ring

    /// The open segment, as it is on disk up to its last flushed block.
    public var openSegment: Segment? {
        guard var s = currentSegment, let w = current else { return nil }
        s.bytes = w.bytesWritten
        s.endNs = clock.now()
        return s
    }

    /// Every segment on disk, oldest first, the open one last.
    public var segments: [Segment] { closed + (openSegment.map { [$0] } ?? []) }

    /// Bytes the segments take on disk.
    public var bytesOnDisk: UInt64 { segments.reduce(0) { $0 + $1.bytes } }

    /// Closes the open segment now and starts the next, whatever their age:
    /// a dump that must read what was written up to now.
    public func rotateNow() {
        guard let w = current, w.nextSequence > 0 else {
            write { try $0.flush() }
            return
        }
        rotate(now: clock.now())
    }

    /// Removes the oldest closed segment, for another writer in the
    /// directory that met a full disk (a dump, the status file): the ring's
    /// own segments go first. False when none is left.
    public func freeSpace() -> Bool {
        statistics.diskFull += 1
        return evictOldest(.diskFull)
    }

    /// The name of segment `number`: names sort in ring order.
    public static func name(_ number: UInt64) -> String {
        let digits = String(number)
        return "seg-" + String(repeating: "0", count: max(0, 12 - digits.count)) + digits + ".fbt"
    }

    /// The number in a segment's name, or nil for other files.
    public static func number(ofName name: String) -> UInt64? {
        guard name.hasPrefix("seg-"), name.hasSuffix(".fbt") else { return nil }
        let digits = name.dropFirst(4).dropLast(4)
        guard !digits.isEmpty, digits.allSatisfy({ $0 >= "0" && $0 <= "9" }) else { return nil }
        return UInt64(digits)
    }

    // MARK: Internals

    private var lastOpenError: (any Error)?

    private func rotate(now: UInt64) {
        closeCurrent(now: now)
        openSegment(now: now)
        rotateDue = false
    }

    private func closeCurrent(now: UInt64) {
        guard let w = current, var seg = currentSegment else { return }
        write { try $0.close() }
        // A close the disk refused leaves the segment as a kill would: readable to its last block.
        guard current != nil else { return }
        current = nil
        currentSegment = nil
        seg.bytes = fileSize(seg.path) ?? w.bytesWritten
        seg.endNs = now
        closedBytesWritten += w.bytesWritten
        statistics.bytesWritten = closedBytesWritten
        closed.append(seg)
    }

    private func openSegment(now: UInt64) {
        guard current == nil else { return }
        let number = nextNumber
        let path = configuration.directory + "/" + SegmentRing.name(number)
        while true {
            do {
                let (metadata, scanned) = header(number, streamSequence)
                let snapshot = imageStarts.annotate(scanned)
                current = try TraceWriter(path: path, publish: .afterHeader, codec: configuration.codec, level: configuration.level,
                                          blockBytes: configuration.blockBytes, metadata: metadata, snapshot: snapshot)
                currentSegment = Segment(number: number, path: path, bytes: 0, startNs: now, endNs: now, thisRun: true)
                nextNumber += 1
                statistics.segmentsStarted += 1
                checkpointDue = true
                lastOpenError = nil
                if statistics.eventsDropped > 0, droppedSequence > 0 {
                    notice?("disk space again: recording into \(SegmentRing.name(number)) after dropping \(droppedSequence) events")
                    droppedSequence = 0
                }
                return
            } catch let e as TraceError where e.isDiskFull {
                statistics.diskFull += 1
                lastOpenError = e
                if !evictOldest(.diskFull) { return }
            } catch {
                lastOpenError = error
                return
            }
        }
    }

    /// Runs `body` on the open writer, meeting a full disk by removing the
    /// oldest closed segment and trying again; with none left, gives up the
    /// open segment.
    private func write(_ body: (TraceWriter) throws -> Void) {
        while let w = current {
            do {
                try body(w)
                statistics.bytesWritten = closedBytesWritten + w.bytesWritten
                return
            } catch let e as TraceError where e.isDiskFull {
                diskFull()
            } catch {
                notice?("\(error); giving up \(currentSegment.map { SegmentRing.name($0.number) } ?? "the segment") and starting another")
                abandonCurrent()
            }
        }
    }

    private func diskFull() {
        statistics.diskFull += 1
        if evictOldest(.diskFull) { return }
        notice?("disk full with no older segment left to remove: giving up \(currentSegment.map { SegmentRing.name($0.number) } ?? "the segment") and dropping events until space frees")
        abandonCurrent()
    }

    /// Leaves the open segment as a kill would (readable up to its last whole
    /// block); the records of its unwritten block are counted as dropped.
    private func abandonCurrent() {
        guard let w = current, var seg = currentSegment else { return }
        let indexed = w.index.reduce(UInt64(0)) { $0 + UInt64($1.count) }
        statistics.eventsDropped += w.nextSequence - indexed
        droppedSequence = w.nextSequence - indexed
        seg.bytes = fileSize(seg.path) ?? w.bytesWritten
        seg.endNs = clock.now()
        closedBytesWritten += seg.bytes
        current = nil
        currentSegment = nil
        closed.append(seg)
    }

    /// Removes the oldest closed segment; false when there is none.
    @discardableResult
    private func evictOldest(_ why: Eviction) -> Bool {
        guard !closed.isEmpty else { return false }
        let seg = closed.removeFirst()
        willRemove?(seg)
        unlink(seg.path)
        statistics.evicted[why, default: 0] += 1
        if why == .diskFull { notice?("disk full: removed the oldest segment \(SegmentRing.name(seg.number)) (\(seg.bytes) bytes) and recording on") }
        return true
    }

    private func evict(now: UInt64) {
        while let first = closed.first, now > first.endNs, now - first.endNs > configuration.keepNs,
              pinnedFrom.map({ first.number < $0 }) ?? true {
            evictOldest(.age)
        }
        let open = current?.bytesWritten ?? 0
        var total = closed.reduce(open) { $0 + $1.bytes }
        while total > configuration.maxBytes, let first = closed.first {
            total -= first.bytes
            evictOldest(.size)
        }
    }

    /// Segments left in the directory by an earlier run: counted against the
    /// budget, aged by their files' mtime, and the one a killed recorder left
    /// open (no clean-close flag) repaired in place.
    private func adoptEarlierSegments() throws {
        guard let dir = opendir(configuration.directory) else {
            throw TraceError.cannotCreate(path: configuration.directory + "/" + SegmentRing.name(1), errno: errno)
        }
        var found: [(UInt64, String)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if let n = SegmentRing.number(ofName: name) { found.append((n, name)) }
        }
        closedir(dir)
        found.sort { $0.0 < $1.0 }
        let now = clock.now()
        let wallNow = Int64(realTimeNow())
        for (n, name) in found {
            let path = configuration.directory + "/" + name
            if let reader = try? TraceReader(path: path), !reader.closedCleanly {
                do {
                    let result = try TraceRepair.copy(reader, to: path)
                    notice?("repaired \(name), left open by an earlier recorder: \(result.kept) events kept, closed with an index")
                } catch {
                    notice?("could not repair \(name) (\(error)); it stays readable as it is")
                }
            }
            var st = stat()
            guard stat(path, &st) == 0 else { continue }
            // A file's time can be anything (touch, a restore, a clock jump): clamped, not trapped on.
            let (secNs, o) = Int64(st.st_mtim.tv_sec).multipliedReportingOverflow(by: 1_000_000_000)
            let mtime = o ? (st.st_mtim.tv_sec < 0 ? Int64.min : Int64.max) : secNs.addingReportingOverflow(Int64(st.st_mtim.tv_nsec)).partialValue
            let age = UInt64(max(0, wallNow - mtime))
            let end = now > age ? now - age : 0
            closed.append(Segment(number: n, path: path, bytes: UInt64(st.st_size), startNs: end, endNs: end, thisRun: false))
            nextNumber = max(nextNumber, n == .max ? n : n + 1)
        }
    }
}

extension TraceError {
    /// ENOSPC or EDQUOT, however the write met it.
    public var isDiskFull: Bool {
        switch self {
        case .diskFull: true
        case .cannotCreate(_, let e), .writeFailed(_, let e): e == ENOSPC || e == EDQUOT
        default: false
        }
    }
}

func fileSize(_ path: String) -> UInt64? {
    var st = stat()
    return stat(path, &st) == 0 ? UInt64(st.st_size) : nil
}
