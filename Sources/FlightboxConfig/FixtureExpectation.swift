#if canImport(Glibc)
import Glibc
#endif
import FlightboxDetectors
import FlightboxEvents
import Yams

/// What a fixture claims about its findings, beyond (or instead of) the exact
/// golden lines: `expect.yaml` in the fixture's folder.
///
///     findings:                  # each must match at least one finding
///       - detector: syscall-latency
///         severity: warning
///         comm: flightbox-load   # also: pid, tid, summary (a substring), ts_ns
///         count: 1               # exactly this many match (default: at least one)
///         evidence:              # nested like the finding's evidence
///           syscall: pwrite64
///           latency_ns: { approx: 145ms, tolerance: 20% }
///           baseline_samples: { min: 150 }
///     absent:                    # no finding may match any of these
///       - above: info            # nothing more severe than info
///       - detector: scheduling   # nothing from this detector
///     others: fail               # a finding no `findings` entry matches fails (default: allow)
///     golden: false              # ignore expected-findings.jsonl (default: compare it when present)
///
/// A claim, written by a person after reading the scenario: `flightbox test
/// --update` never rewrites it.
public struct FixtureExpectation: Sendable {
    public var present: [FindingPattern] = []
    public var absent: [FindingPattern] = []
    /// Whether findings no `present` pattern matches fail the fixture.
    public var othersFail = false
    /// Whether expected-findings.jsonl, when present, is compared too.
    public var golden = true

    public init() {}

    public static let topLevelKeys = ["findings", "absent", "others", "golden"]

    public static func load(path: String) throws(ConfigError) -> FixtureExpectation {
        try parse(ConfigFile.readText(path), file: path)
    }

    public static func parse(_ text: String, file: String) throws(ConfigError) -> FixtureExpectation {
        let r = Resolver(file: file)
        let root = try r.compose(text)
        var x = FixtureExpectation()
        guard let root, !r.isNull(root) else { return x }
        for (key, keyNode, value) in try r.pairs(root, what: "the file") {
            switch key {
            case "findings": x.present = try patterns(value, r: r, what: "findings", present: true)
            case "absent": x.absent = try patterns(value, r: r, what: "absent", present: false)
            case "others":
                switch try r.scalarText(value, expected: "fail or allow", what: "others") {
                case "fail": x.othersFail = true
                case "allow": x.othersFail = false
                default: throw r.error(value, "others: expected fail or allow, found \(r.found(value))")
                }
            case "golden":
                guard case .scalar = value, let b = value.bool else { throw r.error(value, "golden: expected true or false, found \(r.found(value))") }
                x.golden = b
            default:
                throw r.unknown(keyNode, key, known: topLevelKeys, what: "unknown top-level key")
            }
        }
        return x
    }

    static func patterns(_ node: Node, r: Resolver, what: String, present: Bool) throws(ConfigError) -> [FindingPattern] {
        if r.isNull(node) { return [] }
        guard case .sequence(let seq) = node else { throw r.error(node, "\(what): expected a list, found \(r.found(node))") }
        var out: [FindingPattern] = []
        for item in seq { out.append(try FindingPattern(item, r: r, what: what, present: present)) }
        return out
    }

    /// Every way `findings` break the claim, one entry per problem (a few
    /// lines each: what was expected, what came, which fields differed).
    /// Empty when the claim holds.
    public func problems(_ findings: [Finding]) -> [String] {
        var out: [String] = []
        for p in present {
            let matched = findings.filter { p.mismatches($0).isEmpty }
            if let count = p.count {
                if matched.count != count {
                    var s = "expected \(count) finding\(count == 1 ? "" : "s") matching \(p.description), came \(matched.count)"
                    for f in matched { s += "\n    came: \(f.jsonLine)" }
                    if matched.isEmpty { s += p.closest(findings) }
                    out.append(s)
                }
            } else if matched.isEmpty {
                out.append("missing: \(p.description)" + p.closest(findings))
            }
        }
        for p in absent {
            for f in findings where p.mismatches(f).isEmpty {
                out.append("must not appear: \(p.description)\n    came: \(f.jsonLine)")
            }
        }
        if othersFail {
            for f in findings where !present.contains(where: { $0.mismatches(f).isEmpty }) {
                out.append("unexpected (others: fail): \(f.jsonLine)")
            }
        }
        return out
    }
}

/// One `findings` or `absent` entry: every field it names must match.
public struct FindingPattern: Sendable, CustomStringConvertible {
    public var detector: String?
    public var severity: Severity?
    /// Matches findings more severe than this (-1: any severity, "above: none").
    public var aboveRank: Int?
    public var pid: UInt64?
    public var tid: UInt64?
    public var comm: String?
    public var summaryContains: String?
    public var ts: ValueMatcher?
    /// Paths into the evidence and what the value there must be.
    public var evidence: [(path: [String], matcher: ValueMatcher)] = []
    public var count: Int?
    /// Where it is written, for messages.
    public var location: String

    public static let keys = ["detector", "severity", "above", "pid", "tid", "comm", "summary", "ts_ns", "evidence", "count"]

    public init(location: String) { self.location = location }

