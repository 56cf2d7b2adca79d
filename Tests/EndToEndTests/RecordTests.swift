import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

final class RecordTests: XCTestCase {
    /// The trace holds exactly the syscalls the helper made, and nothing is lost.
    func testExactSyscallCountAndNoLoss() throws {
        try requireBPF()
        let trace = scratch("getppid.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--", Tool.load, "getppid", "100000"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let execs = try eventsJSON(trace, ["--type", "exec"])
        let load = try XCTUnwrap(execs.first { $0["fields"]?["filename"]?.stringValue == Tool.load })
        let pid = try XCTUnwrap(load["pid"]?.uintValue)
        let calls = try eventsJSON(trace, ["--pid", String(pid), "--type", "syscall"])
        XCTAssertEqual(calls.filter { $0["syscall"]?.stringValue == "getppid" }.count, 100_000)
        XCTAssertTrue(calls.allSatisfy { $0["fields"]?["duration_ns"]?.uintValue != nil })
        let info = try inspectJSON(trace)
        XCTAssertEqual(info["lost"]?.uintValue, 0)
        XCTAssertEqual(info["closed_cleanly"], .bool(true))
        let attrs = try FileManager.default.attributesOfItem(atPath: trace)
        XCTAssertEqual((attrs[.posixPermissions] as? NSNumber)?.intValue, 0o600, "traces hold argv: mode 0600")
    }

    func testExecArgvAndExitCodes() throws {
        try requireBPF()
        let trace = scratch("exec.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--", "/bin/sh", "-c", "/bin/echo hello-flightbox 'two words' >/dev/null; exit 3"])
        XCTAssertEqual(r.status, 3, "record exits with the command's status: \(r.stderr)")
        let execs = try eventsJSON(trace, ["--type", "exec"])
        let echo = try XCTUnwrap(execs.first { $0["fields"]?["filename"]?.stringValue == "/bin/echo" }, "\(execs)")
        XCTAssertEqual(echo["fields"]?["argv"]?.arrayValue?.compactMap(\.stringValue), ["/bin/echo", "hello-flightbox", "two words"])
        XCTAssertEqual(echo["fields"]?["argc"]?.intValue, 3)
        let exits = try eventsJSON(trace, ["--type", "exit"])
        let sh = try XCTUnwrap(exits.first { $0["fields"]?["comm"]?.stringValue == "sh" })
        XCTAssertEqual(sh["exit_code"]?.intValue, 3)
        XCTAssertEqual(sh["process_exit"], .bool(true))
        let echoExit = try XCTUnwrap(exits.first { $0["pid"]?.uintValue == echo["pid"]?.uintValue })
        XCTAssertEqual(echoExit["exit_code"]?.intValue, 0)

        let killed = scratch("killed.fbt")
        let k = try Tool.run(Tool.flightbox, ["record", "-o", killed, "--", Tool.load, "signal", "9"])
        XCTAssertEqual(k.status, 128 + 9)
        let kexit = try XCTUnwrap(try eventsJSON(killed, ["--type", "exit"]).last)
        XCTAssertEqual(kexit["signal"]?.intValue, 9)
    }

    func testThreadsAndProcessesAreToldApart() throws {
        try requireBPF()
        let trace = scratch("threads.fbt")
        XCTAssertEqual(try Tool.run(Tool.flightbox, ["record", "-o", trace, "--", Tool.load, "threads", "3"]).status, 0)
        let forks = try eventsJSON(trace, ["--type", "fork"])
        XCTAssertEqual(forks.filter { $0["thread"] == .bool(true) }.count, 3)
        let exits = try eventsJSON(trace, ["--type", "exit"])
        XCTAssertEqual(exits.filter { $0["process_exit"] == .bool(false) }.count, 3)
        XCTAssertEqual(exits.filter { $0["process_exit"] == .bool(true) }.count, 1)

        let procs = scratch("procs.fbt")
        XCTAssertEqual(try Tool.run(Tool.flightbox, ["record", "-o", procs, "--", "/bin/sh", "-c", "/bin/true & /bin/true & wait"]).status, 0)
        let pforks = try eventsJSON(procs, ["--type", "fork"])
        XCTAssertGreaterThanOrEqual(pforks.filter { $0["thread"] == .bool(false) }.count, 2)
        // Descendants are followed: both children's execs are in the trace.
        XCTAssertEqual(try eventsJSON(procs, ["--type", "exec"]).filter { $0["fields"]?["filename"]?.stringValue == "/bin/true" }.count, 2)
    }

    /// The determinism contract, end to end.
    func testLiveAndReplayFindingsAreByteIdentical() throws {
        try requireBPF()
        let trace = scratch("latency.fbt"), live = scratch("live.jsonl")
        let dir = try scratchDirectory("latency-dir")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--detect", "--findings", live, "--", Tool.load, "latency", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        let liveText = try String(contentsOfFile: live, encoding: .utf8)
        let replay = try Tool.flightbox("replay", trace, "--format", "json")
        XCTAssertEqual(replay.status, 0, replay.stderr)
        XCTAssertEqual(replay.stdout, liveText)
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        XCTAssertEqual(findings.count, 1, replay.stdout)
        XCTAssertEqual(findings.first?["evidence"]?["syscall"]?.stringValue, "pwrite64")
        XCTAssertEqual(findings.first?["evidence"]?["ret"]?.intValue, 64 << 20)
        // The slow pipe reads are in the trace, classified, and not flagged.
        let reads = try eventsJSON(trace, ["--type", "syscall"]).filter { $0["syscall"]?.stringValue == "read" && $0["fd_kind_name"]?.stringValue == "fifo" }
        XCTAssertEqual(reads.count, 3)
        XCTAssertTrue(reads.allSatisfy { ($0["fields"]?["duration_ns"]?.uintValue ?? 0) > 10_000_000 })
    }

