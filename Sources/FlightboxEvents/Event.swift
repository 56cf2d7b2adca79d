import CFlightboxEvents

/// Event types on the wire (`enum fb_event_type` in bpf/events.h).
public enum EventType: UInt16, CaseIterable, Sendable {
    case syscall = 1
    case fork = 2
    case exec = 3
    case exit = 4
    case loss = 5
    case file = 6
    case signal = 7
    case block = 8
    case privilege = 9
    case sched = 10
    case gauge = 11
    case tcp = 12
    case writes = 13
    case faults = 14
    case reclaim = 15
    case oom = 16

    public var name: String {
        switch self {
        case .syscall: "syscall"
        case .fork: "fork"
        case .exec: "exec"
        case .exit: "exit"
        case .loss: "loss"
        case .file: "file"
        case .signal: "signal"
        case .block: "block"
        case .privilege: "privilege"
        case .sched: "sched"
        case .gauge: "gauge"
        case .tcp: "tcp"
        case .writes: "writes"
        case .faults: "faults"
        case .reclaim: "reclaim"
        case .oom: "oom"
        }
    }

    public init?(name: String) {
        guard let t = EventType.allCases.first(where: { $0.name == name }) else { return nil }
        self = t
    }

    /// Size of the fixed part, the common header included.
    public var fixedSize: Int {
        switch self {
        case .syscall: MemoryLayout<fb_syscall>.size
        case .fork: MemoryLayout<fb_fork>.size
        case .exec: MemoryLayout<fb_exec>.size
        case .exit: MemoryLayout<fb_exit>.size
        case .loss: MemoryLayout<fb_loss>.size
        case .file: MemoryLayout<fb_file>.size
        case .signal: MemoryLayout<fb_signal>.size
        case .block: MemoryLayout<fb_block>.size
        case .privilege: MemoryLayout<fb_priv>.size
        case .sched: MemoryLayout<fb_sched>.size
        case .gauge: MemoryLayout<fb_gauge>.size
        case .tcp: MemoryLayout<fb_tcp>.size
        case .writes: MemoryLayout<fb_writes>.size
        case .faults: MemoryLayout<fb_faults>.size
        case .reclaim: MemoryLayout<fb_reclaim>.size
        case .oom: MemoryLayout<fb_oom>.size
        }
    }
}

extension EventType {
    /// Whether variable parts follow the fixed part: a plain switch, so the
    /// hot path of fixed-size records never touches the arrays below.
    @inlinable var hasTrailingParts: Bool {
        switch self {
        case .exec, .file, .privilege, .gauge: true
        default: false
        }
    }

    /// Offsets of the u16 lengths of the variable parts that follow the
    /// fixed part, in the order the parts follow it.
    @usableFromInline var trailingLengthOffsets: [Int] {
        switch self {
        case .exec: Offsets.execTrailing
        case .file: Offsets.fileTrailing
        case .privilege: Offsets.privTrailing
        case .gauge: Offsets.gaugeTrailing
        default: []
        }
    }
}

/// What a gauge measures (`enum fb_gauge_kind`).
public enum GaugeKind: UInt32, Sendable, CaseIterable {
    case fsBytes = 1, fsInodes, processFds, systemFds, tasks, cgroupPids, memAvailable, swapFree, psiSome, psiFull, load

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

/// Byte offsets of every wire field, taken from the imported C structs so the
/// layout is described once, in bpf/events.h.
@usableFromInline
enum Offsets {
    @usableFromInline static let ts = MemoryLayout<fb_header>.offset(of: \.ts_ns)!
    @usableFromInline static let type = MemoryLayout<fb_header>.offset(of: \.type)!
    @usableFromInline static let size = MemoryLayout<fb_header>.offset(of: \.size)!
    @usableFromInline static let cpu = MemoryLayout<fb_header>.offset(of: \.cpu)!
    @usableFromInline static let flags = MemoryLayout<fb_header>.offset(of: \.flags)!
    @usableFromInline static let pid = MemoryLayout<fb_header>.offset(of: \.pid)!
    @usableFromInline static let tid = MemoryLayout<fb_header>.offset(of: \.tid)!
    @usableFromInline static let headerSize = MemoryLayout<fb_header>.size

    @usableFromInline static let scDuration = MemoryLayout<fb_syscall>.offset(of: \.duration_ns)!
    @usableFromInline static let scRet = MemoryLayout<fb_syscall>.offset(of: \.ret)!
    @usableFromInline static let scArgs = MemoryLayout<fb_syscall>.offset(of: \.args)!
    @usableFromInline static let scNr = MemoryLayout<fb_syscall>.offset(of: \.nr)!
    @usableFromInline static let scFdKind = MemoryLayout<fb_syscall>.offset(of: \.fd_kind)!

    @usableFromInline static let forkChildPid = MemoryLayout<fb_fork>.offset(of: \.child_pid)!
    @usableFromInline static let forkChildTid = MemoryLayout<fb_fork>.offset(of: \.child_tid)!
    @usableFromInline static let forkComm = MemoryLayout<fb_fork>.offset(of: \.comm)!

