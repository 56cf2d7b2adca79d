import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import CFlightboxSys
import FlightboxCapture
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat
import FlightboxRecorder

struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record kernel events into a trace.",
        discussion: """
        System-wide by default. With -- COMMAND, records that command and its descendants until it \
        exits, and exits with its status. Otherwise records until --duration elapses or SIGINT/SIGTERM; \
        the file is closed cleanly in every case.
        """
    )

    @Option(name: .shortAndLong, help: "Trace file to write (created with mode 0600).")
    var output: String = "flightbox.fbt"

    @Option(help: "Stop after this long (e.g. 10s, 500ms, 2m).")
    var duration: String?

    @Option(help: "Probe families, comma-separated: \(ProbeFamily.allCases.map(\.rawValue).joined(separator: ",")) (default: \(ProbeFamily.defaults.map(\.rawValue).joined(separator: ","))). With a command, process is always on, to follow its children.")
    var probes: String?

    @Option(help: "Record only this process (all its threads).")
    var pid: UInt32?

    @Option(help: "Record only tasks with this command name (as in /proc/PID/comm).")
    var comm: String?

    @Option(help: "Block codec: zstd or lz4.")
    var codec: String = "zstd"

    @Option(help: "zstd level.")
    var level: Int32 = 3

    @Flag(help: "Run the detectors live.")
    var detect = false

    @Option(help: "With --detect: write findings here as JSON lines (default: text on stdout).")
    var findings: String?

    @Option(help: "Detectors to run with --detect, comma-separated (default: every enabled one).")
    var detectors: String?

    @Option(help: "With --detect: detector configuration file (YAML; see `flightbox detectors --default-config`). Stored in the trace, so replay runs the same.")
    var config: String?

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

    @Argument(parsing: .postTerminator, help: "Command to run and record, after --.")
    var command: [String] = []

    func validate() throws {
        let modes = [pid != nil, comm != nil, !command.isEmpty].filter { $0 }.count
        if modes > 1 { throw ValidationError("--pid, --comm and a command exclude each other") }
        if let duration { _ = try parseDuration(duration, flag: "--duration") }
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
        _ = try families()
        if detect == false, findings != nil { throw ValidationError("--findings needs --detect") }
        if detect == false, detectors != nil { throw ValidationError("--detectors needs --detect") }
        if detect == false, config != nil { throw ValidationError("--config needs --detect") }
        if detect { _ = try detectorNames(detectors) }
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

    func run() throws {
        var config = CaptureConfig()
        config.ringBytes = ringKb << 10
        config.wakeupBytes = wakeupKb.map { $0 << 10 }
        config.schedRunqueueMinNs = parseDuration(schedRunqMin)!
        config.schedOffCPUMinNs = parseDuration(schedOffcpuMin)!
        config.btfPath = btf
        config.verbose = verbose
        if let families = try families() { config.families = families }
        // A bad configuration file is a usage error, before anything is created or attached.
        let detectorConfig = try self.config.map(loadDetectorConfiguration) ?? .defaults
        let names = try detectorNames(detectors)
        let detectorList = try detect ? detectorConfig.makeDetectors(only: names) : []

        // Everything that can fail for a simple reason fails before the kernel
        // is touched, and every output is checked before any is created.
        do { try OutputFile.check(path: output) } catch let e as TraceError { throw fail(e.description) }
        if let findings {
            if FileIdentity(path: findings) == FileIdentity(path: output) {
                throw fail("--findings \(findings) is the trace file \(output): choose another path for one of them", code: 2)
            }
            do { try OutputFile.check(path: findings) } catch let e as TraceError { throw fail(describeFindingsError(e)) }
        }
        do { try Preflight.check(btfPath: btf) } catch let e as CaptureError { throw fail(e.description) }
        // Created unnamed beside their paths: a path that cannot be written
        // fails here, before any probe loads, and nothing appears at either
        // path until the trace holds its header, metadata and snapshot.
        let traceFile: OutputFile
        do { traceFile = try OutputFile(path: output) } catch let e as TraceError { throw fail(e.description) }
        var findingsFile: OutputFile?
        do { findingsFile = try findings.map { try OutputFile(path: $0) } } catch let e as TraceError { throw fail(describeFindingsError(e)) }
        let findingsFd: Int32 = findingsFile?.fd ?? 1

        var child: pid_t = 0
        var gate: Int32 = -1
        if !config.families.contains(.process), !command.isEmpty || config.families.allSatisfy({ $0 == .gauges }) {
            // Following the command's descendants needs the fork probe, and the
            // recorder's ring buffer needs one kernel family.
            config.families.append(.process)
        }
        if !command.isEmpty {
            var cargs: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
            defer { for p in cargs { free(p) } }
            child = fb_spawn_gated(&cargs, &gate)
            if child < 0 { throw fail(CaptureError.spawn(command: command[0], errno: -child).description) }
            config.filter = .tracked([UInt32(child)])
        } else if let pid {
            config.filter = .pid(pid)
        } else if let comm {
            config.filter = .comm(comm)
        }

        let capture: BPFCapture
        do {
            capture = try BPFCapture(config: config)
            try capture.attach()
        } catch let e as CaptureError {
            if child > 0 { kill(child, SIGKILL); var st: Int32 = 0; waitpid(child, &st, 0) }
            throw fail(e.description)
        }

        for (family, why) in capture.skipped {
            FileHandleStderr.write("flightbox: warning: \(family.rawValue) probes unavailable, recording without them: \(why)\n")
        }
        for (family, why) in capture.missing {
            FileHandleStderr.write("flightbox: warning: \(family.rawValue) probes: recording without \(why)\n")
        }
        let clockNs = monotonicNow()
        let realNs = realTimeNow()
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
            ("codec", .string(codec)), ("level", .int(Int64(level))),
            ("ring_bytes", .int(Int64(config.ringBytes))), ("resolve_fd_after_ns", .uint(config.resolveFdAfterNs)),
            ("sched_runq_min_ns", .uint(config.schedRunqueueMinNs)), ("sched_offcpu_min_ns", .uint(config.schedOffCPUMinNs)),
            ("gauge_interval_ns", .uint(parseDuration(gaugeInterval)!)),
        ] + (detect ? [("detectors", detectorConfig.asRun(names).json)] : []))
        let metadata = TraceMetadata(host: field(uts.nodename), kernelRelease: field(uts.release), machine: field(uts.machine),
                                     clockNs: clockNs, realtimeNs: realNs, capture: captureJSON)
        let snapshot = ProcessSnapshot(timestamp: clockNs, processes: ProcScan.all())
        let writer: TraceWriter
        do {
            writer = try TraceWriter(file: traceFile, publish: .afterHeader, codec: Codec(name: codec)!, level: level, metadata: metadata, snapshot: snapshot)
        } catch let e as TraceError {
            if child > 0 { kill(child, SIGKILL); var st: Int32 = 0; waitpid(child, &st, 0) }
            throw fail(e.description)
        }
        do { try findingsFile?.publish() } catch let e as TraceError {
            try? writer.close()
            if child > 0 { kill(child, SIGKILL); var st: Int32 = 0; waitpid(child, &st, 0) }
            throw fail(describeFindingsError(e))
        }

        let findingsOut = Output(fd: findingsFd)
        let json = findings != nil
        let engine: DetectorEngine? = detect ? DetectorEngine(detectors: detectorList, snapshot: snapshot, clock: TraceClock(metadata)) { f in
            findingsOut.line(json ? f.jsonLine : formatFinding(f, metadata: metadata))
        } : nil

        StopSignals.install()
        // Tools that drive the recorder (bench, scripts) wait for this line.
        FileHandleStderr.write("flightbox: recording \(config.filter.summary) to \(output)\n")
        if gate >= 0 { _ = fb_spawn_release(gate) }

        let gauges: GaugeSampler? = config.families.contains(.gauges) ? GaugeSampler(intervalNs: parseDuration(gaugeInterval)!, processes: {
            switch config.filter {
            case .none: .holdingAtLeast(32)
            case .pid(let p): .tree([p])
            case .tracked(let p): .tree(p)
            case .comm(let c): .comm(c)
            }
        }()) : nil
        let recorder = Recorder(
            source: BPFCaptureSource(capture), writer: writer, engine: engine, sampler: gauges,
            configuration: Recorder.Configuration(durationNs: duration.flatMap(parseDuration), command: child > 0 ? child : nil)
        )
        let outcome = recorder.run()
        findingsOut.flush()
        findingsFile?.close()

        // A write error leaves the trace as it is on disk: no summary of a file that was cut short.
        if let error = outcome.error, case .write = error { throw fail(error.description) }
        let events = writer.nextSequence
        let lost = capture.totalLost
        let perEvent = events > 0 ? String(format3: Double(writer.bytesWritten) / Double(events)) : "0"
        FileHandleStderr.write("flightbox: recorded \(events) events (\(lost) lost) in \(writer.eventBlocks) blocks, \(writer.bytesWritten) bytes (\(perEvent) bytes/event) to \(output)\n")
        if let engine { FileHandleStderr.write("flightbox: \(engine.findings.count) findings\n") }
        if capture.untrackedChildren > 0 {
            FileHandleStderr.write("flightbox: warning: \(capture.untrackedChildren) child processes of the command could not be followed (tracked set full); their events are missing\n")
        }
        if let error = outcome.error { throw fail(error.description) }
        if let code = outcome.commandExitCode, code != 0 { throw ExitCode(code) }
    }
}

