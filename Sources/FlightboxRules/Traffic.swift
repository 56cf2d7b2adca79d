import CFlightboxEvents
import FlightboxEvents

/// Bytes each execution sent to and received from each remote address over
/// the connections it opened (or that were open before the trace), summed
/// from the kernel's per-connection summaries: `net.host_sent` and
/// `net.host_received`. Many small connections to one host add up, which a
/// per-connection total would miss; connections the process accepted are a
/// server's and are left out. Deterministic: looked up, never iterated into
/// the output.
public final class TrafficTable {
    struct Key: Hashable {
        let pid: UInt32
        let family: UInt16
        let start: UInt64
        let hi: UInt64
        let lo: UInt64
    }

    /// Pairs of execution and remote address kept; beyond, new pairs are not
    /// counted (`overflow`) until processes exit.
    public static let maxEntries = 65_536
    private var totals: [Key: (sent: UInt64, received: UInt64)] = [:]
    private var keysByPid: [UInt32: [Key]] = [:]
    public private(set) var overflow: UInt64 = 0
    /// The totals after the summary with sequence number `lastSeq`, which
    /// the rules judging it read.
    private(set) var lastSeq: UInt64 = .max
    private(set) var lastSent: UInt64 = 0
    private(set) var lastReceived: UInt64 = 0

    /// Adds a summary's bytes to its execution's totals for the remote.
    func add(_ e: Event, execution: Execution?) {
        lastSeq = .max // a summary left out has no totals, whatever its sequence number
        guard let n = e.as(NetbytesRecord.self), n.direction != UInt8(FB_NET_DIR_IN.rawValue) else { return }
        let d = n.daddr
        let key = Key(pid: e.pid, family: n.family, start: execution?.startNs ?? 0,
                      hi: d.loadUnaligned(fromByteOffset: 0, as: UInt64.self), lo: d.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        var t: (sent: UInt64, received: UInt64)
        if let known = totals[key] {
            t = known
        } else {
            guard totals.count < TrafficTable.maxEntries else { overflow &+= 1; return }
            keysByPid[e.pid, default: []].append(key)
            t = (0, 0)
        }
        t.sent &+= n.bytesSent
        t.received &+= n.bytesReceived
        totals[key] = t
        lastSeq = e.sequence
        lastSent = t.sent
        lastReceived = t.received
    }

    /// The totals for `e` if it is the summary last added.
    func current(_ e: Event) -> (sent: UInt64, received: UInt64)? {
        lastSeq == e.sequence ? (lastSent, lastReceived) : nil
    }

    /// Forgets the totals of a process that exited.
    func retire(pid: UInt32) {
        guard let keys = keysByPid.removeValue(forKey: pid) else { return }
        for k in keys { totals[k] = nil }
    }
}
