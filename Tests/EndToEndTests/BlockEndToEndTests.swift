import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

/// The block detector on a real recording: the determinism contract.
final class BlockEndToEndTests: XCTestCase {
    /// A loop device on a flightbox-slowfs file: direct reads at their normal
    /// speed, then each made 50 ms slow, then failing with EIO. One latency
    /// warning and one critical error finding, live and on replay byte-identical.
    func testSlowThenFailingLoopDeviceLiveAndOnReplay() throws {
        try requireBPF()
        let slowfs = Tool.binDir + "/flightbox-slowfs"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: "/dev/fuse"), "no /dev/fuse")
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: slowfs), "flightbox-slowfs not built")
        let mnt = try scratchDirectory("slowfs-mnt")
        let mount = try Tool.run(slowfs, [mnt, "16"])
        try XCTSkipIf(mount.status != 0, "cannot mount flightbox-slowfs (fuse3 installed?): \(mount.stderr)")
        defer { _ = try? Tool.run("/bin/umount", [mnt]) }
        let attach = try Tool.run("/sbin/losetup", ["-f", "--show", mnt + "/disk"])
        try XCTSkipIf(attach.status != 0, "no free loop device: \(attach.stderr)")
        let loop = attach.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? Tool.run("/sbin/losetup", ["-d", loop]) }

        // A short warm-up so the test takes seconds; the rest are the defaults.
        let config = scratch("block-slow.yaml")
        try "detectors:\n  block:\n    warmup: 2s\n    baseline_min: 100\n".write(toFile: config, atomically: true, encoding: .utf8)
        let control = mnt + "/control"
        let script = """
            for i in $(seq 30); do dd if=\(loop) of=/dev/null bs=4k count=20 iflag=direct status=none; sleep 0.1; done
            echo 'delay 50' > \(control)
            dd if=\(loop) of=/dev/null bs=4k count=40 skip=1000 iflag=direct status=none
            echo ok > \(control); echo 'eio 0 65536' > \(control)
            dd if=\(loop) of=/dev/null bs=4k count=4 iflag=direct status=none
            exit 0
            """
        let trace = scratch("block-slow.fbt"), live = scratch("block-slow.jsonl")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "block,process", "--detect", "--detectors", "block",
                                              "--config", config, "--findings", live, "--", "/bin/sh", "-c", script])
        XCTAssertEqual(r.status, 0, r.stderr)
        let liveText = try String(contentsOfFile: live, encoding: .utf8)
        let replay = try Tool.flightbox("replay", trace, "--format", "json", "--detectors", "block")
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertEqual(replay.stdout, liveText)
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        XCTAssertEqual(findings.map { $0["evidence"]?["kind"]?.stringValue }, ["latency", "errors"], replay.stdout)
        guard findings.count == 2 else { return }
        var st = stat()
        XCTAssertEqual(stat(loop, &st), 0)
        let dev = "\(major(UInt64(st.st_rdev))):\(minor(UInt64(st.st_rdev)))"
        let slow = findings[0], failed = findings[1]
        XCTAssertEqual(slow["severity"]?.stringValue, "warning")
        XCTAssertEqual(slow["comm"]?.stringValue, "dd")
        XCTAssertEqual(slow["evidence"]?["device"]?.stringValue, dev)
        XCTAssertEqual(slow["evidence"]?["device_name"]?.stringValue, String(loop.dropFirst("/dev/".count)))
        guard case .array(let ops)? = slow["evidence"]?["ops"] else { return XCTFail("no ops") }
        XCTAssertEqual(ops.first?["op"]?.stringValue, "read")
        // 50 ms sleeps: the median bucket starts at 33.5 ms.
        XCTAssertEqual(ops.first?["window_p50_ns"]?.arrayValue?.first?.uintValue, 33_554_432)
        XCTAssertEqual(failed["severity"]?.stringValue, "critical")
        XCTAssertEqual(failed["comm"]?.stringValue, "dd")
        XCTAssertEqual(failed["evidence"]?["device"]?.stringValue, dev)
        XCTAssertEqual(failed["evidence"]?["statuses"]?.arrayValue?.first?["name"]?.stringValue, "BLK_STS_IOERR")
    }
}

private func major(_ dev: UInt64) -> UInt64 { (dev >> 8) & 0xfff }
private func minor(_ dev: UInt64) -> UInt64 { (dev & 0xff) | ((dev >> 12) & 0xfff00) }
