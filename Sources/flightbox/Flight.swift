import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import CFlightboxSys
import FlightboxCapture
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat
import FlightboxRecorder

/// `flightbox flight`: the flight recorder, and `flight status`.
struct Flight: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record continuously into a bounded ring of segments; dump the minutes around a trigger.",
        subcommands: [FlightRun.self, FlightStatusCommand.self],
        defaultSubcommand: FlightRun.self
    )
}

/// The files of a flight directory.
enum FlightFiles {
    static func lock(_ dir: String) -> String { dir + "/flight.lock" }
    static func pid(_ dir: String) -> String { dir + "/flight.pid" }
    static func status(_ dir: String) -> String { dir + "/status.json" }
    static func socket(_ dir: String) -> String { dir + "/control.sock" }
    static func dumps(_ dir: String) -> String { dir + "/dumps" }
}

struct FlightRun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the flight recorder (the default of `flightbox flight`).",
        discussion: """
        DIR holds a ring of self-contained trace segments (seg-NNNNNNNNNNNN.fbt), removed oldest first by age \
        (--keep) and by total size (--max-size); dumps go to DIR/dumps. A dump is triggered by a live finding at \
        or above --dump-on, by SIGUSR1, or by `flightbox dump --dir DIR`. Runs until SIGINT or SIGTERM; pending \
        dumps are written before it exits. After a kill, starting again in DIR repairs the segment left open.
        """
    )

    @Option(help: "Directory of the segments, dumps and status (created mode 0700 if missing).")
    var dir: String

    @Option(help: "Keep segments this long (e.g. 10m, 1h).")
    var keep: String = "10m"

    @Option(help: "Most bytes the segments may take (e.g. 512M, 2G); segments are removed oldest first beyond it.")
    var maxSize: String = "1G"

    @Option(help: "Start a new segment this often (e.g. 1m).")
    var segment: String = "1m"

    @Option(help: "How much before a trigger a dump holds.")
    var pre: String = "5m"

    @Option(help: "How much after a trigger a dump holds; a trigger meanwhile extends it.")
    var post: String = "30s"

    @Option(help: "Findings at or above this severity trigger a dump: info, warning, critical, or none.")
    var dumpOn: String = "critical"

    @Option(help: "Dumps to keep in DIR/dumps (oldest removed first).")
    var maxDumps: Int = 10

    @Option(help: "Most bytes the dumps in DIR/dumps may take (e.g. 512M; default: --max-size): the oldest are removed first to make room, and a dump is cut at this size.")
    var maxDumpBytes: String?

    @Option(help: "At most one new dump this often; triggers in between are counted and dropped.")
    var dumpInterval: String = "1m"

    @Option(help: "Detectors to run, comma-separated (default: every enabled one).")
    var detectors: String?

    @Option(help: "Configuration file (YAML; see `flightbox detectors --default-config`): the detectors' settings and the application health checks (probes:), attached while recording. Stored in each segment.")
    var config: String?

    @Option(name: .customLong("rules"), help: ArgumentHelp("Security rules file (YAML, repeatable), over the built-in rules; stored in each segment: see rules/default.yaml.", valueName: "file"))
    var rules: [String] = []

    @Option(help: "Also write the live findings to this file as JSON lines, as `replay --format json` prints them.")
    var findings: String?

    @Option(help: "Write metrics in Prometheus text format to this file every --status-interval (node_exporter textfile collector; replaced atomically).")
    var metricsFile: String?

    @Option(help: "Serve metrics in Prometheus text format over HTTP on this loopback address, e.g. 127.0.0.1:9464.")
    var metrics: String?

    @Option(help: "How often the status file (and metrics file) is rewritten.")
    var statusInterval: String = "1s"

    @OptionGroup var capture: CaptureOptions

    func validate() throws {
        let keepNs = try parseDuration(keep, flag: "--keep", example: "10m")
        let segmentNs = try parseDuration(segment, flag: "--segment", example: "1m")
        let preNs = try parseDuration(pre, flag: "--pre", example: "5m")
        _ = try parseDuration(post, flag: "--post", example: "30s")
        _ = try parseDuration(dumpInterval, flag: "--dump-interval", example: "1m")
        if try parseDuration(statusInterval, flag: "--status-interval", example: "1s") < 100_000_000 {
            throw ValidationError("--status-interval: '\(statusInterval)' is too short (at least 100ms)")
        }
        if segmentNs < 1_000_000_000 { throw ValidationError("--segment: '\(segment)' is too short (at least 1s)") }
        if segmentNs > keepNs { throw ValidationError("--segment (\(segment)) is longer than --keep (\(keep))") }
        if preNs > keepNs { throw ValidationError("--pre (\(pre)) is longer than --keep (\(keep)): the segments would be gone before a dump reads them") }
        let size = try parseSize(maxSize, flag: "--max-size")
        if size < 1 << 20 { throw ValidationError("--max-size: '\(maxSize)' is too small (at least 1M)") }
        if dumpOn != "none", Severity(rawValue: dumpOn) == nil {
            throw ValidationError("--dump-on: '\(dumpOn)' is not info, warning, critical or none")
        }
        try checkRange(maxDumps, 1...100_000, flag: "--max-dumps")
        if let maxDumpBytes, try parseSize(maxDumpBytes, flag: "--max-dump-bytes") < 1 << 20 {
            throw ValidationError("--max-dump-bytes: '\(maxDumpBytes)' is too small (at least 1M)")
        }
        if let metrics { _ = try parseListenAddress(metrics) }
        _ = try detectorNames(detectors)
    }

    func run() throws {
        // SIGUSR1 is counted from the start: its default action would kill
        // the recorder that someone (systemctl kill -s USR1) asks for a dump.
        fb_dump_signals_install()
        var config = try capture.captureConfig()
        // The rules are stored whole in each segment (the built-ins included), so its replay runs them.
        let fileConfig = try self.config.map(loadDetectorConfiguration) ?? .defaults
        let detectorConfig = withRules(try loadRuleSources(rules, over: fileConfig), fileConfig)
        let names = try detectorNames(detectors)
        let detectorList = try detectorConfig.makeDetectors(only: names)
        let checks = detectorConfig["health"]?.checks ?? []
        applyHealthChecks(checks, to: &config)
        let dumpOn = Severity(rawValue: self.dumpOn)

        // The directory, its lock (one recorder per directory) and the kernel, before anything is written.
        if mkdir(dir, 0o700) != 0, errno != EEXIST { throw fail("cannot create \(dir): \(String(cString: strerror(errno)))") }
        let lockPath = FlightFiles.lock(dir)
        let lockFd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        if lockFd < 0 { throw fail("cannot create \(lockPath): \(String(cString: strerror(errno)))") }
        close(lockFd)
        let lock: FileLock
        do { lock = try FileLock(path: lockPath) } catch let e as TraceError {
            if case .busy(_, let holder) = e {
                throw fail("\(dir) is in use by another flight recorder\(holder.map { " (pid \($0))" } ?? ""); stop it or choose another --dir")
            }
            throw fail(e.description)
        }
        defer { lock.release() }
        do { try Preflight.check(btfPath: capture.btf) } catch let e as CaptureError { throw fail(e.description) }
        let bpf: BPFCapture
        do { bpf = try startCapture(config) } catch let e as CaptureError { throw fail(e.description) }

        let detectorsJSON = detectorConfig.asRun(names).json
        let options = capture
        let keepNs = parseDuration(keep)!
        let maxBytes = try parseSize(maxSize, flag: "--max-size")
        var ringConfig = SegmentRing.Configuration(directory: dir)
        ringConfig.segmentNs = parseDuration(segment)!
        // A segment is at most a quarter of the budget, so the ring keeps a few.
        ringConfig.segmentBytes = max(maxBytes / 4, 256 << 10)
        ringConfig.keepNs = keepNs
        ringConfig.maxBytes = maxBytes
        ringConfig.codec = capture.blockCodec
        ringConfig.level = capture.level
        // One clock pair for the run: the live detectors map event time to
        // wall-clock time with it, and so do replays of any segment or dump.
        let clock = (monotonicNs: monotonicNow(), realtimeNs: realTimeNow())
        var firstSnapshot: ProcessSnapshot?
        var firstMetadata: TraceMetadata?
        let ring: SegmentRing
        do {
            ring = try SegmentRing(configuration: ringConfig, header: { number, firstSequence in
                let start = monotonicNow()
                let metadata = captureMetadata(options: options, config: config, capture: bpf, detectors: detectorsJSON, healthChecks: checks,
                                               extra: [("flight_segment", .object([("number", .uint(number)), ("start_ts_ns", .uint(start)), ("first_sequence", .uint(firstSequence)),
                                                                                    ("keep_ns", .uint(keepNs)), ("max_bytes", .uint(maxBytes))]))],
                                               clock: clock)
                let snapshot = processSnapshot(at: start)
                if firstSnapshot == nil { firstSnapshot = snapshot; firstMetadata = metadata }
                return (metadata, snapshot)
            }, notice: { FileHandleStderr.write("flightbox: \($0)\n") })
        } catch let e as TraceError { throw fail(e.description) }

        var dumpConfig = FlightDumps.Configuration(directory: FlightFiles.dumps(dir))
        dumpConfig.preNs = parseDuration(pre)!
        dumpConfig.postNs = parseDuration(post)!
        dumpConfig.maxPostNs = max(dumpConfig.postNs, keepNs - dumpConfig.preNs)
        dumpConfig.minIntervalNs = parseDuration(dumpInterval)!
        dumpConfig.maxDumps = maxDumps
        dumpConfig.maxBytes = try maxDumpBytes.map { try parseSize($0, flag: "--max-dump-bytes") } ?? maxBytes
        dumpConfig.findingsRetainNs = keepNs + ringConfig.segmentNs
        dumpConfig.codec = capture.blockCodec
        dumpConfig.level = capture.level
        let dumps: FlightDumps
        do { dumps = try FlightDumps(configuration: dumpConfig, notice: { FileHandleStderr.write("flightbox: \($0)\n") }) } catch let e as TraceError {
            throw fail(e.description)
        }
        dumps.makeRoom = { ring.freeSpace() }

        let state = FlightState(directory: dir, ring: ring, dumps: dumps, capture: bpf)
        let out = Output()
        var findingsFd: Int32 = -1
        if let findings {
            findingsFd = open(findings, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            if findingsFd < 0 { throw fail("cannot create \(findings): \(String(cString: strerror(errno)))") }
        }
        defer { if findingsFd >= 0 { close(findingsFd) } }
        let metadata = firstMetadata ?? captureMetadata(options: options, config: config, capture: bpf, healthChecks: checks, clock: clock)
        let engine = detectorEngine(detectorList, snapshot: firstSnapshot ?? processSnapshot(at: monotonicNow()), metadata: metadata, keepsFindings: false) { f in
            out.line(formatFinding(f, metadata: metadata))
            out.flush()
            if findingsFd >= 0 {
                let line = Array((f.jsonLine + "\n").utf8)
                _ = line.withUnsafeBytes { write(findingsFd, $0.baseAddress, $0.count) }
            }
            state.finding(f)
            dumps.observe(f)
            if let dumpOn, f.severity >= dumpOn {
                dumps.trigger(.init(kind: .finding, ts: f.ts, reason: "\(f.severity.rawValue) \(f.detector): \(f.summary)", finding: f))
            }
        }

        // Each segment starts with the live detectors' state before its
        // first record, so a segment or a dump replays with the live findings.
        let asRun = detectorConfig.asRun(names)
        var checkpointNs: UInt64 = 0, checkpointMaxNs: UInt64 = 0
        ring.checkpoint = {
            // Before the first record the detectors know nothing a replay would not.
            guard engine.eventsSeen > 0 else { return nil }
            let t0 = monotonicNow()
            defer {
                let took = monotonicNow() - t0
                checkpointNs += took
                checkpointMaxNs = max(checkpointMaxNs, took)
            }
            do { return (try engine.checkpoint(configuration: asRun), engine.context.now) } catch {
                FileHandleStderr.write("flightbox: no detector checkpoint for the next segment: \(error)\n")
                return nil
            }
        }

        let control = ControlChannel(path: FlightFiles.socket(dir))
        if let error = control.error { FileHandleStderr.write("flightbox: warning: no control socket (\(error)); `flightbox dump` will signal the recorder instead\n") }
        var metricsServer: MetricsServer?
        if let metrics {
            let (address, port) = try parseListenAddress(metrics)
            do { metricsServer = try MetricsServer(address: address, port: port) } catch let e as MetricsServer.Failure { throw fail(e.description) }
        }
        writePidFile(FlightFiles.pid(dir))

        StopSignals.install()
        // A dump asked for while the probes loaded is taken at the first turn.
        var signalsSeen: Int32 = 0
        let statusEvery = parseDuration(statusInterval)!
        var nextStatus: UInt64 = 0
        let exporter = FlightMetrics(state: state)
        FileHandleStderr.write("flightbox: flight recording \(config.filter.summary) into \(dir) (keep \(keep), max \(maxSize), segments of \(segment); at most \(maxDumps) dumps of \(maxDumpBytes ?? maxSize) in all, each of \(pre) before and \(post) after a trigger\(dumpOn.map { ", on \($0.rawValue) findings" } ?? ""))\n")

        let recorder = Recorder(
            source: BPFCaptureSource(bpf), writer: ring, engine: engine, sampler: gaugeSampler(options: options, config: config),
            observer: { e in state.observe(e) },
            housekeeping: { now in
                ring.maintain(now: now)
                let signals = fb_dump_signals_count()
                if signals != signalsSeen {
                    signalsSeen = signals
                    dumps.trigger(.init(kind: .signal, ts: now, reason: "SIGUSR1"))
                }
                control.serve(now: now) { reason in
                    switch dumps.trigger(.init(kind: .request, ts: monotonicNow(), reason: reason.isEmpty ? "flightbox dump" : reason)) {
                    case .started(let name): "started \(name)"
                    case .extended(let name): "extended \(name)"
                    case .rateLimited: "rate-limited: a dump started less than \(dumpInterval) ago"
                    }
                }
                dumps.poll(ring: ring)
                metricsServer?.serve(now: now) { exporter.text() }
                if now >= nextStatus {
                    nextStatus = now &+ statusEvery
                    state.update(now: now)
                    state.writeStatus(running: true)
                    if let metricsFile { exporter.write(to: metricsFile) }
                }
            }
        )
        let outcome = recorder.run()
        dumps.finish(ring: ring)
        out.flush()
        state.update(now: monotonicNow())
        state.writeStatus(running: false)
        if let metricsFile { exporter.write(to: metricsFile) }
        control.close()
        unlink(FlightFiles.pid(dir))
        let s = ring.statistics
        FileHandleStderr.write("flightbox: flight recorder stopped: \(s.eventsWritten) events in \(s.segmentsStarted) segments, \(bpf.totalLost) lost, \(s.eventsDropped) dropped for a full disk, \(dumps.statistics.written) dumps\n")
        if s.checkpoints > 0 {
            FileHandleStderr.write("flightbox: \(s.checkpoints) detector checkpoints, \(s.checkpointBytes / s.checkpoints) bytes and \(formatDuration(checkpointNs / s.checkpoints)) each on average (largest time \(formatDuration(checkpointMaxNs)))\n")
        }
        if let error = outcome.error { throw fail(error.description) }
    }
}

