import FlightboxEvents
import FlightboxRules

// The declarative settings model. Every detector declares its parameters in
// its `DetectorSpec` (name, kind, default, allowed range, one line of doc);
// the configuration file, `flightbox detectors`, the default config and the
// copy stored in every `record --detect` trace are all derived from those
// declarations. Detectors read resolved, range-checked values only.

/// What a parameter's value is, and so how it is written and checked.
public enum ParameterKind: String, Sendable, CaseIterable {
    /// Nanoseconds, written "1ms", "10s", "2m".
    case duration
    /// A non-negative integer.
    case count
    /// A real number with at most three decimals (0.99, 2.5).
    case ratio
    /// A size in bytes, written as an integer or "64MiB".
    case bytes
    /// A list of strings.
    case strings

    /// How a value of this kind is written, for error messages and the listing.
    public var example: String {
        switch self {
        case .duration: "a duration such as 1ms or 10s"
        case .count: "a whole number such as 64"
        case .ratio: "a number such as 0.99 (at most 3 decimals)"
        case .bytes: "a size such as 65536 or 64MiB"
        case .strings: "a list of strings such as [a, b]"
        }
    }
}

/// A resolved parameter value, in the kind's unit (ns, count, ratio, bytes).
public enum SettingValue: Equatable, Sendable {
    case duration(UInt64)
    case count(UInt64)
    case ratio(Double)
    case bytes(UInt64)
    case strings([String])

    public var kind: ParameterKind {
        switch self {
        case .duration: .duration
        case .count: .count
        case .ratio: .ratio
        case .bytes: .bytes
        case .strings: .strings
        }
    }

    /// The value as written in a configuration file: "1ms", "64", "0.99", "64MiB", `["a", "b"]`.
    public var configText: String {
        switch self {
        case .duration(let ns): SettingValue.durationText(ns)
        case .count(let n): String(n)
        case .ratio(let r): String(format3: r).trimmingTrailingZeros()
        case .bytes(let b): SettingValue.bytesText(b)
        case .strings(let list): "[" + list.map { JSON.string($0).serialized() }.joined(separator: ", ") + "]"
        }
    }

    /// The value in the stored (trace metadata) form: ns, counts and bytes as
    /// integers, ratios as numbers, lists as arrays.
    public var json: JSON {
        switch self {
        case .duration(let v), .count(let v), .bytes(let v): .uint(v)
        case .ratio(let r): .double(r)
        case .strings(let list): .array(list.map { .string($0) })
        }
    }

    static let durationUnits: [(String, UInt64)] = [
        ("d", 86_400_000_000_000), ("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000),
        ("ms", 1_000_000), ("us", 1_000), ("ns", 1),
    ]
    static let byteUnits: [(String, UInt64)] = [
        ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10),
        ("TB", 1_000_000_000_000), ("GB", 1_000_000_000), ("MB", 1_000_000), ("kB", 1_000), ("KB", 1_000), ("B", 1),
    ]

    /// The largest unit that holds `ns` exactly: 1ms, 10s, 90s, 1500us.
    public static func durationText(_ ns: UInt64) -> String {
        if ns == 0 { return "0s" }
        for (unit, scale) in durationUnits where ns % scale == 0 { return "\(ns / scale)\(unit)" }
        return "\(ns)ns"
    }

    /// The largest binary unit that holds `b` exactly (64MiB), else plain bytes.
    public static func bytesText(_ b: UInt64) -> String {
        if b == 0 { return "0" }
        for (unit, scale) in byteUnits.prefix(4) where b % scale == 0 { return "\(b / scale)\(unit)" }
        return String(b)
    }

    /// "1ms", "1.5s", "250us", "0": nanoseconds, or nil. A number other than 0 needs a unit.
    public static func parseDuration(_ text: String) -> UInt64? {
        let s = text.trimmingSpaces()
        if s == "0" { return 0 }
        for (unit, scale) in durationUnits.sorted(by: { $0.0.count > $1.0.count }) where s.hasSuffix(unit) {
            return parseScaled(String(s.dropLast(unit.count)), scale: scale)
        }
        return nil
    }

