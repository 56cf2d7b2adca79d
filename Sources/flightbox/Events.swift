import ArgumentParser
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat

/// --from/--to/--pid/--type, shared by `events` and `replay`.
struct Window: ParsableArguments {
    @Option(help: "Start: +OFFSET from the first event (+2.5s), raw ns, or UTC time (2026-11-25T10:00:00Z).")
    var from: String?
    @Option(help: "End, in the same forms as --from.")
    var to: String?

    func resolve(_ reader: TraceReader) throws -> (UInt64?, UInt64?) {
        let start = try from.map { try parseTime($0, flag: "--from", reader: reader) }
        let end = try to.map { try parseTime($0, flag: "--to", reader: reader) }
        if let start, let end, start > end {
            throw ValidationError("--from \(from!) is later than --to \(to!): the window holds nothing")
        }
        return (start, end)
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Print a trace's events.")

    @Argument(help: "Trace file.") var file: String
    @OptionGroup var window: Window
    @Option(help: "Only this process.") var pid: UInt32?
    @Option(help: "Only this event type: \(EventType.allCases.map(\.name).joined(separator: ",")).") var type: String?
    @Option(help: "text or json (one object per line).") var format: OutputFormat = .text
    @Option(help: "Stop after this many events.") var limit: Int?

    func validate() throws {
        if let limit { try checkRange(limit, 0...Int.max, flag: "--limit") }
    }

    func run() throws {
        var wanted: UInt16?
        if let type {
            guard let t = EventType(name: type) else { throw fail("--type: unknown event type '\(type)'", code: 2) }
            wanted = t.rawValue
        }
        let reader = try openTrace(file)
        let (from, to) = try window.resolve(reader)
        let names = ProcessTable(snapshot: reader.snapshot)
        let arch = SyscallArch(schema: reader.metadata.schema, machine: reader.metadata.machine)
        let base = reader.firstTimestamp ?? 0
        let out = Output()
        var printed = 0
        // Names come from every event before the window too, so read from the start when filtering by time.
        reader.forEachEvent(from: nil, to: to) { e in
            names.apply(e)
            if let limit, printed >= limit { return }
            if let from, e.timestamp < from { return }
            if let pid, e.pid != pid { return }
            if let wanted, e.rawType != wanted { return }
            let comm = names.comm(e.pid)
            if format == .json {
                out.line { e.writeJSON(into: &$0, comm: comm, arch: arch) }
            } else {
                out.line(e.text(ts: formatOffset(e.timestamp, from: base), comm: comm, arch: arch))
            }
            printed += 1
        }
        out.flush()
        reportProblems(reader)
    }
}

struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run detectors over a trace; the findings equal those of `record --detect` on the same events.")

    @Argument(help: "Trace file.") var file: String
    @Option(help: "Detectors, comma-separated: \(DetectorRegistry.names.joined(separator: ",")) (default: every enabled one).") var detectors: String?
    @Option(help: "Detector configuration file (YAML), instead of the one stored in the trace by `record --detect`.") var config: String?
    @Option(name: .customLong("rules"), help: ArgumentHelp("Security rules file (YAML, repeatable), over the built-in rules, instead of the rules stored in the trace.", valueName: "file"))
    var rules: [String] = []
    @OptionGroup var window: Window
    @Option(help: "text or json (one finding per line).") var format: OutputFormat = .text
    @Flag(help: "Start the detectors fresh, ignoring the detector checkpoint a flight segment or dump carries.") var noCheckpoint = false

    func run() throws {
        // Checked before the trace is opened: a bad file is one usage error.
        let names = try detectorNames(detectors)
        let fileConfig = try config.map(loadDetectorConfiguration)
        let ruleSources = rules.isEmpty ? nil : try loadRuleSources(rules, over: fileConfig)
        let reader = try openTrace(file)
        let configuration = try withRules(ruleSources, detectorConfiguration(file: fileConfig, trace: reader.metadata, path: file))
        let list = try configuration.makeDetectors(only: names)
        let (from, to) = try window.resolve(reader)
        let out = Output()
        let meta = reader.metadata
        let arch = SyscallArch(schema: meta.schema, machine: meta.machine)
        let engine = DetectorEngine(detectors: list, snapshot: reader.snapshot, arch: arch, clock: TraceClock(meta)) { f in
            out.line(format == .json ? f.jsonLine : formatFinding(f, metadata: meta))
        }
        let sequenceBase = noCheckpoint ? 0 : resumeFromCheckpoint(engine, reader: reader, configuration: configuration, path: file)
        let eventsBefore = engine.eventsSeen, findingsBefore = engine.findingCount
        let progress = Progress(label: "replay", total: reader.eventCount)
        reader.forEachEvent(from: from, to: to) { e in
            if sequenceBase == 0 {
                engine.process(e)
            } else if let renumbered = Event.validated(e.bytes, sequence: e.sequence &+ sequenceBase) {
                engine.process(renumbered)
            }
            progress.step()
        }
        progress.done()
        engine.finish()
        out.flush()
        FileHandleStderr.write("flightbox: \(engine.eventsSeen - eventsBefore) events replayed, \(engine.findingCount - findingsBefore) findings\n")
        reportProblems(reader)
    }
}

/// Restores the detector checkpoint a flight segment or dump carries (a
/// line on stderr says what happened), and returns the stream number of the
/// trace's first event, which the live detectors numbered it with (0 for any
/// other trace, or when the checkpoint is not used: then the detectors start
/// fresh, as for a trace of its own).
func resumeFromCheckpoint(_ engine: DetectorEngine, reader: TraceReader, configuration: DetectorConfiguration, path: String) -> UInt64 {
    guard let stored = reader.readCheckpoint() else { return 0 }
    let bytes: [UInt8]
    switch stored {
    case .success(let b): bytes = b
    case .failure(let problem):
        FileHandleStderr.write("flightbox: \(path): detector checkpoint not used: \(problem); the detectors start fresh\n")
        return 0
    }
    do {
        let r = try engine.restore(bytes, configuration: configuration)
        FileHandleStderr.write("flightbox: \(path): \(r.summary)\n")
    } catch {
        FileHandleStderr.write("flightbox: \(path): \(error)\n")
        return 0
    }
    let capture = reader.metadata.capture
    return (capture["flight_dump"] ?? capture["flight_segment"])?["first_sequence"]?.uintValue ?? 0
}
