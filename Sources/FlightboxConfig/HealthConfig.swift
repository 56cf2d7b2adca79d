import FlightboxDetectors
import FlightboxEvents
import Yams

/// The `probes:` section: a list of application health checks, each
///
///     - name: checkout                         # unique, names its findings
///       target: /usr/bin/app:handle_request    # binary:function or binary:0x1f40 (file offset)
///       # or a USDT probe: usdt: provider:name, with binary: /path/app-or-library.so
///       pid: 1234                              # optional: only this process
///       comm: app                              # optional: only processes of this name
///       args: 1                                # integer arguments captured, 0 to 4
///       string: 1                              # optional: the argument that points to a string to record
///       return: int                            # int (sign-extended, the default) or long
///       latency: { statistic: p99, above: 50ms, window: 10s, min_calls: 1 }   # or baseline: 3 (times its own)
///       errors: { when: ret < 0, rate: 0.1, window: 10s, min_calls: 5 }
///       heartbeat: { every: 5s }
///       argument: { when: arg2 > 100000 }
///
/// At least one judgement per check. Checks are numbered from 1 in file
/// order: the `probe_id` of their events.
extension Resolver {
    static let checkKeys = ["name", "target", "usdt", "binary", "pid", "comm", "args", "string", "return", "latency", "errors", "heartbeat", "argument"]
    /// At most this many checks: each is one or two uprobes per process mapping its binary.
    static let maxChecks = 256

    func healthChecks(_ node: Node) throws(ConfigError) -> [HealthCheck] {
        if isNull(node) { return [] }
        guard case .sequence(let items) = node else { throw error(node, "probes: expected a list of checks (- name: ...), found \(found(node))") }
        if items.count > Resolver.maxChecks { throw error(node, "probes: \(items.count) checks is too many (at most \(Resolver.maxChecks))") }
        var out: [HealthCheck] = []
        var names: [String: Node] = [:]
        for (n, item) in items.enumerated() {
            let check = try healthCheck(item, id: UInt32(n + 1))
            if let first = names[check.name] {
                let at = first.mark.map { " (first at \($0.line):\($0.column))" } ?? ""
                throw error(item, "probes: check '\(check.name)' is given twice\(at)")
            }
            names[check.name] = item
            out.append(check)
        }
        return out
    }