    @usableFromInline static let execOldTid = MemoryLayout<fb_exec>.offset(of: \.old_tid)!
    @usableFromInline static let execPpid = MemoryLayout<fb_exec>.offset(of: \.ppid)!
    @usableFromInline static let execUid = MemoryLayout<fb_exec>.offset(of: \.uid)!
    @usableFromInline static let execFilenameLen = MemoryLayout<fb_exec>.offset(of: \.filename_len)!
    @usableFromInline static let execArgvLen = MemoryLayout<fb_exec>.offset(of: \.argv_len)!
    @usableFromInline static let execArgc = MemoryLayout<fb_exec>.offset(of: \.argc)!
    @usableFromInline static let execComm = MemoryLayout<fb_exec>.offset(of: \.comm)!

    @usableFromInline static let exitStatus = MemoryLayout<fb_exit>.offset(of: \.status)!
    @usableFromInline static let exitPpid = MemoryLayout<fb_exit>.offset(of: \.ppid)!
    @usableFromInline static let exitLifetime = MemoryLayout<fb_exit>.offset(of: \.lifetime_ns)!
    @usableFromInline static let exitComm = MemoryLayout<fb_exit>.offset(of: \.comm)!

    @usableFromInline static let fileRet = MemoryLayout<fb_file>.offset(of: \.ret)!
    @usableFromInline static let fileOp = MemoryLayout<fb_file>.offset(of: \.op)!
    @usableFromInline static let fileDirfd = MemoryLayout<fb_file>.offset(of: \.dirfd)!
    @usableFromInline static let fileFlags = MemoryLayout<fb_file>.offset(of: \.flags)!
    @usableFromInline static let fileMode = MemoryLayout<fb_file>.offset(of: \.mode)!
    @usableFromInline static let filePathLen = MemoryLayout<fb_file>.offset(of: \.path_len)!
    @usableFromInline static let filePath2Len = MemoryLayout<fb_file>.offset(of: \.path2_len)!

    @usableFromInline static let sigSig = MemoryLayout<fb_signal>.offset(of: \.sig)!
    @usableFromInline static let sigCode = MemoryLayout<fb_signal>.offset(of: \.code)!
    @usableFromInline static let sigOp = MemoryLayout<fb_signal>.offset(of: \.op)!
    @usableFromInline static let sigResult = MemoryLayout<fb_signal>.offset(of: \.result)!
    @usableFromInline static let sigTargetPid = MemoryLayout<fb_signal>.offset(of: \.target_pid)!
    @usableFromInline static let sigTargetTid = MemoryLayout<fb_signal>.offset(of: \.target_tid)!
    @usableFromInline static let sigUid = MemoryLayout<fb_signal>.offset(of: \.sender_uid)!
    @usableFromInline static let sigGroup = MemoryLayout<fb_signal>.offset(of: \.group)!
    @usableFromInline static let sigComm = MemoryLayout<fb_signal>.offset(of: \.target_comm)!

    @usableFromInline static let blkLatency = MemoryLayout<fb_block>.offset(of: \.latency_ns)!
    @usableFromInline static let blkSector = MemoryLayout<fb_block>.offset(of: \.sector)!
    @usableFromInline static let blkDev = MemoryLayout<fb_block>.offset(of: \.dev)!
    @usableFromInline static let blkBytes = MemoryLayout<fb_block>.offset(of: \.bytes)!
    @usableFromInline static let blkOp = MemoryLayout<fb_block>.offset(of: \.op)!
    @usableFromInline static let blkError = MemoryLayout<fb_block>.offset(of: \.error)!
    @usableFromInline static let blkComm = MemoryLayout<fb_block>.offset(of: \.comm)!

    @usableFromInline static let privRet = MemoryLayout<fb_priv>.offset(of: \.ret)!
    @usableFromInline static let privNr = MemoryLayout<fb_priv>.offset(of: \.nr)!
    @usableFromInline static let privOp = MemoryLayout<fb_priv>.offset(of: \.op)!
    @usableFromInline static let privArgs = MemoryLayout<fb_priv>.offset(of: \.args)!
    @usableFromInline static let privUid = MemoryLayout<fb_priv>.offset(of: \.uid)!
    @usableFromInline static let privEuid = MemoryLayout<fb_priv>.offset(of: \.euid)!
    @usableFromInline static let privOldUid = MemoryLayout<fb_priv>.offset(of: \.old_uid)!
    @usableFromInline static let privOldEuid = MemoryLayout<fb_priv>.offset(of: \.old_euid)!
    @usableFromInline static let privStrLen = MemoryLayout<fb_priv>.offset(of: \.str_len)!
    @usableFromInline static let privStr2Len = MemoryLayout<fb_priv>.offset(of: \.str2_len)!
    @usableFromInline static let privStr3Len = MemoryLayout<fb_priv>.offset(of: \.str3_len)!

    @usableFromInline static let schedWait = MemoryLayout<fb_sched>.offset(of: \.wait_ns)!
    @usableFromInline static let schedKind = MemoryLayout<fb_sched>.offset(of: \.kind)!
    @usableFromInline static let schedState = MemoryLayout<fb_sched>.offset(of: \.prev_state)!
    @usableFromInline static let schedComm = MemoryLayout<fb_sched>.offset(of: \.comm)!

