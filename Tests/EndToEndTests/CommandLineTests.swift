import XCTest
import Foundation

/// The command line against bad paths, bad values, concurrent writers and
/// dying recorders (issue 9, items 10-16): the real binary, run from outside.
final class CommandLineTests: XCTestCase {
    /// A small trace to work on (10 KB).
    static let fixture = Tool.packageRoot + "/fixtures/latency-outlier/trace.fbt"

    func copyFixture(to path: String) throws {
        try? FileManager.default.removeItem(atPath: path)
        try FileManager.default.copyItem(atPath: Self.fixture, toPath: path)
    }

    func contents(_ path: String) -> Data? { FileManager.default.contents(atPath: path) }

    func inode(_ path: String) -> UInt64? {
        var st = stat()
        return lstat(path, &st) == 0 ? UInt64(st.st_ino) : nil
    }

    /// A failure is one line on stderr: "flightbox: ..." containing `fragment`.
    func assertOneLine(_ r: Tool.Result, status: Int32, _ fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(r.status, status, r.stderr, file: file, line: line)
        XCTAssertEqual(r.stderr.split(separator: "\n").count, 1, r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.hasPrefix("flightbox: "), r.stderr, file: file, line: line)
        XCTAssertTrue(r.stderr.contains(fragment), "expected '\(fragment)' in: \(r.stderr)", file: file, line: line)
    }

