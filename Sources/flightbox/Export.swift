import ArgumentParser
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat
import FlightboxReport

/// `flightbox export FILE --perfetto OUT`: the trace as a timeline the Perfetto UI opens.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a trace as a Perfetto trace (open it at ui.perfetto.dev): tracks, slices, counters and findings.",
        discussion: """
        Processes and threads become tracks; syscalls of at least --min-syscall, scheduler waits, \
        reclaims and block requests become slices; TCP, process and security events instants; gauges \
        counter tracks; the detectors' findings (as `replay` gives them) instants on a "findings" track \
        with their evidence.
        """
    )

    @Argument(help: "Trace file.") var file: String
    @Option(help: "Where to write the Perfetto trace (protobuf).") var perfetto: String
    @Option(help: "Draw syscalls at least this long (default 1ms).") var minSyscall: String = "1ms"
    @Option(help: "Detector configuration file (YAML) for the findings, instead of the one stored in the trace.") var config: String?

    func run() throws {
        let minNs = try parseDuration(minSyscall, flag: "--min-syscall", example: "1ms or 100us")
        let fileConfig = try config.map(loadDetectorConfiguration)
        if let input = FileIdentity(path: file), input == FileIdentity(path: perfetto) {
            throw fail("export writes a new file: \(perfetto) is the input \(file)", code: 2)
        }
        let reader = try openTrace(file)
        let meta = reader.metadata
        let arch = SyscallArch(schema: meta.schema, machine: meta.machine)
        let engine = DetectorEngine(detectors: try detectorConfiguration(file: fileConfig, trace: meta, path: file).makeDetectors(),
                                    snapshot: reader.snapshot, arch: arch, clock: TraceClock(meta))
        let export = PerfettoExport(arch: arch, snapshot: reader.snapshot, options: PerfettoOptions(minSyscallNs: minNs))
        let progress = Progress(label: "export", total: reader.eventCount)
        reader.forEachEvent { e in
            export.add(e)
            engine.process(e)
            progress.step()
        }
        engine.finish()
        progress.done()
        for f in engine.findings { export.add(f) }
        do {
            // Appears at its path only when complete.
            let out = try OutputFile(path: perfetto, mode: 0o644)
            defer { out.close() }
            try export.write(to: out.fd)
            try out.publish()
        } catch let e as TraceError {
            throw fail(e.description)
        } catch let e as ExportError {
            throw fail("\(perfetto): \(e)")
        }
        reportProblems(reader)
        let s = export.summary
        print("exported \(file) -> \(perfetto): \(s.packets) packets, \(s.tracks) tracks, \(s.slices) slices, \(s.instants) instants, \(s.counterValues) counter values, \(s.findings) findings")
    }
}