    init(_ node: Node, r: Resolver, what: String, present: Bool) throws(ConfigError) {
        location = "\(r.file):\(node.mark?.line ?? 1)"
        for (key, keyNode, value) in try r.pairs(node, what: what) {
            let w = "\(what).\(key)"
            switch key {
            case "detector": detector = try r.scalarText(value, expected: "a detector name", what: w)
            case "severity", "above":
                let text = try r.scalarText(value, expected: "info, warning or critical", what: w)
                if key == "above", text == "none" { aboveRank = -1; continue }
                guard let s = Severity(rawValue: text) else {
                    throw r.error(value, "\(w): expected info, warning or critical\(key == "above" ? " (or none)" : ""), found '\(text)'")
                }
                if key == "severity" { severity = s } else { aboveRank = FindingPattern.rank(s) }
            case "pid", "tid":
                guard let v = UInt64(try r.scalarText(value, expected: "a number", what: w)) else { throw r.error(value, "\(w): expected a number, found \(r.found(value))") }
                if key == "pid" { pid = v } else { tid = v }
            case "comm": comm = try r.scalarText(value, expected: "a process name", what: w)
            case "summary": summaryContains = try r.scalarText(value, expected: "text the summary contains", what: w)
            case "ts_ns": ts = try ValueMatcher(value, r: r, what: w)
            case "evidence": evidence = try FindingPattern.evidence(value, path: [], r: r, what: w)
            case "count":
                guard present else { throw r.error(keyNode, "\(w): only `findings` entries have a count (absent means none)") }
                guard let v = Int(try r.scalarText(value, expected: "a number", what: w)), v >= 0 else {
                    throw r.error(value, "\(w): expected a number of findings, found \(r.found(value))")
                }
                count = v
            default:
                throw r.unknown(keyNode, key, known: FindingPattern.keys, what: "\(what): unknown key")
            }
        }
    }

    static func evidence(_ node: Node, path: [String], r: Resolver, what: String) throws(ConfigError) -> [(path: [String], matcher: ValueMatcher)] {
        var out: [(path: [String], matcher: ValueMatcher)] = []
        for (key, _, value) in try r.pairs(node, what: what) {
            if case .mapping = value, !ValueMatcher.isMatcher(value) {
                out += try evidence(value, path: path + [key], r: r, what: "\(what).\(key)")
            } else {
                out.append((path + [key], try ValueMatcher(value, r: r, what: "\(what).\(key)")))
            }
        }
        return out
    }

    static func rank(_ s: Severity) -> Int { s == .info ? 0 : s == .warning ? 1 : 2 }

    /// The fields of `f` that do not match, as "field: expected X, came Y".
    public func mismatches(_ f: Finding) -> [String] {
        var out: [String] = []
        if let detector, f.detector != detector { out.append("detector: expected \(detector), came \(f.detector)") }
        if let severity, f.severity != severity { out.append("severity: expected \(severity.rawValue), came \(f.severity.rawValue)") }
        if let aboveRank, FindingPattern.rank(f.severity) <= aboveRank { out.append("severity: expected above \(aboveText), came \(f.severity.rawValue)") }
        if let pid, UInt64(f.pid) != pid { out.append("pid: expected \(pid), came \(f.pid)") }
        if let tid, UInt64(f.tid) != tid { out.append("tid: expected \(tid), came \(f.tid)") }
        if let comm, f.comm != comm { out.append("comm: expected \(comm), came \(f.comm)") }
        if let summaryContains, !f.summary.contains(summaryContains) { out.append("summary: expected to contain '\(summaryContains)', came '\(f.summary)'") }
        if let ts, !ts.matches(.uint(f.ts)) { out.append("ts_ns: expected \(ts), came \(f.ts)") }
        for (path, m) in evidence {
            var v: JSON? = f.evidence
            // A number indexes a list: `hogs: { 0: { pid: 22361 } }`.
            for k in path { v = v.flatMap { j in j.arrayValue.flatMap { a in Int(k).flatMap { $0 >= 0 && $0 < a.count ? a[$0] : nil } } ?? j[k] } }
            guard let v else { out.append("evidence.\(path.joined(separator: ".")): expected \(m), came nothing (no such field)"); continue }
            if !m.matches(v) { out.append("evidence.\(path.joined(separator: ".")): expected \(m), came \(v.serialized())") }
        }
        return out
    }

    var aboveText: String {
        switch aboveRank { case -1: "none"; case 0: "info"; case 1: "warning"; default: "critical" }
    }

    public var description: String {
        var parts: [String] = []
        if let detector { parts.append("detector=\(detector)") }
        if let severity { parts.append("severity=\(severity.rawValue)") }
        if aboveRank != nil { parts.append("severity>\(aboveText)") }
        if let pid { parts.append("pid=\(pid)") }
        if let tid { parts.append("tid=\(tid)") }
        if let comm { parts.append("comm=\(comm)") }
        if let summaryContains { parts.append("summary~'\(summaryContains)'") }
        if let ts { parts.append("ts_ns=\(ts)") }
        for (path, m) in evidence { parts.append("evidence.\(path.joined(separator: "."))=\(m)") }
        return (parts.isEmpty ? "any finding" : parts.joined(separator: " ")) + " (\(location))"
    }

