import XCTest
import FlightboxEvents
import FlightboxFormat

/// Runs the built `flightbox` and `flightbox-load` binaries as a user would.
enum Tool {
    static let binDir: String = {
        if let d = ProcessInfo.processInfo.environment["FLIGHTBOX_BIN_DIR"] { return d }
        let fm = FileManager.default
        var candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
        var dir = URL(fileURLWithPath: CommandLine.arguments[0])
        for _ in 0..<4 { dir.deleteLastPathComponent(); candidates.append(dir) }
        for c in candidates where fm.isExecutableFile(atPath: c.appendingPathComponent("flightbox").path) { return c.path }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug").path
    }()

    static var flightbox: String { binDir + "/flightbox" }
    static var load: String { binDir + "/flightbox-load" }
    static var packageRoot: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        /// Ended by a signal (a Swift trap is SIGILL or SIGTRAP), not by exit.
        var signaled = false
        var lines: [String] { stdout.split(separator: "\n").map(String.init) }
    }

    @discardableResult
    static func run(_ executable: String, _ args: [String], timeout: TimeInterval = 120, beforeWait: ((Process) -> Void)? = nil) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Drain both pipes while the process runs so it never blocks on a full pipe.
        final class Box: @unchecked Sendable { var data = Data() }
        let outData = Box(), errData = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { outData.data = out.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        group.enter()
        DispatchQueue.global().async { errData.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        beforeWait?(p)
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning, Date() < deadline { usleep(10_000) }
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        group.wait()
        return Result(status: p.terminationStatus, stdout: String(decoding: outData.data, as: UTF8.self), stderr: String(decoding: errData.data, as: UTF8.self),
                      signaled: p.terminationReason == .uncaughtSignal)
    }

    static func flightbox(_ args: String...) throws -> Result { try run(flightbox, args) }
    static func flightbox(_ args: [String]) throws -> Result { try run(flightbox, args) }
}

/// BPF tests run for real where they can; with FLIGHTBOX_REQUIRE_BPF=1 (CI) a
/// test that cannot run fails instead of skipping.
func requireBPF(file: StaticString = #filePath, line: UInt = #line) throws {
    var reason: String?
    if geteuid() != 0 { reason = "needs root for BPF" }
    else if !FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux") { reason = "kernel has no BTF" }
    else if !FileManager.default.isExecutableFile(atPath: Tool.flightbox) { reason = "flightbox binary not found in \(Tool.binDir)" }
    guard let reason else { return }
    if ProcessInfo.processInfo.environment["FLIGHTBOX_REQUIRE_BPF"] == "1" {
        XCTFail("FLIGHTBOX_REQUIRE_BPF=1 but this BPF test cannot run: \(reason)", file: file, line: line)
        throw XCTSkip("failed above")
    }
    throw XCTSkip("BPF test skipped: \(reason) (set FLIGHTBOX_REQUIRE_BPF=1 to make this a failure)")
}

func scratch(_ name: String) -> String {
    let dir = NSTemporaryDirectory() + "flightbox-e2e-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    chmod(dir, 0o777)
    return dir + "/" + name
}

/// An empty scratch directory.
func scratchDirectory(_ name: String) throws -> String {
    let dir = scratch(name)
    try? FileManager.default.removeItem(atPath: dir)
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// The trace's events as parsed JSON objects, through the CLI.
func eventsJSON(_ trace: String, _ extra: [String] = []) throws -> [JSON] {
    let r = try Tool.flightbox(["events", trace, "--format", "json"] + extra)
    XCTAssertEqual(r.status, 0, r.stderr)
    return try r.lines.map { try JSONParser.parse($0) }
}

func inspectJSON(_ trace: String) throws -> JSON {
    let r = try Tool.flightbox("inspect", trace, "--format", "json")
    XCTAssertEqual(r.status, 0, r.stderr)
    return try JSONParser.parse(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
}
