import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture
import FlightboxEvents
import FlightboxFormat

/// `flightbox bench format`: trace writing and decoding speed on one core,
/// bytes per event per codec, and a one-second window found in a large trace.
struct FormatBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "format", abstract: "Measure trace write/decode speed, bytes per event per codec, and seeking in a large trace.")

    @Option(help: "A trace of a syscall storm to take events from (default: record one now).") var storm: String?
    @Option(help: "A trace of a mixed workload to take events from (default: record one now).") var mixed: String?
    @Option(help: "Events written per speed measurement.") var events: Int = 20_000_000
    @Option(help: "Size of the large trace for the seek test, in MiB (0 to skip).") var seekMb: Int = 1100
    @Option(help: "Folder for the files written.") var dir: String = "/tmp"

    /// Events held contiguously, as the writer would receive them.
    struct Corpus {
        var bytes: [UInt8] = []
        var offsets: [Int] = []
        var first: UInt64 = 0
        var last: UInt64 = 0
        var name: String
    }

    func validate() throws {
        try checkRange(events, 1...1_000_000_000, flag: "--events")
        // The seek test writes a file this large: 1 TiB is past any disk it should run on.
        try checkRange(seekMb, 0...(1 << 20), flag: "--seek-mb", unit: " MiB")
    }

    func run() throws {
        let (stormPath, mixedPath) = try BenchCorpora.paths(storm: storm, mixed: mixed, dir: dir)
        let corpora = [try load(stormPath, name: "storm"), try load(mixedPath, name: "mixed")]
        print("corpora: " + corpora.map { "\($0.name) \($0.offsets.count) events" }.joined(separator: ", "))
        print("")
        print("codec     corpus  write Mev/s  decode Mev/s  bytes/event")
        var seekFile: String?
        for (codec, level) in [(Codec.zstd, Int32(1)), (.zstd, 3), (.lz4, 0)] {
            for corpus in corpora {
                let path = "\(dir)/flightbox-format-bench.fbt"
                let (written, writeSeconds) = try write(corpus, to: path, codec: codec, level: level, count: events)
                let (decoded, decodeSeconds) = try decode(path)
                guard decoded == written else { throw fail("decoded \(decoded) of \(written) events") }
                var st = stat()
                stat(path, &st)
                let label = codec == .lz4 ? "lz4" : "zstd-\(level)"
                print("\(label.padding(9)) \(corpus.name.padding(7)) \(String(format3: Double(written) / writeSeconds / 1e6).padding(12)) \(String(format3: Double(decoded) / decodeSeconds / 1e6).padding(13)) \(String(format3: Double(st.st_size) / Double(written)))")
                unlink(path)
            }
        }
        if seekMb > 0 {
            let path = "\(dir)/flightbox-seek-bench.fbt"
            seekFile = path
            try seek(corpora[1], path: path)
        }
        if let seekFile { unlink(seekFile) }
    }

    func load(_ path: String, name: String) throws -> Corpus {
        let reader = try openTrace(path)
        var c = Corpus(name: name)
        c.first = reader.firstTimestamp ?? 0
        c.last = reader.lastTimestamp ?? 0
        reader.forEachEvent { e in
            c.offsets.append(c.bytes.count)
            c.bytes.append(contentsOf: e.bytes)
        }
        c.offsets.append(c.bytes.count)
        return c
    }

    /// Writes `count` events: the corpus over and over, each pass shifted in
    /// time past the previous one, as a long recording would be.
    func write(_ c: Corpus, to path: String, codec: Codec, level: Int32, count: Int) throws -> (Int, Double) {
        let meta = TraceMetadata(host: "bench", kernelRelease: "", machine: "x86_64", clockNs: c.first, realtimeNs: 0, capture: .object([]))
        let writer = try TraceWriter(path: path, codec: codec, level: level, metadata: meta, snapshot: ProcessSnapshot(timestamp: c.first, processes: []))
        let span = c.last - c.first + 1_000_000
        var record = [UInt8](repeating: 0, count: 65536)
        var written = 0
        let t0 = monotonicNow()
        var pass: UInt64 = 0
        while written < count {
            let shift = pass * span
            try c.bytes.withUnsafeBytes { src in
                try record.withUnsafeMutableBytes { dst in
                    for i in 0..<(c.offsets.count - 1) where written < count {
                        let o = c.offsets[i], n = c.offsets[i + 1] - o
                        dst.baseAddress!.copyMemory(from: src.baseAddress! + o, byteCount: n)
                        let ts = dst.baseAddress!.loadUnaligned(as: UInt64.self)
                        dst.baseAddress!.storeBytes(of: ts &+ shift, as: UInt64.self)
                        try writer.append(UnsafeRawBufferPointer(start: dst.baseAddress, count: n))
                        written += 1
                    }
                }
            }
            pass += 1
        }
        try writer.close()
        return (written, Double(monotonicNow() - t0) / 1e9)
    }

    func decode(_ path: String) throws -> (Int, Double) {
        let t0 = monotonicNow()
        let reader = try openTrace(path)
        var n = 0
        var sum: UInt64 = 0
        reader.forEachEvent { e in
            n += 1
            sum &+= e.timestamp // touch every record
        }
        if sum == 42 { print("") }
        return (n, Double(monotonicNow() - t0) / 1e9)
    }

    func seek(_ c: Corpus, path: String) throws {
        // Build a trace of at least seekMb MiB from the mixed corpus (lz4: the
        // biggest blocks per event, so the most events need skipping).
        let target = UInt64(seekMb) << 20
        let perPass = UInt64(c.offsets.count - 1)
        var count = Int(perPass) * 4
        var size: UInt64 = 0
        repeat {
            _ = try write(c, to: path, codec: .lz4, level: 0, count: count)
            var st = stat()
            stat(path, &st)
            size = UInt64(st.st_size)
            if size < target { count = Int(Double(count) * Double(target) / Double(max(size, 1)) * 1.02) + 1 }
        } while size < target
        let probe = try openTrace(path)
        let first = probe.firstTimestamp ?? 0, last = probe.lastTimestamp ?? 0
        let from = first + (last - first) / 2
        var results: [String] = []
        for cold in [false, true] {
            if cold {
                sync()
                guard let f = fopen("/proc/sys/vm/drop_caches", "w") else { results.append("cold: skipped (needs root)"); continue }
                fputs("3\n", f)
                fclose(f)
            }
            let t0 = monotonicNow()
            let reader = try openTrace(path)
            var n = 0
            reader.forEachEvent(from: from, to: from + 1_000_000_000) { _ in n += 1 }
            let ms = Double(monotonicNow() - t0) / 1e6
            results.append("\(cold ? "cold cache" : "warm cache"): \(String(format3: ms)) ms for \(n) events in \(reader.blocks(from: from, to: from + 1_000_000_000).count) of \(reader.eventBlocks.count) blocks")
        }
        print("")
        print("seek: one second out of a \(size >> 20) MiB trace of \(probe.eventCount) events spanning \(formatDuration(last - first)), open + index + decode:")
        for r in results { print("  " + r) }
    }
}
