import CFlightboxEvents

// What the raw fields of the generated views mean: flags, enums, decoded
// values. Only what the generator cannot know lives here.

extension SyscallRecord {
    /// A 32-bit (ia32) syscall: number and arguments follow that ABI.
    @inlinable public var isCompat: Bool { event.flags & syscallCompatFlag != 0 }
    /// The syscall's name in its ABI ("ia32:N" for 32-bit calls, which have
    /// their own numbering), in the trace's numbering (`arch`; by default this machine's).
    public func displayName(arch: SyscallArch = .host) -> String { isCompat ? "ia32:\(nr)" : syscallName(nr, arch: arch) }
    @inlinable public var fdKindValue: FdKind { FdKind(rawValue: fdKind) ?? .unresolved }
    public static let argCount = Int(FB_SYSCALL_ARGS)
}

extension ForkRecord {
    /// clone(CLONE_THREAD): a new thread, not a process.
    @inlinable public var isThread: Bool { event.flags & forkThreadFlag != 0 }
}

extension ExecRecord {
    /// The filename or argv was longer than captured.
    @inlinable public var isTruncated: Bool { event.flags & execTruncatedFlag != 0 }
}

extension ExitRecord {
    /// Exit code (bits 8-15 of the wait status).
    @inlinable public var exitCode: Int { Int((status >> 8) & 0xff) }
    /// Terminating signal (bits 0-6), 0 for a normal exit.
    @inlinable public var exitSignal: Int { Int(status & 0x7f) }
    /// The last thread: the process is gone.
    @inlinable public var isGroupExit: Bool { event.flags & exitGroupFlag != 0 }
}

extension FileRecord {
    @inlinable public var opValue: FileOp? { FileOp(rawValue: op) }
    /// A path was longer than captured.
    @inlinable public var isTruncated: Bool { event.flags & fileTruncatedFlag != 0 }
}

extension SignalRecord {
    /// True for a signal being sent, false for one being delivered.
    @inlinable public var isGenerate: Bool { op == UInt32(FB_SIGNAL_GENERATE.rawValue) }
    public var opName: String { isGenerate ? "generate" : "deliver" }
}

extension BlockRecord {
    public var opName: String {
        switch op {
        case 0: "read"
        case 1: "write"
        case 2: "flush"
        case 3: "discard"
        case 5: "secure-erase"
        case 9: "write-zeroes"
        default: "op\(op)"
        }
    }
}

extension PrivilegeRecord {
    public var opName: String {
        ["", "setid", "capset", "ptrace", "vm-write", "module", "bpf", "memfd", "mount", "chmod-exec", "dup-stdio"][safe: Int(op)] ?? "op\(op)"
    }
    /// The strings present (memfd name; mount source, target, type; chmod path).
    public var strings: [String] { [str, str2, str3].filter { !$0.isEmpty } }
}

extension SchedRecord {
    /// True for a run-queue wait, false for time blocked off the CPU.
    @inlinable public var isRunqueueWait: Bool { kind == UInt32(FB_SCHED_RUNQ.rawValue) }
}

extension GaugeRecord {
    @inlinable public var gaugeKind: GaugeKind? { GaugeKind(rawValue: kind) }
}

extension TCPRecord {
    public var kindName: String {
        switch kind {
        case 1: "state"
        case 2: "retransmit"
        case 3: "reset_sent"
        case 4: "reset_received"
        case 5: "refused"
        default: "kind\(kind)"
        }
    }
    public var sourceAddress: String { ipText(saddr, family: family) }
    public var destinationAddress: String { ipText(daddr, family: family) }
}

extension NetbytesRecord {
    public var reasonName: String { ["", "close", "interval", "idle", "handoff"][safe: Int(reason)] ?? "reason\(reason)" }
    /// "out" (connected), "in" (accepted) or "unknown" (opened before the recording).
    public var directionName: String { ["unknown", "out", "in"][safe: Int(direction)] ?? "direction\(direction)" }
    public var sourceAddress: String { ipText(saddr, family: family) }
    public var destinationAddress: String { ipText(daddr, family: family) }
}

extension PrivilegeRecord {
    /// Capabilities held in some set after the call that were in no set
    /// before it (permitted or inheritable; effective is within permitted):
    /// what capset "adds". Re-raising a capability still permitted is not.
    @inlinable public var capsAdded: UInt64 {
        (capEffective | capPermitted | capInheritable) & ~(oldCapEffective | oldCapPermitted | oldCapInheritable)
    }
    /// Capabilities the effective set gained, permitted before or not.
    @inlinable public var capsRaised: UInt64 { capEffective & ~oldCapEffective }
}

/// Linux capability names by number (include/uapi/linux/capability.h), as capsh prints them.
public let capabilityNames = [
    "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid", "cap_kill", "cap_setgid",
    "cap_setuid", "cap_setpcap", "cap_linux_immutable", "cap_net_bind_service", "cap_net_broadcast", "cap_net_admin",
    "cap_net_raw", "cap_ipc_lock", "cap_ipc_owner", "cap_sys_module", "cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace",
    "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot", "cap_sys_nice", "cap_sys_resource", "cap_sys_time",
    "cap_sys_tty_config", "cap_mknod", "cap_lease", "cap_audit_write", "cap_audit_control", "cap_setfcap",
    "cap_mac_override", "cap_mac_admin", "cap_syslog", "cap_wake_alarm", "cap_block_suspend", "cap_audit_read",
    "cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
]

/// A capability set as names joined by commas ("cap_net_raw,cap_sys_admin"); unknown bits as cap_N, none as "none".
public func capabilityText(_ set: UInt64) -> String {
    if set == 0 { return "none" }
    return (0..<64).filter { set & (1 << UInt64($0)) != 0 }.map { capabilityNames[safe: $0] ?? "cap_\($0)" }.joined(separator: ",")
}

func ipText(_ b: UnsafeRawBufferPointer, family: UInt16) -> String {
    if family == 2 { return b.prefix(4).map { String($0) }.joined(separator: ".") }
    return stride(from: 0, to: 16, by: 2).map { String(UInt16(b[$0]) << 8 | UInt16(b[$0 + 1]), radix: 16) }.joined(separator: ":")
}

extension WritesRecord {
    @inlinable public var fdKindValue: FdKind { FdKind(rawValue: fdKind) ?? .unresolved }
    public var reasonName: String { ["", "close", "interval", "idle"][safe: Int(reason)] ?? "reason\(reason)" }
}

extension ReclaimRecord {
    /// A memory cgroup reclaiming to stay under its limit, not the system short of memory.
    @inlinable public var isMemcg: Bool { event.flags & reclaimMemcgFlag != 0 }
}

extension ProbeRecord {
    /// A USDT probe firing, not a function's return.
    @inlinable public var isUSDT: Bool { event.flags & probeUSDTFlag != 0 }
    /// A return whose entry the kernel did not see: latency and args are unknown (0).
    @inlinable public var missedEntry: Bool { event.flags & probeNoEntryFlag != 0 }
    /// "usdt", "return", or "return_no_entry".
    public var kindName: String { isUSDT ? "usdt" : missedEntry ? "return_no_entry" : "return" }
}

/// "major:minor" of a kernel dev_t (major << 20 | minor).
public func deviceName(_ dev: UInt32) -> String { "\(dev >> 20):\(dev & 0xfffff)" }
