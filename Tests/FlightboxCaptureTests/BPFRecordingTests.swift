import XCTest
#if canImport(Glibc)
import Glibc
#endif
import CFlightboxSys
import FlightboxCapture
import FlightboxEvents
import FlightboxFormat
import FlightboxRecorder

/// BPF tests run for real where they can; with FLIGHTBOX_REQUIRE_BPF=1 (CI) a
/// test that cannot run fails instead of skipping. The rule of
/// Tests/EndToEndTests/Harness.swift, less its check for the built binary.
func requireBPF(file: StaticString = #filePath, line: UInt = #line) throws {
    var reason: String?
    if geteuid() != 0 { reason = "needs root for BPF" }
    else if !FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux") { reason = "kernel has no BTF" }
    guard let reason else { return }
    if ProcessInfo.processInfo.environment["FLIGHTBOX_REQUIRE_BPF"] == "1" {
        XCTFail("FLIGHTBOX_REQUIRE_BPF=1 but this BPF test cannot run: \(reason)", file: file, line: line)
        throw XCTSkip("failed above")
    }
    throw XCTSkip("BPF test skipped: \(reason) (set FLIGHTBOX_REQUIRE_BPF=1 to make this a failure)")
}

/// The real capture through the recorder, as `record -- COMMAND` runs it.
final class BPFRecordingTests: XCTestCase {
    func testACommandsExecIsRecordedThroughTheRecorder() throws {
        try requireBPF()
        do { try Preflight.check() } catch {
            if ProcessInfo.processInfo.environment["FLIGHTBOX_REQUIRE_BPF"] == "1" { XCTFail("BPF cannot run: \(error)") }
            throw XCTSkip("BPF test skipped: \(error)")
        }
        let dir = NSTemporaryDirectory() + "flightbox-capture-tests-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/true.fbt"
        try? FileManager.default.removeItem(atPath: path)

        // Gated as `record` does it: the command execs only once it is tracked.
        var gate: Int32 = -1
        var argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { for p in argv { free(p) } }
        let child = fb_spawn_gated(&argv, &gate)
        XCTAssertGreaterThan(child, 0, "spawn: \(String(cString: strerror(-child)))")
        guard child > 0 else { return }
        var config = CaptureConfig()
        config.families = [.process]
        config.ringBytes = 1 << 20
        config.filter = .tracked([UInt32(child)])
        let capture: BPFCapture
        do {
            capture = try BPFCapture(config: config)
            try capture.attach()
        } catch {
            kill(child, SIGKILL)
            var st: Int32 = 0
            waitpid(child, &st, 0)
            throw error
        }
        let meta = TraceMetadata(host: "capture-test", kernelRelease: "", machine: "", clockNs: monotonicNow(), realtimeNs: realTimeNow(), capture: config.filter.json)
        let writer = try TraceWriter(path: path, metadata: meta, snapshot: ProcessSnapshot(timestamp: monotonicNow(), processes: []))
        _ = fb_spawn_release(gate)
        let outcome = Recorder(source: BPFCaptureSource(capture), writer: writer, stop: ManualStopRequests(),
                               configuration: .init(durationNs: 20_000_000_000, command: child)).run()
        XCTAssertNil(outcome.error)
        XCTAssertEqual(outcome.reason, .commandExited)
        XCTAssertEqual(outcome.commandExitCode, 0)
        XCTAssertEqual(capture.totalLost, 0)

        let reader = try TraceReader(path: path)
        XCTAssertTrue(reader.closedCleanly)
        var execs: [(pid: UInt32, filename: String)] = []
        var exits: [UInt32] = []
        reader.forEachEvent { e in
            if let x = e.as(ExecRecord.self) { execs.append((e.pid, x.filename)) }
            if let x = e.as(ExitRecord.self), x.isGroupExit { exits.append(e.pid) }
        }
        XCTAssertEqual(execs.map(\.filename), ["/bin/true"])
        XCTAssertEqual(execs.first?.pid, UInt32(child))
        XCTAssertEqual(exits, [UInt32(child)], "its exit is drained at shutdown")
    }
}