/// "127.0.0.1:9464" or "[::1]:9464".
func parseListenAddress(_ s: String) throws -> (String, Int) {
    guard let colon = s.lastIndex(of: ":") else { throw ValidationError("--metrics: '\(s)' is not ADDRESS:PORT (e.g. 127.0.0.1:9464)") }
    var host = String(s[..<colon])
    if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard let port = Int(s[s.index(after: colon)...]), (1...65535).contains(port) else {
        throw ValidationError("--metrics: '\(s)' has no port from 1 to 65535")
    }
    let loopback = host.hasPrefix("127.") || host == "::1" || host == "localhost"
    guard loopback else { throw ValidationError("--metrics: '\(host)' is not a loopback address (metrics are served on 127.0.0.0/8 or ::1 only)") }
    return (host == "localhost" ? "127.0.0.1" : host, port)
}

/// "1G", "512M", "64K", "1048576", "2GiB": bytes, powers of 1024.
func parseSize(_ s: String, flag: String) throws -> UInt64 {
    var text = s.uppercased()
    if text.hasSuffix("IB") { text.removeLast(2) } else if text.hasSuffix("B") { text.removeLast() }
    var scale: Double = 1
    for (suffix, v) in [("K", 1024.0), ("M", 1024.0 * 1024), ("G", 1024.0 * 1024 * 1024), ("T", 1024.0 * 1024 * 1024 * 1024)] where text.hasSuffix(suffix) {
        scale = v
        text.removeLast()
    }
    guard let v = Double(text), v >= 0, v.isFinite, v * scale < Double(UInt64.max / 2) else {
        throw ValidationError("\(flag): cannot read '\(s)' (try 512M or 2G)")
    }
    return UInt64(v * scale)
}

