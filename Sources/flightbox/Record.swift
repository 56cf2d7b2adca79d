import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import CFlightboxSys
import FlightboxCapture
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat

/// Stop signals received so far, and the last one's number.
nonisolated(unsafe) var stopSignal: sig_atomic_t = 0
nonisolated(unsafe) var stopSignalNumber: Int32 = SIGTERM

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

    @Option(help: "Detectors to run with --detect, comma-separated (default: all).")
    var detectors: String?

    @Option(help: "Ring buffer size in KiB (a power of two, at least 4).")
    var ringKb: Int = 32 << 10

    @Option(help: "Pending KiB at which the kernel wakes the recorder (default: a quarter of the ring).")
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
        if let duration, parseDuration(duration) == nil { throw ValidationError("--duration: cannot read '\(duration)' (try 10s or 500ms)") }
        if Codec(name: codec) == nil || codec == "none" { throw ValidationError("--codec must be zstd or lz4") }
        if ringKb < 4 || ringKb & (ringKb - 1) != 0 { throw ValidationError("--ring-kb must be a power of two, at least 4") }
        if (parseDuration(gaugeInterval) ?? 0) < 10_000_000 { throw ValidationError("--gauge-interval: at least 10ms") }
        for (flag, v) in [("--sched-runq-min", schedRunqMin), ("--sched-offcpu-min", schedOffcpuMin)] where parseDuration(v) == nil {
            throw ValidationError("\(flag): cannot read '\(v)' (try 1ms)")
        }
        if let comm, comm.utf8.count > 15 { throw ValidationError("--comm: kernel command names are at most 15 bytes") }
        if detect == false, findings != nil { throw ValidationError("--findings needs --detect") }
    }

    func run() throws {
        var config = CaptureConfig()
        config.ringBytes = ringKb << 10
        config.wakeupBytes = wakeupKb.map { $0 << 10 }
        config.schedRunqueueMinNs = parseDuration(schedRunqMin)!
        config.schedOffCPUMinNs = parseDuration(schedOffcpuMin)!
        config.btfPath = btf
        config.verbose = verbose
        if let probes {
            config.families = try probes.split(separator: ",").map { name in
                guard let f = ProbeFamily(rawValue: String(name)) else { throw fail(CaptureError.unknownFamily(String(name)).description, code: 2) }
                return f
            }
        }
        let detectorList = try detect ? makeDetectors(detectors) : []

        // Everything that can fail for a simple reason fails before the kernel is touched.
        do { try Preflight.check(btfPath: btf) } catch let e as CaptureError { throw fail(e.description) }
        let probe = open(output, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        if probe < 0 { throw fail(TraceError.cannotCreate(path: output, errno: errno).description) }
        close(probe)
        var findingsFd: Int32 = 1
        if let findings {
            findingsFd = open(findings, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            if findingsFd < 0 { throw fail("cannot create \(findings): \(String(cString: strerror(errno)))") }
        }

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
        ])
        let metadata = TraceMetadata(host: field(uts.nodename), kernelRelease: field(uts.release), machine: field(uts.machine),
                                     clockNs: clockNs, realtimeNs: realNs, capture: captureJSON)
        let snapshot = ProcessSnapshot(timestamp: clockNs, processes: ProcScan.all())
        let writer: TraceWriter
        do {
            writer = try TraceWriter(path: output, codec: Codec(name: codec)!, level: level, metadata: metadata, snapshot: snapshot)
        } catch let e as TraceError {
            if child > 0 { kill(child, SIGKILL); var st: Int32 = 0; waitpid(child, &st, 0) }
            throw fail(e.description)
        }

        let findingsOut = Output(fd: findingsFd)
        let json = findings != nil
        let engine: DetectorEngine? = detect ? DetectorEngine(detectors: detectorList, snapshot: snapshot) { f in
            findingsOut.line(json ? f.jsonLine : formatFinding(f, metadata: metadata))
        } : nil

        installStopHandlers()
        // Tools that drive the recorder (bench, scripts) wait for this line.
        FileHandleStderr.write("flightbox: recording \(config.filter.summary) to \(output)\n")
        if gate >= 0 { _ = fb_spawn_release(gate) }

        let deadline = duration.flatMap(parseDuration).map { monotonicNow() + $0 }
        let gauges: GaugeSampler? = config.families.contains(.gauges) ? GaugeSampler(intervalNs: parseDuration(gaugeInterval)!, processes: {
            switch config.filter {
            case .none: .holdingAtLeast(32)
            case .pid(let p): .tree([p])
            case .tracked(let p): .tree(p)
            case .comm(let c): .comm(c)
            }
        }()) : nil
        var nextGauge = monotonicNow()
        var writeError: TraceError?
        var childStatus: Int32?
        var lastFlush = monotonicNow()
        var lastBatchFlush = lastFlush
        var lastSweep = lastFlush
        let sink: (UnsafeRawBufferPointer) -> Void = { rec in
            guard writeError == nil, let e = Event.validated(rec, sequence: writer.nextSequence), e.size == rec.count else { return }
            do {
                try writer.append(rec)
                engine?.process(e)
            } catch let err as TraceError {
                writeError = err
            } catch {}
        }
        /// Records made in user space (losses, gauges) join the stream here.
        func feed(_ records: [[UInt8]]) {
            for rec in records { rec.withUnsafeBytes { sink($0) } }
        }

        var forwarded = 0
        var killAt: UInt64?
        var captureError: CaptureError?
        loop: while writeError == nil {
            do { try capture.poll(timeoutMs: 50, sink) } catch let e as CaptureError {
                captureError = e
                break loop
            }
            feed(capture.newLosses())
            let now = monotonicNow()
            if let gauges, now >= nextGauge {
                feed(gauges.sample(at: monotonicNow()))
                nextGauge = max(nextGauge + gauges.intervalNs, now)
            }
            if now - lastBatchFlush >= 100_000_000 {
                capture.flushBatches()
                lastBatchFlush = now
            }
            if now - lastSweep >= 1_000_000_000 {
                capture.sweepSummaries()
                lastSweep = now
            }
            if now - lastFlush >= 800_000_000 {
                // At most one second of events is ever only in memory: up to
                // 100 ms in a per-CPU batch, 50 ms in the ring, 800 ms here.
                do { try writer.flush() } catch let e as TraceError { writeError = e }
                lastFlush = now
            }
            if child > 0 {
                var st: Int32 = 0
                if waitpid(child, &st, WNOHANG) == child { childStatus = st; break }
                // A stop signal, or the end of --duration (as timeout(1) does),
                // goes to the command, and recording goes on until it exits; a
                // second signal, or two seconds of grace, kill it.
                if stopSignal > forwarded {
                    kill(child, forwarded == 0 ? stopSignalNumber : SIGKILL)
                    forwarded = Int(stopSignal)
                    killAt = killAt ?? now + 2_000_000_000
                } else if let deadline, now >= deadline, killAt == nil {
                    kill(child, SIGTERM)
                    killAt = now + 2_000_000_000
                }
                if let k = killAt, now >= k { kill(child, SIGKILL) }
                continue
            }
            if stopSignal != 0 { break }
            if let deadline, now >= deadline { break }
        }
        // Detaching waits for running programs, so the flush that follows finds
        // every CPU's batch idle; then the ring holds everything.
        capture.detach()
        capture.flushBatches()
        capture.sweepSummaries(all: true)
        if writeError == nil { _ = try? capture.drainAll(sink) }
        feed(capture.newLosses())
        engine?.finish()
        findingsOut.flush()
        if findingsFd != 1 { close(findingsFd) }

        if let writeError {
            throw fail(writeError.description)
        }
        do { try writer.close() } catch let e as TraceError { throw fail(e.description) }
        let events = writer.nextSequence
        let lost = capture.totalLost
        let perEvent = events > 0 ? String(format3: Double(writer.bytesWritten) / Double(events)) : "0"
        FileHandleStderr.write("flightbox: recorded \(events) events (\(lost) lost) in \(writer.eventBlocks) blocks, \(writer.bytesWritten) bytes (\(perEvent) bytes/event) to \(output)\n")
        if let engine { FileHandleStderr.write("flightbox: \(engine.findings.count) findings\n") }
        if capture.untrackedChildren > 0 {
            FileHandleStderr.write("flightbox: warning: \(capture.untrackedChildren) child processes of the command could not be followed (tracked set full); their events are missing\n")
        }
        if let captureError { throw fail("\(captureError.description); the trace holds everything read before it") }

        if let st = childStatus {
            let code = (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f)
            if code != 0 { throw ExitCode(code) }
        }
    }
}

func installStopHandlers() {
    var sa = sigaction()
    sa.__sigaction_handler.sa_handler = { sig in
        stopSignalNumber = sig
        stopSignal += 1
    }
    sigemptyset(&sa.sa_mask)
    sa.sa_flags = SA_RESTART
    sigaction(SIGINT, &sa, nil)
    sigaction(SIGTERM, &sa, nil)
    signal(SIGPIPE, SIG_IGN)
}

func makeDetectors(_ list: String?) throws -> [Detector] {
    do {
        return try DetectorRegistry.make(list: list.map { $0.split(separator: ",").map(String.init) })
    } catch let e as DetectorRegistry.UnknownDetector {
        throw fail(e.description, code: 2)
    }
}

func formatFinding(_ f: Finding, metadata: TraceMetadata) -> String {
    "\(formatWallClock(metadata.wallClock(f.ts))) \(f.severity.rawValue.uppercased()) \(f.detector) \(f.comm)[\(f.pid)/\(f.tid)]: \(f.summary)"
}