    @usableFromInline static let gaugeValue = MemoryLayout<fb_gauge>.offset(of: \.value)!
    @usableFromInline static let gaugeLimit = MemoryLayout<fb_gauge>.offset(of: \.limit)!
    @usableFromInline static let gaugeKind = MemoryLayout<fb_gauge>.offset(of: \.kind)!
    @usableFromInline static let gaugeNameLen = MemoryLayout<fb_gauge>.offset(of: \.name_len)!

    @usableFromInline static let tcpLatency = MemoryLayout<fb_tcp>.offset(of: \.latency_ns)!
    @usableFromInline static let tcpSaddr = MemoryLayout<fb_tcp>.offset(of: \.saddr)!
    @usableFromInline static let tcpDaddr = MemoryLayout<fb_tcp>.offset(of: \.daddr)!
    @usableFromInline static let tcpSport = MemoryLayout<fb_tcp>.offset(of: \.sport)!
    @usableFromInline static let tcpDport = MemoryLayout<fb_tcp>.offset(of: \.dport)!
    @usableFromInline static let tcpFamily = MemoryLayout<fb_tcp>.offset(of: \.family)!
    @usableFromInline static let tcpKind = MemoryLayout<fb_tcp>.offset(of: \.kind)!
    @usableFromInline static let tcpOld = MemoryLayout<fb_tcp>.offset(of: \.oldstate)!
    @usableFromInline static let tcpNew = MemoryLayout<fb_tcp>.offset(of: \.newstate)!

    @usableFromInline static let wrFirstTs = MemoryLayout<fb_writes>.offset(of: \.first_ts)!
    @usableFromInline static let wrLastTs = MemoryLayout<fb_writes>.offset(of: \.last_ts)!
    @usableFromInline static let wrBytes = MemoryLayout<fb_writes>.offset(of: \.bytes)!
    @usableFromInline static let wrTime = MemoryLayout<fb_writes>.offset(of: \.time_ns)!
    @usableFromInline static let wrIno = MemoryLayout<fb_writes>.offset(of: \.ino)!
    @usableFromInline static let wrDev = MemoryLayout<fb_writes>.offset(of: \.dev)!
    @usableFromInline static let wrFd = MemoryLayout<fb_writes>.offset(of: \.fd)!
    @usableFromInline static let wrCalls = MemoryLayout<fb_writes>.offset(of: \.calls)!
    @usableFromInline static let wrErrors = MemoryLayout<fb_writes>.offset(of: \.errors)!
    @usableFromInline static let wrReason = MemoryLayout<fb_writes>.offset(of: \.reason)!
    @usableFromInline static let wrKind = MemoryLayout<fb_writes>.offset(of: \.fd_kind)!
    @usableFromInline static let wrName = MemoryLayout<fb_writes>.offset(of: \.name)!

    @usableFromInline static let flFirstTs = MemoryLayout<fb_faults>.offset(of: \.first_ts)!
    @usableFromInline static let flUser = MemoryLayout<fb_faults>.offset(of: \.user)!
    @usableFromInline static let flKernel = MemoryLayout<fb_faults>.offset(of: \.kernel)!
    @usableFromInline static let flMajor = MemoryLayout<fb_faults>.offset(of: \.major)!
    @usableFromInline static let flMinor = MemoryLayout<fb_faults>.offset(of: \.minor)!
    @usableFromInline static let flAddr = MemoryLayout<fb_faults>.offset(of: \.last_addr)!
    @usableFromInline static let flIp = MemoryLayout<fb_faults>.offset(of: \.last_ip)!
    @usableFromInline static let flComm = MemoryLayout<fb_faults>.offset(of: \.comm)!

    @usableFromInline static let rcDuration = MemoryLayout<fb_reclaim>.offset(of: \.duration_ns)!
    @usableFromInline static let rcReclaimed = MemoryLayout<fb_reclaim>.offset(of: \.reclaimed)!
    @usableFromInline static let rcOrder = MemoryLayout<fb_reclaim>.offset(of: \.order)!
    @usableFromInline static let rcGfp = MemoryLayout<fb_reclaim>.offset(of: \.gfp_flags)!

    @usableFromInline static let oomTotalVm = MemoryLayout<fb_oom>.offset(of: \.total_vm)!
    @usableFromInline static let oomAnon = MemoryLayout<fb_oom>.offset(of: \.anon_rss)!
    @usableFromInline static let oomFile = MemoryLayout<fb_oom>.offset(of: \.file_rss)!
    @usableFromInline static let oomShmem = MemoryLayout<fb_oom>.offset(of: \.shmem_rss)!
    @usableFromInline static let oomPgtables = MemoryLayout<fb_oom>.offset(of: \.pgtables_bytes)!
    @usableFromInline static let oomMemcgId = MemoryLayout<fb_oom>.offset(of: \.memcg_id)!
    @usableFromInline static let oomUid = MemoryLayout<fb_oom>.offset(of: \.uid)!
    @usableFromInline static let oomScoreAdj = MemoryLayout<fb_oom>.offset(of: \.oom_score_adj)!
    @usableFromInline static let oomTriggerPid = MemoryLayout<fb_oom>.offset(of: \.trigger_pid)!
    @usableFromInline static let oomTriggerTid = MemoryLayout<fb_oom>.offset(of: \.trigger_tid)!
    @usableFromInline static let oomComm = MemoryLayout<fb_oom>.offset(of: \.comm)!
    @usableFromInline static let oomTriggerComm = MemoryLayout<fb_oom>.offset(of: \.trigger_comm)!
    @usableFromInline static let oomMemcg = MemoryLayout<fb_oom>.offset(of: \.memcg)!

