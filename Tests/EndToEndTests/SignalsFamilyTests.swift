import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

final class SignalsFamilyTests: XCTestCase {
    /// A known signal to a known pid: who sent it, to whom, what became of it.
    func testKnownSignalToKnownPid() throws {
        try requireBPF()
        let trace = scratch("signals.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "signals", "--",
                                              "/bin/sh", "-c", "sleep 5 & sleep 0.3; kill -USR1 $!; wait; exit 0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let signals = try eventsJSON(trace, ["--type", "signal"])
        let exits = try eventsJSON(trace, ["--type", "exit"])
        let sleeper = try XCTUnwrap(exits.first { $0["fields"]?["comm"]?.stringValue == "sleep" && $0["signal"]?.intValue == 10 }, "\(exits)")
        let victim = try XCTUnwrap(sleeper["pid"]?.uintValue)
        let sent = try XCTUnwrap(signals.first { $0["op_name"]?.stringValue == "generate" && $0["fields"]?["sig"]?.intValue == 10 }, "\(signals)")
        XCTAssertEqual(sent["signame"]?.stringValue, "SIGUSR1")
        XCTAssertEqual(sent["fields"]?["target_pid"]?.uintValue, victim)
        XCTAssertEqual(sent["fields"]?["target_comm"]?.stringValue, "sleep")
        XCTAssertEqual(sent["comm"]?.stringValue, "sh")
        XCTAssertEqual(sent["fields"]?["code"]?.intValue, 0, "SI_USER: kill(2)")
        XCTAssertEqual(sent["result_name"]?.stringValue, "delivered")
        XCTAssertEqual(sent["fields"]?["sender_uid"]?.uintValue, UInt64(getuid()))
        // The fatal signal is delivered in the victim (as SIGKILL to the group), and its parent gets SIGCHLD.
        XCTAssertTrue(signals.contains { $0["op_name"]?.stringValue == "deliver" && $0["pid"]?.uintValue == victim }, "\(signals)")
        XCTAssertTrue(signals.contains { $0["op_name"]?.stringValue == "generate" && $0["signame"]?.stringValue == "SIGCHLD" && $0["pid"]?.uintValue == victim })
    }
}