    /// Names of the files in `dir` that are empty: what a recorder must never leave.
    func emptyFiles(_ dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).filter {
            ((try? FileManager.default.attributesOfItem(atPath: dir + "/" + $0))?[.size] as? NSNumber)?.intValue == 0
        }
    }

    // MARK: item 10

    /// `repair a.fbt -o ./a.fbt` used to truncate its own input; the input is
    /// now recognized by device and inode under every name.
    func testRepairNeverWritesOverItsInputUnderAnotherName() throws {
        let dir = try scratchDirectory("repair-names")
        let input = dir + "/a.fbt"
        try copyFixture(to: input)
        let original = contents(input)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.fbt", withDestinationPath: "a.fbt")
        XCTAssertEqual(link(input, dir + "/hard.fbt"), 0)
        for out in [dir + "/./a.fbt", dir + "//a.fbt", dir + "/link.fbt", dir + "/hard.fbt"] {
            let r = try Tool.flightbox("repair", input, "-o", out)
            assertOneLine(r, status: 2, "is the input")
            XCTAssertEqual(contents(input), original, "-o \(out) changed the input")
        }
        XCTAssertEqual(try inspectJSON(input)["closed_cleanly"], .bool(true))
    }

    /// The copy appears in one rename(2): a file already at the output path is
    /// replaced whole (its inode changes), and no temporary file is left.
    func testRepairReplacesItsOutputInOneStep() throws {
        let dir = try scratchDirectory("repair-replace")
        let input = dir + "/in.fbt", out = dir + "/out.fbt"
        try copyFixture(to: input)
        try Data("an older file".utf8).write(to: URL(fileURLWithPath: out))
        let before = try XCTUnwrap(inode(out))
        let r = try Tool.flightbox("repair", input, "-o", out)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertNotEqual(inode(out), before, "replaced by rename, not rewritten in place")
        XCTAssertEqual(try inspectJSON(out)["closed_cleanly"], .bool(true))
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["in.fbt", "out.fbt"])
    }

    // MARK: item 11

    /// A directory, a path in /proc, or a device as the output used to crash
    /// (SIGSEGV in TraceWriter.init's failure path): now one line, exit 1.
    func testRepairToAPathThatCannotBeAFileFailsWithOneLine() throws {
        let dir = try scratchDirectory("repair-bad-out")
        let input = dir + "/in.fbt"
        try copyFixture(to: input)
        assertOneLine(try Tool.flightbox("repair", input, "-o", dir), status: 1, "cannot create \(dir): Is a directory")
        assertOneLine(try Tool.flightbox("repair", input, "-o", "/proc/x.fbt"), status: 1, "cannot create /proc/x.fbt")
        assertOneLine(try Tool.flightbox("repair", input, "-o", "/dev/null"), status: 1, "/dev/null exists and is not a regular file")
        assertOneLine(try Tool.flightbox("repair", input, "-o", dir + "/missing/x.fbt"), status: 1, "No such file or directory")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["in.fbt"])
    }

    // MARK: item 12

    /// Values that used to trap (overflowing conversions and arithmetic) and
    /// values out of their range are one-line usage errors, exit code 2, and
    /// nothing is created.
    func testOutOfRangeValuesAreOneLineUsageErrors() throws {
        let dir = try scratchDirectory("ranges")
        let trace = dir + "/t.fbt"
        try copyFixture(to: trace)
        let out = dir + "/new.fbt"
        let cases: [([String], String)] = [
            (["events", trace, "--from", "+1e12s"], "--from: '+1e12s' is out of range"),
            (["events", trace, "--to", "99999999999999999999999"], "--to: '99999999999999999999999' is out of range"),
            (["replay", trace, "--from", "9999-12-31T23:59:59Z"], "--from: '9999-12-31T23:59:59Z' is out of range"),
            (["events", trace, "--from", "2026-13-01T00:00:00Z"], "--from: cannot read '2026-13-01T00:00:00Z'"),
            (["events", trace, "--limit=-1"], "--limit: -1 is out of range"),
            (["events", trace, "--limit", "many"], "'many' is invalid for '--limit"),
            (["inspect", trace, "--top=-1"], "--top: -1 is out of range"),
            (["record", "-o", out, "--duration", "1e30"], "--duration: '1e30' is out of range"),
            (["record", "-o", out, "--duration", "nan"], "--duration: cannot read 'nan'"),
            (["record", "-o", out, "--ring-kb", "4194304"], "--ring-kb: 4194304 is not a power of two from 4 to 1048576"),
            (["record", "-o", out, "--wakeup-kb", "0"], "--wakeup-kb: 0 is out of range"),
            (["record", "-o", out, "--level", "99"], "--level: 99 is out of range"),
            (["record", "-o", out, "--sched-runq-min", "1e40h"], "--sched-runq-min: '1e40h' is out of range"),
            (["record", "-o", out, "--gauge-interval", "1ms"], "--gauge-interval: '1ms' is too short"),
            (["record", "-o", out, "--pid", "99999999999"], "'99999999999' is invalid for '--pid"),
            (["bench", "--rounds", "0"], "--rounds: 0 is out of range"),
            (["bench", "mixed", "--files=-3"], "--files: -3 is out of range"),
            (["bench", "format", "--seek-mb=-1"], "--seek-mb: -1 is out of range"),
        ]
        for (args, fragment) in cases {
            let r = try Tool.flightbox(args)
            assertOneLine(r, status: 2, fragment)
            XCTAssertEqual(r.stdout, "", args.joined(separator: " "))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "a refused record creates nothing")
        // The largest values in range still work, and a time before the
        // trace's clock began is before every event.
        let all = try Tool.flightbox("events", trace, "--limit", "3")
        XCTAssertEqual(all.status, 0, all.stderr)
        for from in ["1970-01-01T00:00:00Z", "0"] {
            let r = try Tool.flightbox("events", trace, "--from", from, "--to", "+876000h", "--limit", "3")
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertEqual(r.stdout, all.stdout)
        }
    }

    // MARK: item 13

    /// A file another process holds the lock of is never replaced: the second
    /// writer is refused, naming the holder, before it touches the file.
    func testAnOutputHeldByAnotherWriterIsRefused() throws {
        let dir = try scratchDirectory("held")
        let input = dir + "/in.fbt", out = dir + "/out.fbt"
        try copyFixture(to: input)
        try copyFixture(to: out)
        let fd = open(out, O_RDONLY)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0)
        let before = contents(out), node = inode(out)
        assertOneLine(try Tool.flightbox("repair", input, "-o", out), status: 1, "\(out) is being written by another process (pid \(getpid()))")
        XCTAssertEqual(contents(out), before)
        XCTAssertEqual(inode(out), node)
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: dir)), ["in.fbt", "out.fbt"])
    }

    /// Two recorders on one -o: the second is refused with one line before it
    /// touches the file, under any name of it, and the first's trace is whole.
    func testASecondRecorderIsRefusedBeforeItTouchesTheFile() throws {
        try requireBPF()
        let dir = try scratchDirectory("two-recorders")
        let trace = dir + "/t.fbt"
        let first = try Recorder(["record", "-o", trace, "--probes", "process,syscalls", "--duration", "4s"])
        try first.waitForStderr("flightbox: recording")
        let node = inode(trace)
        XCTAssertNotNil(node)
        try FileManager.default.createSymbolicLink(atPath: dir + "/link.fbt", withDestinationPath: "t.fbt")
        for out in [trace, dir + "/./t.fbt", dir + "/link.fbt"] {
            let r = try Tool.flightbox("record", "-o", out, "--probes", "process", "--duration", "1s")
            assertOneLine(r, status: 1, "is being written by another process (pid \(first.pid))")
            XCTAssertEqual(inode(trace), node, "-o \(out) replaced the file")
        }
        let status = first.wait()
        XCTAssertEqual(status, 0, first.stderr)
        let info = try inspectJSON(trace)
        XCTAssertEqual(info["closed_cleanly"], .bool(true))
        XCTAssertEqual(info["missing"]?.uintValue, 0)
        let said = first.stderr.split(separator: " ").drop { $0 != "recorded" }.dropFirst().first.flatMap { UInt64($0) }
        XCTAssertEqual(info["events"]?.uintValue, said, "every event the recorder counted is readable")
    }

    /// Recorders started together on one new path: exactly one records.
    func testRecordersStartedTogetherOnOnePathOneWins() throws {
        try requireBPF()
        let dir = try scratchDirectory("race")
        let trace = dir + "/t.fbt"
        let recorders = try (0..<3).map { _ in try Recorder(["record", "-o", trace, "--probes", "process", "--duration", "2s"]) }
        let statuses = recorders.map { $0.wait() }
        XCTAssertEqual(statuses.sorted(), [0, 1, 1], recorders.map(\.stderr).joined())
        for r in recorders where r.status == 1 {
            XCTAssertTrue(r.stderr.contains("is being written by another process"), r.stderr)
        }
        XCTAssertEqual(try inspectJSON(trace)["closed_cleanly"], .bool(true))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["t.fbt"])
    }

    // MARK: item 14

    /// Bad outputs are refused before anything is created, including the
    /// trace when only the findings path is bad.
    func testEveryOutputIsCheckedBeforeAnyIsCreated() throws {
        let dir = try scratchDirectory("outputs")
        let trace = dir + "/t.fbt"
        func refused(_ args: [String], _ status: Int32, _ fragment: String) throws {
            assertOneLine(try Tool.flightbox(["record", "--duration", "1s"] + args), status: status, fragment)
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [], "created something: \(args)")
        }
        try refused(["-o", trace, "--detect", "--findings", dir + "/./t.fbt"], 2, "is the trace file")
        try refused(["-o", dir], 1, "cannot create \(dir): Is a directory")
        try refused(["-o", "/dev/null"], 1, "not a regular file")
        try refused(["-o", trace, "--detect", "--findings", dir], 1, "cannot create \(dir): Is a directory; choose a writable path with --findings")
        try refused(["-o", trace, "--detect", "--findings", dir + "/none/f.json"], 1, "with --findings")
        try requireBPF()
        // Root may write in /proc as far as access(2) can tell; creating there fails.
        try refused(["-o", trace, "--detect", "--findings", "/proc/x.json"], 1, "cannot create /proc/x.json")
    }

    /// A recorder killed at any moment of its start leaves either nothing at
    /// its path (or the file that was there) or a readable trace; never an
    /// empty file.
    func testARecorderKilledWhileStartingLeavesNoUnreadableFile() throws {
        try requireBPF()
        for (i, delay) in [0, 100_000, 300_000, 500_000, 800_000].enumerated() {
            for existing in [false, true] {
                let dir = try scratchDirectory("early-kill-\(i)-\(existing)")
                let trace = dir + "/t.fbt"
                if existing { try copyFixture(to: trace) }
                let old = contents(trace)
                let p = Process()
                p.executableURL = URL(fileURLWithPath: Tool.flightbox)
                p.arguments = ["record", "-o", trace]
                p.standardError = FileHandle.nullDevice
                try p.run()
                usleep(useconds_t(delay))
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
                XCTAssertEqual(try emptyFiles(dir), [], "after \(delay) µs")
                XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0 != "t.fbt" }, [], "after \(delay) µs")
                guard FileManager.default.fileExists(atPath: trace) else { continue }
                if existing, contents(trace) == old { continue }
                let r = try Tool.flightbox("inspect", trace)
                XCTAssertEqual(r.status, 0, "killed after \(delay) µs: \(r.stderr)")
            }
        }
    }

    // MARK: item 15

    /// Values that used to be accepted without a word and record nothing useful.
    func testValuesThatWouldRecordNothingAreRefused() throws {
        let dir = try scratchDirectory("silent")
        let trace = dir + "/t.fbt"
        try copyFixture(to: trace)
        let out = dir + "/new.fbt"
        var missing: Int32 = 999_999
        while kill(missing, 0) == 0 || errno != ESRCH { missing -= 1 }
        let cases: [([String], String)] = [
            (["record", "-o", out, "--pid", String(missing)], "--pid \(missing): no such process"),
            (["record", "-o", out, "--pid", "0"], "--pid 0: no such process"),
            (["record", "-o", out, "--probes", ""], "--probes: an empty list"),
            (["record", "-o", out, "--probes", "syscalls,,files"], "--probes: an empty name in 'syscalls,,files'"),
            (["record", "-o", out, "--probes", "syscalls,files,syscalls"], "--probes: 'syscalls' is given twice"),
            (["record", "-o", out, "--probes", "syscalls,sycalls"], "--probes: unknown name 'sycalls'"),
            (["record", "-o", out, "--detect", "--detectors", ""], "--detectors: an empty list"),
            (["record", "-o", out, "--detectors", "syscall-latency"], "--detectors needs --detect"),
            (["record", "-o", out, "--comm", ""], "--comm"),
            (["replay", trace, "--detectors", "syscall-latency,syscall-latency"], "'syscall-latency' is given twice"),
            (["events", trace, "--from", "+2s", "--to", "+1s"], "--from +2s is later than --to +1s"),
            (["replay", trace, "--from", "+2s", "--to", "+1s"], "--from +2s is later than --to +1s"),
        ]
        for (args, fragment) in cases {
            let r = try Tool.flightbox(args)
            assertOneLine(r, status: 2, fragment)
            XCTAssertEqual(r.stdout, "", args.joined(separator: " "))
        }
        // A thread's id is not a process: the filter would match nothing.
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").compactMap { Int32($0) }
        if let thread = tasks.first(where: { $0 != getpid() }) {
            assertOneLine(try Tool.flightbox("record", "-o", out, "--pid", String(thread)), status: 2, "is a thread of process \(getpid())")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
    }

    // MARK: item 16

    /// The command never runs unrecorded: SIGKILL to the recorder kills it.
    func testTheCommandDiesWithTheRecorder() throws {
        try requireBPF()
        let trace = try scratchDirectory("orphan") + "/t.fbt"
        let recorder = try Recorder(["record", "-o", trace, "--", "/bin/sleep", "30.123"])
        try recorder.waitForStderr("flightbox: recording")
        let children = try Recorder.children(of: recorder.pid)
        XCTAssertEqual(children.count, 1)
        let sleep = try XCTUnwrap(children.first)
        // The recorder lets the command exec right after saying it records.
        let execDeadline = Date().addingTimeInterval(5)
        while Recorder.commandLine(sleep) != ["/bin/sleep", "30.123"], Date() < execDeadline { usleep(10_000) }
        XCTAssertEqual(Recorder.commandLine(sleep), ["/bin/sleep", "30.123"])
        kill(recorder.pid, SIGKILL)
        _ = recorder.wait()
        let deadline = Date().addingTimeInterval(1)
        while Recorder.isAlive(sleep), Date() < deadline { usleep(10_000) }
        XCTAssertFalse(Recorder.isAlive(sleep), "the command outlived its recorder")
        XCTAssertEqual(try Tool.flightbox("inspect", trace).status, 0)
    }

    /// When the disk fills, recording stops and so does the command.
    func testTheCommandIsKilledWhenTheDiskFills() throws {
        try requireBPF()
        let mnt = try scratchDirectory("tiny-orphan")
        let m = try Tool.run("/bin/mount", ["-t", "tmpfs", "-o", "size=256k", "tmpfs", mnt])
        XCTAssertEqual(m.status, 0, m.stderr)
        defer { _ = try? Tool.run("/bin/umount", [mnt]) }
        let start = Date()
        // Minutes of reads if left alone; the disk is full within a second.
        let r = try Tool.run(Tool.flightbox, ["record", "-o", mnt + "/t.fbt", "--codec", "lz4", "--", Tool.load, "read", "400000123"], timeout: 60)
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("disk full writing"), r.stderr)
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)
        XCTAssertEqual(Recorder.processes(withArgument: "400000123"), [], "the command outlived the recording")
    }
}

