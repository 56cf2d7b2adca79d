extension Event {
    /// The event as one JSON object with stable key order: the header's
    /// fields, the process's name when known, friendlier values derived from
    /// the record (names for numbers), and under "fields" every field of the
    /// record by its schema name, raw (the schema in the trace and SPEC.md
    /// describe each). Syscall numbers are named in `arch`'s numbering (the
    /// trace's, see `SyscallArch(schema:machine:)`).
    public func json(comm: String? = nil, arch: SyscallArch = .host) -> JSON {
        var kv: [(String, JSON)] = [
            ("seq", .uint(sequence)), ("ts_ns", .uint(timestamp)),
            ("type", .string(type?.name ?? "unknown_\(rawType)")),
            ("cpu", .uint(UInt64(cpu))), ("flags", .uint(UInt64(flags))), ("pid", .uint(UInt64(pid))), ("tid", .uint(UInt64(tid))),
        ]
        if let comm { kv.append(("comm", .string(comm))) }
        switch payload {
        case .syscall(let r):
            kv += [("syscall", .string(r.displayName(arch: arch))), ("compat", .bool(r.isCompat)), ("fd_kind_name", .string(r.fdKindValue.name))]
        case .fork(let r):
            kv.append(("thread", .bool(r.isThread)))
        case .exec(let r):
            kv.append(("truncated", .bool(r.isTruncated)))
        case .exit(let r):
            kv += [("exit_code", .int(Int64(r.exitCode))), ("signal", .int(Int64(r.exitSignal))), ("process_exit", .bool(r.isGroupExit))]
        case .file(let r):
            kv += [("op_name", .string(r.opValue?.name ?? "op\(r.op)")), ("truncated", .bool(r.isTruncated))]
        case .signal(let r):
            kv += [("op_name", .string(r.opName)), ("signame", .string(signalName(r.sig))), ("result_name", .string(signalResultName(r.result)))]
        case .block(let r):
            kv += [("op_name", .string(r.opName)), ("device", .string(deviceName(r.dev)))]
        case .privilege(let r):
            kv += [("op_name", .string(r.opName)), ("syscall", .string(syscallName(r.nr, arch: arch))), ("strings", .array(r.strings.map { .string($0) }))]
        case .sched(let r):
            kv.append(("kind_name", .string(r.isRunqueueWait ? "runqueue" : "offcpu")))
        case .gauge(let r):
            kv.append(("gauge", .string(r.gaugeKind?.name ?? "kind\(r.kind)")))
        case .tcp(let r):
            kv += [("kind_name", .string(r.kindName)), ("src_ip", .string(r.sourceAddress)), ("dst_ip", .string(r.destinationAddress)),
                   ("old_state_name", .string(tcpStateName(r.oldstate))), ("new_state_name", .string(tcpStateName(r.newstate)))]
        case .writes(let r):
            kv += [("device", .string(deviceName(r.dev))), ("fd_kind_name", .string(r.fdKindValue.name)), ("reason_name", .string(r.reasonName))]
        case .netbytes(let r):
            kv += [("src_ip", .string(r.sourceAddress)), ("dst_ip", .string(r.destinationAddress)),
                   ("reason_name", .string(r.reasonName)), ("direction_name", .string(r.directionName))]
        case .reclaim(let r):
            kv.append(("scope", .string(r.isMemcg ? "memcg" : "system")))
        case .probe(let r):
            kv.append(("kind_name", .string(r.kindName)))
        case .loss, .faults, .oom:
            break
        case .unknown:
            kv.append(("size", .int(Int64(size))))
        }
        if let fields = fieldsJSON { kv.append(("fields", fields)) }
        return .object(kv)
    }

    /// `json(comm:arch:)` serialized straight into `out`: the same bytes
    /// (a test compares them for every type), without building the tree, so
    /// `events --format json` keeps up with millions of events.
    public func writeJSON(into out: inout [UInt8], comm: String? = nil, arch: SyscallArch = .host) {
        func key(_ k: StaticString) {
            out.append(contentsOf: UnsafeRawBufferPointer(start: k.utf8Start, count: k.utf8CodeUnitCount))
        }
        func string(_ k: StaticString, _ v: String) {
            key(k)
            JSON.escape(v, into: &out)
        }
        func bool(_ k: StaticString, _ v: Bool) {
            key(k)
            out.append(contentsOf: v ? JSON.trueBytes : JSON.falseBytes)
        }
        key("{\"seq\":")
        JSON.appendDecimal(sequence, into: &out)
        key(",\"ts_ns\":")
        JSON.appendDecimal(timestamp, into: &out)
        if let t = type {
            string(",\"type\":", t.name)
        } else {
            string(",\"type\":", "unknown_\(rawType)")
        }
        key(",\"cpu\":")
        JSON.appendDecimal(UInt64(cpu), into: &out)
        key(",\"flags\":")
        JSON.appendDecimal(UInt64(flags), into: &out)
        key(",\"pid\":")
        JSON.appendDecimal(UInt64(pid), into: &out)
        key(",\"tid\":")
        JSON.appendDecimal(UInt64(tid), into: &out)
        if let comm { string(",\"comm\":", comm) }
        switch payload {
        case .syscall(let r):
            string(",\"syscall\":", r.displayName(arch: arch))
            bool(",\"compat\":", r.isCompat)
            string(",\"fd_kind_name\":", r.fdKindValue.name)
        case .fork(let r):
            bool(",\"thread\":", r.isThread)
        case .exec(let r):
            bool(",\"truncated\":", r.isTruncated)
        case .exit(let r):
            key(",\"exit_code\":")
            JSON.appendInt(Int64(r.exitCode), into: &out)
            key(",\"signal\":")
            JSON.appendInt(Int64(r.exitSignal), into: &out)
            bool(",\"process_exit\":", r.isGroupExit)
        case .file(let r):
            string(",\"op_name\":", r.opValue?.name ?? "op\(r.op)")
            bool(",\"truncated\":", r.isTruncated)
        case .signal(let r):
            string(",\"op_name\":", r.opName)
            string(",\"signame\":", signalName(r.sig))
            string(",\"result_name\":", signalResultName(r.result))
        case .block(let r):
            string(",\"op_name\":", r.opName)
            string(",\"device\":", deviceName(r.dev))
        case .privilege(let r):
            string(",\"op_name\":", r.opName)
            string(",\"syscall\":", syscallName(r.nr, arch: arch))
            key(",\"strings\":[")
            for (i, s) in r.strings.enumerated() {
                if i > 0 { out.append(44) }
                JSON.escape(s, into: &out)
            }
            out.append(93)
        case .sched(let r):
            string(",\"kind_name\":", r.isRunqueueWait ? "runqueue" : "offcpu")
        case .gauge(let r):
            string(",\"gauge\":", r.gaugeKind?.name ?? "kind\(r.kind)")
        case .tcp(let r):
            string(",\"kind_name\":", r.kindName)
            string(",\"src_ip\":", r.sourceAddress)
            string(",\"dst_ip\":", r.destinationAddress)
            string(",\"old_state_name\":", tcpStateName(r.oldstate))
            string(",\"new_state_name\":", tcpStateName(r.newstate))
        case .writes(let r):
            string(",\"device\":", deviceName(r.dev))
            string(",\"fd_kind_name\":", r.fdKindValue.name)
            string(",\"reason_name\":", r.reasonName)
        case .netbytes(let r):
            string(",\"src_ip\":", r.sourceAddress)
            string(",\"dst_ip\":", r.destinationAddress)
            string(",\"reason_name\":", r.reasonName)
            string(",\"direction_name\":", r.directionName)
        case .reclaim(let r):
            string(",\"scope\":", r.isMemcg ? "memcg" : "system")
        case .probe(let r):
            string(",\"kind_name\":", r.kindName)
        case .loss, .faults, .oom:
            break
        case .unknown:
            key(",\"size\":")
            JSON.appendInt(Int64(size), into: &out)
        }
        let mark = out.count
        key(",\"fields\":")
        if !writeFieldsJSON(into: &out) { out.removeSubrange(mark...) }
        out.append(125)
    }

    /// One human-readable line; `ts` is already formatted by the caller.
    public func text(ts: String, comm: String?, arch: SyscallArch = .host) -> String {
        let who = "\(comm ?? "?")[\(pid)/\(tid)]"
        let what: String
        switch payload {
        case .syscall(let r):
            let kind = r.fdKindValue == .unresolved ? "" : " fd=\(r.fdKindValue.name)"
            what = "\(r.displayName(arch: arch))(0x\(String(r.args(0), radix: 16)), 0x\(String(r.args(1), radix: 16)), 0x\(String(r.args(2), radix: 16))) = \(returnText(r.ret)) <\(formatDuration(r.durationNs))>\(kind)"
        case .fork(let r):
            what = "\(r.isThread ? "clone thread" : "fork") -> \(r.childPid)/\(r.childTid) \(r.comm)"
        case .exec(let r):
            let stdio = r.stdinKind == 0 && r.stdoutKind == 0 ? "" : " stdin=\(stdioText(r.stdinKind, r.stdinFamily)) stdout=\(stdioText(r.stdoutKind, r.stdoutFamily))"
            what = "exec \(r.filename) argv=\(r.argv)\(r.isTruncated ? " (truncated)" : "") uid=\(r.uid)\(stdio)"
        case .exit(let r):
            let how = r.exitSignal != 0 ? "killed by signal \(r.exitSignal)" : "code \(r.exitCode)"
            what = "\(r.isGroupExit ? "process exit" : "thread exit") \(how) after \(formatDuration(r.lifetimeNs))"
        case .loss(let r):
            what = "LOST \(r.lost) events on cpu \(cpu)"
        case .tcp(let r):
            let conn = "\(r.sourceAddress):\(r.sport) -> \(r.destinationAddress):\(r.dport)"
            if r.kind == 1 {
                let lat = r.latencyNs > 0 ? " after \(formatDuration(r.latencyNs))" : ""
                what = "tcp \(conn) \(tcpStateName(r.oldstate)) -> \(tcpStateName(r.newstate))\(lat)"
            } else {
                what = "tcp \(r.kindName) \(conn)"
            }
        case .gauge(let r):
            let of = r.limit > 0 ? " of \(r.limit)" : ""
            what = "gauge \(r.gaugeKind?.name ?? "unknown")\(r.name.isEmpty ? "" : " " + r.name) = \(r.value)\(of)"
        case .sched(let r):
            what = r.isRunqueueWait ? "waited \(formatDuration(r.waitNs)) for a CPU"
                : "off CPU \(formatDuration(r.waitNs)) (\(r.prevState & 2 != 0 ? "uninterruptible" : "sleeping"))"
        case .privilege(let r):
            let strs = r.strings.joined(separator: " ")
            // A dup onto stdio says what now sits there (a socket with its family).
            let onto = r.fdKind == 0 ? "" : " now \(stdioText(r.fdKind, r.sockFamily))"
            // capset says what the sets became, as capget(2) masks, and names what it added or raised
            // (a trace before these fields reads them as 0).
            var caps = ""
            if r.op == 2, (r.oldCapPermitted | r.capPermitted) != 0 {
                func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
                caps = " caps effective \(hex(r.oldCapEffective))->\(hex(r.capEffective)) permitted \(hex(r.oldCapPermitted))->\(hex(r.capPermitted)) inheritable \(hex(r.oldCapInheritable))->\(hex(r.capInheritable))"
                if r.capsAdded != 0 { caps += " added \(capabilityText(r.capsAdded))" }
                if r.capsRaised != 0 { caps += " raised \(capabilityText(r.capsRaised))" }
            }
            what = "\(r.opName): \(syscallName(r.nr, arch: arch))(0x\(String(r.args(0), radix: 16)), 0x\(String(r.args(1), radix: 16))) = \(returnText(r.ret)) uid \(r.oldUid)->\(r.uid) euid \(r.oldEuid)->\(r.euid)\(strs.isEmpty ? "" : " " + strs)\(onto)\(caps)"
        case .block(let r):
            what = "block \(r.opName) dev \(deviceName(r.dev)) sector \(r.sector) \(r.bytes) bytes <\(formatDuration(r.latencyNs))>\(r.error != 0 ? " error \(r.error)" : "")"
        case .signal(let r):
            if r.isGenerate {
                what = "sends \(signalName(r.sig)) to \(r.targetComm)[\(r.targetPid)/\(r.targetTid)] (code \(r.code)): \(signalResultName(r.result))"
            } else {
                what = "handles \(signalName(r.sig)) (code \(r.code))"
            }
        case .file(let r):
            let dir = r.dirfd == -100 || r.path.hasPrefix("/") ? "" : " (dirfd \(r.dirfd))"
            switch r.opValue {
            case .open: what = "open \(r.path)\(dir) flags=0x\(String(r.openFlags, radix: 16)) mode=0\(String(r.mode, radix: 8)) = \(returnText(r.ret))"
            case .rename: what = "rename \(r.path) -> \(r.path2)\(dir) = \(returnText(r.ret))"
            default: what = "\(r.opValue?.name ?? "file op") \(r.path)\(dir) = \(returnText(r.ret))"
            }
        case .writes(let r):
            let err = r.errors > 0 ? ", \(r.errors) failed" : ""
            what = "wrote \(r.bytes) bytes to \(r.name) (fd \(r.fd), dev \(deviceName(r.dev)) ino \(r.ino)) in \(r.calls) calls\(err) over \(formatDuration(r.lastTs &- r.firstTs)), \(formatDuration(r.timeNs)) inside: \(r.reasonName)"
        case .netbytes(let r):
            what = "tcp \(r.sourceAddress):\(r.sport) -> \(r.destinationAddress):\(r.dport) (\(r.directionName)) sent \(r.bytesSent) bytes in \(r.sends) sends, received \(r.bytesReceived) in \(r.receives) reads over \(formatDuration(r.lastTs &- r.firstTs)); connection total \(r.totalSent) sent, \(r.totalReceived) received: \(r.reasonName)"
        case .faults(let r):
            what = "page faults over \(formatDuration(timestamp &- r.firstTs)): \(r.user) user, \(r.kernel) kernel; \(r.major) major, \(r.minor) minor"
        case .reclaim(let r):
            what = "\(r.isMemcg ? "memcg" : "direct") reclaim \(formatDuration(r.durationNs)), \(r.reclaimed) pages reclaimed (order \(r.order))"
        case .oom(let r):
            let cg = r.memcg.isEmpty ? "" : " in memcg \(r.memcg)"
            what = "OOM kill of \(r.comm)[\(pid)]\(cg): \(r.anonRss &* 4) KiB anon, \(r.fileRss &* 4) KiB file, \(r.shmemRss &* 4) KiB shmem of \(r.totalVm &* 4) KiB vm; triggered by \(r.triggerComm)[\(r.triggerPid)]"
        case .probe(let r):
            let args = (0..<min(Int(r.nargs), 4)).map { String(r.args($0)) }.joined(separator: ", ")
            let string = r.strArg > 0 ? " arg\(r.strArg)=\(JSON.string(r.str).serialized())" : ""
            if r.isUSDT {
                what = "probe \(r.probeId) usdt(\(args))\(string)"
            } else {
                let latency = r.missedEntry ? "?" : formatDuration(r.latencyNs)
                what = "probe \(r.probeId) (\(args)) = \(r.ret) in \(latency)\(string)"
            }
        case .unknown:
            what = "unknown type \(rawType) (\(size) bytes)"
        }
        return "\(ts) cpu\(cpu) \(who) \(what)"
    }
}