    /// "65536", "64MiB", "1.5GiB", "10MB": bytes, or nil.
    public static func parseBytes(_ text: String) -> UInt64? {
        let s = text.trimmingSpaces()
        for (unit, scale) in byteUnits.sorted(by: { $0.0.count > $1.0.count }) where s.hasSuffix(unit) {
            return parseScaled(String(s.dropLast(unit.count)), scale: scale)
        }
        return parseScaled(s, scale: 1)
    }

    /// A whole number ("64", "1_000"), or nil.
    public static func parseCount(_ text: String) -> UInt64? {
        let s = text.trimmingSpaces().replacingUnderscores()
        guard !s.isEmpty, s.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        return UInt64(s)
    }

    /// A number with at most three decimals, or nil.
    public static func parseRatio(_ text: String) -> Double? {
        let s = text.trimmingSpaces()
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let whole = parts.first, !whole.isEmpty || parts.count == 2,
              whole.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        if parts.count == 2 {
            let frac = parts[1]
            guard !frac.isEmpty, frac.count <= 3, frac.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        }
        guard let v = Double(s.hasPrefix(".") ? "0" + s : s), v.isFinite else { return nil }
        return v
    }

    /// An exact decimal ("1.5") times `scale`, truncated to a whole number; nil on overflow or a malformed number.
    static func parseScaled(_ number: String, scale: UInt64) -> UInt64? {
        let parts = number.replacingUnderscores().split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count <= 2, let wholeText = parts.first, !wholeText.isEmpty,
              wholeText.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }), let whole = UInt64(wholeText) else { return nil }
        let (base, o1) = whole.multipliedReportingOverflow(by: scale)
        guard !o1 else { return nil }
        guard parts.count == 2 else { return base }
        let fracText = parts[1]
        guard !fracText.isEmpty, fracText.count <= 18, fracText.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) else { return nil }
        // frac / 10^digits * scale, in exact integer arithmetic where it fits.
        var pow: UInt64 = 1
        for _ in 0..<fracText.count { pow *= 10 }
        let frac = UInt64(fracText)!
        let (p, o2) = frac.multipliedReportingOverflow(by: scale)
        let part = o2 ? UInt64(Double(frac) / Double(pow) * Double(scale)) : p / pow
        let (total, o3) = base.addingReportingOverflow(part)
        return o3 ? nil : total
    }
}

extension String {
    func trimmingSpaces() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }

    func replacingUnderscores() -> String { String(filter { $0 != "_" }) }

    func trimmingTrailingZeros() -> String {
        guard contains(".") else { return self }
        var s = self
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s += "0" }
        return s
    }
}

/// One setting a detector declares.
public struct Parameter: Sendable {
    public enum Bounds: Sendable {
        case integer(ClosedRange<UInt64>)
        case real(ClosedRange<Double>)
        /// For lists: how many entries, at most.
        case entries(Int)
    }

    /// snake_case, as written in the configuration file.
    public let name: String
    public let kind: ParameterKind
    public let defaultValue: SettingValue
    public let bounds: Bounds
    /// One line: what the parameter does.
    public let doc: String
    /// For lists: why an entry is not allowed, or nil when it is (nil: any non-empty string).
    var entryProblem: (@Sendable (String) -> String?)? = nil

    public static func duration(_ name: String, default value: UInt64, range: ClosedRange<UInt64>, doc: String) -> Parameter {
        Parameter(name: name, kind: .duration, defaultValue: .duration(value), bounds: .integer(range), doc: doc)
    }

    public static func count(_ name: String, default value: UInt64, range: ClosedRange<UInt64>, doc: String) -> Parameter {
        Parameter(name: name, kind: .count, defaultValue: .count(value), bounds: .integer(range), doc: doc)
    }

    public static func ratio(_ name: String, default value: Double, range: ClosedRange<Double>, doc: String) -> Parameter {
        Parameter(name: name, kind: .ratio, defaultValue: .ratio(value), bounds: .real(range), doc: doc)
    }

    public static func bytes(_ name: String, default value: UInt64, range: ClosedRange<UInt64>, doc: String) -> Parameter {
        Parameter(name: name, kind: .bytes, defaultValue: .bytes(value), bounds: .integer(range), doc: doc)
    }

