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

    struct Sample {
        var seconds: Double
        var requests: Double = 0
        var events: UInt64 = 0
        var lost: UInt64 = 0
        var bytes: UInt64 = 0
        var cpuSeconds: Double = 0
        var maxRSSKiB: Int = 0
    }

    /// What perf records: the tracepoints the default families attach to.
    static let perfEvents = [
        "raw_syscalls:sys_enter", "raw_syscalls:sys_exit", "sched:sched_switch", "sched:sched_wakeup", "sched:sched_wakeup_new",
        "sched:sched_process_fork", "sched:sched_process_exec", "sched:sched_process_exit", "signal:signal_generate",
        "signal:signal_deliver", "block:block_rq_issue", "block:block_rq_complete", "sock:inet_sock_set_state",
        "tcp:tcp_retransmit_skb", "tcp:tcp_send_reset", "tcp:tcp_receive_reset", "exceptions:page_fault_user",
        "exceptions:page_fault_kernel", "vmscan:mm_vmscan_direct_reclaim_begin", "vmscan:mm_vmscan_direct_reclaim_end",
        "oom:mark_victim",
    ]

    func run() throws {
        do { try Preflight.check() } catch let e as CaptureError { throw fail(e.description) }
        let exe = CommandLine.arguments[0]
        let exeDir = exe.contains("/") ? String(exe[..<exe.lastIndex(of: "/")!]) : "."
        let load = exeDir + "/flightbox-load"
        let me = exeDir + "/flightbox"
        guard access(load, X_OK) == 0 else { throw fail("\(load) not found: build it with `swift build -c release`") }
        let perf = noPerf ? nil : StormBench().findPerf()
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

        var modes = ["bare", "floor (in-kernel count)", "flightbox record"]
        if perf != nil { modes.append("perf record") }
        var samples: [String: [Sample]] = [:]
        var lastTrace: TraceReader?
        let trace = base + "/mixed.fbt"
        for round in 1...rounds {
            FileHandleStderr.write("flightbox bench mixed: round \(round)/\(rounds)\n")
            samples["bare", default: []].append(try timed(workload, served: served))
            do {
                let probe: CountingProbe
                do { probe = try CountingProbe() } catch let e as CaptureError { throw fail(e.description) }
                let before = probe.counts()
                var s = try timed(workload, served: served)
                let after = probe.counts()
                s.events = (after.exit - before.exit) + (after.other - before.other)
                withExtendedLifetime(probe) { samples["floor (in-kernel count)", default: []].append(s) }
            }
            let rec = try Spawned([me, "record", "-o", trace, "--codec", codec])
            try rec.waitForStderr("flightbox: recording")
            var s = try timed(workload, served: served)
            kill(rec.pid, SIGINT)
            let status = rec.wait()
            guard status == 0 else { throw fail("flightbox record failed (status \(status)): \(rec.stderrText)") }
            let reader = try openTrace(trace)
            reader.forEachEvent { e in
                s.events += 1
                if e.type == .loss { s.lost += e.lostCount }
            }
            s.bytes = UInt64(reader.fileSize)
            s.cpuSeconds = rec.cpuSeconds
            s.maxRSSKiB = rec.maxRSSKiB
            samples["flightbox record", default: []].append(s)
            lastTrace = reader
            if let perf {
                let data = base + "/perf.data"
                let p = try Spawned([perf, "record", "-a", "-q", "-o", data] + Self.perfEvents.flatMap { ["-e", $0] })
                usleep(1_500_000) // perf prints nothing when ready
                var s = try timed(workload, served: served)
                kill(p.pid, SIGINT)
                _ = p.wait()
                let stats = try spawnAndCapture([perf, "report", "-i", data, "--stats"])
                for line in stats.stdout.split(separator: "\n") {
                    guard let n = line.split(separator: " ").last.flatMap({ UInt64($0) }) else { continue }
                    if line.contains("SAMPLE events:") { s.events += n }
                    if line.contains("LOST_SAMPLES events:") || line.contains("LOST events:") { s.lost += n }
                }
                s.bytes = FamilyBytes.fileSize(data)
                s.cpuSeconds = p.cpuSeconds
                s.maxRSSKiB = p.maxRSSKiB
                unlink(data)
                unlink(data + ".old")
                samples["perf record", default: []].append(s)
            }
        }

        func median(_ xs: [Double]) -> Double { let s = xs.sorted(); return s[s.count / 2] }
        let bare = median(samples["bare"]!.map(\.seconds))
        let floor = median(samples["floor (in-kernel count)"]!.map(\.seconds))
        print("mixed workload: unpack and make -j2 \(files) C files while a loopback HTTP server takes load; median of \(rounds) rounds, modes interleaved")
        print("mode                      seconds  x bare  x floor  HTTP req/s  events      lost      bytes/event  tracer CPU s  tracer max RSS MiB")
        for m in modes {
            let s = samples[m]!
            let t = median(s.map(\.seconds))
            let last = s.last!
            let bpe = last.events > 0 && last.bytes > 0 ? String(format3: Double(last.bytes) / Double(last.events)) : "-"
            let cpu = last.cpuSeconds > 0 ? String(format3: last.cpuSeconds) : "-"
            let rss = last.maxRSSKiB > 0 ? String(last.maxRSSKiB / 1024) : "-"
            print("\(m.padding(24)) \(String(format3: t).padding(8)) \(String(format3: t / bare).padding(7)) \(String(format3: t / floor).padding(8)) \(String(Int(median(s.map(\.requests)))).padding(11)) \(String(last.events).padding(11)) \(String(s.map(\.lost).max() ?? 0).padding(9)) \(bpe.padding(12)) \(cpu.padding(13)) \(rss)")
        }
        let rec = samples["flightbox record"]!
        let ratio = median(rec.map(\.seconds)) / floor
        print("targets: lost = 0: \(rec.allSatisfy { $0.lost == 0 } ? "met" : "MISSED"); <= 1.2x floor: \(ratio <= 1.2 ? "met" : "MISSED") (\(String(format3: ratio))x); <= 100 MiB resident: \((rec.map(\.maxRSSKiB).max() ?? 0) <= 100 * 1024 ? "met" : "MISSED")")
        if let lastTrace {
            print("")
            print("bytes per event by family (last round's trace, each family's events compressed alone with \(codec)):")
            FamilyBytes.print(try FamilyBytes.measure(lastTrace, codec: Codec(name: codec) ?? .zstd, dir: base))
        }
        unlink(trace)
    }

    /// Runs the workload; its wall time and the HTTP requests it served per second.
    func timed(_ argv: [String], served: String) throws -> Sample {
        var t0 = timespec(), t1 = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t0)
        let r = try spawnAndCapture(argv)
        clock_gettime(CLOCK_MONOTONIC, &t1)
        guard r.status == 0 else { throw fail("the mixed workload failed (status \(r.status)): \(r.stderr)") }
        let seconds = Double(t1.tv_sec - t0.tv_sec) + Double(t1.tv_nsec - t0.tv_nsec) / 1e9
        let n = Double(readSmallFile(served).filter { $0 != " " && $0 != "\n" }) ?? 0
        return Sample(seconds: seconds, requests: n / seconds)
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
