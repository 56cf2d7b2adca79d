import XCTest
import FlightboxEvents
import FlightboxFormat

/// The configuration file (`--config`) through the CLI: one-line errors with
/// file:line:column, overrides of a fixture's findings, and the configuration
/// a trace was recorded with replayed from the trace.
final class ConfigTests: XCTestCase {
    var fixture: String { Tool.packageRoot + "/fixtures/latency-outlier/trace.fbt" }

    func write(_ name: String, _ text: String) throws -> String {
        let path = scratch(name)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func testBadConfigIsOneLineNamingFileLineAndColumn() throws {
        let bad = try write("bad.yaml", "detectors:\n  syscall-latency:\n    flor: 2ms\n")
        let r = try Tool.flightbox("replay", fixture, "--config", bad)
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stdout, "")
        XCTAssertEqual(r.stderr, "flightbox: \(bad):3:5: syscall-latency: unknown key 'flor' (did you mean 'floor'?); known: enabled, min_samples, floor, buckets_above_p99, cooldown, critical, storage_ceiling, storage_share, preempted_share, exclude\n")
        // Checked before the trace is opened: the config error, not a missing trace.
        let early = try Tool.flightbox("replay", scratch("no-such-trace.fbt"), "--config", bad)
        XCTAssertEqual(early.status, 2)
        XCTAssertTrue(early.stderr.hasPrefix("flightbox: \(bad):3:5: "), early.stderr)
        let range = try write("range.yaml", "detectors:\n  syscall-latency:\n    min_samples: 0\n")
        let t = try Tool.flightbox("test", Tool.packageRoot + "/fixtures", "--config", range)
        XCTAssertEqual(t.status, 2)
        XCTAssertEqual(t.stderr, "flightbox: \(range):3:18: syscall-latency.min_samples: 0 is out of range (1 to 1000000000)\n")
        let yaml = try write("malformed.yaml", "detectors: {syscall-latency: {floor: 1ms}\n")
        let m = try Tool.flightbox("replay", fixture, "--config", yaml)
        XCTAssertEqual(m.status, 2)
        XCTAssertEqual(m.stderr.split(separator: "\n").count, 1, m.stderr)
        XCTAssertTrue(m.stderr.hasPrefix("flightbox: \(yaml):2:1: malformed YAML: "), m.stderr)
        // record refuses it too, before anything is created or attached (no root needed to get there).
        let out = scratch("never.fbt")
        let rec = try Tool.flightbox("record", "-o", out, "--detect", "--config", bad, "--duration", "1s")
        XCTAssertEqual(rec.status, 2)
        XCTAssertTrue(rec.stderr.hasPrefix("flightbox: \(bad):3:5: "), rec.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let noDetect = try Tool.flightbox("record", "-o", out, "--config", bad)
        XCTAssertEqual(noDetect.status, 2)
        XCTAssertEqual(noDetect.stderr, "flightbox: --config needs --detect\n")
    }

    func testHigherFloorSuppressesTheFixtureFinding() throws {
        let plain = try Tool.flightbox("replay", fixture, "--format", "json")
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertEqual(plain.lines.count, 1)
        let high = try write("floor.yaml", "detectors:\n  syscall-latency:\n    floor: 1s\n")
        let r = try Tool.flightbox("replay", fixture, "--format", "json", "--config", high)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stdout, "")
        XCTAssertTrue(r.stderr.contains("0 findings"), r.stderr)
        // Excluding the process has the same effect; `test` sees the difference.
        let exclude = try write("exclude.yaml", "detectors:\n  syscall-latency:\n    exclude:\n      comm: [flightbox-load]\n")
        XCTAssertEqual(try Tool.flightbox("replay", fixture, "--config", exclude).stdout, "")
        let t = try Tool.flightbox("test", Tool.packageRoot + "/fixtures", "--config", high)
        XCTAssertEqual(t.status, 1)
        XCTAssertTrue(t.stdout.contains("FAIL latency-outlier"), t.stdout)
        // An empty file is the defaults.
        let empty = try write("empty.yaml", "")
        XCTAssertEqual(try Tool.flightbox("replay", fixture, "--format", "json", "--config", empty).stdout, plain.stdout)
    }

