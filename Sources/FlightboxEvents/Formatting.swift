extension Event {
    /// The event as one JSON object with stable key order; syscall numbers are
    /// named in `arch`'s numbering (the trace's, see `SyscallArch(schema:machine:)`).
    public func json(comm: String? = nil, arch: SyscallArch = .host) -> JSON {
        var kv: [(String, JSON)] = [
            ("seq", .uint(sequence)), ("ts_ns", .uint(timestamp)),
            ("type", .string(type?.name ?? "unknown_\(rawType)")),
            ("cpu", .uint(UInt64(cpu))), ("pid", .uint(UInt64(pid))), ("tid", .uint(UInt64(tid))),
        ]
        if let comm { kv.append(("comm", .string(comm))) }
        switch type {
        case .syscall:
            kv += [
                ("syscall", .string(syscallDisplayName(arch: arch))), ("nr", .uint(UInt64(syscallNumber))), ("compat", .bool(isCompatSyscall)),
                ("duration_ns", .uint(syscallDuration)), ("ret", .int(syscallReturn)),
                ("args", .array((0..<Event.syscallArgCount).map { .uint(syscallArg($0)) })),
                ("fd_kind", .string(syscallFdKind.name)),
            ]
        case .fork:
            kv += [("child_pid", .uint(UInt64(childPid))), ("child_tid", .uint(UInt64(childTid))),
                   ("thread", .bool(isThreadFork)), ("child_comm", .string(forkComm))]
        case .exec:
            kv += [("filename", .string(execFilename)), ("argv", .array(execArgv.map { .string($0) })),
                   ("argc", .int(Int64(execArgc))), ("truncated", .bool(flags & execTruncatedFlag != 0)),
                   ("ppid", .uint(UInt64(execPpid))), ("uid", .uint(UInt64(execUid))), ("new_comm", .string(execComm))]
        case .exit:
            kv += [("exit_code", .int(Int64(exitCode))), ("signal", .int(Int64(exitSignal))),
                   ("process_exit", .bool(isGroupExit)), ("ppid", .uint(UInt64(exitPpid))),
                   ("lifetime_ns", .uint(exitLifetime)), ("exit_comm", .string(exitComm))]
        case .loss:
            kv += [("lost", .uint(lostCount)), ("first_ts_ns", .uint(lossFirstTimestamp))]
        case .tcp:
            kv += [("kind", .string(tcpKindName)), ("saddr", .string(tcpSourceAddress)), ("sport", .uint(UInt64(tcpSourcePort))),
                   ("daddr", .string(tcpDestinationAddress)), ("dport", .uint(UInt64(tcpDestinationPort))),
                   ("old_state", .string(tcpStateName(tcpOldState))), ("new_state", .string(tcpStateName(tcpNewState))),
                   ("latency_ns", .uint(tcpLatency))]
        case .gauge:
            kv += [("gauge", .string(gaugeKind?.name ?? "unknown")), ("name", .string(gaugeName)),
                   ("value", .uint(gaugeValue)), ("limit", .uint(gaugeLimit))]
        case .sched:
            kv += [("kind", .string(isRunqueueWait ? "runqueue" : "offcpu")), ("wait_ns", .uint(schedWait)),
                   ("blocked_state", .uint(UInt64(schedBlockedState))), ("task_comm", .string(schedComm))]
        case .privilege:
            let strs = privilegeStrings
            kv += [("op", .string(privilegeOpName)), ("syscall", .string(syscallName(privilegeSyscall, arch: arch))),
                   ("ret", .int(privilegeReturn)), ("args", .array((0..<4).map { .uint(privilegeArg($0)) })),
                   ("uid", .uint(UInt64(privilegeUid))), ("euid", .uint(UInt64(privilegeEuid))),
                   ("old_uid", .uint(UInt64(privilegeOldUid))), ("old_euid", .uint(UInt64(privilegeOldEuid))),
                   ("strings", .array(strs.filter { !$0.isEmpty }.map { .string($0) }))]
        case .block:
            kv += [("op", .string(blockOpName)), ("dev", .string("\(blockDevice >> 20):\(blockDevice & 0xfffff)")),
                   ("sector", .uint(blockSector)), ("bytes", .uint(UInt64(blockBytes))), ("latency_ns", .uint(blockLatency)),
                   ("error", .int(Int64(blockError))), ("issuer_comm", .string(blockComm))]
        case .signal:
            kv += [("op", .string(isSignalGenerate ? "generate" : "deliver")), ("sig", .int(Int64(signalNumber))),
                   ("signame", .string(signalName(signalNumber))), ("code", .int(Int64(signalCode))),
                   ("target_pid", .uint(UInt64(signalTargetPid))), ("target_tid", .uint(UInt64(signalTargetTid))),
                   ("target_comm", .string(signalTargetComm)), ("result", .string(signalResultName(signalResult))),
                   ("sender_uid", .uint(UInt64(signalSenderUid))), ("group", .bool(signalToGroup))]
        case .file:
            kv += [("op", .string(fileOp?.name ?? "unknown")), ("path", .string(filePath))]
            if fileOp == .rename { kv.append(("new_path", .string(filePath2))) }
            kv += [("ret", .int(fileReturn)), ("dirfd", .int(Int64(fileDirfd))), ("flags", .uint(UInt64(fileFlags))),
                   ("mode", .uint(UInt64(fileMode))), ("truncated", .bool(flags & fileTruncatedFlag != 0))]
        case .writes:
            kv += [("name", .string(writesName)), ("fd", .int(Int64(writesFd))), ("fd_kind", .string(writesFdKind.name)),
                   ("dev", .string("\(writesDevice >> 20):\(writesDevice & 0xfffff)")), ("ino", .uint(writesInode)),
                   ("calls", .uint(UInt64(writesCalls))), ("bytes", .uint(writesBytes)), ("errors", .uint(UInt64(writesErrors))),
                   ("time_ns", .uint(writesTime)), ("first_ts_ns", .uint(writesFirstTimestamp)),
                   ("last_ts_ns", .uint(writesLastTimestamp)), ("reason", .string(writesReasonName))]
        case .faults:
            kv += [("user", .uint(faultsUser)), ("kernel", .uint(faultsKernel)), ("major", .uint(faultsMajor)),
                   ("minor", .uint(faultsMinor)), ("first_ts_ns", .uint(faultsFirstTimestamp)),
                   ("last_addr", .uint(faultsLastAddress)), ("last_ip", .uint(faultsLastIP)), ("task_comm", .string(faultsComm))]
        case .reclaim:
            kv += [("scope", .string(isMemcgReclaim ? "memcg" : "system")), ("duration_ns", .uint(reclaimDuration)),
                   ("reclaimed_pages", .uint(reclaimPages)), ("order", .uint(UInt64(reclaimOrder))),
                   ("gfp_flags", .uint(UInt64(reclaimGfpFlags)))]
        case .oom:
            kv += [("victim_comm", .string(oomComm)), ("total_vm_pages", .uint(oomTotalVM)), ("anon_rss_pages", .uint(oomAnonRSS)),
                   ("file_rss_pages", .uint(oomFileRSS)), ("shmem_rss_pages", .uint(oomShmemRSS)),
                   ("pgtables_bytes", .uint(oomPageTableBytes)), ("uid", .uint(UInt64(oomUid))), ("oom_score_adj", .int(Int64(oomScoreAdj))),
                   ("memcg", .string(oomMemcg)), ("memcg_id", .uint(oomMemcgId)),
                   ("trigger_pid", .uint(UInt64(oomTriggerPid))), ("trigger_tid", .uint(UInt64(oomTriggerTid))),
                   ("trigger_comm", .string(oomTriggerComm))]
        case nil:
            kv.append(("size", .int(Int64(size))))
        }
        return .object(kv)
    }

    /// One human-readable line; `ts` is already formatted by the caller.
    public func text(ts: String, comm: String?, arch: SyscallArch = .host) -> String {
        let who = "\(comm ?? "?")[\(pid)/\(tid)]"
        let what: String
        switch type {
        case .syscall:
            let ret = syscallReturn
            let r = ret < 0 && ret > -4096 ? "-\(errnoName(Int32(-ret)))" : String(ret)
            let kind = syscallFdKind == .unresolved ? "" : " fd=\(syscallFdKind.name)"
            what = "\(syscallDisplayName(arch: arch))(0x\(String(syscallArg(0), radix: 16)), 0x\(String(syscallArg(1), radix: 16)), 0x\(String(syscallArg(2), radix: 16))) = \(r) <\(formatDuration(syscallDuration))>\(kind)"
        case .fork:
            what = "\(isThreadFork ? "clone thread" : "fork") -> \(childPid)/\(childTid) \(forkComm)"
        case .exec:
            let trunc = flags & execTruncatedFlag != 0 ? " (truncated)" : ""
            what = "exec \(execFilename) argv=\(execArgv)\(trunc) uid=\(execUid)"
        case .exit:
            let how = exitSignal != 0 ? "killed by signal \(exitSignal)" : "code \(exitCode)"
            what = "\(isGroupExit ? "process exit" : "thread exit") \(how) after \(formatDuration(exitLifetime))"
        case .loss:
            what = "LOST \(lostCount) events on cpu \(cpu)"
        case .tcp:
            let conn = "\(tcpSourceAddress):\(tcpSourcePort) -> \(tcpDestinationAddress):\(tcpDestinationPort)"
            if tcpKind == 1 {
                let lat = tcpLatency > 0 ? " after \(formatDuration(tcpLatency))" : ""
                what = "tcp \(conn) \(tcpStateName(tcpOldState)) -> \(tcpStateName(tcpNewState))\(lat)"
            } else {
                what = "tcp \(tcpKindName) \(conn)"
            }
        case .gauge:
            let of = gaugeLimit > 0 ? " of \(gaugeLimit)" : ""
            what = "gauge \(gaugeKind?.name ?? "unknown")\(gaugeName.isEmpty ? "" : " " + gaugeName) = \(gaugeValue)\(of)"
        case .sched:
            what = isRunqueueWait ? "waited \(formatDuration(schedWait)) for a CPU"
                : "off CPU \(formatDuration(schedWait)) (\(schedBlockedState & 2 != 0 ? "uninterruptible" : "sleeping"))"
        case .privilege:
            let r = privilegeReturn
            let res = r < 0 && r > -4096 ? "-\(errnoName(Int32(-r)))" : String(r)
            let strs = privilegeStrings.filter { !$0.isEmpty }.joined(separator: " ")
            what = "\(privilegeOpName): \(syscallName(privilegeSyscall, arch: arch))(0x\(String(privilegeArg(0), radix: 16)), 0x\(String(privilegeArg(1), radix: 16))) = \(res) uid \(privilegeOldUid)->\(privilegeUid) euid \(privilegeOldEuid)->\(privilegeEuid)\(strs.isEmpty ? "" : " " + strs)"
        case .block:
            what = "block \(blockOpName) dev \(blockDevice >> 20):\(blockDevice & 0xfffff) sector \(blockSector) \(blockBytes) bytes <\(formatDuration(blockLatency))>\(blockError != 0 ? " error \(blockError)" : "")"
        case .signal:
            if isSignalGenerate {
                what = "sends \(signalName(signalNumber)) to \(signalTargetComm)[\(signalTargetPid)/\(signalTargetTid)] (code \(signalCode)): \(signalResultName(signalResult))"
            } else {
                what = "handles \(signalName(signalNumber)) (code \(signalCode))"
            }
        case .file:
            let r = fileReturn
            let res = r < 0 && r > -4096 ? "-\(errnoName(Int32(-r)))" : String(r)
            let dir = fileDirfd == -100 || filePath.hasPrefix("/") ? "" : " (dirfd \(fileDirfd))"
            switch fileOp {
            case .open: what = "open \(filePath)\(dir) flags=0x\(String(fileFlags, radix: 16)) mode=0\(String(fileMode, radix: 8)) = \(res)"
            case .rename: what = "rename \(filePath) -> \(filePath2)\(dir) = \(res)"
            default: what = "\(fileOp?.name ?? "file op") \(filePath)\(dir) = \(res)"
            }
        case .writes:
            let err = writesErrors > 0 ? ", \(writesErrors) failed" : ""
            what = "wrote \(writesBytes) bytes to \(writesName) (fd \(writesFd), dev \(writesDevice >> 20):\(writesDevice & 0xfffff) ino \(writesInode)) in \(writesCalls) calls\(err) over \(formatDuration(writesLastTimestamp &- writesFirstTimestamp)), \(formatDuration(writesTime)) inside: \(writesReasonName)"
        case .faults:
            what = "page faults over \(formatDuration(timestamp &- faultsFirstTimestamp)): \(faultsUser) user, \(faultsKernel) kernel; \(faultsMajor) major, \(faultsMinor) minor"
        case .reclaim:
            what = "\(isMemcgReclaim ? "memcg" : "direct") reclaim \(formatDuration(reclaimDuration)), \(reclaimPages) pages reclaimed (order \(reclaimOrder))"
        case .oom:
            let cg = oomMemcg.isEmpty ? "" : " in memcg \(oomMemcg)"
            what = "OOM kill of \(oomComm)[\(pid)]\(cg): \(oomAnonRSS &* 4) KiB anon, \(oomFileRSS &* 4) KiB file, \(oomShmemRSS &* 4) KiB shmem of \(oomTotalVM &* 4) KiB vm; triggered by \(oomTriggerComm)[\(oomTriggerPid)]"
        case nil:
            what = "unknown type \(rawType) (\(size) bytes)"
        }
        return "\(ts) cpu\(cpu) \(who) \(what)"
    }
}

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