    private func healthCheck(_ node: Node, id: UInt32) throws(ConfigError) -> HealthCheck {
        let fields = try pairs(node, what: "probes[\(id)]")
        var byKey: [String: (Node, Node)] = [:]
        for (key, keyNode, value) in fields {
            guard Resolver.checkKeys.contains(key) else { throw unknown(keyNode, key, known: Resolver.checkKeys, what: "probes[\(id)]: unknown key") }
            byKey[key] = (keyNode, value)
        }
        guard let (_, nameNode) = byKey["name"] else { throw error(node, "probes[\(id)]: a check needs a name") }
        let name = try scalarText(nameNode, expected: "a name", what: "probes[\(id)].name")
        guard !name.isEmpty, name.utf8.count <= 64, !name.contains(where: { $0 == "\n" || $0 == "'" }) else {
            throw error(nameNode, "probes[\(id)].name: '\(name)' is not a name (1 to 64 characters, no quote or newline)")
        }
        let what = "probes.\(name)"

        // Where it attaches.
        let target: HealthCheck.Target
        switch (byKey["target"], byKey["usdt"]) {
        case (let t?, nil):
            if byKey["binary"] != nil { throw error(byKey["binary"]!.0, "\(what).binary: only with usdt (target names its binary)") }
            let text = try scalarText(t.1, expected: "binary:function or binary:0xoffset", what: "\(what).target")
            guard let colon = text.lastIndex(of: ":"), colon != text.startIndex, text.index(after: colon) != text.endIndex else {
                throw error(t.1, "\(what).target: '\(text)' is not binary:function or binary:0xoffset")
            }
            let binary = String(text[..<colon]), symbol = String(text[text.index(after: colon)...])
            if symbol.hasPrefix("0x") {
                guard let off = UInt64(symbol.dropFirst(2), radix: 16) else { throw error(t.1, "\(what).target: '\(symbol)' is not a hexadecimal offset") }
                target = .offset(binary: binary, offset: off)
            } else {
                target = .function(binary: binary, symbol: symbol)
            }
        case (nil, let u?):
            let text = try scalarText(u.1, expected: "provider:name", what: "\(what).usdt")
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else { throw error(u.1, "\(what).usdt: '\(text)' is not provider:name") }
            guard let b = byKey["binary"] else { throw error(u.0, "\(what): usdt needs binary: the executable or library holding the probe") }
            let binary = try scalarText(b.1, expected: "a path", what: "\(what).binary")
            target = .usdt(binary: binary, provider: String(parts[0]), name: String(parts[1]))
        case (nil, nil):
            throw error(node, "\(what): needs target (binary:function) or usdt (provider:name with binary)")
        case (_?, let u?):
            throw error(u.0, "\(what): target and usdt exclude each other")
        }
        var check = HealthCheck(id: id, name: name, target: target)

        if let (_, v) = byKey["pid"] {
            let text = try scalarText(v, expected: "a pid", what: "\(what).pid")
            guard let p = SettingValue.parseCount(text), p >= 1, p <= 4_194_304 else { throw error(v, "\(what).pid: '\(text)' is not a pid (1 to 4194304)") }
            check.pid = UInt32(p)
        }
        if let (_, v) = byKey["comm"] {
            let c = try scalarText(v, expected: "a command name", what: "\(what).comm")
            guard !c.isEmpty, c.utf8.count <= 15 else { throw error(v, "\(what).comm: '\(c)' is not a command name (1 to 15 bytes, as in /proc/PID/comm)") }
            check.comm = c
        }
        if let (_, v) = byKey["args"] {
            let text = try scalarText(v, expected: "0 to 4", what: "\(what).args")
            guard let n = SettingValue.parseCount(text), n <= 4 else { throw error(v, "\(what).args: '\(text)' is not 0 to 4") }
            check.arguments = Int(n)
        }
        if let (_, v) = byKey["string"] {
            let text = try scalarText(v, expected: "an argument number", what: "\(what).string")
            guard let n = SettingValue.parseCount(text), n >= 1, n <= 4 else { throw error(v, "\(what).string: '\(text)' is not an argument number (1 to 4)") }
            if n > check.arguments { throw error(v, "\(what).string: arg\(n) is not captured (args: \(check.arguments)); set args: \(n) or more") }
            check.stringArgument = Int(n)
        }
        if let (_, v) = byKey["return"] {
            let text = try scalarText(v, expected: "int or long", what: "\(what).return")
            guard text == "int" || text == "long" else { throw error(v, "\(what).return: '\(text)' is not int or long") }
            if target.isUSDT { throw error(v, "\(what).return: a USDT probe has no return value") }
            check.int32Return = text == "int"
        }

        // Its judgements.
        if let (k, v) = byKey["latency"] {
            if target.isUSDT { throw error(k, "\(what).latency: a USDT probe has no latency (probe a function for that)") }
            check.latency = try latency(v, what: "\(what).latency")
        }
        if let (_, v) = byKey["errors"] { check.errors = try errors(v, check: check, what: "\(what).errors") }
        if let (_, v) = byKey["heartbeat"] {
            let node = try single(v, key: "every", what: "\(what).heartbeat")
            check.heartbeat = HealthCheck.Heartbeat(everyNs: try period(node, what: "\(what).heartbeat.every"))
        }
        if let (_, v) = byKey["argument"] {
            let node = try single(v, key: "when", what: "\(what).argument")
            let c = try condition(node, what: "\(what).argument.when")
            guard case .arg(let i) = c.operand else { throw error(node, "\(what).argument.when: compares an argument (arg1 to arg4), not ret; use errors: for return values") }
            if i > check.arguments { throw error(node, "\(what).argument.when: arg\(i) is not captured (args: \(check.arguments)); set args: \(i) or more") }
            check.argument = c
        }
        if check.judgements.isEmpty { throw error(node, "\(what): judges nothing; give latency, errors, heartbeat or argument") }
        return check
    }

    /// A mapping with `key`, or a scalar standing for it (`heartbeat: 5s`).
    private func single(_ node: Node, key: String, what: String) throws(ConfigError) -> Node {
        if case .scalar = node { return node }
        var value: Node?
        for (k, kn, v) in try pairs(node, what: what) {
            guard k == key else { throw unknown(kn, k, known: [key], what: "\(what): unknown key") }
            value = v
        }
        guard let value else { throw error(node, "\(what): needs \(key)") }
        return value
    }