    func testPidFilterAndDuration() throws {
        try requireBPF()
        let target = Process()
        target.executableURL = URL(fileURLWithPath: Tool.load)
        target.arguments = ["wait-getppid", "700", "5000"]
        try target.run()
        let trace = scratch("pid.fbt")
        let start = Date()
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--pid", String(target.processIdentifier), "--duration", "2s"])
        target.waitUntilExit()
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(start), 1.9)
        // System gauges (pid 0) describe the machine whatever the filter.
        let events = try eventsJSON(trace).filter { $0["type"]?.stringValue != "gauge" || $0["pid"]?.uintValue != 0 }
        XCTAssertFalse(events.isEmpty)
        XCTAssertTrue(events.allSatisfy { $0["pid"]?.uintValue == UInt64(target.processIdentifier) })
        XCTAssertEqual(events.filter { $0["syscall"]?.stringValue == "getppid" }.count, 5000)
    }

    func testCommFilter() throws {
        try requireBPF()
        let trace = scratch("comm.fbt")
        let rec = Process()
        rec.executableURL = URL(fileURLWithPath: Tool.flightbox)
        rec.arguments = ["record", "-o", trace, "--comm", "flightbox-load", "--duration", "2s"]
        rec.standardError = FileHandle.nullDevice
        try rec.run()
        usleep(700_000)
        try Tool.run(Tool.load, ["getppid", "1234"])
        try Tool.run("/bin/sh", ["-c", "true"])
        rec.waitUntilExit()
        XCTAssertEqual(rec.terminationStatus, 0)
        let events = try eventsJSON(trace).filter { $0["type"]?.stringValue != "gauge" || $0["pid"]?.uintValue != 0 }
        XCTAssertEqual(events.filter { $0["syscall"]?.stringValue == "getppid" }.count, 1234)
        XCTAssertTrue(events.allSatisfy { $0["comm"]?.stringValue == "flightbox-load" }, "only flightbox-load: \(Set(events.compactMap { $0["comm"]?.stringValue }))")
    }

    /// System-wide, SIGINT and SIGTERM close the file cleanly, and the
    /// recorder's own activity is never in it.
    func testSignalsCloseCleanlyAndRecorderIsNotTraced() throws {
        try requireBPF()
        for sig in [SIGINT, SIGTERM] {
            let trace = scratch("sig\(sig).fbt")
            var pid: Int32 = 0
            let r = try Tool.run(Tool.flightbox, ["record", "-o", trace], beforeWait: { p in
                pid = p.processIdentifier
                usleep(1_500_000)
                kill(p.processIdentifier, sig)
            })
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stderr.contains("recorded"), r.stderr)
            let info = try inspectJSON(trace)
            XCTAssertEqual(info["closed_cleanly"], .bool(true))
            XCTAssertGreaterThan(info["events"]?.uintValue ?? 0, 0)
            let own = try eventsJSON(trace, ["--pid", String(pid)])
            XCTAssertEqual(own.count, 0, "the recorder traced itself")
        }
    }
}

final class BadInputTests: XCTestCase {
    func testNotRootFailsWithOneLineBeforeAnything() throws {
        guard geteuid() == 0 else {
            let r = try Tool.flightbox("record", "-o", scratch("x.fbt"), "--duration", "1s")
            XCTAssertNotEqual(r.status, 0)
            XCTAssertTrue(r.stderr.contains("needs root"), r.stderr)
            return
        }
        let out = scratch("nobody.fbt")
        let r = try Tool.run("/usr/sbin/runuser", ["-u", "nobody", "--", Tool.flightbox, "record", "-o", out, "--duration", "1s"])
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("needs root"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing is created before the checks pass")
    }

    func testNoBTFAndNoBPF() throws {
        try requireBPF()
        let out = scratch("nobtf.fbt")
        let r = try Tool.flightbox("record", "-o", out, "--btf", "/nonexistent/vmlinux", "--duration", "1s")
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("no kernel BTF at /nonexistent/vmlinux"), r.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        // Root inside a user namespace has capabilities there but no BPF.
        let u = try Tool.run("/usr/bin/unshare", ["-U", "-r", Tool.flightbox, "record", "-o", scratch("userns.fbt"), "--duration", "1s"])
        XCTAssertEqual(u.status, 1)
        XCTAssertEqual(u.stderr.split(separator: "\n").count, 1, u.stderr)
        XCTAssertTrue(u.stderr.contains("the kernel refused BPF"), u.stderr)
    }

    func testUnwritableOutputFailsBeforeProbesAttach() throws {
        try requireBPF()
        let r = try Tool.flightbox("record", "-o", "/nonexistent-dir/x.fbt", "--", Tool.load, "exit", "0")
        XCTAssertEqual(r.status, 1)
        XCTAssertEqual(r.stderr, "flightbox: cannot create /nonexistent-dir/x.fbt: No such file or directory; choose a writable path with -o\n")
        // The failure comes before any BPF work: libbpf printed nothing and no command ran.
        XCTAssertFalse(r.stderr.contains("libbpf"))
    }

    func testNonTraceFileIsRejectedByEveryReader() throws {
        let path = scratch("not-a-trace.txt")
        try "just text\n".write(toFile: path, atomically: true, encoding: .utf8)
        for cmd in ["replay", "inspect", "events"] {
            let r = try Tool.flightbox(cmd, path)
            XCTAssertEqual(r.status, 1)
            XCTAssertEqual(r.stderr, "flightbox: \(path) is not a Flightbox trace (no FLIGHTBX magic at offset 0)\n")
        }
    }

    func testTraceCutShortIsReadToLastCompleteBlock() throws {
        let fixture = Tool.packageRoot + "/fixtures/system-wide/trace.fbt"
        let whole = try Data(contentsOf: URL(fileURLWithPath: fixture))
        let cut = scratch("cut.fbt")
        try whole.prefix(whole.count * 2 / 3).write(to: URL(fileURLWithPath: cut))
        let reader = try TraceReader(path: fixture)
        let inspect = try Tool.flightbox("inspect", cut)
        XCTAssertEqual(inspect.status, 0)
        XCTAssertTrue(inspect.stdout.contains("NOT closed cleanly"), inspect.stdout)
        XCTAssertTrue(inspect.stderr.contains("the trace was cut short"), inspect.stderr)
        // Every complete block is recovered: the events are a prefix of the whole trace's.
        let cutEvents = try Tool.flightbox("events", cut, "--format", "json").lines
        let allEvents = try Tool.flightbox("events", fixture, "--format", "json").lines
        XCTAssertGreaterThan(cutEvents.count, 0)
        XCTAssertLessThan(cutEvents.count, allEvents.count)
        XCTAssertEqual(Array(allEvents.prefix(cutEvents.count)), cutEvents)
        let complete = reader.eventBlocks.filter { Int($0.offset) < whole.count * 2 / 3 }
        XCTAssertGreaterThanOrEqual(UInt64(cutEvents.count), complete.dropLast().reduce(0) { $0 + UInt64($1.count) })
    }
}

final class FixtureTests: XCTestCase {
    /// Every fixture replays to exactly its checked findings.
    func testFixturesReplayToTheirExpectedFindings() throws {
        let r = try Tool.flightbox("test", Tool.packageRoot + "/fixtures")
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains("2 passed, 0 failed"), r.stdout)
    }

    /// A fixture is its scenario, its trace and its checked findings; nothing
    /// else belongs there (a fuzzer's corpus was once committed into one).
    func testFixturesHoldOnlyWhatAFixtureIs() throws {
        let root = Tool.packageRoot + "/fixtures"
        for dir in try FileManager.default.contentsOfDirectory(atPath: root) where dir != "README.md" {
            let files = Set(try FileManager.default.contentsOfDirectory(atPath: root + "/" + dir))
            XCTAssertEqual(files.subtracting(["scenario.sh", "trace.fbt", "expected-findings.jsonl", "README.md"]), [], "fixtures/\(dir)")
        }
    }
}

