import CFlightboxEvents
import FlightboxEvents

/// What a security event is, as `evt.type` names it: the vocabulary of the
/// rules. Each comes from one record type (and its op or state change), so
/// a rule is shown only the events its condition can match.
public enum SecurityEventKind: Int, CaseIterable, Sendable {
    case exec, fork, exit
    case open, unlink, rename
    case setid, capset, ptrace, vmWrite, module, bpf, memfd, mount, chmodExec, dupStdio
    case connect, connected, refused, accept, resetSent, resetReceived
    case signal
    case netBytes

    public var name: String {
        switch self {
        case .exec: "exec"
        case .fork: "fork"
        case .exit: "exit"
        case .open: "open"
        case .unlink: "unlink"
        case .rename: "rename"
        case .setid: "setid"
        case .capset: "capset"
        case .ptrace: "ptrace"
        case .vmWrite: "process_vm_writev"
        case .module: "init_module"
        case .bpf: "bpf"
        case .memfd: "memfd_create"
        case .mount: "mount"
        case .chmodExec: "chmod_exec"
        case .dupStdio: "dup_stdio"
        case .connect: "connect"
        case .connected: "connected"
        case .refused: "refused"
        case .accept: "accept"
        case .resetSent: "reset_sent"
        case .resetReceived: "reset_received"
        case .signal: "signal"
        case .netBytes: "net_bytes"
        }
    }

    public static let byName: [String: SecurityEventKind] = Dictionary(uniqueKeysWithValues: allCases.map { ($0.name, $0) })

    /// The kind of `e`, or nil for events no rule can see (syscalls,
    /// scheduling, gauges, ...). A cheap switch on the record's type and op.
    @inlinable
    public static func of(_ e: Event) -> SecurityEventKind? {
        switch e.rawType {
        case EventType.exec.rawValue: return .exec
        case EventType.fork.rawValue: return e.flags & forkThreadFlag == 0 ? .fork : nil
        case EventType.exit.rawValue: return e.flags & exitGroupFlag != 0 ? .exit : nil
        case EventType.file.rawValue:
            switch e.as(FileRecord.self)?.op ?? 0 {
            case 1: return .open
            case 2: return .unlink
            case 3: return .rename
            default: return nil
            }
        case EventType.privilege.rawValue:
            guard let p = e.as(PrivilegeRecord.self) else { return nil }
            switch p.op {
            case 1: return .setid
            case 2: return .capset
            case 3: return .ptrace
            case 4: return .vmWrite
            case 5: return .module
            case 6: return .bpf
            case 7: return .memfd
            case 8: return .mount
            case 9: return .chmodExec
            case 10: return .dupStdio
            default: return nil
            }
        case EventType.tcp.rawValue:
            guard let t = e.as(TCPRecord.self) else { return nil }
            switch t.kind {
            case 1:
                // TCP_CLOSE(7) -> SYN_SENT(2): a connect begins (in the caller's context).
                if t.newstate == 2 { return .connect }
                if t.oldstate == 2, t.newstate == 1 { return .connected }
                if t.oldstate == 2, t.newstate == 7 { return .refused }
                if t.oldstate == 3, t.newstate == 1 { return .accept }
                return nil
            case 3: return .resetSent
            case 4: return .resetReceived
            default: return nil
            }
        case EventType.signal.rawValue:
            guard let s = e.as(SignalRecord.self), s.isGenerate else { return nil }
            return .signal
        case EventType.netbytes.rawValue:
            return .netBytes
        default:
            return nil
        }
    }
}

/// A set of `SecurityEventKind`s.
public struct KindSet: Equatable, Sendable {
    public var bits: UInt64
    public init(bits: UInt64 = 0) { self.bits = bits }
    public init(_ kinds: [SecurityEventKind]) { bits = kinds.reduce(0) { $0 | 1 << UInt64($1.rawValue) } }
    public static let all = KindSet(SecurityEventKind.allCases)
    public static let none = KindSet()
    @inlinable public func contains(_ k: SecurityEventKind) -> Bool { bits & (1 << UInt64(k.rawValue)) != 0 }
    public var isEmpty: Bool { bits == 0 }
    public func union(_ o: KindSet) -> KindSet { KindSet(bits: bits | o.bits) }
    public func intersection(_ o: KindSet) -> KindSet { KindSet(bits: bits & o.bits) }
    public var complement: KindSet { KindSet(bits: KindSet.all.bits & ~bits) }
    public var kinds: [SecurityEventKind] { SecurityEventKind.allCases.filter(contains) }