    public static func strings(_ name: String, default value: [String], maxEntries: Int = 4096, doc: String,
                               entry: (@Sendable (String) -> String?)? = nil) -> Parameter {
        Parameter(name: name, kind: .strings, defaultValue: .strings(value), bounds: .entries(maxEntries), doc: doc, entryProblem: entry)
    }

    /// The allowed range in the parameter's own notation: "1ms to 1h", "1 to 64".
    public var rangeText: String {
        func text(_ v: UInt64) -> String {
            switch kind {
            case .duration: SettingValue.durationText(v)
            case .bytes: SettingValue.bytesText(v)
            default: String(v)
            }
        }
        switch bounds {
        case .integer(let r): return "\(text(r.lowerBound)) to \(text(r.upperBound))"
        case .real(let r): return "\(SettingValue.ratio(r.lowerBound).configText) to \(SettingValue.ratio(r.upperBound).configText)"
        case .entries(let n): return "at most \(n) entries"
        }
    }

    /// Why `value` is not allowed, or nil when it is.
    public func problem(with value: SettingValue) -> String? {
        guard value.kind == kind else { return "expected \(kind.example)" }
        switch (value, bounds) {
        case (.duration(let v), .integer(let r)), (.count(let v), .integer(let r)), (.bytes(let v), .integer(let r)):
            return r.contains(v) ? nil : "\(value.configText) is out of range (\(rangeText))"
        case (.ratio(let v), .real(let r)):
            return r.contains(v) ? nil : "\(value.configText) is out of range (\(rangeText))"
        case (.strings(let list), .entries(let n)):
            if list.count > n { return "\(list.count) entries is too many (\(rangeText))" }
            if list.contains(where: \.isEmpty) { return "an empty string in the list" }
            if let check = entryProblem, let p = list.lazy.compactMap(check).first { return p }
            return nil
        default:
            return "expected \(kind.example)"
        }
    }

    /// The declaration as JSON (for `flightbox detectors --format json`).
    public var json: JSON {
        var fields: [(String, JSON)] = [
            ("name", .string(name)), ("kind", .string(kind.rawValue)),
            ("default", defaultValue.json), ("default_text", .string(defaultValue.configText)),
        ]
        switch bounds {
        case .integer(let r): fields += [("min", .uint(r.lowerBound)), ("max", .uint(r.upperBound))]
        case .real(let r): fields += [("min", .double(r.lowerBound)), ("max", .double(r.upperBound))]
        case .entries(let n): fields += [("max_entries", .uint(UInt64(n)))]
        }
        fields.append(("doc", .string(doc)))
        return .object(fields)
    }
}

/// Exclusions every detector takes: events of an excluded process (by pid or
/// comm) are not shown to the detector, apart from fork, exec and exit, which
/// keep its process bookkeeping right; and any finding that names an excluded
/// pid, comm, or (in its evidence) cgroup, endpoint or device is dropped.
/// Detectors keyed by cgroup, endpoint or device should also skip excluded
/// keys when they learn (`excludes(cgroup:)`, `excludes(endpoint:)`, `excludes(device:)`).
public struct Exclusions: Equatable, Sendable {
    public var comms: [String] { didSet { commSet = Set(comms) } }
    public var pids: [UInt32] { didSet { pidSet = Set(pids) } }
    /// A cgroup path excludes itself and everything below it; a name without
    /// a slash matches a cgroup whose last component it is.
    public var cgroups: [String]
    /// Free-form keys for detectors keyed by remote endpoint ("10.0.0.5:5432") ...
    public var endpoints: [String]
    /// ... or by block device ("nvme0n1", "8:0").
    public var devices: [String]
    private var commSet: Set<String>
    private var pidSet: Set<UInt32>

    /// The keys under `exclude:` in the configuration file, in this order.
    public static let fields = ["comm", "pid", "cgroup", "endpoint", "device"]

