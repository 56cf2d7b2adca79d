import XCTest
import FlightboxEvents
import FlightboxFormat
import FlightboxRecorder

/// Supervision of a recorded command, with real child processes on the real
/// clock (a scripted source whose polls sleep their timeout).
final class CommandTests: XCTestCase {
    /// A quiet source that never ends by itself.
    private func quietSource(_ steps: [SyntheticSource.Step] = []) -> SyntheticSource {
        SyntheticSource(steps: steps, endsWithScript: false)
    }

    private func record(_ command: pid_t, source: SyntheticSource, writer: (any EventWriter)? = nil, stop: any StopRequests = ManualStopRequests(),
                        durationNs: UInt64? = nil, graceNs: UInt64? = nil, name: String = #function) throws -> Recorder.Outcome {
        var config = Recorder.Configuration(durationNs: durationNs, command: command)
        if let graceNs { config.killGraceNs = graceNs }
        let w = try writer ?? makeWriter(scratchPath(name.filter(\.isLetter) + ".fbt"))
        return Recorder(source: source, writer: w, stop: stop, configuration: config).run()
    }

    func testTheCommandsExitEndsTheRecordingWithItsStatus() throws {
        let child = try spawn(["/bin/sh", "-c", "exit 3"])
        let outcome = try record(child, source: quietSource(), durationNs: 30_000_000_000)
        XCTAssertEqual(outcome.reason, .commandExited)
        XCTAssertEqual(outcome.commandExitCode, 3)
        XCTAssertNil(outcome.error)
    }

    /// As timeout(1): SIGTERM at the end of the duration, and recording goes
    /// on until the command exits.
    func testTheDurationEndsTheCommandAsTimeoutDoes() throws {
        let child = try spawn(["/bin/sleep", "30"])
        let start = Date()
        let outcome = try record(child, source: quietSource(), durationNs: 300_000_000)
        XCTAssertEqual(outcome.reason, .commandExited)
        XCTAssertEqual(outcome.commandExitCode, 128 + SIGTERM)
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
    }

    /// A stop request goes to the command, which decides when recording ends.
    func testAStopRequestIsPassedOnToTheCommand() throws {
        let child = try spawn(["/bin/sleep", "30"])
        let stop = ManualStopRequests()
        let outcome = try record(child, source: quietSource([.idle, .action { stop.request(signal: SIGINT) }]), stop: stop,
                                 durationNs: 30_000_000_000)
        XCTAssertEqual(outcome.reason, .commandExited)
        XCTAssertEqual(outcome.commandExitCode, 128 + SIGINT)
    }

    /// A command that ignores the first request gets SIGKILL on the second.
    func testASecondStopRequestKillsTheCommand() throws {
        let child = try spawn(["/bin/sh", "-c", "trap '' INT TERM; exec /bin/sleep 30"])
        waitForExec(child, program: "/bin/sleep")
        let stop = ManualStopRequests()
        let outcome = try record(child, source: quietSource([.action { stop.request() }, .idle, .idle, .action { stop.request() }]),
                                 stop: stop, durationNs: 30_000_000_000)
        XCTAssertEqual(outcome.reason, .commandExited)
        XCTAssertEqual(outcome.commandExitCode, 128 + SIGKILL)
    }

    /// A command that ignores SIGTERM is killed when its grace runs out.
    func testACommandThatOutstaysItsGraceIsKilled() throws {
        let child = try spawn(["/bin/sh", "-c", "trap '' TERM; exec /bin/sleep 30"])
        waitForExec(child, program: "/bin/sleep")
        let start = Date()
        let outcome = try record(child, source: quietSource(), durationNs: 200_000_000, graceNs: 300_000_000)
        XCTAssertEqual(outcome.commandExitCode, 128 + SIGKILL)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 0.5)
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
    }

    /// The command never runs unrecorded: when writing fails, it is killed.
    func testAWriteErrorKillsTheCommand() throws {
        let child = try spawn(["/bin/sleep", "30"])
        var ts: UInt64 = 2_000_000_000
        let writer = FailingWriter(try makeWriter(scratchPath("command-full.fbt")), failAfter: 5)
        let outcome = try record(child, source: quietSource([.idle, .records(calls(10, from: &ts))]), writer: writer)
        XCTAssertEqual(outcome.reason, .writeFailed)
        XCTAssertEqual(outcome.commandExitCode, 128 + SIGKILL)
        XCTAssertEqual(kill(child, 0), -1, "reaped")
    }
}
