import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture
import FlightboxEvents
import FlightboxFormat

/// `flightbox bench mixed`: a build under load. Each round unpacks a generated
/// C source tree and compiles it with make -j2 while a loopback HTTP server
/// answers a client that opens a connection per request; the same workload
/// runs bare, under the in-kernel counting floor, under `flightbox record`
/// (default families) and under `perf record` of the same tracepoints.
struct MixedBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "mixed", abstract: "Measure recording overhead on a build under HTTP load, with bytes per event per family.")

    @Option(help: "C files in the generated source tree.") var files: Int = 120
    @Option(help: "Rounds (each runs every mode once).") var rounds: Int = 3
    @Option(help: "Codec for flightbox record.") var codec: String = "zstd"
    @Option(help: "C compiler.") var cc: String = "cc"
    @Flag(help: "Leave perf out.") var noPerf = false
    @Option(help: "Folder for the source tree and the traces.") var dir: String = "/var/tmp"

    /// What perf records: the tracepoints the default families attach to.
    static let perfEvents = [
        "raw_syscalls:sys_enter", "raw_syscalls:sys_exit", "sched:sched_switch", "sched:sched_wakeup", "sched:sched_wakeup_new",
        "sched:sched_process_fork", "sched:sched_process_exec", "sched:sched_process_exit", "signal:signal_generate",
        "signal:signal_deliver", "block:block_rq_issue", "block:block_rq_complete", "sock:inet_sock_set_state",
        "tcp:tcp_retransmit_skb", "tcp:tcp_send_reset", "tcp:tcp_receive_reset", "exceptions:page_fault_user",
        "exceptions:page_fault_kernel", "vmscan:mm_vmscan_direct_reclaim_begin", "vmscan:mm_vmscan_direct_reclaim_end",
        "oom:mark_victim",
    ]

    func validate() throws {
        try checkRange(files, 1...100_000, flag: "--files")
        try checkRange(rounds, 1...1000, flag: "--rounds")
        try checkBenchCodec(codec)
    }

    func run() throws {
        let (me, load, perf) = try BenchModes.tools(noPerf: noPerf)
        let base = "\(dir)/flightbox-mixed-\(getpid())"
        let tarball = try makeSourceTree(base)
        defer { _ = try? spawnAndCapture(["/bin/rm", "-rf", base]) }
        let served = base + "/served"
        let script = """
            set -e
            "\(load)" http 600000 > "\(served)" & h=$!
            rm -rf "\(base)/work"; mkdir "\(base)/work"; tar xzf "\(tarball)" -C "\(base)/work"
            make -s -C "\(base)/work" -j2 CC="\(cc)"
            kill -TERM $h; wait $h
            rm -rf "\(base)/work"
            """
        let workload = ["/bin/sh", "-c", script]

        var modes = [BenchModes.bare, BenchModes.floor, BenchModes.recorder]
        if perf != nil { modes.append(BenchModes.perf) }
        var samples: [String: [BenchSample]] = [:]
        let trace = base + "/mixed.fbt"
        let run = { try timed(workload, served: served) }
        for round in 1...rounds {
            FileHandleStderr.write("flightbox bench mixed: round \(round)/\(rounds)\n")
            samples[BenchModes.bare, default: []].append(try run())
            samples[BenchModes.floor, default: []].append(try BenchModes.underFloor(allHooks: true, run))
            samples[BenchModes.recorder, default: []].append(try BenchModes.underRecorder(me: me, trace: trace, codec: codec, run))
            if let perf {
                samples[BenchModes.perf, default: []].append(try BenchModes.underPerf(perf, tracepoints: Self.perfEvents, data: base + "/perf.data", run))
            }
        }
        BenchModes.report("mixed workload: unpack and make -j2 \(files) C files while a loopback HTTP server takes load; median of \(rounds) rounds, modes interleaved",
                          modes: modes, samples: samples, requests: true)
        try FamilyBytes.report(trace: trace, codec: codec, dir: base)
        unlink(trace)
    }

    /// Runs the workload; its wall time and the HTTP requests it served per second.
    func timed(_ argv: [String], served: String) throws -> BenchSample {
        var t0 = timespec(), t1 = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t0)
        let r = try spawnAndCapture(argv)
        clock_gettime(CLOCK_MONOTONIC, &t1)
        guard r.status == 0 else { throw fail("the mixed workload failed (status \(r.status)): \(r.stderr)") }
        let seconds = Double(t1.tv_sec - t0.tv_sec) + Double(t1.tv_nsec - t0.tv_nsec) / 1e9
        let n = Double(readSmallFile(served).filter { $0 != " " && $0 != "\n" }) ?? 0
        return BenchSample(seconds: seconds, requests: n / seconds)
    }

    /// A source tree of `files` C files (each a few dozen functions, so each
    /// takes the compiler a moment) with a Makefile, as a .tar.gz.
    func makeSourceTree(_ base: String) throws -> String {
        let src = base + "/src"
        guard mkdir(base, 0o755) == 0 || errno == EEXIST, mkdir(src, 0o755) == 0 || errno == EEXIST else {
            throw fail("cannot create \(src): \(String(cString: strerror(errno)))")
        }
        for i in 0..<files {
            var c = "#include <stdint.h>\n#include <string.h>\n\n"
            for f in 0..<40 {
                c += """
                    uint64_t unit\(i)_f\(f)(const uint8_t *p, size_t n, uint64_t seed) {
                        uint64_t h = seed ^ \(i * 40 + f)u;
                        for (size_t k = 0; k < n; k++) { h = (h ^ p[k]) * 0x100000001b3ull; if (h & 1) h += k * \(f + 1); }
                        uint8_t tmp[64]; memset(tmp, (int)h, sizeof tmp);
                        for (int r = 0; r < \(f % 7 + 2); r++) h += tmp[(h >> r) & 63] * (uint64_t)r;
                        return h;
                    }

                    """
            }
            try writeText(src + "/unit\(i).c", c)
        }
        try writeText(src + "/Makefile", """
            OBJS := $(patsubst %.c,%.o,$(wildcard *.c))
            libunits.a: $(OBJS)
            \tar rcs $@ $(OBJS)
            %.o: %.c
            \t$(CC) -O2 -c $< -o $@

            """)
        let tarball = base + "/src.tar.gz"
        let r = try spawnAndCapture(["/bin/tar", "czf", tarball, "-C", src, "."])
        guard r.status == 0 else { throw fail("tar failed: \(r.stderr)") }
        return tarball
    }

    func readSmallFile(_ path: String) -> String {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(fd, &buf, buf.count)
        return n > 0 ? String(decoding: buf[0..<n], as: UTF8.self) : ""
    }

    func writeText(_ path: String, _ text: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw fail("cannot write \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        guard write(fd, bytes, bytes.count) == bytes.count else { throw fail("cannot write \(path): \(String(cString: strerror(errno)))") }
    }
}
