#if canImport(Glibc)
import Glibc
#endif
import CFlightboxBPF
import CFlightboxEvents
import CLibBPF

/// Where a health check attaches in an application.
public enum ProbeSite: Sendable, Equatable, CustomStringConvertible {
    /// A function by its symbol: entry and return (latency, return value).
    case function(binary: String, symbol: String)
    /// A function at an offset in the binary's file (a stripped binary): entry and return.
    case offset(binary: String, offset: UInt64)
    /// A USDT probe (`provider:name` in the binary's .note.stapsdt).
    case usdt(binary: String, provider: String, name: String)

    public var description: String {
        switch self {
        case .function(let b, let s): "\(b):\(s)"
        case .offset(let b, let o): "\(b):0x\(String(o, radix: 16))"
        case .usdt(let b, let p, let n): "\(b):\(p):\(n)"
        }
    }
}

/// One health check's probe, as bpf/uprobe.bpf.c sees it: all of it travels
/// in the attachment's BPF cookie, so one program set serves every check.
public struct ProbeDefinition: Sendable, Equatable {
    /// The check's number in the trace: `probe_id` of its fb_probe events.
    public var id: UInt32
    public var site: ProbeSite
    /// Only this process; nil for every process that maps the binary, now or later.
    public var pid: Int32?
    /// Integer arguments captured (0 to 4): function arguments at entry, or the USDT probe's.
    public var arguments: Int
    /// The function returns a C int: its return value is sign-extended from 32 bits.
    public var int32Return: Bool
    /// The argument (1 to `arguments`) that points to a string to capture; 0 for none.
    public var stringArgument: Int
    /// A function's entry only, no return probe: it writes no event (the
    /// entry is kept for a return that never comes); what an entry uprobe
    /// alone costs, for `flightbox bench uprobes`.
    public var entryOnly: Bool

    public init(id: UInt32, site: ProbeSite, pid: Int32? = nil, arguments: Int = 0, int32Return: Bool = true, stringArgument: Int = 0,
                entryOnly: Bool = false) {
        self.id = id
        self.site = site
        self.pid = pid
        self.arguments = arguments
        self.int32Return = int32Return
        self.stringArgument = stringArgument
        self.entryOnly = entryOnly
    }

    /// The attachment's BPF cookie (bpf/uprobe.bpf.c): id, argument count,
    /// int return, string argument.
    var cookie: UInt64 {
        let n = min(max(arguments, 0), Int(FB_PROBE_ARGS))
        let string = (1...max(n, 1)).contains(stringArgument) && stringArgument <= n ? UInt64(stringArgument) : 0
        return UInt64(id) | UInt64(n) << 32 | (int32Return ? 1 << 36 : 0) | string << 37
    }
}

/// Why one health check's probe could not be attached: one line naming it.
public struct ProbeAttachError: Error, CustomStringConvertible, Sendable {
    public var probe: ProbeDefinition
    public var errno: Int32
    public var description: String {
        let (what, binary) = switch probe.site {
        case .function(let b, _): ("function", b)
        case .offset(let b, _): ("offset", b)
        case .usdt(let b, _, _): ("USDT probe", b)
        }
        let pid = probe.pid.map { " in pid \($0)" } ?? ""
        // libbpf says ENOENT both for a missing binary and for a missing symbol or probe in it.
        var why = errorText(errno)
        if errno == ENOENT, access(binary, F_OK) == 0 {
            why = switch probe.site {
            case .function(_, let symbol): "\(binary) has no function \(symbol)"
            case .offset(_, let offset): "\(binary) has nothing to probe at 0x\(String(offset, radix: 16))"
            case .usdt(_, let provider, let name): "\(binary) has no USDT probe \(provider):\(name)"
            }
        }
        return "health check \(probe.id): cannot attach to \(what) \(probe.site)\(pid): \(why)"
    }
}

/// The health checks' probes (bpf/uprobe.bpf.c), loaded once and attached per
/// check at run time. A check that cannot attach (no such binary, symbol or
/// USDT probe) is reported in `failures` and the others run.
///
/// Standalone, with its own ring buffer: the recorder attaches the same
/// checks as the `probes` family of its BPFCapture, on the shared ring.
public final class HealthProbes {
    private var object: OpaquePointer?
    private var links: [OpaquePointer] = []
    private var ring: OpaquePointer?
    private let sink = BPFCapture.Sink()
    /// The checks that could not be attached, in the order given.
    public private(set) var failures: [ProbeAttachError] = []

    public init(probes: [ProbeDefinition], ringBytes: Int = 1 << 20, selfPid: UInt32 = UInt32(getpid())) throws {
        fb_bpf_capture_log(0)
        do {
            try load(ringBytes: ringBytes, selfPid: selfPid)
            for p in probes { attach(p) }
        } catch {
            teardown()
            throw error
        }
    }

    deinit { teardown() }

    private func teardown() {
        if let ring { ring_buffer__free(ring) }
        ring = nil
        for l in links { bpf_link__destroy(l) }
        links = []
        if let object { bpf_object__close(object) }
        object = nil
    }

