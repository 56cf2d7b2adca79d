#if canImport(Glibc)
import Glibc
#endif
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat

/// What `PerfettoExport` writes besides what it always writes.
public struct PerfettoOptions: Sendable {
    /// Syscalls at least this long become slices (shorter ones would bury the
    /// slow ones and grow the file by the event count).
    public var minSyscallNs: UInt64 = 1_000_000

    public init(minSyscallNs: UInt64 = 1_000_000) { self.minSyscallNs = minSyscallNs }
}

/// How much of each kind an export wrote.
public struct PerfettoSummary: Equatable, Sendable {
    public var packets = 0
    public var tracks = 0
    public var slices = 0
    public var instants = 0
    public var counterValues = 0
    public var findings = 0
}

/// A trace as Perfetto's protobuf trace format (a `Trace` of `TracePacket`s
/// with `TrackDescriptor`s and `TrackEvent`s), which the Perfetto UI opens:
///
/// - a process track per process and a thread track per thread, named from
///   the snapshot, fork and exec (renamed at exec, new tracks on pid reuse);
/// - on the thread track: syscalls of at least `minSyscallNs` as slices, and
///   fork, exec, exit, TCP, signal, privilege and OOM events as instants;
/// - on a "waits" track under the thread: run-queue and off-CPU waits, and a
///   "reclaim" track: direct reclaims, as slices;
/// - block requests as slices on per-device tracks, one lane per request in
///   flight (slices on one track must nest, and requests overlap);
/// - gauges as counter tracks; losses as instants on a "flightbox" track;
/// - findings as instants on a "findings" track, evidence as annotations.
///
/// Timestamps are the trace's CLOCK_MONOTONIC ns, written as they are (the
/// default clock of a TracePacket is BOOTTIME; the two differ only by time
/// the machine spent suspended).
public final class PerfettoExport {
    let arch: SyscallArch
    let options: PerfettoOptions
    public private(set) var summary = PerfettoSummary()

    /// A packet's TracePacket fields but timestamp and sequence, with its sort key.
    private struct Packet {
        var ts: UInt64
        /// At one time: descriptors, then slice ends, then instants and
        /// counters, then slice begins (so back-to-back slices do not overlap).
        var rank: UInt8
        var order: Int
        var body: [UInt8]
        /// A track's first description: written no later than the track's first use.
        var describes: UInt64?
    }
    private var packets: [Packet] = []
    /// Per track, the earliest event on it: stream order is not time order
    /// (block requests come at completion, stamped with their issue).
    private var firstUse: [UInt64: UInt64] = [:]
    /// Block requests, given lanes once all are known, in issue order.
    private var blockRequests: [(dev: UInt32, start: UInt64, end: UInt64, name: String, args: JSON)] = []

    static let findingsTrack: UInt64 = 1
    static let flightboxTrack: UInt64 = 2
    static let tcpTrack: UInt64 = 3
    private var nextUUID: UInt64 = 16

    private struct Proc {
        var uuid: UInt64
        var comm: String
        var argv: [String]
    }
    private var processes: [UInt32: Proc] = [:]
    private var threads: [UInt32: (uuid: UInt64, pid: UInt32)] = [:]
    private var childTracks: [UInt64: UInt64] = [:]
    private var counterTracks: [String: UInt64] = [:]
    /// Per device, its lanes: track and when its last request completes.
    private var lanes: [UInt32: [(uuid: UInt64, end: UInt64)]] = [:]
    private var described: Set<UInt64> = []

    public init(arch: SyscallArch, snapshot: ProcessSnapshot?, options: PerfettoOptions = PerfettoOptions()) {
        self.arch = arch
        self.options = options
        let start = snapshot?.timestamp ?? 0
        describe(PerfettoExport.findingsTrack, at: start, name: "findings")
        describe(PerfettoExport.flightboxTrack, at: start, name: "flightbox")
        for p in snapshot?.processes ?? [] {
            processes[p.pid] = Proc(uuid: newUUID(), comm: p.comm, argv: p.argv)
            describeProcess(p.pid, at: start)
        }
    }

    private func newUUID() -> UInt64 {
        nextUUID += 1
        return nextUUID
    }

