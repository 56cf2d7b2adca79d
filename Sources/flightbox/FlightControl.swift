import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import CFlightboxSys
import FlightboxEvents
import FlightboxFormat

/// `flightbox flight status --dir DIR`: what the recorder of DIR last wrote
/// to its status file, and whether it still runs (it holds DIR's lock).
struct FlightStatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show a flight recorder's state: running or not, segments, rates, losses, dumps, last finding.")

    @Option(help: "The recorder's directory.") var dir: String
    @Option(help: "text or json.") var format: OutputFormat = .text

    func run() throws {
        let holder = flightLockHolder(dir)
        guard let text = readWholeFile(FlightFiles.status(dir)) else {
            if holder.running { throw fail("\(dir): a recorder (pid \(holder.pid.map(String.init) ?? "?")) holds the directory but has written no status yet") }
            throw fail("\(dir) has no flight recorder status (\(FlightFiles.status(dir)) is missing): start `flightbox flight --dir \(dir)`")
        }
        guard case .object(var fields) = try? JSONParser.parse(text) else { throw fail("\(FlightFiles.status(dir)) is not a status file") }
        // The lock says whether it runs; the file says what it last saw.
        fields.removeAll { $0.0 == "running" }
        fields.insert(("running", .bool(holder.running)), at: 0)
        let status = JSON.object(fields)
        if format == .json {
            print(status.serialized())
            return
        }
        func s(_ k: String) -> String { status[k].map { $0.stringValue ?? $0.serialized() } ?? "?" }
        let dumps = status["dumps"]
        print("recorder:   \(holder.running ? "running" : "not running") (pid \(s("pid")), since \(s("started_at")); status of \(s("updated_at")))")
        print("segments:   \(s("segments")) on disk, \(s("segment_bytes")) bytes of \(s("max_bytes"))")
        print("events:     \(s("events")) written, \(s("events_per_second"))/s, \(s("losses")) lost in the kernel, \(s("dropped_for_disk_full")) dropped for a full disk")
        print("dumps:      \(dumps?["on_disk"]?.serialized() ?? "0") on disk (\(dumps?["bytes"]?.serialized() ?? "0") bytes of \(dumps?["max_bytes"]?.serialized() ?? "?")), \(dumps?["written"]?.serialized() ?? "0") written by this run, \(dumps?["rate_limited"]?.serialized() ?? "0") triggers rate-limited\(dumps?["last"]?["path"]?.stringValue.map { "; last \($0)" } ?? "")")
        print("recorder:   \(s("cpu_seconds")) s CPU, \(s("rss_bytes")) bytes resident")
        if let f = status["last_finding"] {
            print("last finding: \(f["at"]?.stringValue ?? "?") \(f["finding"]?["severity"]?.stringValue?.uppercased() ?? "") \(f["finding"]?["detector"]?.stringValue ?? ""): \(f["finding"]?["summary"]?.stringValue ?? "")")
        } else {
            print("last finding: none")
        }
    }
}

/// `flightbox dump --dir DIR`: asks the running recorder for a dump, through
/// its control socket (or SIGUSR1 to the pid in DIR when there is none).
struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ask a running flight recorder to write a dump now.")

    @Option(help: "The recorder's directory.") var dir: String
    @Option(help: "Why, stored in the dump's metadata.") var reason: String = "flightbox dump"

    func run() throws {
        let holder = flightLockHolder(dir)
        guard holder.running else { throw fail("no flight recorder runs in \(dir)") }
        let fd = fb_unix_connect(FlightFiles.socket(dir))
        if fd < 0 {
            guard let pid = holder.pid ?? readWholeFile(FlightFiles.pid(dir)).flatMap({ Int32($0.split(separator: "\n").first.map(String.init) ?? "") }) else {
                throw fail("cannot reach the recorder in \(dir): \(String(cString: strerror(-fd))) on \(FlightFiles.socket(dir)), and no pid")
            }
            guard kill(pid, SIGUSR1) == 0 else { throw fail("cannot signal the recorder (pid \(pid)): \(String(cString: strerror(errno)))") }
            print("signalled pid \(pid) (SIGUSR1); the reason is not passed on that way")
            return
        }
        defer { close(fd) }
        let request = Array("dump \(reason.replacingOccurrences(of: "\n", with: " "))\n".utf8)
        _ = request.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        var reply: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1024)
        while !reply.contains(10) {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            reply += buf[0..<n]
        }
        let line = String(decoding: reply.prefix(while: { $0 != 10 }), as: UTF8.self)
        guard line.hasPrefix("ok ") else { throw fail(line.isEmpty ? "the recorder in \(dir) did not answer" : line) }
        let what = String(line.dropFirst(3))
        if what.hasPrefix("rate-limited") { throw fail(what) }
        print("dump \(what) (written to \(FlightFiles.dumps(dir)) once the post window has passed)")
    }
}

/// Whether a recorder holds DIR's lock, and its pid as /proc/locks tells.
func flightLockHolder(_ dir: String) -> (running: Bool, pid: Int32?) {
    do {
        _ = try FileLock(path: FlightFiles.lock(dir))
        return (false, nil)
    } catch TraceError.busy(_, let holder) {
        return (true, holder)
    } catch {
        return (false, nil)
    }
}

func readWholeFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16384)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0, errno == EINTR { continue }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}
