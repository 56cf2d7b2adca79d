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
        subcommands: [StormBench.self, MixedBench.self, FormatBench.self, ReplayBench.self, GaugesBench.self, RulesBench.self, UprobesBench.self, NetBench.self],
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
    @Flag(help: "Also record with --cgroup of an empty cgroup, the storm outside it: what an event filtered out in the kernel costs.") var filtered = false
    @Option(help: "Folder for the traces written.") var dir: String = "/tmp"

    func validate() throws {
        try checkRange(calls, 1...1_000_000_000, flag: "--calls")
        try checkRange(size, 1...(1 << 20), flag: "--size", unit: " bytes")
        try checkRange(rounds, 1...1000, flag: "--rounds")
        try checkBenchCodec(codec)
    }

    func run() throws {
        let (me, load, perf) = try BenchModes.tools(noPerf: noPerf)

        var modes = [BenchModes.bare, BenchModes.floor, BenchModes.clockFloor, BenchModes.recorder]
        if perf != nil { modes.append(BenchModes.perf) }
        // An empty cgroup of our own, in the first hierarchy --cgroup searches.
        var emptyCgroup: String?
        if filtered {
            guard let root = CgroupTarget.searchedHierarchies().first else { throw fail("--filtered: no cgroup hierarchy is mounted") }
            let path = root + "/flightbox-bench-\(getpid())"
            guard mkdir(path, 0o755) == 0 || errno == EEXIST else { throw fail("--filtered: cannot create \(path): \(String(cString: strerror(errno)))") }
            emptyCgroup = path
            modes.append(BenchModes.filteredOut)
        }
        defer { if let emptyCgroup { rmdir(emptyCgroup) } }
        var samples: [String: [BenchSample]] = [:]
        let storm = { try timedStorm([load, "read", String(calls), String(size)]) }
        let trace = dir + "/flightbox-bench.fbt"
        for round in 1...rounds {
            FileHandleStderr.write("flightbox bench: round \(round)/\(rounds)\n")
            samples[BenchModes.bare, default: []].append(try storm())
            samples[BenchModes.floor, default: []].append(try BenchModes.underFloor(allHooks: false, storm))
            samples[BenchModes.clockFloor, default: []].append(try BenchModes.underFloor(allHooks: false, clockReads: true, storm))
            samples[BenchModes.recorder, default: []].append(try BenchModes.underRecorder(me: me, trace: trace, codec: codec, storm))
            if let emptyCgroup {
                samples[BenchModes.filteredOut, default: []].append(try BenchModes.underRecorder(
                    me: me, trace: dir + "/flightbox-bench-filtered.fbt", codec: codec, extra: ["--cgroup", emptyCgroup], storm))
                unlink(dir + "/flightbox-bench-filtered.fbt")
            }
            if let perf {
                samples[BenchModes.perf, default: []].append(try BenchModes.underPerf(
                    perf, tracepoints: ["raw_syscalls:sys_enter", "raw_syscalls:sys_exit"], data: dir + "/flightbox-bench.perf.data", storm))
            }
        }
        BenchModes.report("syscall storm: \(calls) read(2) calls of \(size) bytes; median of \(rounds) rounds, modes interleaved",
                          modes: modes, samples: samples, requests: false)
        if let f = samples[BenchModes.filteredOut] {
            let t = BenchModes.median(f.map(\.seconds))
            let bare = BenchModes.median(samples[BenchModes.bare]!.map(\.seconds))
            let rec = BenchModes.median(samples[BenchModes.recorder]!.map(\.seconds))
            print("filtered out by --cgroup in the kernel: \(String(format3: t / bare))x bare, \(String(format3: t / rec))x the unfiltered recorder (\(f.last!.events) events kept)")
        }
        try FamilyBytes.report(trace: trace, codec: codec, dir: dir)
        unlink(trace)
    }

    /// Runs the storm and returns its loop time as it measured it.
    func timedStorm(_ argv: [String]) throws -> BenchSample {
        let r = try spawnAndCapture(argv)
        guard r.status == 0, let ns = UInt64(r.stdout.split(separator: "\n").last ?? "") else {
            throw fail("the storm (\(argv.joined(separator: " "))) failed: \(r.stdout)")
        }
        return BenchSample(seconds: Double(ns) / 1e9)
    }
}

func checkBenchCodec(_ codec: String) throws {
    if Codec(name: codec) == nil || codec == "none" { throw ValidationError("--codec must be zstd or lz4") }
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
