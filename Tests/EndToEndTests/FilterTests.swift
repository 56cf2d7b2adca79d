import XCTest
#if canImport(Glibc)
import Glibc
#endif
import FlightboxEvents

/// `record --cgroup` and `record --pid` for real: workloads inside and
/// outside the filter, and only the inside ones in the trace.
final class FilterTests: XCTestCase {
    /// A cgroup hierarchy mounted here: the unified one, or a v1 one with a controller.
    struct Hierarchy {
        var mountPoint: String
        var v2: Bool
    }

    /// Every kind this machine has: v2 (at /sys/fs/cgroup or, hybrid,
    /// /sys/fs/cgroup/unified) and v1 (the pids hierarchy, else any
    /// controller's). A v2-only machine tests v2, a v1 one v1; this one both.
    static func hierarchies() -> [Hierarchy] {
        guard let text = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8) else { return [] }
        var v2: Hierarchy?
        var v1: [(Hierarchy, [Substring])] = []
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard let dash = f.firstIndex(of: "-"), f.count > dash + 3 else { continue }
            if f[dash + 1] == "cgroup2", v2 == nil { v2 = Hierarchy(mountPoint: String(f[4]), v2: true) }
            if f[dash + 1] == "cgroup" {
                let options = f[dash + 3].split(separator: ",").filter { $0 != "rw" && $0 != "ro" && !$0.contains("=") }
                if !options.isEmpty { v1.append((Hierarchy(mountPoint: String(f[4]), v2: false), options)) }
            }
        }
        let chosenV1 = v1.first { $0.1.contains("pids") } ?? v1.first
        return [v2, chosenV1?.0].compactMap { $0 }
    }

    /// Starts `flightbox record ARGS` and returns once it is recording.
    func startRecording(_ args: [String]) throws -> (Process, Pipe) {
        let rec = Process()
        rec.executableURL = URL(fileURLWithPath: Tool.flightbox)
        rec.arguments = ["record"] + args
        let err = Pipe()
        rec.standardError = err
        try rec.run()
        var seen = Data()
        while !String(decoding: seen, as: UTF8.self).contains("flightbox: recording") {
            let chunk = err.fileHandleForReading.availableData
            if chunk.isEmpty {
                rec.waitUntilExit()
                XCTFail("record ended before recording: \(String(decoding: seen, as: UTF8.self))")
                throw XCTSkip("failed above")
            }
            seen += chunk
        }
        return (rec, err)
    }

    /// Stops a recording with SIGINT; its stderr.
    @discardableResult
    func stop(_ rec: (Process, Pipe)) -> String {
        kill(rec.0.processIdentifier, SIGINT)
        let rest = rec.1.fileHandleForReading.readDataToEndOfFile()
        rec.0.waitUntilExit()
        XCTAssertEqual(rec.0.terminationStatus, 0, String(decoding: rest, as: UTF8.self))
        return String(decoding: rest, as: UTF8.self)
    }

    /// Runs `script` with sh and waits for it; its pid.
    @discardableResult
    func sh(_ script: String) throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, script)
        return p.processIdentifier
    }

    /// getppid calls per pid, and every pid with an event other than a system gauge.
    func getppidCounts(_ trace: String) throws -> (calls: [UInt64: Int], pids: Set<UInt64>, events: [JSON]) {
        let events = try eventsJSON(trace).filter { $0["type"]?.stringValue != "gauge" || $0["pid"]?.uintValue != 0 }
        var calls: [UInt64: Int] = [:]
        for e in events where e["syscall"]?.stringValue == "getppid" { calls[e["pid"]?.uintValue ?? 0, default: 0] += 1 }
        return (calls, Set(events.compactMap { $0["pid"]?.uintValue }), events)
    }

    func testCgroupRecordsOnlyTasksInItAndBelowIt() throws {
        try requireBPF()
        let found = FilterTests.hierarchies()
        XCTAssertFalse(found.isEmpty, "no cgroup hierarchy mounted")
        for h in found {
            let name = "flightbox-test-\(getpid())-\(h.v2 ? "v2" : "v1")"
            let dir = h.mountPoint + "/" + name
            XCTAssertEqual(mkdir(dir, 0o755), 0, "mkdir \(dir): \(String(cString: strerror(errno)))")
            XCTAssertEqual(mkdir(dir + "/inner", 0o755), 0)
            defer {
                rmdir(dir + "/inner/deeper")
                rmdir(dir + "/inner")
                rmdir(dir)
            }
            // v2 by a path relative to the hierarchy (found in the unified one
            // first), v1 by its absolute path.
            let trace = scratch("cgroup-\(h.v2 ? "v2" : "v1").fbt")
            let rec = try startRecording(["-o", trace, "--cgroup", h.v2 ? name : dir, "--gauge-interval", "50ms"])
            // A process that stays a while in a child cgroup, for the per-process gauges.
            let sleeper = Process()
            sleeper.executableURL = URL(fileURLWithPath: "/bin/sh")
            sleeper.arguments = ["-c", "echo $$ > \(dir)/inner/cgroup.procs && exec sleep 0.6"]
            try sleeper.run()
            // Inside: a process that moves itself in, then forks a child
            // (which inherits the cgroup); one in a child cgroup; one in a
            // grandchild cgroup created while recording.
            let inside = try sh("echo $$ > \(dir)/cgroup.procs && \(Tool.load) getppid 1111 && exec \(Tool.load) getppid 1234")
            let inner = try sh("echo $$ > \(dir)/inner/cgroup.procs && exec \(Tool.load) getppid 2222")
            XCTAssertEqual(mkdir(dir + "/inner/deeper", 0o755), 0)
            let deeper = try sh("echo $$ > \(dir)/inner/deeper/cgroup.procs && exec \(Tool.load) getppid 3333")
            // Outside: the same workload, in the test's own cgroup; and one
            // that leaves: its child ran inside, what it execs after moving
            // to the root cgroup is not recorded (the kernel checks every event).
            let outside = try sh("exec \(Tool.load) getppid 4444")
            let leaving = try sh("echo $$ > \(dir)/cgroup.procs && \(Tool.load) getppid 555 && echo $$ > \(h.mountPoint)/cgroup.procs && exec \(Tool.load) getppid 666")
            sleeper.waitUntilExit()
            stop(rec)

            let (calls, pids, events) = try getppidCounts(trace)
            XCTAssertEqual(calls[UInt64(inside)], 1234, "\(h.mountPoint): the process exec'd in the cgroup")
            XCTAssertEqual(calls[UInt64(inner)], 2222, "\(h.mountPoint): a child cgroup counts")
            XCTAssertEqual(calls[UInt64(deeper)], 3333, "\(h.mountPoint): a grandchild cgroup made while recording counts")
            XCTAssertEqual(calls.values.reduce(0, +), 1111 + 1234 + 2222 + 3333 + 555, "\(h.mountPoint): \(calls)")
            XCTAssertNil(calls[UInt64(leaving)], "\(h.mountPoint): recorded after it left the cgroup")
            XCTAssertEqual(calls.values.filter { $0 == 555 }.count, 1, "\(h.mountPoint): its child, inside")
            XCTAssertNil(calls[UInt64(outside)], "\(h.mountPoint): the workload outside the cgroup was recorded")
            XCTAssertFalse(pids.contains(UInt64(outside)))
            // The forked child's calls are there under its own pid.
            let forked = events.filter { $0["type"]?.stringValue == "fork" && $0["pid"]?.uintValue == UInt64(inside) }.compactMap { $0["fields"]?["child_pid"]?.uintValue }
            XCTAssertEqual(forked.count, 1, "\(h.mountPoint): the fork inside the cgroup")
            XCTAssertEqual(forked.first.flatMap { calls[$0] }, 1111)
            // Nothing from the test runner or the shell before it moved in.
            XCTAssertFalse(pids.contains(UInt64(getpid())))
            // Per-process gauges: the cgroup's processes only, the sleeper among them.
            let members: Set<UInt64> = Set([inside, inner, deeper, leaving, sleeper.processIdentifier].map { UInt64($0) } + forked + calls.keys)
            let gauged = Set(events.filter { $0["type"]?.stringValue == "gauge" }.compactMap { $0["pid"]?.uintValue })
            XCTAssertTrue(gauged.contains(UInt64(sleeper.processIdentifier)), "\(h.mountPoint): the sleeper's gauges")
            XCTAssertTrue(gauged.isSubset(of: members), "\(h.mountPoint): gauges of \(gauged.subtracting(members)) outside the cgroup")

            // The metadata says which cgroup, by path, id and hierarchy.
            let filter = try inspectJSON(trace)["capture"]?["filter"]
            var st = stat()
            XCTAssertEqual(stat(dir, &st), 0)
            XCTAssertEqual(filter?["mode"]?.stringValue, "cgroup")
            XCTAssertEqual(filter?["path"]?.stringValue, dir)
            XCTAssertEqual(filter?["id"]?.uintValue, UInt64(st.st_ino))
            XCTAssertEqual(filter?["hierarchy"]?.stringValue, h.v2 ? "v2" : "v1")
            if !h.v2 { XCTAssertNotNil(filter?["controller"]?.stringValue) }
        }
    }

    func testCgroupErrorsAreOneLine() throws {
        try requireBPF()
        let out = scratch("cgroup-bad.fbt")
        let h = try XCTUnwrap(FilterTests.hierarchies().first)
        let file = h.mountPoint + "/cgroup.procs"
        for (arg, message) in [
            (h.mountPoint + "/flightbox-no-such-\(getpid())", "no such cgroup"),
            ("flightbox-no-such-\(getpid())/x", "no such cgroup (looked under "),
            ("/tmp", "not a cgroup directory"),
            (file, "not a cgroup directory"),
            ("../../..", "no such cgroup"),
        ] {
            let r = try Tool.flightbox("record", "-o", out, "--cgroup", arg, "--duration", "1s")
            XCTAssertEqual(r.status, 2, "\(arg): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains("--cgroup \(arg): \(message)"), "\(arg): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "\(arg): nothing is created")
        }
        let r = try Tool.flightbox("record", "-o", out, "--cgroup", h.mountPoint, "--pid", "1")
        XCTAssertEqual(r.status, 2)
        XCTAssertTrue(r.stderr.contains("exclude each other"), r.stderr)
    }

    /// --pid follows the process's descendants, the ones it had when the
    /// recording started and the ones it forks after, as strace -f does.
    func testPidFollowsDescendants() throws {
        try requireBPF()
        let go = scratch("pid-go-\(getpid())")
        unlink(go)
        let wait = "while [ ! -e \(go) ]; do sleep 0.02; done"
        // A child that exists before the recording (it waits, then runs a
        // workload: its own child, forked while recording); after go, the
        // root runs one (a child) and a shell that runs one (a grandchild).
        let root = Process()
        root.executableURL = URL(fileURLWithPath: "/bin/sh")
        root.arguments = ["-c", "(\(wait); \(Tool.load) getppid 1001) & \(wait); \(Tool.load) getppid 1002; /bin/sh -c '\(Tool.load) getppid 1003 & wait'; wait"]
        try root.run()
        usleep(200_000)
        let trace = scratch("pid-tree.fbt")
        let rec = try startRecording(["-o", trace, "--pid", String(root.processIdentifier), "--gauge-interval", "50ms"])
        XCTAssertTrue(FileManager.default.createFile(atPath: go, contents: nil))
        let unrelated = try sh("exec \(Tool.load) getppid 1004")
        root.waitUntilExit()
        XCTAssertEqual(root.terminationStatus, 0)
        let stderr = stop(rec)
        unlink(go)
        XCTAssertFalse(stderr.contains("could not be followed"), stderr)

        let (calls, pids, events) = try getppidCounts(trace)
        // The workloads' calls; each sh also asks once, for $PPID.
        XCTAssertEqual(calls.values.filter { $0 > 1 }.sorted(), [1001, 1002, 1003], "\(calls)")
        XCTAssertNil(calls[UInt64(unrelated)])
        XCTAssertFalse(pids.contains(UInt64(unrelated)))
        // Every recorded pid descends from the root: parents from fork
        // events and, for processes that predate the probes, from their
        // exec and exit events.
        var parent: [UInt64: UInt64] = [:]
        var forkedWhileRecording: Set<UInt64> = []
        for e in events {
            switch e["type"]?.stringValue {
            case "fork" where e["thread"] == .bool(false):
                if let c = e["fields"]?["child_pid"]?.uintValue, let p = e["pid"]?.uintValue {
                    parent[c] = p
                    forkedWhileRecording.insert(c)
                }
            case "exec", "exit":
                if let p = e["pid"]?.uintValue, let pp = e["fields"]?["ppid"]?.uintValue, parent[p] == nil { parent[p] = pp }
            default: break
            }
        }
        let rootPid = UInt64(root.processIdentifier)
        // A signal is recorded when its sender or its target is followed: a
        // child that exited before it was followed still signals its parent.
        let senders = Set(events.filter { $0["type"]?.stringValue == "signal" }.compactMap { $0["pid"]?.uintValue })
        let own = Set(events.filter { $0["type"]?.stringValue != "signal" }.compactMap { $0["pid"]?.uintValue })
        for e in events where e["type"]?.stringValue == "signal" && !own.contains(e["pid"]?.uintValue ?? 0) {
            var q = e["fields"]?["target_pid"]?.uintValue ?? 0
            var hops = 0
            while q != rootPid, let up = parent[q], hops < 16 { q = up; hops += 1 }
            XCTAssertEqual(q, rootPid, "a signal from \(e["pid"]?.uintValue ?? 0) to a process not below the root")
        }
        XCTAssertFalse(senders.contains(UInt64(unrelated)))
        for p in own {
            var q = p
            var hops = 0
            while q != rootPid, let up = parent[q], hops < 16 { q = up; hops += 1 }
            XCTAssertEqual(q, rootPid, "pid \(p) is not below the root \(rootPid)")
        }
        // The child that predates the recording (seeded from /proc, no fork
        // event) is followed: the subshell, which execs its workload.
        let seeded = calls.filter { !forkedWhileRecording.contains($0.key) && $0.key != rootPid }
        XCTAssertEqual(seeded.values.sorted(), [1001], "\(calls), forked while recording: \(forkedWhileRecording.sorted())")
        // The grandchild through sh -c: three levels below the root.
        let exec1003 = events.first { $0["type"]?.stringValue == "exec" && ($0["fields"]?["argv"]?.arrayValue?.last?.stringValue ?? "") == "1003" }
        XCTAssertNotNil(exec1003, "the grandchild's exec")
        // Per-process gauges follow the same processes.
        let gauges = events.filter { $0["type"]?.stringValue == "gauge" }
        XCTAssertFalse(gauges.isEmpty, "per-process gauges of the tree")
        XCTAssertTrue(gauges.allSatisfy { pids.contains($0["pid"]?.uintValue ?? 0) && $0["pid"]?.uintValue != UInt64(unrelated) })

        let filter = try inspectJSON(trace)["capture"]?["filter"]
        XCTAssertEqual(filter?["mode"]?.stringValue, "pid")
        XCTAssertEqual(filter?["pid"]?.uintValue, UInt64(root.processIdentifier))
        XCTAssertEqual(filter?["descendants"], .bool(true))
    }
}
