import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture
import FlightboxEvents
import FlightboxFormat

/// `flightbox bench`: the syscall storm, side by side in one run, bare, under
/// the in-kernel counting floor, under `flightbox record`, and under
/// `perf record` of the same tracepoints. Rounds interleave the modes so
/// machine noise hits them alike; medians are reported.
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmarks, measured side by side in one run.",
        subcommands: [StormBench.self, MixedBench.self, FormatBench.self],
        defaultSubcommand: StormBench.self
    )
}

struct StormBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "storm", abstract: "Measure recording overhead against bare, an in-kernel count (the floor) and perf record.")

    @Option(help: "read(2) calls per storm.") var calls: Int = 2_000_000
    @Option(help: "Bytes per read.") var size: Int = 64
    @Option(help: "Rounds (each runs every mode once).") var rounds: Int = 3
    @Option(help: "Codec for flightbox record.") var codec: String = "zstd"
    @Flag(help: "Leave perf out.") var noPerf = false
    @Option(help: "Folder for the traces written.") var dir: String = "/tmp"

    struct Sample {
        var seconds: Double
        var events: UInt64 = 0
        var lost: UInt64 = 0
        var bytes: UInt64 = 0
        var cpuSeconds = 0.0
        var maxRSSKiB = 0
    }

    func run() throws {
        do { try Preflight.check() } catch let e as CaptureError { throw fail(e.description) }
        let exe = CommandLine.arguments[0]
        let exeDir = exe.contains("/") ? String(exe[..<exe.lastIndex(of: "/")!]) : "."
        let load = exeDir + "/flightbox-load"
        let me = exeDir + "/flightbox"
        guard access(load, X_OK) == 0 else { throw fail("\(load) not found: build it with `swift build -c release`") }
        let perf = noPerf ? nil : findPerf()
        if !noPerf, perf == nil { FileHandleStderr.write("flightbox: perf not usable here (install linux-perf, mount tracefs); leaving it out\n") }

        var modes = ["bare", "floor (in-kernel count)", "flightbox record"]
        if perf != nil { modes.append("perf record") }
        var samples: [String: [Sample]] = [:]
        let storm = [load, "read", String(calls), String(size)]
        for round in 1...rounds {
            FileHandleStderr.write("flightbox bench: round \(round)/\(rounds)\n")
            samples["bare", default: []].append(Sample(seconds: try timedStorm(storm)))

            samples["floor (in-kernel count)", default: []].append(try underCountingProbe(storm))

            samples["flightbox record", default: []].append(try underRecorder(me: me, storm: storm))
            if let perf { samples["perf record", default: []].append(try underPerf(perf, storm: storm)) }
        }

        func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }
        let bare = median(samples["bare"]!.map(\.seconds))
        let floor = median(samples["floor (in-kernel count)"]!.map(\.seconds))
        print("syscall storm: \(calls) read(2) calls of \(size) bytes; median of \(rounds) rounds, modes interleaved")
        print("mode                      seconds  x bare  x floor   events      lost   bytes/event")
        for m in modes {
            let s = samples[m]!
            let t = median(s.map(\.seconds))
            let last = s.last!
            let bpe = last.events > 0 && last.bytes > 0 ? String(format3: Double(last.bytes) / Double(last.events)) : "-"
            print("\(m.padding(24)) \(String(format3: t).padding(8)) \(String(format3: t / bare).padding(7)) \(String(format3: t / floor).padding(8)) \(String(last.events).padding(11)) \(String(s.map(\.lost).max() ?? 0).padding(10)) \(bpe)")
        }
        let rec = samples["flightbox record"]!
        let ratio = median(rec.map(\.seconds)) / floor
        let bpe = Double(rec.last!.bytes) / Double(max(rec.last!.events, 1))
        let rss = rec.map(\.maxRSSKiB).max() ?? 0
        print("flightbox record itself: \(String(format3: median(rec.map(\.cpuSeconds)))) s CPU (median), \(rss / 1024) MiB peak resident (largest)")
        print("targets: lost = 0: \(rec.allSatisfy { $0.lost == 0 } ? "met" : "MISSED"); <= 1.2x floor: \(ratio <= 1.2 ? "met" : "MISSED") (\(String(format3: ratio))x); <= 100 MiB resident: \(rss <= 100 * 1024 ? "met" : "MISSED"); <= 10 bytes/event: \(bpe <= 10 ? "met" : "MISSED") (\(String(format3: bpe)))")
    }

    /// Runs the storm and returns its loop time as it measured it.
    func timedStorm(_ argv: [String], extraWait: (() -> Void)? = nil) throws -> Double {
        let r = try spawnAndCapture(argv)
        guard r.status == 0, let ns = UInt64(r.stdout.split(separator: "\n").last ?? "") else {
            throw fail("the storm (\(argv.joined(separator: " "))) failed: \(r.stdout)")
        }
        return Double(ns) / 1e9
    }

    /// The probe detaches when this returns: it must not stay attached
    /// while the other modes run.
    func underCountingProbe(_ storm: [String]) throws -> Sample {
        let probe: CountingProbe
        do { probe = try CountingProbe() } catch let e as CaptureError { throw fail(e.description) }
        let before = probe.counts()
        let t = try timedStorm(storm)
        let after = probe.counts()
        return withExtendedLifetime(probe) { Sample(seconds: t, events: after.exit - before.exit) }
    }

    func underRecorder(me: String, storm: [String]) throws -> Sample {
        let trace = dir + "/flightbox-bench.fbt"
        let rec = try Spawned([me, "record", "-o", trace, "--codec", codec])
        try rec.waitForStderr("flightbox: recording")
        let t = try timedStorm(storm)
        kill(rec.pid, SIGINT)
        let status = rec.wait()
        guard status == 0 else { throw fail("flightbox record failed (status \(status)): \(rec.stderrText)") }
        let reader = try openTrace(trace)
        var lost: UInt64 = 0
        var events: UInt64 = 0
        reader.forEachEvent { e in
            events += 1
            if e.type == .loss { lost += e.lostCount }
        }
        unlink(trace)
        return Sample(seconds: t, events: events, lost: lost, bytes: UInt64(reader.fileSize), cpuSeconds: rec.cpuSeconds, maxRSSKiB: rec.maxRSSKiB)
    }

    func underPerf(_ perf: String, storm: [String]) throws -> Sample {
        let data = dir + "/flightbox-bench.perf.data"
        let p = try Spawned([perf, "record", "-a", "-q", "-e", "raw_syscalls:sys_enter", "-e", "raw_syscalls:sys_exit", "-o", data])
        usleep(1_500_000) // perf prints nothing when ready; give it time to open its buffers
        let t = try timedStorm(storm)
        kill(p.pid, SIGINT)
        _ = p.wait()
        var st = stat()
        let bytes = stat(data, &st) == 0 ? UInt64(st.st_size) : 0
        // `perf report --stats` tells samples and lost events.
        let stats = try spawnAndCapture([perf, "report", "-i", data, "--stats"])
        unlink(data)
        unlink(data + ".old")
        var events: UInt64 = 0, lost: UInt64 = 0
        for line in stats.stdout.split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let n = parts.last.flatMap({ UInt64($0) }) else { continue }
            if line.contains("SAMPLE events:") { events += n }
            if line.contains("LOST_SAMPLES events:") || line.contains("LOST events:") { lost += n }
        }
        return Sample(seconds: t, events: events, lost: lost, bytes: bytes)
    }

    func findPerf() -> String? {
        for p in ["/usr/bin/perf", "/usr/local/bin/perf"] where access(p, X_OK) == 0 {
            if let r = try? spawnAndCapture([p, "list", "tracepoint"]), r.stdout.contains("raw_syscalls:sys_enter") { return p }
        }
        return nil
    }
}