    @usableFromInline static let execTrailing = [execFilenameLen, execArgvLen]
    @usableFromInline static let fileTrailing = [filePathLen, filePath2Len]
    @usableFromInline static let privTrailing = [privStrLen, privStr2Len, privStr3Len]
    @usableFromInline static let gaugeTrailing = [gaugeNameLen]

    @usableFromInline static let lossLost = MemoryLayout<fb_loss>.offset(of: \.lost)!
    @usableFromInline static let lossFirstTs = MemoryLayout<fb_loss>.offset(of: \.first_ts)!
}

public let forkThreadFlag = UInt16(FB_F_FORK_THREAD)
public let syscallCompatFlag = UInt16(FB_F_SYSCALL_COMPAT)
public let fileTruncatedFlag = UInt16(FB_F_FILE_TRUNCATED)
public let execTruncatedFlag = UInt16(FB_F_EXEC_TRUNCATED)
public let exitGroupFlag = UInt16(FB_F_EXIT_GROUP)
public let commLength = Int(FB_COMM_LEN)
public let nameLength = Int(FB_NAME_LEN)
public let reclaimMemcgFlag = UInt16(FB_F_RECLAIM_MEMCG)

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
        guard buffer.count >= Offsets.headerSize, let base = buffer.baseAddress else { return nil }
        let size = Int(base.loadUnaligned(fromByteOffset: Offsets.size, as: UInt16.self))
        guard size >= Offsets.headerSize, size <= buffer.count else { return nil }
        let rawType = base.loadUnaligned(fromByteOffset: Offsets.type, as: UInt16.self)
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

    @inlinable public var timestamp: UInt64 { base.loadUnaligned(fromByteOffset: Offsets.ts, as: UInt64.self) }
    @inlinable public var rawType: UInt16 { base.loadUnaligned(fromByteOffset: Offsets.type, as: UInt16.self) }
    @inlinable public var type: EventType? { EventType(rawValue: rawType) }
    @inlinable public var cpu: UInt16 { base.loadUnaligned(fromByteOffset: Offsets.cpu, as: UInt16.self) }
    @inlinable public var flags: UInt16 { base.loadUnaligned(fromByteOffset: Offsets.flags, as: UInt16.self) }
    @inlinable public var pid: UInt32 { base.loadUnaligned(fromByteOffset: Offsets.pid, as: UInt32.self) }
    @inlinable public var tid: UInt32 { base.loadUnaligned(fromByteOffset: Offsets.tid, as: UInt32.self) }

