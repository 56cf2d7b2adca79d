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
        /// Processes in this cgroup or one below it.
        case cgroup(CgroupTarget)

        /// The processes a capture filter records.
        public init(following filter: CaptureFilter) {
            switch filter {
            case .none: self = .holdingAtLeast(32)
            case .pid(let p): self = .tree([p])
            case .descendants(let p): self = .tree([p])
            case .tracked(let p): self = .tree(p)
            case .comm(let c): self = .comm(c)
            case .cgroup(let c): self = .cgroup(c)
            }
        }
    }

    public let intervalNs: UInt64
    let processes: Processes
    /// RLIMIT_NOFILE soft limits by pid: /proc/PID/limits is a 1.3 KB text
    /// that rarely changes, so it is read once per pid and again every
    /// `limitRefresh` samples (a process may raise its limit at run time);
    /// a pid no longer in /proc is forgotten (its number may be reused).
    private var fdLimits: [UInt32: (limit: UInt64, readAt: UInt64)] = [:]
    private var samples: UInt64 = 0
    static let limitRefresh: UInt64 = 10
    /// The processes sampled between scans of /proc, and when the last scan was.
    private var members: [UInt32] = []
    private var scannedAt: UInt64?
    public static let rescanEvery: UInt64 = 10
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
        samples += 1
        sampleFilesystems(ts, &out)
        sampleBlockDevices(ts, &out)
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
            points[unescapeMountField(f[1])] = String(f[2])
        }
        for point in points.keys.sorted() {
            var st = statvfs()
            guard statvfs(point, &st) == 0, st.f_blocks > 0 else { continue }
            let frsize = UInt64(st.f_frsize)
            out.append(EventEncoder.gauge(ts: ts, kind: .fsBytes, value: UInt64(st.f_bavail) * frsize, limit: UInt64(st.f_blocks) * frsize, name: point))
            if st.f_files > 0 {
                out.append(EventEncoder.gauge(ts: ts, kind: .fsInodes, value: UInt64(st.f_ffree), limit: UInt64(st.f_files), name: point))
            }
            // Write summaries name a file system by device: this maps them to the mount.
            var sb = stat()
            if stat(point, &sb) == 0 {
                out.append(EventEncoder.gauge(ts: ts, kind: .fsDevice, value: UInt64(GaugeSampler.kernelDev(UInt64(sb.st_dev))), limit: 0, name: point))
            }
        }
    }

    /// The block devices' names by dev_t, so a detector can say `vda`
    /// rather than `254:0` (a block record carries only the number). Sampled
    /// with the rest rather than once: loop devices come and go, and a trace
    /// cut out of a ring still has them. Sorted by name.
    func sampleBlockDevices(_ ts: UInt64, _ out: inout [[UInt8]]) {
        guard let dir = opendir("/sys/block") else { return }
        var names: [String] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if !name.hasPrefix(".") { names.append(name) }
        }
        closedir(dir)
        for name in names.sorted() {
            guard let dev = readTextFile("/sys/block/\(name)/dev")?.split(separator: "\n").first?.split(separator: ":"), dev.count == 2,
                  let major = UInt32(dev[0]), let minor = UInt32(dev[1]), major < 1 << 12, minor < 1 << 20,
                  let sectors = readTextFile("/sys/block/\(name)/size").flatMap({ UInt64($0.split(separator: "\n").first ?? "") }),
                  sectors > 0 else { continue }
            out.append(EventEncoder.gauge(ts: ts, kind: .blockDevice, value: UInt64(major << 20 | minor), limit: sectors.multipliedReportingOverflow(by: 512).partialValue, name: name))
        }
    }

    /// glibc's dev_t (major in bits 8-19 and 32-43, minor in 0-7 and 20-31)
    /// as the kernel's (major << 20 | minor), which BPF records carry.
    static func kernelDev(_ d: UInt64) -> UInt32 {
        let major = ((d >> 8) & 0xfff) | ((d >> 32) & ~0xfff)
        let minor = (d & 0xff) | ((d >> 12) & ~0xff)
        return UInt32(truncatingIfNeeded: (major << 20) | (minor & 0xfffff))
    }

    // MARK: processes

    func sampleProcesses(_ ts: UInt64, _ out: inout [[UInt8]]) {
        // Machine-wide and for a process tree, which processes to sample is
        // decided by a scan of all of /proc every `rescanEvery` samples (fd
        // counts and sizes, or parents); in between only those chosen are
        // read, and a tree's new children are found from its members'
        // /proc/PID/task/PID/children. With thousands of processes the scan
        // is most of the sampler's cost (`flightbox bench gauges`). A comm or
        // a cgroup is looked up every sample (a cgroup's list is cheap).
        var rescan = scannedAt.map { samples - $0 >= GaugeSampler.rescanEvery } ?? true
        switch processes {
        case .comm, .cgroup: rescan = true
        default: break
        }
        var pids: [UInt32]
        var wanted: Set<UInt32>?
        if rescan {
            pids = allPids()
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
            case .cgroup(let c):
                wanted = Set(c.processes())
            case .holdingAtLeast:
                wanted = nil
            }
            if fdLimits.count > 0 {
                let alive = Set(pids)
                fdLimits = fdLimits.filter { alive.contains($0.key) }
            }
        } else if case .tree(let roots) = processes {
            var set = Set(members).union(roots)
            var queue = Array(set)
            while let pid = queue.popLast() {
                for child in children(pid) where set.insert(child).inserted { queue.append(child) }
            }
            wanted = set
            pids = set.sorted()
        } else {
            pids = members
        }
        let me = UInt32(getpid()) // the recorder never records itself
        let memTotal = meminfo()["MemTotal"] ?? 0
        var chosen: [UInt32] = []
        for pid in pids where pid != me && wanted?.contains(pid) ?? true {
            // No fds at all: a zombie or a process on its way out.
            guard let fds = openFds(pid), fds > 0 else { continue }
            var sampled = wanted != nil
            if case .holdingAtLeast(let n) = processes, fds < n {} else {
                out.append(EventEncoder.gauge(ts: ts, kind: .processFds, value: UInt64(fds), limit: cachedFdLimit(pid), pid: pid))
                sampled = true
            }
            // Resident memory, to see a leak grow: every followed process;
            // machine-wide, the ones big enough to matter.
            if let rss = residentBytes(pid), wanted != nil || rss >= GaugeSampler.rssFloor {
                out.append(EventEncoder.gauge(ts: ts, kind: .processRSS, value: rss, limit: memTotal, pid: pid))
                sampled = true
            }
            if sampled { chosen.append(pid) }
        }
        members = chosen
        if rescan { scannedAt = samples }
    }

    /// The children of `pid`'s main thread (space-separated pids).
    func children(_ pid: UInt32) -> [UInt32] {
        readSmall("/proc/\(pid)/task/\(pid)/children") { b -> [UInt32]? in
            var out: [UInt32] = []
            var v: UInt32 = 0, digits = 0
            for c in b {
                if c >= 48, c <= 57 { v = v &* 10 &+ UInt32(c - 48); digits += 1 } else if digits > 0 { out.append(v); v = 0; digits = 0 }
            }
            if digits > 0 { out.append(v) }
            return out
        } ?? []
    }

    /// Every pid in /proc, in order.
    func allPids() -> [UInt32] {
        guard let dir = opendir("/proc") else { return [] }
        var pids: [UInt32] = []
        while let ent = readdir(dir) {
            let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
            if let pid = UInt32(name) { pids.append(pid) }
        }
        closedir(dir)
        return pids.sorted()
    }

    /// Machine-wide, processes below this resident size get no RSS gauge.
    static let rssFloor: UInt64 = 64 << 20
    private let pageSize = UInt64(max(1, sysconf(Int32(_SC_PAGESIZE))))

    /// Resident bytes (/proc/PID/statm's second field, in pages).
    func residentBytes(_ pid: UInt32) -> UInt64? {
        readSmall("/proc/\(pid)/statm") { GaugeSampler.field($0[...], 1) }.map { $0 * pageSize }
    }

    /// /proc/meminfo's values, in bytes.
    func meminfo() -> [String: UInt64] {
        var kv: [String: UInt64] = [:]
        guard let mem = readTextFile("/proc/meminfo") else { return kv }
        for line in mem.split(separator: "\n") {
            let f = line.split(separator: " ")
            if f.count >= 2, let v = UInt64(f[1]) { kv[String(f[0].dropLast())] = v * 1024 }
        }
        return kv
    }

    /// The 4th field of /proc/PID/stat, after the comm in parentheses (which may hold spaces and parentheses).
    func ppid(_ pid: UInt32) -> UInt32? {
        readSmall("/proc/\(pid)/stat") { b in
            guard let close = b.lastIndex(of: UInt8(ascii: ")")) else { return nil }
            return GaugeSampler.field(b[(close + 1)...], 1).map { UInt32(truncatingIfNeeded: $0) }
        }
    }

    /// Reads a small /proc file into a stack buffer and parses it there: the
    /// scan of every process must not allocate per process.
    func readSmall<T>(_ path: String, _ parse: (UnsafeBufferPointer<UInt8>) -> T?) -> T? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1024) { buf -> T? in
            let n = read(fd, buf.baseAddress, buf.count)
            guard n > 0 else { return nil }
            return parse(UnsafeBufferPointer(rebasing: buf[0..<n]))
        }
    }

    /// The `index`th space-separated decimal field of `b` (leading spaces skipped).
    static func field(_ b: Slice<UnsafeBufferPointer<UInt8>>, _ index: Int) -> UInt64? {
        var i = b.startIndex, k = 0
        while i < b.endIndex {
            while i < b.endIndex, b[i] == UInt8(ascii: " ") { i += 1 }
            guard i < b.endIndex else { return nil }
            if k == index {
                var v: UInt64 = 0, digits = 0
                while i < b.endIndex, b[i] >= 48, b[i] <= 57 { v = v &* 10 &+ UInt64(b[i] - 48); i += 1; digits += 1 }
                return digits > 0 ? v : nil
            }
            while i < b.endIndex, b[i] != UInt8(ascii: " ") { i += 1 }
            k += 1
        }
        return nil
    }

    /// Open fds: since Linux 6.2 the size of /proc/PID/fd is the count (one
    /// stat instead of reading the directory); older kernels say 0 there.
    func openFds(_ pid: UInt32) -> Int? {
        var sb = stat()
        guard stat("/proc/\(pid)/fd", &sb) == 0 else { return nil }
        if sb.st_size > 0 { return Int(sb.st_size) }
        guard let dir = opendir("/proc/\(pid)/fd") else { return nil }
        defer { closedir(dir) }
        var n = 0
        while let ent = readdir(dir) {
            if ent.pointee.d_name.0 != UInt8(ascii: ".") { n += 1 }
        }
        return n
    }

    /// The soft RLIMIT_NOFILE of `pid`, 0 when unlimited or unknown.
    func cachedFdLimit(_ pid: UInt32) -> UInt64 {
        if let c = fdLimits[pid], samples - c.readAt < GaugeSampler.limitRefresh { return c.limit }
        let limit = fdLimit(pid) ?? 0
        fdLimits[pid] = (limit, samples)
        return limit
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
        if load.count >= 4, let total = load[3].split(separator: "/").last.flatMap({ UInt64($0) }),
           let threadsMax = readTextFile("/proc/sys/kernel/threads-max").flatMap({ UInt64($0.split(separator: "\n").first ?? "") }) {
            out.append(EventEncoder.gauge(ts: ts, kind: .threads, value: total, limit: threadsMax))
        }
        sampleCgroups(ts, &out)
        let kv = meminfo()
        if let a = kv["MemAvailable"], let t = kv["MemTotal"] { out.append(EventEncoder.gauge(ts: ts, kind: .memAvailable, value: a, limit: t)) }
        if let a = kv["SwapFree"], let t = kv["SwapTotal"] { out.append(EventEncoder.gauge(ts: ts, kind: .swapFree, value: a, limit: t)) }
        for resource in ["cpu", "io", "memory"] {
            guard let text = readTextFile("/proc/pressure/\(resource)") else { continue }
            for line in text.split(separator: "\n") {
                let f = line.split(separator: " ")
                guard let kind = f.first else { continue }
                for (field, kinds) in [("avg10=", (GaugeKind.psiSome, GaugeKind.psiFull)), ("avg60=", (.psiSome60, .psiFull60))] {
                    guard let avg = f.first(where: { $0.hasPrefix(field) }), let v = Double(avg.dropFirst(field.count)) else { continue }
                    out.append(EventEncoder.gauge(ts: ts, kind: kind == "some" ? kinds.0 : kinds.1, value: UInt64((v * 100).rounded()), limit: 10_000, name: resource))
                }
            }
        }
        if load.count >= 1, let l = Double(load[0]) {
            out.append(EventEncoder.gauge(ts: ts, kind: .load, value: UInt64((l * 100).rounded()), limit: UInt64(cpus * 100)))
        }
    }

    /// Limits set in cgroups (four levels deep at most): pids.max (v2 and the
    /// v1 pids hierarchy) and memory (v2 memory.max, v1 memory.limit_in_bytes).
    /// Cgroups without a limit get no gauge: nothing can run out there.
    func sampleCgroups(_ ts: UInt64, _ out: inout [[UInt8]]) {
        let root = "/sys/fs/cgroup"
        let v2 = access(root + "/cgroup.controllers", F_OK) == 0
        var pids: [(String, UInt64, UInt64)] = []
        var memory: [(String, UInt64, UInt64, UInt64?)] = []
        func number(_ path: String) -> UInt64? { readTextFile(path)?.split(separator: "\n").first.flatMap { UInt64($0) } }
        func walk(_ path: String, under base: String, depth: Int, _ visit: (String, String) -> Void) {
            visit(path, String(path.dropFirst(base.count)))
            guard depth < 4, let dir = opendir(path) else { return }
            var subdirs: [String] = []
            while let ent = readdir(dir) {
                guard ent.pointee.d_type == UInt8(DT_DIR) else { continue }
                let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                if !name.hasPrefix(".") { subdirs.append(name) }
            }
            closedir(dir)
            for s in subdirs.sorted() { walk(path + "/" + s, under: base, depth: depth + 1, visit) }
        }
        func anonymous(_ stat: String) -> UInt64? {
            // v2: anon and shmem; v1: their hierarchical totals (rss counts anon and swap cache).
            let fields = v2 ? ["anon", "shmem"] : ["total_rss", "total_shmem"]
            guard let text = readTextFile(stat) else { return nil }
            var sum: UInt64 = 0, found = 0
            for line in text.split(separator: "\n") {
                let f = line.split(separator: " ")
                if f.count == 2, fields.contains(String(f[0])), let v = UInt64(f[1]) { sum += v; found += 1 }
            }
            return found == fields.count ? sum : nil
        }
        let pidsRoot = v2 ? root : root + "/pids"
        walk(pidsRoot, under: pidsRoot, depth: 0) { path, name in
            if let limit = number(path + "/pids.max"), let cur = number(path + "/pids.current") { pids.append((name, cur, limit)) }
        }
        let memoryRoot = v2 ? root : root + "/memory"
        walk(memoryRoot, under: memoryRoot, depth: 0) { path, name in
            let (usage, limit) = v2 ? (number(path + "/memory.current"), number(path + "/memory.max"))
                                    : (number(path + "/memory.usage_in_bytes"), number(path + "/memory.limit_in_bytes"))
            // v1 says "no limit" with a huge page-aligned number.
            if let usage, let limit, limit < 1 << 62 { memory.append((name, usage, limit, anonymous(path + "/memory.stat"))) }
        }
        for (path, cur, limit) in pids {
            out.append(EventEncoder.gauge(ts: ts, kind: .cgroupPids, value: cur, limit: limit, name: path.isEmpty ? "/" : path))
        }
        for (path, cur, limit, anon) in memory {
            out.append(EventEncoder.gauge(ts: ts, kind: .cgroupMemory, value: cur, limit: limit, name: path.isEmpty ? "/" : path))
            if let anon {
                out.append(EventEncoder.gauge(ts: ts, kind: .cgroupMemoryAnon, value: anon, limit: limit, name: path.isEmpty ? "/" : path))
            }
        }
    }
}
