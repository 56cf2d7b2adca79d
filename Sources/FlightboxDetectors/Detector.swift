import FlightboxEvents
import FlightboxFormat

/// How bad a finding is.
public enum Severity: String, Sendable, Comparable, Codable {
    case info, warning, critical

    var rank: Int { self == .info ? 0 : self == .warning ? 1 : 2 }
    public static func < (a: Severity, b: Severity) -> Bool { a.rank < b.rank }
}

/// One thing a detector found, at an event time.
public struct Finding: Equatable, Sendable {
    public var ts: UInt64
    public var detector: String
    public var severity: Severity
    public var pid: UInt32
    public var tid: UInt32
    public var comm: String
    public var summary: String
    public var evidence: JSON

    public init(ts: UInt64, detector: String, severity: Severity, pid: UInt32, tid: UInt32, comm: String, summary: String, evidence: JSON) {
        self.ts = ts
        self.detector = detector
        self.severity = severity
        self.pid = pid
        self.tid = tid
        self.comm = comm
        self.summary = summary
        self.evidence = evidence
    }

    /// The finding as one JSON line, keys in the documented order.
    public var jsonLine: String {
        JSON.object([
            ("ts_ns", .uint(ts)), ("detector", .string(detector)), ("severity", .string(severity.rawValue)),
            ("pid", .uint(UInt64(pid))), ("tid", .uint(UInt64(tid))), ("comm", .string(comm)),
            ("summary", .string(summary)), ("evidence", evidence),
        ]).serialized()
    }

    public init?(json: JSON) {
        guard let ts = json["ts_ns"]?.uintValue, let d = json["detector"]?.stringValue,
              let s = json["severity"]?.stringValue.flatMap(Severity.init(rawValue:)),
              let pid = json["pid"]?.uintValue, let tid = json["tid"]?.uintValue,
              let comm = json["comm"]?.stringValue, let summary = json["summary"]?.stringValue else { return nil }
        self.init(ts: ts, detector: d, severity: s, pid: UInt32(pid), tid: UInt32(tid), comm: comm, summary: summary, evidence: json["evidence"] ?? .null)
    }
}

/// A detector is a deterministic function of the ordered event stream: it
/// sees events in sequence order, reads time only from their timestamps
/// (`context.now`), and reports through `context.emit`.
public protocol Detector: AnyObject {
    /// Stable name used in findings and in `--detectors`.
    var name: String { get }
    /// Aligned event-time period of `tick`, or nil for none.
    var tickPeriodNs: UInt64? { get }
    func observe(_ event: Event, context: DetectorContext)
    /// Called once per aligned period boundary that event time crosses, in order.
    func tick(boundary: UInt64, context: DetectorContext)
    /// End of stream.
    func finish(context: DetectorContext)
    /// What the configuration excludes from this detector (`Exclusions`):
    /// the engine applies it, so a detector need not.
    var exclusions: Exclusions { get }
    /// The event types `observe` looks at: the engine shows a detector only
    /// those (read once, when the engine is made). Every type by default.
    var observedTypes: EventTypeSet { get }
    /// How the engine calls `observe` on every event: on an unretained
    /// reference to the detector, through its type (a metatype is not
    /// reference counted; a call through the existential retained and
    /// released the detector each time, a third of the replay's time). Keep
    /// the default.
    static func observe(unretained detector: Unmanaged<AnyObject>, _ event: Event, context: DetectorContext)
}

extension Detector {
    public var observedTypes: EventTypeSet { .all }

    @inline(__always)
    public static func observe(unretained detector: Unmanaged<AnyObject>, _ event: Event, context: DetectorContext) {
        Unmanaged<Self>.fromOpaque(detector.toOpaque())._withUnsafeGuaranteedRef { $0.observe(event, context: context) }
    }
    public var tickPeriodNs: UInt64? { nil }
    public var exclusions: Exclusions { Exclusions() }
    public func tick(boundary: UInt64, context: DetectorContext) {}
    public func finish(context: DetectorContext) {}
}

/// A set of event types (`Detector.observedTypes`). Types numbered 63 and
/// up, which no schema has yet, share one member: only `all` holds them.
public struct EventTypeSet: OptionSet, Sendable {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }

    public init(_ types: EventType...) {
        rawValue = types.reduce(0) { $0 | (1 << UInt64(EventTypeSet.bucket($1.rawValue))) }
    }

    public static let all = EventTypeSet(rawValue: .max)

    /// The member a raw type number belongs to, 0...63.
    @inlinable public static func bucket(_ rawType: UInt16) -> Int { rawType < 63 ? Int(rawType) : 63 }

    @inlinable public func contains(rawType: UInt16) -> Bool { rawValue & (1 << UInt64(EventTypeSet.bucket(rawType))) != 0 }
}