    @inlinable public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: size) }

    @inlinable func u64(_ o: Int) -> UInt64 { base.loadUnaligned(fromByteOffset: o, as: UInt64.self) }
    @inlinable func u32(_ o: Int) -> UInt32 { base.loadUnaligned(fromByteOffset: o, as: UInt32.self) }
    @inlinable func u16(_ o: Int) -> UInt16 { base.loadUnaligned(fromByteOffset: o, as: UInt16.self) }

    /// Variable part `i` of a record of `type` (validated to lie inside it).
    func trailing(_ type: EventType, _ i: Int) -> UnsafeRawBufferPointer {
        let lengths = type.trailingLengthOffsets
        var at = type.fixedSize
        for o in lengths.prefix(i) { at += Int(u16(o)) }
        return UnsafeRawBufferPointer(start: base + at, count: Int(u16(lengths[i])))
    }

    func string(at offset: Int, maxLength: Int) -> String {
        let p = UnsafeRawBufferPointer(start: base + offset, count: maxLength)
        let end = p.firstIndex(of: 0) ?? maxLength
        return String(decoding: p[0..<end], as: UTF8.self)
    }

    // MARK: syscall — valid only when type == .syscall

    @inlinable public var syscallNumber: UInt32 { u32(Offsets.scNr) }
    /// A 32-bit (ia32) syscall: number and arguments follow that ABI.
    @inlinable public var isCompatSyscall: Bool { flags & syscallCompatFlag != 0 }
    /// The syscall's name in its ABI ("ia32:N" for 32-bit calls, which have their own numbering),
    /// in the numbering of the trace (`arch`; by default this machine's).
    public func syscallDisplayName(arch: SyscallArch = .host) -> String {
        isCompatSyscall ? "ia32:\(syscallNumber)" : syscallName(syscallNumber, arch: arch)
    }
    public var syscallDisplayName: String { syscallDisplayName() }
    @inlinable public var syscallDuration: UInt64 { u64(Offsets.scDuration) }
    @inlinable public var syscallReturn: Int64 { base.loadUnaligned(fromByteOffset: Offsets.scRet, as: Int64.self) }
    @inlinable public func syscallArg(_ i: Int) -> UInt64 { u64(Offsets.scArgs + 8 * i) }
    @inlinable public var syscallFdKind: FdKind { FdKind(rawValue: base.load(fromByteOffset: Offsets.scFdKind, as: UInt8.self)) ?? .unresolved }
    public static let syscallArgCount = Int(FB_SYSCALL_ARGS)

    // MARK: fork

    @inlinable public var childPid: UInt32 { u32(Offsets.forkChildPid) }
    @inlinable public var childTid: UInt32 { u32(Offsets.forkChildTid) }
    @inlinable public var isThreadFork: Bool { flags & forkThreadFlag != 0 }
    public var forkComm: String { string(at: Offsets.forkComm, maxLength: commLength) }

    // MARK: exec

    @inlinable public var execOldTid: UInt32 { u32(Offsets.execOldTid) }
    @inlinable public var execPpid: UInt32 { u32(Offsets.execPpid) }
    @inlinable public var execUid: UInt32 { u32(Offsets.execUid) }
    @inlinable public var execArgc: Int { Int(u16(Offsets.execArgc)) }
    public var execComm: String { string(at: Offsets.execComm, maxLength: commLength) }
    public var execFilename: String { String(decoding: trailing(.exec, 0), as: UTF8.self) }
    /// The captured arguments; the last may be cut short when the exec is flagged truncated.
    public var execArgv: [String] {
        let p = trailing(.exec, 1)
        let a = p.count
        var out: [String] = []
        var start = 0
        for i in 0..<a where p[i] == 0 {
            out.append(String(decoding: p[start..<i], as: UTF8.self))
            start = i + 1
        }
        if start < a { out.append(String(decoding: p[start..<a], as: UTF8.self)) }
        return out
    }

    // MARK: exit

    /// Wait status: exit code in bits 8-15, terminating signal in bits 0-6.
    @inlinable public var exitStatus: Int32 { base.loadUnaligned(fromByteOffset: Offsets.exitStatus, as: Int32.self) }
    @inlinable public var exitCode: Int { Int((exitStatus >> 8) & 0xff) }
    @inlinable public var exitSignal: Int { Int(exitStatus & 0x7f) }
    @inlinable public var exitPpid: UInt32 { u32(Offsets.exitPpid) }
    @inlinable public var exitLifetime: UInt64 { u64(Offsets.exitLifetime) }
    @inlinable public var isGroupExit: Bool { flags & exitGroupFlag != 0 }
    public var exitComm: String { string(at: Offsets.exitComm, maxLength: commLength) }

    // MARK: file

    @inlinable public var fileOp: FileOp? { FileOp(rawValue: u32(Offsets.fileOp)) }
    @inlinable public var fileReturn: Int64 { base.loadUnaligned(fromByteOffset: Offsets.fileRet, as: Int64.self) }
    @inlinable public var fileDirfd: Int32 { base.loadUnaligned(fromByteOffset: Offsets.fileDirfd, as: Int32.self) }
    @inlinable public var fileFlags: UInt32 { u32(Offsets.fileFlags) }
    @inlinable public var fileMode: UInt32 { u32(Offsets.fileMode) }
    /// The path as the caller gave it (relative to `fileDirfd` unless absolute).
    public var filePath: String { String(decoding: trailing(.file, 0), as: UTF8.self) }
    /// The new name of a rename; empty otherwise.
    public var filePath2: String { String(decoding: trailing(.file, 1), as: UTF8.self) }

    // MARK: signal

    @inlinable public var signalNumber: Int32 { base.loadUnaligned(fromByteOffset: Offsets.sigSig, as: Int32.self) }
    @inlinable public var signalCode: Int32 { base.loadUnaligned(fromByteOffset: Offsets.sigCode, as: Int32.self) }
    /// True for a signal being sent, false for one being delivered.
    @inlinable public var isSignalGenerate: Bool { u32(Offsets.sigOp) == UInt32(FB_SIGNAL_GENERATE.rawValue) }
    @inlinable public var signalResult: Int32 { base.loadUnaligned(fromByteOffset: Offsets.sigResult, as: Int32.self) }
    @inlinable public var signalTargetPid: UInt32 { u32(Offsets.sigTargetPid) }
    @inlinable public var signalTargetTid: UInt32 { u32(Offsets.sigTargetTid) }
    @inlinable public var signalSenderUid: UInt32 { u32(Offsets.sigUid) }
    @inlinable public var signalToGroup: Bool { u32(Offsets.sigGroup) != 0 }
    public var signalTargetComm: String { string(at: Offsets.sigComm, maxLength: commLength) }

    // MARK: block

    @inlinable public var blockLatency: UInt64 { u64(Offsets.blkLatency) }
    @inlinable public var blockSector: UInt64 { u64(Offsets.blkSector) }
    /// Kernel dev_t: major in the high 12 bits, minor in the low 20.
    @inlinable public var blockDevice: UInt32 { u32(Offsets.blkDev) }
    @inlinable public var blockBytes: UInt32 { u32(Offsets.blkBytes) }
    @inlinable public var blockOp: UInt32 { u32(Offsets.blkOp) }
    @inlinable public var blockError: Int32 { base.loadUnaligned(fromByteOffset: Offsets.blkError, as: Int32.self) }
    public var blockComm: String { string(at: Offsets.blkComm, maxLength: commLength) }
    public var blockOpName: String {
        switch blockOp {
        case 0: "read"
        case 1: "write"
        case 2: "flush"
        case 3: "discard"
        case 5: "secure-erase"
        case 9: "write-zeroes"
        default: "op\(blockOp)"
        }
    }

    // MARK: privilege

    @inlinable public var privilegeOp: UInt32 { u32(Offsets.privOp) }
    @inlinable public var privilegeSyscall: UInt32 { u32(Offsets.privNr) }
    @inlinable public var privilegeReturn: Int64 { base.loadUnaligned(fromByteOffset: Offsets.privRet, as: Int64.self) }
    @inlinable public func privilegeArg(_ i: Int) -> UInt64 { u64(Offsets.privArgs + 8 * i) }
    @inlinable public var privilegeUid: UInt32 { u32(Offsets.privUid) }
    @inlinable public var privilegeEuid: UInt32 { u32(Offsets.privEuid) }
    @inlinable public var privilegeOldUid: UInt32 { u32(Offsets.privOldUid) }
    @inlinable public var privilegeOldEuid: UInt32 { u32(Offsets.privOldEuid) }
    /// The event's strings (memfd name; mount source, target, type; chmod path), empty when absent.
    public var privilegeStrings: [String] { (0..<3).map { String(decoding: trailing(.privilege, $0), as: UTF8.self) } }
    public var privilegeOpName: String {
        ["", "setid", "capset", "ptrace", "vm-write", "module", "bpf", "memfd", "mount", "chmod-exec", "dup-stdio"][safe: Int(privilegeOp)]
            ?? "op\(privilegeOp)"
    }

    // MARK: sched

    @inlinable public var schedWait: UInt64 { u64(Offsets.schedWait) }
    /// True for a run-queue wait, false for time blocked off the CPU.
    @inlinable public var isRunqueueWait: Bool { u32(Offsets.schedKind) == UInt32(FB_SCHED_RUNQ.rawValue) }
    @inlinable public var schedBlockedState: UInt32 { u32(Offsets.schedState) }
    public var schedComm: String { string(at: Offsets.schedComm, maxLength: commLength) }

    // MARK: gauge

    @inlinable public var gaugeValue: UInt64 { u64(Offsets.gaugeValue) }
    @inlinable public var gaugeLimit: UInt64 { u64(Offsets.gaugeLimit) }
    @inlinable public var gaugeKind: GaugeKind? { GaugeKind(rawValue: u32(Offsets.gaugeKind)) }
    public var gaugeName: String { String(decoding: trailing(.gauge, 0), as: UTF8.self) }

    // MARK: tcp

    @inlinable public var tcpLatency: UInt64 { u64(Offsets.tcpLatency) }
    @inlinable public var tcpSourcePort: UInt16 { u16(Offsets.tcpSport) }
    @inlinable public var tcpDestinationPort: UInt16 { u16(Offsets.tcpDport) }
    @inlinable public var tcpKind: UInt8 { base.load(fromByteOffset: Offsets.tcpKind, as: UInt8.self) }
    @inlinable public var tcpOldState: UInt8 { base.load(fromByteOffset: Offsets.tcpOld, as: UInt8.self) }
    @inlinable public var tcpNewState: UInt8 { base.load(fromByteOffset: Offsets.tcpNew, as: UInt8.self) }
    public var tcpSourceAddress: String { address(at: Offsets.tcpSaddr) }
    public var tcpDestinationAddress: String { address(at: Offsets.tcpDaddr) }

    func address(at o: Int) -> String {
        let b = UnsafeRawBufferPointer(start: base + o, count: 16)
        if u16(Offsets.tcpFamily) == 2 { return b.prefix(4).map { String($0) }.joined(separator: ".") }
        return stride(from: 0, to: 16, by: 2).map { String(UInt16(b[$0]) << 8 | UInt16(b[$0 + 1]), radix: 16) }.joined(separator: ":")
    }

    public var tcpKindName: String {
        switch tcpKind {
        case 1: "state"
        case 2: "retransmit"
        case 3: "reset_sent"
        case 4: "reset_received"
        default: "kind\(tcpKind)"
        }
    }

    // MARK: writes

    /// Entry of the first write summarized; `timestamp` is when the summary was written.
    @inlinable public var writesFirstTimestamp: UInt64 { u64(Offsets.wrFirstTs) }
    @inlinable public var writesLastTimestamp: UInt64 { u64(Offsets.wrLastTs) }
    @inlinable public var writesBytes: UInt64 { u64(Offsets.wrBytes) }
    @inlinable public var writesTime: UInt64 { u64(Offsets.wrTime) }
    @inlinable public var writesInode: UInt64 { u64(Offsets.wrIno) }
    @inlinable public var writesDevice: UInt32 { u32(Offsets.wrDev) }
    @inlinable public var writesFd: Int32 { base.loadUnaligned(fromByteOffset: Offsets.wrFd, as: Int32.self) }
    @inlinable public var writesCalls: UInt32 { u32(Offsets.wrCalls) }
    @inlinable public var writesErrors: UInt32 { u32(Offsets.wrErrors) }
    @inlinable public var writesReason: UInt32 { u32(Offsets.wrReason) }
    @inlinable public var writesFdKind: FdKind { FdKind(rawValue: base.load(fromByteOffset: Offsets.wrKind, as: UInt8.self)) ?? .unresolved }
    /// The file's name in its directory (not its path).
    public var writesName: String { string(at: Offsets.wrName, maxLength: nameLength) }
    public var writesReasonName: String { ["", "close", "interval", "idle"][safe: Int(writesReason)] ?? "reason\(writesReason)" }

    // MARK: faults

    @inlinable public var faultsFirstTimestamp: UInt64 { u64(Offsets.flFirstTs) }
    @inlinable public var faultsUser: UInt64 { u64(Offsets.flUser) }
    @inlinable public var faultsKernel: UInt64 { u64(Offsets.flKernel) }
    @inlinable public var faultsMajor: UInt64 { u64(Offsets.flMajor) }
    @inlinable public var faultsMinor: UInt64 { u64(Offsets.flMinor) }
    @inlinable public var faultsLastAddress: UInt64 { u64(Offsets.flAddr) }
    @inlinable public var faultsLastIP: UInt64 { u64(Offsets.flIp) }
    public var faultsComm: String { string(at: Offsets.flComm, maxLength: commLength) }

    // MARK: reclaim

    @inlinable public var reclaimDuration: UInt64 { u64(Offsets.rcDuration) }
    @inlinable public var reclaimPages: UInt64 { u64(Offsets.rcReclaimed) }
    @inlinable public var reclaimOrder: UInt32 { u32(Offsets.rcOrder) }
    @inlinable public var reclaimGfpFlags: UInt32 { u32(Offsets.rcGfp) }
    /// A memory cgroup reclaiming to stay under its limit, not the system short of memory.
    @inlinable public var isMemcgReclaim: Bool { flags & reclaimMemcgFlag != 0 }

    // MARK: oom

    @inlinable public var oomTotalVM: UInt64 { u64(Offsets.oomTotalVm) }
    @inlinable public var oomAnonRSS: UInt64 { u64(Offsets.oomAnon) }
    @inlinable public var oomFileRSS: UInt64 { u64(Offsets.oomFile) }
    @inlinable public var oomShmemRSS: UInt64 { u64(Offsets.oomShmem) }
    @inlinable public var oomPageTableBytes: UInt64 { u64(Offsets.oomPgtables) }
    @inlinable public var oomMemcgId: UInt64 { u64(Offsets.oomMemcgId) }
    @inlinable public var oomUid: UInt32 { u32(Offsets.oomUid) }
    @inlinable public var oomScoreAdj: Int32 { base.loadUnaligned(fromByteOffset: Offsets.oomScoreAdj, as: Int32.self) }
    @inlinable public var oomTriggerPid: UInt32 { u32(Offsets.oomTriggerPid) }
    @inlinable public var oomTriggerTid: UInt32 { u32(Offsets.oomTriggerTid) }
    public var oomComm: String { string(at: Offsets.oomComm, maxLength: commLength) }
    public var oomTriggerComm: String { string(at: Offsets.oomTriggerComm, maxLength: commLength) }
    public var oomMemcg: String { string(at: Offsets.oomMemcg, maxLength: nameLength) }

    // MARK: loss

    @inlinable public var lostCount: UInt64 { u64(Offsets.lossLost) }
    @inlinable public var lossFirstTimestamp: UInt64 { u64(Offsets.lossFirstTs) }
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

