import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat
import FlightboxRecorder

/// What the kernel side of a recording is: probe families, filters, ring,
/// per-family thresholds, and the block codec. Shared by `record` and
/// `flight` (`@OptionGroup`), so both take the same flags the same way.
struct CaptureOptions: ParsableArguments {
    @Option(help: "Probe families, comma-separated: \(ProbeFamily.allCases.map(\.rawValue).joined(separator: ",")) (default: \(ProbeFamily.defaults.map(\.rawValue).joined(separator: ","))). With a command or --pid, process is always on, to follow children; probes is on when --config declares health checks.")
    var probes: String?

    @Option(help: "Record only this process (all its threads) and its descendants: the ones it has and the ones forked below it while recording (as strace -f).")
    var pid: UInt32?

    @Option(help: ArgumentHelp("Record only tasks in this cgroup and the cgroups below it (a systemd service, a container), filtered in the kernel. An absolute path to a cgroup directory (/sys/fs/cgroup/..., any v1 or v2 hierarchy) or a path relative to the hierarchy (system.slice/nginx.service), looked up in the unified hierarchy first, then in the v1 ones.", valueName: "path"))
    var cgroup: String?

    @Option(help: "Record only tasks with this command name (as in /proc/PID/comm).")
    var comm: String?

    @Option(help: "Block codec: zstd or lz4.")
    var codec: String = "zstd"

    @Option(help: "zstd level.")
    var level: Int32 = 3

    @Option(help: "Ring buffer size in KiB (a power of two, 4 to 1048576).")
    var ringKb: Int = 32 << 10

    @Option(help: "Pending KiB at which the kernel wakes the recorder (default: a quarter of the ring; at most half).")
    var wakeupKb: Int?

    @Option(help: "Scheduler family: shortest run-queue wait to report.")
    var schedRunqMin: String = "1ms"

    @Option(help: "Scheduler family: shortest time blocked off the CPU to report.")
    var schedOffcpuMin: String = "10ms"

    @Option(help: "Gauges family: sampling interval.")
    var gaugeInterval: String = "1s"

    @Option(help: "Kernel BTF to relocate against, for kernels without /sys/kernel/btf/vmlinux.")
    var btf: String = Preflight.defaultBTFPath

    @Flag(help: "Print libbpf's messages.")
    var verbose = false

    func validate() throws {
        if filterFlags.count > 1 { throw ValidationError("--pid, --comm and --cgroup exclude each other") }
        guard let c = Codec(name: codec), c != .none else { throw ValidationError("--codec must be zstd or lz4") }
        if let levels = c.levels { try checkRange(level, levels, flag: "--level") }
        // The kernel takes a ring of up to 4 GiB less a few pages; 1 GiB is
        // far more than a recorder ever needs and keeps every size in a UInt32.
        if ringKb < 4 || ringKb > 1 << 20 || ringKb & (ringKb - 1) != 0 {
            throw ValidationError("--ring-kb: \(ringKb) is not a power of two from 4 to 1048576 (1 GiB)")
        }
        if let wakeupKb { try checkRange(wakeupKb, 1...(ringKb / 2), flag: "--wakeup-kb", unit: " KiB, half the ring") }
        if try parseDuration(gaugeInterval, flag: "--gauge-interval", example: "1s") < 10_000_000 {
            throw ValidationError("--gauge-interval: '\(gaugeInterval)' is too short (at least 10ms)")
        }
        for (flag, v) in [("--sched-runq-min", schedRunqMin), ("--sched-offcpu-min", schedOffcpuMin)] {
            _ = try parseDuration(v, flag: flag, example: "1ms")
        }
        if let comm, comm.isEmpty || comm.utf8.count > 15 { throw ValidationError("--comm: kernel command names are 1 to 15 bytes") }
        if let pid { try checkProcess(pid) }
        if let cgroup { _ = try resolveCgroup(cgroup) }
        _ = try families()
    }

    /// The filter flags given, for commands that refuse them with something
    /// of their own (a command to run).
    var filterFlags: [String] {
        [pid.map { _ in "--pid" }, comm.map { _ in "--comm" }, cgroup.map { _ in "--cgroup" }].compactMap { $0 }
    }

    /// --cgroup as the cgroup the kernel compares; its errors are usage errors.
    func resolveCgroup(_ path: String) throws -> CgroupTarget {
        do { return try CgroupTarget.resolve(path, btfPath: btf) } catch let e as CgroupError {
            throw ValidationError(e.description)
        } catch let e as CaptureError {
            throw ValidationError(e.description)
        }
    }

    /// --probes as families: every name known, none twice, at least one.
    func families() throws -> [ProbeFamily]? {
        try probes.map { list in
            try parseList(list, flag: "--probes", known: ProbeFamily.allCases.map(\.rawValue)).map { ProbeFamily(rawValue: $0)! }
        }
    }

    /// A --pid that names no process (or a thread, not a process) would record
    /// nothing but machine gauges, without a word.
    func checkProcess(_ pid: UInt32) throws {
        guard pid > 0, pid <= UInt32(Int32.max), kill(pid_t(pid), 0) == 0 || errno == EPERM else {
            throw ValidationError("--pid \(pid): no such process")
        }
        let fd = open("/proc/\(pid)/status", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return }
        for line in String(decoding: buf[0..<n], as: UTF8.self).split(separator: "\n") where line.hasPrefix("Tgid:") {
            if let tgid = UInt32(line.dropFirst(5).filter { $0 != " " && $0 != "\t" }), tgid != pid {
                throw ValidationError("--pid \(pid) is a thread of process \(tgid): pass --pid \(tgid) to record that process")
            }
        }
    }

    var blockCodec: Codec { Codec(name: codec)! }
    var gaugeIntervalNs: UInt64 { parseDuration(gaugeInterval)! }

