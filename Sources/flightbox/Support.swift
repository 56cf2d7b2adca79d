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

    /// One JSON value as a line, serialized straight into the buffer.
    func line(_ json: JSON) {
        json.write(into: &buf)
        buf.append(10)
        if buf.count >= 1 << 16 { flush() }
    }

    /// One line written by `body` straight into the buffer (events as JSON).
    @inline(__always) func line(_ body: (inout [UInt8]) -> Void) {
        body(&buf)
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

/// The longest duration any option takes: a century is beyond any recording,
/// and adding it to a clock reading or a trace's timestamps cannot overflow.
let maxDurationNs: UInt64 = 100 * 365 * 86_400 * 1_000_000_000

enum DurationValue: Equatable {
    case ns(UInt64)
    case unreadable
    case tooLong
}

/// Reads "5s", "250ms", "2m", "1h", "100us", "10ns" or a plain number of seconds.
func readDuration(_ s: String) -> DurationValue {
    let units: [(String, Double)] = [("ns", 1), ("us", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
    var number = s[...], scale = 1e9
    for (suffix, unitScale) in units.sorted(by: { $0.0.count > $1.0.count }) where s.hasSuffix(suffix) {
        number = s.dropLast(suffix.count)
        scale = unitScale
        break
    }
    guard let v = Double(number), v >= 0, v.isFinite else { return .unreadable }
    // Compared as a Double: converting a value past UInt64.max would trap.
    guard v * scale <= Double(maxDurationNs) else { return .tooLong }
    return .ns(UInt64(v * scale))
}

func parseDuration(_ s: String) -> UInt64? {
    if case .ns(let v) = readDuration(s) { return v }
    return nil
}

/// A duration option's value in ns, or the one-line usage error naming the flag.
func parseDuration(_ s: String, flag: String, example: String = "10s or 500ms") throws -> UInt64 {
    switch readDuration(s) {
    case .ns(let v): return v
    case .unreadable: throw ValidationError("\(flag): cannot read '\(s)' (try \(example))")
    case .tooLong: throw ValidationError("\(flag): '\(s)' is out of range (at most 100 years)")
    }
}

/// An integer option's value checked against its range, as a one-line usage error naming the flag.
func checkRange<T: FixedWidthInteger>(_ value: T, _ range: ClosedRange<T>, flag: String, unit: String = "") throws {
    guard !range.contains(value) else { return }
    let bounds = range.upperBound == T.max ? "at least \(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)"
    throw ValidationError("\(flag): \(value) is out of range (\(bounds)\(unit))")
}

/// A point in a trace: "+12.5s" (offset from the first event), an integer
/// (raw CLOCK_MONOTONIC ns, as in the events), or a UTC wall-clock time
/// "2026-11-25T10:00:00.5Z". Refused with a one-line usage error naming the flag.
func parseTime(_ s: String, flag: String, reader: TraceReader) throws -> UInt64 {
    let forms = "use +12.5s, raw ns, or 2026-11-25T10:00:00Z"
    if s.hasPrefix("+") {
        let first = reader.firstTimestamp ?? 0
        switch readDuration(String(s.dropFirst())) {
        case .ns(let d):
            let (t, overflow) = first.addingReportingOverflow(d)
            guard !overflow else { throw ValidationError("\(flag): '\(s)' is past the largest timestamp") }
            return t
        case .unreadable: throw ValidationError("\(flag): cannot read '\(s)' (\(forms))")
        case .tooLong: throw ValidationError("\(flag): '\(s)' is out of range (at most +100 years)")
        }
    }
    if let raw = UInt64(s) { return raw }
    if !s.isEmpty, s.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) {
        throw ValidationError("\(flag): '\(s)' is out of range (raw timestamps are at most \(UInt64.max))")
    }
    guard let (seconds, fraction) = parseISO8601(s) else { throw ValidationError("\(flag): cannot read '\(s)' (\(forms))") }
    let meta = reader.metadata
    // ts = wall - realtime + clock, every step checked: a year like 9999 is
    // past what Int64 ns can hold (2262).
    let (wallSeconds, o1) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
    let (wall, o2) = wallSeconds.addingReportingOverflow(fraction)
    guard !o1, !o2, meta.clockNs <= UInt64(Int64.max), meta.realtimeNs <= UInt64(Int64.max) else {
        throw ValidationError("\(flag): '\(s)' is out of range (wall-clock times from 1678 to 2262)")
    }
    let (ts, o3) = wall.addingReportingOverflow(Int64(meta.clockNs) - Int64(meta.realtimeNs))
    guard !o3 else { throw ValidationError("\(flag): '\(s)' is out of range for this trace's clock") }
    // Before the clock's origin (the machine's boot) is before every event.
    return ts < 0 ? 0 : UInt64(ts)
}

/// YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM) to seconds and nanoseconds since the epoch.
func parseISO8601(_ s: String) -> (seconds: Int64, nanoseconds: Int64)? {
    let u = Array(s.utf8)
    func num(_ a: Int, _ n: Int) -> Int? {
        guard a + n <= u.count else { return nil }
        var v = 0
        for c in u[a..<(a + n)] { guard c >= 48, c <= 57 else { return nil }; v = v * 10 + Int(c - 48) }
        return v
    }
    guard u.count >= 19, let y = num(0, 4), let mo = num(5, 2), let d = num(8, 2), let h = num(11, 2), let mi = num(14, 2), let se = num(17, 2),
          u[4] == 45, u[7] == 45, u[10] == 84 || u[10] == 32, u[13] == 58, u[16] == 58 else { return nil }
    // timegm would quietly roll a 13th month or a 32nd day over.
    guard (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, se <= 60 else { return nil }
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
        if u[i] == 90 { i += 1 } else if u[i] == 43 || u[i] == 45, let oh = num(i + 1, 2), let om = num(i + 4, 2), oh < 24, om < 60 {
            offset = (oh * 3600 + om * 60) * (u[i] == 43 ? 1 : -1)
            i += 6
        } else { return nil }
    }
    guard i == u.count else { return nil }
    var t = tm()
    t.tm_year = Int32(y - 1900); t.tm_mon = Int32(mo - 1); t.tm_mday = Int32(d)
    t.tm_hour = Int32(h); t.tm_min = Int32(mi); t.tm_sec = Int32(se)
    return (Int64(timegm(&t)) - Int64(offset), frac)
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
