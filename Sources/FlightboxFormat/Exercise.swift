import FlightboxEvents

extension TraceReader {
    /// Reads everything a trace holds the way the tools do (every event,
    /// every field, a time window, the metadata) and returns a digest. The
    /// fuzzers call it on hostile input: it must return, whatever the bytes.
    public static func exercise(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        guard let reader = try? TraceReader(bytes: bytes, name: "<fuzz>") else { return 0 }
        var digest: UInt64 = 0
        reader.forEachEvent { e in
            digest &+= UInt64(e.json().serialized().utf8.count)
            digest &+= UInt64(e.text(ts: "", comm: nil).utf8.count)
        }
        if let first = reader.firstTimestamp, let last = reader.lastTimestamp, last >= first {
            reader.forEachEvent(from: first + (last - first) / 2, to: last) { digest &+= $0.timestamp }
        }
        digest &+= UInt64(reader.metadata.json.serialized().utf8.count)
        digest &+= UInt64(reader.snapshot?.processes.count ?? 0)
        digest &+= UInt64(reader.problems.count)
        return digest
    }
}
