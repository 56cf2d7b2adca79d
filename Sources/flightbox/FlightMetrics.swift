#if canImport(Glibc)
import Glibc
#endif
import FlightboxRecorder
import Prometheus

/// The flight recorder's metrics in Prometheus text format, from its state at
/// the time of each export: a swift-prometheus registry whose counters are
/// moved up to the recorder's own totals and whose gauges are set.
final class FlightMetrics {
    private let state: FlightState
    private let registry = PrometheusCollectorRegistry()
    private var counters: [String: (Counter, Double)] = [:]
    private var gauges: [String: Gauge] = [:]

    init(state: FlightState) {
        self.state = state
    }

    /// The whole name as the metric name (the unit is in it already).
    private func descriptor(_ name: String, _ help: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
    }

    /// Brings a counter to `total` (counters only grow: a smaller total is ignored).
    private func count(_ name: String, _ help: String, _ labels: [(String, String)] = [], _ total: Double) {
        let key = name + labels.map { "\u{0}\($0.0)=\($0.1)" }.joined()
        let (counter, last) = counters[key] ?? (registry.makeCounter(descriptor: descriptor(name, help), labels: labels), 0)
        if total > last { counter.increment(by: total - last) }
        counters[key] = (counter, max(total, last))
    }

    private func gauge(_ name: String, _ help: String, _ labels: [(String, String)] = [], _ value: Double) {
        let key = name + labels.map { "\u{0}\($0.0)=\($0.1)" }.joined()
        let g = gauges[key] ?? registry.makeGauge(descriptor: descriptor(name, help), labels: labels)
        g.set(value)
        gauges[key] = g
    }

    /// The exposition text, refreshed from the recorder's state.
    func text() -> [UInt8] {
        refresh()
        return registry.emitToBuffer()
    }

    /// Writes the text for node_exporter's textfile collector: a temporary
    /// file beside `path`, renamed over it, so a scrape never reads half.
    func write(to path: String) {
        writeFileAtomically(path, text(), makeRoom: { self.state.ring.freeSpace() })
    }

    private func refresh() {
        let s = state
        let r = s.ring.statistics
        let d = s.dumps.statistics
        let segments = s.ring.segments
        let usage = ProcessUsage.current()
        count("flightbox_events_total", "Events written into segments.", [], Double(s.events))
        // Every CPU, losses or not, so a rate over the series starts at 0.
        let cpus = max(Int(sysconf(Int32(_SC_NPROCESSORS_CONF))), Int(s.lossesByCPU.keys.max() ?? 0) + 1)
        for cpu in 0..<cpus {
            count("flightbox_lost_events_total", "Events the kernel could not deliver, by CPU.", [("cpu", String(cpu))], Double(s.lossesByCPU[UInt16(cpu)] ?? 0))
        }
        count("flightbox_bytes_written_total", "Bytes written into segments.", [], Double(r.bytesWritten))
        count("flightbox_segments_started_total", "Segments started.", [], Double(r.segmentsStarted))
        for why in SegmentRing.Eviction.allCases {
            count("flightbox_segments_removed_total", "Segments removed, by reason (age, size, disk_full).", [("reason", why.rawValue)], Double(r.evicted[why] ?? 0))
        }
        gauge("flightbox_segments", "Segments on disk.", [], Double(segments.count))
        gauge("flightbox_segments_bytes", "Bytes the segments take on disk.", [], Double(segments.reduce(0) { $0 + $1.bytes }))
        gauge("flightbox_segments_max_bytes", "The segments' size budget (--max-size).", [], Double(s.ring.configuration.maxBytes))
        count("flightbox_disk_full_total", "Writes that met a full disk.", [], Double(r.diskFull))
        count("flightbox_events_dropped_total", "Events dropped because the disk was full and no segment was left to remove.", [], Double(r.eventsDropped))
        count("flightbox_dumps_total", "Dumps written.", [], Double(d.written))
        count("flightbox_dump_failures_total", "Dumps that could not be written.", [], Double(d.failed))
        count("flightbox_dump_triggers_total", "Dump triggers (findings, SIGUSR1, requests), including those that extended a dump or were rate-limited.", [], Double(d.triggers))
        count("flightbox_dump_triggers_rate_limited_total", "Dump triggers dropped by --dump-interval.", [], Double(d.rateLimited))
        let dumpsOnDisk = s.dumpsOnDisk
        gauge("flightbox_dumps", "Dumps on disk.", [], Double(dumpsOnDisk.count))
        gauge("flightbox_dumps_bytes", "Bytes the dumps take on disk.", [], Double(dumpsOnDisk.bytes))
        gauge("flightbox_dumps_max_bytes", "The dumps' size budget (--max-dump-bytes).", [], Double(s.dumps.configuration.maxBytes))
        count("flightbox_dumps_cut_total", "Dumps cut at --max-dump-bytes.", [], Double(d.cut))
        count("flightbox_dump_segments_lost_total", "Segments the ring removed (size budget, full disk) before a dump had copied them.", [], Double(d.segmentsLost))
        for key in s.findings.keys.sorted() {
            let parts = key.split(separator: "\u{0}", omittingEmptySubsequences: false)
            count("flightbox_findings_total", "Live findings, by detector and severity.", [("detector", String(parts[0])), ("severity", String(parts[1]))], Double(s.findings[key]!))
        }
        count("flightbox_process_cpu_seconds_total", "CPU time of the recorder (user and system).", [], usage.cpuSeconds)
        gauge("flightbox_process_resident_memory_bytes", "Resident memory of the recorder.", [], Double(usage.rssBytes))
        gauge("flightbox_process_max_resident_memory_bytes", "Peak resident memory of the recorder.", [], Double(usage.maxRSSBytes))
        gauge("flightbox_start_time_seconds", "When the recorder started, in seconds since the epoch.", [], Double(s.startedWallNs) / 1e9)
    }
}
