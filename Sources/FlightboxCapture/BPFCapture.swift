#if canImport(Glibc)
import Glibc
#endif
import CFlightboxBPF
import CFlightboxEvents
import CLibBPF
import FlightboxEvents

/// Probe families, one BPF object each (bpf/<name>.bpf.c).
public enum ProbeFamily: String, CaseIterable, Sendable {
    case syscalls
    case process
    /// open, unlink and rename with their paths; rides on the syscall hooks.
    case files
    /// Signals sent (sender, target, result) and delivered.
    case signals
    /// Block I/O requests: device, sector, bytes, operation, latency.
    case block
    /// setuid family, capset, ptrace, process_vm_writev, modules, bpf(),
    /// memfd_create, mount, chmod adding exec bits, dup2/dup3 onto fds 0-2.
    case privilege

    /// Run-queue latency and off-CPU time per task, over thresholds.
    case scheduler
    /// Resource levels sampled in user space (no BPF): disk, fds, tasks, memory, PSI, load.
    case gauges
    /// TCP state changes with addresses (connect latency, accepts), retransmits, resets;
    /// bytes sent and received per connection, summarized in the kernel.
    case tcp
    /// Page faults summarized per thread (user/kernel, major/minor), direct
    /// reclaim with its duration, OOM kills with the victim's size and memory cgroup.
    case memory
    /// Application health checks: uprobes, uretprobes and USDT probes, one
    /// attachment per check (`CaptureConfig.healthChecks`). On when a
    /// configuration declares checks; not a default (it has nothing to attach
    /// without them).
    case probes

    /// What `record` captures when --probes is not given (and `probes` when
    /// the configuration declares health checks).
    public static let defaults: [ProbeFamily] = [.process, .syscalls, .files, .signals, .block, .privilege, .scheduler, .tcp, .memory, .gauges]

    /// The BPF object (bpf/<name>.bpf.c) that implements the family.
    var object: String? {
        switch self {
        case .syscalls, .files, .privilege: BPFNames.Syscalls.object
        case .process: BPFNames.Process.object
        case .signals: BPFNames.Signals.object
        case .block: BPFNames.Block.object
        case .scheduler: BPFNames.Sched.object
        case .tcp: BPFNames.Tcp.object
        case .memory: BPFNames.Memory.object
        case .probes: BPFNames.Uprobe.object
        case .gauges: nil
        }
    }
}

/// Which tasks to record; applied in the kernel.
public enum CaptureFilter: Equatable, Sendable {
    case none
    /// One thread group.
    case pid(UInt32)
    /// A process and its descendants: the ones it has when recording starts
    /// and every process forked below it afterwards (as `strace -f`).
    case descendants(of: UInt32)
    case comm(String)
    /// These thread groups and every process they fork.
    case tracked([UInt32])
    /// Tasks in a cgroup or in any cgroup below it.
    case cgroup(CgroupTarget)

    public var summary: String {
        switch self {
        case .none: "system-wide"
        case .pid(let p): "pid \(p)"
        case .descendants(let p): "pid \(p) and descendants"
        case .comm(let c): "comm \(c)"
        case .tracked(let p): "command (pid \(p.map(String.init).joined(separator: ",")) and descendants)"
        case .cgroup(let c): "cgroup \(c.path) and below"
        }
    }

    public var json: JSON {
        switch self {
        case .none: .object([("mode", .string("system"))])
        case .pid(let p): .object([("mode", .string("pid")), ("pid", .uint(UInt64(p)))])
        case .descendants(let p): .object([("mode", .string("pid")), ("pid", .uint(UInt64(p))), ("descendants", .bool(true))])
        case .comm(let c): .object([("mode", .string("comm")), ("comm", .string(c))])
        case .tracked(let p): .object([("mode", .string("command")), ("pids", .array(p.map { .uint(UInt64($0)) }))])
        case .cgroup(let c): c.json
        }
    }

    /// The filter follows forks through the tracked set, which the process
    /// family's fork probe maintains: without it there is nothing to record.
    public var followsForks: Bool {
        switch self {
        case .tracked, .descendants: true
        case .none, .pid, .comm, .cgroup: false
        }
    }
}

