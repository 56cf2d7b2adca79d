import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat
#if canImport(Glibc)
import Glibc
#endif

/// Health checks on real applications, through the CLI: the probes family on
/// the recorder's ring, the checks stored in the trace, the health detector
/// live and on replay.
final class HealthEndToEndTests: XCTestCase {
    static var app: String { Tool.binDir + "/flightbox-app" }

    /// The checks of flightbox-app (Sources/flightbox-app), and one that cannot attach.
    static func config(_ extra: String = "") -> String {
        """
        probes:
          - name: work
            target: \(app):fb_app_work
            args: 1
            latency: { statistic: max, above: 30ms, window: 1s }
          - name: fail
            target: \(app):fb_app_fail
            args: 1
            errors: { when: ret == -5, rate: 0.5, window: 1s, min_calls: 3 }
          - name: beat
            target: \(app):fb_app_heartbeat
            heartbeat: { every: 300ms }
          - name: request
            usdt: flightbox_app:request
            binary: \(app)
            args: 3
            argument: { when: arg2 > 40000 }
          - name: absent
            target: \(app):fb_app_no_such_function
            heartbeat: 1s
        \(extra)
        """
    }

    func write(_ text: String, _ name: String) throws -> String {
        let path = scratch(name)
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Probe events of the trace by probe id: (pid, latency, ret, args).
    func probes(_ trace: String) throws -> [UInt64: [(pid: UInt64, latency: UInt64, ret: Int64, args: [UInt64])]] {
        var out: [UInt64: [(pid: UInt64, latency: UInt64, ret: Int64, args: [UInt64])]] = [:]
        for e in try eventsJSON(trace, ["--type", "probe"]) {
            let f = e["fields"]
            let ret: Int64 = switch f?["ret"] { case .int(let i): i; case .uint(let u): Int64(u); default: 0 }
            out[f?["probe_id"]?.uintValue ?? 0, default: []].append(
                (e["pid"]?.uintValue ?? 0, f?["latency_ns"]?.uintValue ?? 0, ret, f?["args"]?.arrayValue?.compactMap(\.uintValue) ?? []))
        }
        return out
    }

    func testEveryJudgementOnFlightboxAppLiveAndOnReplay() throws {
        try requireBPF()
        let config = try write(Self.config(), "health.yaml")
        let trace = scratch("health.fbt"), live = scratch("health.jsonl")
        // 3 calls of 20 ms and 2 of 50 ms, 4 failures (-5), 10 heartbeats 50 ms apart, then 1.5 s without one.
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process", "--config", config, "--detect", "--detectors", "health",
                                              "--findings", live, "--", Self.app, "work", "20", "3", "work", "50", "2", "fail", "5", "4",
                                              "heartbeat", "50", "10", "sleep", "1500"])
        XCTAssertEqual(r.status, 0, r.stderr)
        // The check that cannot attach is one line, and the others run.
        XCTAssertTrue(r.stderr.contains("flightbox: warning: health check 5: cannot attach to function \(Self.app):fb_app_no_such_function: \(Self.app) has no function fb_app_no_such_function; the other checks run\n"), r.stderr)

        // Exact calls, latencies within tolerance, return values, USDT arguments.
        let seen = try probes(trace)
        let work = seen[1] ?? []
        XCTAssertEqual(work.map(\.args.first), [20, 20, 20, 50, 50])
        for c in work {
            let ms = c.args.first ?? 0
            XCTAssertGreaterThanOrEqual(c.latency, ms * 1_000_000)
            XCTAssertLessThan(c.latency, ms * 1_000_000 + 100_000_000, "a loaded machine, yet not a wrong pairing")
        }
        XCTAssertEqual(seen[2]?.map(\.ret), [-5, -5, -5, -5])
        XCTAssertEqual(seen[3]?.count, 10)
        XCTAssertEqual(seen[4]?.map { $0.args.first ?? 0 }, [1, 2, 3, 4, 5, 6, 7, 8, 9])
        XCTAssertNil(seen[5])
        let pids = Set(seen.values.flatMap { $0.map(\.pid) })
        XCTAssertEqual(pids.count, 1, "one process: flightbox-app")

