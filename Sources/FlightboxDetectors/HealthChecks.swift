import FlightboxEvents

/// One application health check, as declared under `probes:` in the
/// configuration file and stored in the trace: where it attaches, what its
/// probe events carry, and how the `health` detector judges them. Its `id`
/// is the `probe_id` of its fb_probe events, so a replay knows what each id
/// means without the configuration file.
public struct HealthCheck: Codable, Equatable, Sendable {
    /// Where the check attaches in the application.
    public enum Target: Codable, Equatable, Sendable, CustomStringConvertible {
        /// A function by its symbol: entry and return.
        case function(binary: String, symbol: String)
        /// A function at an offset in the binary's file (stripped binaries): entry and return.
        case offset(binary: String, offset: UInt64)
        /// A USDT probe (`provider:name` in the binary's or library's .note.stapsdt).
        case usdt(binary: String, provider: String, name: String)

        public var binary: String {
            switch self {
            case .function(let b, _), .offset(let b, _), .usdt(let b, _, _): b
            }
        }

        public var isUSDT: Bool { if case .usdt = self { true } else { false } }

        /// "binary:function", "binary:0x1f40", "usdt binary:provider:name".
        public var description: String {
            switch self {
            case .function(let b, let s): "\(b):\(s)"
            case .offset(let b, let o): "\(b):0x\(String(o, radix: 16))"
            case .usdt(let b, let p, let n): "usdt \(b):\(p):\(n)"
            }
        }
    }

    /// Which latency statistic a window is judged by.
    public enum Statistic: String, Codable, Sendable, CaseIterable { case p99, max }

    /// Latency entry to return, per aligned window of the check's calls.
    public struct Latency: Codable, Equatable, Sendable {
        public var statistic: Statistic
        /// A window whose statistic is over this is a deviation.
        public var aboveNs: UInt64?
        /// ... or over this many times the check's own baseline (the median of
        /// its recent healthy windows' statistic).
        public var baseline: Double?
        public var windowNs: UInt64
        /// Windows with fewer calls are not judged (nor learned).
        public var minCalls: UInt64

        public init(statistic: Statistic = .p99, aboveNs: UInt64? = nil, baseline: Double? = nil, windowNs: UInt64 = 10_000_000_000, minCalls: UInt64 = 1) {
            self.statistic = statistic
            self.aboveNs = aboveNs
            self.baseline = baseline
            self.windowNs = windowNs
            self.minCalls = minCalls
        }
    }

    /// Error returns: the share of calls whose return value matches `when`, per window.
    public struct Errors: Codable, Equatable, Sendable {
        public var when: Condition
        /// A window with at least this share of failed calls is a deviation.
        public var rate: Double
        public var windowNs: UInt64
        public var minCalls: UInt64

        public init(when: Condition, rate: Double = 0.1, windowNs: UInt64 = 10_000_000_000, minCalls: UInt64 = 5) {
            self.when = when
            self.rate = rate
            self.windowNs = windowNs
            self.minCalls = minCalls
        }
    }

    /// A call (or USDT probe) that must keep coming: missed when a process
    /// that made one made none for longer than `everyNs` of event time.
    public struct Heartbeat: Codable, Equatable, Sendable {
        public var everyNs: UInt64
        public init(everyNs: UInt64) { self.everyNs = everyNs }
    }

    public var id: UInt32
    public var name: String
    public var target: Target
    /// Only this process (attached to it alone).
    public var pid: UInt32?
    /// Only processes with this command name (judged for them alone).
    public var comm: String?
    /// Integer arguments captured, 0 to 4: a function's at entry, a USDT probe's.
    public var arguments: Int
    /// The function returns a C int (sign-extended from 32 bits), not a long or pointer.
    public var int32Return: Bool
    /// The argument (1 to `arguments`) that points to a string to record with each event; 0 for none.
    public var stringArgument: Int
    public var latency: Latency?
    public var errors: Errors?
    public var heartbeat: Heartbeat?
    /// A condition on an argument (`arg2 > 100000`): each call matching it is a deviation.
    public var argument: Condition?

    public init(id: UInt32, name: String, target: Target, pid: UInt32? = nil, comm: String? = nil, arguments: Int = 0, int32Return: Bool = true,
                stringArgument: Int = 0, latency: Latency? = nil, errors: Errors? = nil, heartbeat: Heartbeat? = nil, argument: Condition? = nil) {
        self.id = id
        self.name = name
        self.target = target
        self.pid = pid
        self.comm = comm
        self.arguments = arguments
        self.int32Return = int32Return
        self.stringArgument = stringArgument
        self.latency = latency
        self.errors = errors
        self.heartbeat = heartbeat
        self.argument = argument
    }