/// What the engine knows that detectors share: event time, processes, and
/// the numbering of the stream's syscalls.
public final class DetectorContext {
    /// Event time: the largest timestamp seen so far. Syscall records carry
    /// their entry time and arrive at exit, so raw timestamps are not monotonic.
    @exclusivity(unchecked) public internal(set) var now: UInt64 = 0
    /// The timestamp of the stream's first event (0 before it).
    @exclusivity(unchecked) public internal(set) var firstTimestamp: UInt64 = 0
    public let processes: ProcessTable
    /// The trace's process snapshot: the processes running when it began.
    public let snapshot: ProcessSnapshot?
    /// The architecture the events were recorded on: what their syscall numbers mean.
    public let arch: SyscallArch
    /// `arch`'s syscall table, looked up once rather than per event.
    public let syscalls: SyscallTable
    /// The trace's clock mapping (its metadata, the same live and on replay),
    /// for findings that state a time of day; nil when there is none.
    public let clock: TraceClock?
    @exclusivity(unchecked) var emitted: [Finding] = []

    init(processes: ProcessTable, snapshot: ProcessSnapshot?, arch: SyscallArch, clock: TraceClock? = nil) {
        self.processes = processes
        self.snapshot = snapshot
        self.arch = arch
        self.clock = clock
        syscalls = arch.table
    }

    public func emit(_ finding: Finding) { emitted.append(finding) }
}

/// CLOCK_MONOTONIC and CLOCK_REALTIME read together when the trace began
/// (`TraceMetadata.clockNs` and `realtimeNs`): maps event time to wall time.
public struct TraceClock: Equatable, Sendable {
    public var monotonicNs: UInt64
    public var realtimeNs: UInt64

    public init(monotonicNs: UInt64, realtimeNs: UInt64) {
        self.monotonicNs = monotonicNs
        self.realtimeNs = realtimeNs
    }

    public init(_ metadata: TraceMetadata) { self.init(monotonicNs: metadata.clockNs, realtimeNs: metadata.realtimeNs) }

    /// Wall-clock ns since the epoch of event time `ts` (as `TraceMetadata.wallClock`).
    public func wallClockNs(_ ts: UInt64) -> Int64 { Int64(bitPattern: realtimeNs &+ ts &- monotonicNs) }
}

/// pid -> what we know of the process, from the snapshot and the stream.
public final class ProcessTable {
    public private(set) var comms: [UInt32: String] = [:]

    public init(snapshot: ProcessSnapshot?) {
        for p in snapshot?.processes ?? [] { comms[p.pid] = p.comm }
    }

    public func comm(_ pid: UInt32) -> String { comms[pid] ?? "?" }

    /// Learns names from fork and exec events.
    public func apply(_ e: Event) {
        if let f = e.as(ForkRecord.self) {
            if !f.isThread { comms[f.childPid] = f.comm }
        } else if let x = e.as(ExecRecord.self) {
            comms[e.pid] = x.comm
        }
    }

    func retire(_ e: Event) {
        if let x = e.as(ExitRecord.self), x.isGroupExit { comms[e.pid] = nil }
    }

    /// Replaces what is known (a checkpoint's table).
    func replace(_ comms: [UInt32: String]) { self.comms = comms }
}

/// Runs detectors over an ordered event stream and collects their findings in
/// emission order. The same engine serves `record --detect` and `replay`.
public final class DetectorEngine {
    public let detectors: [Detector]
    public let context: DetectorContext
    private var nextBoundary: [UInt64?]
    /// Each detector's tick period, read once (a protocol call per detector
    /// per event otherwise), and the earliest boundary due: most events are
    /// before it and cost one comparison.
    private let periods: [UInt64?]
    @exclusivity(unchecked) private var earliestBoundary: UInt64 = 0
    private var onFinding: ((Finding) -> Void)?
    private let keepsFindings: Bool
    /// Findings made so far, kept or not.
    public private(set) var findingCount: UInt64 = 0
    public private(set) var findings: [Finding] = []
    @exclusivity(unchecked) public private(set) var eventsSeen: UInt64 = 0

