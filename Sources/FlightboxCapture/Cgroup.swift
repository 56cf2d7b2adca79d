#if canImport(Glibc)
import Glibc
#endif
import CFlightboxBPF
import FlightboxEvents

/// A cgroup to record, resolved from a path to what the kernel filter
/// compares: the cgroup's id (its directory's inode number, which is its
/// kernfs node id on a 64-bit kernel), its depth and its hierarchy.
public struct CgroupTarget: Equatable, Sendable {
    /// Which hierarchy the cgroup is in.
    public enum Hierarchy: Equatable, Sendable {
        /// cgroup v2, wherever it is mounted (/sys/fs/cgroup, or
        /// /sys/fs/cgroup/unified on a hybrid system).
        case unified
        /// A cgroup v1 hierarchy, found in the kernel through one of its
        /// controllers: `ssid` is that controller's `enum cgroup_subsys_id`.
        case v1(controller: String, ssid: Int32)
    }

    /// The cgroup's directory, absolute, symbolic links resolved.
    public let path: String
    public let id: UInt64
    /// Depth below the hierarchy's root (0: the root).
    public let level: UInt32
    public let hierarchy: Hierarchy

    public init(path: String, id: UInt64, level: UInt32, hierarchy: Hierarchy) {
        self.path = path
        self.id = id
        self.level = level
        self.hierarchy = hierarchy
    }

    public var json: JSON {
        var fields: [(String, JSON)] = [("mode", .string("cgroup")), ("path", .string(path)), ("id", .uint(id)), ("level", .uint(UInt64(level)))]
        switch hierarchy {
        case .unified: fields.append(("hierarchy", .string("v2")))
        case .v1(let c, _): fields += [("hierarchy", .string("v1")), ("controller", .string(c))]
        }
        return .object(fields)
    }

    /// Resolves `spec`: an absolute path to a cgroup directory (any mount of a
    /// cgroup hierarchy), or a path relative to a hierarchy's root such as
    /// `system.slice/nginx.service` or `/docker/ID` as /proc/PID/cgroup shows
    /// it, looked up in the unified hierarchy first, then in the v1 ones
    /// (pids first: systemd creates every service's cgroup there).
    public static func resolve(_ spec: String, btfPath: String = Preflight.defaultBTFPath) throws -> CgroupTarget {
        let mounts = CgroupMount.all()
        guard !mounts.isEmpty else { throw CgroupError.noHierarchy }
        guard !spec.isEmpty else { throw CgroupError.notFound(spec, searched: []) }
        if let ns = readLink("/proc/self/ns/cgroup"), ns != initialNamespace {
            // Paths seen from another cgroup namespace start below the
            // hierarchy's root: the depth the kernel compares would be wrong.
            throw CgroupError.foreignNamespace
        }
        var dir: String?
        var mount: CgroupMount?
        if spec.hasPrefix("/") {
            if let real = realPath(spec) {
                // An existing absolute path must be a cgroup's directory.
                guard let m = CgroupMount.containing(real, in: mounts) else { throw CgroupError.notACgroup(spec) }
                dir = real
                mount = m
            } else if pathIsUnder(spec, "/sys/fs/cgroup") || mounts.contains(where: { pathIsUnder(spec, $0.point) }) {
                throw CgroupError.notFound(spec, searched: [])
            }
            // Otherwise a hierarchy-relative path as /proc/PID/cgroup shows it.
        }
        if dir == nil {
            let rel = spec.split(separator: "/").joined(separator: "/")
            let searched = searchedHierarchies()
            for point in searched {
                guard let m = mounts.first(where: { $0.point == point }) else { continue }
                let candidate = rel.isEmpty ? m.point : m.point + "/" + rel
                // `..` must not lead out of the hierarchy.
                if isDirectory(candidate), let real = realPath(candidate), pathIsUnder(real, m.point) {
                    dir = real
                    mount = m
                    break
                }
            }
            guard dir != nil else { throw CgroupError.notFound(spec, searched: searched) }
        }
        guard let dir, let mount else { throw CgroupError.notFound(spec, searched: []) }

        var st = stat()
        guard stat(dir, &st) == 0 else { throw CgroupError.notFound(spec, searched: []) }
        // In a cgroup mount (the longest mount point above it is one), a
        // directory with cgroup.procs: a cgroup, not a file or a stray mount.
        guard st.st_mode & S_IFMT == S_IFDIR, access(dir + "/cgroup.procs", F_OK) == 0 else { throw CgroupError.notACgroup(spec) }

        let below = dir.dropFirst(mount.point == "/" ? 0 : mount.point.count).split(separator: "/").count
        let level = UInt32(mount.root.split(separator: "/").count + below)
        let hierarchy: Hierarchy
        if mount.unified {
            hierarchy = .unified
        } else {
            // Any of the hierarchy's controllers leads to it; the kernel's own
            // numbering, from its BTF, since it depends on its configuration.
            guard access(btfPath, R_OK) == 0 else { throw CaptureError.noBTF(path: btfPath) }
            var found: Hierarchy?
            for c in mount.controllers {
                var value: Int64 = 0
                let rc = btfPath == Preflight.defaultBTFPath ? fb_bpf_enum_value(nil, kernelName(c) + "_cgrp_id", &value)
                                                             : fb_bpf_enum_value(btfPath, kernelName(c) + "_cgrp_id", &value)
                if rc == 0, value >= 0, value < 64 { found = .v1(controller: c, ssid: Int32(value)); break }
            }
            guard let found else { throw CgroupError.noController(spec, hierarchy: mount.point, options: mount.options) }
            hierarchy = found
        }
        return CgroupTarget(path: dir, id: UInt64(st.st_ino), level: level, hierarchy: hierarchy)
    }