/// A child process with its stdout and stderr in pipes.
final class Spawned {
    let pid: pid_t
    private let outFd: Int32
    private let errFd: Int32
    private(set) var stdoutText = ""
    private(set) var stderrText = ""
    /// After `wait`: the child's user + system CPU time, and its peak resident set.
    private(set) var cpuSeconds = 0.0
    private(set) var maxRSSKiB = 0

    init(_ argv: [String]) throws {
        var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        guard pipe(&outPipe) == 0, pipe(&errPipe) == 0 else { throw fail("pipe: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        posix_spawn_file_actions_addclose(&actions, outPipe[0])
        posix_spawn_file_actions_addclose(&actions, errPipe[0])
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, argv[0], &actions, nil, &cargs, environ)
        close(outPipe[1])
        close(errPipe[1])
        guard rc == 0 else { throw fail("cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
        self.pid = pid
        outFd = outPipe[0]
        errFd = errPipe[0]
    }

    private func readSome(_ fd: Int32) -> String? {
        var buf = [UInt8](repeating: 0, count: 65536)
        let n = read(fd, &buf, buf.count)
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : nil
    }

    func waitForStderr(_ marker: String) throws {
        while !stderrText.contains(marker) {
            guard let s = readSome(errFd) else { throw fail("child exited before saying '\(marker)': \(stderrText)") }
            stderrText += s
        }
    }

    /// Reads both pipes to the end and reaps the child; returns its exit code.
    func wait() -> Int32 {
        var fds = [pollfd(fd: outFd, events: Int16(POLLIN), revents: 0), pollfd(fd: errFd, events: Int16(POLLIN), revents: 0)]
        while fds.contains(where: { $0.fd >= 0 }) {
            guard poll(&fds, 2, -1) >= 0 else { if errno == EINTR { continue }; break }
            for i in 0..<2 where fds[i].fd >= 0 && fds[i].revents != 0 {
                if let s = readSome(fds[i].fd) {
                    if i == 0 { stdoutText += s } else { stderrText += s }
                } else {
                    fds[i].fd = -1
                }
            }
        }
        var st: Int32 = 0
        var ru = rusage()
        wait4(pid, &st, 0, &ru)
        cpuSeconds = Double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + Double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6
        maxRSSKiB = Int(ru.ru_maxrss)
        close(outFd)
        close(errFd)
        return (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f)
    }
}

func spawnAndCapture(_ argv: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let s = try Spawned(argv)
    let st = s.wait()
    return (st, s.stdoutText, s.stderrText)
}
