import FlightboxEvents
import FlightboxFormat

/// Bytes owned by one allocation, readable without copying while the owner
/// lives: the rule evaluator compares process strings as raw bytes, so no
/// String is built per event.
public final class Bytes: @unchecked Sendable {
    public let buffer: UnsafeRawBufferPointer
    public let string: String

    public init(_ string: String) {
        self.string = string
        let utf8 = Array(string.utf8)
        let p = UnsafeMutableRawBufferPointer.allocate(byteCount: max(utf8.count, 1), alignment: 1)
        p.copyBytes(from: utf8)
        buffer = UnsafeRawBufferPointer(start: p.baseAddress, count: utf8.count)
    }

    deinit { UnsafeMutableRawBufferPointer(mutating: buffer).deallocate() }
}

/// One execution of a program: a process image between its exec (or the
/// fork that made it, or its first sight in the snapshot) and its next exec
/// or its exit. Immutable (but for the cut of a too-long chain), so an
/// execution can be kept as a finding's ancestor after its pid is reused.
public final class Execution {
    public let pid: UInt32
    /// Unique across pid reuse within a trace, like Tetragon's exec_id:
    /// "<start ns>:<pid>", the start being the event time of the exec or fork
    /// that began this image (0 for a process already running when the
    /// trace began: then it is the pid's only pre-trace image).
    public let execId: Bytes
    public let startNs: UInt64
    /// Sequence number of the exec or fork event that began it (nil: from the snapshot).
    public let startSeq: UInt64?
    /// The execution that forked this process (for an exec: the parent
    /// execution of the image it replaced). nil at the top of what is known,
    /// or past `LineageTable.maxDepth` generations (the chain is cut there).
    public internal(set) var parent: Execution?
    public let uid: UInt32
    public let comm: Bytes
    public let exe: Bytes
    public let argv: [String]
    /// argv joined by spaces, as Falco's proc.cmdline (without the program name: `args`).
    public let cmdline: Bytes
    public let args: Bytes
    /// Steps from the top of the known lineage when it began (0: no known parent).
    public let depth: Int
    /// True when the image came from the snapshot rather than an exec seen in the trace.
    public let fromSnapshot: Bool
    /// The exe was written, created or made executable in this trace before the exec.
    public let exeWritten: Bool

    /// A forked child: it runs its parent's image, so it shares the
    /// parent's strings (a fork allocates only its own name and id).
    init(forkOf image: Execution?, pid: UInt32, startNs: UInt64, startSeq: UInt64, parent: Execution?, comm: String) {
        self.pid = pid
        self.startNs = startNs
        self.startSeq = startSeq
        self.parent = parent
        uid = image?.uid ?? 0
        self.comm = Bytes(comm)
        exe = image?.exe ?? Bytes("")
        argv = image?.argv ?? []
        cmdline = image?.cmdline ?? Bytes("")
        args = image?.args ?? Bytes("")
        depth = parent.map { $0.depth + 1 } ?? 0
        fromSnapshot = false
        exeWritten = image?.exeWritten ?? false
        execId = Bytes("\(startNs):\(pid)")
    }

    convenience init(pid: UInt32, startNs: UInt64, startSeq: UInt64?, parent: Execution?, uid: UInt32, comm: String, exe: String, argv: [String],
                     fromSnapshot: Bool, exeWritten: Bool) {
        self.init(pid: pid, startNs: startNs, startSeq: startSeq, parent: parent, uid: uid, comm: comm, exe: exe, argv: argv,
                  depth: parent.map { $0.depth + 1 } ?? 0, fromSnapshot: fromSnapshot, exeWritten: exeWritten)
    }

    /// An execution as a checkpoint holds it (`depth` as it was: a cut chain keeps its depth).
    init(pid: UInt32, startNs: UInt64, startSeq: UInt64?, parent: Execution?, uid: UInt32, comm: String, exe: String, argv: [String],
         depth: Int, fromSnapshot: Bool, exeWritten: Bool) {
        self.pid = pid
        self.startNs = startNs
        self.startSeq = startSeq
        self.parent = parent
        self.uid = uid
        self.comm = Bytes(comm)
        self.exe = Bytes(exe)
        self.argv = argv
        cmdline = Bytes(argv.joined(separator: " "))
        args = Bytes(argv.dropFirst().joined(separator: " "))
        self.depth = depth
        self.fromSnapshot = fromSnapshot
        self.exeWritten = exeWritten
        execId = Bytes("\(startNs):\(pid)")
    }

    /// The n-th ancestor: 0 is this execution, 1 its parent.
    public func ancestor(_ n: Int) -> Execution? {
        var e: Execution? = self
        var k = n
        while k > 0, let c = e { e = c.parent; k -= 1 }
        return e
    }

    /// This execution and its ancestors, nearest first, at most `limit`.
    public func chain(limit: Int = 32) -> [Execution] {
        var out: [Execution] = []
        var e: Execution? = self
        while let c = e, out.count < limit { out.append(c); e = c.parent }
        return out
    }
}

