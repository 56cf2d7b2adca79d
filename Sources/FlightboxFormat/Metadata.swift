import FlightboxEvents

/// A process as seen in a snapshot of /proc (chunk start) or rebuilt from events.
public struct ProcessRecord: Equatable, Sendable {
    public var pid: UInt32
    public var ppid: UInt32
    public var uid: UInt32
    public var comm: String
    public var exe: String
    public var argv: [String]
    /// Event time of the fork or exec that began the process's current image,
    /// when an earlier flight segment saw it: the lineage then gives it the
    /// exec_id it had there, so findings correlate across the boundary. nil
    /// for a process running before the recording began (its exec_id start is 0).
    public var imageStartNs: UInt64?

    public init(pid: UInt32, ppid: UInt32, uid: UInt32, comm: String, exe: String, argv: [String], imageStartNs: UInt64? = nil) {
        self.pid = pid
        self.ppid = ppid
        self.uid = uid
        self.comm = comm
        self.exe = exe
        self.argv = argv
        self.imageStartNs = imageStartNs
    }

    public var json: JSON {
        .object([("pid", .uint(UInt64(pid))), ("ppid", .uint(UInt64(ppid))), ("uid", .uint(UInt64(uid))),
                 ("comm", .string(comm)), ("exe", .string(exe)), ("argv", .array(argv.map { .string($0) }))]
            + (imageStartNs.map { [("image_start_ns", JSON.uint($0))] } ?? []))
    }

    public init?(json: JSON) {
        guard let pid = json["pid"]?.uintValue, let ppid = json["ppid"]?.uintValue, let uid = json["uid"]?.uintValue,
              let comm = json["comm"]?.stringValue else { return nil }
        self.pid = UInt32(truncatingIfNeeded: pid)
        self.ppid = UInt32(truncatingIfNeeded: ppid)
        self.uid = UInt32(truncatingIfNeeded: uid)
        self.comm = comm
        exe = json["exe"]?.stringValue ?? ""
        argv = json["argv"]?.arrayValue?.compactMap(\.stringValue) ?? []
        imageStartNs = json["image_start_ns"]?.uintValue
    }
}

/// Where a trace came from: written as the first block, JSON with stable keys.
public struct TraceMetadata: Sendable {
    public var host: String
    public var kernelRelease: String
    public var machine: String
    /// CLOCK_MONOTONIC and CLOCK_REALTIME read back to back at the start: event
    /// timestamps are CLOCK_MONOTONIC ns, and wall time = ts - clockNs + realtimeNs.
    public var clockNs: UInt64
    public var realtimeNs: UInt64
    /// The capture configuration (probes, filter, codec, command, ...).
    public var capture: JSON
    public var schema: JSON

    public init(host: String, kernelRelease: String, machine: String, clockNs: UInt64, realtimeNs: UInt64, capture: JSON, schema: JSON = EventSchema.json) {
        self.host = host
        self.kernelRelease = kernelRelease
        self.machine = machine
        self.clockNs = clockNs
        self.realtimeNs = realtimeNs
        self.capture = capture
        self.schema = schema
    }

    public var json: JSON {
        .object([
            ("format", .string("flightbox-trace")),
            ("version", .string("\(TraceLayout.versionMajor).\(TraceLayout.versionMinor)")),
            ("host", .string(host)), ("kernel", .string(kernelRelease)), ("machine", .string(machine)),
            ("clock", .object([("timestamps", .string("CLOCK_MONOTONIC")), ("clock_ns", .uint(clockNs)), ("realtime_ns", .uint(realtimeNs))])),
            ("capture", capture), ("schema", schema),
        ])
    }

    public init?(json: JSON) {
        guard let clock = json["clock"], let boot = clock["clock_ns"]?.uintValue, let real = clock["realtime_ns"]?.uintValue else { return nil }
        host = json["host"]?.stringValue ?? ""
        kernelRelease = json["kernel"]?.stringValue ?? ""
        machine = json["machine"]?.stringValue ?? ""
        clockNs = boot
        realtimeNs = real
        capture = json["capture"] ?? .null
        schema = json["schema"] ?? .null
    }

    /// Wall-clock ns since the epoch for an event timestamp.
    public func wallClock(_ ts: UInt64) -> Int64 { Int64(bitPattern: realtimeNs &+ ts &- clockNs) }

    /// Event timestamp for a wall-clock ns since the epoch.
    public func eventTime(wallClockNs: Int64) -> UInt64 { UInt64(bitPattern: wallClockNs) &- realtimeNs &+ clockNs }
}

/// Process-state snapshot block payload.
public struct ProcessSnapshot: Sendable {
    public var timestamp: UInt64
    public var processes: [ProcessRecord]

    public init(timestamp: UInt64, processes: [ProcessRecord]) {
        self.timestamp = timestamp
        self.processes = processes
    }

    public var json: JSON {
        .object([("ts_ns", .uint(timestamp)), ("processes", .array(processes.map(\.json)))])
    }

    public init?(json: JSON) {
        guard let ts = json["ts_ns"]?.uintValue, let list = json["processes"]?.arrayValue else { return nil }
        timestamp = ts
        processes = list.compactMap(ProcessRecord.init(json:))
    }
}
