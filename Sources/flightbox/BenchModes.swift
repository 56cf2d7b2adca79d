#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture
import FlightboxEvents
import FlightboxFormat

/// One run of a benchmark's workload under one mode.
struct BenchSample {
    var seconds: Double
    /// HTTP requests served per second, for workloads that serve them.
    var requests: Double = 0
    var events: UInt64 = 0
    var lost: UInt64 = 0
    var bytes: UInt64 = 0
    /// The tracer's own CPU time and peak resident set.
    var cpuSeconds = 0.0
    var maxRSSKiB = 0
}

/// The modes every overhead benchmark runs its workload under, side by side:
/// bare, the counting floor, `flightbox record`, `perf record`.
enum BenchModes {
    static let bare = "bare"
    static let floor = "floor (in-kernel count)"
    static let clockFloor = "floor + 2 clock reads"
    static let recorder = "flightbox record"
    static let filteredOut = "record --cgroup (not it)"
    static let perf = "perf record"

    /// Under the floor; `allHooks` counts every tracepoint's hits as events,
    /// not only syscall exits. The probe is gone when this returns.
    static func underFloor(allHooks: Bool, clockReads: Bool = false, _ workload: () throws -> BenchSample) throws -> BenchSample {
        let probe: CountingProbe
        do { probe = try CountingProbe(clockReads: clockReads) } catch let e as CaptureError { throw fail(e.description) }
        let before = probe.counts()
        var s = try workload()
        let after = probe.counts()
        s.events = (after.exit - before.exit) + (allHooks ? after.other - before.other : 0)
        return withExtendedLifetime(probe) { s }
    }

    /// Under `flightbox record` of the whole machine with the default
    /// families; the trace it wrote stays at `trace`.
    static func underRecorder(me: String, trace: String, codec: String, extra: [String] = [], _ workload: () throws -> BenchSample) throws -> BenchSample {
        let rec = try Spawned([me, "record", "-o", trace, "--codec", codec] + extra)
        try rec.waitForStderr("flightbox: recording")
        var s = try workload()
        kill(rec.pid, SIGINT)
        let status = rec.wait()
        guard status == 0 else { throw fail("flightbox record failed (status \(status)): \(rec.stderrText)") }
        let reader = try openTrace(trace)
        reader.forEachEvent { e in
            s.events += 1
            if let l = e.as(LossRecord.self) { s.lost += l.lost }
        }
        s.bytes = UInt64(reader.fileSize)
        s.cpuSeconds = rec.cpuSeconds
        s.maxRSSKiB = rec.maxRSSKiB
        return s
    }

    /// Under `perf record -a` of `tracepoints`; events and losses as
    /// `perf report --stats` tells them.
    static func underPerf(_ perf: String, tracepoints: [String], data: String, _ workload: () throws -> BenchSample) throws -> BenchSample {
        let p = try Spawned([perf, "record", "-a", "-q", "-o", data] + tracepoints.flatMap { ["-e", $0] })
        usleep(1_500_000) // perf prints nothing when ready; give it time to open its buffers
        var s = try workload()
        kill(p.pid, SIGINT)
        _ = p.wait()
        s.bytes = FamilyBytes.fileSize(data)
        s.cpuSeconds = p.cpuSeconds
        s.maxRSSKiB = p.maxRSSKiB
        let stats = try spawnAndCapture([perf, "report", "-i", data, "--stats"])
        unlink(data)
        unlink(data + ".old")
        for line in stats.stdout.split(separator: "\n") {
            guard let n = line.split(separator: " ").last.flatMap({ UInt64($0) }) else { continue }
            if line.contains("SAMPLE events:") { s.events += n }
            if line.contains("LOST_SAMPLES events:") || line.contains("LOST events:") { s.lost += n }
        }
        return s
    }

