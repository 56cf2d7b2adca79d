import XCTest
#if canImport(Glibc)
import Glibc
#endif
import FlightboxEvents

/// `flightbox flight` with real BPF: dumps on a real finding, on SIGUSR1 and
/// on `flightbox dump`; rotation by size and age; a restart after SIGKILL; a
/// full tmpfs; status and metrics. Short runs: segments of 1 s, windows of seconds.
final class FlightTests: XCTestCase {
    func monotonicNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Starts a flight recorder on `dir` and waits until it records.
    func startFlight(_ dir: String, _ extra: [String]) throws -> Recorder {
        let r = try Recorder(["flight", "--dir", dir, "--status-interval", "200ms"] + extra)
        try r.waitForStderr("flightbox: flight recording")
        // The first status comes with the loop's first turn.
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: dir + "/status.json"), Date() < deadline { usleep(10_000) }
        return r
    }

    func stop(_ r: Recorder) -> Int32 {
        if r.process.isRunning { kill(r.pid, SIGTERM) }
        return r.wait()
    }

    func status(_ dir: String) throws -> JSON {
        let r = try Tool.flightbox("flight", "status", "--dir", dir, "--format", "json")
        XCTAssertEqual(r.status, 0, r.stderr)
        return try JSONParser.parse(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    func dumps(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/dumps")) ?? []).filter { $0.hasPrefix("dump-") && $0.hasSuffix(".fbt") }.sorted()
            .map { dir + "/dumps/" + $0 }
    }

    func segments(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("seg-") && $0.hasSuffix(".fbt") }.sorted()
            .map { dir + "/" + $0 }
    }

    func size(_ path: String) -> UInt64 {
        ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? UInt64) ?? 0
    }

    /// Waits until `n` dumps are in the directory.
    func waitForDumps(_ dir: String, _ n: Int, timeout: TimeInterval = 30) throws -> [String] {
        let deadline = Date().addingTimeInterval(timeout)
        while dumps(dir).count < n {
            guard Date() < deadline else { throw XCTSkip("no dump after \(timeout) s") }
            usleep(100_000)
        }
        return dumps(dir)
    }

    func dumpMetadata(_ path: String) throws -> JSON {
        try XCTUnwrap(inspectJSON(path)["capture"]?["flight_dump"])
    }

    /// Live findings and the replay's, by identity (see FlightDumps.replayNote).
    func assertReplayMatchesLive(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws {
        func identity(_ f: JSON) -> String {
            ["ts_ns", "detector", "severity", "pid", "tid", "comm"].map { f[$0]?.serialized() ?? "?" }.joined(separator: " ")
        }
        let live = try dumpMetadata(path)["live_findings"]?.arrayValue?.map(identity) ?? []
        let r = try Tool.flightbox("replay", path, "--format", "json")
        XCTAssertEqual(r.status, 0, r.stderr, file: file, line: line)
        let replayed = try r.lines.map { identity(try JSONParser.parse($0)) }
        XCTAssertEqual(replayed, live, file: file, line: line)
    }

    /// A memory cgroup of 32 MiB (cgroup v1 or v2), removed at the end.
    func memoryCgroup(_ name: String) throws -> String {
        let v2 = "/sys/fs/cgroup/\(name)", v1 = "/sys/fs/cgroup/memory/\(name)"
        if FileManager.default.fileExists(atPath: "/sys/fs/cgroup/cgroup.controllers") {
            try? FileManager.default.createDirectory(atPath: v2, withIntermediateDirectories: true)
            try "\(32 << 20)".write(toFile: v2 + "/memory.max", atomically: false, encoding: .utf8)
            try? "0".write(toFile: v2 + "/memory.swap.max", atomically: false, encoding: .utf8)
            addTeardownBlock { rmdir(v2) }
            return v2
        }
        try? FileManager.default.createDirectory(atPath: v1, withIntermediateDirectories: true)
        try "\(32 << 20)".write(toFile: v1 + "/memory.limit_in_bytes", atomically: false, encoding: .utf8)
        try? "\(32 << 20)".write(toFile: v1 + "/memory.memsw.limit_in_bytes", atomically: false, encoding: .utf8)
        addTeardownBlock { rmdir(v1) }
        return v1
    }

    /// A real critical finding (the memory detector on a memcg OOM kill)
    /// triggers a dump holding the pre window before it and the kill itself;
    /// its replay gives the live findings.
    func testACriticalFindingTriggersADump() throws {
        try requireBPF()
        let dir = try scratchDirectory("flight-finding")
        let cg = try memoryCgroup("flightbox-flight-oom")
        let r = try startFlight(dir, ["--probes", "process,memory", "--segment", "1s", "--keep", "30s", "--pre", "2s", "--post", "1s"])
        defer { _ = stop(r) }
        sleep(3)
        let load = try Tool.run(Tool.load, ["oom", cg, "256"])
        XCTAssertEqual(load.status, 9, "OOM-killed: \(load.stderr)")
        let path = try waitForDumps(dir, 1)[0]
        let meta = try dumpMetadata(path)
        let trigger = try XCTUnwrap(meta["triggers"]?.arrayValue?.first)
        XCTAssertEqual(trigger["kind"]?.stringValue, "finding")
        XCTAssertEqual(trigger["finding"]?["detector"]?.stringValue, "memory")
        XCTAssertEqual(trigger["finding"]?["severity"]?.stringValue, "critical")
        let triggerTs = try XCTUnwrap(meta["trigger_ts_ns"]?.uintValue)
        let info = try inspectJSON(path)
        // Memory and process events are sparse: the dump starts with the
        // segment that was open at the start of the pre window, whatever its
        // first event's time.
        XCTAssertLessThanOrEqual(try XCTUnwrap(meta["start_ts_ns"]?.uintValue), triggerTs - 2_000_000_000, "the pre window")
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(info["last_ts_ns"]?.uintValue), triggerTs + 900_000_000, "the post window")
        XCTAssertEqual(info["closed_cleanly"], .bool(true))
        try assertReplayMatchesLive(path)
        XCTAssertEqual(stop(r), 0, r.stderr)
        let s = try status(dir)
        XCTAssertEqual(s["running"], .bool(false))
        XCTAssertEqual(s["last_finding"]?["finding"]?["detector"]?.stringValue, "memory")
    }

    /// SIGUSR1 and `flightbox dump` each make a dump; the first holds a
    /// process that ran inside the pre window, before the trigger.
    func testSignalAndDumpCommandTriggerDumpsWithThePreWindow() throws {
        try requireBPF()
        let dir = try scratchDirectory("flight-signal")
        // No dump on findings: the critical findings of other work on the machine would add dumps to count.
        let r = try startFlight(dir, ["--probes", "process,syscalls", "--segment", "1s", "--keep", "30s", "--pre", "3s", "--post", "1s",
                                      "--dump-interval", "1s", "--dump-on", "none"])
        defer { _ = stop(r) }
        sleep(2)
        let before = monotonicNs()
        let marker = Process()
        marker.executableURL = URL(fileURLWithPath: Tool.load)
        marker.arguments = ["getppid", "1000"]
        try marker.run()
        marker.waitUntilExit()
        XCTAssertEqual(marker.terminationStatus, 0)
        usleep(500_000)
        let signalled = monotonicNs()
        kill(r.pid, SIGUSR1)
        let first = try waitForDumps(dir, 1)[0]
        let meta = try dumpMetadata(first)
        XCTAssertEqual(meta["triggers"]?.arrayValue?.first?["kind"]?.stringValue, "signal")
        let triggerTs = try XCTUnwrap(meta["trigger_ts_ns"]?.uintValue)
        XCTAssertGreaterThanOrEqual(triggerTs, signalled)
        XCTAssertLessThan(triggerTs, signalled + 1_000_000_000)
        let events = try eventsJSON(first, ["--type", "exec"])
        let execs = events.filter { $0["pid"]?.uintValue == UInt64(marker.processIdentifier) }
        XCTAssertFalse(execs.isEmpty, "the marker process, run before the trigger, is in the dump")
        for e in execs {
            let ts = try XCTUnwrap(e["ts_ns"]?.uintValue)
            XCTAssertGreaterThanOrEqual(ts, before)
            XCTAssertLessThan(ts, triggerTs)
            XCTAssertGreaterThanOrEqual(ts, triggerTs - 3_000_000_000, "inside the pre window")
        }
        let info = try inspectJSON(first)
        XCTAssertLessThanOrEqual(try XCTUnwrap(info["first_ts_ns"]?.uintValue), triggerTs - 2_000_000_000)
        try assertReplayMatchesLive(first)

        sleep(1)
        let asked = try Tool.flightbox("dump", "--dir", dir, "--reason", "from the test")
        XCTAssertEqual(asked.status, 0, asked.stderr)
        XCTAssertTrue(asked.stdout.contains("started dump-"), asked.stdout)
        let both = try waitForDumps(dir, 2)
        let second = try dumpMetadata(both[1])
        XCTAssertEqual(second["triggers"]?.arrayValue?.first?["kind"]?.stringValue, "request")
        XCTAssertEqual(second["reason"]?.stringValue, "from the test")
        XCTAssertEqual(stop(r), 0, r.stderr)
        XCTAssertEqual(try status(dir)["dumps"]?["written"]?.uintValue, 2)
    }

    /// (b) A dump that starts after the detectors learned what its findings
    /// depend on: a shell lineage reads /etc/shadow and drops an executable
    /// before the dump's first segment, and runs it inside the dump. Live,
    /// that is a "Dropped executable run" and, at the stop, an incident of the
    /// lineage; the dump carries its first segment's checkpoint, so its
    /// replay gives exactly the live findings made while its events were
    /// processed: the last ones of the run (the dump holds the run's end),
    /// byte for byte. Without the checkpoint neither finding replays.
    func testDumpReplaysTheLiveFindingsOfItsWindowFromItsCheckpoint() throws {
        try requireBPF()
        let dir = try scratchDirectory("flight-checkpoint")
        let live = dir + "/live.jsonl"
        let work = try scratchDirectory("flight-checkpoint-work")
        // The built-in "Dropped executable run" leaves out what a build tool
        // started, as the test runner is: this rule judges the dropper alone.
        let rules = work + "/rules.yaml"
        try """
        - rule: Checkpoint test dropper
          desc: The test's dropper, a file written before the dump, executed inside it.
          condition: evt.type = exec and proc.exe_written and proc.name = dropper
          output: "%proc.name executed %proc.exe, a file written in this trace"
          priority: warning
          tags: [T1105]

        """.write(toFile: rules, atomically: true, encoding: .utf8)
        let r = try startFlight(dir, ["--probes", "process,files,privilege,syscalls,scheduler,gauges", "--segment", "1s", "--keep", "60s", "--pre", "2s",
                                      "--post", "120s", "--dump-on", "none", "--findings", live, "--rules", rules])
        defer { _ = stop(r) }
        sleep(2)
        let attack = Process()
        attack.executableURL = URL(fileURLWithPath: "/bin/sh")
        attack.arguments = ["-c", "cp /bin/true \(work)/dropper; chmod 0644 \(work)/dropper; chmod +x \(work)/dropper; cat /etc/shadow > /dev/null; sleep 6; \(work)/dropper"]
        try attack.run()
        // The pre window starts 2 s before the request: after the lineage's first steps, in a later segment.
        sleep(4)
        let asked = try Tool.flightbox("dump", "--dir", dir, "--reason", "checkpoint test")
        XCTAssertEqual(asked.status, 0, asked.stderr)
        attack.waitUntilExit()
        sleep(2)
        // Stopping writes the dump (its post window is still open): it holds the run's end, the live engine's finish included.
        XCTAssertEqual(stop(r), 0, r.stderr)
        let path = try waitForDumps(dir, 1)[0]
        let meta = try dumpMetadata(path)
        XCTAssertEqual(meta["checkpoint"], .bool(true), "the dump carries its first segment's checkpoint")
        XCTAssertGreaterThan(try XCTUnwrap(meta["first_sequence"]?.uintValue), 0, "the dump starts after the recorder's first events")
        XCTAssertTrue(try XCTUnwrap(meta["replay"]?.stringValue).contains("detector checkpoint"))

        let liveLines = try String(contentsOfFile: live, encoding: .utf8).split(separator: "\n").map(String.init)
        let replay = try Tool.flightbox("replay", path, "--format", "json")
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertTrue(replay.stderr.contains("detector checkpoint restored"), replay.stderr)
        XCTAssertFalse(replay.stderr.contains("starting fresh"), replay.stderr)
        let replayed = replay.lines
        XCTAssertGreaterThan(liveLines.count, replayed.count, "live findings before the dump's window")
        XCTAssertEqual(Array(liveLines.suffix(replayed.count)), replayed, "the replay gives the live findings of the dump's window")
        // The machine runs other things (other tests' attacks among them): only this lineage's findings are judged.
        func ours(_ lines: [String]) -> [String] {
            lines.compactMap { try? JSONParser.parse($0) }.filter { $0["detector"]?.stringValue == "security" && $0.serialized().contains("Checkpoint test dropper") }
                .compactMap { $0["evidence"]?["rule"]?.stringValue }
        }
        XCTAssertEqual(ours(replayed), ["Checkpoint test dropper", "incident"], "the dropper, and the incident of its lineage with the shadow read before the dump")

        let fresh = try Tool.flightbox("replay", path, "--format", "json", "--no-checkpoint")
        XCTAssertEqual(fresh.status, 0, fresh.stderr)
        XCTAssertNotEqual(fresh.lines, replayed, "without the checkpoint the history before the dump is missing")
        XCTAssertEqual(ours(fresh.lines), [], "without the checkpoint the dropper is not a file written in this trace, and no incident")

        // A segment replays the same way: the last one gives the live findings' tail too.
        let last = try XCTUnwrap(segments(dir).last)
        let segment = try Tool.flightbox("replay", last, "--format", "json")
        XCTAssertEqual(segment.status, 0, segment.stderr)
        XCTAssertTrue(segment.stderr.contains("detector checkpoint restored"), segment.stderr)
        XCTAssertEqual(Array(liveLines.suffix(segment.lines.count)), segment.lines)
    }

    /// Under load, segments close at a quarter of --max-size and the oldest
    /// go: the directory never holds more than the budget plus one segment.
    func testRotationBySizeKeepsTheBudget() throws {
        try requireBPF()
        let dir = try scratchDirectory("flight-size")
        let budget: UInt64 = 2 << 20
        let r = try startFlight(dir, ["--probes", "process,syscalls", "--segment", "1m", "--keep", "10m", "--max-size", "2M", "--pre", "10s", "--dump-on", "none"])
        defer { _ = stop(r) }
        let workload = Process()
        workload.executableURL = URL(fileURLWithPath: Tool.load)
        workload.arguments = ["getppid", "3000000"]
        try workload.run()
        defer { if workload.isRunning { workload.terminate(); workload.waitUntilExit() } }
        var largestTotal: UInt64 = 0
        var largestSegment: UInt64 = 0
        let deadline = Date().addingTimeInterval(8)
        while Date() < deadline, workload.isRunning {
            let sizes = segments(dir).map(size)
            largestTotal = max(largestTotal, sizes.reduce(0, +))
            largestSegment = max(largestSegment, sizes.max() ?? 0)
            usleep(20_000)
        }
        workload.terminate()
        workload.waitUntilExit()
        XCTAssertEqual(stop(r), 0, r.stderr)
        let s = try status(dir)
        XCTAssertGreaterThan(s["segments_evicted"]?["size"]?.uintValue ?? 0, 0, "\(s)")
        XCTAssertLessThanOrEqual(largestTotal, budget + largestSegment)
        XCTAssertLessThanOrEqual(segments(dir).map(size).reduce(0, +), budget)
        // Each segment left reads alone.
        for seg in segments(dir) {
            let info = try inspectJSON(seg)
            XCTAssertEqual(info["closed_cleanly"], .bool(true), seg)
            XCTAssertEqual(info["missing"]?.uintValue, 0, seg)
        }
    }

    /// Segments older than --keep go.
    func testRotationByAgeRemovesOldSegments() throws {
        try requireBPF()
        let dir = try scratchDirectory("flight-age")
        let r = try startFlight(dir, ["--probes", "process,syscalls", "--segment", "1s", "--keep", "2s", "--pre", "1s", "--dump-on", "none"])
        defer { _ = stop(r) }
        sleep(6)
        let now = monotonicNs()
        let s = try status(dir)
        XCTAssertGreaterThanOrEqual(s["segments_evicted"]?["age"]?.uintValue ?? 0, 1, "\(s)")
        XCTAssertEqual(stop(r), 0, r.stderr)
        let left = segments(dir)
        XCTAssertLessThanOrEqual(left.count, 5, "\(left)")
        XCTAssertFalse(left.contains { $0.hasSuffix("seg-000000000001.fbt") || $0.hasSuffix("seg-000000000002.fbt") })
        _ = now
    }

    /// After SIGKILL the last segment is left open; a restart repairs it in
    /// place (every whole block kept) and records on into new segments.
    func testRestartAfterSIGKILLRepairsAndGoesOn() throws {
        try requireBPF()
        let dir = try scratchDirectory("flight-kill")
        let args = ["--probes", "process,syscalls", "--segment", "10s", "--keep", "1m", "--pre", "5s"]
        let first = try startFlight(dir, args)
        sleep(3)
        kill(first.pid, SIGKILL)
        first.wait()
        let open = try XCTUnwrap(segments(dir).last)
        let before = try inspectJSON(open)
        XCTAssertEqual(before["closed_cleanly"], .bool(false))
        let readable = try XCTUnwrap(before["events"]?.uintValue)
        XCTAssertGreaterThan(readable, 0, "flushed blocks are on disk")
        XCTAssertEqual(try status(dir)["running"], .bool(false), "the lock died with it")

        let second = try startFlight(dir, args)
        XCTAssertTrue(second.stderr.contains("repaired \((open as NSString).lastPathComponent)"), second.stderr)
        let after = try inspectJSON(open)
        XCTAssertEqual(after["closed_cleanly"], .bool(true))
        XCTAssertEqual(after["events"]?.uintValue, readable, "nothing readable was lost")
        sleep(2)
        XCTAssertEqual(try status(dir)["running"], .bool(true))
        XCTAssertEqual(stop(second), 0, second.stderr)
        XCTAssertGreaterThan(segments(dir).count, 1)
        let newest = try inspectJSON(segments(dir).last!)
        XCTAssertEqual(newest["closed_cleanly"], .bool(true))
        XCTAssertGreaterThan(newest["events"]?.uintValue ?? 0, 0)
    }

    /// On a 16 MiB tmpfs with a larger --max-size the disk fills first: the
    /// recorder removes its own oldest segments, says so, and records on.
    func testAFullTmpfsEvictsOwnSegmentsAndRecordsOn() throws {
        try requireBPF()
        let mnt = try scratchDirectory("flight-tmpfs")
        let m = try Tool.run("/bin/mount", ["-t", "tmpfs", "-o", "size=16m", "flightbox-flight-test", mnt])
        guard m.status == 0 else { throw XCTSkip("cannot mount a tmpfs: \(m.stderr)") }
        defer { _ = try? Tool.run("/bin/umount", ["-l", mnt]) }
        // Ballast: 12 of the 16 MiB, so the rest fills in seconds.
        let ballast = try Tool.run("/bin/dd", ["if=/dev/zero", "of=\(mnt)/ballast", "bs=1M", "count=12"])
        XCTAssertEqual(ballast.status, 0, ballast.stderr)
        let dir = mnt + "/flight"
        let r = try startFlight(dir, ["--probes", "process,syscalls", "--segment", "2s", "--keep", "10m", "--max-size", "1G", "--pre", "5s", "--dump-on", "none"])
        defer { _ = stop(r) }
        let workload = Process()
        workload.executableURL = URL(fileURLWithPath: Tool.load)
        workload.arguments = ["getppid", "100000000"]
        try workload.run()
        defer { if workload.isRunning { workload.terminate(); workload.waitUntilExit() } }
        let deadline = Date().addingTimeInterval(60)
        var s = try status(dir)
        while (s["segments_evicted"]?["disk_full"]?.uintValue ?? 0) < 2, Date() < deadline {
            usleep(250_000)
            s = try status(dir)
        }
        let eventsThen = s["events"]?.uintValue ?? 0
        sleep(2)
        workload.terminate()
        workload.waitUntilExit()
        let later = try status(dir)
        XCTAssertEqual(later["running"], .bool(true))
        XCTAssertGreaterThanOrEqual(later["segments_evicted"]?["disk_full"]?.uintValue ?? 0, 2, "\(later)")
        XCTAssertGreaterThan(later["events"]?.uintValue ?? 0, eventsThen, "still recording")
        XCTAssertTrue(r.stderr.contains("disk full: removed the oldest segment"), r.stderr)
        XCTAssertEqual(stop(r), 0, r.stderr)
        XCTAssertLessThanOrEqual(segments(dir).map(size).reduce(0, +), 16 << 20)
        for seg in segments(dir) {
            XCTAssertEqual(try inspectJSON(seg)["problems"]?.arrayValue?.count ?? 0, 0, seg)
        }
    }

    /// The metrics file and the loopback endpoint parse with Prometheus' own
    /// text parser and carry the recorder's figures.
    func testMetricsParseWithPrometheusClient() throws {
        try requireBPF()
        guard (try? Tool.run("/usr/bin/env", ["python3", "-c", "import prometheus_client"]))?.status == 0 else {
            throw XCTSkip("python3 prometheus_client is missing (scripts/setup.sh installs it)")
        }
        let dir = try scratchDirectory("flight-metrics")
        let port = 19_000 + Int(getpid() % 1000)
        let r = try startFlight(dir, ["--probes", "process,syscalls", "--segment", "1s", "--keep", "10s", "--pre", "1s", "--post", "1s",
                                      "--metrics-file", dir + "/flightbox.prom", "--metrics", "127.0.0.1:\(port)"])
        defer { _ = stop(r) }
        sleep(1)
        // Events of our own: a quiet machine makes few syscalls in two seconds.
        XCTAssertEqual(try Tool.run(Tool.load, ["getppid", "5000"]).status, 0)
        sleep(1)
        kill(r.pid, SIGUSR1)
        _ = try waitForDumps(dir, 1)
        usleep(500_000)
        let script = """
        import sys, urllib.request
        from prometheus_client.parser import text_string_to_metric_families
        for text in (open(sys.argv[1]).read(), urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[2]).read().decode()):
            fams = {f.name: f for f in text_string_to_metric_families(text)}
            def total(name):
                return sum(s.value for s in fams[name].samples if s.name.endswith("_total") or s.name == name)
            assert fams["flightbox_events"].type == "counter", fams["flightbox_events"].type
            assert total("flightbox_events") > 1000
            assert total("flightbox_bytes_written") > 0
            assert fams["flightbox_segments"].type == "gauge"
            assert total("flightbox_segments") >= 1
            assert total("flightbox_dumps") >= 1
            assert {s.labels["reason"] for s in fams["flightbox_segments_removed"].samples} == {"age", "size", "disk_full"}
            assert all("cpu" in s.labels for s in fams["flightbox_lost_events"].samples)
            assert total("flightbox_process_resident_memory_bytes") > 1e6
            assert total("flightbox_process_cpu_seconds") > 0
            print(len(fams))
        """
        let check = try Tool.run("/usr/bin/env", ["python3", "-c", script, dir + "/flightbox.prom", String(port)])
        XCTAssertEqual(check.status, 0, check.stderr + check.stdout)
        XCTAssertEqual(stop(r), 0, r.stderr)
    }

    /// Clients trickling a byte every 150 ms into the control socket and the
    /// metrics endpoint (each read waited for alone would hold the recorder)
    /// do not stall recording: the status goes on being rewritten, events go
    /// on being counted, none is lost, a `flightbox dump` meanwhile is
    /// answered, and each slow client is closed at its one deadline.
    func testSlowClientsDoNotStallRecording() throws {
        try requireBPF()
        let dir = try scratchDirectory("flight-slow-client")
        let port = 20_000 + Int(getpid() % 1000)
        // Our load only, under a name of its own (whatever else loads the
        // machine), into a 1 MiB ring: about 16,000 events, a third of what
        // the load makes while the clients trickle. A recorder held by them
        // would lose events; one that goes on draining loses none.
        let load = dir + "/fbtrickleload"
        try FileManager.default.copyItem(atPath: Tool.load, toPath: load)
        let r = try startFlight(dir, ["--probes", "process,syscalls", "--comm", "fbtrickleload", "--ring-kb", "1024", "--segment", "1s",
                                      "--keep", "10s", "--pre", "1s", "--post", "1s", "--dump-interval", "1s", "--metrics", "127.0.0.1:\(port)",
                                      "--max-dump-bytes", "64M"])
        defer { _ = stop(r) }
        sleep(1)
        let trickling = Trickle(unixPath: dir + "/control.sock", tcpPort: port, request: "dump slow client\n", every: 150_000, for: 4_000_000)
        let thread = Thread { trickling.run() }
        thread.start()
        // While they trickle: load, and what the status says every 250 ms.
        var samples: [(updated: String, events: UInt64)] = []
        var asked: Tool.Result?
        let start = Date()
        while Date().timeIntervalSince(start) < 3.5 {
            XCTAssertEqual(try Tool.run(load, ["getppid", "5000"]).status, 0)
            if asked == nil, Date().timeIntervalSince(start) > 1 { asked = try Tool.flightbox("dump", "--dir", dir, "--reason", "beside a slow client") }
            if let text = try? String(contentsOfFile: dir + "/status.json", encoding: .utf8), let s = try? JSONParser.parse(text) {
                samples.append((s["updated_at"]?.stringValue ?? "", s["events"]?.uintValue ?? 0))
            }
            usleep(250_000)
        }
        trickling.done.wait()
        XCTAssertGreaterThanOrEqual(Set(samples.map(\.updated)).count, 6, "the status was rewritten all along: \(samples)")
        XCTAssertGreaterThan(samples.last!.events, samples.first!.events + 30_000, "events recorded while the clients trickled")
        XCTAssertEqual(asked?.status, 0, asked?.stderr ?? "")
        XCTAssertTrue(asked?.stdout.contains("started dump-") ?? false, asked?.stdout ?? "")
        // Closed at the deadline (1 s), long before their 4 s of bytes.
        XCTAssertLessThan(trickling.unixClosedAfter ?? 99, 2.0, "the control socket's slow client")
        XCTAssertLessThan(trickling.tcpClosedAfter ?? 99, 2.0, "the metrics endpoint's slow client")
        _ = try waitForDumps(dir, 1)
        XCTAssertEqual(stop(r), 0, r.stderr)
        let s = try status(dir)
        XCTAssertEqual(s["losses"]?.uintValue, 0)
        XCTAssertEqual(s["dumps"]?["max_bytes"]?.uintValue, 64 << 20)
    }

    /// The service unit passes `systemd-analyze verify` (its ExecStart
    /// pointed at the built binary: /usr/local/bin/flightbox is not installed
    /// here). systemd cannot start it on this machine (no systemd as PID 1).
    func testTheSystemdUnitVerifies() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/systemd-analyze") else {
            throw XCTSkip("systemd-analyze is missing (scripts/setup.sh installs systemd)")
        }
        let unit = try String(contentsOfFile: Tool.packageRoot + "/systemd/flightbox-flight.service", encoding: .utf8)
        XCTAssertTrue(unit.contains("ExecStart=/usr/local/bin/flightbox flight "))
        let dir = try scratchDirectory("flight-unit")
        try unit.replacingOccurrences(of: "/usr/local/bin/flightbox", with: Tool.flightbox)
            .write(toFile: dir + "/flightbox-flight.service", atomically: true, encoding: .utf8)
        let r = try Tool.run("/usr/bin/systemd-analyze", ["verify", dir + "/flightbox-flight.service"])
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertEqual(r.stderr, "", "no warning")
    }

    /// Usage errors and a second recorder in the same directory are refused in one line.
    func testBadFlightUsageIsRefused() throws {
        let dir = try scratchDirectory("flight-usage")
        let badRules = scratch("flight-bad-rules.yaml")
        try "- rule: r\n  desc: d\n  condition: proc.nme = x\n  output: o\n  priority: WARNING\n".write(toFile: badRules, atomically: true, encoding: .utf8)
        for (args, message) in [
            (["--rules", badRules], "\(badRules):3:"),
            (["--pre", "20m"], "--pre (20m) is longer than --keep (10m)"),
            (["--dump-on", "fatal"], "--dump-on: 'fatal' is not info, warning, critical or none"),
            (["--max-size", "10K"], "--max-size: '10K' is too small"),
            (["--max-dump-bytes", "10K"], "--max-dump-bytes: '10K' is too small"),
            (["--metrics", "0.0.0.0:9464"], "is not a loopback address"),
        ] {
            let r = try Tool.flightbox(["flight", "--dir", dir] + args)
            XCTAssertEqual(r.status, 2, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(message), "\(args): \(r.stderr)")
        }
        let none = try Tool.flightbox("dump", "--dir", dir)
        XCTAssertEqual(none.status, 1)
        XCTAssertTrue(none.stderr.contains("no flight recorder runs in"), none.stderr)
        try requireBPF()
        let r = try startFlight(dir, ["--probes", "process"])
        defer { _ = stop(r) }
        let second = try Tool.flightbox("flight", "--dir", dir, "--probes", "process")
        XCTAssertEqual(second.status, 1)
        XCTAssertTrue(second.stderr.contains("is in use by another flight recorder (pid \(r.pid))"), second.stderr)
    }
}