    private func add(_ ts: UInt64, rank: UInt8, describes: UInt64? = nil, _ body: (inout ProtoWriter) -> Void) {
        var w = ProtoWriter()
        body(&w)
        packets.append(Packet(ts: ts, rank: rank, order: packets.count, body: w.bytes, describes: describes))
    }

    private func use(_ track: UInt64, at ts: UInt64) {
        if let t = firstUse[track], t <= ts { return }
        firstUse[track] = ts
    }

    // MARK: Tracks

    /// TracePacket.track_descriptor 60; TrackDescriptor: uuid 1, name 2,
    /// process 3, thread 4, parent_uuid 5, counter 8.
    private func describe(_ uuid: UInt64, at ts: UInt64, name: String? = nil, parent: UInt64? = nil,
                          _ extra: ((inout ProtoWriter) -> Void)? = nil) {
        let first = described.insert(uuid).inserted
        if first { summary.tracks += 1 }
        add(ts, rank: 0, describes: first ? uuid : nil) { p in
            p.message(60) { d in
                d.uint(1, uuid)
                if let name { d.string(2, name) }
                if let parent { d.uint(5, parent) }
                extra?(&d)
            }
        }
    }

    /// ProcessDescriptor: pid 1, cmdline 2, process_name 6.
    private func describeProcess(_ pid: UInt32, at ts: UInt64) {
        guard let p = processes[pid] else { return }
        describe(p.uuid, at: ts) { d in
            d.message(3) { pd in
                pd.int(1, Int64(pid))
                for a in p.argv { pd.string(2, a) }
                pd.string(6, p.comm)
            }
        }
    }

    /// ThreadDescriptor: pid 1, tid 2, thread_name 5.
    private func describeThread(_ tid: UInt32, at ts: UInt64, name: String) {
        guard let t = threads[tid] else { return }
        describe(t.uuid, at: ts) { d in
            d.message(4) { td in
                td.int(1, Int64(t.pid))
                td.int(2, Int64(tid))
                td.string(5, name)
            }
        }
    }

    private func process(_ pid: UInt32, at ts: UInt64) -> Proc {
        if let p = processes[pid] { return p }
        // Not in the snapshot nor forked in the trace: started before the recording.
        processes[pid] = Proc(uuid: newUUID(), comm: "pid \(pid)", argv: [])
        describeProcess(pid, at: ts)
        return processes[pid]!
    }

    private func thread(_ e: Event) -> UInt64 {
        if let t = threads[e.tid], t.pid == e.pid { return t.uuid }
        let p = process(e.pid, at: e.timestamp)
        threads[e.tid] = (newUUID(), e.pid)
        describeThread(e.tid, at: e.timestamp, name: p.comm)
        return threads[e.tid]!.uuid
    }

    /// A track under a thread's ("waits", "reclaim"), made on first use.
    private func child(of parent: UInt64, kind: UInt64, name: String, at ts: UInt64) -> UInt64 {
        let key = parent << 2 | kind
        if let u = childTracks[key] { return u }
        let u = newUUID()
        childTracks[key] = u
        describe(u, at: ts, name: name, parent: parent)
        return u
    }

    // MARK: Events

    /// TracePacket.track_event 11; TrackEvent: type 9 (1 begin, 2 end,
    /// 3 instant, 4 counter), track_uuid 11, name 23, debug_annotations 4,
    /// counter_value 30.
    private func slice(_ track: UInt64, from start: UInt64, duration: UInt64, name: String, args: JSON) {
        guard duration > 0 else { return instant(track, at: start, name: name, args: args) }
        summary.slices += 1
        use(track, at: start)
        add(start, rank: 3) { p in
            p.message(11) { t in
                t.uint(9, 1)
                t.uint(11, track)
                t.string(23, name)
                annotate(&t, args)
            }
        }
        add(start &+ duration, rank: 1) { p in p.message(11) { t in t.uint(9, 2); t.uint(11, track) } }
    }

    private func instant(_ track: UInt64, at ts: UInt64, name: String, args: JSON) {
        summary.instants += 1
        use(track, at: ts)
        add(ts, rank: 2) { p in
            p.message(11) { t in
                t.uint(9, 3)
                t.uint(11, track)
                t.string(23, name)
                annotate(&t, args)
            }
        }
    }