public struct CaptureConfig: Sendable {
    public var families: [ProbeFamily] = ProbeFamily.defaults
    public var filter: CaptureFilter = .none
    /// Ring buffer size; a power of two.
    public var ringBytes: Int = 32 << 20
    /// Pending bytes at which the kernel wakes the consumer; nil for a
    /// quarter of the ring. The consumer also wakes on its own timer, so at
    /// normal rates the kernel never has to wake it: each forced wake-up is a
    /// chance for the scheduler to pull the consumer onto a traced task's CPU.
    public var wakeupBytes: Int?
    /// Shortest run-queue and off-CPU waits the scheduler family reports.
    public var schedRunqueueMinNs: UInt64 = 1_000_000
    public var schedOffCPUMinNs: UInt64 = 10_000_000
    /// Only syscalls slower than this get their fd's kind resolved.
    public var resolveFdAfterNs: UInt64 = 10_000
    public var btfPath: String = Preflight.defaultBTFPath
    /// Never trace this thread group (the recorder itself).
    public var selfPid: UInt32 = UInt32(getpid())
    public var verbose = false
    /// The health checks the probes family attaches, each by its own id.
    public var healthChecks: [ProbeDefinition] = []

    public init() {}
}

/// Owns the loaded BPF objects, their links and the ring buffer consumer;
/// all are released in deinit, which detaches every probe.
public final class BPFCapture {
    private var objects: [(ProbeFamily, OpaquePointer)] = []
    private var links: [(ProbeFamily, OpaquePointer)] = []
    private var ring: OpaquePointer?
    private var dropsFd: Int32 = -1
    private var trackedFd: Int32 = -1
    private var flushFd: Int32 = -1
    /// Programs that write out kernel-side summaries (fb_sweep_*).
    private var sweepFds: [Int32] = []
    /// Families that could not be loaded on this kernel, with why; the others run.
    public private(set) var skipped: [(ProbeFamily, String)] = []
    /// Parts of loaded families this kernel cannot provide, with why.
    public private(set) var missing: [(ProbeFamily, String)] = []
    /// Health checks that could not be attached (no such binary, function or
    /// USDT probe), in the order given; the others run.
    public private(set) var probeFailures: [ProbeAttachError] = []
    private let ncpu: Int
    private var reportedDrops: [UInt64]
    private var reportedLastTs: [UInt64]
    /// Children of a recorded command or process the kernel could not add to
    /// the tracked set (it was full): their events are missing.
    public private(set) var untrackedChildren: UInt64 = 0
    private let sink = Sink()
    public let config: CaptureConfig

    final class Sink {
        var body: ((UnsafeRawBufferPointer) -> Void)?
        var count = 0
        /// Records after which the callback stops the read (-EINTR, which
        /// `check` lets pass): libbpf 1.1 reads for as long as producers keep
        /// writing, and a flooded ring would hold the caller's loop (its
        /// timers, stop requests) for as long as the flood lasts.
        var limit = Int.max
    }

    /// Records one `poll` hands over at most (and the rest of the last batch):
    /// some tens of milliseconds of work.
    public static let pollBudget = 1 << 15

    public init(config: CaptureConfig) throws {
        self.config = config
        ncpu = Int(libbpf_num_possible_cpus())
        reportedDrops = [UInt64](repeating: 0, count: max(ncpu, 1))
        reportedLastTs = reportedDrops
        fb_bpf_capture_log(config.verbose ? 1 : 0)
        do {
            try load()
        } catch {
            teardown()
            throw error
        }
    }

    deinit { teardown() }

    private func teardown() {
        if let ring { ring_buffer__free(ring) }
        ring = nil
        for (_, l) in links { bpf_link__destroy(l) }
        links = []
        for (_, o) in objects { bpf_object__close(o) }
        objects = []
    }