    /// The detectors, and per event type (`EventTypeSet.bucket`) the indices
    /// of those that observe it, in registry order: `observers[starts[b] ..<
    /// starts[b + 1]]`. Buffers owned by the engine, read on every event:
    /// no array bounds, uniqueness or reference counting on the hot path.
    private let table: UnsafeMutablePointer<Observer>
    private let starts: UnsafeMutablePointer<Int>
    private let observers: UnsafeMutablePointer<Int>

    /// `arch`: the numbering of the events' syscalls, this machine's live and
    /// the trace's on replay (`SyscallArch(schema:machine:)` of its metadata).
    /// `keepsFindings` false: findings only go to `onFinding` (a recorder that
    /// runs for months must not hold every finding it ever made).
    public init(detectors: [Detector], snapshot: ProcessSnapshot?, arch: SyscallArch = .host, clock: TraceClock? = nil,
                keepsFindings: Bool = true, onFinding: ((Finding) -> Void)? = nil) {
        self.keepsFindings = keepsFindings
        self.detectors = detectors
        context = DetectorContext(processes: ProcessTable(snapshot: snapshot), snapshot: snapshot, arch: arch, clock: clock)
        nextBoundary = detectors.map { _ in nil }
        periods = detectors.map { d in d.tickPeriodNs.flatMap { $0 > 0 ? $0 : nil } }
        self.onFinding = onFinding
        exclusions = detectors.map(\.exclusions)
        excludesProcesses = exclusions.map(\.excludesProcesses)
        anyProcessExclusion = excludesProcesses.contains(true)
        for (d, e) in zip(detectors, exclusions) where !e.isEmpty { findingExclusions[d.name] = e }
        table = .allocate(capacity: max(detectors.count, 1))
        // Unretained: `detectors` keeps them alive as long as the engine.
        table.initialize(from: detectors.map(Observer.init), count: detectors.count)
        let types = detectors.map(\.observedTypes)
        var list: [Int] = []
        starts = .allocate(capacity: 65)
        for b in 0..<64 {
            starts[b] = list.count
            for (i, t) in types.enumerated() where t.rawValue & (1 << UInt64(b)) != 0 { list.append(i) }
        }
        starts[64] = list.count
        observers = .allocate(capacity: max(list.count, 1))
        observers.initialize(from: list, count: list.count)
    }

    deinit {
        table.deinitialize(count: detectors.count)
        table.deallocate()
        starts.deallocate()
        observers.deallocate()
    }

    /// Per detector, from its configuration.
    private let exclusions: [Exclusions]
    private let excludesProcesses: [Bool]
    private let anyProcessExclusion: Bool
    private var findingExclusions: [String: Exclusions] = [:]

    public func process(_ event: Event) {
        if eventsSeen == 0 { context.firstTimestamp = event.timestamp }
        eventsSeen &+= 1
        let ts = event.timestamp
        if ts > context.now {
            context.now = ts
            if ts >= earliestBoundary { tick(to: ts) }
        }
        let raw = event.rawType
        // Only forks and execs name processes, only exits retire them.
        if raw == EventType.fork.rawValue || raw == EventType.exec.rawValue { context.processes.apply(event) }
        let b = EventTypeSet.bucket(raw)
        if anyProcessExclusion {
            observeExcluding(event, bucket: b)
        } else {
            let context = self.context
            for i in starts[b]..<starts[b + 1] {
                let o = table[observers[i]]
                o.type.observe(unretained: o.detector, event, context: context)
            }
        }
        if raw == EventType.exit.rawValue { context.processes.retire(event) }
        if !context.emitted.isEmpty { collect() }
    }

    /// Ticks every detector whose boundary event time `ts` has reached.
    private func tick(to ts: UInt64) {
        var earliest = UInt64.max
        defer { earliestBoundary = earliest }
        for (i, d) in detectors.enumerated() {
            guard let period = periods[i] else { continue }
            guard var b = nextBoundary[i] else {
                let first = DetectorEngine.boundary(after: ts, period: period)
                nextBoundary[i] = first
                earliest = min(earliest, first)
                continue
            }
            guard ts >= b else {
                earliest = min(earliest, b)
                continue
            }
            // After a jump of more than maxTicksPerJump periods (a gap in the
            // trace, or a hostile timestamp) only the latest boundary is
            // ticked: detectors see that time moved on without a loop over
            // billions of empty windows.
            let behind = (ts - b) / period
            if behind >= DetectorEngine.maxTicksPerJump {
                b = ts - (ts - b) % period
            }
            while ts >= b {
                d.tick(boundary: b, context: context)
                let (next, overflow) = b.addingReportingOverflow(period)
                if overflow { b = .max; break }
                b = next
            }
            nextBoundary[i] = b
            earliest = min(earliest, b)
        }
    }