/// Encodes records into wire bytes: used by tests, fixtures and user-space
/// events (losses). Fields are written at the C header's offsets.
public struct EventEncoder {
    public init() {}

    public static func header(_ buf: inout [UInt8], type: EventType, size: Int, ts: UInt64, cpu: UInt16 = 0, flags: UInt16 = 0, pid: UInt32, tid: UInt32) {
        buf = [UInt8](repeating: 0, count: size)
        put(&buf, Offsets.ts, ts)
        put(&buf, Offsets.type, type.rawValue)
        put(&buf, Offsets.size, UInt16(size))
        put(&buf, Offsets.cpu, cpu)
        put(&buf, Offsets.flags, flags)
        put(&buf, Offsets.pid, pid)
        put(&buf, Offsets.tid, tid)
    }

    static func put<T: FixedWidthInteger>(_ buf: inout [UInt8], _ offset: Int, _ v: T) {
        withUnsafeBytes(of: v.littleEndian) { src in
            for i in 0..<src.count { buf[offset + i] = src[i] }
        }
    }

    /// A record of `type` with room for `parts` after its fixed part, the
    /// parts and their lengths written; the caller fills the fixed fields.
    static func variable(_ buf: inout [UInt8], type: EventType, parts: [[UInt8]], ts: UInt64, pid: UInt32, tid: UInt32) {
        header(&buf, type: type, size: type.fixedSize + parts.reduce(0) { $0 + $1.count }, ts: ts, pid: pid, tid: tid)
        var at = type.fixedSize
        for (o, part) in zip(type.trailingLengthOffsets, parts) {
            put(&buf, o, UInt16(part.count))
            buf.replaceSubrange(at..<(at + part.count), with: part)
            at += part.count
        }
    }

