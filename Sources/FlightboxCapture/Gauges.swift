#if canImport(Glibc)
import Glibc
#endif
import FlightboxEvents

/// Samples resource levels from /proc, /sys and statvfs at a fixed interval
/// and turns them into gauge events for the stream. Samples come out in a
/// fixed order (mounts by path, processes by pid), one record per value.
/// System gauges describe the machine and are sampled whatever the filter;
/// per-process gauges follow it.
public final class GaugeSampler {
    /// Which processes get a per-process fd gauge.
    public enum Processes: Sendable {
        /// Every process holding at least this many fds.
        case holdingAtLeast(Int)
        /// These pids and their descendants.
        case tree([UInt32])
        /// Processes with this comm.
        case comm(String)
    }

    public let intervalNs: UInt64
    let processes: Processes
    private let cpus = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))

    /// Filesystem types that hold no user data.
    static let pseudoFilesystems: Set<String> = [
        "proc", "sysfs", "cgroup", "cgroup2", "devpts", "mqueue", "debugfs", "tracefs", "bpf", "securityfs", "pstore",
        "configfs", "fusectl", "hugetlbfs", "autofs", "binfmt_misc", "nsfs", "rpc_pipefs", "selinuxfs", "efivarfs", "devtmpfs",
    ]

    public init(intervalNs: UInt64, processes: Processes) {
        self.intervalNs = intervalNs
        self.processes = processes
    }

    public func sample(at ts: UInt64) -> [[UInt8]] {
        var out: [[UInt8]] = []
        sampleFilesystems(ts, &out)
        sampleProcesses(ts, &out)
        sampleSystem(ts, &out)
        return out
    }

    // MARK: filesystems

    func sampleFilesystems(_ ts: UInt64, _ out: inout [[UInt8]]) {
        guard let text = readTextFile("/proc/self/mounts") else { return }
        var points: [String: String] = [:]
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count >= 3, !GaugeSampler.pseudoFilesystems.contains(String(f[2])) else { continue }
            points[unescapeMount(String(f[1]))] = String(f[2])
        }
        for point in points.keys.sorted() {
            var st = statvfs()
            guard statvfs(point, &st) == 0, st.f_blocks > 0 else { continue }
            let frsize = UInt64(st.f_frsize)
            out.append(EventEncoder.gauge(ts: ts, kind: .fsBytes, value: UInt64(st.f_bavail) * frsize, limit: UInt64(st.f_blocks) * frsize, name: point))
            if st.f_files > 0 {
                out.append(EventEncoder.gauge(ts: ts, kind: .fsInodes, value: UInt64(st.f_ffree), limit: UInt64(st.f_files), name: point))
            }
        }
    }

    /// /proc/mounts escapes space, tab, newline and backslash as octal.
    func unescapeMount(_ s: String) -> String {
        guard s.contains("\\") else { return s }
        var out = [UInt8]()
        let u = Array(s.utf8)
        var i = 0
        while i < u.count {
            if u[i] == UInt8(ascii: "\\"), i + 3 < u.count, let v = UInt8(String(decoding: u[(i + 1)...(i + 3)], as: UTF8.self), radix: 8) {
                out.append(v)
                i += 4
            } else {
                out.append(u[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: processes

    func sampleProcesses(_ ts: UInt64, _ out: inout [[UInt8]]) {
        guard let dir = opendir("/proc") else { return }
        var pids: [UInt32] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if let pid = UInt32(name) { pids.append(pid) }
        }
        closedir(dir)
        pids.sort()
        var wanted: Set<UInt32>?
        switch processes {
        case .tree(let roots):
            var parent: [UInt32: UInt32] = [:]
            for pid in pids { if let pp = ppid(pid) { parent[pid] = pp } }
            var set = Set(roots)
            var grew = true
            while grew {
                grew = false
                for (pid, pp) in parent where set.contains(pp) && !set.contains(pid) {
                    set.insert(pid)
                    grew = true
                }
            }
            wanted = set
        case .comm(let c):
            wanted = Set(pids.filter { readTextFile("/proc/\($0)/comm")?.split(separator: "\n").first.map(String.init) == c })
        case .holdingAtLeast:
            wanted = nil
        }
        let me = UInt32(getpid()) // the recorder never records itself
        for pid in pids where pid != me && wanted?.contains(pid) ?? true {
            // No fds at all: a zombie or a process on its way out.
            guard let fds = openFds(pid), fds > 0 else { continue }
            if case .holdingAtLeast(let n) = processes, fds < n { continue }
            out.append(EventEncoder.gauge(ts: ts, kind: .processFds, value: UInt64(fds), limit: fdLimit(pid) ?? 0, pid: pid))
        }
    }

    func ppid(_ pid: UInt32) -> UInt32? {
        guard let stat = readTextFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
        let rest = stat[stat.index(after: close)...].split(separator: " ")
        return rest.count > 1 ? UInt32(rest[1]) : nil
    }

    func openFds(_ pid: UInt32) -> Int? {
        guard let dir = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(dir) }
        var n = 0
        while let ent = readdir(dir) {
            if ent.pointee.d_name.0 != UInt8(ascii: ".") { n += 1 }
        }
        return n
    }

    func fdLimit(_ pid: UInt32) -> UInt64? {
        guard let text = readTextFile("/proc/\(pid)/limits") else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("Max open files") {
            let f = line.dropFirst("Max open files".count).split(separator: " ")
            return f.first.flatMap { UInt64($0) }
        }
        return nil
    }

    // MARK: system

    func sampleSystem(_ ts: UInt64, _ out: inout [[UInt8]]) {
        if let f = readTextFile("/proc/sys/fs/file-nr")?.split(whereSeparator: { $0 == "\t" || $0 == " " || $0 == "\n" }), f.count >= 3,
           let used = UInt64(f[0]), let max = UInt64(f[2]) {
            out.append(EventEncoder.gauge(ts: ts, kind: .systemFds, value: used, limit: max))
        }
        let load = readTextFile("/proc/loadavg")?.split(separator: " ") ?? []
        if load.count >= 4, let total = load[3].split(separator: "/").last.flatMap({ UInt64($0) }),
           let pidMax = readTextFile("/proc/sys/kernel/pid_max").flatMap({ UInt64($0.split(separator: "\n").first ?? "") }) {
            out.append(EventEncoder.gauge(ts: ts, kind: .tasks, value: total, limit: pidMax))
        }
        sampleCgroupPids(ts, &out)
        if let mem = readTextFile("/proc/meminfo") {
            var kv: [String: UInt64] = [:]
            for line in mem.split(separator: "\n") {
                let f = line.split(separator: " ")
                if f.count >= 2, let v = UInt64(f[1]) { kv[String(f[0].dropLast())] = v * 1024 }
            }
            if let a = kv["MemAvailable"], let t = kv["MemTotal"] { out.append(EventEncoder.gauge(ts: ts, kind: .memAvailable, value: a, limit: t)) }
            if let a = kv["SwapFree"], let t = kv["SwapTotal"] { out.append(EventEncoder.gauge(ts: ts, kind: .swapFree, value: a, limit: t)) }
        }
        for resource in ["cpu", "io", "memory"] {
            guard let text = readTextFile("/proc/pressure/\(resource)") else { continue }
            for line in text.split(separator: "\n") {
                let f = line.split(separator: " ")
                guard let kind = f.first, let avg = f.first(where: { $0.hasPrefix("avg10=") }),
                      let v = Double(avg.dropFirst(6)) else { continue }
                out.append(EventEncoder.gauge(ts: ts, kind: kind == "some" ? .psiSome : .psiFull, value: UInt64((v * 100).rounded()), limit: 10_000, name: resource))
            }
        }
        if load.count >= 1, let l = Double(load[0]) {
            out.append(EventEncoder.gauge(ts: ts, kind: .load, value: UInt64((l * 100).rounded()), limit: UInt64(cpus * 100)))
        }
    }

    /// Cgroups (four levels deep at most) that set a pids.max.
    func sampleCgroupPids(_ ts: UInt64, _ out: inout [[UInt8]]) {
        var found: [(String, UInt64, UInt64)] = []
        func walk(_ path: String, depth: Int) {
            if let max = readTextFile(path + "/pids.max")?.split(separator: "\n").first, max != "max", let limit = UInt64(max),
               let cur = readTextFile(path + "/pids.current").flatMap({ UInt64($0.split(separator: "\n").first ?? "") }) {
                found.append((String(path.dropFirst("/sys/fs/cgroup".count)), cur, limit))
            }
            guard depth < 4, let dir = opendir(path) else { return }
            var subdirs: [String] = []
            while let ent = readdir(dir) {
                guard ent.pointee.d_type == UInt8(DT_DIR) else { continue }
                let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                if !name.hasPrefix(".") { subdirs.append(name) }
            }
            closedir(dir)
            for s in subdirs.sorted() { walk(path + "/" + s, depth: depth + 1) }
        }
        walk("/sys/fs/cgroup", depth: 0)
        for (path, cur, limit) in found {
            out.append(EventEncoder.gauge(ts: ts, kind: .cgroupPids, value: cur, limit: limit, name: path.isEmpty ? "/" : path))
        }
    }
}
