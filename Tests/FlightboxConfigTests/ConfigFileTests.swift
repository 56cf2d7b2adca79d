import XCTest
import FlightboxDetectors
@testable import FlightboxConfig

final class ConfigFileTests: XCTestCase {
    func parse(_ text: String) throws(ConfigError) -> DetectorConfiguration { try ConfigFile.parse(text, file: "f.yaml") }

    /// The one error of `text`, as "line:column: reason".
    func failure(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try parse(text)
            XCTFail("parsed without an error", file: file, line: line)
            return ""
        } catch {
            XCTAssertEqual(error.file, "f.yaml", file: file, line: line)
            return "\(error.line ?? 0):\(error.column ?? 0): \(error.reason)"
        }
    }

    func testEmptyFilesGiveTheDefaults() throws {
        XCTAssertEqual(try parse(""), .defaults)
        XCTAssertEqual(try parse("# nothing\n"), .defaults)
        XCTAssertEqual(try parse("detectors:\n"), .defaults)
        XCTAssertEqual(try parse("detectors:\n  syscall-latency:\n"), .defaults)
    }

    func testOverridesKeepTheRestAtDefaults() throws {
        let c = try parse("""
        detectors:
          syscall-latency:
            floor: 5ms
            min_samples: 1_000
            cooldown: 1.5s
            exclude:
              comm: [find, cat]
              pid: [1, 2]
              cgroup: /system.slice/backup.service
              endpoint: ["10.0.0.5:5432"]
              device: [sda]
        """)
        let s = try XCTUnwrap(c["syscall-latency"])
        XCTAssertEqual(s.duration("floor"), 5_000_000)
        XCTAssertEqual(s.count("min_samples"), 1000)
        XCTAssertEqual(s.duration("cooldown"), 1_500_000_000)
        XCTAssertEqual(s.count("buckets_above_p99"), 4)
        XCTAssertEqual(s.duration("critical"), 1_000_000_000)
        XCTAssertTrue(s.enabled)
        XCTAssertEqual(s.exclude, Exclusions(comms: ["find", "cat"], pids: [1, 2], cgroups: ["/system.slice/backup.service"],
                                             endpoints: ["10.0.0.5:5432"], devices: ["sda"]))
        XCTAssertEqual(try parse("detectors: {syscall-latency: {enabled: false}}")["syscall-latency"]?.enabled, false)
        XCTAssertEqual(try parse("detectors: {syscall-latency: {enabled: false}}").makeDetectors().map(\.name),
                       DetectorRegistry.names.filter { $0 != "syscall-latency" })
    }

    func testDefaultConfigRoundTrips() throws {
        let text = ConfigFile.text()
        XCTAssertEqual(try parse(text), .defaults)
        for spec in DetectorRegistry.all {
            XCTAssertTrue(text.contains("  \(spec.name):\n"), spec.name)
            for p in spec.parameters { XCTAssertTrue(text.contains("    \(p.name): \(p.defaultValue.configText)\n"), p.name) }
        }
        // Any configuration prints as a file that reads back to it.
        var c = DetectorConfiguration.defaults
        var s = c["syscall-latency"]!
        s.set("floor", .duration(1_500_000))
        s.enabled = false
        s.exclude = Exclusions(comms: ["a \"b\""], pids: [9], cgroups: ["/x/y"], endpoints: ["[::1]:80"], devices: ["8:0"])
        c["syscall-latency"] = s
        XCTAssertEqual(try parse(ConfigFile.text(of: c)), c)
    }

    func testMalformedYAML() {
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    floor: [1ms\n"),
                       "4:1: malformed YAML: did not find expected ',' or ']' (while parsing a flow sequence)")
        XCTAssertTrue(failure("detectors:\n\tsyscall-latency: {}\n").hasPrefix("2:1: malformed YAML: "))
    }

    func testUnknownDetectorWithSuggestion() {
        let known = DetectorRegistry.names.joined(separator: ", ")
        XCTAssertEqual(failure("detectors:\n  syscal-latency:\n    floor: 1ms\n"),
                       "2:3: unknown detector 'syscal-latency' (did you mean 'syscall-latency'?); known: \(known)")
        XCTAssertEqual(failure("detectors:\n  tcp: {}\n"), "2:3: unknown detector 'tcp'; known: \(known)")
    }

    func testUnknownKeysWithSuggestion() {
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    flor: 2ms\n"),
                       "3:5: syscall-latency: unknown key 'flor' (did you mean 'floor'?); known: enabled, min_samples, floor, buckets_above_p99, cooldown, critical, storage_ceiling, storage_share, preempted_share, exclude")
        XCTAssertEqual(failure("detector:\n  syscall-latency: {}\n"), "1:1: unknown top-level key 'detector' (did you mean 'detectors'?); known: detectors, rules")
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    exclude:\n      comms: [x]\n"),
                       "4:7: syscall-latency.exclude: unknown key 'comms' (did you mean 'comm'?); known: comm, pid, cgroup, endpoint, device")
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    zzzzzz: 1\n").components(separatedBy: ";").first, "3:5: syscall-latency: unknown key 'zzzzzz'")
    }

    func testWrongTypes() {
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    floor: 12\n"),
                       "3:12: syscall-latency.floor: '12' needs a unit: ns, us, ms, s, m, h or d (e.g. 12ms)")
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    floor: fast\n"),
                       "3:12: syscall-latency.floor: expected a duration such as 1ms or 10s, found 'fast'")
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    min_samples: 6.5\n"),
                       "3:18: syscall-latency.min_samples: expected a whole number such as 64, found '6.5'")
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    min_samples: [1]\n"),
                       "3:18: syscall-latency.min_samples: expected a whole number such as 64, found a list")
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    enabled: maybe\n"),
                       "3:14: syscall-latency.enabled: expected true or false, found 'maybe'")
        XCTAssertEqual(failure("detectors:\n  syscall-latency: 3\n"), "2:20: syscall-latency: expected a mapping, found '3'")
        XCTAssertEqual(failure("detectors: [syscall-latency]\n"), "1:12: detectors: expected a mapping, found a list")
        XCTAssertEqual(failure("- a\n"), "1:1: the file: expected a mapping, found a list")
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    exclude:\n      pid: [12, abc]\n"),
                       "4:17: syscall-latency.exclude.pid: 'abc' is not a pid (1 to 4194304)")
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    exclude:\n      comm: {a: b}\n"),
                       "4:13: syscall-latency.exclude.comm: expected a list such as [a, b], found a mapping")
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    floor:\n"),
                       "3:11: syscall-latency.floor: expected a duration such as 1ms or 10s, found nothing")
    }

    /// The block detector's thresholds and device exclusions come from the file.
    func testBlockSettings() throws {
        let c = try parse("""
        detectors:
          block:
            factor: 4
            busy_depth: 0.5
            min_latency: 500us
            exclude:
              device: [vda, "7:0"]
        """)
        let block = try XCTUnwrap(c["block"])
        XCTAssertEqual(block.ratio("factor"), 4)
        XCTAssertEqual(block.ratio("busy_depth"), 0.5)
        XCTAssertEqual(block.duration("min_latency"), 500_000)
        XCTAssertEqual(block.duration("window"), 1_000_000_000, "the rest at their defaults")
        XCTAssertEqual(block.exclude.devices, ["vda", "7:0"])
        XCTAssertEqual(failure("detectors:\n  block:\n    factor: 0.5\n"),
                       "3:13: block.factor: 0.5 is out of range (1.0 to 1000000.0)")
    }

    func testOutOfRange() {
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    min_samples: 0\n"),
                       "3:18: syscall-latency.min_samples: 0 is out of range (1 to 1000000000)")
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    floor: 2h\n"),
                       "3:12: syscall-latency.floor: 2h is out of range (0s to 1h)")
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    buckets_above_p99: 64\n"),
                       "3:24: syscall-latency.buckets_above_p99: 64 is out of range (1 to 63)")
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    exclude: {comm: [a-name-longer-than-15]}\n"),
                       "3:22: syscall-latency.exclude.comm: 'a-name-longer-than-15' is not a command name (1 to 15 bytes, as in /proc/PID/comm)")
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    exclude: {pid: [0]}\n"),
                       "3:21: syscall-latency.exclude.pid: '0' is not a pid (1 to 4194304)")
    }

    func testDuplicateKeys() {
        XCTAssertEqual(failure("detectors:\n  syscall-latency:\n    floor: 1ms\n    floor: 2ms\n"),
                       "4:5: syscall-latency: 'floor' is given twice (first at 3:5)")
    }

    func testUnreadableFile() {
        XCTAssertThrowsError(try ConfigFile.load(path: "/nonexistent/flightbox.yaml")) { e in
            XCTAssertEqual("\(e)", "/nonexistent/flightbox.yaml: cannot read: No such file or directory")
        }
    }

    func testSuggestionsAreForTyposOnly() {
        XCTAssertEqual(suggestion(for: "cooldwn", among: ["cooldown", "critical"]), "cooldown")
        XCTAssertNil(suggestion(for: "x", among: ["cooldown", "critical"]))
        XCTAssertEqual(editDistance("kitten", "sitting"), 3)
    }
}