        // The trace says what each id means, and which check failed.
        let capture = try inspectJSON(trace)["capture"]
        XCTAssertEqual(capture?["health_checks"]?.arrayValue?.compactMap { $0["name"]?.stringValue }, ["work", "fail", "beat", "request", "absent"])
        XCTAssertEqual(capture?["health_check_failures"]?.arrayValue?.compactMap { $0["probe_id"]?.uintValue }, [5])
        XCTAssertTrue(capture?["probes"]?.arrayValue?.contains(.string("probes")) == true)

        // Live == replay, byte for byte, and replay needs no configuration file.
        let liveText = try String(contentsOfFile: live, encoding: .utf8)
        let replay = try Tool.flightbox("replay", trace, "--format", "json", "--detectors", "health")
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertEqual(replay.stdout, liveText)
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        let byJudgement = findings.map { f in
            "\(f["evidence"]?["check"]?.stringValue ?? "?")/\(f["evidence"]?["judgement"]?.stringValue ?? "?")/\(f["severity"]?.stringValue ?? "?")"
        }
        // request 4 (a 50 ms work call: latency_us > 40000) is the argument's one episode; the work
        // window with the 50 ms calls is slow (max over 30 ms, under 4x); 4 of 4 calls fail (critical);
        // the heartbeat is missed after 300 ms, and critical after 1.2 s (4x); the app then exits with 0.
        XCTAssertEqual(byJudgement.sorted(), ["beat/heartbeat/critical", "beat/heartbeat/warning", "fail/errors/critical",
                                              "request/argument/warning", "work/latency/warning"], replay.stdout)
        let slow = findings.first { $0["evidence"]?["judgement"]?.stringValue == "latency" }
        XCTAssertGreaterThanOrEqual(slow?["evidence"]?["value_ns"]?.uintValue ?? 0, 50_000_000)
        let argument = findings.first { $0["evidence"]?["judgement"]?.stringValue == "argument" }
        XCTAssertGreaterThanOrEqual(argument?["evidence"]?["value"]?.intValue ?? 0, 50_000)
        let missed = findings.first { $0["evidence"]?["judgement"]?.stringValue == "heartbeat" }
        XCTAssertGreaterThan(missed?["evidence"]?["since_last_ns"]?.uintValue ?? 0, 300_000_000)
        XCTAssertEqual(Set(findings.compactMap { $0["comm"]?.stringValue }), ["flightbox-app"])