final class OrderingTests: XCTestCase {
    /// Per-CPU batching must never reorder one task's events: in stream order,
    /// each thread's syscalls end in time order, its fork comes before them and
    /// its exit after them, even when threads switch and migrate all the time.
    func testEachTasksEventsStayInOrder() throws {
        try requireBPF()
        let trace = scratch("order.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--", Tool.load, "threads", "4", "20000"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let events = try eventsJSON(trace)
        var lastEnd: [UInt64: UInt64] = [:]
        var forked: Set<UInt64> = []
        var exited: Set<UInt64> = []
        var getppid: [UInt64: Int] = [:]
        var problems: [String] = []
        for e in events {
            guard let type = e["type"]?.stringValue, let tid = e["tid"]?.uintValue, let ts = e["ts_ns"]?.uintValue else { continue }
            switch type {
            case "fork":
                if e["thread"] == .bool(true), let child = e["fields"]?["child_tid"]?.uintValue { forked.insert(child) }
            case "syscall":
                let end = ts + (e["fields"]?["duration_ns"]?.uintValue ?? 0)
                if exited.contains(tid) { problems.append("syscall of \(tid) after its exit (seq \(e["seq"]!.serialized()))") }
                if let last = lastEnd[tid], end < last { problems.append("tid \(tid): syscall ending at \(end) after one ending at \(last)") }
                lastEnd[tid] = end
                if e["syscall"]?.stringValue == "getppid" { getppid[tid, default: 0] += 1 }
            case "exit":
                if let last = lastEnd[tid], ts < last { problems.append("tid \(tid): exit at \(ts) before its last syscall ended at \(last)") }
                exited.insert(tid)
            default:
                break
            }
        }
        XCTAssertEqual(problems.prefix(5), [], "\(problems.count) ordering problems")
        let workers = getppid.filter { $0.value == 20_000 }
        XCTAssertEqual(workers.count, 4, "\(getppid)")
        XCTAssertTrue(workers.keys.allSatisfy { forked.contains($0) }, "each worker thread's clone is in the trace")
        XCTAssertEqual(try inspectJSON(trace)["lost"]?.uintValue, 0)
    }
}

final class StopTests: XCTestCase {
    /// Events reach the file within about a second even at a trickle (no
    /// kernel wake-up ever fires), so a recorder killed with SIGKILL leaves a
    /// readable trace holding what happened before its last flush.
    func testSIGKILLLeavesATraceReadableUpToItsLastBlock() throws {
        try requireBPF()
        let trace = scratch("killed-recorder.fbt")
        // One process, 40 calls 100 ms apart: nothing exits, no batch fills,
        // the kernel never wakes the recorder.
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--", Tool.load, "trickle", "40", "100"], beforeWait: { p in
            usleep(2_500_000)
            kill(p.processIdentifier, SIGKILL)
        })
        XCTAssertEqual(r.status, SIGKILL, "Foundation reports the killing signal")
        let info = try inspectJSON(trace)
        XCTAssertEqual(info["closed_cleanly"], .bool(false))
        let calls = try eventsJSON(trace, ["--type", "syscall"]).filter { $0["syscall"]?.stringValue == "getppid" }
        // About 24 were made before the kill; those older than the last one-second flush are on disk.
        XCTAssertGreaterThanOrEqual(calls.count, 8, "events older than a second must be on disk")
        let inspect = try Tool.flightbox("inspect", trace)
        XCTAssertTrue(inspect.stdout.contains("NOT closed cleanly"), inspect.stdout)
    }

    /// SIGTERM to `record -- COMMAND` reaches the command; the recorder keeps
    /// recording until it exits, then closes the file and exits with its status.
    func testStopSignalIsForwardedToTheCommand() throws {
        try requireBPF()
        let trace = scratch("forward.fbt")
        let start = Date()
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--", "/bin/sleep", "30"], beforeWait: { p in
            usleep(800_000)
            kill(p.processIdentifier, SIGTERM)
        })
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        XCTAssertEqual(r.status, 128 + SIGTERM, r.stderr)
        XCTAssertEqual(try inspectJSON(trace)["closed_cleanly"], .bool(true))
        let exit = try XCTUnwrap(try eventsJSON(trace, ["--type", "exit"]).last)
        XCTAssertEqual(exit["signal"]?.intValue, Int64(SIGTERM))
        XCTAssertEqual(exit["fields"]?["comm"]?.stringValue, "sleep")
    }

    /// With a command, --duration ends it as timeout(1) would.
    func testDurationEndsTheCommand() throws {
        try requireBPF()
        let trace = scratch("timeout.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--duration", "1s", "--", "/bin/sleep", "30"])
        XCTAssertEqual(r.status, 128 + SIGTERM, r.stderr)
        XCTAssertEqual(try inspectJSON(trace)["closed_cleanly"], .bool(true))
    }
}

final class FormatToolTests: XCTestCase {
    /// A trace cut short (a killed recorder) repairs into a cleanly closed
    /// file with an index and every complete block's events.
    func testRepairOfACutAndACorruptTrace() throws {
        let fixture = Tool.packageRoot + "/fixtures/system-wide/trace.fbt"
        let whole = try Data(contentsOf: URL(fileURLWithPath: fixture))
        let cut = scratch("repair-cut.fbt")
        try whole.prefix(whole.count * 3 / 4).write(to: URL(fileURLWithPath: cut))
        let before = try Tool.flightbox("events", cut, "--format", "json").lines
        let r = try Tool.flightbox("repair", cut)
        XCTAssertEqual(r.status, 0, r.stderr)
        let repaired = scratch("repair-cut.repaired.fbt")
        let info = try inspectJSON(repaired)
        XCTAssertEqual(info["closed_cleanly"], .bool(true))
        XCTAssertEqual(info["used_index"], .bool(true))
        XCTAssertEqual(try Tool.flightbox("events", repaired, "--format", "json").lines, before)

        var corrupt = whole
        let reader = try TraceReader(path: fixture)
        let victim = reader.eventBlocks[1]
        corrupt[Int(victim.offset) + TraceLayout.blockHeaderSize + 100] ^= 0x20
        let bad = scratch("repair-bad.fbt"), fixed = scratch("repair-fixed.fbt")
        try corrupt.write(to: URL(fileURLWithPath: bad))
        let rr = try Tool.flightbox("repair", bad, "-o", fixed)
        XCTAssertEqual(rr.status, 0, rr.stderr)
        XCTAssertTrue(rr.stdout.contains("\(victim.count) events could not be recovered"), rr.stdout)
        let fixedInfo = try inspectJSON(fixed)
        XCTAssertEqual(fixedInfo["missing"]?.uintValue, UInt64(victim.count))
        XCTAssertEqual(fixedInfo["events"]?.uintValue, reader.eventCount - UInt64(victim.count))
        // Sequence numbers are kept: the lost block is a visible gap.
        XCTAssertEqual(fixedInfo["sequence_gaps"]?.arrayValue?.first?["after_seq"]?.uintValue, victim.firstSequence)
        XCTAssertEqual(try Tool.flightbox("repair", fixed, "-o", fixed).status, 2, "never overwrites its input")
    }