    private func annotate(_ t: inout ProtoWriter, _ args: JSON) {
        guard case .object(let kv) = args else { return }
        for (k, v) in kv { t.message(4) { DebugAnnotation.write(&$0, name: k, value: v) } }
    }

    /// The event's readable fields, for annotations (its time and type are the slice's own).
    private func args(_ e: Event) -> JSON {
        guard case .object(let kv) = e.json(comm: processes[e.pid]?.comm, arch: arch) else { return .null }
        return .object(kv.filter { $0.0 != "ts_ns" && $0.0 != "type" })
    }

    /// Adds one event of the stream, in stream order.
    public func add(_ e: Event) {
        let ts = e.timestamp
        switch e.payload {
        case .syscall(let r):
            guard r.durationNs >= options.minSyscallNs else { return }
            slice(thread(e), from: ts, duration: r.durationNs, name: r.displayName(arch: arch), args: args(e))
        case .sched(let r):
            let track = child(of: thread(e), kind: 1, name: "waits", at: ts)
            slice(track, from: ts, duration: r.waitNs, name: r.isRunqueueWait ? "run queue" : "off-CPU", args: args(e))
        case .reclaim(let r):
            let track = child(of: thread(e), kind: 2, name: "reclaim", at: ts)
            slice(track, from: ts, duration: r.durationNs, name: r.isMemcg ? "memcg reclaim" : "direct reclaim", args: args(e))
        case .block(let r):
            blockRequests.append((r.dev, ts, { let (end, o) = ts.addingReportingOverflow(r.latencyNs); return o ? .max : end }(), "\(r.opName) \(r.bytes) B", args(e)))
        case .gauge(let r):
            counter(e, r)
        case .tcp(let r):
            let track = e.tid != 0 ? thread(e) : tcpTrack(at: ts)
            instant(track, at: ts, name: "tcp \(r.kindName) \(tcpStateName(r.oldstate))->\(tcpStateName(r.newstate))", args: args(e))
        case .fork(let f):
            let parent = thread(e)
            if f.isThread {
                threads[f.childTid] = (newUUID(), e.pid)
                describeThread(f.childTid, at: ts, name: f.comm)
            } else {
                let p = processes[e.pid]
                // A new process, even under a pid seen before: a track of its own.
                processes[f.childPid] = Proc(uuid: newUUID(), comm: f.comm, argv: p?.argv ?? [])
                describeProcess(f.childPid, at: ts)
                threads[f.childTid] = (newUUID(), f.childPid)
                describeThread(f.childTid, at: ts, name: f.comm)
            }
            instant(parent, at: ts, name: f.isThread ? "clone thread \(f.childTid)" : "fork \(f.childPid)", args: args(e))
        case .exec(let x):
            processes[e.pid] = Proc(uuid: processes[e.pid]?.uuid ?? newUUID(), comm: x.comm, argv: x.argv)
            describeProcess(e.pid, at: ts)
            let track = thread(e)
            describeThread(e.tid, at: ts, name: x.comm)
            instant(track, at: ts, name: "exec \(x.filename)", args: args(e))
        case .exit(let x):
            instant(thread(e), at: ts, name: x.isGroupExit ? "process exit" : "thread exit", args: args(e))
            threads[e.tid] = nil
            if x.isGroupExit { processes[e.pid] = nil }
        case .probe(let r) where !r.isUSDT && !r.missedEntry:
            let track = child(of: thread(e), kind: 3, name: "probes", at: ts)
            slice(track, from: ts, duration: r.latencyNs, name: "probe \(r.probeId)", args: args(e))
        case .signal, .privilege, .oom, .probe:
            instant(thread(e), at: ts, name: e.type?.name ?? "event", args: args(e))
        case .loss:
            instant(PerfettoExport.flightboxTrack, at: ts, name: "events lost", args: args(e))
        case .file, .writes, .netbytes, .faults, .unknown:
            // Too many to draw one by one (files) or summaries with no time span of their own.
            break
        }
    }

    private func tcpTrack(at ts: UInt64) -> UInt64 {
        if !described.contains(PerfettoExport.tcpTrack) { describe(PerfettoExport.tcpTrack, at: ts, name: "tcp (no task)") }
        return PerfettoExport.tcpTrack
    }

