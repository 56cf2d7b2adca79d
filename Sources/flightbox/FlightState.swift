#if canImport(Glibc)
import Glibc
#endif
import CFlightboxSys
import FlightboxCapture
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat
import FlightboxRecorder

/// What the flight recorder reports about itself: counted from the written
/// stream (events, losses by CPU), the findings, the ring and the dumps;
/// written to DIR/status.json (for `flight status`) and exported as metrics.
final class FlightState {
    let directory: String
    let ring: SegmentRing
    let dumps: FlightDumps
    let capture: BPFCapture
    let pid = getpid()
    let startedWallNs = realTimeNow()

    private(set) var events: UInt64 = 0
    private(set) var lossesByCPU: [UInt16: UInt64] = [:]
    private(set) var losses: UInt64 = 0
    /// Findings by detector and severity ("detector\u{0}severity").
    private(set) var findings: [String: UInt64] = [:]
    private(set) var lastFinding: Finding?
    private(set) var eventsPerSecond: Double = 0
    private var rateSince: (ns: UInt64, events: UInt64)?
    private let lossType = EventType.loss.rawValue

    init(directory: String, ring: SegmentRing, dumps: FlightDumps, capture: BPFCapture) {
        self.directory = directory
        self.ring = ring
        self.dumps = dumps
        self.capture = capture
    }

    /// Every written event: one count, and the loss records' counts by CPU.
    @inline(__always)
    func observe(_ e: Event) {
        events &+= 1
        if e.rawType == lossType, let loss = e.as(LossRecord.self) {
            lossesByCPU[e.cpu, default: 0] &+= loss.lost
            losses &+= loss.lost
        }
    }

    func finding(_ f: Finding) {
        findings[f.detector + "\u{0}" + f.severity.rawValue, default: 0] += 1
        lastFinding = f
    }

    /// Events per second since the last update.
    func update(now: UInt64) {
        if let since = rateSince, now > since.ns {
            eventsPerSecond = Double(events - since.events) * 1e9 / Double(now - since.ns)
        }
        rateSince = (now, events)
    }

    /// Dumps in DIR/dumps: how many, how many bytes.
    var dumpsOnDisk: (count: Int, bytes: UInt64) {
        let found = FlightDumps.onDisk(FlightFiles.dumps(directory))
        return (found.count, found.reduce(0) { $0 + $1.bytes })
    }

    func statusJSON(running: Bool) -> JSON {
        let segments = ring.segments
        let r = ring.statistics
        let d = dumps.statistics
        let onDisk = dumpsOnDisk
        let usage = ProcessUsage.current()
        var fields: [(String, JSON)] = [
            ("running", .bool(running)), ("pid", .int(Int64(pid))),
            ("started_at", .string(formatWallClock(Int64(startedWallNs)))), ("updated_at", .string(formatWallClock(Int64(realTimeNow())))),
            ("directory", .string(directory)),
            ("segments", .int(Int64(segments.count))), ("segment_bytes", .uint(segments.reduce(0) { $0 + $1.bytes })),
            ("max_bytes", .uint(ring.configuration.maxBytes)),
            ("events", .uint(events)), ("events_per_second", .double((eventsPerSecond * 1000).rounded() / 1000)),
            ("losses", .uint(losses)),
            ("losses_by_cpu", .object(lossesByCPU.keys.sorted().map { (String($0), .uint(lossesByCPU[$0]!)) })),
            ("bytes_written", .uint(r.bytesWritten)),
            ("segments_evicted", .object(SegmentRing.Eviction.allCases.map { ($0.rawValue, .uint(r.evicted[$0] ?? 0)) })),
            ("disk_full", .uint(r.diskFull)), ("dropped_for_disk_full", .uint(r.eventsDropped)),
            ("dumps", .object([
                ("written", .uint(d.written)), ("on_disk", .int(Int64(onDisk.count))), ("bytes", .uint(onDisk.bytes)),
                ("max_dumps", .int(Int64(dumps.configuration.maxDumps))), ("max_bytes", .uint(dumps.configuration.maxBytes)),
                ("triggers", .uint(d.triggers)), ("extended", .uint(d.extended)), ("rate_limited", .uint(d.rateLimited)),
                ("failed", .uint(d.failed)), ("removed", .uint(d.removed)), ("cut", .uint(d.cut)), ("segments_lost", .uint(d.segmentsLost)),
                ("in_progress", .bool(dumps.isBusy)),
            ] + (d.last.map { [("last", .object([("path", .string($0.path)), ("events", .uint($0.events)), ("bytes", .uint($0.bytes)),
                                                  ("reason", .string($0.triggers.first?.reason ?? ""))]))] } ?? [])
              + (d.lastError.map { [("last_error", .string($0))] } ?? []))),
            ("cpu_seconds", .double((usage.cpuSeconds * 1000).rounded() / 1000)), ("rss_bytes", .uint(usage.rssBytes)), ("max_rss_bytes", .uint(usage.maxRSSBytes)),
        ]
        if let f = lastFinding {
            fields.append(("last_finding", .object([("at", .string(formatWallClock(wallClock(f.ts)))), ("finding", f.json)])))
        }
        return .object(fields)
    }