/// A syscall-style return value: -ENOENT for errors, the number otherwise.
func returnText(_ r: Int64) -> String { r < 0 && r > -4096 ? "-\(errnoName(Int32(-r)))" : String(r) }

/// Human duration: ns, µs, ms or s with three significant decimals.
public func formatDuration(_ ns: UInt64) -> String {
    if ns < 1_000 { return "\(ns)ns" }
    if ns < 1_000_000 { return String(format3: Double(ns) / 1e3) + "us" }
    if ns < 1_000_000_000 { return String(format3: Double(ns) / 1e6) + "ms" }
    return String(format3: Double(ns) / 1e9) + "s"
}

private let errnoNames: [Int32: String] = [
    1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 9: "EBADF", 10: "ECHILD", 11: "EAGAIN", 12: "ENOMEM",
    13: "EACCES", 14: "EFAULT", 16: "EBUSY", 17: "EEXIST", 20: "ENOTDIR", 21: "EISDIR", 22: "EINVAL", 24: "EMFILE",
    25: "ENOTTY", 28: "ENOSPC", 32: "EPIPE", 38: "ENOSYS", 104: "ECONNRESET", 110: "ETIMEDOUT", 111: "ECONNREFUSED",
    115: "EINPROGRESS", 512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND", 516: "ERESTART_RESTARTBLOCK",
]