    /// The first lane of `dev` free at `start` (a new one when all are busy).
    private func lane(_ dev: UInt32, from start: UInt64, to end: UInt64) -> UInt64 {
        var list = lanes[dev] ?? []
        defer { lanes[dev] = list }
        for i in list.indices where list[i].end <= start {
            list[i].end = end
            return list[i].uuid
        }
        let u = newUUID()
        describe(u, at: start, name: "block \(deviceName(dev)) #\(list.count)")
        list.append((u, end))
        return u
    }

    /// CounterDescriptor: unit 3 (3 bytes, 2 count).
    private func counter(_ e: Event, _ r: GaugeRecord) {
        let kind = r.gaugeKind?.name ?? "gauge\(r.kind)"
        let key = "\(kind) \(r.name)" + (e.pid != 0 ? " (pid \(e.pid))" : "")
        let track: UInt64
        if let t = counterTracks[key] {
            track = t
        } else {
            track = newUUID()
            counterTracks[key] = track
            describe(track, at: e.timestamp, name: key) { d in
                d.message(8) { c in c.uint(3, kind.contains("bytes") ? 3 : 2) }
            }
        }
        summary.counterValues += 1
        use(track, at: e.timestamp)
        add(e.timestamp, rank: 2) { p in
            p.message(11) { t in
                t.uint(9, 4)
                t.uint(11, track)
                t.int(30, Int64(clamping: r.value))
            }
        }
    }

    /// Findings as instants on the findings track, evidence as nested annotations.
    public func add(_ f: Finding) {
        summary.findings += 1
        instant(PerfettoExport.findingsTrack, at: f.ts, name: "\(f.detector) \(f.severity.rawValue): \(f.comm)",
                args: .object([("summary", .string(f.summary)), ("severity", .string(f.severity.rawValue)),
                               ("pid", .uint(UInt64(f.pid))), ("tid", .uint(UInt64(f.tid))), ("comm", .string(f.comm)),
                               ("evidence", f.evidence)]))
    }

    // MARK: Output

    /// The Trace message: each packet as field 1, in time order, on one
    /// trusted sequence (TracePacket.trusted_packet_sequence_id 10) whose
    /// first packet says its state starts clean (sequence_flags 13 = 1).
    public func write(to fd: Int32) throws(ExportError) {
        // Lanes in issue order (ties by arrival), so a lane's requests never overlap.
        let order = blockRequests.indices.sorted { (blockRequests[$0].start, $0) < (blockRequests[$1].start, $1) }
        for i in order {
            let b = blockRequests[i]
            slice(lane(b.dev, from: b.start, to: b.end), from: b.start, duration: b.end - b.start, name: b.name, args: b.args)
        }
        blockRequests = []
        for i in packets.indices {
            if let u = packets[i].describes, let t = firstUse[u], t < packets[i].ts { packets[i].ts = t }
        }
        packets.sort { ($0.ts, $0.rank, $0.order) < ($1.ts, $1.rank, $1.order) }
        var out: [UInt8] = []
        out.reserveCapacity(1 << 20)
        for (i, p) in packets.enumerated() {
            var w = ProtoWriter()
            w.uint(8, p.ts)
            w.uint(10, 1)
            if i == 0 { w.uint(13, 1) }
            var packet = w.bytes
            packet += p.body
            var framed = ProtoWriter()
            framed.bytes(1, packet)
            out += framed.bytes
            if out.count >= 1 << 20 { try flush(&out, fd) }
        }
        try flush(&out, fd)
        summary.packets = packets.count
    }

    private func flush(_ out: inout [UInt8], _ fd: Int32) throws(ExportError) {
        var off = 0
        while off < out.count {
            let n = out.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, $0.count - off) }
            if n < 0 {
                if errno == EINTR { continue }
                throw ExportError.writeFailed(errno: errno)
            }
            off += n
        }
        out.removeAll(keepingCapacity: true)
    }
}

public enum ExportError: Error, CustomStringConvertible {
    case writeFailed(errno: Int32)

    public var description: String {
        switch self {
        case .writeFailed(let e): "write failed: \(String(cString: strerror(e)))"
        }
    }
}
