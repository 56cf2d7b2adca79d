import CFlightboxEvents

/// The self-description of every event type, written into each trace's
/// metadata so a reader can decode a trace whose structs differ from its own.
public enum EventSchema {
    static func field<T>(_ name: String, _ kind: String, _ kp: PartialKeyPath<T>, _ size: Int) -> JSON {
        .object([("name", .string(name)), ("kind", .string(kind)), ("offset", .int(Int64(MemoryLayout<T>.offset(of: kp)!))), ("size", .int(Int64(size)))])
    }

    static func type(_ t: EventType, _ fields: [JSON], trailing: [JSON] = []) -> JSON {
        var kv: [(String, JSON)] = [("id", .int(Int64(t.rawValue))), ("name", .string(t.name)), ("fixed_size", .int(Int64(t.fixedSize))), ("fields", .array(fields))]
        if !trailing.isEmpty { kv.append(("trailing", .array(trailing))) }
        return .object(kv)
    }

    /// The schema as JSON: header fields, then one entry per type.
    public static let json: JSON = make()

    static func make() -> JSON {
        typealias H = fb_header
        let header: [JSON] = [
            field("ts_ns", "u64", \H.ts_ns, 8), field("type", "u16", \H.type, 2), field("size", "u16", \H.size, 2),
            field("cpu", "u16", \H.cpu, 2), field("flags", "u16", \H.flags, 2), field("pid", "u32", \H.pid, 4), field("tid", "u32", \H.tid, 4),
        ]
        let types: [JSON] = [
            type(.syscall, [
                field("duration_ns", "u64", \fb_syscall.duration_ns, 8), field("ret", "s64", \fb_syscall.ret, 8),
                field("args", "u64[\(FB_SYSCALL_ARGS)]", \fb_syscall.args, 8 * Int(FB_SYSCALL_ARGS)), field("nr", "u32", \fb_syscall.nr, 4),
                field("fd_kind", "u8", \fb_syscall.fd_kind, 1),
            ]),
            type(.fork, [
                field("child_pid", "u32", \fb_fork.child_pid, 4), field("child_tid", "u32", \fb_fork.child_tid, 4),
                field("comm", "char[16]", \fb_fork.comm, commLength),
            ]),
            type(.exec, [
                field("old_tid", "u32", \fb_exec.old_tid, 4), field("ppid", "u32", \fb_exec.ppid, 4), field("uid", "u32", \fb_exec.uid, 4),
                field("filename_len", "u16", \fb_exec.filename_len, 2), field("argv_len", "u16", \fb_exec.argv_len, 2),
                field("argc", "u16", \fb_exec.argc, 2), field("comm", "char[16]", \fb_exec.comm, commLength),
            ], trailing: [
                .object([("name", .string("filename")), ("length_field", .string("filename_len")), ("kind", .string("bytes"))]),
                .object([("name", .string("argv")), ("length_field", .string("argv_len")), ("kind", .string("nul-terminated strings"))]),
            ]),
            type(.exit, [
                field("status", "s32", \fb_exit.status, 4), field("ppid", "u32", \fb_exit.ppid, 4),
                field("lifetime_ns", "u64", \fb_exit.lifetime_ns, 8), field("comm", "char[16]", \fb_exit.comm, commLength),
            ]),
            type(.loss, [field("lost", "u64", \fb_loss.lost, 8), field("first_ts", "u64", \fb_loss.first_ts, 8)]),
            type(.tcp, [
                field("latency_ns", "u64", \fb_tcp.latency_ns, 8), field("saddr", "u8[16]", \fb_tcp.saddr, 16),
                field("daddr", "u8[16]", \fb_tcp.daddr, 16), field("sport", "u16", \fb_tcp.sport, 2), field("dport", "u16", \fb_tcp.dport, 2),
                field("family", "u16", \fb_tcp.family, 2), field("kind", "u8", \fb_tcp.kind, 1),
                field("oldstate", "u8", \fb_tcp.oldstate, 1), field("newstate", "u8", \fb_tcp.newstate, 1),
            ]),
            type(.gauge, [
                field("value", "u64", \fb_gauge.value, 8), field("limit", "u64", \fb_gauge.limit, 8),
                field("kind", "u32", \fb_gauge.kind, 4), field("name_len", "u16", \fb_gauge.name_len, 2),
            ], trailing: [.object([("name", .string("name")), ("length_field", .string("name_len")), ("kind", .string("bytes"))])]),
            type(.sched, [
                field("wait_ns", "u64", \fb_sched.wait_ns, 8), field("kind", "u32", \fb_sched.kind, 4),
                field("prev_state", "u32", \fb_sched.prev_state, 4), field("comm", "char[16]", \fb_sched.comm, commLength),
            ]),
            type(.privilege, [
                field("ret", "s64", \fb_priv.ret, 8), field("nr", "u32", \fb_priv.nr, 4), field("op", "u32", \fb_priv.op, 4),
                field("args", "u64[4]", \fb_priv.args, 32), field("uid", "u32", \fb_priv.uid, 4), field("euid", "u32", \fb_priv.euid, 4),
                field("old_uid", "u32", \fb_priv.old_uid, 4), field("old_euid", "u32", \fb_priv.old_euid, 4),
                field("str_len", "u16", \fb_priv.str_len, 2), field("str2_len", "u16", \fb_priv.str2_len, 2),
                field("str3_len", "u16", \fb_priv.str3_len, 2),
            ], trailing: [
                .object([("name", .string("str")), ("length_field", .string("str_len")), ("kind", .string("bytes"))]),
                .object([("name", .string("str2")), ("length_field", .string("str2_len")), ("kind", .string("bytes"))]),
                .object([("name", .string("str3")), ("length_field", .string("str3_len")), ("kind", .string("bytes"))]),
            ]),
            type(.block, [
                field("latency_ns", "u64", \fb_block.latency_ns, 8), field("sector", "u64", \fb_block.sector, 8),
                field("dev", "u32", \fb_block.dev, 4), field("bytes", "u32", \fb_block.bytes, 4), field("op", "u32", \fb_block.op, 4),
                field("error", "s32", \fb_block.error, 4), field("comm", "char[16]", \fb_block.comm, commLength),
            ]),
            type(.signal, [
                field("sig", "s32", \fb_signal.sig, 4), field("code", "s32", \fb_signal.code, 4), field("op", "u32", \fb_signal.op, 4),
                field("result", "s32", \fb_signal.result, 4), field("target_pid", "u32", \fb_signal.target_pid, 4),
                field("target_tid", "u32", \fb_signal.target_tid, 4), field("sender_uid", "u32", \fb_signal.sender_uid, 4),
                field("group", "u32", \fb_signal.group, 4), field("target_comm", "char[16]", \fb_signal.target_comm, commLength),
            ]),
            type(.file, [
                field("ret", "s64", \fb_file.ret, 8), field("op", "u32", \fb_file.op, 4), field("dirfd", "s32", \fb_file.dirfd, 4),
                field("flags", "u32", \fb_file.flags, 4), field("mode", "u32", \fb_file.mode, 4),
                field("path_len", "u16", \fb_file.path_len, 2), field("path2_len", "u16", \fb_file.path2_len, 2),
            ], trailing: [
                .object([("name", .string("path")), ("length_field", .string("path_len")), ("kind", .string("bytes"))]),
                .object([("name", .string("path2")), ("length_field", .string("path2_len")), ("kind", .string("bytes"))]),
            ]),
            type(.writes, [
                field("first_ts", "u64", \fb_writes.first_ts, 8), field("last_ts", "u64", \fb_writes.last_ts, 8),
                field("bytes", "u64", \fb_writes.bytes, 8), field("time_ns", "u64", \fb_writes.time_ns, 8),
                field("ino", "u64", \fb_writes.ino, 8), field("dev", "u32", \fb_writes.dev, 4), field("fd", "s32", \fb_writes.fd, 4),
                field("calls", "u32", \fb_writes.calls, 4), field("errors", "u32", \fb_writes.errors, 4),
                field("reason", "u32", \fb_writes.reason, 4), field("fd_kind", "u8", \fb_writes.fd_kind, 1),
                field("name", "char[\(nameLength)]", \fb_writes.name, nameLength),
            ]),
            type(.faults, [
                field("first_ts", "u64", \fb_faults.first_ts, 8), field("user", "u64", \fb_faults.user, 8),
                field("kernel", "u64", \fb_faults.kernel, 8), field("major", "u64", \fb_faults.major, 8),
                field("minor", "u64", \fb_faults.minor, 8), field("last_addr", "u64", \fb_faults.last_addr, 8),
                field("last_ip", "u64", \fb_faults.last_ip, 8), field("comm", "char[16]", \fb_faults.comm, commLength),
            ]),
            type(.reclaim, [
                field("duration_ns", "u64", \fb_reclaim.duration_ns, 8), field("reclaimed", "u64", \fb_reclaim.reclaimed, 8),
                field("order", "u32", \fb_reclaim.order, 4), field("gfp_flags", "u32", \fb_reclaim.gfp_flags, 4),
            ]),
            type(.oom, [
                field("total_vm", "u64", \fb_oom.total_vm, 8), field("anon_rss", "u64", \fb_oom.anon_rss, 8),
                field("file_rss", "u64", \fb_oom.file_rss, 8), field("shmem_rss", "u64", \fb_oom.shmem_rss, 8),
                field("pgtables_bytes", "u64", \fb_oom.pgtables_bytes, 8), field("memcg_id", "u64", \fb_oom.memcg_id, 8),
                field("uid", "u32", \fb_oom.uid, 4), field("oom_score_adj", "s32", \fb_oom.oom_score_adj, 4),
                field("trigger_pid", "u32", \fb_oom.trigger_pid, 4), field("trigger_tid", "u32", \fb_oom.trigger_tid, 4),
                field("comm", "char[16]", \fb_oom.comm, commLength), field("trigger_comm", "char[16]", \fb_oom.trigger_comm, commLength),
                field("memcg", "char[\(nameLength)]", \fb_oom.memcg, nameLength),
            ]),
        ]
        return .object([("header", .array(header)), ("types", .array(types)), ("syscall_table", .string(SyscallArch.host.rawValue))])
    }
}
