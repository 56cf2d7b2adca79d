#if canImport(Glibc)
import Glibc
#endif
import FlightboxFormat

/// Reads process state from /proc, for the snapshot at the start of a trace.
public enum ProcScan {
    public static func process(_ pid: UInt32) -> ProcessRecord? {
        guard let stat = readTextFile("/proc/\(pid)/stat") else { return nil }
        // comm may contain spaces and parentheses: it ends at the last ')'.
        guard let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
        let comm = String(stat[stat.index(after: open)..<close])
        let rest = stat[stat.index(after: close)...].split(separator: " ")
        let ppid = rest.count > 1 ? UInt32(rest[1]) ?? 0 : 0
        var uid: UInt32 = 0
        if let status = readTextFile("/proc/\(pid)/status") {
            for line in status.split(separator: "\n") where line.hasPrefix("Uid:") {
                uid = UInt32(line.dropFirst(4).split(whereSeparator: { $0 == "\t" || $0 == " " }).first ?? "") ?? 0
            }
        }
        var exe = ""
        var buf = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/\(pid)/exe", &buf, buf.count - 1)
        if n > 0 { exe = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
        var argv: [String] = []
        if let cmd = readFileBytes("/proc/\(pid)/cmdline", limit: 4096) {
            argv = cmd.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
            if argv.last == "" { argv.removeLast() }
        }
        return ProcessRecord(pid: pid, ppid: ppid, uid: uid, comm: comm, exe: exe, argv: argv)
    }

    /// The parent of a process (/proc/PID/stat's ppid).
    public static func parent(of pid: UInt32) -> UInt32? {
        guard let stat = readTextFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let rest = stat[stat.index(after: close)...].split(separator: " ")
        return rest.count > 1 ? UInt32(rest[1]) : nil
    }

    /// Every process below `root` (children, their children, ...), by pid.
    public static func descendants(of root: UInt32) -> [UInt32] {
        let parents = pids().compactMap { p in parent(of: p).map { (p, $0) } }
        var children: [UInt32: [UInt32]] = [:]
        for (p, pp) in parents { children[pp, default: []].append(p) }
        var out: [UInt32] = []
        var queue = [root]
        var seen: Set<UInt32> = [root]
        while let p = queue.popLast() {
            for c in children[p] ?? [] where seen.insert(c).inserted {
                out.append(c)
                queue.append(c)
            }
        }
        return out.sorted()
    }

    /// The pids in /proc, in ascending order.
    public static func pids() -> [UInt32] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var pids: [UInt32] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if let pid = UInt32(name) { pids.append(pid) }
        }
        return pids.sorted()
    }

    /// Every process, by pid.
    public static func all() -> [ProcessRecord] {
        pids().compactMap(process)
    }
}

/// A clock in ns: CLOCK_MONOTONIC is the clock of event timestamps.
public func clockNow(_ id: clockid_t) -> UInt64 {
    var ts = timespec()
    clock_gettime(id, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

public func realTimeNow() -> UInt64 { clockNow(CLOCK_REALTIME) }
public func monotonicNow() -> UInt64 { clockNow(CLOCK_MONOTONIC) }