/// --detectors as names (nil: every enabled detector of the configuration).
func detectorNames(_ list: String?) throws -> [String]? {
    try list.map { try parseList($0, flag: "--detectors", known: DetectorRegistry.names) }
}

/// A comma-separated list of names: at least one, each known, none twice.
func parseList(_ value: String, flag: String, known: [String]) throws -> [String] {
    let names = value.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    var seen: Set<String> = []
    for name in names {
        if name.isEmpty {
            throw ValidationError("\(flag): \(value.isEmpty ? "an empty list" : "an empty name in '\(value)'"); give one or more of \(known.joined(separator: ","))")
        }
        guard known.contains(name) else { throw ValidationError("\(flag): unknown name '\(name)'; known: \(known.joined(separator: ","))") }
        guard seen.insert(name).inserted else { throw ValidationError("\(flag): '\(name)' is given twice") }
    }
    return names
}

/// TraceError's messages name -o; the findings file is chosen with --findings.
func describeFindingsError(_ e: TraceError) -> String {
    switch e {
    case .cannotCreate(let p, let errno): "cannot create \(p): \(String(cString: strerror(errno))); choose a writable path with --findings"
    case .busy(let p, let pid): "\(p) is being written by another process\(pid.map { " (pid \($0))" } ?? ""); stop it or choose another path with --findings"
    case .notARegularFile(let p): "\(p) exists and is not a regular file; choose a file path with --findings"
    default: e.description
    }
}

func formatFinding(_ f: Finding, metadata: TraceMetadata) -> String {
    "\(formatWallClock(metadata.wallClock(f.ts))) \(f.severity.rawValue.uppercased()) \(f.detector) \(f.comm)[\(f.pid)/\(f.tid)]: \(f.summary)"
}
