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

    @OptionGroup var capture: CaptureOptions

    @Flag(help: "Run the detectors live.")
    var detect = false

    @Option(help: "With --detect: write findings here as JSON lines (default: text on stdout).")
    var findings: String?

    @Option(help: "Detectors to run with --detect, comma-separated (default: every enabled one).")
    var detectors: String?

    @Option(help: "With --detect: detector configuration file (YAML; see `flightbox detectors --default-config`). Stored in the trace, so replay runs the same.")
    var config: String?

    @Option(name: .customLong("rules"), help: ArgumentHelp("With --detect: security rules file (YAML, repeatable), over the built-in rules; stored in the trace: see rules/default.yaml.", valueName: "file"))
    var rules: [String] = []

    @Argument(parsing: .postTerminator, help: "Command to run and record, after --.")
    var command: [String] = []

    func validate() throws {
        if let flag = capture.filterFlags.first, !command.isEmpty { throw ValidationError("\(flag) and a command exclude each other") }
        if let duration { _ = try parseDuration(duration, flag: "--duration") }
        if detect == false, findings != nil { throw ValidationError("--findings needs --detect") }
        if detect == false, detectors != nil { throw ValidationError("--detectors needs --detect") }
        if detect == false, config != nil { throw ValidationError("--config needs --detect") }
        if detect == false, !rules.isEmpty { throw ValidationError("--rules needs --detect") }
        if detect { _ = try detectorNames(detectors) }
    }

    func run() throws {
        var config = try capture.captureConfig()
        // A bad configuration file is a usage error, before anything is created or attached.
        // The rules that run are stored whole (the built-ins included), so
        // replay runs them even after the files or the built-ins change.
        let fileConfig = try self.config.map(loadDetectorConfiguration) ?? .defaults
        let detectorConfig = withRules(try loadRuleSources(rules, over: fileConfig), fileConfig)
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
        do { try Preflight.check(btfPath: capture.btf) } catch let e as CaptureError { throw fail(e.description) }
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
            // Following the command's descendants needs the fork probe (--pid
            // adds it too), and the recorder's ring buffer needs one kernel family.
            config.families.append(.process)
        }
        if !command.isEmpty {
            var cargs: [UnsafeMutablePointer<CChar>?] = command.map { strdup($0) } + [nil]
            defer { for p in cargs { free(p) } }
            child = fb_spawn_gated(&cargs, &gate)
            if child < 0 { throw fail(CaptureError.spawn(command: command[0], errno: -child).description) }
            config.filter = .tracked([UInt32(child)])
        }

        let bpf: BPFCapture
        do {
            bpf = try startCapture(config)
        } catch let e as CaptureError {
            if child > 0 { kill(child, SIGKILL); var st: Int32 = 0; waitpid(child, &st, 0) }
            throw fail(e.description)
        }
        let metadata = captureMetadata(options: capture, config: config, capture: bpf, command: command,
                                       detectors: detect ? detectorConfig.asRun(names).json : nil)
        let snapshot = processSnapshot(at: metadata.clockNs)
        let writer: TraceWriter
        do {
            writer = try TraceWriter(file: traceFile, publish: .afterHeader, codec: capture.blockCodec, level: capture.level, metadata: metadata, snapshot: snapshot)
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
        let engine: DetectorEngine? = detect ? detectorEngine(detectorList, snapshot: snapshot, metadata: metadata) { f in
            findingsOut.line(json ? f.jsonLine : formatFinding(f, metadata: metadata))
        } : nil

        StopSignals.install()
        // Tools that drive the recorder (bench, scripts) wait for this line.
        FileHandleStderr.write("flightbox: recording \(config.filter.summary) to \(output)\n")
        if gate >= 0 { _ = fb_spawn_release(gate) }

        let gauges = gaugeSampler(options: capture, config: config)
        let recorder = Recorder(
            source: BPFCaptureSource(bpf), writer: writer, engine: engine, sampler: gauges,
            configuration: Recorder.Configuration(durationNs: duration.flatMap(parseDuration), command: child > 0 ? child : nil)
        )
        let outcome = recorder.run()
        findingsOut.flush()
        findingsFile?.close()

        // A write error leaves the trace as it is on disk: no summary of a file that was cut short.
        if let error = outcome.error, case .write = error { throw fail(error.description) }
        let events = writer.nextSequence
        let lost = bpf.totalLost
        let perEvent = events > 0 ? String(format3: Double(writer.bytesWritten) / Double(events)) : "0"
        FileHandleStderr.write("flightbox: recorded \(events) events (\(lost) lost) in \(writer.eventBlocks) blocks, \(writer.bytesWritten) bytes (\(perEvent) bytes/event) to \(output)\n")
        if let engine { FileHandleStderr.write("flightbox: \(engine.findingCount) findings\n") }
        if bpf.untrackedChildren > 0 {
            FileHandleStderr.write("flightbox: warning: \(bpf.untrackedChildren) child processes could not be followed (tracked set full); their events are missing\n")
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
