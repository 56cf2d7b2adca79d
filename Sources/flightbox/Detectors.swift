import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxConfig
import FlightboxDetectors
import FlightboxRules
import FlightboxEvents
import FlightboxFormat

/// `flightbox detectors`: what each detector judges and how it is configured.
struct Detectors: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the detectors, their families, what they judge and their parameters with defaults.",
        discussion: "--default-config prints a complete, commented configuration file to start from (--config FILE)."
    )

    @Option(help: "text or json (one detector per line).") var format: OutputFormat = .text
    @Flag(help: "Print a complete default configuration file (YAML) instead.") var defaultConfig = false
    @Option(help: "With --default-config: print this file's effective configuration instead of the defaults.") var config: String?

    func validate() throws {
        if config != nil, !defaultConfig { throw ValidationError("--config needs --default-config") }
        if defaultConfig, format != .text { throw ValidationError("--default-config prints YAML; --format does not apply") }
    }

    func run() throws {
        let out = Output()
        if defaultConfig {
            let c = try config.map(loadDetectorConfiguration) ?? .defaults
            out.line(ConfigFile.text(of: c).trimmingSuffixNewlines())
        } else if format == .json {
            for spec in DetectorRegistry.all { out.line(spec.json) }
        } else {
            out.line(ConfigFile.listing().trimmingSuffixNewlines())
        }
        out.flush()
    }
}

extension String {
    func trimmingSuffixNewlines() -> String {
        var s = self
        while s.hasSuffix("\n") { s.removeLast() }
        return s
    }
}

/// A configuration file resolved over the defaults, or the one-line usage
/// error (exit 2) naming file, line and column.
func loadDetectorConfiguration(_ path: String) throws -> DetectorConfiguration {
    do { return try ConfigFile.load(path: path) } catch { throw fail(error.description, code: 2) }
}

/// What replay and test run, highest first: --config, the configuration the
/// trace was recorded with (`record --detect`), the defaults.
func detectorConfiguration(file: DetectorConfiguration?, trace: TraceMetadata, path: String) throws -> DetectorConfiguration {
    if let file { return file }
    guard let stored = trace.capture["detectors"] else { return .defaults }
    do { return try DetectorConfiguration(json: stored) } catch {
        throw fail("\(path): the detector configuration stored in the trace is unusable (\(error)); pass --config FILE to run another", code: 1)
    }
}

/// `--rules FILE...` read and checked against the rules they refine (the
/// configuration file's `rules:`, else the built-ins), appended after them:
/// a bad rule is one usage error with file, line and column.
func loadRuleSources(_ paths: [String], over config: DetectorConfiguration? = nil) throws -> [RuleSource] {
    let configured = config?["security"]?.rules ?? []
    var sources = configured.isEmpty ? [DefaultRules.source] : configured
    for path in paths {
        guard let text = readText(path) else { throw fail("\(path): cannot read: \(String(cString: strerror(errno)))", code: 2) }
        sources.append(RuleSource(name: path, text: text))
    }
    do { _ = try RuleSet(sources: sources) } catch { throw fail(error.description, code: 2) }
    return sources
}

/// The configuration with the security detector running `sources` (unchanged when nil).
func withRules(_ sources: [RuleSource]?, _ config: DetectorConfiguration) -> DetectorConfiguration {
    guard let sources, var s = config["security"] else { return config }
    var c = config
    s.rules = sources
    c["security"] = s
    return c
}
