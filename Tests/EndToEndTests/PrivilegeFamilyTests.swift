import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

final class PrivilegeFamilyTests: XCTestCase {
    /// Known privilege and integrity calls, with credentials before and after.
    func testPrivilegeAndIntegrityCalls() throws {
        try requireBPF()
        let dir = try scratchDirectory("priv-dir")
        let trace = scratch("priv.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "privilege", "--", Tool.load, "privilege", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        let events = try eventsJSON(trace, ["--type", "privilege"])
        func one(_ op: String) throws -> JSON {
            let matches = events.filter { $0["op_name"]?.stringValue == op }
            XCTAssertEqual(matches.count, 1, "\(op): \(events.map { $0.serialized() })")
            return try XCTUnwrap(matches.first)
        }
        let setid = try one("setid")
        XCTAssertEqual(setid["syscall"]?.stringValue, "setuid")
        XCTAssertEqual(setid["fields"]?["old_uid"]?.uintValue, 0)
        XCTAssertEqual(setid["fields"]?["uid"]?.uintValue, 65534)
        XCTAssertEqual(setid["fields"]?["euid"]?.uintValue, 65534)
        // Root giving up uid 0 loses its capabilities (no SECBIT_KEEP_CAPS).
        XCTAssertNotEqual(setid["fields"]?["old_cap_permitted"]?.uintValue ?? 0, 0)
        XCTAssertEqual(setid["fields"]?["cap_permitted"]?.uintValue, 0)
        XCTAssertEqual(setid["fields"]?["cap_effective"]?.uintValue, 0)
        XCTAssertEqual(setid["fields"]?["ret"]?.intValue, 0)
        XCTAssertEqual(try one("chmod-exec")["strings"]?.arrayValue?.first?.stringValue, dir + "/flightbox-priv")
        XCTAssertEqual(try one("chmod-exec")["fields"]?["args"]?.arrayValue?[1].uintValue, 0o755, "only the chmod that adds exec bits")
        XCTAssertEqual(try one("memfd")["strings"]?.arrayValue?.first?.stringValue, "flightbox-memfd")
        XCTAssertEqual(try one("capset")["fields"]?["ret"]?.intValue, 0)
        // The same capabilities set again: the sets before and after are
        // equal and not empty (root), and nothing is added.
        let caps = try one("capset")["fields"]
        XCTAssertNotEqual(caps?["cap_permitted"]?.uintValue ?? 0, 0)
        for set in ["effective", "permitted", "inheritable"] {
            XCTAssertEqual(caps?["cap_" + set]?.uintValue, caps?["old_cap_" + set]?.uintValue, set)
        }
        XCTAssertEqual(try one("ptrace")["fields"]?["ret"]?.intValue, -3, "ESRCH")
        XCTAssertEqual(try one("ptrace")["fields"]?["args"]?.arrayValue?[1].uintValue, 999_999_999)
        XCTAssertEqual(try one("vm-write")["fields"]?["args"]?.arrayValue?[0].uintValue, 999_999_999)
        XCTAssertEqual(try one("module")["syscall"]?.stringValue, "finit_module")
        XCTAssertEqual(try one("bpf")["fields"]?["args"]?.arrayValue?[0].uintValue, 0, "BPF_MAP_CREATE")
        XCTAssertEqual(try one("mount")["strings"]?.arrayValue?.compactMap(\.stringValue), ["flightbox-src", dir + "/flightbox-mnt", "tmpfs"])
        let dup = try one("dup-stdio")
        XCTAssertEqual(dup["fields"]?["args"]?.arrayValue?[1].uintValue, 2, "only the dup onto a standard fd")
    }
}
