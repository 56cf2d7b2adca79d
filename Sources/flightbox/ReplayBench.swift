import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat

/// `flightbox bench replay`: replay speed on one core of a recorded syscall
/// storm and a recorded mixed workload, decoding alone and decoding with
/// every detector on (and each detector alone), rounds interleaved, medians.
struct ReplayBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "replay", abstract: "Measure replay speed on one core: decoding alone, and with every detector on.")

    @Option(help: "A trace of a syscall storm (default: record one now).") var storm: String?
    @Option(help: "A trace of a mixed workload (default: record one now).") var mixed: String?
    @Option(help: "Rounds (each runs every mode once).") var rounds: Int = 3
    @Option(help: "CPU to run on.") var cpu: Int = 0
    @Flag(help: "Leave out the rows of each detector alone.") var noEach = false
    @Option(help: "Folder for the traces recorded.") var dir: String = "/tmp"

    func validate() throws {
        try checkRange(rounds, 1...1000, flag: "--rounds")
        try checkRange(cpu, 0...1023, flag: "--cpu")
    }

    func run() throws {
        let exe = CommandLine.arguments[0]
        let (stormPath, mixedPath) = try BenchCorpora.paths(storm: storm, mixed: mixed, dir: dir)
        try pin(cpu, exe: exe, storm: stormPath, mixed: mixedPath)
        let configuration = DetectorConfiguration.defaults
        let all = configuration.detectors.filter(\.enabled).map(\.spec.name)
        var modes: [(String, [String]?)] = [("decode", nil), ("decode + all detectors", all)]
        if !noEach { modes += [("decode + engine, no detector", [])] + all.map { ("decode + \($0)", [$0]) } }
        let corpora = [("storm", stormPath), ("mixed", mixedPath)]
        // seconds[corpus][mode]
        var seconds: [[[Double]]] = corpora.map { _ in modes.map { _ in [] } }
        var events: [Int] = corpora.map { _ in 0 }
        var findings: [Int] = corpora.map { _ in 0 }
        for round in 1...rounds {
            FileHandleStderr.write("flightbox bench replay: round \(round)/\(rounds)\n")
            for (c, (_, path)) in corpora.enumerated() {
                for (m, (_, list)) in modes.enumerated() {
                    let (n, f, t) = try replay(path, detectors: list.map { try configuration.makeDetectors(only: $0) })
                    seconds[c][m].append(t)
                    events[c] = n
                    if m == 1 { findings[c] = f }
                }
            }
        }
        print("replay on cpu \(cpu), median of \(rounds) rounds, modes interleaved; detectors with their defaults")
        for (c, (name, path)) in corpora.enumerated() {
            let decode = BenchModes.median(seconds[c][0])
            print("")
            print("\(name): \(events[c]) events (\(path)), \(findings[c]) findings with all detectors")
            print("mode                                 seconds  M events/s  x decode  detectors' cost / decode")
            for (m, (label, _)) in modes.enumerated() {
                let t = BenchModes.median(seconds[c][m])
                let rate = Double(events[c]) / t / 1e6
                let cost = m == 0 ? "" : String(format3: (t - decode) / decode)
                print("\(label.padding(36)) \(String(format3: t).padding(8)) \(String(format3: rate).padding(11)) \(String(format3: t / decode).padding(9)) \(cost)")
            }
        }
        let stormAll = Double(events[0]) / BenchModes.median(seconds[0][1]) / 1e6
        let stormCost = (BenchModes.median(seconds[0][1]) - BenchModes.median(seconds[0][0])) / BenchModes.median(seconds[0][0])
        print("")
        print("target: >= 3 M events/s with all detectors on the storm: \(String(format3: stormAll)) (\(stormAll >= 3 ? "met" : "not met")); " +
              "detectors cost at most as much again as decoding: \(String(format3: stormCost)) (\(stormCost <= 1 ? "met" : "not met"))")
    }

    /// Replays `path`: decoding alone when `detectors` is nil, else through
    /// the engine as `replay` does. Returns events, findings, seconds.
    func replay(_ path: String, detectors: [Detector]?) throws -> (Int, Int, Double) {
        let t0 = monotonicNow()
        let reader = try openTrace(path)
        var n = 0
        var found = 0
        if let detectors {
            let meta = reader.metadata
            let engine = DetectorEngine(detectors: detectors, snapshot: reader.snapshot, arch: SyscallArch(schema: meta.schema, machine: meta.machine),
                                        clock: TraceClock(meta))
            reader.forEachEvent { e in
                n += 1
                engine.process(e)
            }
            engine.finish()
            found = engine.findings.count
        } else {
            var sum: UInt64 = 0
            reader.forEachEvent { e in
                n += 1
                sum &+= e.timestamp // touch every record
            }
            if sum == 42 { print("") }
        }
        return (n, found, Double(monotonicNow() - t0) / 1e9)
    }

    /// Runs the replays on one CPU: re-executes itself under taskset(1)
    /// (Glibc's module has no sched_setaffinity), with the corpora just recorded.
    func pin(_ cpu: Int, exe: String, storm: String, mixed: String) throws {
        if getenv("FLIGHTBOX_BENCH_PINNED") != nil { return }
        let candidates: [String] = ["/usr/bin/taskset", "/bin/taskset"]
        guard let taskset = candidates.first(where: { access($0, X_OK) == 0 }) else {
            FileHandleStderr.write("flightbox bench replay: no taskset; not pinned to one CPU (replay runs on one thread anyway)\n")
            return
        }
        setenv("FLIGHTBOX_BENCH_PINNED", "1", 1)
        var args = [taskset, "-c", String(cpu), exe, "bench", "replay", "--storm", storm, "--mixed", mixed,
                    "--rounds", String(rounds), "--cpu", String(cpu), "--dir", dir]
        if noEach { args.append("--no-each") }
        var cargs = args.map { strdup($0) } + [nil]
        execv(taskset, &cargs)
        throw fail("cannot run \(taskset): \(String(cString: strerror(errno)))")
    }
}
