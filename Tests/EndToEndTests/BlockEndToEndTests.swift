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

extension BlockEndToEndTests {
    /// Buffered writes to an ext4 file system on the slow loop device reach
    /// it through `sync` and kernel workers: the latency finding names them
    /// and, from the files family's writes summaries, the `dd`s that wrote.
    func testWritebackIsAttributedToTheWriters() throws {
        try requireBPF()
        let slowfs = Tool.binDir + "/flightbox-slowfs"
        try XCTSkipUnless(FileManager.default.fileExists(atPath: "/dev/fuse"), "no /dev/fuse")
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/sbin/mkfs.ext4"), "no mkfs.ext4")
        let fuse = try scratchDirectory("writeback-fuse"), fs = try scratchDirectory("writeback-fs")
        let mount = try Tool.run(slowfs, [fuse, "64"])
        try XCTSkipIf(mount.status != 0, "cannot mount flightbox-slowfs (fuse3 installed?): \(mount.stderr)")
        defer { _ = try? Tool.run("/bin/umount", [fuse]) }
        let attach = try Tool.run("/sbin/losetup", ["-f", "--show", fuse + "/disk"])
        try XCTSkipIf(attach.status != 0, "no free loop device: \(attach.stderr)")
        let loop = attach.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        defer { _ = try? Tool.run("/sbin/losetup", ["-d", loop]) }
        XCTAssertEqual(try Tool.run("/sbin/mkfs.ext4", ["-q", loop]).status, 0)
        XCTAssertEqual(try Tool.run("/bin/mount", [loop, fs]).status, 0)
        defer { _ = try? Tool.run("/bin/umount", [fs]) }

        let config = scratch("writeback.yaml")
        try "detectors:\n  block:\n    warmup: 2s\n    baseline_min: 50\n    min_requests: 2\n".write(toFile: config, atomically: true, encoding: .utf8)
        // System-wide: writeback is issued by kernel threads, outside any command's tree.
        let trace = scratch("writeback.fbt"), live = scratch("writeback.jsonl")
        let rec = Process()
        rec.executableURL = URL(fileURLWithPath: Tool.flightbox)
        rec.arguments = ["record", "-o", trace, "--probes", "block,process,files", "--duration", "12s", "--detect", "--detectors", "block",
                         "--config", config, "--findings", live]
        rec.standardError = FileHandle.nullDevice
        try rec.run()
        usleep(1_500_000)
        let script = """
            end=$(( $(date +%s) + 5 ))
            while [ "$(date +%s)" -lt "$end" ]; do dd if=/dev/zero of=\(fs)/f bs=64k count=4 status=none; sync; sleep 0.05; done
            echo 'delay 50' > \(fuse)/control
            for i in 1 2 3 4; do dd if=/dev/zero of=\(fs)/g$i bs=64k count=4 status=none; sync; done
            echo ok > \(fuse)/control
            """
        XCTAssertEqual(try Tool.run("/bin/sh", ["-c", script]).status, 0)
        rec.waitUntilExit()
        XCTAssertEqual(rec.terminationStatus, 0)
        let liveText = try String(contentsOfFile: live, encoding: .utf8)
        let replay = try Tool.flightbox("replay", trace, "--format", "json", "--detectors", "block")
        XCTAssertEqual(replay.stdout, liveText, "live and replay byte-identical")
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        let name = String(loop.dropFirst("/dev/".count))
        let slow = findings.filter { $0["evidence"]?["kind"]?.stringValue == "latency" && $0["evidence"]?["device_name"]?.stringValue == name }
        XCTAssertEqual(slow.count, 1, replay.stdout)
        guard let f = slow.first else { return }
        let issuers = f["evidence"]?["issuers"]?.arrayValue ?? []
        XCTAssertTrue(issuers.contains { $0["kernel_worker"] == .bool(true) }, "writeback by kernel workers: \(issuers)")
        let writers = f["evidence"]?["writers"]?.arrayValue ?? []
        XCTAssertFalse(writers.isEmpty, f.serialized())
        XCTAssertTrue(writers.allSatisfy { $0["comm"]?.stringValue == "dd" }, "the writers are the dds: \(writers)")
        XCTAssertTrue(f["summary"]?.stringValue?.contains("on behalf of dd (pid ") ?? false, f["summary"]?.stringValue ?? "")
    }
}

private func major(_ dev: UInt64) -> UInt64 { (dev >> 8) & 0xfff }
private func minor(_ dev: UInt64) -> UInt64 { (dev & 0xff) | ((dev >> 12) & 0xfff00) }
