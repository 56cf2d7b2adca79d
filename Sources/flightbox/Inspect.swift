import ArgumentParser
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat
import FlightboxRules

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Summarize a trace: time range, events by type, busiest processes, losses, blocks, size, state.")

    @Argument(help: "Trace file.") var file: String
    @Option(help: "text or json.") var format: OutputFormat = .text
    @Option(help: "How many of the busiest processes to list.") var top: Int = 10
    @Flag(name: .customLong("full-rules"), help: "Print the security rules stored in the trace in full, not their summary (count, size, sha256, file names).")
    var fullRules = false

    func validate() throws {
        try checkRange(top, 0...Int.max, flag: "--top")
    }

    func run() throws {
        let reader = try openTrace(file)
        var byType: [UInt16: UInt64] = [:]
        var byPid: [UInt32: UInt64] = [:]
        var lostByCpu: [UInt16: UInt64] = [:]
        var decoded: UInt64 = 0
        let names = ProcessTable(snapshot: reader.snapshot)
        reader.forEachEvent { e in
            decoded += 1
            byType[e.rawType, default: 0] += 1
            names.apply(e)
            if let l = e.as(LossRecord.self) {
                lostByCpu[e.cpu, default: 0] &+= l.lost
            } else {
                byPid[e.pid, default: 0] += 1
            }
        }
        let lost = lostByCpu.values.reduce(0, +)
        let gaps = reader.sequenceGaps
        // Gaps between blocks, plus records of blocks that are there but unreadable.
        let missing = gaps.reduce(0) { $0 + $1.missing } + (reader.eventCount > decoded ? reader.eventCount - decoded : 0)
        let busiest = byPid.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.prefix(top)
        let first = reader.firstTimestamp ?? 0, last = reader.lastTimestamp ?? 0
        let meta = reader.metadata
        let capture = fullRules ? meta.capture : Inspect.summarizingRules(meta.capture)
        let codecs = Set(reader.eventBlocks.compactMap { _ in reader.metadata.capture["codec"]?.stringValue })
        let types = byType.keys.sorted()
        func typeName(_ t: UInt16) -> String { EventType(rawValue: t)?.name ?? "unknown_\(t)" }

        if format == .json {
            let out = Output()
            out.line(JSON.object([
                ("file", .string(file)), ("bytes", .uint(UInt64(reader.fileSize))),
                ("closed_cleanly", .bool(reader.closedCleanly)), ("used_index", .bool(reader.usedIndex)),
                ("version", .string("\(reader.versionMajor).\(reader.versionMinor)")),
                ("host", .string(meta.host)), ("kernel", .string(meta.kernelRelease)),
                ("first_ts_ns", .uint(first)), ("last_ts_ns", .uint(last)), ("duration_ns", .uint(last &- first)),
                ("start_wall", .string(formatWallClock(meta.wallClock(first)))),
                ("events", .uint(decoded)),
                ("checkpoint", reader.checkpoint.map { c in
                    .object([("ts_ns", .uint(c.timestamp)), ("stored_bytes", .uint(UInt64(c.storedLength))), ("raw_bytes", .uint(UInt64(c.rawLength)))])
                } ?? .null),
                ("events_by_type", .object(types.map { (typeName($0), .uint(byType[$0]!)) })),
                ("busiest", .array(busiest.map { .object([("pid", .uint(UInt64($0.key))), ("comm", .string(names.comm($0.key))), ("events", .uint($0.value))]) })),
                ("lost", .uint(lost)),
                ("missing", .uint(missing)),
                ("sequence_gaps", .array(gaps.map { .object([("after_seq", .uint($0.after)), ("missing", .uint($0.missing))]) })),
                ("lost_by_cpu", .object(lostByCpu.keys.sorted().map { (String($0), .uint(lostByCpu[$0]!)) })),
                ("blocks", .int(Int64(reader.eventBlocks.count))), ("codec", .string(codecs.sorted().joined(separator: ","))),
                ("bytes_per_event", .double(decoded > 0 ? Double(reader.fileSize) / Double(decoded) : 0)),
                ("capture", capture),
                ("problems", .array(reader.problems.map { .object([("offset", .uint($0.offset)), ("message", .string($0.message))]) })),
            ]).serialized())
            return
        }
        let out = Output()
        out.line("file:          \(file) (\(reader.fileSize) bytes, format v\(reader.versionMajor).\(reader.versionMinor))")
        out.line("state:         \(reader.closedCleanly ? "closed cleanly" : "NOT closed cleanly (recorder stopped while writing); read up to byte \(reader.endOfData)")")
        out.line("recorded on:   \(meta.host), Linux \(meta.kernelRelease) \(meta.machine)")
        if decoded > 0 {
            out.line("time range:    \(formatWallClock(meta.wallClock(first))) .. \(formatWallClock(meta.wallClock(last))) (\(formatDuration(last &- first)))")
        }
        out.line("capture:       \(capture.serialized())")
        out.line("events:        \(decoded)")
        for t in types { out.line("  \(typeName(t).padding(12)) \(byType[t]!)") }
        out.line("lost:          \(lost)\(lost > 0 ? " (" + lostByCpu.keys.sorted().map { "cpu\($0): \(lostByCpu[$0]!)" }.joined(separator: ", ") + ")" : "")")
        if missing > 0 {
            out.line("missing:       \(missing) events that the file no longer holds readably (damaged blocks; \(gaps.count) gaps in the sequence)")
        }
        out.line("blocks:        \(reader.eventBlocks.count) event blocks, codec \(codecs.sorted().joined(separator: ",")), index \(reader.usedIndex ? "used" : "missing: blocks scanned")")
        if let c = reader.checkpoint {
            out.line("checkpoint:    the live detectors' state before the first event, at \(formatWallClock(meta.wallClock(c.timestamp))) (\(c.rawLength) bytes, \(c.storedLength) stored); replay restores it")
        }
        out.line("on disk:       \(decoded > 0 ? String(format3: Double(reader.fileSize) / Double(decoded)) : "-") bytes/event")
        out.line("busiest processes:")
        for (pid, n) in busiest { out.line("  \(String(pid).padding(8)) \(names.comm(pid).padding(16)) \(n)") }
        out.flush()
        reportProblems(reader)
    }
}

