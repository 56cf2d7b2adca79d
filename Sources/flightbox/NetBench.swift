#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser

/// `bench net`: what the tcp family's per-connection byte accounting costs
/// on a send storm over loopback, where every send and every read passes
/// through it.
struct NetBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "net", abstract: "Measure the cost of per-connection byte accounting on a loopback send storm.")

    @Option(help: "send(2) calls per storm.") var calls: Int = 1_000_000
    @Option(help: "Bytes per send.") var size: Int = 64
    @Option(help: "Rounds (each runs every mode once).") var rounds: Int = 3
    @Option(help: "Codec for flightbox record.") var codec: String = "zstd"
    @Option(help: "Folder for the traces written.") var dir: String = "/tmp"

    static let tcpOnly = "record --probes tcp"

    func validate() throws {
        try checkRange(calls, 1...1_000_000_000, flag: "--calls")
        try checkRange(size, 1...(1 << 20), flag: "--size", unit: " bytes")
        try checkRange(rounds, 1...1000, flag: "--rounds")
        try checkBenchCodec(codec)
    }

    func run() throws {
        let (me, load, _) = try BenchModes.tools(noPerf: true)
        let modes = [BenchModes.bare, BenchModes.floor, NetBench.tcpOnly, BenchModes.recorder]
        var samples: [String: [BenchSample]] = [:]
        let storm = { () throws -> BenchSample in
            let r = try spawnAndCapture([load, "net-storm", String(calls), String(size)])
            guard r.status == 0, let ns = UInt64(r.stdout.split(separator: "\n").last ?? "") else { throw fail("the send storm failed: \(r.stdout)\(r.stderr)") }
            return BenchSample(seconds: Double(ns) / 1e9)
        }
        let trace = dir + "/flightbox-bench-net.fbt"
        for round in 1...rounds {
            FileHandleStderr.write("flightbox bench: round \(round)/\(rounds)\n")
            samples[BenchModes.bare, default: []].append(try storm())
            samples[BenchModes.floor, default: []].append(try BenchModes.underFloor(allHooks: false, storm))
            samples[NetBench.tcpOnly, default: []].append(try BenchModes.underRecorder(me: me, trace: trace, codec: codec, extra: ["--probes", "tcp"], storm))
            samples[BenchModes.recorder, default: []].append(try BenchModes.underRecorder(me: me, trace: trace, codec: codec, storm))
        }
        unlink(trace)
        BenchModes.report("send storm: \(calls) send(2) calls of \(size) bytes on one loopback connection, read on the other side; median of \(rounds) rounds, modes interleaved",
                          modes: modes, samples: samples, requests: false)
        let bare = BenchModes.median(samples[BenchModes.bare]!.map(\.seconds))
        let tcp = BenchModes.median(samples[NetBench.tcpOnly]!.map(\.seconds))
        print("the tcp family alone (byte accounting on every send and read, \(samples[NetBench.tcpOnly]!.last!.events) records): \(String(format3: tcp / bare))x bare, \(String(format: "%.0f", (tcp - bare) / Double(2 * calls) * 1e9)) ns per send or read")
    }
}