    public init(comms: [String] = [], pids: [UInt32] = [], cgroups: [String] = [], endpoints: [String] = [], devices: [String] = []) {
        self.comms = comms
        self.pids = pids
        self.cgroups = cgroups
        self.endpoints = endpoints
        self.devices = devices
        commSet = Set(comms)
        pidSet = Set(pids)
    }

    public var isEmpty: Bool { comms.isEmpty && pids.isEmpty && cgroups.isEmpty && endpoints.isEmpty && devices.isEmpty }
    var excludesProcesses: Bool { !comms.isEmpty || !pids.isEmpty }

    public func excludes(pid: UInt32, comm: String) -> Bool { pidSet.contains(pid) || commSet.contains(comm) }

    public func excludes(cgroup: String) -> Bool {
        cgroups.contains { c in
            if c.contains("/") {
                let p = c.hasSuffix("/") ? String(c.dropLast()) : c
                return cgroup == p || cgroup.hasPrefix(p + "/")
            }
            return cgroup == c || cgroup.hasSuffix("/" + c)
        }
    }

    public func excludes(endpoint: String) -> Bool { endpoints.contains(endpoint) }
    public func excludes(device: String) -> Bool { devices.contains(device) }

    /// Whether a finding names something excluded: its process, or the
    /// `cgroup`, `endpoint` or `device` string of its evidence.
    public func excludes(_ f: Finding) -> Bool {
        if excludes(pid: f.pid, comm: f.comm) { return true }
        if !cgroups.isEmpty, let c = f.evidence["cgroup"]?.stringValue, excludes(cgroup: c) { return true }
        if !endpoints.isEmpty, let e = f.evidence["endpoint"]?.stringValue, excludes(endpoint: e) { return true }
        if !devices.isEmpty, let d = f.evidence["device"]?.stringValue, excludes(device: d) { return true }
        return false
    }

    public var json: JSON {
        .object([
            ("comm", .array(comms.map { .string($0) })), ("pid", .array(pids.map { .uint(UInt64($0)) })),
            ("cgroup", .array(cgroups.map { .string($0) })), ("endpoint", .array(endpoints.map { .string($0) })),
            ("device", .array(devices.map { .string($0) })),
        ])
    }

    public static func == (a: Exclusions, b: Exclusions) -> Bool {
        a.comms == b.comms && a.pids == b.pids && a.cgroups == b.cgroups && a.endpoints == b.endpoints && a.devices == b.devices
    }
}

/// One detector's resolved settings: its parameters' values (every declared
/// parameter has one), whether it runs, and what it excludes.
public struct DetectorSettings: Equatable, Sendable {
    public let spec: DetectorSpec
    public var enabled: Bool
    public private(set) var values: [String: SettingValue]
    public var exclude: Exclusions
    /// The `security` detector's rule sources, in load order (empty: the
    /// built-in rules). Stored whole in the trace, so replay compiles the
    /// rules that ran live even after the files or the built-ins changed.
    public var rules: [RuleSource] = []
    /// The `health` detector's checks (the configuration's `probes:`),
    /// numbered as their probe events are. Stored whole in the trace.
    public var checks: [HealthCheck] = []

    public init(spec: DetectorSpec) {
        self.spec = spec
        enabled = true
        exclude = Exclusions()
        values = Dictionary(uniqueKeysWithValues: spec.parameters.map { ($0.name, $0.defaultValue) })
    }

    /// Sets a declared parameter; returns why not when the name is unknown or the value is not allowed.
    @discardableResult
    public mutating func set(_ name: String, _ value: SettingValue) -> String? {
        guard let p = spec.parameter(name) else { return "unknown parameter '\(name)' of \(spec.name)" }
        if let problem = p.problem(with: value) { return problem }
        values[name] = value
        return nil
    }

    public func value(_ name: String) -> SettingValue {
        guard let v = values[name] else { preconditionFailure("\(spec.name) declares no parameter '\(name)'") }
        return v
    }

    /// Typed reads. A detector reads only what it declared, with the declared
    /// kind: anything else is a programming error and traps.
    public func duration(_ name: String) -> UInt64 {
        guard case .duration(let v) = value(name) else { preconditionFailure("\(spec.name).\(name) is not a duration") }
        return v
    }

