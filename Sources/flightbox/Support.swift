import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat

/// Prints one line to stderr and exits with `code`: how every failure ends.
func fail(_ message: String, code: Int32 = 1) -> ExitCode {
    FileHandleStderr.write("flightbox: \(message)\n")
    return ExitCode(code)
}

enum FileHandleStderr {
    static func write(_ s: String) {
        var s = s
        s.withUTF8 { p in _ = Glibc.write(2, p.baseAddress, p.count) }
    }
}

/// Buffered stdout: events and findings can be millions of lines.
final class Output {
    private var buf: [UInt8] = []
    let fd: Int32

    init(fd: Int32 = 1) {
        self.fd = fd
        buf.reserveCapacity(1 << 16)
    }

    func line(_ s: String) {
        buf.append(contentsOf: s.utf8)
        buf.append(10)
        if buf.count >= 1 << 16 { flush() }
    }

    func flush() {
        var off = 0
        while off < buf.count {
            let n = buf.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, $0.count - off) }
            if n <= 0 { if errno == EINTR { continue }; break }
            off += n
        }
        buf.removeAll(keepingCapacity: true)
    }

    deinit { flush() }
}

/// Parses "5s", "250ms", "2m", "1h", "100us", "10ns" or a plain number of seconds.
func parseDuration(_ s: String) -> UInt64? {
    let units: [(String, Double)] = [("ns", 1), ("us", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
    for (suffix, scale) in units.sorted(by: { $0.0.count > $1.0.count }) where s.hasSuffix(suffix) {
        guard let v = Double(s.dropLast(suffix.count)), v >= 0, v.isFinite else { return nil }
        return UInt64(v * scale)
    }
    guard let v = Double(s), v >= 0, v.isFinite else { return nil }
    return UInt64(v * 1e9)
}

/// A point in a trace: "+12.5s" (offset from the first event), an integer
/// (raw CLOCK_MONOTONIC ns, as in the events), or a UTC wall-clock time
/// "2026-11-25T10:00:00.5Z".
func parseTime(_ s: String, reader: TraceReader) -> UInt64? {
    if s.hasPrefix("+") {
        guard let d = parseDuration(String(s.dropFirst())) else { return nil }
        return (reader.firstTimestamp ?? 0) + d
    }
    if let raw = UInt64(s) { return raw }
    guard let wall = parseISO8601(s) else { return nil }
    return reader.metadata.eventTime(wallClockNs: wall)
}

/// YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM) to ns since the epoch.
func parseISO8601(_ s: String) -> Int64? {
    let u = Array(s.utf8)
    func num(_ a: Int, _ n: Int) -> Int? {
        guard a + n <= u.count else { return nil }
        var v = 0
        for c in u[a..<(a + n)] { guard c >= 48, c <= 57 else { return nil }; v = v * 10 + Int(c - 48) }
        return v
    }
    guard u.count >= 19, let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2), let h = num(11, 2), let mi = num(14, 2), let se = num(17, 2),
          u[4] == 45, u[7] == 45, u[10] == 84 || u[10] == 32, u[13] == 58, u[16] == 58 else { return nil }
    var i = 19
    var frac: Int64 = 0
    if i < u.count, u[i] == 46 {
        i += 1
        var digits = 0
        while i < u.count, u[i] >= 48, u[i] <= 57 {
            if digits < 9 { frac = frac * 10 + Int64(u[i] - 48); digits += 1 }
            i += 1
        }
        while digits < 9 { frac *= 10; digits += 1 }
    }
    var offset = 0
    if i < u.count {
        if u[i] == 90 { i += 1 } else if u[i] == 43 || u[i] == 45, let oh = num(i + 1, 2), let om = num(i + 4, 2) {
            offset = (oh * 3600 + om * 60) * (u[i] == 43 ? 1 : -1)
            i += 6
        } else { return nil }
    }
    guard i == u.count else { return nil }
    var t = tm()
    t.tm_year = Int32(y - 1900); t.tm_mon = Int32(mo - 1); t.tm_mday = Int32(d)
    t.tm_hour = Int32(h); t.tm_min = Int32(mi); t.tm_sec = Int32(se)
    let secs = Int64(timegm(&t)) - Int64(offset)
    return secs * 1_000_000_000 + frac
}

/// UTC wall-clock time with microseconds.
func formatWallClock(_ ns: Int64) -> String {
    var secs = time_t(ns / 1_000_000_000)
    var t = tm()
    gmtime_r(&secs, &t)
    func p(_ v: Int32, _ w: Int) -> String { let s = String(v); return String(repeating: "0", count: max(0, w - s.count)) + s }
    let us = Int32((ns % 1_000_000_000) / 1000)
    return "\(p(t.tm_year + 1900, 4))-\(p(t.tm_mon + 1, 2))-\(p(t.tm_mday, 2))T\(p(t.tm_hour, 2)):\(p(t.tm_min, 2)):\(p(t.tm_sec, 2)).\(p(us, 6))Z"
}

/// Seconds since `base` with microseconds, e.g. "+1.234567".
func formatOffset(_ ts: UInt64, from base: UInt64) -> String {
    let neg = ts < base
    let d = neg ? base - ts : ts - base
    let us = String(d / 1000 % 1_000_000)
    return (neg ? "-" : "+") + String(d / 1_000_000_000) + "." + String(repeating: "0", count: 6 - us.count) + us
}

func openTrace(_ path: String) throws -> TraceReader {
    do {
        return try TraceReader(path: path)
    } catch let e as TraceError {
        throw fail(e.description)
    }
}

/// Problems found while reading, one line each, on stderr.
func reportProblems(_ reader: TraceReader) {
    for p in reader.problems { FileHandleStderr.write("flightbox: warning: \(reader.path) \(p)\n") }
}

enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}