func writePidFile(_ path: String) {
    let text = "\(getpid())\n"
    writeFileAtomically(path, Array(text.utf8))
}

/// Writes `bytes` beside `path` and renames it there, after fsync: readers
/// see the old file or the new one, never half of one. On a full disk,
/// `makeRoom` may free space (the ring's oldest segment) for another try.
@discardableResult
func writeFileAtomically(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644, makeRoom: (() -> Bool)? = nil) -> Bool {
    while true {
        let e = writeFileAtomicallyOnce(path, bytes, mode: mode)
        if e == 0 { return true }
        guard e == ENOSPC || e == EDQUOT, makeRoom?() == true else { return false }
    }
}

/// One try of `writeFileAtomically`: 0 or the errno that stopped it.
private func writeFileAtomicallyOnce(_ path: String, _ bytes: [UInt8], mode: mode_t) -> Int32 {
    let (dir, name) = { () -> (String, String) in
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        return (String(path[..<slash]).isEmpty ? "/" : String(path[..<slash]), String(path[path.index(after: slash)...]))
    }()
    let tmp = "\(dir)/.\(name).\(getpid()).tmp"
    let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { return errno }
    var off = 0
    var failure: Int32 = 0
    while off < bytes.count {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + off, $0.count - off) }
        if n < 0, errno == EINTR { continue }
        if n <= 0 { failure = n == 0 ? ENOSPC : errno; break }
        off += n
    }
    fchmod(fd, mode)
    if failure == 0, fsync(fd) != 0 { failure = errno }
    close(fd)
    if failure == 0, rename(tmp, path) != 0 { failure = errno }
    if failure != 0 { unlink(tmp) }
    return failure
}
