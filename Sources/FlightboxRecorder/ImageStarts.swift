import FlightboxEvents
import FlightboxFormat

/// pid -> event time of the fork or exec that began its current image, from
/// the records a flight recorder writes, so the next segment's process
/// snapshot can carry it (`ProcessRecord.imageStartNs`): a process that
/// lives across a segment boundary keeps its exec_id ("<start>:<pid>") in
/// both segments. An entry goes at the process's exit; a process running
/// before the recording began has none (its exec_id start is 0 everywhere).
public struct ImageStarts {
    public private(set) var starts: [UInt32: UInt64] = [:]
    /// Bound for a trace that lost exits: past it, the table is rebuilt from the next snapshot's pids.
    public static let maxEntries = 1 << 20

    public init() {}

    /// Notes a record: only forks, execs and process exits matter (a type check otherwise).
    @inline(__always)
    public mutating func note(_ record: UnsafeRawBufferPointer) {
        guard record.count >= HeaderLayout.byteCount, let base = record.baseAddress else { return }
        let type = base.loadUnaligned(fromByteOffset: HeaderLayout.typeOffset, as: UInt16.self)
        guard type == EventType.fork.rawValue || type == EventType.exec.rawValue || type == EventType.exit.rawValue,
              let e = Event.validated(record, sequence: 0) else { return }
        switch type {
        case EventType.fork.rawValue:
            guard let f = e.as(ForkRecord.self), !f.isThread else { return }
            starts[f.childPid] = e.timestamp
        case EventType.exec.rawValue:
            starts[e.pid] = e.timestamp
        default:
            guard let x = e.as(ExitRecord.self), x.isGroupExit else { return }
            starts[e.pid] = nil
        }
    }

    /// The snapshot with each process's image start where known; forgets
    /// pids the snapshot no longer holds (their exit was lost).
    public mutating func annotate(_ snapshot: ProcessSnapshot) -> ProcessSnapshot {
        var s = snapshot
        for i in s.processes.indices { s.processes[i].imageStartNs = starts[s.processes[i].pid] }
        if starts.count > ImageStarts.maxEntries || starts.count > 2 * s.processes.count + 4096 {
            let live = Set(s.processes.map(\.pid))
            starts = starts.filter { live.contains($0.key) }
        }
        return s
    }
}
