import ArgumentParser
import FlightboxEvents
import FlightboxFormat

/// `flightbox cut FILE --from T --to T -o OUT`: the events of a time window as
/// a trace of their own, which replays and reads like the original.
struct Cut: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the events of a time window as a trace of their own (to keep fixtures small, or to share one incident).",
        discussion: """
        The window is the one of `flightbox events --from/--to` (both ends included). The cut keeps the \
        metadata (and the detector configuration stored in it) and starts with a process snapshot valid at \
        --from: the original snapshot, updated by every fork, exec and exit before the window. Events are \
        numbered from 0 in their original order.
        """
    )

    @Argument(help: "The trace to cut (not modified).") var file: String
    @OptionGroup var window: Window
    @Option(name: .shortAndLong, help: "Where to write the cut.") var output: String

    func run() throws {
        if let input = FileIdentity(path: file), input == FileIdentity(path: output) {
            throw fail("cut writes a new trace: \(output) is the input \(file); choose another output with -o", code: 2)
        }
        do { try OutputFile.check(path: output) } catch let e as TraceError { throw fail(e.description) }
        let reader = try openTrace(file)
        let (from, to) = try window.resolve(reader)
        // The process state at the window's start: every event before it, in stream order.
        var state = ProcessState(reader.snapshot)
        if let from { reader.forEachEvent(to: from) { e in if e.timestamp < from { state.apply(e) } } }
        var metadata = reader.metadata
        // Records come in this build's layout: the schema must say so (as in repair).
        metadata.schema = EventSchema.json(syscallTable: SyscallArch(schema: reader.metadata.schema, machine: reader.metadata.machine))
        if case .object(var kv) = metadata.capture {
            kv.removeAll { $0.0 == "cut" }
            var cut: [(String, JSON)] = [("source_first_ns", .uint(reader.firstTimestamp ?? 0))]
            if let from { cut.append(("from_ns", .uint(from))) }
            if let to { cut.append(("to_ns", .uint(to))) }
            kv.append(("cut", .object(cut)))
            metadata.capture = .object(kv)
        }
        let codec = reader.metadata.capture["codec"]?.stringValue.flatMap(Codec.init(name:)) ?? .zstd
        let start = from ?? reader.snapshot?.timestamp ?? reader.metadata.clockNs
        var kept: UInt64 = 0
        do {
            let writer = try TraceWriter(path: output, publish: .whenClosed, codec: codec == .none ? .zstd : codec,
                                         metadata: metadata, snapshot: state.snapshot(at: start))
            var failure: Error?
            let progress = Progress(label: "cut", total: reader.eventCount)
            defer { progress.done() }
            reader.forEachEvent(from: from, to: to) { e in
                guard failure == nil else { return }
                progress.step()
                do { try writer.append(e.bytes); kept += 1 } catch { failure = error }
            }
            if let failure { throw failure }
            try writer.close()
        } catch let e as TraceError { throw fail(e.description) }
        reportProblems(reader)
        print("cut \(file) -> \(output): \(kept) events, \(state.count) processes in its snapshot")
    }
}

/// The processes alive at a point of a trace: its snapshot, then fork, exec
/// and process exit in stream order.
struct ProcessState {
    private var processes: [UInt32: ProcessRecord] = [:]

    init(_ snapshot: ProcessSnapshot?) {
        for p in snapshot?.processes ?? [] { processes[p.pid] = p }
    }

    var count: Int { processes.count }

    mutating func apply(_ e: Event) {
        if let f = e.as(ForkRecord.self) {
            guard !f.isThread else { return }
            // A child is its parent's copy until it execs.
            let parent = processes[e.pid]
            // The image start keeps the exec_id the process had before the cut.
            processes[f.childPid] = ProcessRecord(pid: f.childPid, ppid: e.pid, uid: parent?.uid ?? 0, comm: f.comm,
                                                  exe: parent?.exe ?? "", argv: parent?.argv ?? [], imageStartNs: e.timestamp)
        } else if let x = e.as(ExecRecord.self) {
            processes[e.pid] = ProcessRecord(pid: e.pid, ppid: x.ppid, uid: x.uid, comm: x.comm, exe: x.filename, argv: x.argv,
                                             imageStartNs: e.timestamp)
        } else if let x = e.as(ExitRecord.self), x.isGroupExit {
            processes[e.pid] = nil
        }
    }

    /// In pid order: the same state gives the same bytes.
    func snapshot(at ts: UInt64) -> ProcessSnapshot {
        ProcessSnapshot(timestamp: ts, processes: processes.keys.sorted().map { processes[$0]! })
    }
}