    /// The record types these kinds come from, for `Detector.observedTypes`.
    public var recordTypes: [EventType] {
        var out: [EventType] = []
        func add(_ t: EventType, _ ks: [SecurityEventKind]) { if ks.contains(where: contains) { out.append(t) } }
        add(.file, [.open, .unlink, .rename])
        add(.privilege, [.setid, .capset, .ptrace, .vmWrite, .module, .bpf, .memfd, .mount, .chmodExec, .dupStdio])
        add(.tcp, [.connect, .connected, .refused, .accept, .resetSent, .resetReceived])
        add(.signal, [.signal])
        add(.netbytes, [.netBytes])
        return out
    }
}

/// The value type of a field or a literal.
public enum FieldType: String, Sendable {
    case string, int, bool
}

/// What an evaluator sees of one event: the record, its kind, and the
/// current execution of its process (nil when unknown).
public struct RuleInput {
    public let event: Event
    public let kind: SecurityEventKind
    // Unowned: the lineage table keeps them alive while an event is judged,
    // and a strong reference cost a retain and a release per field read.
    public unowned(unsafe) let proc: Execution?
    public unowned(unsafe) let lineage: LineageTable
    /// 128 bytes the evaluator may format addresses into (owned by the rule engine).
    let scratch: UnsafeMutableRawBufferPointer

    init(event: Event, kind: SecurityEventKind, proc: Execution?, lineage: LineageTable, scratch: UnsafeMutableRawBufferPointer) {
        self.event = event
        self.kind = kind
        self.proc = proc
        self.lineage = lineage
        self.scratch = scratch
    }
}

/// How a field is read from an input. Strings are raw bytes valid during
/// the evaluation of one event; nil means the field is absent for this
/// event, and every comparison with an absent field is false.
public enum FieldAccess {
    case string((RuleInput) -> UnsafeRawBufferPointer?)
    case int((RuleInput) -> Int64?)
    case bool((RuleInput) -> Bool?)
    /// A string of every ancestor (proc.aname, proc.aexe without an index):
    /// a comparison holds if it holds for any of them.
    case anyAncestor((Execution) -> UnsafeRawBufferPointer)

    public var type: FieldType {
        switch self {
        case .string, .anyAncestor: .string
        case .int: .int
        case .bool: .bool
        }
    }
}

/// One documented field.
public struct FieldInfo: Sendable {
    public let name: String
    public let type: FieldType
    public let doc: String
}

/// The fields a condition or an output can name.
public enum Fields {
    /// Ancestors `proc.aname` (no index) looks at.
    public static let maxAncestors = 32