    public func count(_ name: String) -> UInt64 {
        guard case .count(let v) = value(name) else { preconditionFailure("\(spec.name).\(name) is not a count") }
        return v
    }

    public func ratio(_ name: String) -> Double {
        guard case .ratio(let v) = value(name) else { preconditionFailure("\(spec.name).\(name) is not a ratio") }
        return v
    }

    public func bytes(_ name: String) -> UInt64 {
        guard case .bytes(let v) = value(name) else { preconditionFailure("\(spec.name).\(name) is not a size") }
        return v
    }

    public func strings(_ name: String) -> [String] {
        guard case .strings(let v) = value(name) else { preconditionFailure("\(spec.name).\(name) is not a list") }
        return v
    }

    /// Stable JSON: enabled, the parameters in declaration order, exclude.
    public var json: JSON {
        .object([("enabled", .bool(enabled))] + spec.parameters.map { ($0.name, value($0.name).json) } + [("exclude", exclude.json)]
            + (rules.isEmpty ? [] : [("rules", .array(rules.map { .object([("name", .string($0.name)), ("text", .string($0.text))]) }))])
            + (checks.isEmpty ? [] : [("checks", .array(checks.map(\.json)))]))
    }

    public static func == (a: DetectorSettings, b: DetectorSettings) -> Bool {
        a.spec.name == b.spec.name && a.enabled == b.enabled && a.values == b.values && a.exclude == b.exclude && a.rules == b.rules && a.checks == b.checks
    }
}

/// What a detector is: its name, the probe family it reads, what it judges,
/// its parameters, and how to make one from resolved settings.
public struct DetectorSpec: Sendable {
    public let name: String
    /// The probe family (or families) whose events it judges.
    public let family: String
    /// One sentence: what the detector judges.
    public let judges: String
    public let parameters: [Parameter]
    let factory: @Sendable (DetectorSettings) -> Detector

    public init(name: String, family: String, judges: String, parameters: [Parameter], make: @escaping @Sendable (DetectorSettings) -> Detector) {
        self.name = name
        self.family = family
        self.judges = judges
        self.parameters = parameters
        factory = make
    }

    public func parameter(_ name: String) -> Parameter? { parameters.first { $0.name == name } }
    public var defaults: DetectorSettings { DetectorSettings(spec: self) }
    public func make(_ settings: DetectorSettings) -> Detector { factory(settings) }

    /// Keys every detector takes besides its parameters.
    public static let commonKeys = ["enabled", "exclude"]

    public var json: JSON {
        .object([
            ("name", .string(name)), ("family", .string(family)), ("judges", .string(judges)),
            ("parameters", .array(parameters.map(\.json))),
            ("common", .object([("enabled", .bool(true)), ("exclude", .array(Exclusions.fields.map { .string($0) }))])),
        ])
    }
}

/// The resolved configuration of every registered detector. Sources, lowest
/// first: the declared defaults, the configuration stored in the trace
/// (replay and test), a configuration file (`--config`); `--detectors`
/// finally chooses which run, whatever `enabled` says.
public struct DetectorConfiguration: Equatable, Sendable {
    /// In registry order.
    public private(set) var detectors: [DetectorSettings]

    public static var defaults: DetectorConfiguration {
        DetectorConfiguration(detectors: DetectorRegistry.all.map(\.defaults))
    }

    public subscript(name: String) -> DetectorSettings? {
        get { detectors.first { $0.spec.name == name } }
        set {
            guard let newValue, let i = detectors.firstIndex(where: { $0.spec.name == name }) else { return }
            detectors[i] = newValue
        }
    }

    /// The detectors to run: those named (in that order), or every enabled one.
    public func makeDetectors(only names: [String]? = nil) throws -> [Detector] {
        if let names {
            return try names.map { n in
                guard let s = self[n] else { throw DetectorRegistry.UnknownDetector(name: n) }
                return s.spec.make(s)
            }
        }
        return detectors.filter(\.enabled).map { $0.spec.make($0) }
    }

