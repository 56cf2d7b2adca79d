#if canImport(Glibc)
import Glibc
#endif
import CLibBPF

/// Checks, before anything is created or attached, that this process can
/// load tracing BPF programs on this kernel.
public enum Preflight {
    public static let defaultBTFPath = "/sys/kernel/btf/vmlinux"

    /// Capability bits from /proc/self/status CapEff.
    static func effectiveCapabilities() -> UInt64 {
        guard let text = readTextFile("/proc/self/status") else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("CapEff:") {
            return UInt64(line.dropFirst(7).trimmingCharacters(in: " \t"), radix: 16) ?? 0
        }
        return 0
    }

    public static func check(btfPath: String = defaultBTFPath) throws {
        let caps = effectiveCapabilities()
        let sysAdmin: UInt64 = 1 << 21, perfmon: UInt64 = 1 << 38, bpf: UInt64 = 1 << 39
        let privileged = caps & sysAdmin != 0 || (caps & perfmon != 0 && caps & bpf != 0)
        guard privileged else { throw CaptureError.notPrivileged }
        guard access(btfPath, R_OK) == 0 else { throw CaptureError.noBTF(path: btfPath) }
        // A throwaway map proves the bpf() syscall works for us here (user
        // namespaces, seccomp and lockdown all fail it).
        let fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, nil, 4, 8, 1, nil)
        if fd < 0 { throw CaptureError.bpfUnavailable(errno: errno) }
        close(fd)
    }
}

func readTextFile(_ path: String, limit: Int = 1 << 20) -> String? {
    guard let bytes = readFileBytes(path, limit: limit) else { return nil }
    return String(decoding: bytes, as: UTF8.self)
}

func readFileBytes(_ path: String, limit: Int = 1 << 20) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while out.count < limit {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0, errno == EINTR { continue }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return out
}

extension Substring {
    func trimmingCharacters(in set: String) -> String {
        var s = self
        while let f = s.first, set.contains(f) { s = s.dropFirst() }
        while let l = s.last, set.contains(l) { s = s.dropLast() }
        return String(s)
    }
}