    /// --from/--to as offsets, raw ns and wall-clock times select the same events.
    func testTimeWindowsInEveryForm() throws {
        let fixture = Tool.packageRoot + "/fixtures/system-wide/trace.fbt"
        let reader = try TraceReader(path: fixture)
        let first = try XCTUnwrap(reader.firstTimestamp)
        let all = try eventsJSON(fixture)
        let from = first + 500_000_000, to = first + 1_500_000_000
        let expected = all.filter { ($0["ts_ns"]?.uintValue ?? 0) >= from && ($0["ts_ns"]?.uintValue ?? 0) <= to }.map { $0.serialized() }
        XCTAssertGreaterThan(expected.count, 10)
        XCTAssertLessThan(expected.count, all.count)
        func wall(_ ts: UInt64) -> String {
            let ns = reader.metadata.wallClock(ts)
            var secs = time_t(ns / 1_000_000_000)
            var t = tm()
            gmtime_r(&secs, &t)
            let frac = String(ns % 1_000_000_000)
            return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.", t.tm_year + 1900, t.tm_mon + 1, t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec)
                + String(repeating: "0", count: 9 - frac.count) + frac + "Z"
        }
        for (f, t) in [("+0.5s", "+1500ms"), (String(from), String(to)), (wall(from), wall(to))] {
            let got = try eventsJSON(fixture, ["--from", f, "--to", t]).map { $0.serialized() }
            XCTAssertEqual(got, expected, "--from \(f) --to \(t)")
        }
        let bad = try Tool.flightbox("events", fixture, "--from", "yesterday")
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("--from: cannot read 'yesterday'"), bad.stderr)
        // replay takes the same window.
        XCTAssertEqual(try Tool.flightbox("replay", fixture, "--from", "+0s", "--to", "+0.1s", "--format", "json").status, 0)
    }

    /// Recording onto a nearly full filesystem stops with one clear line, and
    /// the file is valid up to its last whole block.
    func testFullDiskStopsCleanlyWithAValidFile() throws {
        try requireBPF()
        let mnt = scratch("tinyfs")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let m = try Tool.run("/bin/mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt])
        XCTAssertEqual(m.status, 0, m.stderr)
        defer { _ = try? Tool.run("/bin/umount", [mnt]) }
        let trace = mnt + "/full.fbt"
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--codec", "lz4", "--", Tool.load, "read", "3000000"])
        XCTAssertEqual(r.status, 1)
        let lines = r.stderr.split(separator: "\n").filter { !$0.contains("recording command") }
        XCTAssertEqual(lines.count, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("disk full writing \(trace)"), r.stderr)
        let info = try inspectJSON(trace)
        XCTAssertGreaterThan(info["events"]?.uintValue ?? 0, 10_000)
        XCTAssertEqual(info["closed_cleanly"], .bool(false))
        XCTAssertEqual(info["problems"]?.arrayValue?.filter { $0["message"]?.stringValue?.contains("cut short") == true }.count, 0,
                       "no partial block left behind")
    }
}

final class LossTests: XCTestCase {
    /// With a ring far too small for a syscall storm, the kernel drops events,
    /// and counts every one: recorded events plus lost ones equal what a run
    /// with a large ring records. Loss records sit in the stream where the
    /// drops happened, and inspect shows them per CPU.
    func testLossesAreCountedExactlyPerCPU() throws {
        try requireBPF()
        func run(ringKb: Int) throws -> (events: UInt64, lost: UInt64, info: JSON, trace: String) {
            let trace = scratch("loss-\(ringKb).fbt")
            // Families whose event count does not depend on timing (the
            // scheduler's would), so two runs produce the same events.
            let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process,syscalls", "--ring-kb", String(ringKb),
                                                  "--", Tool.load, "getppid", "200000"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let info = try inspectJSON(trace)
            let lossRecords = info["events_by_type"]?["loss"]?.uintValue ?? 0
            return ((info["events"]?.uintValue ?? 0) - lossRecords, info["lost"]?.uintValue ?? 0, info, trace)
        }
        let full = try run(ringKb: 32 << 10)
        XCTAssertEqual(full.lost, 0)
        for ring in [16, 8] {
            let small = try run(ringKb: ring)
            XCTAssertGreaterThan(small.lost, 1000, "a \(ring) KiB ring must overflow")
            XCTAssertEqual(small.events + small.lost, full.events, "every dropped event is counted (ring \(ring) KiB)")
            let byCpu = small.info["lost_by_cpu"]
            if case .object(let kv)? = byCpu {
                XCTAssertEqual(kv.compactMap { $0.1.uintValue }.reduce(0, +), small.lost)
            } else {
                XCTFail("no per-CPU losses")
            }
            // Interleaved with the events, each covering an interval that ends at its own timestamp.
            let events = try eventsJSON(small.trace)
            let lossIndexes = events.indices.filter { events[$0]["type"]?.stringValue == "loss" }
            XCTAssertFalse(lossIndexes.isEmpty)
            XCTAssertLessThan(lossIndexes.first!, events.count - 1, "a loss record before later events")
            for i in lossIndexes {
                XCTAssertLessThanOrEqual(events[i]["fields"]?["first_ts"]?.uintValue ?? .max, events[i]["ts_ns"]?.uintValue ?? 0)
            }
            let text = try Tool.flightbox("inspect", small.trace).stdout
            XCTAssertTrue(text.contains("lost:          \(small.lost) (cpu"), text)
        }
    }
}