    /// The configuration as it ran: `enabled` is true exactly for `names`
    /// (every enabled detector when nil), so replaying it runs the same set.
    public func asRun(_ names: [String]?) -> DetectorConfiguration {
        guard let names else { return self }
        var c = self
        for i in c.detectors.indices { c.detectors[i].enabled = names.contains(c.detectors[i].spec.name) }
        return c
    }

    /// Stable JSON, stored in a trace's capture metadata under "detectors":
    /// detectors in registry order, each with enabled, its parameters in
    /// declaration order (durations in ns, sizes in bytes) and exclude.
    public var json: JSON { .object(detectors.map { ($0.spec.name, $0.json) }) }

    public struct StoredError: Error, CustomStringConvertible {
        public let reason: String
        public var description: String { reason }
    }

    /// Reads the stored form back. Detectors or parameters this build does
    /// not know (a trace from a newer Flightbox) are ignored, missing ones
    /// take their defaults; a value of the wrong type or out of range is an error.
    public init(json: JSON) throws {
        self = .defaults
        guard case .object(let entries) = json else { throw StoredError(reason: "not an object") }
        for (name, body) in entries {
            guard var s = self[name] else { continue }
            guard case .object = body else { throw StoredError(reason: "\(name): not an object") }
            if let e = body["enabled"] {
                guard case .bool(let b) = e else { throw StoredError(reason: "\(name).enabled: not a boolean") }
                s.enabled = b
            }
            for p in s.spec.parameters {
                guard let v = body[p.name] else { continue }
                let value: SettingValue?
                switch p.kind {
                case .duration: value = v.uintValue.map { .duration($0) }
                case .count: value = v.uintValue.map { .count($0) }
                case .bytes: value = v.uintValue.map { .bytes($0) }
                case .ratio: value = v.doubleValue.map { .ratio($0) }
                case .strings: value = v.arrayValue.flatMap { a in
                    let list = a.compactMap(\.stringValue)
                    return list.count == a.count ? .strings(list) : nil
                }
                }
                guard let value else { throw StoredError(reason: "\(name).\(p.name): expected \(p.kind.example)") }
                if let problem = s.set(p.name, value) { throw StoredError(reason: "\(name).\(p.name): \(problem)") }
            }
            if let ex = body["exclude"] {
                func list(_ key: String) throws -> [JSON] {
                    guard let v = ex[key] else { return [] }
                    guard let a = v.arrayValue else { throw StoredError(reason: "\(name).exclude.\(key): not a list") }
                    return a
                }
                func strings(_ key: String) throws -> [String] {
                    try list(key).map { v in
                        guard let s = v.stringValue else { throw StoredError(reason: "\(name).exclude.\(key): not a list of strings") }
                        return s
                    }
                }
                let pids = try list("pid").map { v -> UInt32 in
                    guard let p = v.uintValue, p <= UInt64(UInt32.max) else { throw StoredError(reason: "\(name).exclude.pid: not a list of pids") }
                    return UInt32(p)
                }
                s.exclude = Exclusions(comms: try strings("comm"), pids: pids, cgroups: try strings("cgroup"),
                                       endpoints: try strings("endpoint"), devices: try strings("device"))
            }
            if let r = body["rules"] {
                guard let list = r.arrayValue else { throw StoredError(reason: "\(name).rules: not a list") }
                s.rules = try list.map { item in
                    guard let n = item["name"]?.stringValue, let t = item["text"]?.stringValue else {
                        throw StoredError(reason: "\(name).rules: each entry needs name and text")
                    }
                    return RuleSource(name: n, text: t)
                }
                do { _ = try RuleSet(sources: s.rules) } catch { throw StoredError(reason: "\(name).rules: \(error)") }
            }
            if let c = body["checks"] {
                guard let list = c.arrayValue else { throw StoredError(reason: "\(name).checks: not a list") }
                do { s.checks = try list.map(HealthCheck.init(json:)) } catch { throw StoredError(reason: "\(name).checks: \(error)") }
            }
            self[name] = s
        }
    }

    init(detectors: [DetectorSettings]) { self.detectors = detectors }
}

extension JSON {
    var doubleValue: Double? {
        switch self {
        case .double(let d): d
        case .int(let i): Double(i)
        case .uint(let u): Double(u)
        default: nil
        }
    }
}