    private func load() throws {
        var cfg = fb_config()
        cfg.self_pid = config.selfPid
        cfg.wakeup_bytes = UInt32(min(config.wakeupBytes ?? config.ringBytes / 4, config.ringBytes / 2))
        cfg.resolve_fd_after_ns = config.resolveFdAfterNs
        switch config.filter {
        case .none: cfg.filter_mode = UInt32(FB_FILTER_NONE.rawValue)
        case .pid(let p): cfg.filter_mode = UInt32(FB_FILTER_PID.rawValue); cfg.target_pid = p
        case .comm(let c):
            cfg.filter_mode = UInt32(FB_FILTER_COMM.rawValue)
            withUnsafeMutableBytes(of: &cfg.comm) { dst in
                for (i, b) in c.utf8.prefix(commLength - 1).enumerated() { dst[i] = b }
            }
        case .tracked, .descendants: cfg.filter_mode = UInt32(FB_FILTER_TRACKED.rawValue)
        case .cgroup(let c):
            cfg.filter_mode = UInt32(FB_FILTER_CGROUP.rawValue)
            cfg.cgroup_id = c.id
            cfg.cgroup_level = c.level
            switch c.hierarchy {
            case .unified: cfg.cgroup_ssid = -1
            case .v1(_, let ssid): cfg.cgroup_ssid = ssid
            }
        }

        cfg.emit_syscalls = config.families.contains(.syscalls) ? 1 : 0
        cfg.emit_files = config.families.contains(.files) ? 1 : 0
        cfg.emit_priv = config.families.contains(.privilege) ? 1 : 0
        cfg.sched_runq_min_ns = config.schedRunqueueMinNs
        cfg.sched_offcpu_min_ns = config.schedOffCPUMinNs
        var shared: [String: Int32] = [:]
        // One object per needed name; process first: it maintains the tracked
        // set the others read.
        var objectNames: [String] = []
        for f in config.families.sorted(by: { ($0 == .process ? 0 : 1) < ($1 == .process ? 0 : 1) }) {
            if let o = f.object, !objectNames.contains(o) { objectNames.append(o) }
        }
        for name in objectNames {
            let family = config.families.first { $0.object == name }!
            do {
                try loadObject(family, cfg: &cfg, shared: &shared)
            } catch let e as CaptureError {
                // A kernel without this family's tracepoints (or a broken
                // object) loses that family, not the recording; the process
                // family is the exception: command mode cannot follow children
                // without it.
                guard family != .process || !config.filter.followsForks, objectNames.count > 1 else { throw e }
                if let i = objects.firstIndex(where: { $0.0 == family }) {
                    bpf_object__close(objects[i].1)
                    objects.remove(at: i)
                }
                skipped.append((family, e.description))
            }
        }
        guard !objects.isEmpty else {
            // Every family failed: say why the first did, not that none was asked for.
            if let (family, why) = skipped.first { throw CaptureError.noFamilyLoaded(first: family.rawValue, why: why) }
            throw CaptureError.unknownFamily(config.families.map(\.rawValue).joined(separator: ","))
        }
        try finishLoad(shared: shared)
    }

    private func loadObject(_ family: ProbeFamily, cfg: inout fb_config, shared: inout [String: Int32]) throws {
        do {
            guard let bytes = objectBytes(family.object ?? family.rawValue) else {
                throw CaptureError.load(family: family.rawValue, errno: ENOENT, log: "no BPF object for this family")
            }
            var opts = bpf_object_open_opts()
            opts.sz = MemoryLayout<bpf_object_open_opts>.size
            let obj: OpaquePointer? = family.rawValue.withCString { name in
                opts.object_name = name
                return config.btfPath.withCString { btf in
                    if config.btfPath != Preflight.defaultBTFPath { opts.btf_custom_path = btf }
                    return bytes.withUnsafeBytes { bpf_object__open_mem($0.baseAddress, $0.count, &opts) }
                }
            }
            guard let obj else { throw CaptureError.load(family: family.rawValue, errno: errno, log: logTail()) }
            objects.append((family, obj))

            if family == .process { try chooseExitProgram(obj) }
            if family == .memory { try chooseMemoryPrograms(obj) }
            if family == .tcp { try chooseTCPPrograms(obj) }
            var err = fb_bpf_set_config(obj, &cfg)
            if err != 0 { throw CaptureError.load(family: family.rawValue, errno: -err, log: "cannot set configuration") }
            var map = bpf_object__next_map(obj, nil)
            while let m = map {
                let name = String(cString: bpf_map__name(m))
                if let fd = shared[name] {
                    err = bpf_map__reuse_fd(m, fd)
                    if err != 0 { throw CaptureError.load(family: family.rawValue, errno: -err, log: "cannot share map \(name)") }
                } else if name == BPFNames.Process.Map.events.rawValue {
                    bpf_map__set_max_entries(m, UInt32(config.ringBytes))
                }
                map = bpf_object__next_map(obj, m)
            }
            fb_bpf_log_clear()
            err = bpf_object__load(obj)
            if err != 0 { throw CaptureError.load(family: family.rawValue, errno: -err, log: logTail()) }
            for name in BPFCapture.sharedMaps where shared[name] == nil {
                if let m = bpf_object__find_map_by_name(obj, name) { shared[name] = bpf_map__fd(m) }
            }
        }
    }

