#if canImport(Glibc)
import Glibc
#endif
import CFlightboxBPF
import CLibBPF

/// The overhead floor for benchmarks: counts hits in the kernel on every
/// tracepoint the recorder's default families use, and streams nothing
/// (bpf/bench.bpf.c). Detaches in deinit.
public final class CountingProbe {
    private var object: OpaquePointer?
    private var links: [OpaquePointer] = []

    /// With `clockReads`, each syscall's entry and exit also read the clock,
    /// as timing a syscall needs at the least.
    public init(clockReads: Bool = false) throws {
        fb_bpf_capture_log(0)
        guard let bytes = objectBytes(BPFNames.Bench.object) else { throw CaptureError.unknownFamily("bench") }
        object = bytes.withUnsafeBytes { bpf_object__open_mem($0.baseAddress, $0.count, nil) }
        guard let object else { throw CaptureError.load(family: "bench", errno: errno, log: "") }
        let unwanted: [BPFNames.Bench.Program] = clockReads ? [.fbCountEnter, .fbCountExit] : [.fbClockEnter, .fbClockExit]
        for program in unwanted {
            guard let p = bpf_object__find_program_by_name(object, program.rawValue) else {
                throw CaptureError.load(family: "bench", errno: ENOENT, log: "program \(program.rawValue) is not in the embedded object: rebuild flightbox")
            }
            bpf_program__set_autoload(p, false)
        }
        let err = bpf_object__load(object)
        if err != 0 { throw CaptureError.load(family: "bench", errno: -err, log: String(cString: fb_bpf_log_tail())) }
        var prog = bpf_object__next_program(object, nil)
        while let p = prog {
            let name = String(cString: bpf_program__name(p))
            if !bpf_program__autoload(p) {
                // not this mode's
            } else if let link = bpf_program__attach(p) {
                links.append(link)
            } else if name.hasSuffix("_enter") || name.hasSuffix("_exit") {
                throw CaptureError.attach(family: "bench", program: name, errno: errno)
            } // else: a tracepoint this kernel lacks, which the recorder would skip too

            prog = bpf_object__next_program(object, p)
        }
    }

    /// Syscall entries and exits, and hits of the other tracepoints, counted
    /// so far, summed over CPUs.
    public func counts() -> (enter: UInt64, exit: UInt64, other: UInt64) {
        guard let object, let map = bpf_object__find_map_by_name(object, BPFNames.Bench.Map.counts.rawValue) else { return (0, 0, 0) }
        let ncpu = Int(libbpf_num_possible_cpus())
        var sums: [UInt64] = [0, 0, 0]
        for key in 0..<3 {
            var k = UInt32(key)
            var values = [UInt64](repeating: 0, count: ncpu)
            if bpf_map_lookup_elem(bpf_map__fd(map), &k, &values) == 0 { sums[key] = values.reduce(0, +) }
        }
        return (sums[0], sums[1], sums[2])
    }

    deinit {
        for l in links { bpf_link__destroy(l) }
        if let object { bpf_object__close(object) }
    }
}
