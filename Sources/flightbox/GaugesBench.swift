import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture

/// `flightbox bench gauges`: the CPU the gauge sampler takes per interval on
/// a machine with thousands of processes. It starts `--processes` children
/// that sleep, then times `GaugeSampler.sample` (CPU time of this thread, so
/// other load on the machine does not count) as `record` runs it system-wide
/// and for a followed process tree, and states the cost at the default
/// interval as a share of one core.
struct GaugesBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gauges", abstract: "Measure the gauge sampler's CPU per interval with many processes alive.")

    @Option(help: "Sleeping processes to start first.") var processes: Int = 3000
    @Option(help: "Samples timed per mode.") var samples: Int = 20
    @Option(help: "Sampling interval the share of a core is stated for.") var interval: String = "1s"

    func validate() throws {
        try checkRange(processes, 0...100_000, flag: "--processes")
        try checkRange(samples, 1...10_000, flag: "--samples")
        guard let ns = parseDuration(interval), ns > 0 else { throw ValidationError("--interval: '\(interval)' is not a duration (e.g. 1s)") }
    }

    func run() throws {
        var children: [pid_t] = []
        defer {
            for c in children { kill(c, SIGKILL) }
            for c in children { var st: Int32 = 0; waitpid(c, &st, 0) }
        }
        for _ in 0..<processes {
            let c = fork()
            if c < 0 { throw fail("fork after \(children.count) children: \(String(cString: strerror(errno)))") }
            if c == 0 { while true { pause() } }
            children.append(c)
        }
        let alive = countProcesses()
        let intervalNs = parseDuration(interval)!
        print("gauge sampler: \(alive) processes in /proc (\(children.count) started, sleeping); \(samples) samples per mode; CPU time of the sampling thread")
        print("Every \(GaugeSampler.rescanEvery)th sample scans all of /proc (which processes to sample); the others read those chosen.")
        print("mode                                    records/sample  CPU ms/sample (median)  max (a scan)  mean    share of one core at \(interval) (mean)")
        let modes: [(String, GaugeSampler.Processes)] = [
            ("system-wide (fds >= 32, rss >= 64MiB)", .holdingAtLeast(32)),
            ("a followed process among them", .tree([UInt32(children.first ?? getpid())])),
        ]
        for (name, processes) in modes {
            let sampler = GaugeSampler(intervalNs: intervalNs, processes: processes)
            var cpu: [Double] = []
            var records = 0
            for i in 0..<samples {
                let t0 = threadCPUNs()
                records = sampler.sample(at: UInt64(i + 1) * intervalNs).count
                cpu.append(Double(threadCPUNs() - t0) / 1e6)
            }
            let mean = cpu.reduce(0, +) / Double(cpu.count)
            cpu.sort()
            let med = cpu[cpu.count / 2]
            let share = mean * 1e6 / Double(intervalNs)
            func col(_ s: String, _ w: Int) -> String { s.padding(toLength: w, withPad: " ", startingAt: 0) }
            print(col(name, 40) + col(String(records), 16) + col(String(format3: med), 24) + col(String(format3: cpu.last!), 14)
                  + col(String(format3: mean), 8) + String(format3: share * 100) + "%")
        }
    }

    func threadCPUNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    func countProcesses() -> Int {
        guard let dir = opendir("/proc") else { return 0 }
        defer { closedir(dir) }
        var n = 0
        while let ent = readdir(dir) {
            let first = withUnsafeBytes(of: ent.pointee.d_name) { $0[0] }
            if first >= UInt8(ascii: "0"), first <= UInt8(ascii: "9") { n += 1 }
        }
        return n
    }
}