    private func finishLoad(shared: [String: Int32]) throws {
        dropsFd = shared[BPFNames.Process.Map.drops.rawValue] ?? -1
        trackedFd = shared[BPFNames.Process.Map.tracked.rawValue] ?? -1
        switch config.filter {
        case .tracked(let pids): for p in pids { try track(pid: p) }
        case .descendants(let root): try track(pid: root)
        default: break
        }
        guard let eventsFd = shared[BPFNames.Process.Map.events.rawValue] else { throw CaptureError.ringBuffer(errno: ENOENT) }
        let ctx = Unmanaged.passUnretained(sink).toOpaque()
        ring = ring_buffer__new(eventsFd, { ctx, data, size in
            // A ring record is one event or a batch of them back to back.
            let sink = Unmanaged<BPFCapture.Sink>.fromOpaque(ctx!).takeUnretainedValue()
            guard let data else { return 0 }
            let base = UnsafeRawPointer(data)
            var off = 0
            while off + headerSize <= size {
                let n = Int(base.loadUnaligned(fromByteOffset: off + sizeOffset, as: UInt16.self))
                guard n >= headerSize, off + n <= size else { break }
                sink.body?(UnsafeRawBufferPointer(start: base + off, count: n))
                sink.count += 1
                off += n
            }
            return sink.count >= sink.limit ? -EINTR : 0
        }, ctx, nil)
        guard ring != nil else { throw CaptureError.ringBuffer(errno: errno) }
    }

    /// sched_process_exit gained a group_dead argument in Linux 6.16; load the
    /// program that matches this kernel.
    private func chooseExitProgram(_ obj: OpaquePointer) throws {
        let n = tracepointArgs("sched_process_exit")
        if n < 0 {
            throw CaptureError.load(family: "process", errno: -n, log: "this kernel's BTF has no sched_process_exit tracepoint")
        }
        try skipProgram(obj, n >= 2 ? BPFNames.Process.Program.fbExit : .fbExitGroupDead)
    }

    /// Arguments of a tracepoint in the kernel's BTF (or the configured
    /// one); negative when the kernel has no such tracepoint.
    private func tracepointArgs(_ name: String) -> Int32 {
        config.btfPath == Preflight.defaultBTFPath ? fb_bpf_tracepoint_args(nil, name) : fb_bpf_tracepoint_args(config.btfPath, name)
    }

    /// Leaves a program out of loading and attaching. The name comes from the
    /// compiled object (BPFNames), so it is there unless the embedded object
    /// and the names disagree: a broken build, reported, never ignored.
    private func skipProgram<P: BPFProgramName>(_ obj: OpaquePointer, _ program: P) throws {
        guard let p = bpf_object__find_program_by_name(obj, program.rawValue) else {
            throw CaptureError.load(family: String(cString: bpf_object__name(obj)), errno: ENOENT,
                                    log: "program \(program.rawValue) is not in the embedded object: rebuild flightbox")
        }
        bpf_program__set_autoload(p, false)
    }

    /// Maps the first object creates and the others reuse.
    static let sharedMaps = [BPFNames.Process.Map.events, .drops, .tracked, .batch].map(\.rawValue)

    /// Programs user space runs on demand (BPF_PROG_TEST_RUN), never attached.
    static let flushProgram = BPFNames.Syscalls.Program.fbFlush.rawValue
    static let sweepPrograms: Set<String> = [BPFNames.Syscalls.Program.fbSweepWrites.rawValue, BPFNames.Memory.Program.fbSweepFaults.rawValue, BPFNames.Tcp.Program.fbSweepNet.rawValue]