    public static let catalog: [FieldInfo] = [
        FieldInfo(name: "evt.type", type: .string, doc: "the event kind: " + SecurityEventKind.allCases.map(\.name).joined(separator: ", ")),
        FieldInfo(name: "evt.res", type: .int, doc: "the call's result (file, privilege events): >= 0 success, -errno failure"),
        FieldInfo(name: "evt.failed", type: .bool, doc: "the call failed (file, privilege events)"),
        FieldInfo(name: "evt.num", type: .int, doc: "the event's sequence number in the trace"),
        FieldInfo(name: "proc.pid", type: .int, doc: "process id"),
        FieldInfo(name: "proc.tid", type: .int, doc: "thread id"),
        FieldInfo(name: "proc.ppid", type: .int, doc: "parent process id (of the known lineage)"),
        FieldInfo(name: "proc.name", type: .string, doc: "command name (comm, at most 15 bytes)"),
        FieldInfo(name: "proc.exe", type: .string, doc: "the executed file as exec named it"),
        FieldInfo(name: "proc.cmdline", type: .string, doc: "argv joined by spaces"),
        FieldInfo(name: "proc.args", type: .string, doc: "argv without argv[0], joined by spaces"),
        FieldInfo(name: "proc.exec_id", type: .string, doc: "unique id of this execution: <start ns>:<pid> (0 start: running before the trace)"),
        FieldInfo(name: "proc.exe_written", type: .bool, doc: "the executed file was written, created or chmod +x in this trace before the exec"),
        FieldInfo(name: "proc.depth", type: .int, doc: "known ancestors"),
        FieldInfo(name: "proc.pname", type: .string, doc: "parent's command name"),
        FieldInfo(name: "proc.pexe", type: .string, doc: "parent's executed file"),
        FieldInfo(name: "proc.pcmdline", type: .string, doc: "parent's argv"),
        FieldInfo(name: "proc.pexec_id", type: .string, doc: "parent's exec id"),
        FieldInfo(name: "proc.aname[N]", type: .string, doc: "N-th ancestor's command name (1 = parent); without [N]: any ancestor"),
        FieldInfo(name: "proc.aexe[N]", type: .string, doc: "N-th ancestor's executed file; without [N]: any ancestor"),
        FieldInfo(name: "user.uid", type: .int, doc: "real uid (after the call, for setid and capset)"),
        FieldInfo(name: "user.euid", type: .int, doc: "effective uid after a privilege call"),
        FieldInfo(name: "user.old_uid", type: .int, doc: "real uid before a setid or capset call"),
        FieldInfo(name: "user.old_euid", type: .int, doc: "effective uid before a setid or capset call"),
        FieldInfo(name: "fd.name", type: .string, doc: "path of open, unlink, rename (old name), chmod_exec; memfd name; mount target"),
        FieldInfo(name: "fd.name2", type: .string, doc: "new name of a rename; mount source"),
        FieldInfo(name: "fd.written", type: .string, doc: "the path an event creates or changes: an open for writing, a rename's new name, a chmod_exec"),
        FieldInfo(name: "fd.write", type: .bool, doc: "an open for writing (O_WRONLY, O_RDWR, O_CREAT or O_TRUNC)"),
        FieldInfo(name: "fd.type", type: .string, doc: "dup_stdio: what now sits on the fd: " + Fields.fdTypeNames.dropFirst().joined(separator: ", ") + " (ipv4, ipv6, unix for sockets)"),
        FieldInfo(name: "proc.stdin_type", type: .string, doc: "exec: what fd 0 of the new image is (same values as fd.type; none when closed)"),
        FieldInfo(name: "proc.stdout_type", type: .string, doc: "exec: what fd 1 of the new image is"),
        FieldInfo(name: "fd.flags", type: .int, doc: "open(2) flags"),
        FieldInfo(name: "fd.fstype", type: .string, doc: "mount: the file system type"),
        FieldInfo(name: "dup.oldfd", type: .int, doc: "dup_stdio: the fd duplicated"),
        FieldInfo(name: "dup.newfd", type: .int, doc: "dup_stdio: the fd 0, 1 or 2 it replaced"),
        FieldInfo(name: "target.pid", type: .int, doc: "ptrace, process_vm_writev, signal: the target process"),
        FieldInfo(name: "target.is_self", type: .bool, doc: "the target process is the caller itself"),
        FieldInfo(name: "target.name", type: .string, doc: "the target process's command name"),
        FieldInfo(name: "ptrace.request", type: .int, doc: "ptrace request (16 PTRACE_ATTACH, 0x4206 PTRACE_SEIZE, 4/5 POKETEXT/POKEDATA)"),
        FieldInfo(name: "bpf.cmd", type: .int, doc: "bpf(2) command (5 BPF_PROG_LOAD)"),
        FieldInfo(name: "signal.sig", type: .int, doc: "signal number"),
        FieldInfo(name: "net.sip", type: .string, doc: "TCP source address (net_bytes: the local one)"),
        FieldInfo(name: "net.dip", type: .string, doc: "TCP destination address (net_bytes: the remote one)"),
        FieldInfo(name: "net.sport", type: .int, doc: "TCP source port"),
        FieldInfo(name: "net.dport", type: .int, doc: "TCP destination port"),
        FieldInfo(name: "net.bytes_sent", type: .int, doc: "net_bytes: bytes this process sent on the connection since the recording saw it, this summary included"),
        FieldInfo(name: "net.bytes_received", type: .int, doc: "net_bytes: bytes it received on the connection, likewise"),
        FieldInfo(name: "net.interval_sent", type: .int, doc: "net_bytes: bytes sent in this summary (at most 1 s)"),
        FieldInfo(name: "net.interval_received", type: .int, doc: "net_bytes: bytes received in this summary"),
        FieldInfo(name: "net.direction", type: .string, doc: "net_bytes: out (the process connected), in (accepted from a listener) or unknown (opened before the recording)"),
        FieldInfo(name: "net.host_sent", type: .int, doc: "net_bytes: bytes this execution sent to this remote address over all its connections not accepted (out or unknown), this summary included"),
        FieldInfo(name: "net.host_received", type: .int, doc: "net_bytes: bytes it received from that address over the same connections"),
        FieldInfo(name: "net.host_send_ratio", type: .int, doc: "net_bytes: net.host_sent / net.host_received, rounded down (net.host_sent when nothing was received)"),
        FieldInfo(name: "cap.effective", type: .int, doc: "setid, capset: the effective capability set after the call (bit n: capability n)"),
        FieldInfo(name: "cap.permitted", type: .int, doc: "setid, capset: the permitted set after the call"),
        FieldInfo(name: "cap.inheritable", type: .int, doc: "setid, capset: the inheritable set after the call"),
        FieldInfo(name: "cap.old_effective", type: .int, doc: "setid, capset: the effective set before the call"),
        FieldInfo(name: "cap.old_permitted", type: .int, doc: "setid, capset: the permitted set before the call"),
        FieldInfo(name: "cap.old_inheritable", type: .int, doc: "setid, capset: the inheritable set before the call"),
        FieldInfo(name: "cap.added", type: .int, doc: "setid, capset: capabilities in some set after the call that were in no set before it (0: none); re-raising a permitted capability is not adding"),
        FieldInfo(name: "cap.added_names", type: .string, doc: "cap.added as names (cap_sys_admin,cap_net_raw), none when empty"),
        FieldInfo(name: "cap.raised", type: .int, doc: "setid, capset: capabilities the effective set gained, permitted before or not"),
        FieldInfo(name: "cap.raised_names", type: .string, doc: "cap.raised as names"),
    ]