final class FilesFamilyTests: XCTestCase {
    /// Opens, renames and unlinks of known paths, with flags and results.
    func testFileOperationsWithPathsFlagsAndResults() throws {
        try requireBPF()
        let dir = try scratchDirectory("files-dir")
        let long = dir + "/" + String(repeating: "x", count: 250) + "/deeper"
        let trace = scratch("files.fbt")
        let script = "touch \(dir)/a; mv \(dir)/a \(dir)/b; rm \(dir)/b; cat \(dir)/missing 2>/dev/null; cat \(long) 2>/dev/null; true"
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "files", "--", "/bin/sh", "-c", script])
        XCTAssertEqual(r.status, 0, r.stderr)
        let files = try eventsJSON(trace, ["--type", "file"])
        XCTAssertTrue(try eventsJSON(trace, ["--type", "syscall"]).isEmpty, "--probes files records no syscall events")
        func find(_ op: String, _ path: String) -> JSON? {
            files.first { $0["op_name"]?.stringValue == op && $0["fields"]?["path"]?.stringValue == path }
        }
        let created = try XCTUnwrap(find("open", "\(dir)/a"), "\(files.map { $0.serialized() })")
        XCTAssertGreaterThanOrEqual(created["fields"]?["ret"]?.intValue ?? -1, 0)
        XCTAssertNotEqual((created["fields"]?["open_flags"]?.uintValue ?? 0) & 0o100, 0, "O_CREAT")
        XCTAssertEqual(created["comm"]?.stringValue, "touch")
        let renamed = try XCTUnwrap(find("rename", "\(dir)/a"))
        XCTAssertEqual(renamed["fields"]?["path2"]?.stringValue, "\(dir)/b")
        XCTAssertEqual(renamed["fields"]?["ret"]?.intValue, 0)
        XCTAssertEqual(try XCTUnwrap(find("unlink", "\(dir)/b"))["fields"]?["ret"]?.intValue, 0)
        XCTAssertEqual(try XCTUnwrap(find("open", "\(dir)/missing"))["fields"]?["ret"]?.intValue, -2, "ENOENT")
        let cut = try XCTUnwrap(files.first { $0["truncated"] == .bool(true) }, "a path over 255 bytes is flagged")
        XCTAssertEqual(cut["fields"]?["path"]?.stringValue?.utf8.count, 255)
        XCTAssertTrue(long.hasPrefix(cut["fields"]?["path"]?.stringValue ?? "-"))
    }
}