/// A `flightbox` run in the background whose stderr can be waited on.
/// Sendable: its mutable state (the stderr collected) is guarded by `lock`.
final class Recorder: @unchecked Sendable {
    let process = Process()
    private let errPipe = Pipe()
    private let lock = NSLock()
    private var errData = Data()
    private(set) var status: Int32 = -1

    var pid: Int32 { process.processIdentifier }
    var stderr: String { lock.lock(); defer { lock.unlock() }; return String(decoding: errData, as: UTF8.self) }

    init(_ args: [String]) throws {
        process.executableURL = URL(fileURLWithPath: Tool.flightbox)
        process.arguments = args
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errPipe
        errPipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self, !d.isEmpty else { return }
            self.lock.lock()
            self.errData.append(d)
            self.lock.unlock()
        }
        try process.run()
    }

    struct Silent: Error, CustomStringConvertible { var description: String }

    func waitForStderr(_ marker: String, timeout: TimeInterval = 30) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !stderr.contains(marker) {
            guard process.isRunning, Date() < deadline else { throw Silent(description: "flightbox never said '\(marker)': \(stderr)") }
            usleep(10_000)
        }
    }

    @discardableResult
    func wait() -> Int32 {
        process.waitUntilExit()
        // The last bytes of stderr may still be in the pipe.
        usleep(50_000)
        errPipe.fileHandleForReading.readabilityHandler = nil
        if let rest = try? errPipe.fileHandleForReading.readToEnd() {
            lock.lock()
            errData.append(rest)
            lock.unlock()
        }
        status = process.terminationStatus
        return status
    }

    /// Child processes of `pid`, from every thread's /proc children list.
    static func children(of pid: Int32) throws -> [Int32] {
        try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task").flatMap { tid in
            ((try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/children", encoding: .utf8)) ?? "").split(separator: " ").compactMap { Int32($0) }
        }
    }

    static func commandLine(_ pid: Int32) -> [String] {
        guard let d = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return [] }
        return d.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Running, not a zombie waiting to be reaped.
    static func isAlive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: close)...].hasPrefix(" Z")
    }

    static func processes(withArgument arg: String) -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { Int32($0) }.filter {
            commandLine($0).contains(arg) && isAlive($0)
        }
    }
}