    /// The access of a field name (with its index, if any), or a reason it is unknown.
    static func access(_ name: String, index: Int?) -> Result<FieldAccess, FieldProblem> {
        func proc(_ f: @escaping (Execution) -> UnsafeRawBufferPointer) -> FieldAccess { .string { $0.proc.map(f) } }
        func procInt(_ f: @escaping (Execution) -> Int64) -> FieldAccess { .int { $0.proc.map(f) } }
        func parent(_ f: @escaping (Execution) -> UnsafeRawBufferPointer) -> FieldAccess { .string { $0.proc?.parent.map(f) } }
        if index != nil, name != "proc.aname", name != "proc.aexe" {
            return .failure(FieldProblem(reason: "'\(name)' takes no index"))
        }
        switch name {
        case "evt.type": return .success(.string { kindNames[$0.kind.rawValue].buffer })
        case "evt.res": return .success(.int { result($0) })
        case "evt.failed": return .success(.bool { result($0).map { $0 < 0 } })
        case "evt.num": return .success(.int { Int64(truncatingIfNeeded: $0.event.sequence) })
        case "proc.pid": return .success(.int { Int64($0.event.pid) })
        case "proc.tid": return .success(.int { Int64($0.event.tid) })
        case "proc.ppid": return .success(.int { $0.proc?.parent.map { Int64($0.pid) } })
        case "proc.name": return .success(proc { $0.comm.buffer })
        case "proc.exe": return .success(proc { $0.exe.buffer })
        case "proc.cmdline": return .success(proc { $0.cmdline.buffer })
        case "proc.args": return .success(proc { $0.args.buffer })
        case "proc.exec_id": return .success(proc { $0.execId.buffer })
        case "proc.exe_written": return .success(.bool { $0.proc?.exeWritten })
        case "proc.depth": return .success(procInt { Int64($0.depth) })
        case "proc.pname": return .success(parent { $0.comm.buffer })
        case "proc.pexe": return .success(parent { $0.exe.buffer })
        case "proc.pcmdline": return .success(parent { $0.cmdline.buffer })
        case "proc.pexec_id": return .success(parent { $0.execId.buffer })
        case "proc.aname", "proc.aexe":
            let pick: (Execution) -> UnsafeRawBufferPointer = name == "proc.aname" ? { $0.comm.buffer } : { $0.exe.buffer }
            guard let n = index else { return .success(.anyAncestor(pick)) }
            guard n >= 1, n <= maxAncestors else { return .failure(FieldProblem(reason: "ancestor index \(n) is out of range (1 to \(maxAncestors))")) }
            return .success(.string { $0.proc?.ancestor(n).map(pick) })
        case "user.uid":
            return .success(.int { i in
                if i.kind == .exec, let x = i.event.as(ExecRecord.self) { return Int64(x.uid) }
                if let p = i.event.as(PrivilegeRecord.self) { return Int64(p.uid) }
                return i.proc.map { Int64($0.uid) }
            })
        case "user.euid": return .success(.int { $0.event.as(PrivilegeRecord.self).map { Int64($0.euid) } })
        case "user.old_uid": return .success(.int { $0.event.as(PrivilegeRecord.self).map { Int64($0.oldUid) } })
        case "user.old_euid": return .success(.int { $0.event.as(PrivilegeRecord.self).map { Int64($0.oldEuid) } })
        case "fd.name":
            return .success(.string { i in
                if let f = i.event.as(FileRecord.self) { return f.pathBytes }
                if let p = i.event.as(PrivilegeRecord.self) {
                    // mount: str is the source, str2 the target: the target is the name.
                    return i.kind == .mount ? p.str2Bytes : (p.strLen > 0 ? p.strBytes : nil)
                }
                return nil
            })
        case "fd.name2":
            return .success(.string { i in
                if let f = i.event.as(FileRecord.self) { return f.path2Len > 0 ? f.path2Bytes : nil }
                if i.kind == .mount, let p = i.event.as(PrivilegeRecord.self) { return p.strBytes }
                return nil
            })
        case "fd.written":
            return .success(.string { i in
                switch i.kind {
                case .open:
                    guard let f = i.event.as(FileRecord.self), f.ret >= 0, f.openFlags & (3 | 0o100 | 0o1000) != 0 else { return nil }
                    return f.pathBytes
                case .rename:
                    guard let f = i.event.as(FileRecord.self), f.ret >= 0, f.path2Len > 0 else { return nil }
                    return f.path2Bytes
                case .chmodExec:
                    guard let p = i.event.as(PrivilegeRecord.self), p.ret >= 0, p.strLen > 0 else { return nil }
                    return p.strBytes
                default: return nil
                }
            })
        case "fd.write":
            return .success(.bool { i in
                guard i.kind == .open, let f = i.event.as(FileRecord.self) else { return nil }
                return f.openFlags & (3 | 0o100 | 0o1000) != 0 // O_WRONLY|O_RDWR, O_CREAT, O_TRUNC
            })
        case "fd.type":
            return .success(.string { i in
                guard i.kind == .dupStdio, let p = i.event.as(PrivilegeRecord.self), p.fdKind != 0 else { return nil }
                return fdType(kind: p.fdKind, family: p.sockFamily)
            })
        case "proc.stdin_type", "proc.stdout_type":
            let stdin = name == "proc.stdin_type"
            return .success(.string { i in
                guard i.kind == .exec, let x = i.event.as(ExecRecord.self) else { return nil }
                return stdin ? fdType(kind: x.stdinKind, family: x.stdinFamily) : fdType(kind: x.stdoutKind, family: x.stdoutFamily)
            })
        case "fd.flags": return .success(.int { $0.event.as(FileRecord.self).map { Int64($0.openFlags) } })
        case "fd.fstype": return .success(.string { i in i.kind == .mount ? i.event.as(PrivilegeRecord.self)?.str3Bytes : nil })
        case "dup.oldfd": return .success(privArg(.dupStdio, 0))
        case "dup.newfd": return .success(privArg(.dupStdio, 1))
        case "ptrace.request": return .success(privArg(.ptrace, 0))
        case "bpf.cmd": return .success(privArg(.bpf, 0))
        case "target.pid":
            return .success(.int { i in
                switch i.kind {
                case .ptrace: return i.event.as(PrivilegeRecord.self).map { Int64(truncatingIfNeeded: Int32(truncatingIfNeeded: $0.args(1))) }
                case .vmWrite: return i.event.as(PrivilegeRecord.self).map { Int64(truncatingIfNeeded: Int32(truncatingIfNeeded: $0.args(0))) }
                case .signal: return i.event.as(SignalRecord.self).map { Int64($0.targetPid) }
                default: return nil
                }
            })
        case "target.is_self":
            guard case .success(.int(let target)) = access("target.pid", index: nil) else { preconditionFailure() }
            return .success(.bool { i in target(i).map { $0 == Int64(i.event.pid) } })
        case "target.name":
            return .success(.string { i in
                let pid: UInt32?
                switch i.kind {
                case .ptrace: pid = i.event.as(PrivilegeRecord.self).map { UInt32(truncatingIfNeeded: $0.args(1)) }
                case .vmWrite: pid = i.event.as(PrivilegeRecord.self).map { UInt32(truncatingIfNeeded: $0.args(0)) }
                case .signal: pid = i.event.as(SignalRecord.self)?.targetPid
                default: pid = nil
                }
                return pid.flatMap { i.lineage.execution($0)?.comm.buffer }
            })
        case "signal.sig": return .success(.int { $0.event.as(SignalRecord.self).map { Int64($0.sig) } })
        case "net.sip": return .success(.string { i in address(i, source: true) })
        case "net.dip": return .success(.string { i in address(i, source: false) })
        case "net.sport": return .success(.int { i in i.event.as(TCPRecord.self).map { Int64($0.sport) } ?? i.event.as(NetbytesRecord.self).map { Int64($0.sport) } })
        case "net.dport": return .success(.int { i in i.event.as(TCPRecord.self).map { Int64($0.dport) } ?? i.event.as(NetbytesRecord.self).map { Int64($0.dport) } })
        case "net.bytes_sent": return .success(.int { $0.event.as(NetbytesRecord.self).map { clamp($0.totalSent) } })
        case "net.bytes_received": return .success(.int { $0.event.as(NetbytesRecord.self).map { clamp($0.totalReceived) } })
        case "net.interval_sent": return .success(.int { $0.event.as(NetbytesRecord.self).map { clamp($0.bytesSent) } })
        case "net.interval_received": return .success(.int { $0.event.as(NetbytesRecord.self).map { clamp($0.bytesReceived) } })
        case "net.direction":
            return .success(.string { i in
                // A direction this reader does not know is absent.
                guard let n = i.event.as(NetbytesRecord.self), Int(n.direction) < directions.count else { return nil }
                return directions[Int(n.direction)].buffer
            })
        case "net.host_sent": return .success(.int { i in i.lineage.traffic.current(i.event).map { clamp($0.sent) } })
        case "net.host_received": return .success(.int { i in i.lineage.traffic.current(i.event).map { clamp($0.received) } })
        case "net.host_send_ratio": return .success(.int { i in i.lineage.traffic.current(i.event).map { clamp($0.sent / max($0.received, 1)) } })
        case "cap.effective": return .success(caps { $0.capEffective })
        case "cap.permitted": return .success(caps { $0.capPermitted })
        case "cap.inheritable": return .success(caps { $0.capInheritable })
        case "cap.old_effective": return .success(caps { $0.oldCapEffective })
        case "cap.old_permitted": return .success(caps { $0.oldCapPermitted })
        case "cap.old_inheritable": return .success(caps { $0.oldCapInheritable })
        case "cap.added": return .success(caps { $0.capsAdded })
        case "cap.raised": return .success(caps { $0.capsRaised })
        case "cap.added_names", "cap.raised_names":
            let added = name == "cap.added_names"
            return .success(.string { i in
                guard i.kind == .setid || i.kind == .capset, let p = i.event.as(PrivilegeRecord.self) else { return nil }
                return capabilityNames(added ? p.capsAdded : p.capsRaised, i, slot: added ? 0 : 1)
            })
        default:
            let known = catalog.map { $0.name.replacingIndex() }
            let near = known.first { $0.hasPrefix(name.split(separator: ".").first.map { String($0) + "." } ?? name) }
            return .failure(FieldProblem(reason: "unknown field '\(name)'" + (near.map { " (fields of that class include '\($0)')" } ?? "")))
        }
    }