extension FilesFamilyTests {
    /// Writes are summarized per file, not per call: known sizes to a known
    /// file add up, a failed write is counted, a long writer gets one summary
    /// per second, and writes to a pipe are not summarized.
    func testWritesAreSummarizedPerFile() throws {
        try requireBPF()
        let dir = try scratchDirectory("writes-dir")
        let trace = scratch("writes.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "files", "--", Tool.load, "writes", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        let writes = try eventsJSON(trace, ["--type", "writes"])
        var st = stat()
        XCTAssertEqual(stat(dir, &st), 0)
        let a = writes.filter { $0["fields"]?["name"]?.stringValue == "flightbox-writes-a.dat" }
        XCTAssertEqual(a.count, 1, "\(writes.map { $0.serialized() })")
        let sa = try XCTUnwrap(a.first)
        XCTAssertEqual(sa["fields"]?["calls"]?.uintValue, 15)
        XCTAssertEqual(sa["fields"]?["bytes"]?.uintValue, 10 * 4096 + 100 + 3 * 512)
        XCTAssertEqual(sa["fields"]?["errors"]?.uintValue, 1, "the write from a bad buffer")
        XCTAssertEqual(sa["reason_name"]?.stringValue, "close")
        XCTAssertEqual(sa["fd_kind_name"]?.stringValue, "regular")
        XCTAssertEqual(sa["comm"]?.stringValue, "flightbox-load")
        XCTAssertEqual(sa["device"]?.stringValue, "\((st.st_dev >> 8) & 0xfff):\((st.st_dev & 0xff) | ((st.st_dev >> 12) & 0xfff00))")
        XCTAssertGreaterThan(sa["fields"]?["time_ns"]?.uintValue ?? 0, 0)
        XCTAssertLessThanOrEqual(sa["fields"]?["first_ts"]?.uintValue ?? 0, sa["fields"]?["last_ts"]?.uintValue ?? 0)
        let b = writes.filter { $0["fields"]?["name"]?.stringValue == "flightbox-writes-b.dat" }
        XCTAssertGreaterThanOrEqual(b.count, 2, "1.5 s of writes: one summary per second, then the close")
        XCTAssertEqual(b.reduce(0) { $0 + ($1["fields"]?["calls"]?.uintValue ?? 0) }, 15)
        XCTAssertEqual(b.reduce(0) { $0 + ($1["fields"]?["bytes"]?.uintValue ?? 0) }, 15)
        XCTAssertEqual(b.first?["reason_name"]?.stringValue, "interval")
        XCTAssertEqual(b.last?["reason_name"]?.stringValue, "close")
        for s in b { XCTAssertLessThanOrEqual((s["fields"]?["last_ts"]?.uintValue ?? 0) - (s["fields"]?["first_ts"]?.uintValue ?? 0), 1_000_000_000 + 150_000_000) }
        XCTAssertEqual(writes.count, a.count + b.count, "the pipe's writes are not summarized")
    }
}

final class SummarySweepTests: XCTestCase {
    /// A process writes and faults, then goes quiet for 2.5 s and exits
    /// without closing its file: both summaries come out a second or so
    /// after the last activity, while it sleeps, before its exit.
    func testQuietSummariesAreWrittenOutBeforeTheProcessExits() throws {
        try requireBPF()
        let dir = try scratchDirectory("linger-dir")
        let trace = scratch("linger.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "files,memory", "--", Tool.load, "linger", dir])
        XCTAssertEqual(r.status, 0, r.stderr)
        let exit = try XCTUnwrap(try eventsJSON(trace, ["--type", "exit"]).first { $0["fields"]?["comm"]?.stringValue == "flightbox-load" })
        let pid = try XCTUnwrap(exit["pid"]?.uintValue)
        let exitTs = try XCTUnwrap(exit["ts_ns"]?.uintValue)
        let writes = try eventsJSON(trace, ["--type", "writes"]).filter { $0["pid"]?.uintValue == pid }
        XCTAssertEqual(writes.count, 1, "\(writes.map { $0.serialized() })")
        let w = try XCTUnwrap(writes.first)
        XCTAssertEqual(w["fields"]?["name"]?.stringValue, "flightbox-linger.dat")
        XCTAssertEqual(w["fields"]?["calls"]?.uintValue, 3)
        XCTAssertEqual(w["fields"]?["bytes"]?.uintValue, 3000)
        XCTAssertEqual(w["reason_name"]?.stringValue, "idle")
        let wts = try XCTUnwrap(w["ts_ns"]?.uintValue), last = try XCTUnwrap(w["fields"]?["last_ts"]?.uintValue)
        XCTAssertGreaterThanOrEqual(wts, last + 1_000_000_000, "quiet for the summary interval first")
        XCTAssertLessThan(wts, exitTs, "written out while the process slept")
        XCTAssertLessThan(w["seq"]?.uintValue ?? .max, exit["seq"]?.uintValue ?? 0)
        let faults = try eventsJSON(trace, ["--type", "faults"]).filter { $0["pid"]?.uintValue == pid }
        let quiet = try XCTUnwrap(faults.last, "\(faults)")
        XCTAssertGreaterThanOrEqual(faults.reduce(0) { $0 + ($1["fields"]?["user"]?.uintValue ?? 0) }, 256)
        XCTAssertLessThan(quiet["ts_ns"]?.uintValue ?? .max, exitTs, "the sweep wrote it, not the exit")
    }
}

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

final class BlockFamilyTests: XCTestCase {
    /// Direct-I/O writes of a known size reach the block layer as requests of
    /// that size, on the file's device, from the writer, with a latency.
    func testDirectWritesOfKnownSizes() throws {
        try requireBPF()
        let dir = try scratchDirectory("block-dir")
        var st = stat()
        XCTAssertEqual(stat(dir, &st), 0)
        let fsMajor = UInt32(truncatingIfNeeded: (st.st_dev >> 8) & 0xfff)
        let trace = scratch("block.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "block", "--", Tool.load, "direct-write", dir, "6", "65536"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let blocks = try eventsJSON(trace, ["--type", "block"])
        let writes = blocks.filter { $0["op_name"]?.stringValue == "write" && $0["fields"]?["bytes"]?.uintValue == 65536 && $0["comm"]?.stringValue == "flightbox-load" }
        guard writes.count >= 6 else {
            if blocks.isEmpty, stat(dir, &st) == 0, major(UInt64(st.st_dev)) == 0 {
                throw XCTSkip("\(dir) is not on a block device")
            }
            return XCTFail("expected 6 direct writes of 64 KiB: \(blocks.map { $0.serialized() })")
        }
        XCTAssertEqual(writes.count, 6)
        for w in writes {
            XCTAssertEqual(UInt32(w["device"]?.stringValue?.split(separator: ":").first ?? "") ?? 0, fsMajor, "the file's device")
            XCTAssertGreaterThan(w["fields"]?["latency_ns"]?.uintValue ?? 0, 0)
            XCTAssertEqual(w["fields"]?["error"]?.intValue, 0)
        }
    }
}

private func major(_ dev: UInt64) -> UInt64 { (dev >> 8) & 0xfff }

final class UnavailableFamilyTests: XCTestCase {
    /// A family that cannot load on this kernel is reported in one line and
    /// skipped; the others record, and the trace says what was left out.
    func testAFamilyThatCannotLoadIsSkippedNotFatal() throws {
        try requireBPF()
        let build = URL(fileURLWithPath: Tool.binDir).deletingLastPathComponent().deletingLastPathComponent()
        let outputs = build.appendingPathComponent("plugins/outputs")
        let fm = FileManager.default
        let objDir = try XCTUnwrap(fm.enumerator(atPath: outputs.path)?.compactMap { $0 as? String }
            .first { $0.hasSuffix("FlightboxBPFBuild/obj/process.bpf.o") }.map { outputs.appendingPathComponent($0).deletingLastPathComponent() })
        let partial = try scratchDirectory("partial-objects")
        for name in ["process", "syscalls"] {
            try fm.copyItem(at: objDir.appendingPathComponent("\(name).bpf.o"), to: URL(fileURLWithPath: partial + "/\(name).bpf.o"))
        }
        // A damaged object stands for a kernel that rejects the family.
        let signals = try Data(contentsOf: objDir.appendingPathComponent("signals.bpf.o"))
        try signals.prefix(2000).write(to: URL(fileURLWithPath: partial + "/signals.bpf.o"))
        let trace = scratch("partial.fbt")
        let rec = Process()
        rec.executableURL = URL(fileURLWithPath: Tool.flightbox)
        rec.arguments = ["record", "-o", trace, "--probes", "process,syscalls,signals,block", "--duration", "1s"]
        rec.environment = ProcessInfo.processInfo.environment.merging(["FLIGHTBOX_BPF_OBJECT_DIR": partial]) { $1 }
        let err = Pipe()
        rec.standardError = err
        try rec.run()
        rec.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(rec.terminationStatus, 0, stderr)
        XCTAssertEqual(stderr.split(separator: "\n").filter { $0.contains("signals probes unavailable") }.count, 1, stderr)
        XCTAssertEqual(stderr.split(separator: "\n").filter { $0.contains("block probes unavailable") }.count, 1, stderr)
        let capture = try XCTUnwrap(try inspectJSON(trace)["capture"])
        XCTAssertEqual(capture["probes"]?.arrayValue?.compactMap(\.stringValue), ["process", "syscalls"])
        XCTAssertEqual(capture["skipped"]?.arrayValue?.compactMap { $0["family"]?.stringValue }, ["signals", "block"])
        XCTAssertGreaterThan(try inspectJSON(trace)["events"]?.uintValue ?? 0, 0)
    }
}

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
        XCTAssertEqual(setid["fields"]?["ret"]?.intValue, 0)
        XCTAssertEqual(try one("chmod-exec")["strings"]?.arrayValue?.first?.stringValue, dir + "/flightbox-priv")
        XCTAssertEqual(try one("chmod-exec")["fields"]?["args"]?.arrayValue?[1].uintValue, 0o755, "only the chmod that adds exec bits")
        XCTAssertEqual(try one("memfd")["strings"]?.arrayValue?.first?.stringValue, "flightbox-memfd")
        XCTAssertEqual(try one("capset")["fields"]?["ret"]?.intValue, 0)
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

final class SchedulerFamilyTests: XCTestCase {
    /// Two busy tasks pinned to one CPU wait for it in turn; a sleeping task
    /// is off the CPU for as long as it sleeps. Both computed in the kernel.
    func testRunQueueLatencyAndOffCPUTime() throws {
        try requireBPF()
        let trace = scratch("sched.fbt")
        let l = Tool.load
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "scheduler", "--",
                                              "/bin/sh", "-c", "\(l) spin 400 0 & \(l) spin 400 0 & \(l) trickle 4 60; wait"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let execs = try eventsJSON(trace, ["--type", "exec"])
        let spinners = execs.filter { $0["fields"]?["argv"]?.arrayValue?.dropFirst().first?.stringValue == "spin" }.compactMap { $0["pid"]?.uintValue }
        let sleeper = try XCTUnwrap(execs.first { $0["fields"]?["argv"]?.arrayValue?.dropFirst().first?.stringValue == "trickle" }?["pid"]?.uintValue)
        XCTAssertEqual(spinners.count, 2)
        let sched = try eventsJSON(trace, ["--type", "sched"])
        for pid in spinners {
            let waits = sched.filter { $0["pid"]?.uintValue == pid && $0["kind_name"]?.stringValue == "runqueue" }.compactMap { $0["fields"]?["wait_ns"]?.uintValue }
            XCTAssertGreaterThanOrEqual(waits.count, 10, "pid \(pid) shares its CPU")
            XCTAssertTrue(waits.allSatisfy { $0 >= 1_000_000 }, "only waits over the threshold")
            XCTAssertGreaterThan(waits.reduce(0, +), 100_000_000, "about half of 400 ms is spent waiting")
        }
        let off = sched.filter { $0["pid"]?.uintValue == sleeper && $0["kind_name"]?.stringValue == "offcpu" }
        XCTAssertGreaterThanOrEqual(off.count, 3, "\(sched.filter { $0["pid"]?.uintValue == sleeper })")
        for e in off {
            XCTAssertGreaterThanOrEqual(e["fields"]?["wait_ns"]?.uintValue ?? 0, 55_000_000)
            XCTAssertLessThan(e["fields"]?["wait_ns"]?.uintValue ?? .max, 500_000_000)
            XCTAssertEqual((e["fields"]?["prev_state"]?.uintValue ?? 0) & 3, 1, "TASK_INTERRUPTIBLE (plus flags such as TASK_FREEZABLE): a sleep")
        }
    }
}

final class GaugesFamilyTests: XCTestCase {
    /// Free space on a small tmpfs drops by exactly the size of a file
    /// written to it, as sampled into the trace; per-process fd gauges cover
    /// the recorded command.
    func testFreeSpaceGaugeMovesByTheFileSize() throws {
        try requireBPF()
        let mnt = scratch("gauge-fs")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        XCTAssertEqual(try Tool.run("/bin/mount", ["-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt]).status, 0)
        defer { _ = try? Tool.run("/bin/umount", [mnt]) }
        let trace = scratch("gauges.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "gauges", "--gauge-interval", "100ms", "--",
                                              "/bin/sh", "-c", "sleep 0.5; head -c 3145728 /dev/zero > \(mnt)/f; sleep 0.5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let gauges = try eventsJSON(trace, ["--type", "gauge"])
        let space = gauges.filter { $0["gauge"]?.stringValue == "fs_bytes_available" && $0["fields"]?["name"]?.stringValue == mnt }
        XCTAssertGreaterThanOrEqual(space.count, 5, "sampled every 100 ms")
        let values = space.compactMap { $0["fields"]?["value"]?.uintValue }
        XCTAssertEqual(space.first?["fields"]?["limit"]?.uintValue, 8 << 20)
        XCTAssertEqual(values.first, 8 << 20, "empty at the start")
        XCTAssertEqual(values.last, (8 << 20) - (3 << 20), "3 MiB less after the write")
        XCTAssertEqual(values, values.sorted(by: >), "only ever goes down here")
        let fds = gauges.filter { $0["gauge"]?.stringValue == "process_fds" }
        XCTAssertFalse(fds.isEmpty, "the command's processes are sampled")
        XCTAssertTrue(fds.allSatisfy { ($0["fields"]?["limit"]?.uintValue ?? 0) > 0 && ($0["fields"]?["value"]?.uintValue ?? 0) > 0 })
        for kind in ["system_fds", "tasks", "mem_available", "load1"] {
            XCTAssertTrue(gauges.contains { $0["gauge"]?.stringValue == kind && ($0["fields"]?["limit"]?.uintValue ?? 0) > 0 }, kind)
        }
    }
}

final class TCPFamilyTests: XCTestCase {
    /// N connections to a loopback listener and one to a closed port:
    /// connects with their latency, accepts, and the refused one's reset.
    func testLoopbackConnectionsAndARefusedOne() throws {
        try requireBPF()
        let trace = scratch("tcp.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "tcp", "--", Tool.load, "tcp", "5"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let ports = r.stdout.split(separator: " ").compactMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(ports.count, 3, r.stdout)
        let (listen, refused) = (ports[0], ports[1])
        XCTAssertEqual(ports[2], 5, "five connections made")
        let tcp = try eventsJSON(trace, ["--type", "tcp"])
        let connects = tcp.filter { $0["old_state_name"]?.stringValue == "SYN_SENT" && $0["new_state_name"]?.stringValue == "ESTABLISHED" }
        XCTAssertEqual(connects.count, 5)
        for c in connects {
            XCTAssertEqual(c["dst_ip"]?.stringValue, "127.0.0.1")
            XCTAssertEqual(c["fields"]?["dport"]?.uintValue, listen)
            XCTAssertGreaterThan(c["fields"]?["latency_ns"]?.uintValue ?? 0, 0)
            XCTAssertEqual(c["comm"]?.stringValue, "flightbox-load", "attributed to the connecting process")
        }
        let accepts = tcp.filter { $0["old_state_name"]?.stringValue == "SYN_RECV" && $0["new_state_name"]?.stringValue == "ESTABLISHED" }
        XCTAssertEqual(accepts.count, 5)
        XCTAssertTrue(accepts.allSatisfy { $0["fields"]?["sport"]?.uintValue == listen })
        let failed = try XCTUnwrap(tcp.first { $0["old_state_name"]?.stringValue == "SYN_SENT" && $0["new_state_name"]?.stringValue == "CLOSE" })
        XCTAssertEqual(failed["fields"]?["dport"]?.uintValue, refused)
        XCTAssertGreaterThan(failed["fields"]?["latency_ns"]?.uintValue ?? 0, 0)
        XCTAssertTrue(tcp.contains { $0["kind_name"]?.stringValue == "reset_received" && $0["fields"]?["dport"]?.uintValue == refused })
    }

    /// A listener with a full accept queue drops a SYN, and the connecting
    /// side retransmits it a second later: from a timer, in interrupt
    /// context, yet attributed to the process that connected.
    func testDroppedSYNIsRetransmitted() throws {
        try requireBPF()
        let trace = scratch("retransmit.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "tcp", "--", Tool.load, "retransmit", "1500"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let port = try XCTUnwrap(UInt64(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), r.stdout)
        let tcp = try eventsJSON(trace, ["--type", "tcp"])
        let retransmits = tcp.filter { $0["kind_name"]?.stringValue == "retransmit" }
        XCTAssertGreaterThanOrEqual(retransmits.count, 1, "\(tcp.map { $0.serialized() })")
        let syn = try XCTUnwrap(retransmits.first)
        XCTAssertEqual(syn["fields"]?["dport"]?.uintValue, port)
        XCTAssertEqual(syn["dst_ip"]?.stringValue, "127.0.0.1")
        XCTAssertEqual(syn["comm"]?.stringValue, "flightbox-load")
        let opened = try XCTUnwrap(tcp.last { $0["new_state_name"]?.stringValue == "SYN_SENT" && $0["fields"]?["dport"]?.uintValue == port })
        let wait = (syn["ts_ns"]?.uintValue ?? 0) - (opened["ts_ns"]?.uintValue ?? 0)
        XCTAssertGreaterThan(wait, 900_000_000, "the initial retransmission timeout is 1 s")
        // The given-up connect ends SYN_SENT -> CLOSE after about 1.5 s.
        XCTAssertTrue(tcp.contains { $0["old_state_name"]?.stringValue == "SYN_SENT" && $0["new_state_name"]?.stringValue == "CLOSE" && ($0["fields"]?["latency_ns"]?.uintValue ?? 0) > 1_400_000_000 })
    }
}

final class MemoryFamilyTests: XCTestCase {
    /// A process in a memory cgroup with a small limit touches more than the
    /// limit: the cgroup reclaims, then the kernel kills it. The OOM kill names
    /// the victim, its size and its cgroup; the exit says SIGKILL.
    func testOOMKillInASmallMemoryCgroup() throws {
        try requireBPF()
        let cgroup = try MemoryCgroup(limit: 32 << 20)
        defer { cgroup.remove() }
        let trace = scratch("oom.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "memory,process", "--", Tool.load, "oom", cgroup.path, "256"])
        XCTAssertFalse(r.stdout.contains("survived"), "the limit held: \(r.stdout)")
        let exits = try eventsJSON(trace, ["--type", "exit"])
        let victim = try XCTUnwrap(exits.first { $0["fields"]?["comm"]?.stringValue == "flightbox-load" && $0["process_exit"] == .bool(true) }, "\(exits)")
        XCTAssertEqual(victim["signal"]?.intValue, 9, "killed with SIGKILL")
        let pid = try XCTUnwrap(victim["pid"]?.uintValue)
        let ooms = try eventsJSON(trace, ["--type", "oom"])
        XCTAssertEqual(ooms.count, 1, "\(ooms)")
        let oom = try XCTUnwrap(ooms.first)
        XCTAssertEqual(oom["pid"]?.uintValue, pid)
        XCTAssertEqual(oom["fields"]?["comm"]?.stringValue, "flightbox-load")
        XCTAssertEqual(oom["fields"]?["memcg"]?.stringValue, cgroup.name)
        XCTAssertGreaterThan(oom["fields"]?["memcg_id"]?.uintValue ?? 0, 0)
        XCTAssertEqual(oom["fields"]?["uid"]?.uintValue, UInt64(getuid()))
        // Nearly all of the 32 MiB limit (8192 pages) is the victim's anonymous memory.
        let anon = oom["fields"]?["anon_rss"]?.uintValue ?? 0
        XCTAssertGreaterThan(anon, UInt64(24 * 256), "\(oom.serialized())")
        XCTAssertLessThanOrEqual(anon, UInt64(34 * 256))
        XCTAssertGreaterThanOrEqual(oom["fields"]?["total_vm"]?.uintValue ?? 0, anon)
        XCTAssertEqual(oom["fields"]?["trigger_pid"]?.uintValue, pid, "its own allocation ran out")
        let reclaims = try eventsJSON(trace, ["--type", "reclaim"]).filter { $0["pid"]?.uintValue == pid }
        XCTAssertFalse(reclaims.isEmpty, "the cgroup tried to reclaim before killing")
        XCTAssertTrue(reclaims.allSatisfy { $0["scope"]?.stringValue == "memcg" && ($0["fields"]?["duration_ns"]?.uintValue ?? 0) > 0 })
        // Touching 32 MiB a page at a time: at least that many minor faults, all summarized.
        let faults = try eventsJSON(trace, ["--type", "faults"]).filter { $0["pid"]?.uintValue == pid }
        XCTAssertGreaterThanOrEqual(faults.reduce(0) { $0 + ($1["fields"]?["user"]?.uintValue ?? 0) }, UInt64(24 * 256))
        XCTAssertGreaterThanOrEqual(faults.reduce(0) { $0 + ($1["fields"]?["minor"]?.uintValue ?? 0) }, UInt64(24 * 256))
    }

    /// A file read back through a mapping after leaving the page cache takes
    /// one major fault per page; fresh anonymous memory one minor fault per
    /// page. The summaries count both as the kernel accounted them.
    func testMajorAndMinorFaults() throws {
        try requireBPF()
        // /var/tmp, which is on a disk (FHS), unlike /tmp often: tmpfs pages
        // cannot leave the page cache.
        let where_ = "/var/tmp"
        let pages = 2000
        let trace = scratch("faults.fbt")
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "memory", "--", Tool.load, "faults", where_, String(pages)])
        XCTAssertEqual(r.status, 0, r.stderr)
        let faults = try eventsJSON(trace, ["--type", "faults"]).filter { $0["comm"]?.stringValue == "flightbox-load" }
        XCTAssertFalse(faults.isEmpty)
        func total(_ k: String) -> UInt64 { faults.reduce(0) { $0 + ($1["fields"]?[k]?.uintValue ?? 0) } }
        XCTAssertGreaterThanOrEqual(total("major"), UInt64(pages) * 9 / 10, "\(faults.map { $0.serialized() })")
        XCTAssertLessThanOrEqual(total("major"), UInt64(pages) + 50)
        XCTAssertGreaterThanOrEqual(total("minor"), UInt64(pages))
        XCTAssertGreaterThanOrEqual(total("user"), 2 * UInt64(pages))
        for f in faults {
            XCTAssertLessThanOrEqual(f["fields"]?["first_ts"]?.uintValue ?? 0, f["ts_ns"]?.uintValue ?? 0)
            XCTAssertLessThanOrEqual((f["ts_ns"]?.uintValue ?? 0) - (f["fields"]?["first_ts"]?.uintValue ?? 0), 2_000_000_000, "one summary spans about a second at most")
        }
    }
}

/// A memory cgroup of its own with a limit, under cgroup v2 or v1.
struct MemoryCgroup {
    let path: String
    let name: String

    init(limit: Int) throws {
        name = "flightbox-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fm = FileManager.default
        let v2 = "/sys/fs/cgroup"
        if let controllers = try? String(contentsOfFile: v2 + "/cgroup.controllers", encoding: .utf8), controllers.contains("memory") {
            try? "+memory".write(toFile: v2 + "/cgroup.subtree_control", atomically: false, encoding: .utf8)
            path = v2 + "/" + name
            try fm.createDirectory(atPath: path, withIntermediateDirectories: false)
            try "\(limit)".write(toFile: path + "/memory.max", atomically: false, encoding: .utf8)
            try? "0".write(toFile: path + "/memory.swap.max", atomically: false, encoding: .utf8)
        } else if fm.fileExists(atPath: "/sys/fs/cgroup/memory/memory.limit_in_bytes") {
            path = "/sys/fs/cgroup/memory/" + name
            try fm.createDirectory(atPath: path, withIntermediateDirectories: false)
            try "\(limit)".write(toFile: path + "/memory.limit_in_bytes", atomically: false, encoding: .utf8)
            try? "\(limit)".write(toFile: path + "/memory.memsw.limit_in_bytes", atomically: false, encoding: .utf8)
        } else {
            throw XCTSkip("no memory cgroup controller on this machine (neither cgroup v2 with memory nor v1 memory)")
        }
    }

    func remove() { rmdir(path) }
}