    static func putString(_ buf: inout [UInt8], _ offset: Int, _ s: String, max: Int) {
        for (i, b) in s.utf8.prefix(max - 1).enumerated() { buf[offset + i] = b }
    }

    public static func syscall(ts: UInt64, pid: UInt32, tid: UInt32, nr: UInt32, duration: UInt64, ret: Int64 = 0, args: [UInt64] = [], fdKind: FdKind = .unresolved, cpu: UInt16 = 0) -> [UInt8] {
        var b: [UInt8] = []
        header(&b, type: .syscall, size: EventType.syscall.fixedSize, ts: ts, cpu: cpu, pid: pid, tid: tid)
        put(&b, Offsets.scDuration, duration)
        put(&b, Offsets.scRet, ret)
        for (i, a) in args.prefix(Event.syscallArgCount).enumerated() { put(&b, Offsets.scArgs + 8 * i, a) }
        put(&b, Offsets.scNr, nr)
        b[Offsets.scFdKind] = fdKind.rawValue
        return b
    }

    public static func fork(ts: UInt64, pid: UInt32, tid: UInt32, childPid: UInt32, childTid: UInt32, thread: Bool, comm: String) -> [UInt8] {
        var b: [UInt8] = []
        header(&b, type: .fork, size: EventType.fork.fixedSize, ts: ts, flags: thread ? forkThreadFlag : 0, pid: pid, tid: tid)
        put(&b, Offsets.forkChildPid, childPid)
        put(&b, Offsets.forkChildTid, childTid)
        putString(&b, Offsets.forkComm, comm, max: commLength)
        return b
    }