    struct FieldProblem: Error { let reason: String }

    /// `enum fb_fd_kind` by number, as fd.type names them (0: nothing open or unknown).
    static let fdTypeNames = ["none", "file", "directory", "char", "block", "pipe", "socket", "symlink", "anon", "bad"]
    static let fdTypes: [Bytes] = fdTypeNames.map(Bytes.init)
    static let socketTypes: [UInt16: Bytes] = [1: Bytes("unix"), 2: Bytes("ipv4"), 10: Bytes("ipv6")]

    /// A record predating these fields reads kind 0: the field is absent then.
    static func fdType(kind: UInt8, family: UInt16) -> UnsafeRawBufferPointer? {
        if kind == 6, let s = socketTypes[family] { return s.buffer }
        return Int(kind) < fdTypes.count ? fdTypes[Int(kind)].buffer : nil
    }

    static let kindNames: [Bytes] = SecurityEventKind.allCases.map { Bytes($0.name) }

    static func result(_ i: RuleInput) -> Int64? {
        if let f = i.event.as(FileRecord.self) { return f.ret }
        if let p = i.event.as(PrivilegeRecord.self) { return p.ret }
        return nil
    }

    static func privArg(_ kind: SecurityEventKind, _ n: Int) -> FieldAccess {
        .int { i in i.kind == kind ? i.event.as(PrivilegeRecord.self).map { Int64(truncatingIfNeeded: $0.args(n)) } : nil }
    }