extension Inspect {
    /// The capture with each detector's stored rules (the built-in file and
    /// any --rules files, ~13 KB of YAML) replaced by a summary: the number
    /// of rules they compile to and, per file, its name, size and sha256.
    static func summarizingRules(_ capture: JSON) -> JSON {
        guard case .object(var top) = capture, let d = top.firstIndex(where: { $0.0 == "detectors" }),
              case .object(var detectors) = top[d].1 else { return capture }
        for (i, (name, settings)) in detectors.enumerated() {
            guard case .object(var fields) = settings, let r = fields.firstIndex(where: { $0.0 == "rules" }),
                  let list = fields[r].1.arrayValue else { continue }
            let sources = list.compactMap { item -> RuleSource? in
                guard let n = item["name"]?.stringValue, let t = item["text"]?.stringValue else { return nil }
                return RuleSource(name: n, text: t)
            }
            let count: JSON = (try? RuleSet(sources: sources)).map { .uint(UInt64($0.rules.count)) } ?? .null
            fields[r].1 = .object([
                ("rules", count),
                ("files", .array(sources.map { s in
                    let m = s.summary
                    return .object([("name", .string(m.name)), ("bytes", .uint(UInt64(m.bytes))), ("sha256", .string(m.sha256))])
                })),
                ("full_text", .string("flightbox inspect --full-rules")),
            ])
            detectors[i] = (name, .object(fields))
        }
        top[d].1 = .object(detectors)
        return .object(top)
    }
}

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
