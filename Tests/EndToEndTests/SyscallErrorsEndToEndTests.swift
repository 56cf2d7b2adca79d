import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

/// syscall-errors on a real recording: the determinism contract.
final class SyscallErrorsEndToEndTests: XCTestCase {
    /// dd fills a 1 MiB tmpfs: one ENOSPC warning, live and on replay byte-identical.
    func testENOSPCIsOneWarningLiveAndOnReplay() throws {
        try requireBPF()
        let mnt = try scratchDirectory("enospc-mnt")
        let mount = try Tool.run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "flightbox-test-enospc", mnt])
        try XCTSkipIf(mount.status != 0, "cannot mount a tmpfs: \(mount.stderr)")
        defer { _ = try? Tool.run("/bin/umount", [mnt]) }
        let trace = scratch("enospc.fbt"), live = scratch("enospc.jsonl")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process,syscalls", "--detect", "--detectors", "syscall-errors",
                                              "--findings", live, "--", "/bin/sh", "-c", "dd if=/dev/zero of=\(mnt)/fill bs=4k count=1000 2>/dev/null; exit 0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let liveText = try String(contentsOfFile: live, encoding: .utf8)
        let replay = try Tool.flightbox("replay", trace, "--format", "json", "--detectors", "syscall-errors")
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertEqual(replay.stdout, liveText)
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        XCTAssertEqual(findings.count, 1, replay.stdout)
        let f = try XCTUnwrap(findings.first)
        XCTAssertEqual(f["severity"]?.stringValue, "warning")
        XCTAssertEqual(f["comm"]?.stringValue, "dd")
        XCTAssertEqual(f["evidence"]?["errno"]?.stringValue, "ENOSPC")
        XCTAssertEqual(f["evidence"]?["kind"]?.stringValue, "first_error")
        guard case .array(let calls)? = f["evidence"]?["syscalls"] else { return XCTFail("no syscalls") }
        XCTAssertEqual(calls.first?["syscall"]?.stringValue, "write")
    }
}