    /// The capture these options describe, after validate(); a command to
    /// record sets its own filter (`.tracked`) on top.
    func captureConfig() throws -> CaptureConfig {
        var config = CaptureConfig()
        config.ringBytes = ringKb << 10
        config.wakeupBytes = wakeupKb.map { $0 << 10 }
        config.schedRunqueueMinNs = parseDuration(schedRunqMin)!
        config.schedOffCPUMinNs = parseDuration(schedOffcpuMin)!
        config.btfPath = btf
        config.verbose = verbose
        if let families = try families() { config.families = families }
        if let pid {
            config.filter = .descendants(of: pid)
        } else if let comm {
            config.filter = .comm(comm)
        } else if let cgroup {
            config.filter = .cgroup(try resolveCgroup(cgroup))
        }
        if config.filter.followsForks, !config.families.contains(.process) {
            // Following descendants needs the fork probe.
            config.families.append(.process)
        }
        return config
    }
}

/// Loads and attaches the probes, warning on stderr about families or parts
/// of them the kernel could not give.
func startCapture(_ config: CaptureConfig) throws -> BPFCapture {
    let capture = try BPFCapture(config: config)
    try capture.attach()
    for (family, why) in capture.skipped {
        FileHandleStderr.write("flightbox: warning: \(family.rawValue) probes unavailable, recording without them: \(why)\n")
    }
    for (family, why) in capture.missing {
        FileHandleStderr.write("flightbox: warning: \(family.rawValue) probes: recording without \(why)\n")
    }
    for failure in capture.probeFailures {
        FileHandleStderr.write("flightbox: warning: \(failure); the other checks run\n")
    }
    return capture
}

/// A trace's metadata for a capture starting now: the host, the clock pair
/// that maps event time to wall-clock time, and the capture's settings
/// (`extra` adds fields of its own, e.g. a flight segment's).
/// `clock`, when given, is the (CLOCK_MONOTONIC, CLOCK_REALTIME) pair to
/// store instead of one read now: a flight recorder's segments share the pair
/// its live detectors map time with, so their replays map it alike.
func captureMetadata(options: CaptureOptions, config: CaptureConfig, capture: BPFCapture, command: [String] = [],
                     detectors: JSON? = nil, healthChecks: [HealthCheck] = [], extra: [(String, JSON)] = [], clock: (monotonicNs: UInt64, realtimeNs: UInt64)? = nil) -> TraceMetadata {
    let clockNs = clock?.monotonicNs ?? monotonicNow()
    let realNs = clock?.realtimeNs ?? realTimeNow()
    var uts = utsname()
    uname(&uts)
    func field<T>(_ v: T) -> String { withUnsafeBytes(of: v) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) } }
    let captureJSON = JSON.object([
        ("flightbox_version", .string(Flightbox.configuration.version)),
        ("probes", .array(config.families.filter { f in !capture.skipped.contains { $0.0 == f } }.map { .string($0.rawValue) })),
        ("skipped", .array(capture.skipped.map { .object([("family", .string($0.0.rawValue)), ("reason", .string($0.1))]) })),
        ("missing", .array(capture.missing.map { .object([("family", .string($0.0.rawValue)), ("reason", .string($0.1))]) })),
        ("filter", config.filter.json),
        ("command", .array(command.map { .string($0) })),
        ("codec", .string(options.codec)), ("level", .int(Int64(options.level))),
        ("ring_bytes", .int(Int64(config.ringBytes))), ("resolve_fd_after_ns", .uint(config.resolveFdAfterNs)),
        ("sched_runq_min_ns", .uint(config.schedRunqueueMinNs)), ("sched_offcpu_min_ns", .uint(config.schedOffCPUMinNs)),
        ("gauge_interval_ns", .uint(options.gaugeIntervalNs)),
    ] + (healthChecks.isEmpty ? [] : [
        // What each probe_id of the trace means, and how it is judged: replay needs no configuration file.
        ("health_checks", .array(healthChecks.map(\.json))),
        ("health_check_failures", .array(capture.probeFailures.map { f in
            .object([("probe_id", .uint(UInt64(f.probe.id))), ("reason", .string(f.description))])
        })),
    ]) + (detectors.map { [("detectors", $0)] } ?? []) + extra)
    return TraceMetadata(host: field(uts.nodename), kernelRelease: field(uts.release), machine: field(uts.machine),
                         clockNs: clockNs, realtimeNs: realNs, capture: captureJSON)
}

/// Every process now (pids, comms, exe, argv, lineage), stamped with the
/// time that a trace starting now has in its metadata.
func processSnapshot(at clockNs: UInt64) -> ProcessSnapshot {
    ProcessSnapshot(timestamp: clockNs, processes: ProcScan.all())
}

/// The gauge sampler for a capture, following its filter's processes; nil
/// without the gauges family.
func gaugeSampler(options: CaptureOptions, config: CaptureConfig) -> GaugeSampler? {
    guard config.families.contains(.gauges) else { return nil }
    return GaugeSampler(intervalNs: options.gaugeIntervalNs, processes: GaugeSampler.Processes(following: config.filter))
}

/// The live detector engine: the detectors of a configuration, seeded with
/// the trace's process snapshot and clock mapping (as replay seeds them from
/// the file), calling `onFinding` for each finding.
func detectorEngine(_ detectors: [Detector], snapshot: ProcessSnapshot, metadata: TraceMetadata, keepsFindings: Bool = true,
                    onFinding: @escaping (Finding) -> Void) -> DetectorEngine {
    DetectorEngine(detectors: detectors, snapshot: snapshot, clock: TraceClock(metadata), keepsFindings: keepsFindings, onFinding: onFinding)
}
