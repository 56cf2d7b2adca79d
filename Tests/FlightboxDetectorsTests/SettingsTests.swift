import XCTest
import FlightboxEvents
import FlightboxFormat
@testable import FlightboxDetectors

final class SettingsTests: XCTestCase {
    /// Records with one slow ioctl from each of pid 42 ("db") and pid 77 ("backup"), each after a baseline.
    func twoProcesses() -> (records: [[UInt8]], snapshot: ProcessSnapshot) {
        var ts: UInt64 = 1_000_000
        var recs = fastCalls(200, nr: nrIoctl, from: &ts, pid: 42) + fastCalls(200, nr: nrIoctl, from: &ts, pid: 77)
        recs.append(EventEncoder.syscall(ts: ts + 1, pid: 42, tid: 42, nr: nrIoctl, duration: 50_000_000, fdKind: .regular))
        recs.append(EventEncoder.syscall(ts: ts + 2, pid: 77, tid: 77, nr: nrIoctl, duration: 50_000_000, fdKind: .regular))
        let snapshot = ProcessSnapshot(timestamp: 0, processes: [
            ProcessRecord(pid: 42, ppid: 1, uid: 0, comm: "db", exe: "/db", argv: []),
            ProcessRecord(pid: 77, ppid: 1, uid: 0, comm: "backup", exe: "/backup", argv: []),
        ])
        return (recs, snapshot)
    }

    func detectors(_ configure: (inout DetectorSettings) -> Void) -> [Detector] {
        var c = DetectorConfiguration.defaults
        var s = c["syscall-latency"]!
        configure(&s)
        c["syscall-latency"] = s
        return try! c.makeDetectors()
    }

    func testDefaultsAreTheDeclaredValues() {
        let d = SyscallLatencyDetector()
        XCTAssertEqual(d.minSamples, 64)
        XCTAssertEqual(d.floorNs, 1_000_000)
        XCTAssertEqual(d.bucketsAbove, 4)
        XCTAssertEqual(d.cooldownNs, 10_000_000_000)
        XCTAssertEqual(d.criticalNs, 1_000_000_000)
        XCTAssertTrue(d.exclusions.isEmpty)
        XCTAssertEqual(DetectorConfiguration.defaults["syscall-latency"]?.duration("floor"), 1_000_000)
        XCTAssertEqual(DetectorRegistry.names.first, "syscall-latency")
        XCTAssertTrue(DetectorRegistry.names.contains("memory"))
        XCTAssertEqual(Set(DetectorRegistry.names).count, DetectorRegistry.names.count, "names are unique")
    }

    func testOverriddenThresholdsChangeFindings() {
        let (recs, snap) = twoProcesses()
        XCTAssertEqual(detect(recs, snapshot: snap).count, 2)
        XCTAssertEqual(detect(recs, detectors: detectors { $0.set("floor", .duration(100_000_000)) }, snapshot: snap), [])
        XCTAssertEqual(detect(recs, detectors: detectors { $0.set("min_samples", .count(500)) }, snapshot: snap), [])
        let critical = detect(recs, detectors: detectors { $0.set("critical", .duration(10_000_000)) }, snapshot: snap)
        XCTAssertEqual(critical.map(\.severity), [.critical, .critical])
    }

    func testSetRefusesOutOfRangeAndWrongKind() {
        var s = SyscallLatencyDetector.spec.defaults
        XCTAssertEqual(s.set("min_samples", .count(0)), "0 is out of range (1 to 1000000000)")
        XCTAssertEqual(s.set("floor", .count(5)), "expected a duration such as 1ms or 10s")
        XCTAssertNotNil(s.set("nope", .count(5)))
        XCTAssertEqual(s, SyscallLatencyDetector.spec.defaults)
    }

    func testExcludedCommAndPidGetNoFindings() {
        let (recs, snap) = twoProcesses()
        let byComm = detect(recs, detectors: detectors { $0.exclude = Exclusions(comms: ["backup"]) }, snapshot: snap)
        XCTAssertEqual(byComm.map(\.pid), [42])
        let byPid = detect(recs, detectors: detectors { $0.exclude = Exclusions(pids: [42]) }, snapshot: snap)
        XCTAssertEqual(byPid.map(\.pid), [77])
        let both = detect(recs, detectors: detectors { $0.exclude = Exclusions(comms: ["db"], pids: [77]) }, snapshot: snap)
        XCTAssertEqual(both, [])
    }

    /// A process that execs into an excluded name stops being judged; one that
    /// execs out of it is judged afresh.
    func testExclusionFollowsExec() {
        var ts: UInt64 = 10
        var recs = fastCalls(200, nr: nrIoctl, from: &ts, pid: 42)
        recs.append(EventEncoder.exec(ts: ts + 1, pid: 42, tid: 42, ppid: 1, uid: 0, comm: "find", filename: "/usr/bin/find", argv: ["find"]))
        recs.append(EventEncoder.syscall(ts: ts + 2, pid: 42, tid: 42, nr: nrIoctl, duration: 50_000_000, fdKind: .regular))
        XCTAssertEqual(detect(recs).count, 1)
        XCTAssertEqual(detect(recs, detectors: detectors { $0.exclude = Exclusions(comms: ["find"]) }), [])
    }