    /// The judgements it makes, by name, for listings.
    public var judgements: [String] {
        [latency.map { _ in "latency" }, errors.map { _ in "errors" }, heartbeat.map { _ in "heartbeat" }, argument.map { _ in "argument" }].compactMap { $0 }
    }
}

/// `ret < 0`, `ret == -5`, `arg2 > 100000`: a comparison of a probe event's
/// return value or one of its arguments (1-based) with a constant.
public struct Condition: Codable, Equatable, Sendable, CustomStringConvertible {
    public enum Operand: Codable, Equatable, Sendable {
        case ret
        /// 1 to 4.
        case arg(Int)
    }

    public enum Comparison: String, Codable, Sendable, CaseIterable {
        case lt = "<", le = "<=", eq = "==", ne = "!=", gt = ">", ge = ">="
    }

    public var operand: Operand
    public var comparison: Comparison
    public var value: Int64

    public init(_ operand: Operand, _ comparison: Comparison, _ value: Int64) {
        self.operand = operand
        self.comparison = comparison
        self.value = value
    }

    public var description: String {
        let o = switch operand {
        case .ret: "ret"
        case .arg(let i): "arg\(i)"
        }
        return "\(o) \(comparison.rawValue) \(value)"
    }

    /// Parses "ret < 0", "arg2>=100", "ret == -5"; nil with why not.
    public static func parse(_ text: String) -> Result<Condition, ConditionError> {
        let s = text.filter { $0 != " " && $0 != "\t" }
        let operand: Operand
        var rest: Substring
        if s.hasPrefix("ret") {
            operand = .ret
            rest = s.dropFirst(3)
        } else if s.hasPrefix("arg"), let d = s.dropFirst(3).first, let i = d.wholeNumberValue, (1...4).contains(i) {
            operand = .arg(i)
            rest = s.dropFirst(4)
        } else {
            return .failure(ConditionError(reason: "'\(text)' does not start with ret or arg1 to arg4 (e.g. ret < 0, arg2 > 100000)"))
        }
        // Longest operator first: "<=" before "<".
        guard let c = Comparison.allCases.sorted(by: { $0.rawValue.count > $1.rawValue.count }).first(where: { rest.hasPrefix($0.rawValue) }) else {
            return .failure(ConditionError(reason: "'\(text)' has no comparison (one of < <= == != > >=)"))
        }
        rest = rest.dropFirst(c.rawValue.count)
        let number: Int64?
        if rest.hasPrefix("0x") {
            number = UInt64(rest.dropFirst(2), radix: 16).map { Int64(bitPattern: $0) }
        } else if rest.hasPrefix("-0x") {
            number = Int64(rest.dropFirst(3), radix: 16).map { -$0 }
        } else {
            number = Int64(rest)
        }
        guard let number else { return .failure(ConditionError(reason: "'\(text)': '\(rest)' is not a whole number")) }
        return .success(Condition(operand, c, number))
    }

    public struct ConditionError: Error, CustomStringConvertible {
        public let reason: String
        public var description: String { reason }
    }

    /// The operand's value in a probe event: the return value, or the
    /// argument as a signed 64-bit number.
    @inlinable public func operandValue(_ r: ProbeRecord) -> Int64 {
        switch operand {
        case .ret: r.ret
        case .arg(let i): Int64(bitPattern: r.args(i - 1))
        }
    }

    @inlinable public func matches(_ v: Int64) -> Bool {
        switch comparison {
        case .lt: v < value
        case .le: v <= value
        case .eq: v == value
        case .ne: v != value
        case .gt: v > value
        case .ge: v >= value
        }
    }
}

