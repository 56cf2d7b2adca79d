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
        // Without the scheduler family: on a loaded machine the 64 MiB write
        // can spend most of its time on a run queue, and syscall-latency
        // then rightly leaves it to the scheduling detector.
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "syscalls,process", "--detect", "--findings", live, "--", Tool.load, "latency", dir])
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
        // The workload runs under a name of its own (a task's comm is the
        // name it was executed by), so another test run's flightbox-load at
        // the same time is not counted.
        let comm = "fbcomm\(getpid() % 1_000_000)"
        let link = scratch(comm)
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: Tool.load)
        let rec = Process()
        rec.executableURL = URL(fileURLWithPath: Tool.flightbox)
        rec.arguments = ["record", "-o", trace, "--comm", comm, "--duration", "2s"]
        rec.standardError = FileHandle.nullDevice
        try rec.run()
        usleep(700_000)
        try Tool.run(link, ["getppid", "1234"])
        try Tool.run("/bin/sh", ["-c", "true"])
        rec.waitUntilExit()
        XCTAssertEqual(rec.terminationStatus, 0)
        let events = try eventsJSON(trace).filter { $0["type"]?.stringValue != "gauge" || $0["pid"]?.uintValue != 0 }
        XCTAssertEqual(events.filter { $0["syscall"]?.stringValue == "getppid" }.count, 1234)
        XCTAssertTrue(events.allSatisfy { $0["comm"]?.stringValue == comm }, "only \(comm): \(Set(events.compactMap { $0["comm"]?.stringValue }))")
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
        let root = Tool.packageRoot + "/fixtures"
        let count = try FileManager.default.contentsOfDirectory(atPath: root).filter { FileManager.default.fileExists(atPath: "\(root)/\($0)/trace.fbt") }.count
        XCTAssertGreaterThanOrEqual(count, 4)
        XCTAssertTrue(r.stdout.contains("\(count) passed, 0 failed"), r.stdout)
        for name in ["latency-outlier", "system-wide", "tcp-refused", "http-healthy", "oom-memcg", "reclaim-memcg", "build-healthy", "enospc-tmpfs", "emfile-leak", "cpu-hogs", "build-sched-healthy", "cold-cache-healthy", "preempted-read",
                     "exhaustion-memcg-leak", "exhaustion-tmpfs-fill", "exhaustion-fd-leak", "exhaustion-pids-cgroup", "exhaustion-healthy",
                     "exhaustion-memory-pressure", "exhaustion-cpu-pressure", "block-slow-loop", "block-busy-healthy"] {
            XCTAssertTrue(r.stdout.contains("PASS \(name) "), name)
        }
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
    /// A recorder started with SIGCHLD ignored (as some supervisors do) still
    /// sees its command exit, and the command does not inherit the "ignore".
    func testCommandExitIsSeenWhenSIGCHLDWasIgnored() throws {
        try requireBPF()
        let trace = scratch("sigchld-ignored.fbt")
        let started = Date()
        let r = try Tool.run("/bin/sh", ["-c", "trap '' CHLD; exec \(Tool.flightbox) record -o \(trace) --probes process -- /bin/sh -c 'sleep 0.2; exit 7'"], timeout: 30)
        XCTAssertFalse(r.signaled, r.stderr)
        XCTAssertEqual(r.status, 7, "the command's exit status: \(r.stderr)")
        XCTAssertLessThan(Date().timeIntervalSince(started), 20, "recording ended when the command did")
        XCTAssertEqual(try inspectJSON(trace)["closed_cleanly"], .bool(true))
    }

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
