import CFlightboxEvents

/// What a gauge measures (`enum fb_gauge_kind`).
public enum GaugeKind: UInt32, Sendable, CaseIterable {
    case fsBytes = 1, fsInodes, processFds, systemFds, tasks, cgroupPids, memAvailable, swapFree, psiSome, psiFull, load
    case cgroupMemory, processRSS, threads, psiSome60, psiFull60, fsDevice, cgroupMemoryAnon, blockDevice

    public var name: String {
        switch self {
        case .fsBytes: "fs_bytes_available"
        case .fsInodes: "fs_inodes_free"
        case .processFds: "process_fds"
        case .systemFds: "system_fds"
        case .tasks: "tasks"
        case .cgroupPids: "cgroup_pids"
        case .memAvailable: "mem_available"
        case .swapFree: "swap_free"
        case .psiSome: "psi_some_avg10"
        case .psiFull: "psi_full_avg10"
        case .load: "load1"
        case .cgroupMemory: "cgroup_memory"
        case .processRSS: "process_rss"
        case .threads: "threads"
        case .psiSome60: "psi_some_avg60"
        case .psiFull60: "psi_full_avg60"
        case .fsDevice: "fs_device"
        case .cgroupMemoryAnon: "cgroup_memory_anon"
        case .blockDevice: "block_device"
        }
    }
}

/// The kernel's TCP state names, by number.
public func tcpStateName(_ s: UInt8) -> String {
    ["none", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT", "CLOSE", "CLOSE_WAIT",
     "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV", "BOUND_INACTIVE"][safe: Int(s)] ?? "state\(s)"
}

/// What a file event did (`enum fb_file_op`).
public enum FileOp: UInt32, Sendable {
    case open = 1, unlink = 2, rename = 3

    public var name: String {
        switch self { case .open: "open"; case .unlink: "unlink"; case .rename: "rename" }
    }
}

public let forkThreadFlag = UInt16(FB_F_FORK_THREAD)
public let syscallCompatFlag = UInt16(FB_F_SYSCALL_COMPAT)
public let fileTruncatedFlag = UInt16(FB_F_FILE_TRUNCATED)
public let execTruncatedFlag = UInt16(FB_F_EXEC_TRUNCATED)
public let exitGroupFlag = UInt16(FB_F_EXIT_GROUP)
public let commLength = Int(FB_COMM_LEN)
public let nameLength = Int(FB_NAME_LEN)
public let reclaimMemcgFlag = UInt16(FB_F_RECLAIM_MEMCG)
public let probeReturnFlag = UInt16(FB_F_PROBE_RETURN)
public let probeUSDTFlag = UInt16(FB_F_PROBE_USDT)
public let probeNoEntryFlag = UInt16(FB_F_PROBE_NO_ENTRY)

/// A zero-copy view of one wire record. Valid only while the bytes it points
/// at are: views are handed to closures and must not escape them.
///
/// `validated(...)` checks the record once (header present, size within the
/// buffer and at least the fixed part of a known type), so the accessors below
/// read without further bounds checks.
public struct Event {
    public let base: UnsafeRawPointer
    /// The record's length in bytes, header included.
    public let size: Int
    /// Position in the ordered stream (assigned by the capture, stored implicitly per block).
    public let sequence: UInt64

    @inlinable
    init(unchecked base: UnsafeRawPointer, size: Int, sequence: UInt64) {
        self.base = base
        self.size = size
        self.sequence = sequence
    }