extension HealthCheck {
    /// The stored form (trace metadata "health_checks"): stable key order,
    /// durations in ns; read back by `init(json:)`.
    public var json: JSON {
        var target: [(String, JSON)]
        switch self.target {
        case .function(let b, let s): target = [("kind", .string("function")), ("binary", .string(b)), ("symbol", .string(s))]
        case .offset(let b, let o): target = [("kind", .string("offset")), ("binary", .string(b)), ("offset", .uint(o))]
        case .usdt(let b, let p, let n): target = [("kind", .string("usdt")), ("binary", .string(b)), ("provider", .string(p)), ("name", .string(n))]
        }
        var fields: [(String, JSON)] = [("id", .uint(UInt64(id))), ("name", .string(name)), ("target", .object(target))]
        if let pid { fields.append(("pid", .uint(UInt64(pid)))) }
        if let comm { fields.append(("comm", .string(comm))) }
        fields += [("args", .uint(UInt64(arguments))), ("return", .string(int32Return ? "int" : "long"))]
        if stringArgument > 0 { fields.append(("string", .uint(UInt64(stringArgument)))) }
        if let l = latency {
            var o: [(String, JSON)] = [("statistic", .string(l.statistic.rawValue))]
            if let a = l.aboveNs { o.append(("above_ns", .uint(a))) }
            if let b = l.baseline { o.append(("baseline", .double(b))) }
            o += [("window_ns", .uint(l.windowNs)), ("min_calls", .uint(l.minCalls))]
            fields.append(("latency", .object(o)))
        }
        if let e = errors {
            fields.append(("errors", .object([("when", .string(e.when.description)), ("rate", .double(e.rate)),
                                              ("window_ns", .uint(e.windowNs)), ("min_calls", .uint(e.minCalls))])))
        }
        if let h = heartbeat { fields.append(("heartbeat", .object([("every_ns", .uint(h.everyNs))]))) }
        if let a = argument { fields.append(("argument", .object([("when", .string(a.description))]))) }
        return .object(fields)
    }

    public struct StoredError: Error, CustomStringConvertible {
        public let reason: String
        public var description: String { reason }
    }

    /// Reads the stored form back; anything malformed is an error naming the field.
    public init(json: JSON) throws {
        func fail(_ why: String) -> StoredError { StoredError(reason: "health check \(json["name"]?.stringValue ?? "?"): \(why)") }
        guard let id = json["id"]?.uintValue, id <= UInt64(UInt32.max), let name = json["name"]?.stringValue, let t = json["target"] else {
            throw fail("needs id, name and target")
        }
        guard let binary = t["binary"]?.stringValue else { throw fail("target.binary missing") }
        let target: Target
        switch t["kind"]?.stringValue {
        case "function":
            guard let s = t["symbol"]?.stringValue else { throw fail("target.symbol missing") }
            target = .function(binary: binary, symbol: s)
        case "offset":
            guard let o = t["offset"]?.uintValue else { throw fail("target.offset missing") }
            target = .offset(binary: binary, offset: o)
        case "usdt":
            guard let p = t["provider"]?.stringValue, let n = t["name"]?.stringValue else { throw fail("target.provider or name missing") }
            target = .usdt(binary: binary, provider: p, name: n)
        default:
            throw fail("target.kind is not function, offset or usdt")
        }
        func condition(_ v: JSON?, _ what: String) throws -> Condition {
            guard let text = v?.stringValue else { throw fail("\(what) missing") }
            switch Condition.parse(text) {
            case .success(let c): return c
            case .failure(let e): throw fail("\(what): \(e)")
            }
        }
        func number(_ v: JSON?) -> Double? {
            switch v {
            case .double(let d): d
            case .int(let i): Double(i)
            case .uint(let u): Double(u)
            default: nil
            }
        }
        self.init(id: UInt32(id), name: name, target: target,
                  pid: json["pid"]?.uintValue.map { UInt32(truncatingIfNeeded: $0) }, comm: json["comm"]?.stringValue,
                  arguments: Int(min(json["args"]?.uintValue ?? 0, 4)), int32Return: json["return"]?.stringValue != "long",
                  stringArgument: Int(min(json["string"]?.uintValue ?? 0, 4)))
        if let l = json["latency"] {
            guard let s = l["statistic"]?.stringValue.flatMap(Statistic.init(rawValue:)), let w = l["window_ns"]?.uintValue, w > 0 else {
                throw fail("latency needs statistic and window_ns")
            }
            latency = Latency(statistic: s, aboveNs: l["above_ns"]?.uintValue, baseline: number(l["baseline"]), windowNs: w,
                              minCalls: l["min_calls"]?.uintValue ?? 1)
            if latency!.aboveNs == nil, latency!.baseline == nil { throw fail("latency needs above_ns or baseline") }
        }
        if let e = json["errors"] {
            guard let rate = number(e["rate"]), let w = e["window_ns"]?.uintValue, w > 0 else { throw fail("errors needs rate and window_ns") }
            errors = Errors(when: try condition(e["when"], "errors.when"), rate: rate, windowNs: w, minCalls: e["min_calls"]?.uintValue ?? 1)
        }
        if let h = json["heartbeat"] {
            guard let every = h["every_ns"]?.uintValue, every > 0 else { throw fail("heartbeat needs every_ns") }
            heartbeat = Heartbeat(everyNs: every)
        }
        if let a = json["argument"] { argument = try condition(a["when"], "argument.when") }
    }
}