/// pid -> current execution, with ancestry, built from the trace's process
/// snapshot and its fork, exec and exit events. Works from a trace that
/// starts mid-life: snapshot processes become executions with start 0 whose
/// parents are their snapshot ppids (resolved after all are known).
public final class LineageTable {
    public internal(set) var current: [UInt32: Execution] = [:]
    /// Paths written, created or made executable in this trace (most recent
    /// `maxWritten`), for `proc.exe_written`: a dropped executable.
    var written: [String: UInt64] = [:]
    var writtenOrder: [String] = []
    public let maxWritten: Int
    /// Bytes per execution and remote host, for net.host_sent and net.host_received.
    public let traffic = TrafficTable()

    /// False when no rule reads `proc.exe_written`: no path is kept or looked up.
    public let tracksWritten: Bool

    public init(snapshot: ProcessSnapshot?, maxWritten: Int = 4096, tracksWritten: Bool = true) {
        self.maxWritten = maxWritten
        self.tracksWritten = tracksWritten
        let procs = (snapshot?.processes ?? []).sorted { $0.pid < $1.pid }
        let byPid = Dictionary(procs.map { ($0.pid, $0) }, uniquingKeysWith: { a, _ in a })
        // Parents before children: resolve recursively with a guard against
        // ppid cycles a hostile or racy snapshot could hold.
        var visiting: Set<UInt32> = []
        func make(_ pid: UInt32) -> Execution? {
            if let e = current[pid] { return e }
            guard let p = byPid[pid], visiting.insert(pid).inserted else { return nil }
            let parent = p.ppid != pid && p.ppid != 0 ? make(p.ppid) : nil
            // An image an earlier flight segment saw begin keeps the exec_id it had there.
            let e = Execution(pid: pid, startNs: p.imageStartNs ?? 0, startSeq: nil, parent: parent, uid: p.uid, comm: p.comm, exe: p.exe,
                              argv: p.argv, fromSnapshot: true, exeWritten: false)
            current[pid] = e
            return e
        }
        for p in procs { _ = make(p.pid) }
    }

    public func execution(_ pid: UInt32) -> Execution? { current[pid] }

    /// Generations kept above any execution. A process that forks and exits
    /// in a loop (a respawner, a hostile trace) would otherwise grow one
    /// chain without end, and releasing it would recurse as deep.
    public static let maxDepth = 256

    /// Cuts the chain above `e` at `maxDepth` generations.
    private func bound(_ e: Execution) {
        guard e.depth > LineageTable.maxDepth, e.depth % LineageTable.maxDepth == 1 else { return }
        var a: Execution? = e
        for _ in 0..<LineageTable.maxDepth { a = a?.parent }
        a?.parent = nil
    }

    /// Applies a fork, exec or exit; other events are ignored. Call before
    /// evaluating a fork or exec (rules see the new image) and after an exit.
    public func apply(_ e: Event) {
        switch e.rawType {
        case EventType.fork.rawValue:
            guard let f = e.as(ForkRecord.self), !f.isThread else { return }
            let parent = current[e.pid]
            // The child runs its parent's image until it execs.
            let child = Execution(forkOf: parent, pid: f.childPid, startNs: e.timestamp, startSeq: e.sequence, parent: parent, comm: f.comm)
            bound(child)
            current[f.childPid] = child
        case EventType.exec.rawValue:
            guard let x = e.as(ExecRecord.self) else { return }
            let old = current[e.pid]
            // The parent of the new image is the parent of the one it replaces,
            // or the exec's ppid when the fork was not seen.
            let parent = old?.parent ?? current[x.ppid]
            let exe = x.filename
            let image = Execution(
                pid: e.pid, startNs: e.timestamp, startSeq: e.sequence, parent: parent, uid: x.uid, comm: x.comm, exe: exe,
                argv: x.argv, fromSnapshot: false, exeWritten: tracksWritten && wasWritten(exe))
            bound(image)
            current[e.pid] = image
        default:
            return
        }
    }

    /// Forgets a process whose last thread exited (its executions live on as
    /// ancestors of its children and in findings).
    public func retire(_ e: Event) {
        guard e.rawType == EventType.exit.rawValue, let x = e.as(ExitRecord.self), x.isGroupExit else { return }
        current[e.pid] = nil
        traffic.retire(pid: e.pid)
    }

    /// Records that `path` was written, created or made executable at `ts`.
    public func noteWritten(_ path: String, at ts: UInt64) {
        guard !path.isEmpty else { return }
        if written.updateValue(ts, forKey: path) == nil {
            writtenOrder.append(path)
            if writtenOrder.count > maxWritten {
                // Drop the oldest half at once: amortized O(1) per path.
                let drop = writtenOrder.count / 2
                for p in writtenOrder.prefix(drop) { written[p] = nil }
                writtenOrder.removeFirst(drop)
            }
        }
    }

    /// Whether an exec of `exe` runs a file written in this trace. Paths are
    /// as the callers gave them: a relative written path matches an absolute
    /// exec path that ends with it.
    public func wasWritten(_ exe: String) -> Bool {
        if written[exe] != nil { return true }
        guard !written.isEmpty else { return false }
        var rel = Substring(exe)
        while let slash = rel.firstIndex(of: "/") {
            rel = rel[rel.index(after: slash)...]
            if !rel.isEmpty, written[String(rel)] != nil { return true }
        }
        if exe.hasPrefix("./"), written[String(exe.dropFirst(2))] != nil { return true }
        return false
    }
}