public func errnoName(_ e: Int32) -> String { errnoNames[e] ?? "E\(e)" }

private let signalNames = ["", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1",
                           "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP",
                           "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH",
                           "SIGIO", "SIGPWR", "SIGSYS"]

/// SIGTERM for 15; SIGRTMIN+N for real-time signals.
public func signalName(_ sig: Int32) -> String {
    if sig > 0, Int(sig) < signalNames.count { return signalNames[Int(sig)] }
    if sig >= 32 { return "SIGRTMIN+\(sig - 32)" }
    return "SIG\(sig)"
}

/// What the kernel did with a generated signal (`enum trace_signal_result`).
public func signalResultName(_ r: Int32) -> String {
    switch r {
    case 0: "delivered"
    case 1: "ignored"
    case 2: "already pending"
    case 3: "overflow"
    case 4: "info lost"
    default: "result \(r)"
    }
}

/// An fd kind as text, a socket with its family: "fifo", "socket/inet".
func stdioText(_ kind: UInt8, _ family: UInt16) -> String {
    guard kind != 0 else { return "none" }
    let name = FdKind(rawValue: kind)?.name ?? "kind\(kind)"
    guard kind == 6 else { return name }
    switch family {
    case 1: return "socket/unix"
    case 2: return "socket/inet"
    case 10: return "socket/inet6"
    default: return "socket/family\(family)"
    }
}