    func testDetectorsListingAndDefaultConfig() throws {
        let list = try Tool.flightbox("detectors")
        XCTAssertEqual(list.status, 0, list.stderr)
        XCTAssertTrue(list.stdout.hasPrefix("syscall-latency (family: syscalls)\n"), list.stdout)
        XCTAssertTrue(list.stdout.contains("floor"))
        let json = try Tool.flightbox("detectors", "--format", "json")
        let specs = try json.lines.map { try JSONParser.parse($0) }
        XCTAssertEqual(specs.first?["name"]?.stringValue, "syscall-latency")
        XCTAssertTrue(specs.contains { $0["name"]?.stringValue == "memory" && $0["family"]?.stringValue == "memory" }, json.stdout)
        XCTAssertTrue(specs.contains { $0["name"]?.stringValue == "tcp-anomaly" && $0["family"]?.stringValue == "tcp" }, json.stdout)
        XCTAssertEqual(specs.first?["parameters"]?.arrayValue?.first(where: { $0["name"]?.stringValue == "floor" })?["default"]?.uintValue, 1_000_000)
        let def = try Tool.flightbox("detectors", "--default-config")
        XCTAssertEqual(def.status, 0, def.stderr)
        let file = try write("default.yaml", def.stdout)
        // The default file parses, and replays as the defaults do.
        XCTAssertEqual(try Tool.flightbox("replay", fixture, "--format", "json", "--config", file).stdout,
                       try Tool.flightbox("replay", fixture, "--format", "json").stdout)
        XCTAssertEqual(try Tool.flightbox("detectors", "--default-config", "--config", file).stdout, def.stdout)
    }

    /// record --detect --config stores the configuration: replay without
    /// --config runs it (byte-identical findings), --config overrides it.
    func testRecordedConfigurationIsReplayed() throws {
        try requireBPF()
        let trace = scratch("config.fbt"), live = scratch("config-live.jsonl")
        let dir = try scratchDirectory("config-dir")
        // critical from 1ms: the workload's slow pwrite is critical live, a warning by default.
        let config = try write("record.yaml", "detectors:\n  syscall-latency:\n    critical: 1ms\n    exclude: {comm: [no-such-comm]}\n")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "syscalls,process", "--detect", "--config", config, "--findings", live, "--", Tool.load, "latency", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        let liveText = try String(contentsOfFile: live, encoding: .utf8)
        let liveFindings = try liveText.split(separator: "\n").map { try JSONParser.parse(String($0)) }
        XCTAssertEqual(liveFindings.count, 1, liveText)
        XCTAssertEqual(liveFindings.first?["severity"]?.stringValue, "critical")

        let stored = try inspectJSON(trace)["capture"]?["detectors"]?["syscall-latency"]
        XCTAssertEqual(stored?["critical"]?.uintValue, 1_000_000)
        XCTAssertEqual(stored?["floor"]?.uintValue, 1_000_000)
        XCTAssertEqual(stored?["exclude"]?["comm"]?.arrayValue, [.string("no-such-comm")])

        let replay = try Tool.flightbox("replay", trace, "--format", "json")
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertEqual(replay.stdout, liveText, "replay without --config runs what ran live")

        let defaults = try write("defaults.yaml", "")
        let overridden = try Tool.flightbox("replay", trace, "--format", "json", "--config", defaults)
        XCTAssertEqual(overridden.status, 0, overridden.stderr)
        XCTAssertNotEqual(overridden.stdout, liveText)
        XCTAssertEqual(try overridden.lines.map { try JSONParser.parse($0)["severity"]?.stringValue }, ["warning"])
        XCTAssertEqual(try overridden.lines.first.map { try JSONParser.parse($0)["ts_ns"] }, liveFindings.first?["ts_ns"])

        // `test` also runs the stored configuration: a fixture made of this recording passes.
        let fixtures = try scratchDirectory("config-fixtures")
        try FileManager.default.createDirectory(atPath: fixtures + "/recorded", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: trace, toPath: fixtures + "/recorded/trace.fbt")
        try FileManager.default.copyItem(atPath: live, toPath: fixtures + "/recorded/expected-findings.jsonl")
        let t = try Tool.flightbox("test", fixtures)
        XCTAssertEqual(t.status, 0, t.stdout)
    }
}
