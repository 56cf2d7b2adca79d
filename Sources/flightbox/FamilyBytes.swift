#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture
import FlightboxEvents
import FlightboxFormat

/// What each family's events cost on disk in a trace: every family's events
/// are written alone to a trace of their own with the trace's codec, and the
/// size of an empty trace is taken off. Blocks mix families in a real trace,
/// so this is each family's cost as if it were recorded alone.
struct FamilyBytes {
    var family: String
    var events: UInt64
    var rawBytes: UInt64
    var storedBytes: UInt64

    static func measure(_ reader: TraceReader, codec: Codec, dir: String) throws -> [FamilyBytes] {
        let meta = TraceMetadata(host: "bench", kernelRelease: "", machine: "", clockNs: 0, realtimeNs: 0, capture: .object([]))
        let empty = ProcessSnapshot(timestamp: 0, processes: [])
        var writers: [String: TraceWriter] = [:]
        var out: [String: FamilyBytes] = [:]
        func path(_ f: String) -> String { "\(dir)/flightbox-family-\(getpid())-\(f).fbt" }
        let baseline = path("empty")
        try TraceWriter(path: baseline, codec: codec, metadata: meta, snapshot: empty).close()
        defer { unlink(baseline) }
        let emptySize = fileSize(baseline)
        do {
            try reader.forEachEvent { e in
                guard let t = e.type, let fam = ProbeFamily(producing: t)?.rawValue else { return }
                if writers[fam] == nil {
                    writers[fam] = try TraceWriter(path: path(fam), codec: codec, metadata: meta, snapshot: empty)
                    out[fam] = FamilyBytes(family: fam, events: 0, rawBytes: 0, storedBytes: 0)
                }
                _ = try writers[fam]!.append(e.bytes)
                out[fam]!.events += 1
                out[fam]!.rawBytes += UInt64(e.size)
            }
            for (fam, w) in writers {
                try w.close()
                out[fam]!.storedBytes = fileSize(path(fam)) - min(emptySize, fileSize(path(fam)))
                unlink(path(fam))
            }
        } catch let e as TraceError {
            for fam in writers.keys { unlink(path(fam)) }
            throw fail(e.description)
        }
        return out.values.sorted { $0.events > $1.events }
    }

    static func fileSize(_ path: String) -> UInt64 {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_size) : 0
    }

    /// Measures the trace at `path` and prints the table under its heading.
    static func report(trace path: String, codec: String, dir: String) throws {
        Swift.print("")
        Swift.print("bytes per event by family (last round's trace, each family's events compressed alone with \(codec)):")
        print(try measure(try openTrace(path), codec: Codec(name: codec) ?? .zstd, dir: dir))
    }

    static func print(_ rows: [FamilyBytes]) {
        Swift.print("family      events     raw bytes/event  on disk bytes/event")
        for r in rows {
            let raw = Double(r.rawBytes) / Double(max(r.events, 1))
            let disk = Double(r.storedBytes) / Double(max(r.events, 1))
            Swift.print("\(r.family.padding(11)) \(String(r.events).padding(10)) \(String(format3: raw).padding(16)) \(String(format3: disk))")
        }
    }
}