    /// The finding nearest to the pattern (fewest differing fields; the first
    /// such, in emission order) and how it differs; or that none came.
    func closest(_ findings: [Finding]) -> String {
        guard !findings.isEmpty else { return "\n    came: no findings" }
        var best: (Finding, [String])?
        for f in findings {
            let m = mismatches(f)
            if best == nil || m.count < best!.1.count { best = (f, m) }
        }
        let (f, m) = best!
        return "\n    closest: \(f.jsonLine)" + m.map { "\n      differs: \($0)" }.joined()
    }
}

/// What a value must be: equal (numbers numerically), near a number, or in a range.
public enum ValueMatcher: Sendable, CustomStringConvertible {
    case equals(String)
    case approx(Double, tolerance: Double, relative: Bool)
    case range(min: Double?, max: Double?)

    static let matcherKeys: Set<String> = ["approx", "tolerance", "min", "max"]

    static func isMatcher(_ node: Node) -> Bool {
        guard case .mapping(let m) = node, !m.isEmpty else { return false }
        return m.keys.allSatisfy { if case .scalar(let s) = $0 { matcherKeys.contains(s.string) } else { false } }
    }

    /// A number, or a duration ("145ms") as ns.
    static func number(_ text: String) -> Double? {
        if let d = Double(text), d.isFinite { return d }
        return SettingValue.parseDuration(text).map { Double($0) }
    }

    init(_ node: Node, r: Resolver, what: String) throws(ConfigError) {
        switch node {
        case .scalar(let s):
            self = .equals(s.isNull ? "null" : s.string)
        case .sequence:
            throw r.error(node, "\(what): expected a value or { approx, tolerance } / { min, max }, found a list")
        case .mapping:
            var approx: Double?, tolerance: (Double, Bool)?, lo: Double?, hi: Double?
            for (key, keyNode, value) in try r.pairs(node, what: what) {
                let text = try r.scalarText(value, expected: "a number", what: "\(what).\(key)")
                if key == "tolerance", text.hasSuffix("%"), let p = Double(text.dropLast()), p >= 0 {
                    tolerance = (p / 100, true)
                    continue
                }
                guard let v = ValueMatcher.number(text) else { throw r.error(value, "\(what).\(key): expected a number or a duration, found '\(text)'") }
                switch key {
                case "approx": approx = v
                case "tolerance": tolerance = (abs(v), false)
                case "min": lo = v
                case "max": hi = v
                default: throw r.unknown(keyNode, key, known: ValueMatcher.matcherKeys.sorted(), what: "\(what): unknown key")
                }
            }
            if let approx {
                guard lo == nil, hi == nil else { throw r.error(node, "\(what): give approx (with tolerance) or min/max, not both") }
                guard let (t, rel) = tolerance else { throw r.error(node, "\(what): approx needs a tolerance (e.g. 10% or 5ms)") }
                self = .approx(approx, tolerance: t, relative: rel)
            } else {
                guard tolerance == nil else { throw r.error(node, "\(what): tolerance needs approx") }
                self = .range(min: lo, max: hi)
            }
        }
    }

    public func matches(_ v: JSON) -> Bool {
        let n: Double? = switch v {
        case .int(let i): Double(i)
        case .uint(let u): Double(u)
        case .double(let d): d
        default: nil
        }
        switch self {
        case .equals(let text):
            switch v {
            case .string(let s): return s == text
            case .bool(let b): return text == (b ? "true" : "false")
            case .null: return text == "null" || text == "~"
            case .int, .uint, .double:
                // Integers exactly (ns values are past a Double's 2^53), others numerically.
                if let i = Int64(text), let vi = v.intValue { return i == vi }
                if let u = UInt64(text), let vu = v.uintValue { return u == vu }
                return ValueMatcher.number(text).map { $0 == n } ?? false
            default: return v.serialized() == text
            }
        case .approx(let center, let tolerance, let relative):
            guard let n else { return false }
            return abs(n - center) <= (relative ? abs(center) * tolerance : tolerance)
        case .range(let lo, let hi):
            guard let n else { return false }
            return (lo.map { n >= $0 } ?? true) && (hi.map { n <= $0 } ?? true)
        }
    }

    static func text(_ d: Double) -> String {
        d == d.rounded() && abs(d) < 1e18 ? String(Int64(d)) : String(d)
    }

    public var description: String {
        switch self {
        case .equals(let t): return t
        case .approx(let c, let t, let rel): return "\(ValueMatcher.text(c)) ±" + (rel ? "\(ValueMatcher.text(t * 100))%" : ValueMatcher.text(t))
        case .range(let lo, let hi):
            switch (lo, hi) {
            case let (lo?, hi?): return "in [\(ValueMatcher.text(lo)), \(ValueMatcher.text(hi))]"
            case let (lo?, nil): return ">= \(ValueMatcher.text(lo))"
            case let (nil, hi?): return "<= \(ValueMatcher.text(hi))"
            default: return "any number"
            }
        }
    }
}