    /// Validates the record at the start of `buffer`; returns nil when it is not
    /// a whole record. Unknown types are valid (skippable) records.
    @inlinable
    public static func validated(_ buffer: UnsafeRawBufferPointer, sequence: UInt64) -> Event? {
        guard buffer.count >= HeaderLayout.byteCount, let base = buffer.baseAddress else { return nil }
        let size = Int(base.loadUnaligned(fromByteOffset: HeaderLayout.sizeOffset, as: UInt16.self))
        guard size >= HeaderLayout.byteCount, size <= buffer.count else { return nil }
        let rawType = base.loadUnaligned(fromByteOffset: HeaderLayout.typeOffset, as: UInt16.self)
        if let t = EventType(rawValue: rawType) {
            guard size >= t.fixedSize else { return nil }
            if t.hasTrailingParts {
                var end = t.fixedSize
                for o in t.trailingLengthOffsets { end += Int(base.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
                guard end <= size else { return nil }
            }
        }
        return Event(unchecked: base, size: size, sequence: sequence)
    }

    @inlinable public var timestamp: UInt64 { base.loadUnaligned(fromByteOffset: HeaderLayout.tsNsOffset, as: UInt64.self) }
    @inlinable public var rawType: UInt16 { base.loadUnaligned(fromByteOffset: HeaderLayout.typeOffset, as: UInt16.self) }
    @inlinable public var type: EventType? { EventType(rawValue: rawType) }
    @inlinable public var cpu: UInt16 { base.loadUnaligned(fromByteOffset: HeaderLayout.cpuOffset, as: UInt16.self) }
    @inlinable public var flags: UInt16 { base.loadUnaligned(fromByteOffset: HeaderLayout.flagsOffset, as: UInt16.self) }
    @inlinable public var pid: UInt32 { base.loadUnaligned(fromByteOffset: HeaderLayout.pidOffset, as: UInt32.self) }
    @inlinable public var tid: UInt32 { base.loadUnaligned(fromByteOffset: HeaderLayout.tidOffset, as: UInt32.self) }

    @inlinable public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    /// The record as the typed view `R`, or nil when it is another type:
    /// `if let s = event.as(SyscallRecord.self) { s.durationNs }`. Fields of
    /// one type cannot be read off a record of another.
    @inlinable public func `as`<R: EventRecord>(_: R.Type) -> R? {
        rawType == R.eventType.rawValue ? R(unchecked: self) : nil
    }

    /// A NUL-padded char array of the fixed part, as a string.
    public func cString(at offset: Int, maxLength: Int) -> String {
        let p = UnsafeRawBufferPointer(start: base + offset, count: maxLength)
        let end = p.firstIndex(of: 0) ?? maxLength
        return String(decoding: p[0..<end], as: UTF8.self)
    }

}

extension Array {
    subscript(safe i: Int) -> Element? { i >= 0 && i < count ? self[i] : nil }
}

/// What a syscall's fd argument referred to (`enum fb_fd_kind`).
public enum FdKind: UInt8, Sendable {
    case unresolved = 0, regular, directory, char, block, fifo, socket, symlink, anon, bad

    public var name: String {
        switch self {
        case .unresolved: "unresolved"
        case .regular: "regular"
        case .directory: "directory"
        case .char: "char"
        case .block: "block"
        case .fifo: "fifo"
        case .socket: "socket"
        case .symlink: "symlink"
        case .anon: "anon"
        case .bad: "bad"
        }
    }
}

/// A typed view of one record type (generated from bpf/events.h, one per
/// `@event` struct); made by `Event.as(_:)` or `Event.payload`.
public protocol EventRecord {
    static var eventType: EventType { get }
    var event: Event { get }
    /// Wraps an event known to be of this type (already validated).
    init(unchecked event: Event)
}

extension EventRecord {
    @inlinable public var timestamp: UInt64 { event.timestamp }
    @inlinable public var pid: UInt32 { event.pid }
    @inlinable public var tid: UInt32 { event.tid }
    @inlinable public var cpu: UInt16 { event.cpu }
    @inlinable public var flags: UInt16 { event.flags }
}

/// Strings each followed by one NUL; a last one without its NUL (cut short) is kept.
public func nulSeparatedStrings(_ p: UnsafeRawBufferPointer) -> [String] {
    var out: [String] = []
    var start = 0
    for i in 0..<p.count where p[i] == 0 {
        out.append(String(decoding: p[start..<i], as: UTF8.self))
        start = i + 1
    }
    if start < p.count { out.append(String(decoding: p[start..<p.count], as: UTF8.self)) }
    return out
}

/// Lower-case hex, two digits a byte.
public func hexString(_ p: UnsafeRawBufferPointer) -> String {
    let digits = Array("0123456789abcdef".utf8)
    var out = [UInt8]()
    out.reserveCapacity(p.count * 2)
    for b in p { out.append(digits[Int(b >> 4)]); out.append(digits[Int(b & 15)]) }
    return String(decoding: out, as: UTF8.self)
}

/// Builds wire records: the generated `XRecord.encode(...)` functions stand
/// on these, and tests, fixtures and user-space events (losses, gauges) use
/// the conveniences below.
public enum EventEncoder {
    /// A zeroed record of `size` bytes with its header filled in.
    public static func header(type: EventType, size: Int, ts: UInt64, cpu: UInt16 = 0, flags: UInt16 = 0, pid: UInt32, tid: UInt32) -> [UInt8] {
        var buf = [UInt8](repeating: 0, count: size)
        put(&buf, HeaderLayout.tsNsOffset, ts)
        put(&buf, HeaderLayout.typeOffset, type.rawValue)
        put(&buf, HeaderLayout.sizeOffset, UInt16(truncatingIfNeeded: size))
        put(&buf, HeaderLayout.cpuOffset, cpu)
        put(&buf, HeaderLayout.flagsOffset, flags)
        put(&buf, HeaderLayout.pidOffset, pid)
        put(&buf, HeaderLayout.tidOffset, tid)
        return buf
    }

    public static func put<T: FixedWidthInteger>(_ buf: inout [UInt8], _ offset: Int, _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { src in
            for i in 0..<src.count { buf[offset + i] = src[i] }
        }
    }

    /// At most max - 1 bytes, so the field stays NUL-terminated.
    public static func putString(_ buf: inout [UInt8], _ offset: Int, _ s: String, max: Int) {
        for (i, b) in s.utf8.prefix(max - 1).enumerated() { buf[offset + i] = b }
    }

    /// Arguments as exec records carry them: each followed by one NUL.
    public static func argvBytes(_ argv: [String]) -> [UInt8] {
        var a: [UInt8] = []
        for s in argv { a += Array(s.utf8); a.append(0) }
        return a
    }

    public static func syscall(ts: UInt64, pid: UInt32, tid: UInt32, nr: UInt32, duration: UInt64, ret: Int64 = 0, args: [UInt64] = [], fdKind: FdKind = .unresolved, cpu: UInt16 = 0) -> [UInt8] {
        SyscallRecord.encode(ts: ts, cpu: cpu, pid: pid, tid: tid, durationNs: duration, ret: ret, args: args, nr: nr, fdKind: fdKind.rawValue)
    }

    public static func fork(ts: UInt64, pid: UInt32, tid: UInt32, childPid: UInt32, childTid: UInt32, thread: Bool, comm: String) -> [UInt8] {
        ForkRecord.encode(ts: ts, flags: thread ? forkThreadFlag : 0, pid: pid, tid: tid, childPid: childPid, childTid: childTid, comm: comm)
    }

    public static func exec(ts: UInt64, pid: UInt32, tid: UInt32, ppid: UInt32, uid: UInt32, comm: String, filename: String, argv: [String]) -> [UInt8] {
        ExecRecord.encode(ts: ts, pid: pid, tid: tid, oldTid: tid, ppid: ppid, uid: uid, argc: UInt16(truncatingIfNeeded: argv.count), comm: comm,
                          filename: Array(filename.utf8), argv: argvBytes(argv))
    }

    public static func exit(ts: UInt64, pid: UInt32, tid: UInt32, status: Int32, group: Bool, ppid: UInt32, lifetime: UInt64, comm: String) -> [UInt8] {
        ExitRecord.encode(ts: ts, flags: group ? exitGroupFlag : 0, pid: pid, tid: tid, status: status, ppid: ppid, lifetimeNs: lifetime, comm: comm)
    }

    public static func gauge(ts: UInt64, kind: GaugeKind, value: UInt64, limit: UInt64, pid: UInt32 = 0, name: String = "") -> [UInt8] {
        GaugeRecord.encode(ts: ts, pid: pid, tid: pid, value: value, limit: limit, kind: kind.rawValue, name: Array(name.utf8.prefix(1024)))
    }

    public static func loss(ts: UInt64, cpu: UInt16, lost: UInt64, firstTs: UInt64) -> [UInt8] {
        LossRecord.encode(ts: ts, cpu: cpu, lost: lost, firstTs: firstTs)
    }
}