/// Two slow clients, one on a unix socket and one on a loopback TCP port:
/// each sends `request` a byte every `every` µs for `for` µs, and notes how
/// long after connecting the server closed it (a send fails or a read ends).
final class Trickle: @unchecked Sendable {
    let unixPath: String, tcpPort: Int, request: [UInt8], every: UInt32, total: UInt32
    private(set) var unixClosedAfter: Double?
    private(set) var tcpClosedAfter: Double?
    let done = DispatchSemaphore(value: 0)

    init(unixPath: String, tcpPort: Int, request: String, every: UInt32, for total: UInt32) {
        self.unixPath = unixPath
        self.tcpPort = tcpPort
        self.request = Array(request.utf8)
        self.every = every
        self.total = total
    }

    func run() {
        defer { done.signal() }
        let u = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var ua = sockaddr_un()
        ua.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &ua.sun_path) { p in for (i, b) in unixPath.utf8.enumerated() where i < p.count - 1 { p[i] = b } }
        let uc = withUnsafePointer(to: &ua) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(u, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        let t = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var ta = sockaddr_in()
        ta.sin_family = sa_family_t(AF_INET)
        ta.sin_port = in_port_t(UInt16(tcpPort).bigEndian)
        ta.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
        let tc = withUnsafePointer(to: &ta) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(t, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        defer { close(u); close(t) }
        guard uc == 0, tc == 0 else { return }
        let http = Array("GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n".utf8)
        let start = Date()
        var i = 0
        while Date().timeIntervalSince(start) * 1e6 < Double(total), unixClosedAfter == nil || tcpClosedAfter == nil {
            if unixClosedAfter == nil, !alive(u, byte: request[min(i, request.count - 2)]) { unixClosedAfter = Date().timeIntervalSince(start) }
            if tcpClosedAfter == nil, !alive(t, byte: http[min(i, http.count - 4)]) { tcpClosedAfter = Date().timeIntervalSince(start) }
            i += 1
            usleep(every)
        }
    }

    /// Sends one byte (never the request's end) and checks the peer has not closed.
    private func alive(_ fd: Int32, byte: UInt8) -> Bool {
        var b = byte
        if send(fd, &b, 1, Int32(MSG_NOSIGNAL)) != 1 { return false }
        var r: UInt8 = 0
        let n = recv(fd, &r, 1, Int32(MSG_DONTWAIT))
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)
    }
}

/// The soak benchmark's short version: disk within budget, RSS flat, every
/// written event found in the segments, dumps on request.
final class FlightSoakTests: XCTestCase {
    func testShortSoak() throws {
        try requireBPF()
        let dir = try scratchDirectory("flight-soak")
        let r = try Tool.run("/usr/bin/env", ["python3", Tool.packageRoot + "/scripts/soak-flight.py", "--duration", "20s", "--segment", "2s",
                                              "--keep", "6s", "--max-size", "8M", "--rate", "50000", "--dump-every", "8s",
                                              "--bin", Tool.binDir, "--dir", dir + "/d"], timeout: 120)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        let figures = try JSONParser.parse(String(r.stdout.prefix { $0 != "F" }))
        XCTAssertGreaterThan(figures["events_written"]?.uintValue ?? 0, 500_000)
        XCTAssertEqual(figures["events_written"], figures["events_in_segments"])
        XCTAssertGreaterThan(figures["segments_evicted"]?["age"]?.uintValue ?? 0, 0)
        XCTAssertGreaterThanOrEqual(figures["dumps_written"]?.uintValue ?? 0, 1)
    }
}