    /// The tools a benchmark runs: this `flightbox`, `flightbox-load` beside
    /// it, and perf unless left out or unusable (said on stderr). Checks
    /// that BPF can run first.
    static func tools(noPerf: Bool) throws -> (me: String, load: String, perf: String?) {
        do { try Preflight.check() } catch let e as CaptureError { throw fail(e.description) }
        let exe = CommandLine.arguments[0]
        let exeDir = exe.contains("/") ? String(exe[..<exe.lastIndex(of: "/")!]) : "."
        let load = exeDir + "/flightbox-load"
        guard access(load, X_OK) == 0 else { throw fail("\(load) not found: build it with `swift build -c release`") }
        let perf = noPerf ? nil : findPerf()
        if !noPerf, perf == nil { FileHandleStderr.write("flightbox: perf not usable here (install linux-perf, mount tracefs); leaving it out\n") }
        return (exeDir + "/flightbox", load, perf)
    }

    static func findPerf(_ tracepoint: String = "raw_syscalls:sys_enter") -> String? {
        for p in ["/usr/bin/perf", "/usr/local/bin/perf"] where access(p, X_OK) == 0 {
            if let r = try? spawnAndCapture([p, "list", "tracepoint"]), r.stdout.contains(tracepoint) { return p }
        }
        return nil
    }

    static func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }

    /// The side-by-side table (medians; events, bytes and the tracer's own
    /// cost from the last round), then the targets the recorder is held to.
    static func report(_ title: String, modes: [String], samples: [String: [BenchSample]], requests: Bool) {
        let bare = median(samples[Self.bare]!.map(\.seconds))
        let floor = median(samples[Self.floor]!.map(\.seconds))
        print(title)
        print("mode                      seconds  x bare  x floor  \(requests ? "HTTP req/s  " : "")events      lost      bytes/event  tracer CPU s  tracer max RSS MiB")
        for m in modes {
            let s = samples[m]!
            let t = median(s.map(\.seconds))
            let last = s.last!
            let bpe = last.events > 0 && last.bytes > 0 ? String(format3: Double(last.bytes) / Double(last.events)) : "-"
            let cpu = last.cpuSeconds > 0 ? String(format3: last.cpuSeconds) : "-"
            let rss = last.maxRSSKiB > 0 ? String(last.maxRSSKiB / 1024) : "-"
            let req = requests ? String(Int(median(s.map(\.requests)))).padding(11) + " " : ""
            print("\(m.padding(24)) \(String(format3: t).padding(8)) \(String(format3: t / bare).padding(7)) \(String(format3: t / floor).padding(8)) \(req)\(String(last.events).padding(11)) \(String(s.map(\.lost).max() ?? 0).padding(9)) \(bpe.padding(12)) \(cpu.padding(13)) \(rss)")
        }
        let rec = samples[recorder]!
        let ratio = median(rec.map(\.seconds)) / floor
        let rss = rec.map(\.maxRSSKiB).max() ?? 0
        // The overhead target is stated against the floor with the timestamps
        // a syscall's duration needs (ARCHITECTURE "Overhead"): at most 1.1x.
        // Where that mode was not measured (the mixed workload), the plain floor stands in.
        var target = "<= 1.1x floor: \(ratio <= 1.1 ? "met" : "MISSED") (\(String(format3: ratio))x)"
        if let clocked = samples[clockFloor] {
            let c = median(clocked.map(\.seconds))
            let timed = median(rec.map(\.seconds)) / c
            print("flightbox record is \(String(format3: timed))x the floor with the two clock reads a syscall's duration needs (those alone: \(String(format3: c / floor))x the floor)")
            target = "<= 1.1x the floor with timestamps: \(timed <= 1.1 ? "met" : "MISSED") (\(String(format3: timed))x; \(String(format3: ratio))x the plain floor)"
        }
        print("targets: lost = 0: \(rec.allSatisfy { $0.lost == 0 } ? "met" : "MISSED"); \(target); <= 100 MiB resident: \(rss <= 100 * 1024 ? "met" : "MISSED") (\(rss / 1024) MiB)")
    }
}