        // A replay with another configuration judges the same events anew (its checks, its limits).
        let lenient = try write(Self.config().replacingOccurrences(of: "above: 30ms", with: "above: 80ms"), "lenient.yaml")
        let again = try Tool.flightbox("replay", trace, "--format", "json", "--detectors", "health", "--config", lenient)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(again.lines.count, findings.count - 1, again.stdout)
    }

    /// The probes ride the capture's filters: a command's recording holds its
    /// own probe events, not those of the same binary run beside it.
    func testProbesFollowTheRecordingsFilter() throws {
        try requireBPF()
        let config = try write(Self.config(), "filter.yaml")
        let outside = Process()
        outside.executableURL = URL(fileURLWithPath: Self.app)
        outside.arguments = ["heartbeat", "20", "100"]
        try outside.run()
        defer { outside.terminate(); outside.waitUntilExit() }
        let trace = scratch("filter.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process", "--config", config,
                                              "--", Self.app, "work", "1", "3", "heartbeat", "20", "20"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let seen = try probes(trace)
        XCTAssertEqual(seen[1]?.count, 3)
        XCTAssertEqual(seen[3]?.count, 20, "the command's 20 heartbeats, none of the other process's")
        XCTAssertFalse(seen.values.flatMap { $0 }.contains { $0.pid == UInt64(outside.processIdentifier) })
        // Without --detect, --config is for its probes; a file without any still needs --detect.
        let none = try write("detectors: {}\n", "none.yaml")
        let refused = try Tool.flightbox("record", "-o", scratch("refused.fbt"), "--config", none, "--", "/bin/true")
        XCTAssertEqual(refused.stderr, "flightbox: --config needs --detect\n")
    }

    /// A real Debian application: CPython 3.11 is built with USDT probes
    /// (`readelf -n /usr/bin/python3.11`: python:function__entry, gc__start,
    /// gc__done, ...; their semaphores are set by libbpf while attached).
    /// The test runs exactly five full collections of 1,000 reference cycles
    /// each, with the automatic collector off.
    func testPythonsGarbageCollectorUSDTProbes() throws {
        try requireBPF()
        let python = "/usr/bin/python3.11"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: python), "python3.11 not installed (scripts/setup.sh installs it)")
        let config = try write("""
        probes:
          - name: gc-start
            usdt: python:gc__start
            binary: \(python)
            args: 1
            heartbeat: 10s
          - name: gc-collected
            usdt: python:gc__done
            binary: \(python)
            args: 1
            argument: { when: arg1 >= 1000 }
          - name: audit
            usdt: python:audit
            binary: \(python)
            args: 2
            string: 1
            heartbeat: 1m
        """, "python.yaml")
        let script = """
        import gc
        gc.disable()
        class Node:
            pass
        for i in range(5):
            for k in range(1000):
                a = Node(); a.me = a
            del a
            gc.collect()
        import sys
        for i in range(3):
            sys.audit("flightbox.health", i)
        """
        let trace = scratch("python.fbt"), live = scratch("python.jsonl")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process", "--config", config, "--detect", "--detectors", "health",
                                              "--findings", live, "--", python, "-c", script])
        XCTAssertEqual(r.status, 0, r.stderr)
        let seen = try probes(trace)
        // gc.collect() collects generation 2, each time exactly the 1,000 cycles made before it.
        // Start-up collects young generations before gc.disable(), and the interpreter's
        // finalization runs a few full collections of its own after the script (measured: 3).
        let done = (seen[2] ?? []).map { Int64(bitPattern: $0.args.first ?? 0) }
        let starts = (seen[1] ?? []).map { $0.args.first ?? 99 }
        XCTAssertEqual(starts.count, done.count, "every collection starts and ends")
        let explicit = done.indices.filter { done[$0] == 1000 }
        XCTAssertEqual(explicit.count, 5, "\(done)")
        XCTAssertEqual(explicit.map { starts.indices.contains($0) ? starts[$0] : 99 }, [2, 2, 2, 2, 2])
        XCTAssertEqual(Array(explicit), Array((explicit.first ?? 0)..<((explicit.first ?? 0) + 5)), "five in a row")
        // python:audit(event, args): the event name is a string argument, captured with each probe.
        let audits = try eventsJSON(trace, ["--type", "probe"]).filter { $0["fields"]?["probe_id"]?.uintValue == 3 }
        XCTAssertTrue(audits.allSatisfy { $0["fields"]?["str_arg"]?.uintValue == 1 })
        XCTAssertEqual(audits.filter { $0["fields"]?["str"]?.stringValue == "flightbox.health" }.count, 3)
        XCTAssertTrue(audits.contains { $0["fields"]?["str"]?.stringValue == "exec" }, "the interpreter's own audit events too")
        let replay = try Tool.flightbox("replay", trace, "--format", "json", "--detectors", "health")
        XCTAssertEqual(replay.stdout, try String(contentsOfFile: live, encoding: .utf8))
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        XCTAssertEqual(findings.map { $0["evidence"]?["check"]?.stringValue }, ["gc-collected"], replay.stdout)
        XCTAssertGreaterThanOrEqual(findings.first?["evidence"]?["value"]?.intValue ?? 0, 1000)
    }

    /// `binary:0xoffset`: a function by its file offset (a stripped binary's
    /// way), here fb_app_work's, from nm and the executable segment's mapping.
    func testAFunctionByItsFileOffset() throws {
        try requireBPF()
        let nm = try Tool.run("/usr/bin/nm", [Self.app])
        let line = nm.lines.first { $0.hasSuffix(" T fb_app_work") }
        let vaddr = try XCTUnwrap(line.flatMap { UInt64($0.prefix(while: { $0 != " " }), radix: 16) }, nm.stderr)
        // The executable LOAD segment maps file offset o at vaddr v: the function's offset is vaddr - v + o.
        let phdrs = try Tool.run("/usr/bin/readelf", ["-lW", Self.app])
        let load = try XCTUnwrap(phdrs.lines.first { $0.contains("LOAD") && $0.contains("R E") }, phdrs.stdout)
        let fields = load.split(separator: " ")
        let (fileOffset, segmentVaddr) = (UInt64(fields[1].dropFirst(2), radix: 16) ?? 0, UInt64(fields[2].dropFirst(2), radix: 16) ?? 0)
        let offset = vaddr - segmentVaddr + fileOffset
        let config = try write("""
        probes:
          - name: by-offset
            target: \(Self.app):0x\(String(offset, radix: 16))
            args: 1
            latency: { statistic: max, above: 1s }
        """, "offset.yaml")
        let trace = scratch("offset.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process", "--config", config, "--", Self.app, "work", "5", "4"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let calls = try probes(trace)[1] ?? []
        XCTAssertEqual(calls.map(\.args.first), [5, 5, 5, 5])
        for c in calls { XCTAssertGreaterThanOrEqual(c.latency, 5_000_000) }
    }

    /// The flight recorder attaches the checks too, system-wide, and its
    /// segments carry them: a segment's replay judges what the app did.
    func testFlightRecordsTheChecksIntoItsSegments() throws {
        try requireBPF()
        let dir = try scratchDirectory("health-flight")
        let config = try write(Self.config(), "flight.yaml")
        let r = try Recorder(["flight", "--dir", dir, "--probes", "process", "--config", config, "--dump-on", "none", "--status-interval", "200ms"])
        try r.waitForStderr("flightbox: flight recording")
        let app = try Tool.run(Self.app, ["work", "50", "2", "fail", "5", "4", "heartbeat", "50", "5", "sleep", "1000"])
        XCTAssertEqual(app.status, 0)
        usleep(300_000)
        kill(r.pid, SIGTERM)
        XCTAssertEqual(r.wait(), 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("health check 5: cannot attach"), r.stderr)
        let segment = try XCTUnwrap(((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasPrefix("seg-") }.sorted().first)
        let seen = try probes(dir + "/" + segment)
        XCTAssertEqual(seen[1]?.count, 2)
        XCTAssertEqual(seen[2]?.map(\.ret), [-5, -5, -5, -5])
        XCTAssertEqual(seen[3]?.count, 5)
        let replay = try Tool.flightbox("replay", dir + "/" + segment, "--format", "json", "--detectors", "health")
        XCTAssertEqual(replay.status, 0, replay.stderr)
        let judged = Set(try replay.lines.map { try JSONParser.parse($0)["evidence"]?["check"]?.stringValue ?? "?" })
        XCTAssertEqual(judged, ["work", "fail", "beat", "request"], replay.stdout)
    }

    /// Another real Debian application: PostgreSQL 15, started on loopback.
    /// Its build has USDT probes (72 in `readelf -n .../bin/postgres`:
    /// postgresql:query__start, transaction__commit, ...), and it exports its
    /// functions for extensions (`nm -D`: PortalRun runs every query). Three
    /// queries from one connection, one of them a 200 ms pg_sleep.
    func testPostgreSQLQueriesByUSDTAndByFunction() throws {
        try requireBPF()
        let bin = "/usr/lib/postgresql/15/bin"
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: bin + "/postgres"), "postgresql-15 is not installed")
        let dir = try scratchDirectory("postgres")
        XCTAssertEqual(try Tool.run("/bin/chown", ["postgres", dir]).status, 0)
        let initdb = try Tool.run("/usr/sbin/runuser", ["-u", "postgres", "--", bin + "/initdb", "-D", dir + "/data", "-A", "trust", "-U", "postgres"])
        XCTAssertEqual(initdb.status, 0, initdb.stderr)
        let port = String(20_000 + Int(getpid() % 20_000))
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/sbin/runuser")
        server.arguments = ["-u", "postgres", "--", bin + "/postgres", "-D", dir + "/data", "-k", dir, "-h", "127.0.0.1", "-p", port]
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer {
            // The postmaster (runuser's child) shuts down on SIGINT.
            if let pid = try? String(contentsOfFile: dir + "/data/postmaster.pid", encoding: .utf8).split(separator: "\n").first.flatMap({ Int32($0) }) {
                kill(pid, SIGINT)
            }
            server.waitUntilExit()
        }
        var ready = false
        for _ in 0..<100 where !ready {
            ready = (try? Tool.run(bin + "/pg_isready", ["-h", "127.0.0.1", "-p", port]))?.status == 0
            if !ready { usleep(100_000) }
        }
        try XCTSkipUnless(ready, "postgres did not start")
        let postmaster = try XCTUnwrap(try String(contentsOfFile: dir + "/data/postmaster.pid", encoding: .utf8).split(separator: "\n").first.map(String.init))
        let config = try write("""
        probes:
          - name: query-start
            usdt: postgresql:query__start
            binary: \(bin)/postgres
            heartbeat: 1m
          - name: portal-run
            target: \(bin)/postgres:PortalRun
            return: long
            latency: { statistic: max, above: 100ms, window: 1s }
        """, "postgres.yaml")
        let trace = scratch("postgres.fbt"), live = scratch("postgres.jsonl")
        let rec = try Recorder(["record", "-o", trace, "--pid", postmaster, "--probes", "process", "--config", config, "--detect",
                                "--detectors", "health", "--findings", live, "--duration", "4s"])
        try rec.waitForStderr("flightbox: recording")
        let psql = try Tool.run("/usr/sbin/runuser", ["-u", "postgres", "--", bin + "/psql", "-X", "-q", "-h", "127.0.0.1", "-p", port, "-U", "postgres",
                                                      "-c", "SELECT 1", "-c", "SELECT 2", "-c", "SELECT pg_sleep(0.2)"])
        XCTAssertEqual(psql.status, 0, psql.stderr)
        XCTAssertEqual(rec.wait(), 0, rec.stderr)
        let seen = try probes(trace)
        let starts = seen[1] ?? []
        XCTAssertEqual(starts.count, 3, "\(starts)")
        let backend = try XCTUnwrap(starts.first?.pid)
        XCTAssertEqual(Set(starts.map(\.pid)), [backend], "one connection, one backend")
        XCTAssertNotEqual(backend, UInt64(postmaster), "the backend is a child the recording followed")
        let runs = (seen[2] ?? []).filter { $0.pid == backend }
        XCTAssertEqual(runs.count, 3, "\(runs)")
        XCTAssertEqual(runs.filter { $0.latency >= 200_000_000 }.count, 1, "\(runs)")
        let replay = try Tool.flightbox("replay", trace, "--format", "json", "--detectors", "health")
        XCTAssertEqual(replay.stdout, try String(contentsOfFile: live, encoding: .utf8))
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        XCTAssertEqual(findings.map { $0["evidence"]?["check"]?.stringValue }, ["portal-run"], replay.stdout)
        XCTAssertEqual(findings.first?["comm"]?.stringValue, "postgres")
        XCTAssertGreaterThanOrEqual(findings.first?["evidence"]?["value_ns"]?.uintValue ?? 0, 200_000_000)
    }
}
