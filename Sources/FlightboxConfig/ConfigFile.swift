#if canImport(Glibc)
import Glibc
#endif
import FlightboxDetectors
import FlightboxEvents
import FlightboxRules
import Yams

/// A configuration file that cannot be used: where and why, as one line
/// ("flightbox.yaml:7:12: syscall-latency.floor: ...").
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let file: String
    /// 1-based; nil when the problem is the file itself (unreadable).
    public let line: Int?
    public let column: Int?
    public let reason: String

    public init(file: String, line: Int?, column: Int?, reason: String) {
        self.file = file
        self.line = line
        self.column = column
        self.reason = reason
    }

    public var description: String {
        guard let line, let column else { return "\(file): \(reason)" }
        return "\(file):\(line):\(column): \(reason)"
    }
}

/// The configuration file: YAML, read with Yams' node API so every problem
/// has a line and a column. Layout:
///
///     detectors:
///       syscall-latency:
///         enabled: true
///         floor: 1ms
///         exclude: { comm: [find], pid: [], cgroup: [], endpoint: [], device: [] }
///     rules:
///       files: [local-rules.yaml]   # relative to this file; after the built-ins, in order
///       disable: [Beaconing]        # built-in (or files') rules turned off by name
///       enable: []                  # rules turned back on
///
/// `rules: [a.yaml, b.yaml]` is short for `rules: {files: [a.yaml, b.yaml]}`.
/// Values are applied over the declared defaults; whatever the file does not
/// mention keeps its default.
public enum ConfigFile {
    /// Top-level keys. Application probes will join them.
    public static let topLevelKeys = ["detectors", "rules"]
    public static let rulesKeys = ["files", "disable", "enable"]

    /// Reads and resolves `path`.
    public static func load(path: String) throws(ConfigError) -> DetectorConfiguration {
        try parse(readText(path), file: path)
    }

    /// The text of a YAML file of ours (configuration, fixture expectation), or its one error.
    static func readText(_ path: String) throws(ConfigError) -> String {
        guard let text = readFile(path) else {
            throw ConfigError(file: path, line: nil, column: nil, reason: "cannot read: \(String(cString: strerror(errno)))")
        }
        return text
    }

    /// Resolves the text of a configuration file over the defaults.
    public static func parse(_ text: String, file: String) throws(ConfigError) -> DetectorConfiguration {
        var resolver = Resolver(file: file)
        return try resolver.resolve(resolver.compose(text))
    }

    static func readFile(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        if fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR { errno = EISDIR; return nil }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            out += buf[0..<n]
            // A configuration file is small: refuse to slurp a device or a huge file.
            if out.count > 16 << 20 { errno = EFBIG; return nil }
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// Walks the node tree; every error names the node it is about.
struct Resolver {
    let file: String

    func error(_ node: Node?, _ reason: String) -> ConfigError {
        ConfigError(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1, reason: reason)
    }

    /// The node tree of `text`; malformed YAML is one error at its line and column.
    func compose(_ text: String) throws(ConfigError) -> Node? {
        do {
            return try Yams.compose(yaml: text)
        } catch let e as YamlError {
            throw yamlError(e, text: text)
        } catch {
            throw ConfigError(file: file, line: 1, column: 1, reason: "malformed YAML: \(error)")
        }
    }

    func yamlError(_ e: YamlError, text: String) -> ConfigError {
        func describe(_ problem: String, _ context: YamlError.Context?) -> String {
            let why = context.map { " (\($0.text))" } ?? ""
            return "malformed YAML: \(problem)\(why)"
        }
        switch e {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
             .composer(let context, let problem, let mark, _):
            return ConfigError(file: file, line: mark.line, column: mark.column, reason: describe(problem, context))
        case .reader(let problem, let offset, _, _):
            // Offset in bytes from the start: count lines up to it.
            var line = 1, column = 1
            for (i, b) in text.utf8.enumerated() {
                if let offset, i >= offset { break }
                if b == 10 { line += 1; column = 1 } else if b & 0xC0 != 0x80 { column += 1 }
            }
            return ConfigError(file: file, line: line, column: column, reason: "malformed YAML: \(problem)")
        default:
            return ConfigError(file: file, line: 1, column: 1, reason: "malformed YAML: \(e)")
        }
    }

    /// What a node is, for "expected X, found Y".
    func found(_ node: Node) -> String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar(let s):
            if s.isNull { return "nothing" }
            return "'\(s.string)'"
        }
    }

    func isNull(_ node: Node) -> Bool {
        if case .scalar(let s) = node, s.isNull { return true }
        return false
    }

    /// The pairs of a mapping with string keys, each key once.
    func pairs(_ node: Node, what: String) throws(ConfigError) -> [(key: String, keyNode: Node, value: Node)] {
        guard case .mapping(let m) = node else { throw error(node, "\(what): expected a mapping, found \(found(node))") }
        var out: [(key: String, keyNode: Node, value: Node)] = []
        var seen: [String: Node] = [:]
        for (k, v) in m {
            guard case .scalar(let ks) = k else { throw error(k, "\(what): a key must be a name, found \(found(k))") }
            if let first = seen[ks.string] {
                let at = first.mark.map { " (first at \($0.line):\($0.column))" } ?? ""
                throw error(k, "\(what): '\(ks.string)' is given twice\(at)")
            }
            seen[ks.string] = k
            out.append((ks.string, k, v))
        }
        return out
    }

