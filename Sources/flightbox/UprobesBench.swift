import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture
import FlightboxEvents

/// `flightbox bench uprobes`: what a health check costs an application per
/// call. flightbox-app calls a nearly empty function (`fb_app_spin`, with a
/// USDT probe inside) in a tight loop; the loop is timed bare, under an entry
/// uprobe, under entry + return (the latency check: an event per call), and
/// under the USDT probe, rounds interleaved, medians reported. Every probe
/// event is drained while the loop runs and counted: a mode whose count is
/// not the number of calls says so.
struct UprobesBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "uprobes", abstract: "Measure what a uprobe or USDT health check adds to each call of a probed function.")

    @Option(help: "Calls of the probed function per run.") var calls: Int = 1_000_000
    @Option(help: "Rounds (each runs every mode once).") var rounds: Int = 3

    func validate() throws {
        try checkRange(calls, 1...1_000_000_000, flag: "--calls")
        try checkRange(rounds, 1...1000, flag: "--rounds")
    }

    enum Mode: String, CaseIterable {
        case bare = "bare"
        case entry = "uprobe (entry)"
        case entryReturn = "uprobe + uretprobe"
        case usdt = "USDT probe"

        /// The probe this mode attaches, and whether each call writes an event.
        func probe(app: String) -> (ProbeDefinition, events: Bool)? {
            switch self {
            case .bare: nil
            case .entry: (ProbeDefinition(id: 1, site: .function(binary: app, symbol: "fb_app_spin"), arguments: 1, entryOnly: true), false)
            case .entryReturn: (ProbeDefinition(id: 2, site: .function(binary: app, symbol: "fb_app_spin"), arguments: 1), true)
            case .usdt: (ProbeDefinition(id: 3, site: .usdt(binary: app, provider: "flightbox_app", name: "spin"), arguments: 1), true)
            }
        }
    }

    struct Run {
        var ns: UInt64
        /// Probe events of the run's process; nil where the mode writes none.
        var events: UInt64?
    }

    func run() throws {
        do { try Preflight.check() } catch let e as CaptureError { throw fail(e.description) }
        let exe = CommandLine.arguments[0]
        let dir = exe.contains("/") ? String(exe[..<exe.lastIndex(of: "/")!]) : "."
        let app = dir + "/flightbox-app"
        guard access(app, X_OK) == 0 else { throw fail("\(app) not found: build it with `swift build`") }
        var runs: [Mode: [Run]] = [:]
        for round in 1...rounds {
            FileHandleStderr.write("flightbox bench uprobes: round \(round)/\(rounds)\n")
            for mode in Mode.allCases { runs[mode, default: []].append(try measure(mode, app: app)) }
        }
        func median(_ m: Mode) -> Double { BenchModes.median(runs[m]!.map { Double($0.ns) }) / Double(calls) }
        let bare = median(.bare)
        print("uprobe cost: \(calls) calls of an empty function (fb_app_spin in flightbox-app); median of \(rounds) rounds, modes interleaved")
        print("mode                  ns/call  x bare   +ns/call  events/call  calls/s")
        var mismatched: [String] = []
        for m in Mode.allCases {
            let t = median(m)
            let events = runs[m]!.compactMap(\.events)
            let perCall = events.isEmpty ? "-" : String(format3: Double(events.min()!) / Double(calls))
            if let wrong = events.first(where: { $0 != UInt64(calls) }) { mismatched.append("\(m.rawValue): \(wrong) events for \(calls) calls") }
            let rate = t > 0 ? String(Int(1e9 / t)) : "-"
            print("\(m.rawValue.padding(20)) \(String(format3: t).padding(8)) \(String(format3: t / bare).padding(8)) \(String(format3: t - bare).padding(9)) \(perCall.padding(12)) \(rate)")
        }
        for m in mismatched { print("events lost or extra: \(m)") }
        print("every call counted: \(mismatched.isEmpty ? "yes" : "NO")")
    }

    /// Runs the loop once under `mode`'s probe, draining its events as it goes.
    func measure(_ mode: Mode, app: String) throws -> Run {
        let attached = mode.probe(app: app)
        // Room for a second of events between polls at ~1 M calls/s.
        let probes = try attached.map { try HealthProbes(probes: [$0.0], ringBytes: 1 << 27) }
        if let f = probes?.failures.first { throw fail(f.description) }
        var out: [Int32] = [0, 0]
        guard pipe(&out) == 0 else { throw fail("pipe: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, out[1], 1)
        posix_spawn_file_actions_addclose(&actions, out[0])
        let argv = [app, "spin", String(calls)]
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, app, &actions, nil, &cargs, environ)
        close(out[1])
        guard rc == 0 else {
            close(out[0])
            throw fail("cannot run \(app): \(String(cString: strerror(rc)))")
        }
        var events: UInt64 = 0
        let me = UInt32(pid)
        let count: (UnsafeRawBufferPointer) -> Void = { raw in
            if let e = Event.validated(raw, sequence: 0), e.pid == me, case .probe = e.payload { events += 1 }
        }
        var status: Int32 = 0
        while true {
            if let probes { try probes.poll(timeoutMs: 20, count) } else { usleep(20_000) }
            let w = waitpid(pid, &status, WNOHANG)
            if w == pid { break }
            if w < 0 && errno != EINTR { throw fail("waitpid: \(String(cString: strerror(errno)))") }
        }
        if let probes { while try probes.poll(timeoutMs: 100, count) > 0 {} }
        var text = ""
        var buf = [UInt8](repeating: 0, count: 256)
        while true {
            let n = read(out[0], &buf, buf.count)
            if n <= 0 { break }
            text += String(decoding: buf[0..<n], as: UTF8.self)
        }
        close(out[0])
        guard (status & 0x7f) == 0, (status >> 8) & 0xff == 0, let ns = UInt64(text.split(separator: " ").first ?? "") else {
            throw fail("flightbox-app spin \(calls) failed (status \(status)): \(text)")
        }
        return Run(ns: ns, events: attached?.events == true ? events : nil)
    }
}