    /// The memory family's tracepoints are not on every kernel (page faults
    /// are x86's exceptions:*; memcg reclaim events came and went): a missing
    /// one costs what it reports, not the family, and the recording says so.
    /// oom:mark_victim passes the victim's task only since Linux 6.8.
    private func chooseMemoryPrograms(_ obj: OpaquePointer) throws {
        typealias P = BPFNames.Memory.Program
        let parts: [(programs: [P], tracepoints: [String], what: String)] = [
            ([.fbFaultUser, .fbFaultKernel], ["page_fault_user", "page_fault_kernel"], "page faults: this kernel has no exceptions:page_fault_user/page_fault_kernel tracepoints"),
            ([.fbReclaimBegin, .fbReclaimEnd], ["mm_vmscan_direct_reclaim_begin", "mm_vmscan_direct_reclaim_end"], "direct reclaim: this kernel has no vmscan:mm_vmscan_direct_reclaim_* tracepoints"),
            ([.fbMemcgReclaimBegin, .fbMemcgReclaimEnd], ["mm_vmscan_memcg_reclaim_begin", "mm_vmscan_memcg_reclaim_end"], "memory cgroup reclaim: this kernel has no vmscan:mm_vmscan_memcg_reclaim_* tracepoints"),
        ]
        for part in parts where part.tracepoints.contains(where: { tracepointArgs($0) < 0 }) {
            for program in part.programs { try skipProgram(obj, program) }
            missing.append((.memory, part.what))
        }
        let n = tracepointArgs("mark_victim")
        guard n != 2 else { return }
        try skipProgram(obj, P.fbOomVictim)
        missing.append((.memory, n < 0 ? "OOM kills: this kernel has no oom:mark_victim tracepoint"
                                       : "OOM kills: this kernel's oom:mark_victim does not pass the victim's task (Linux 6.8 or later does)"))
    }

    /// The socket tracepoints the byte summaries come from arrived in Linux
    /// 6.2: without them the connections' states are still recorded. One
    /// look (each parses the kernel's BTF, a few ms): sock_send_length and
    /// sock_recv_length came in one commit, tcp_destroy_sock (5.12) before.
    private func chooseTCPPrograms(_ obj: OpaquePointer) throws {
        guard tracepointArgs("sock_send_length") < 0 else { return }
        for program in [BPFNames.Tcp.Program.fbSockSend, .fbSockRecv, .fbTcpDestroy] { try skipProgram(obj, program) }
        missing.append((.tcp, "bytes per connection: this kernel lacks the sock:sock_send_length, sock:sock_recv_length or tcp:tcp_destroy_sock tracepoint (Linux 6.2 or later has them)"))
    }

    /// Attaches every program. Separate from loading so a caller can create
    /// its output first and fail before anything touches the kernel's hooks.
    public func attach() throws {
        // The memory family's exit program writes a thread's last fault
        // summary, which belongs before the process family's exit record:
        // programs on one tracepoint run in the order they were attached.
        let ordered = objects.filter { $0.0 == .memory } + objects.filter { $0.0 != .memory }
        objectLoop: for (family, obj) in ordered {
            if family == .probes {
                // Attached per check, at the sites the checks name, not at the programs' own sections.
                attachHealthChecks(obj)
                continue
            }
            var prog = bpf_object__next_program(obj, nil)
            while let p = prog {
                let name = String(cString: bpf_program__name(p))
                let userDriven = name == BPFCapture.flushProgram || BPFCapture.sweepPrograms.contains(name)
                if name == BPFCapture.flushProgram { flushFd = bpf_program__fd(p) }
                if BPFCapture.sweepPrograms.contains(name) { sweepFds.append(bpf_program__fd(p)) }
                if !bpf_program__autoload(p) || userDriven {
                    prog = bpf_object__next_program(obj, p)
                    continue
                }
                guard let link = bpf_program__attach(p) else {
                    let e = CaptureError.attach(family: family.rawValue, program: String(cString: bpf_program__name(p)), errno: errno)
                    guard family != .process || !config.filter.followsForks, objects.count > 1 else { throw e }
                    // Not fatal: this family goes, whole, and the others record.
                    links.removeAll { entry in
                        if entry.0 == family { bpf_link__destroy(entry.1); return true }
                        return false
                    }
                    skipped.append((family, e.description))
                    continue objectLoop
                }
                links.append((family, link))
                prog = bpf_object__next_program(obj, p)
            }
        }
        if case .descendants(let root) = config.filter { try trackDescendants(of: root) }
    }