    func testFindingsNamingAnExcludedCgroupEndpointOrDeviceAreDropped() {
        let f = Finding(ts: 1, detector: "x", severity: .warning, pid: 1, tid: 1, comm: "c", summary: "",
                        evidence: .object([("cgroup", .string("/system.slice/backup.service")), ("endpoint", .string("10.0.0.5:5432")), ("device", .string("sda"))]))
        XCTAssertTrue(Exclusions(cgroups: ["/system.slice"]).excludes(f))
        XCTAssertTrue(Exclusions(cgroups: ["backup.service"]).excludes(f))
        XCTAssertFalse(Exclusions(cgroups: ["/system"]).excludes(f))
        XCTAssertTrue(Exclusions(endpoints: ["10.0.0.5:5432"]).excludes(f))
        XCTAssertTrue(Exclusions(devices: ["sda"]).excludes(f))
        XCTAssertFalse(Exclusions(devices: ["sdb"]).excludes(f))
    }

    func testStoredJSONRoundTripsAndIsStable() throws {
        var c = DetectorConfiguration.defaults
        var s = c["syscall-latency"]!
        s.set("floor", .duration(5_000_000))
        s.enabled = false
        s.exclude = Exclusions(comms: ["find"], pids: [7], cgroups: ["/a"], endpoints: ["h:1"], devices: ["sda"])
        c["syscall-latency"] = s
        let text = c.json.serialized()
        // Detectors in registry order: syscall-latency first, then the others with their defaults.
        XCTAssertTrue(text.hasPrefix(#"{"syscall-latency":{"enabled":false,"min_samples":64,"floor":5000000,"buckets_above_p99":4,"cooldown":10000000000,"critical":1000000000,"storage_ceiling":100000000,"storage_share":0.500,"preempted_share":0.500,"exclude":{"comm":["find"],"pid":[7],"cgroup":["/a"],"endpoint":["h:1"],"device":["sda"]}},"#), text)
        XCTAssertEqual(text, c.json.serialized(), "stable")
        XCTAssertEqual(try DetectorConfiguration(json: JSONParser.parse(text)), c)
        // Unknown detectors and parameters (a newer recorder) are ignored; missing ones default.
        let newer = try JSONParser.parse(#"{"future":{"x":1},"syscall-latency":{"floor":2000000,"future_knob":3}}"#)
        XCTAssertEqual(try DetectorConfiguration(json: newer)["syscall-latency"]?.duration("floor"), 2_000_000)
        XCTAssertThrowsError(try DetectorConfiguration(json: JSONParser.parse(#"{"syscall-latency":{"min_samples":0}}"#)))
    }

    func testAsRunRecordsWhichDetectorsRan() throws {
        let c = DetectorConfiguration.defaults
        XCTAssertEqual(c.asRun(nil), c)
        XCTAssertEqual(c.asRun([])["syscall-latency"]?.enabled, false)
        XCTAssertEqual(try c.asRun([]).makeDetectors().count, 0)
    }

    func testValueTexts() {
        XCTAssertEqual(SettingValue.parseDuration("1ms"), 1_000_000)
        XCTAssertEqual(SettingValue.parseDuration("1.5s"), 1_500_000_000)
        XCTAssertEqual(SettingValue.parseDuration("250us"), 250_000)
        XCTAssertEqual(SettingValue.parseDuration("2m"), 120_000_000_000)
        XCTAssertEqual(SettingValue.parseDuration("0"), 0)
        XCTAssertNil(SettingValue.parseDuration("12"))
        XCTAssertNil(SettingValue.parseDuration("ms"))
        XCTAssertNil(SettingValue.parseDuration("99999999999999999999d"))
        XCTAssertEqual(SettingValue.parseBytes("64MiB"), 64 << 20)
        XCTAssertEqual(SettingValue.parseBytes("65536"), 65536)
        XCTAssertEqual(SettingValue.parseBytes("10MB"), 10_000_000)
        XCTAssertNil(SettingValue.parseBytes("10 parsecs"))
        XCTAssertEqual(SettingValue.parseRatio("0.99"), 0.99)
        XCTAssertNil(SettingValue.parseRatio("0.9999"))
        XCTAssertEqual(SettingValue.durationText(1_000_000), "1ms")
        XCTAssertEqual(SettingValue.durationText(90_000_000_000), "90s")
        XCTAssertEqual(SettingValue.bytesText(64 << 20), "64MiB")
        XCTAssertEqual(SettingValue.bytesText(1000), "1000")
        XCTAssertEqual(SettingValue.ratio(0.5).configText, "0.5")
    }
}