    /// The mount points of the hierarchies a relative --cgroup path is looked
    /// up in, in that order: the unified one, then the v1 ones that have a
    /// controller (pids first).
    public static func searchedHierarchies() -> [String] {
        let mounts = CgroupMount.all()
        let v1 = mounts.filter { !$0.unified && !$0.controllers.isEmpty }
        return mounts.filter(\.unified).map(\.point) + (v1.filter { $0.controllers.contains("pids") } + v1.filter { !$0.controllers.contains("pids") }).map(\.point)
    }

    /// Thread groups in the cgroup and every cgroup below it, by pid, for
    /// per-process gauges. Reads cgroup.procs, which lists thread groups (v1
    /// lists each once as well).
    public func processes() -> [UInt32] {
        var out: Set<UInt32> = []
        func walk(_ dir: String, depth: Int) {
            if let text = readTextFile(dir + "/cgroup.procs") {
                for line in text.split(separator: "\n") { if let p = UInt32(line) { out.insert(p) } }
            }
            guard depth < 64, let d = opendir(dir) else { return }
            defer { closedir(d) }
            while let ent = readdir(d) {
                guard ent.pointee.d_type == UInt8(DT_DIR) else { continue }
                let name = withUnsafeBytes(of: ent.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
                if name != ".", name != ".." { walk(dir + "/" + name, depth: depth + 1) }
            }
        }
        walk(path, depth: 0)
        return out.sorted()
    }

    /// The v1 controller names whose kernel enumerator is named otherwise.
    static func kernelName(_ controller: String) -> String {
        controller == "blkio" ? "io" : controller
    }

    /// /proc/self/ns/cgroup of the initial cgroup namespace (PROC_CGROUP_INIT_INO).
    static let initialNamespace = "cgroup:[4026531835]"
}

/// Why --cgroup cannot be recorded, in one line.
public enum CgroupError: Error, Equatable, CustomStringConvertible {
    case noHierarchy
    case notFound(String, searched: [String])
    case notACgroup(String)
    case noController(String, hierarchy: String, options: String)
    case foreignNamespace

    public var description: String {
        switch self {
        case .noHierarchy:
            "--cgroup: no cgroup hierarchy is mounted (/proc/self/mountinfo has no cgroup or cgroup2 mount)"
        case .notFound(let p, let searched):
            "--cgroup \(p): no such cgroup" + (searched.isEmpty ? "" : " (looked under \(searched.joined(separator: ", ")))")
        case .notACgroup(let p):
            "--cgroup \(p): not a cgroup directory (give one under a cgroup mount such as /sys/fs/cgroup, or a path relative to the hierarchy such as system.slice/NAME.service)"
        case .noController(let p, let h, let o):
            "--cgroup \(p): the v1 hierarchy \(h) (\(o)) has no controller the kernel can find a task's cgroup by; give the same cgroup in a controller's hierarchy (e.g. /sys/fs/cgroup/pids/...) or in the unified one"
        case .foreignNamespace:
            "--cgroup needs the host's cgroup namespace: this recorder runs in another one (run it with --cgroupns=host or outside the container)"
        }
    }
}

/// One mount of a cgroup hierarchy, from /proc/self/mountinfo.
struct CgroupMount: Equatable {
    /// Where it is mounted.
    var point: String
    /// The cgroup of the hierarchy mounted there ("/" unless a subtree is bind-mounted).
    var root: String
    var unified: Bool
    /// v1: the controllers of the hierarchy, from the superblock options.
    var controllers: [String]
    var options: String

    static func all() -> [CgroupMount] {
        guard let text = readTextFile("/proc/self/mountinfo") else { return [] }
        return text.split(separator: "\n").compactMap { parse(String($0)) }
    }

    /// One mountinfo line: ID PARENT MAJ:MIN ROOT POINT OPTIONS [TAGS...] - TYPE SOURCE SUPEROPTIONS.
    static func parse(_ line: String) -> CgroupMount? {
        let f = line.split(separator: " ", omittingEmptySubsequences: false)
        guard let dash = f.firstIndex(of: "-"), dash >= 6, f.count > dash + 3 else { return nil }
        let type = f[dash + 1]
        guard type == "cgroup" || type == "cgroup2" else { return nil }
        let options = String(f[dash + 3])
        // Superblock options that are not controllers.
        let notControllers: Set<Substring> = ["rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "favordynmods", "nofavordynmods"]
        let controllers = type == "cgroup2" ? [] : options.split(separator: ",").filter { o in
            !notControllers.contains(o) && !o.contains("=")
        }.map(String.init)
        return CgroupMount(point: unescapeMountField(f[4]), root: unescapeMountField(f[3]), unified: type == "cgroup2", controllers: controllers, options: options)
    }

    /// The mount a resolved path is in: the longest mount point above it.
    static func containing(_ path: String, in mounts: [CgroupMount]) -> CgroupMount? {
        mounts.filter { pathIsUnder(path, $0.point) }.max { $0.point.count < $1.point.count }
    }
}

func pathIsUnder(_ path: String, _ dir: String) -> Bool {
    dir == "/" || path == dir || path.hasPrefix(dir + "/")
}

func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
}

func realPath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
}

func readLink(_ path: String) -> String? {
    var buf = [CChar](repeating: 0, count: 256)
    let n = readlink(path, &buf, buf.count - 1)
    guard n > 0 else { return nil }
    return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// A field of /proc/self/mounts or mountinfo: the kernel escapes space, tab,
/// newline and backslash in them as octal.
func unescapeMountField(_ s: Substring) -> String {
    var out: [UInt8] = []
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
