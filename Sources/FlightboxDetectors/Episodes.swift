/// One finding per episode, for every detector: per key (a process, an
/// endpoint, a device, a cgroup), an episode opens when a deviation is first
/// seen and is reported then; while it lasts, repeats are counted, not
/// reported, except one escalation to a higher severity; it closes once the
/// deviation has not been seen for the hold-down (event time), and the next
/// deviation opens a new episode.
///
/// Deterministic: it keeps no clock of its own (callers pass event time) and
/// everything it returns in bulk is in a stable order.
public struct EpisodeTracker<Key: Hashable & Comparable> {
    /// An episode in progress.
    public struct Episode: Equatable, Codable {
        /// When the deviation was first seen.
        public var startedAt: UInt64
        /// When it was last seen.
        public var lastSeenAt: UInt64
        /// The severity last reported.
        public var severity: Severity
        /// Deviations seen in it, the first included.
        public var occurrences: UInt64 = 1
        /// Deviations seen since the last report.
        public var suppressed: UInt64 = 0
    }

    /// What the caller should do with a deviation.
    public enum Decision: Equatable {
        /// A new episode: report it.
        case open
        /// The episode got worse: report it again, at the higher severity (once per episode).
        case escalate(from: Severity)
        /// Part of an episode already reported: count it, say nothing.
        case suppress
    }

    /// Quiet time after which an episode is over.
    public let holdDownNs: UInt64
    private var episodes: [Key: Episode] = [:]
    private var escalated: Set<Key> = []

    public init(holdDownNs: UInt64) { self.holdDownNs = holdDownNs }

    /// A deviation of `severity` for `key` at event time `ts`.
    public mutating func observe(_ key: Key, at ts: UInt64, severity: Severity) -> Decision {
        if var e = episodes[key], !isOver(e, at: ts) {
            e.lastSeenAt = max(e.lastSeenAt, ts)
            e.occurrences += 1
            if severity > e.severity, !escalated.contains(key) {
                let from = e.severity
                e.severity = severity
                e.suppressed = 0
                episodes[key] = e
                escalated.insert(key)
                return .escalate(from: from)
            }
            e.suppressed += 1
            episodes[key] = e
            return .suppress
        }
        episodes[key] = Episode(startedAt: ts, lastSeenAt: ts, severity: severity)
        escalated.remove(key)
        return .open
    }

    /// Quiet for the hold-down at `now`; time running backwards (hostile or
    /// reordered timestamps) never ends an episode.
    func isOver(_ e: Episode, at now: UInt64) -> Bool {
        now >= e.lastSeenAt && now - e.lastSeenAt >= holdDownNs
    }

    /// The episode in progress for `key`, if any (whether or not its hold-down has passed).
    public func episode(_ key: Key) -> Episode? { episodes[key] }

    /// Ends the episodes quiet for the hold-down at event time `now` and
    /// returns them, ordered by key, so a detector can say they are over.
    public mutating func close(before now: UInt64) -> [(key: Key, episode: Episode)] {
        let ended = episodes.filter { isOver($0.value, at: now) }
            .map { (key: $0.key, episode: $0.value) }
            .sorted { $0.key < $1.key }
        for (k, _) in ended {
            episodes[k] = nil
            escalated.remove(k)
        }
        return ended
    }

    /// Episodes in progress, ordered by key.
    public var open: [(key: Key, episode: Episode)] {
        episodes.map { (key: $0.key, episode: $0.value) }.sorted { $0.key < $1.key }
    }
}

/// Checkpoints carry open episodes and escalations.
extension EpisodeTracker: Codable where Key: Codable {}

extension UInt64 {
    /// `self + n`, or UInt64.max where that would overflow (hostile timestamps).
    @inlinable public func addingClamped(_ n: UInt64) -> UInt64 {
        let (v, o) = addingReportingOverflow(n)
        return o ? .max : v
    }
}