    private func latency(_ node: Node, what: String) throws(ConfigError) -> HealthCheck.Latency {
        var l = HealthCheck.Latency()
        let known = ["statistic", "above", "baseline", "window", "min_calls"]
        for (key, keyNode, value) in try pairs(node, what: what) {
            switch key {
            case "statistic":
                let text = try scalarText(value, expected: "p99 or max", what: "\(what).statistic")
                guard let s = HealthCheck.Statistic(rawValue: text) else { throw error(value, "\(what).statistic: '\(text)' is not p99 or max") }
                l.statistic = s
            case "above":
                guard case .duration(let ns) = try read(value, kind: .duration, what: "\(what).above"), ns > 0 else {
                    throw error(value, "\(what).above: a limit of 0 judges every call")
                }
                l.aboveNs = ns
            case "baseline":
                guard case .ratio(let r) = try read(value, kind: .ratio, what: "\(what).baseline"), r >= 1, r <= 1_000_000 else {
                    throw error(value, "\(what).baseline: expected a factor from 1 to 1000000 (times the check's own baseline)")
                }
                l.baseline = r
            case "window": l.windowNs = try period(value, what: "\(what).window")
            case "min_calls": l.minCalls = try calls(value, what: "\(what).min_calls")
            default: throw unknown(keyNode, key, known: known, what: "\(what): unknown key")
            }
        }
        if l.aboveNs == nil, l.baseline == nil { throw error(node, "\(what): needs above (a duration) or baseline (a factor), or both") }
        return l
    }

    private func errors(_ node: Node, check: HealthCheck, what: String) throws(ConfigError) -> HealthCheck.Errors {
        var when: Condition?
        var e = HealthCheck.Errors(when: Condition(.ret, .lt, 0))
        let known = ["when", "rate", "window", "min_calls"]
        for (key, keyNode, value) in try pairs(node, what: what) {
            switch key {
            case "when":
                let c = try condition(value, what: "\(what).when")
                switch c.operand {
                case .ret where check.target.isUSDT:
                    throw error(value, "\(what).when: a USDT probe has no return value; compare one of its arguments (arg1 to arg4)")
                case .arg(let i) where i > check.arguments:
                    throw error(value, "\(what).when: arg\(i) is not captured (args: \(check.arguments)); set args: \(i) or more")
                default: when = c
                }
            case "rate":
                guard case .ratio(let r) = try read(value, kind: .ratio, what: "\(what).rate"), r > 0, r <= 1 else {
                    throw error(value, "\(what).rate: expected a share of calls above 0 and at most 1 (0.1 is 10%)")
                }
                e.rate = r
            case "window": e.windowNs = try period(value, what: "\(what).window")
            case "min_calls": e.minCalls = try calls(value, what: "\(what).min_calls")
            default: throw unknown(keyNode, key, known: known, what: "\(what): unknown key")
            }
        }
        guard let when else { throw error(node, "\(what): needs when (e.g. ret < 0, ret == -5)") }
        e.when = when
        return e
    }

    private func condition(_ node: Node, what: String) throws(ConfigError) -> Condition {
        let text = try scalarText(node, expected: "a condition such as ret < 0", what: what)
        switch Condition.parse(text) {
        case .success(let c): return c
        case .failure(let e): throw error(node, "\(what): \(e)")
        }
    }

    /// A window or heartbeat period: the detector judges on 100 ms ticks.
    private func period(_ node: Node, what: String) throws(ConfigError) -> UInt64 {
        guard case .duration(let ns) = try read(node, kind: .duration, what: what) else { throw error(node, "\(what): expected a duration") }
        let tick = HealthDetector.tickNs
        guard ns >= tick, ns <= 86_400_000_000_000, ns % tick == 0 else {
            throw error(node, "\(what): '\(SettingValue.durationText(ns))' must be a multiple of 100ms from 100ms to 1d")
        }
        return ns
    }

    private func calls(_ node: Node, what: String) throws(ConfigError) -> UInt64 {
        guard case .count(let n) = try read(node, kind: .count, what: what), n >= 1, n <= 1_000_000_000 else {
            throw error(node, "\(what): expected a number of calls from 1 to 1000000000")
        }
        return n
    }
}