    private func load(ringBytes: Int, selfPid: UInt32) throws {
        let family = BPFNames.Uprobe.object
        guard let bytes = objectBytes(family) else { throw CaptureError.unknownFamily(family) }
        object = bytes.withUnsafeBytes { bpf_object__open_mem($0.baseAddress, $0.count, nil) }
        guard let object else { throw CaptureError.load(family: family, errno: errno, log: "") }
        var cfg = fb_config()
        cfg.self_pid = selfPid
        // Wake the reader once a quarter of the ring is filled, as BPFCapture
        // does, not per event: a wake-up per probe hit cost ~20 µs a call
        // (`flightbox bench uprobes`). poll's timeout bounds the delay.
        cfg.wakeup_bytes = UInt32(ringBytes / 4)
        var err = fb_bpf_set_config(object, &cfg)
        if err != 0 { throw CaptureError.load(family: family, errno: -err, log: "cannot set configuration") }
        if let m = bpf_object__find_map_by_name(object, BPFNames.Uprobe.Map.events.rawValue) {
            bpf_map__set_max_entries(m, UInt32(ringBytes))
        }
        fb_bpf_log_clear()
        err = bpf_object__load(object)
        if err != 0 { throw CaptureError.load(family: family, errno: -err, log: String(cString: fb_bpf_log_tail())) }
        guard let events = bpf_object__find_map_by_name(object, BPFNames.Uprobe.Map.events.rawValue) else {
            throw CaptureError.ringBuffer(errno: ENOENT)
        }
        let ctx = Unmanaged.passUnretained(sink).toOpaque()
        ring = ring_buffer__new(bpf_map__fd(events), { ctx, data, size in
            let sink = Unmanaged<BPFCapture.Sink>.fromOpaque(ctx!).takeUnretainedValue()
            guard let data else { return 0 }
            sink.body?(UnsafeRawBufferPointer(start: data, count: size))
            sink.count += 1
            return 0
        }, ctx, nil)
        guard ring != nil else { throw CaptureError.ringBuffer(errno: errno) }
    }

    private func attach(_ probe: ProbeDefinition) {
        guard let object else { return }
        switch HealthProbePrograms(object: object).attach(probe) {
        case .success(let made): links += made
        case .failure(let e): failures.append(e)
        }
    }

    /// Waits up to `timeoutMs` for probe events (or a quarter of the ring
    /// filled) and hands each to `body`; then everything the ring holds.
    @discardableResult
    public func poll(timeoutMs: Int32, _ body: (UnsafeRawBufferPointer) -> Void) throws -> Int {
        guard let ring else { return 0 }
        return try withoutActuallyEscaping(body) { body in
            sink.body = body
            sink.count = 0
            defer { sink.body = nil }
            var n = ring_buffer__poll(ring, timeoutMs)
            if n < 0 && n != -EINTR { throw CaptureError.ringBuffer(errno: -n) }
            // Wake-ups are batched (wakeup_bytes): what came without one is
            // taken when the wait ends.
            if n <= 0 {
                n = ring_buffer__consume(ring)
                if n < 0 { throw CaptureError.ringBuffer(errno: -n) }
            }
            return sink.count
        }
    }
}

/// The probes family's three programs in a loaded object, and how one check
/// attaches with them: all of it in the BPF cookie, nothing compiled per check.
struct HealthProbePrograms {
    let object: OpaquePointer

    private func program(_ p: BPFNames.Uprobe.Program) -> OpaquePointer? {
        bpf_object__find_program_by_name(object, p.rawValue)
    }

    /// The check's links, or why it could not attach (having detached what it had).
    func attach(_ probe: ProbeDefinition) -> Result<[OpaquePointer], ProbeAttachError> {
        let pid = probe.pid ?? -1
        var made: [OpaquePointer] = []
        var failure: Int32 = 0
        switch probe.site {
        case .function(let binary, let symbol):
            failure = attachFunction(binary: binary, symbol: symbol, offset: 0, pid: pid, cookie: probe.cookie, entryOnly: probe.entryOnly, into: &made)
        case .offset(let binary, let offset):
            failure = attachFunction(binary: binary, symbol: nil, offset: offset, pid: pid, cookie: probe.cookie, entryOnly: probe.entryOnly, into: &made)
        case .usdt(let binary, let provider, let name):
            var opts = bpf_usdt_opts()
            opts.sz = MemoryLayout<bpf_usdt_opts>.size
            opts.usdt_cookie = probe.cookie
            if let link = bpf_program__attach_usdt(program(.fbProbeUsdt), pid, binary, provider, name, &opts) {
                made.append(link)
            } else {
                failure = errno
            }
        }
        if failure != 0 {
            for l in made { bpf_link__destroy(l) }
            return .failure(ProbeAttachError(probe: probe, errno: failure))
        }
        return .success(made)
    }

    /// Entry and return probes at `symbol` (or at `offset` in the file); errno on failure.
    private func attachFunction(binary: String, symbol: String?, offset: UInt64, pid: Int32, cookie: UInt64, entryOnly: Bool, into made: inout [OpaquePointer]) -> Int32 {
        for (prog, ret) in [(BPFNames.Uprobe.Program.fbProbeEntry, false), (.fbProbeReturn, true)] where !(ret && entryOnly) {
            var opts = bpf_uprobe_opts()
            opts.sz = MemoryLayout<bpf_uprobe_opts>.size
            opts.bpf_cookie = cookie
            opts.retprobe = ret
            let link: OpaquePointer?
            if let symbol {
                link = symbol.withCString { name in
                    opts.func_name = name
                    return bpf_program__attach_uprobe_opts(program(prog), pid, binary, 0, &opts)
                }
            } else {
                link = bpf_program__attach_uprobe_opts(program(prog), pid, binary, Int(offset), &opts)
            }
            guard let link else { return errno == 0 ? ENOENT : errno }
            made.append(link)
        }
        return 0
    }
}