    /// Attaches each health check with the probes family's programs; a
    /// check that cannot attach is kept in `probeFailures`, the others run.
    private func attachHealthChecks(_ obj: OpaquePointer) {
        let programs = HealthProbePrograms(object: obj)
        for check in config.healthChecks {
            switch programs.attach(check) {
            case .success(let made): links += made.map { (.probes, $0) }
            case .failure(let e): probeFailures.append(e)
            }
        }
    }

    /// Adds the descendants `root` already has to the tracked set. Runs once
    /// the fork probe is attached, so a process forked from then on by a
    /// tracked parent is added by the kernel, and one forked before is in
    /// /proc; scanning until nothing new turns up catches the forks of
    /// descendants not yet tracked while a scan ran.
    private func trackDescendants(of root: UInt32) throws {
        var known: Set<UInt32> = [root]
        for _ in 0..<8 {
            let found = ProcScan.descendants(of: root).filter { !known.contains($0) }
            if found.isEmpty { return }
            for p in found { try track(pid: p) }
            known.formUnion(found)
        }
    }

    /// Pushes every CPU's pending batch into the ring buffer, by running the
    /// flush program on each CPU. Call before a final drain, and now and then
    /// so batches of CPUs that went quiet do not wait.
    public func flushBatches() {
        guard flushFd >= 0 else { return }
        for cpu in 0..<ncpu { run(flushFd, onCPU: cpu, argument: 0) }
    }

    /// Writes out kernel-side summaries (writes per file, faults per thread)
    /// that saw no activity for a second; with `all`, every one, as the
    /// recording ends. Call about once a second.
    public func sweepSummaries(all: Bool = false) {
        for fd in sweepFds { run(fd, onCPU: nil, argument: all ? 1 : 0) }
    }

    /// Runs one of the raw_tp programs user space drives (fb_flush,
    /// fb_sweep_*) once, on `cpu` or wherever this thread is, with
    /// `argument` as its ctx[0].
    private func run(_ fd: Int32, onCPU cpu: Int?, argument: UInt64) {
        var arg = argument
        withUnsafeMutableBytes(of: &arg) { ctx in
            var opts = bpf_test_run_opts()
            opts.sz = MemoryLayout<bpf_test_run_opts>.size
            if let cpu {
                opts.flags = UInt32(BPF_F_TEST_RUN_ON_CPU)
                opts.cpu = UInt32(cpu)
            }
            // A raw_tp test run hands the program these bytes as its argument array.
            opts.ctx_in = UnsafeRawPointer(ctx.baseAddress)
            opts.ctx_size_in = UInt32(ctx.count)
            _ = bpf_prog_test_run_opts(fd, &opts)
        }
    }

    /// Detaches every probe; returns once no program is running any more, so
    /// a following `flushBatches` finds no batch in use and loses nothing.
    public func detach() {
        for (_, l) in links { bpf_link__destroy(l) }
        links = []
    }

    /// Adds a thread group to the tracked set (command and --pid modes).
    public func track(pid: UInt32) throws {
        var key = pid
        var one: UInt8 = 1
        if bpf_map_update_elem(trackedFd, &key, &one, UInt64(BPF_ANY)) != 0 {
            throw CaptureError.load(family: "process", errno: errno, log: "cannot add pid \(pid) to the tracked set")
        }
    }

    /// Waits up to `timeoutMs` for data, then hands every available record to
    /// `body` in ring order. Returns how many records were consumed.
    @discardableResult
    public func poll(timeoutMs: Int32, _ body: (UnsafeRawBufferPointer) -> Void) throws -> Int {
        try feeding(body, limit: BPFCapture.pollBudget) {
            try check(ring_buffer__poll(ring, timeoutMs))
            // Records submitted without a wake-up never make epoll report the
            // ring, so read it on every tick, not only when woken.
            try check(ring_buffer__consume(ring))
        }
    }

    /// Consumes everything available without waiting.
    @discardableResult
    public func drainAll(_ body: (UnsafeRawBufferPointer) -> Void) throws -> Int {
        try feeding(body) { try check(ring_buffer__consume(ring)) }
    }

