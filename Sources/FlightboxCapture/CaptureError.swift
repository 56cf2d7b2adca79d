#if canImport(Glibc)
import Glibc
#endif
import CLibBPF

/// strerror, or libbpf's own text for its error codes (4000 and up).
func errorText(_ e: Int32) -> String {
    if e >= 4000 {
        var buf = [CChar](repeating: 0, count: 128)
        libbpf_strerror(-e, &buf, buf.count)
        return String(cString: buf)
    }
    return String(cString: strerror(e))
}

/// Why capture could not start or go on, with what to do about it.
public enum CaptureError: Error, CustomStringConvertible {
    case notPrivileged
    case noBTF(path: String)
    case bpfUnavailable(errno: Int32)
    case load(family: String, errno: Int32, log: String)
    case attach(family: String, program: String, errno: Int32)
    case ringBuffer(errno: Int32)
    case spawn(command: String, errno: Int32)
    case unknownFamily(String)
    case noFamilyLoaded(first: String, why: String)

    public var description: String {
        switch self {
        case .notPrivileged:
            "recording needs root (or CAP_BPF and CAP_PERFMON): run flightbox with sudo"
        case .noBTF(let path):
            "no kernel BTF at \(path): this kernel lacks CONFIG_DEBUG_INFO_BTF; use a kernel with BTF or pass --btf FILE"
        case .bpfUnavailable(let e):
            "the kernel refused BPF (bpf(): \(String(cString: strerror(e)))): run as root in the host's namespaces, not in a user namespace or a container without CAP_BPF"
        case .load(let family, let e, let log):
            "loading the \(family) probes failed (\(errorText(e))); kernel said: \(log.isEmpty ? "nothing" : log)"
        case .attach(let family, let program, let e):
            "attaching \(family) probe \(program) failed (\(errorText(e))): this kernel lacks that tracepoint or tp_btf support"
        case .ringBuffer(let e):
            "reading the BPF ring buffer failed: \(String(cString: strerror(e)))"
        case .spawn(let c, let e):
            "cannot run \(c): \(String(cString: strerror(e)))"
        case .noFamilyLoaded(_, let why):
            "no probe family could be loaded; the first: \(why)"
        case .unknownFamily(let f):
            "unknown probe family '\(f)'; known: \(ProbeFamily.allCases.map(\.rawValue).joined(separator: ","))"
        }
    }
}

/// A program of one BPF object, named through the generated `BPFNames` (from
/// the compiled objects), so a misspelt program does not build.
protocol BPFProgramName: RawRepresentable<String> {}
