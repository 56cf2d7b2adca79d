import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture
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
/// The health checks come with it: the file's when it has a probes section,
/// else those the trace recorded (its probe ids mean them).
func detectorConfiguration(file: DetectorConfiguration?, trace: TraceMetadata, path: String) throws -> DetectorConfiguration {
    if let file { return try withTraceChecks(file, trace: trace, path: path) }
    guard let stored = trace.capture["detectors"] else { return try withTraceChecks(.defaults, trace: trace, path: path) }
    do { return try withTraceChecks(try DetectorConfiguration(json: stored), trace: trace, path: path) } catch let e as ExitCode {
        throw e
    } catch {
        throw fail("\(path): the detector configuration stored in the trace is unusable (\(error)); pass --config FILE to run another", code: 1)
    }
}

/// `config` with the health checks the trace recorded (`health_checks` in its
/// capture metadata), unless it declares its own.
func withTraceChecks(_ config: DetectorConfiguration, trace: TraceMetadata, path: String) throws -> DetectorConfiguration {
    guard config["health"]?.checks.isEmpty == true, let stored = trace.capture["health_checks"]?.arrayValue, !stored.isEmpty else { return config }
    var c = config
    do { c["health"]?.checks = try stored.map(HealthCheck.init(json:)) } catch {
        throw fail("\(path): the health checks stored in the trace are unusable (\(error))", code: 1)
    }
    return c
}

/// The probes family's attachments for `checks`, and the family on when there are any.
func applyHealthChecks(_ checks: [HealthCheck], to config: inout CaptureConfig) {
    guard !checks.isEmpty else { return }
    config.healthChecks = checks.map { c in
        let site: ProbeSite = switch c.target {
        case .function(let b, let s): .function(binary: b, symbol: s)
        case .offset(let b, let o): .offset(binary: b, offset: o)
        case .usdt(let b, let p, let n): .usdt(binary: b, provider: p, name: n)
        }
        return ProbeDefinition(id: c.id, site: site, pid: c.pid.map { Int32(bitPattern: $0) }, arguments: c.arguments, int32Return: c.int32Return,
                               stringArgument: c.stringArgument)
    }
    if !config.families.contains(.probes) { config.families.append(.probes) }
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