    /// An excluded process's events are not shown to the detectors that
    /// exclude it, apart from fork, exec and exit: those keep a detector's
    /// per-process bookkeeping right when a process changes its name.
    private func observeExcluding(_ event: Event, bucket b: Int) {
        var lifecycle: Bool?
        for k in starts[b]..<starts[b + 1] {
            let i = observers[k], d = detectors[i]
            if excludesProcesses[i], exclusions[i].excludes(pid: event.pid, comm: context.processes.comm(event.pid)) {
                if lifecycle == nil {
                    switch event.payload {
                    case .fork, .exec, .exit: lifecycle = true
                    default: lifecycle = false
                    }
                }
                if lifecycle == false { continue }
            }
            d.observe(event, context: context)
        }
    }

    /// Ticks run for at most this many boundaries crossed by one event.
    public static let maxTicksPerJump: UInt64 = 1024

    /// The first multiple of `period` after `ts`, or UInt64.max.
    static func boundary(after ts: UInt64, period: UInt64) -> UInt64 {
        let (m, o1) = (ts / period).addingReportingOverflow(1)
        let (b, o2) = m.multipliedReportingOverflow(by: period)
        return o1 || o2 ? .max : b
    }

    public func finish() {
        for d in detectors { d.finish(context: context) }
        collect()
    }

    // MARK: Checkpoints (Checkpoint.swift)

    var engineCheckpoint: CheckpointCoding.Engine {
        CheckpointCoding.Engine(eventsSeen: eventsSeen, now: context.now, firstTimestamp: context.firstTimestamp, findingCount: findingCount,
                                comms: context.processes.comms.sorted { $0.key < $1.key }.map { CheckpointCoding.Comm(pid: $0.key, comm: $0.value) })
    }

    func boundary(of i: Int) -> UInt64? { nextBoundary[i] }
    func setBoundary(of i: Int, _ b: UInt64?) { nextBoundary[i] = periods[i] == nil ? nil : b }

    func restoreEngine(_ e: CheckpointCoding.Engine) {
        eventsSeen = e.eventsSeen
        context.now = e.now
        context.firstTimestamp = e.firstTimestamp
        findingCount = e.findingCount
        context.processes.replace(Dictionary(e.comms.map { ($0.pid, $0.comm) }, uniquingKeysWith: { _, b in b }))
        // The next event ticks every detector due, and starts the boundaries of those that start fresh.
        earliestBoundary = 0
    }

    private func collect() {
        for f in context.emitted {
            if let e = findingExclusions[f.detector], e.excludes(f) { continue }
            findingCount += 1
            if keepsFindings { findings.append(f) }
            onFinding?(f)
        }
        context.emitted.removeAll(keepingCapacity: true)
    }
}

/// A detector as the engine calls it per event: its type and an unretained
/// reference (the engine's `detectors` keep it alive).
struct Observer {
    let type: any Detector.Type
    let detector: Unmanaged<AnyObject>

    init(_ d: any Detector) {
        type = Swift.type(of: d)
        detector = Unmanaged.passUnretained(d as AnyObject)
    }
}

/// The built-in detectors: the one place a detector is registered.
public enum DetectorRegistry {
    /// Every detector's declaration, in the order they run and are listed.
    public static let all: [DetectorSpec] = [SyscallLatencyDetector.spec, MemoryDetector.spec, TCPAnomalyDetector.spec, SchedulingDetector.spec, SyscallErrorsDetector.spec, ExhaustionDetector.spec, BlockDetector.spec, SecurityDetector.spec, HealthDetector.spec, CrashLoopDetector.spec, AcceptStoppedDetector.spec]

    public static var names: [String] { all.map(\.name) }

    public static func spec(_ name: String) -> DetectorSpec? { all.first { $0.name == name } }

    /// A detector with its default settings.
    public static func make(_ name: String) -> Detector? { spec(name).map { $0.make($0.defaults) } }

    /// The named detectors (every one when nil) with their default settings.
    public static func make(list: [String]?) throws -> [Detector] {
        try DetectorConfiguration.defaults.makeDetectors(only: list)
    }

    public struct UnknownDetector: Error, CustomStringConvertible {
        public let name: String
        public var description: String { "unknown detector '\(name)'; known: \(DetectorRegistry.names.joined(separator: ","))" }
    }
}