    /// Event time to wall-clock time, through the clocks' offset now.
    private func wallClock(_ ts: UInt64) -> Int64 {
        Int64(bitPattern: realTimeNow() &+ ts &- monotonicNow())
    }

    func writeStatus(running: Bool) {
        var text = statusJSON(running: running).serialized()
        text += "\n"
        writeFileAtomically(FlightFiles.status(directory), Array(text.utf8), makeRoom: { self.ring.freeSpace() })
    }
}

/// The recorder's own CPU time and memory.
struct ProcessUsage {
    var cpuSeconds: Double
    var rssBytes: UInt64
    var maxRSSBytes: UInt64

    static func current() -> ProcessUsage {
        var ru = rusage()
        getrusage(RUSAGE_SELF.rawValue, &ru)
        let cpu = Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6 + Double(ru.ru_stime.tv_sec) + Double(ru.ru_stime.tv_usec) / 1e6
        var rss: UInt64 = 0
        // statm's second field: resident pages.
        let fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC)
        if fd >= 0 {
            var buf = [UInt8](repeating: 0, count: 256)
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            close(fd)
            if n > 0 {
                let fields = String(decoding: buf[0..<n], as: UTF8.self).split(separator: " ")
                if fields.count > 1, let pages = UInt64(fields[1]) { rss = pages * UInt64(sysconf(Int32(_SC_PAGESIZE))) }
            }
        }
        return ProcessUsage(cpuSeconds: cpu, rssBytes: rss, maxRSSBytes: UInt64(ru.ru_maxrss) * 1024)
    }
}

/// The recorder's end of the control socket (DIR/control.sock): each
/// connection sends one line, "dump REASON", and gets one line back.
final class ControlChannel {
    let path: String
    private var fd: Int32 = -1
    private var connections: Connections?
    private(set) var error: String?

    init(path: String) {
        self.path = path
        let r = fb_unix_listen(path)
        if r < 0 { error = String(cString: strerror(-r)) } else { fd = r; connections = Connections(listener: r, maxRequestBytes: 4096) }
    }

    /// Answers the requests complete by now and moves the others on, never
    /// waiting for a client; `dump` gets the reason and returns the reply.
    func serve(now: UInt64, _ dump: (String) -> String) {
        connections?.serve(now: now, complete: { $0.contains(10) }) { line in
            let text = String(decoding: line.prefix(while: { $0 != 10 }), as: UTF8.self)
            let reply: String
            if text == "dump" || text.hasPrefix("dump ") {
                reply = "ok " + dump(String(text.dropFirst(4).drop(while: { $0 == " " })))
            } else {
                reply = "error: unknown request '\(text.prefix(64))' (this recorder knows: dump REASON)"
            }
            return Array((reply + "\n").utf8)
        }
    }

    func close() {
        connections = nil
        if fd >= 0 {
            Glibc.close(fd)
            unlink(path)
        }
        fd = -1
    }
}

/// A minimal HTTP/1.0 responder for Prometheus scrapes on a loopback
/// address: every request gets the metrics text, then the connection closes.
final class MetricsServer {
    enum Failure: Error, CustomStringConvertible {
        case listen(String, Int, Int32)
        var description: String {
            switch self {
            case .listen(let a, let p, let e): "--metrics: cannot listen on \(a):\(p): \(String(cString: strerror(e)))"
            }
        }
    }

    private let fd: Int32
    private let connections: Connections

    init(address: String, port: Int) throws {
        let r = fb_tcp_listen(address, Int32(port))
        guard r >= 0 else { throw Failure.listen(address, port, -r) }
        fd = r
        connections = Connections(listener: r)
    }

    deinit { Glibc.close(fd) }

    /// Answers the scrapes whose request head is complete by now; never waits.
    func serve(now: UInt64, _ body: () -> [UInt8]) {
        // The request head ends at its blank line; its path does not matter.
        connections.serve(now: now, complete: { $0.count >= 2 && ($0.suffix(4).elementsEqual([13, 10, 13, 10]) || $0.suffix(2).elementsEqual([10, 10])) }) { _ in
            let text = body()
            var response = Array("HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: \(text.count)\r\nConnection: close\r\n\r\n".utf8)
            response += text
            return response
        }
    }
}