    func unknown(_ keyNode: Node, _ key: String, known: [String], what: String) -> ConfigError {
        let hint = suggestion(for: key, among: known).map { " (did you mean '\($0)'?)" } ?? ""
        return error(keyNode, "\(what) '\(key)'\(hint); known: \(known.joined(separator: ", "))")
    }

    mutating func resolve(_ root: Node?) throws(ConfigError) -> DetectorConfiguration {
        var config = DetectorConfiguration.defaults
        guard let root, !isNull(root) else { return config }
        for (key, keyNode, value) in try pairs(root, what: "the file") {
            guard ConfigFile.topLevelKeys.contains(key) else { throw unknown(keyNode, key, known: ConfigFile.topLevelKeys, what: "unknown top-level key") }
            if isNull(value) { continue }
            if key == "rules" {
                config["security"]?.rules = try rules(value)
                continue
            }
            for (name, nameNode, body) in try pairs(value, what: "detectors") {
                guard var settings = config[name] else {
                    throw unknown(nameNode, name, known: DetectorRegistry.names, what: "unknown detector")
                }
                try apply(body, to: &settings)
                config[name] = settings
            }
        }
        return config
    }

    /// `rules:`: the built-in rules, then each file (read now, relative to
    /// this file), then the rules turned on or off by name — the sources the
    /// security detector runs, checked here so a bad rule is one error
    /// naming its own file, line and column.
    func rules(_ node: Node) throws(ConfigError) -> [RuleSource] {
        var files: [(String, Node)] = []
        var toggles: [(name: String, node: Node, enabled: Bool)] = []
        if case .mapping = node {
            for (key, keyNode, value) in try pairs(node, what: "rules") {
                switch key {
                case "files": files = try items(value, what: "rules.files")
                case "disable", "enable":
                    for (n, item) in try items(value, what: "rules.\(key)") { toggles.append((n, item, key == "enable")) }
                default: throw unknown(keyNode, key, known: ConfigFile.rulesKeys, what: "rules: unknown key")
                }
            }
        } else {
            files = try items(node, what: "rules")
        }
        var sources = [DefaultRules.source]
        let dir = file.lastIndex(of: "/").map { String(file[...$0]) } ?? ""
        for (path, item) in files {
            let full = path.hasPrefix("/") ? path : dir + path
            guard let text = ConfigFile.readFile(full) else {
                throw error(item, "rules: cannot read '\(full)': \(String(cString: strerror(errno)))")
            }
            sources.append(RuleSource(name: full, text: text))
        }
        let defined: [String]
        do { defined = try RuleSet(sources: sources).defined } catch {
            throw ConfigError(file: error.file, line: error.line, column: error.column, reason: error.reason)
        }
        guard !toggles.isEmpty else { return sources }
        var yaml = ""
        for t in toggles {
            guard defined.contains(t.name) else {
                let hint = suggestion(for: t.name, among: defined).map { " (did you mean '\($0)'?)" } ?? ""
                throw error(t.node, "rules.\(t.enabled ? "enable" : "disable"): no rule named '\(t.name)'\(hint)")
            }
            // A double-quoted YAML scalar takes JSON's escapes.
            yaml += "- rule: \(JSON.string(t.name).serialized())\n  enabled: \(t.enabled)\n"
        }
        sources.append(RuleSource(name: "\(file): rules", text: yaml))
        return sources
    }

    func apply(_ body: Node, to settings: inout DetectorSettings) throws(ConfigError) {
        let spec = settings.spec
        if isNull(body) { return }
        let known = ["enabled"] + spec.parameters.map(\.name) + ["exclude"]
        for (key, keyNode, value) in try pairs(body, what: spec.name) {
            let what = "\(spec.name).\(key)"
            switch key {
            case "enabled":
                guard case .scalar = value, let b = value.bool else {
                    throw error(value, "\(what): expected true or false, found \(found(value))")
                }
                settings.enabled = b
            case "exclude":
                settings.exclude = try exclusions(value, what: what)
            default:
                guard let p = spec.parameter(key) else { throw unknown(keyNode, key, known: known, what: "\(spec.name): unknown key") }
                let v = try read(value, kind: p.kind, what: what)
                if let problem = settings.set(key, v) { throw error(value, "\(what): \(problem)") }
            }
        }
    }

    func scalarText(_ node: Node, expected: String, what: String) throws(ConfigError) -> String {
        guard case .scalar(let s) = node, !s.isNull else { throw error(node, "\(what): expected \(expected), found \(found(node))") }
        return s.string
    }

