import XCTest
#if canImport(Glibc)
import Glibc
#endif
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat
import FlightboxRecorder

/// A fresh path in this test process's scratch directory.
func scratchPath(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "flightbox-recorder-tests-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    let path = dir + "/" + name
    try? FileManager.default.removeItem(atPath: path)
    return path
}

let testSnapshot = ProcessSnapshot(timestamp: 1_000, processes: [
    ProcessRecord(pid: 42, ppid: 1, uid: 0, comm: "db", exe: "/usr/bin/db", argv: ["db"]),
])

func makeWriter(_ path: String) throws -> TraceWriter {
    var uts = utsname()
    uname(&uts)
    let machine = withUnsafeBytes(of: uts.machine) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
    let meta = TraceMetadata(host: "recorder-test", kernelRelease: "6.18", machine: machine, clockNs: 1_000,
                             realtimeNs: 1_700_000_000_000_000_000, capture: .object([("codec", .string("zstd"))]))
    return try TraceWriter(path: path, publish: .afterHeader, metadata: meta, snapshot: testSnapshot)
}

/// A trace's events as (sequence number, bytes), in stream order.
func storedEvents(_ path: String) throws -> [(seq: UInt64, bytes: [UInt8])] {
    let reader = try TraceReader(path: path)
    var out: [(UInt64, [UInt8])] = []
    reader.forEachEvent { out.append(($0.sequence, Array($0.bytes))) }
    XCTAssertEqual(reader.problems, [])
    return out
}

/// The findings of a replay of the trace at `path`, as JSON lines, as
/// `flightbox replay --format json` computes them.
func replayFindings(_ path: String, detectors: [Detector]) throws -> [String] {
    let reader = try TraceReader(path: path)
    let meta = reader.metadata
    let engine = DetectorEngine(detectors: detectors, snapshot: reader.snapshot, arch: SyscallArch(schema: meta.schema, machine: meta.machine))
    reader.forEachEvent { engine.process($0) }
    engine.finish()
    return engine.findings.map(\.jsonLine)
}

let nrRead = syscallNumber(named: "read")!
let nrGetppid = syscallNumber(named: "getppid")!

/// `n` getppid calls from pid `pid`, 10 µs apart from `ts` on; distinct
/// arguments make every record unique.
func calls(_ n: Int, from ts: inout UInt64, pid: UInt32 = 42, nr: UInt32 = nrGetppid, duration: UInt64 = 1_000) -> [[UInt8]] {
    (0..<n).map { i in
        ts += 10_000
        return EventEncoder.syscall(ts: ts, pid: pid, tid: pid, nr: nr, duration: duration + UInt64(i % 3) * 1_000, args: [ts])
    }
}

/// Splits records into steps of `perStep`.
func steps(_ records: [[UInt8]], perStep: Int) -> [SyntheticSource.Step] {
    stride(from: 0, to: records.count, by: perStep).map { .records(Array(records[$0..<min($0 + perStep, records.count)])) }
}

/// Wraps a TraceWriter and fails like a full disk after `failAfter` appends.
final class FailingWriter: EventWriter {
    let inner: TraceWriter
    let failAfter: Int
    private(set) var appended = 0
    private(set) var closed = false

    init(_ inner: TraceWriter, failAfter: Int) {
        self.inner = inner
        self.failAfter = failAfter
    }

    var nextSequence: UInt64 { inner.nextSequence }

    func append(_ record: UnsafeRawBufferPointer) throws -> UInt64 {
        guard appended < failAfter else { throw TraceError.diskFull(path: inner.path) }
        appended += 1
        return try inner.append(record)
    }

    func flush() throws { try inner.flush() }

    func close() throws {
        closed = true
        try inner.close()
    }
}

/// A sampler like the gauge sampler: one record per sample, stamped with the
/// clock's time, counting its samples in `value`.
final class CountingSampler: PeriodicSampler {
    let intervalNs: UInt64
    private(set) var samples: [UInt64] = []

    init(intervalNs: UInt64) { self.intervalNs = intervalNs }

    func sample(at ts: UInt64) -> [[UInt8]] {
        samples.append(ts)
        return [EventEncoder.gauge(ts: ts, kind: .load, value: UInt64(samples.count), limit: 200)]
    }
}

/// Starts `argv` (a full path first) with default signal handling, whatever
/// the test runner's.
func spawn(_ argv: [String]) throws -> pid_t {
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var defaults = sigset_t()
    sigemptyset(&defaults)
    sigaddset(&defaults, SIGTERM)
    sigaddset(&defaults, SIGINT)
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigdefault(&attr, &defaults)
    posix_spawnattr_setsigmask(&attr, &empty)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
    var pid: pid_t = 0
    let cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
    defer { for p in cargs { free(p) } }
    let rc = posix_spawn(&pid, argv[0], nil, &attr, cargs, environ)
    guard rc == 0 else { throw XCTSkip("cannot run \(argv[0]): \(String(cString: strerror(rc)))") }
    return pid
}

/// Waits (up to 5 s) until `pid` runs `program`: its exec is done.
func waitForExec(_ pid: pid_t, program: String) {
    let deadline = Date().addingTimeInterval(5)
    while Date() < deadline {
        if let d = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
           d.split(separator: 0).first.map({ String(decoding: $0, as: UTF8.self) }) == program { return }
        usleep(5_000)
    }
}
