import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat
import FlightboxReport

/// `flightbox report FILE -o report.html`: the trace as one self-contained page.
struct Report: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write one self-contained HTML page about a trace: findings on a timeline with evidence and lineage, latency histograms, gauges, busiest processes."
    )

    @Argument(help: "Trace file.") var file: String
    @Option(name: .shortAndLong, help: "Where to write the page.") var output: String
    @Option(help: "Detector configuration file (YAML) for the findings, instead of the one stored in the trace.") var config: String?

    func run() throws {
        let fileConfig = try config.map(loadDetectorConfiguration)
        if let input = FileIdentity(path: file), input == FileIdentity(path: output) {
            throw fail("report writes a new file: \(output) is the input \(file)", code: 2)
        }
        let reader = try openTrace(file)
        let meta = reader.metadata
        let arch = SyscallArch(schema: meta.schema, machine: meta.machine)
        let name = String(file.split(separator: "/").last ?? Substring(file))
        let report = HTMLReport(title: name, metadata: meta, snapshot: reader.snapshot, arch: arch)
        let engine = DetectorEngine(detectors: try detectorConfiguration(file: fileConfig, trace: meta, path: file).makeDetectors(),
                                    snapshot: reader.snapshot, arch: arch, clock: TraceClock(meta)) { report.add(finding: $0) }
        let progress = Progress(label: "report", total: reader.eventCount)
        reader.forEachEvent { e in
            report.add(e)
            engine.process(e)
            progress.step()
        }
        engine.finish()
        progress.done()
        do {
            let out = try OutputFile(path: output, mode: 0o644)
            defer { out.close() }
            let text = report.html
            var bytes = Array(text.utf8)
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeMutableBytes { write(out.fd, $0.baseAddress! + off, $0.count - off) }
                if n < 0 { if errno == EINTR { continue }; throw TraceError.writeFailed(path: output, errno: errno) }
                off += n
            }
            try out.publish()
        } catch let e as TraceError {
            throw fail(e.description)
        }
        reportProblems(reader)
        print("report of \(file) -> \(output): \(engine.eventsSeen) events, \(engine.findings.count) findings")
    }
}