    func read(_ node: Node, kind: ParameterKind, what: String) throws(ConfigError) -> SettingValue {
        if kind == .strings { return .strings(try strings(node, what: what)) }
        let text = try scalarText(node, expected: kind.example, what: what)
        let value: SettingValue?
        switch kind {
        case .duration:
            if SettingValue.parseCount(text) != nil, text.trimmingCharacters() != "0" {
                throw error(node, "\(what): '\(text)' needs a unit: ns, us, ms, s, m, h or d (e.g. \(text)ms)")
            }
            value = SettingValue.parseDuration(text).map { .duration($0) }
        case .count: value = SettingValue.parseCount(text).map { .count($0) }
        case .ratio: value = SettingValue.parseRatio(text).map { .ratio($0) }
        case .bytes: value = SettingValue.parseBytes(text).map { .bytes($0) }
        case .strings: value = nil
        }
        guard let value else { throw error(node, "\(what): expected \(kind.example), found \(found(node))") }
        return value
    }

    /// A list of scalars; a single scalar is a list of one.
    func strings(_ node: Node, what: String) throws(ConfigError) -> [String] {
        switch node {
        case .sequence(let seq):
            var out: [String] = []
            for item in seq {
                guard case .scalar(let s) = item, !s.isNull else {
                    throw error(item, "\(what): expected a name, found \(found(item))")
                }
                out.append(s.string)
            }
            return out
        case .scalar(let s):
            if s.isNull { return [] }
            return [s.string]
        default:
            throw error(node, "\(what): expected a list such as [a, b], found \(found(node))")
        }
    }

    /// exclude: { comm: [...], pid: [...], cgroup: [...], endpoint: [...], device: [...] }
    func exclusions(_ node: Node, what: String) throws(ConfigError) -> Exclusions {
        var ex = Exclusions()
        if isNull(node) { return ex }
        for (key, keyNode, value) in try pairs(node, what: what) {
            let field = "\(what).\(key)"
            switch key {
            case "comm":
                ex.comms = try checked(value, what: field) { c in
                    c.isEmpty || c.utf8.count > 15 ? "'\(c)' is not a command name (1 to 15 bytes, as in /proc/PID/comm)" : nil
                }
            case "pid":
                var pids: [UInt32] = []
                for (text, item) in try items(value, what: field) {
                    guard let p = SettingValue.parseCount(text), p >= 1, p <= 4_194_304 else {
                        throw error(item, "\(field): '\(text)' is not a pid (1 to 4194304)")
                    }
                    pids.append(UInt32(p))
                }
                ex.pids = pids
            case "cgroup":
                ex.cgroups = try checked(value, what: field) { $0.isEmpty ? "an empty cgroup" : nil }
            case "endpoint":
                ex.endpoints = try checked(value, what: field) { $0.isEmpty ? "an empty endpoint" : nil }
            case "device":
                ex.devices = try checked(value, what: field) { $0.isEmpty ? "an empty device" : nil }
            default:
                throw unknown(keyNode, key, known: Exclusions.fields, what: "\(what): unknown key")
            }
        }
        return ex
    }

    /// The list's scalars with their nodes (for positions).
    func items(_ node: Node, what: String) throws(ConfigError) -> [(String, Node)] {
        switch node {
        case .sequence(let seq):
            var out: [(String, Node)] = []
            for item in seq {
                guard case .scalar(let s) = item, !s.isNull else {
                    throw error(item, "\(what): expected a value, found \(found(item))")
                }
                out.append((s.string, item))
            }
            return out
        case .scalar(let s):
            return s.isNull ? [] : [(s.string, node)]
        default:
            throw error(node, "\(what): expected a list such as [a, b], found \(found(node))")
        }
    }

    func checked(_ node: Node, what: String, _ problem: (String) -> String?) throws(ConfigError) -> [String] {
        var out: [String] = []
        for (text, item) in try items(node, what: what) {
            if let p = problem(text) { throw error(item, "\(what): \(p)") }
            out.append(text)
        }
        return out
    }
}

extension String {
    func trimmingCharacters() -> String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s = s.dropFirst() }
        while s.last == " " || s.last == "\t" { s = s.dropLast() }
        return String(s)
    }
}

/// The known name closest to `name`, when it is close enough to be a typo.
func suggestion(for name: String, among known: [String]) -> String? {
    var best: (String, Int)?
    for k in known {
        let d = editDistance(name.lowercased(), k.lowercased())
        let limit = max(1, min(3, k.count / 3))
        if d <= limit, best == nil || d < best!.1 { best = (k, d) }
    }
    return best?.0
}

/// Levenshtein distance over Unicode scalars.
func editDistance(_ a: String, _ b: String) -> Int {
    let x = Array(a.unicodeScalars), y = Array(b.unicodeScalars)
    if x.isEmpty { return y.count }
    if y.isEmpty { return x.count }
    var prev = Array(0...y.count)
    var cur = [Int](repeating: 0, count: y.count + 1)
    for i in 1...x.count {
        cur[0] = i
        for j in 1...y.count {
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
        }
        swap(&prev, &cur)
    }
    return prev[y.count]
}

extension Node.Scalar {
    /// A plain `~`, `null` or nothing: YAML's null.
    var isNull: Bool { style == .plain || style == .any ? Node.scalar(self).null != nil : false }
}