    /// Runs `read` with `body` as the ring buffer callback's sink; returns the
    /// records it handed over.
    private func feeding(_ body: (UnsafeRawBufferPointer) -> Void, limit: Int = .max, _ read: () throws -> Void) throws -> Int {
        try withoutActuallyEscaping(body) { b in
            sink.body = b
            sink.count = 0
            sink.limit = limit
            defer { sink.body = nil }
            try read()
            return sink.count
        }
    }

    private func check(_ rc: Int32) throws {
        if rc < 0, -rc != EINTR { throw CaptureError.ringBuffer(errno: -rc) }
    }

    /// Loss records for drops counted in the kernel since the last call, one
    /// per CPU that dropped, stamped with the time of that CPU's last drop.
    public func newLosses() -> [[UInt8]] {
        guard dropsFd >= 0, ncpu > 0 else { return [] }
        var values = [fb_drops](repeating: fb_drops(), count: ncpu)
        var key: UInt32 = 0
        guard bpf_map_lookup_elem(dropsFd, &key, &values) == 0 else { return [] }
        var out: [[UInt8]] = []
        untrackedChildren = values.reduce(0) { $0 + $1.untracked }
        for cpu in 0..<ncpu where values[cpu].count > reportedDrops[cpu] {
            let lost = values[cpu].count - reportedDrops[cpu]
            // The kernel keeps the first drop ever and the latest: after the
            // first report, the previous report's last drop bounds this interval.
            let first = reportedDrops[cpu] == 0 ? values[cpu].first_ts : reportedLastTs[cpu]
            reportedDrops[cpu] = values[cpu].count
            reportedLastTs[cpu] = values[cpu].last_ts
            out.append(EventEncoder.loss(ts: values[cpu].last_ts, cpu: UInt16(cpu), lost: lost, firstTs: first))
        }
        return out
    }

    /// Total events the kernel could not deliver so far.
    public var totalLost: UInt64 { reportedDrops.reduce(0, +) }

    private func logTail() -> String {
        let s = String(cString: fb_bpf_log_tail())
        let lines = s.split(separator: "\n").suffix(6)
        return lines.joined(separator: " | ")
    }
}

/// The BPF object of a family: the embedded one, or for BPF development
/// `$FLIGHTBOX_BPF_OBJECT_DIR/<family>.bpf.o` when that variable is set.
func objectBytes(_ family: String) -> [UInt8]? {
    if let dir = getenv("FLIGHTBOX_BPF_OBJECT_DIR") {
        return readFileBytes(String(cString: dir) + "/\(family).bpf.o", limit: 64 << 20)
    }
    return EmbeddedBPF.objects[family].flatMap(base64Decode)
}

private let headerSize = MemoryLayout<fb_header>.size
private let sizeOffset = MemoryLayout<fb_header>.offset(of: \.size)!

func base64Decode(_ s: String) -> [UInt8]? {
    var table = [UInt8](repeating: 0xff, count: 256)
    for (i, c) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() { table[Int(c)] = UInt8(i) }
    var out: [UInt8] = []
    out.reserveCapacity(s.utf8.count * 3 / 4)
    var acc: UInt32 = 0
    var bits = 0
    for c in s.utf8 {
        if c == UInt8(ascii: "=") { break }
        let v = table[Int(c)]
        if v == 0xff { return nil }
        acc = (acc << 6) | UInt32(v)
        bits += 6
        if bits >= 8 {
            bits -= 8
            out.append(UInt8((acc >> UInt32(bits)) & 0xff))
        }
    }
    return out
}

extension ProbeFamily {
    /// The family that produces events of `type`; nil for losses.
    public init?(producing type: EventType) {
        switch type {
        case .syscall: self = .syscalls
        case .fork, .exec, .exit: self = .process
        case .file, .writes: self = .files
        case .signal: self = .signals
        case .block: self = .block
        case .privilege: self = .privilege
        case .sched: self = .scheduler
        case .gauge: self = .gauges
        case .tcp, .netbytes: self = .tcp
        case .faults, .reclaim, .oom: self = .memory
        case .probe: self = .probes
        case .loss: return nil
        }
    }
}
