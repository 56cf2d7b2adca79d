import XCTest
#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture
import FlightboxEvents

/// The health checks' uprobes, uretprobes and USDT probes, attached for real
/// to flightbox-app (Sources/flightbox-app), whose calls the test knows exactly.
final class HealthProbeTests: XCTestCase {
    /// flightbox-app beside the test bundle (or FLIGHTBOX_BIN_DIR).
    static let app: String = {
        if let d = ProcessInfo.processInfo.environment["FLIGHTBOX_BIN_DIR"] { return d + "/flightbox-app" }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0])
        for _ in 0..<5 {
            dir.deleteLastPathComponent()
            let c = dir.appendingPathComponent("flightbox-app").path
            if FileManager.default.isExecutableFile(atPath: c) { return c }
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/flightbox-app").path
    }()

    struct Seen {
        var ts: UInt64, flags: UInt16, latency: UInt64, ret: Int64, args: [UInt64], nargs: UInt32
    }

    /// Runs flightbox-app with `arguments` under `probes` and returns its probe
    /// events by probe id, in stream order, with the checks that failed to attach.
    func run(_ arguments: [String], probes: [ProbeDefinition]) throws -> ([UInt32: [Seen]], [ProbeAttachError]) {
        try requireBPF()
        XCTAssertTrue(FileManager.default.isExecutableFile(atPath: Self.app), "flightbox-app not built at \(Self.app)")
        let health = try HealthProbes(probes: probes)
        let child = Process()
        child.executableURL = URL(fileURLWithPath: Self.app)
        child.arguments = arguments
        try child.run()
        let pid = UInt32(child.processIdentifier)
        var seen: [UInt32: [Seen]] = [:]
        func take(_ raw: UnsafeRawBufferPointer) {
            guard let e = Event.validated(raw, sequence: 0), e.pid == pid, case .probe(let r) = e.payload else { return }
            seen[r.probeId, default: []].append(Seen(ts: e.timestamp, flags: e.flags, latency: r.latencyNs, ret: r.ret, args: r.argsList, nargs: r.nargs))
        }
        while child.isRunning { try health.poll(timeoutMs: 50, take) }
        child.waitUntilExit()
        XCTAssertEqual(child.terminationStatus, 0)
        // Drain what the last calls wrote after the exit was noticed.
        while try health.poll(timeoutMs: 100, take) > 0 {}
        return (seen, health.failures)
    }

    func testFunctionLatencyReturnValuesAndUSDTArgumentsAreExact() throws {
        let app = Self.app
        let (seen, failures) = try run(
            ["work", "20", "3", "fail", "5", "4", "heartbeat", "30", "5"],
            probes: [
                ProbeDefinition(id: 1, site: .function(binary: app, symbol: "fb_app_work"), arguments: 1),
                ProbeDefinition(id: 2, site: .function(binary: app, symbol: "fb_app_fail"), arguments: 1),
                ProbeDefinition(id: 3, site: .function(binary: app, symbol: "fb_app_heartbeat"), arguments: 1),
                ProbeDefinition(id: 4, site: .usdt(binary: app, provider: "flightbox_app", name: "request"), arguments: 3),
                ProbeDefinition(id: 5, site: .usdt(binary: app, provider: "flightbox_app", name: "heartbeat"), arguments: 4),
            ])
        XCTAssertEqual(failures.map(\.description), [])
        let ms: UInt64 = 1_000_000

        // fb_app_work(20) three times: sleeps 20 ms, returns 0.
        let work = seen[1] ?? []
        XCTAssertEqual(work.count, 3)
        for c in work {
            XCTAssertEqual(c.flags, probeReturnFlag)
            XCTAssertEqual(c.ret, 0)
            XCTAssertEqual(c.nargs, 1)
            XCTAssertEqual(c.args, [20, 0, 0, 0])
            // nanosleep never returns early; the upper bound leaves room for a
            // loaded machine (other builds on two cores) yet catches a wrong pairing.
            XCTAssertGreaterThanOrEqual(c.latency, 20 * ms)
            XCTAssertLessThan(c.latency, 120 * ms)
        }

        // fb_app_fail(5) four times: returns -5 at once (an int, sign-extended).
        let fail = seen[2] ?? []
        XCTAssertEqual(fail.count, 4)
        for c in fail {
            XCTAssertEqual(c.ret, -5)
            XCTAssertEqual(c.args[0], 5)
            XCTAssertLessThan(c.latency, 10 * ms)
        }

        // Five heartbeats, 30 ms apart, numbered 1 to 5 (argument and return value).
        let beats = seen[3] ?? []
        XCTAssertEqual(beats.map(\.args[0]), [1, 2, 3, 4, 5])
        XCTAssertEqual(beats.map(\.ret), [1, 2, 3, 4, 5])
        for (a, b) in zip(beats, beats.dropFirst()) {
            let gap = Int64(bitPattern: b.ts &- a.ts)
            XCTAssertGreaterThanOrEqual(gap, 30 * Int64(ms))
            XCTAssertLessThan(gap, 150 * Int64(ms))
        }

        // USDT request(id, latency_us, status): ids 1 to 7 in order, the work
        // requests' own measured latency, status 0 then -5.
        let requests = seen[4] ?? []
        XCTAssertEqual(requests.map(\.args[0]), [1, 2, 3, 4, 5, 6, 7])
        XCTAssertEqual(requests.map { Int64(bitPattern: $0.args[2]) }, [0, 0, 0, -5, -5, -5, -5])
        for r in requests {
            XCTAssertEqual(r.flags, probeUSDTFlag)
            XCTAssertEqual(r.nargs, 3)
            XCTAssertEqual(r.latency, 0)
        }
        for r in requests.prefix(3) { XCTAssertGreaterThanOrEqual(r.args[1], 20_000) }
        // The USDT probe fires after fb_app_work returned: each request's probe
        // follows its function's return event in time.
        for (w, r) in zip(work, requests) { XCTAssertGreaterThan(r.ts, w.ts + w.latency) }

        // USDT heartbeat(seq) has one argument: nargs is capped at the probe's own count.
        let usdtBeats = seen[5] ?? []
        XCTAssertEqual(usdtBeats.map(\.args[0]), [1, 2, 3, 4, 5])
        XCTAssertEqual(Set(usdtBeats.map(\.nargs)), [1])
    }

    func testAProbeThatCannotAttachIsOneLineAndTheOthersStillRun() throws {
        let app = Self.app
        let (seen, failures) = try run(
            ["work", "1", "2"],
            probes: [
                ProbeDefinition(id: 1, site: .function(binary: app, symbol: "fb_app_no_such_function")),
                ProbeDefinition(id: 2, site: .usdt(binary: app, provider: "flightbox_app", name: "no_such_probe")),
                ProbeDefinition(id: 3, site: .function(binary: "/nonexistent/binary", symbol: "main")),
                ProbeDefinition(id: 4, site: .function(binary: app, symbol: "fb_app_work"), arguments: 1),
            ])
        XCTAssertEqual(failures.map(\.probe.id), [1, 2, 3])
        guard failures.count == 3 else { return }
        for f in failures {
            let line = f.description
            XCTAssertFalse(line.contains("\n"), line)
            XCTAssertTrue(line.contains("health check \(f.probe.id)"), line)
            XCTAssertTrue(line.contains("\(f.probe.site)"), line)
        }
        XCTAssertTrue(failures[0].description.hasSuffix("has no function fb_app_no_such_function"), failures[0].description)
        XCTAssertTrue(failures[1].description.hasSuffix("has no USDT probe flightbox_app:no_such_probe"), failures[1].description)
        XCTAssertTrue(failures[2].description.hasSuffix("No such file or directory"), failures[2].description)
        XCTAssertEqual(seen[4]?.count, 2)
        XCTAssertNil(seen[1])
        XCTAssertNil(seen[2])
    }
}