    /// The engine's scratch buffer: two addresses of 64 bytes, then two
    /// capability name lists.
    static let scratchBytes = 128 + 2 * capabilityTextBytes
    static let capabilityTextBytes = 1024

    /// `enum fb_net_direction` by number, as net.direction names them.
    static let directions = [Bytes("unknown"), Bytes("out"), Bytes("in")]

    /// A byte count as an int field (a counter past Int64.max cannot happen; it would read as the maximum).
    static func clamp(_ v: UInt64) -> Int64 { Int64(clamping: v) }

    /// A capability set of a setid or capset event (a record before these fields reads 0).
    static func caps(_ f: @escaping (PrivilegeRecord) -> UInt64) -> FieldAccess {
        .int { i in
            guard i.kind == .setid || i.kind == .capset, let p = i.event.as(PrivilegeRecord.self) else { return nil }
            return Int64(bitPattern: f(p))
        }
    }

    /// `set` as capability names in the scratch buffer's slot 0 or 1.
    static func capabilityNames(_ set: UInt64, _ i: RuleInput, slot: Int) -> UnsafeRawBufferPointer {
        let start = 128 + slot * capabilityTextBytes
        let out = UnsafeMutableRawBufferPointer(rebasing: i.scratch[start..<(start + capabilityTextBytes)])
        let text = capabilityText(set)
        let n = min(text.utf8.count, capabilityTextBytes)
        for (k, b) in text.utf8.prefix(n).enumerated() { out[k] = b }
        return UnsafeRawBufferPointer(start: out.baseAddress, count: n)
    }

    /// Addresses as text, in the engine's scratch buffer: built only when a
    /// rule reads net.sip or net.dip, which only TCP and net_bytes events reach.
    static func address(_ i: RuleInput, source: Bool) -> UnsafeRawBufferPointer? {
        let scratch = i.scratch
        let text: String
        if let t = i.event.as(TCPRecord.self) {
            text = source ? t.sourceAddress : t.destinationAddress
        } else if let n = i.event.as(NetbytesRecord.self) {
            text = source ? n.sourceAddress : n.destinationAddress
        } else {
            return nil
        }
        let slot = UnsafeMutableRawBufferPointer(rebasing: scratch[(source ? 0 : 64)..<(source ? 64 : 128)])
        let n = min(text.utf8.count, 64)
        for (k, b) in text.utf8.prefix(n).enumerated() { slot[k] = b }
        return UnsafeRawBufferPointer(start: slot.baseAddress, count: n)
    }
}

extension String {
    func replacingIndex() -> String { hasSuffix("[N]") ? String(dropLast(3)) : self }
}