    public static func exec(ts: UInt64, pid: UInt32, tid: UInt32, ppid: UInt32, uid: UInt32, comm: String, filename: String, argv: [String]) -> [UInt8] {
        let f = Array(filename.utf8)
        var a: [UInt8] = []
        for s in argv { a += Array(s.utf8); a.append(0) }
        var b: [UInt8] = []
        variable(&b, type: .exec, parts: [f, a], ts: ts, pid: pid, tid: tid)
        put(&b, Offsets.execOldTid, tid)
        put(&b, Offsets.execPpid, ppid)
        put(&b, Offsets.execUid, uid)
        put(&b, Offsets.execArgc, UInt16(argv.count))
        putString(&b, Offsets.execComm, comm, max: commLength)
        return b
    }

    public static func exit(ts: UInt64, pid: UInt32, tid: UInt32, status: Int32, group: Bool, ppid: UInt32, lifetime: UInt64, comm: String) -> [UInt8] {
        var b: [UInt8] = []
        header(&b, type: .exit, size: EventType.exit.fixedSize, ts: ts, flags: group ? exitGroupFlag : 0, pid: pid, tid: tid)
        put(&b, Offsets.exitStatus, status)
        put(&b, Offsets.exitPpid, ppid)
        put(&b, Offsets.exitLifetime, lifetime)
        putString(&b, Offsets.exitComm, comm, max: commLength)
        return b
    }

    public static func file(ts: UInt64, pid: UInt32, tid: UInt32, op: FileOp, ret: Int64, dirfd: Int32 = -100, flags: UInt32 = 0, mode: UInt32 = 0, path: String, path2: String = "") -> [UInt8] {
        var b: [UInt8] = []
        variable(&b, type: .file, parts: [Array(path.utf8), Array(path2.utf8)], ts: ts, pid: pid, tid: tid)
        put(&b, Offsets.fileRet, ret)
        put(&b, Offsets.fileOp, op.rawValue)
        put(&b, Offsets.fileDirfd, dirfd)
        put(&b, Offsets.fileFlags, flags)
        put(&b, Offsets.fileMode, mode)
        return b
    }

    public static func gauge(ts: UInt64, kind: GaugeKind, value: UInt64, limit: UInt64, pid: UInt32 = 0, name: String = "") -> [UInt8] {
        var b: [UInt8] = []
        variable(&b, type: .gauge, parts: [Array(name.utf8.prefix(1024))], ts: ts, pid: pid, tid: pid)
        put(&b, Offsets.gaugeValue, value)
        put(&b, Offsets.gaugeLimit, limit)
        put(&b, Offsets.gaugeKind, kind.rawValue)
        return b
    }

    public static func loss(ts: UInt64, cpu: UInt16, lost: UInt64, firstTs: UInt64) -> [UInt8] {
        var b: [UInt8] = []
        header(&b, type: .loss, size: EventType.loss.fixedSize, ts: ts, cpu: cpu, pid: 0, tid: 0)
        put(&b, Offsets.lossLost, lost)
        put(&b, Offsets.lossFirstTs, firstTs)
        return b
    }
}
