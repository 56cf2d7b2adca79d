import FlightboxEvents
import FlightboxFormat
import Yams

/// A rules file's name and text: what `--rules` reads and what a trace
/// stores, so replay compiles exactly the rules that ran live.
public struct RuleSource: Equatable, Sendable {
    public let name: String
    public let text: String
    public init(name: String, text: String) {
        self.name = name
        self.text = text
    }
}

/// Falco's priorities, highest first.
public enum Priority: String, CaseIterable, Sendable {
    case emergency, alert, critical, error, warning, notice, informational, debug

    static func parse(_ s: String) -> Priority? {
        let l = s.lowercased()
        return l == "info" ? .informational : Priority(rawValue: l)
    }
}

struct ListDefinition {
    let items: [Literal]
}

struct MacroDefinition {
    let expr: Expr
    let locator: TextLocator
}

struct RuleDefinition {
    let name: String
    var desc: String
    /// nil only for a sequence rule (its steps are its conditions).
    var condition: (Expr, TextLocator)?
    var output: (String, TextLocator)
    var priority: Priority
    var tags: [String]
    var exceptions: [(String, Expr, TextLocator)]
    var enabled: Bool
    var aggregate: AggregateDefinition?
    var sequence: SequenceDefinition?
    let file: String
    let line: Int
}

/// `aggregate:` — a rule over many events: it matches when, within
/// `window`, one group (`by`, the process's exec_id by default) has had
/// `count` matching events (with `distinct`: `count` different values of
/// that field). State is bounded: at most `count` entries per group and
/// `Aggregate.maxGroups` groups per rule.
struct AggregateDefinition {
    let by: [(String, Int?)]
    let distinct: (String, Int?)?
    let count: Int
    let window: UInt64
    let regular: Double?
    let locator: TextLocator
}

/// `sequence:` — ordered steps by one lineage (or process) within a window;
/// see `StepSequence`.
struct SequenceDefinition {
    let within: UInt64
    let by: StepSequence.By
    let steps: [(condition: (Expr, TextLocator), key: (String, Int?)?)]
}

/// One rule, compiled.
public final class CompiledRule {
    public let name: String
    public let desc: String
    public let priority: Priority
    public let tags: [String]
    /// The tags that are MITRE ATT&CK technique ids (T1059, T1059.004).
    public let techniques: [String]
    public let kinds: KindSet
    public let condition: Condition
    let output: [OutputPart]
    /// Set for a rule over many events (`aggregate:`).
    public let aggregate: Aggregate?
    /// Set for a rule of ordered steps (`sequence:`); `condition` then filters every step.
    public let sequence: StepSequence?
    public let file: String
    public let line: Int

    init(name: String, desc: String, priority: Priority, tags: [String], kinds: KindSet, condition: @escaping Condition,
         output: [OutputPart], aggregate: Aggregate?, sequence: StepSequence? = nil, file: String, line: Int) {
        self.aggregate = aggregate
        self.sequence = sequence
        self.name = name
        self.desc = desc
        self.priority = priority
        self.tags = tags
        techniques = tags.filter(CompiledRule.isTechnique)
        self.kinds = kinds
        self.condition = condition
        self.output = output
        self.file = file
        self.line = line
    }

    static func isTechnique(_ t: String) -> Bool {
        let b = Array(t.utf8)
        guard b.count == 5 || b.count == 9, b[0] == 84 else { return false } // "T"
        for (i, c) in b.enumerated().dropFirst() {
            if i == 5 { if c != 46 { return false } } else if c < 48 || c > 57 { return false }
        }
        return true
    }

    /// The output template with the event's fields filled in.
    public func render(_ input: RuleInput, _ agg: AggregateMatch? = nil) -> String {
        var s = ""
        for part in output {
            switch part {
            case .text(let t): s += t
            case .aggCount: s += agg.map { String($0.count) } ?? ""
            case .aggValues: s += agg?.values.joined(separator: ",") ?? ""
            case .field(let access):
                switch access {
                case .string(let get): s += get(input).map { String(decoding: $0, as: UTF8.self) } ?? "<NA>"
                case .int(let get): s += get(input).map { String($0) } ?? "<NA>"
                case .bool(let get): s += get(input).map { $0 ? "true" : "false" } ?? "<NA>"
                case .anyAncestor(let pick):
                    s += (input.proc?.chain(limit: Fields.maxAncestors + 1).dropFirst().map { String(decoding: pick($0), as: UTF8.self) } ?? []).joined(separator: ",")
                }
            }
        }
        return s
    }
}

enum OutputPart {
    case text(String)
    case field(FieldAccess)
    /// An aggregate rule's count and distinct values (empty for other rules).
    case aggCount, aggValues
}

/// A set of compiled rules, loaded from sources in order. Later sources
/// refine earlier ones the way Falco's do: a list, macro or rule with a
/// name already defined replaces it (`append: true` on a list adds to it),
/// and `- rule: NAME` with only `enabled: false` turns a rule off.
public struct RuleSet {
    public let rules: [CompiledRule]
    public let sources: [RuleSource]
    /// Some enabled rule reads `proc.exe_written` (the lineage then tracks written paths).
    public let usesExeWritten: Bool
    /// Every rule defined, enabled or not, in definition order.
    public let defined: [String]
    /// Every kind some rule can match.
    public var kinds: KindSet { rules.reduce(KindSet.none) { $0.union($1.kinds) } }

    public static let itemKeys = ["list", "macro", "rule"]
    public static let listKeys = ["list", "items", "append"]
    public static let macroKeys = ["macro", "condition"]
    public static let ruleKeys = ["rule", "desc", "condition", "output", "priority", "tags", "exceptions", "enabled", "aggregate", "sequence"]
    public static let aggregateKeys = ["by", "distinct", "count", "window", "regular"]
    public static let sequenceKeys = ["within", "by", "steps"]
    public static let stepKeys = ["condition", "key"]
    /// Bounds that keep loading and evaluation cheap whatever a file says.
    public static let maxRules = 1024
    public static let maxConditionBytes = 16 << 10

    public init(sources: [RuleSource]) throws(RuleError) {
        var loader = Loader()
        for s in sources { try loader.load(s) }
        self.sources = sources
        defined = loader.rules.map(\.name)
        (rules, usesExeWritten) = try loader.compile()
    }

    /// The built-in rules only.
    public static func builtIn() -> RuleSet {
        do { return try RuleSet(sources: [DefaultRules.source]) } catch { preconditionFailure("the built-in rules do not compile: \(error)") }
    }
}

struct Loader {
    var lists: [String: ListDefinition] = [:]
    var macros: [String: MacroDefinition] = [:]
    var rules: [RuleDefinition] = []

    mutating func load(_ source: RuleSource) throws(RuleError) {
        let bytes = Array(source.text.utf8)
        let starts = TextLocator.lineStarts(bytes)
        let file = source.name
        func err(_ node: Node?, _ reason: String) -> RuleError {
            RuleError(file: file, line: node?.mark?.line ?? 1, column: node?.mark?.column ?? 1, reason: reason)
        }
        func locator(_ node: Node, _ text: String) -> TextLocator {
            TextLocator(file: file, fileBytes: bytes, lineStarts: starts, line: node.mark?.line ?? 1, column: node.mark?.column ?? 1, value: text)
        }
        func string(_ node: Node, _ what: String) throws(RuleError) -> String {
            guard case .scalar(let s) = node else { throw err(node, "\(what): expected text") }
            return s.string
        }
        func bool(_ node: Node, _ what: String) throws(RuleError) -> Bool {
            guard case .scalar(let s) = node, let b = ["true": true, "false": false][s.string] else { throw err(node, "\(what): expected true or false") }
            return b
        }
        func strings(_ node: Node, _ what: String) throws(RuleError) -> [(String, Node)] {
            guard case .sequence(let seq) = node else { throw err(node, "\(what): expected a list") }
            var out: [(String, Node)] = []
            for n in seq { out.append((try string(n, what), n)) }
            return out
        }
        func condition(_ node: Node, _ what: String) throws(RuleError) -> (Expr, TextLocator) {
            let text = try string(node, what)
            let loc = locator(node, text)
            guard text.utf8.count <= RuleSet.maxConditionBytes else { throw err(node, "\(what): longer than \(RuleSet.maxConditionBytes) bytes") }
            switch ExpressionParser.parse(text) {
            case .success(let e): return (e, loc)
            case .failure(let f): throw loc.error(at: f.offset, f.reason)
            }
        }

        let root: Node?
        do {
            root = try Yams.compose(yaml: source.text)
        } catch let e as YamlError {
            switch e {
            case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
                throw RuleError(file: file, line: mark.line, column: mark.column, reason: "malformed YAML: \(problem)")
            default:
                throw RuleError(file: file, line: 1, column: 1, reason: "malformed YAML: \(e)")
            }
        } catch {
            throw RuleError(file: file, line: 1, column: 1, reason: "malformed YAML: \(error)")
        }
        guard let root else { return }
        guard case .sequence(let items) = root else { throw err(root, "a rules file is a list of '- list:', '- macro:' and '- rule:' items") }
        for item in items {
            guard case .mapping(let m) = item else { throw err(item, "expected a '- list:', '- macro:' or '- rule:' item") }
            var fields: [String: (key: Node, value: Node)] = [:]
            for (k, v) in m {
                let key = try string(k, "key")
                guard fields[key] == nil else { throw err(k, "'\(key)' is given twice") }
                fields[key] = (k, v)
            }
            let kinds = RuleSet.itemKeys.filter { fields[$0] != nil }
            guard kinds.count == 1, let kind = kinds.first, let head = fields[kind] else {
                throw err(item, kinds.isEmpty ? "an item needs one of 'list', 'macro' or 'rule'" : "an item is one of 'list', 'macro' or 'rule', not several")
            }
            let allowed = kind == "list" ? RuleSet.listKeys : kind == "macro" ? RuleSet.macroKeys : RuleSet.ruleKeys
            for (key, kv) in fields.sorted(by: { ($0.value.key.mark?.line ?? 0, $0.value.key.mark?.column ?? 0) < ($1.value.key.mark?.line ?? 0, $1.value.key.mark?.column ?? 0) }) where !allowed.contains(key) {
                throw err(kv.key, "\(kind): unknown key '\(key)'; known: \(allowed.joined(separator: ", "))")
            }
            let name = try string(head.value, kind)
            guard !name.isEmpty, name.utf8.count <= 256 else { throw err(head.value, "\(kind): a name of 1 to 256 bytes") }
            switch kind {
            case "list":
                guard let itemsNode = fields["items"]?.value else { throw err(item, "list '\(name)': needs 'items'") }
                var lits: [Literal] = []
                guard case .sequence(let seq) = itemsNode else { throw err(itemsNode, "list '\(name)': items: expected a list") }
                for n in seq {
                    guard case .scalar(let s) = n else { throw err(n, "list '\(name)': items are text") }
                    lits.append(Literal(text: s.string, quoted: s.style == .singleQuoted || s.style == .doubleQuoted, at: 0))
                }
                var append = false
                if let a = fields["append"] { append = try bool(a.value, "append") }
                if append {
                    guard let old = lists[name] else { throw err(head.value, "list '\(name)': append to a list not defined before") }
                    lists[name] = ListDefinition(items: old.items + lits)
                } else {
                    lists[name] = ListDefinition(items: lits)
                }
            case "macro":
                guard let c = fields["condition"]?.value else { throw err(item, "macro '\(name)': needs 'condition'") }
                let (e, loc) = try condition(c, "macro '\(name)'")
                macros[name] = MacroDefinition(expr: e, locator: loc)
            default:
                var enabled = true
                if let en = fields["enabled"] { enabled = try bool(en.value, "enabled") }
                if fields["condition"] == nil, fields.count == 2, fields["enabled"] != nil {
                    guard let i = rules.firstIndex(where: { $0.name == name }) else { throw err(head.value, "rule '\(name)': no such rule to enable or disable") }
                    rules[i].enabled = enabled
                    continue
                }
                for required in ["condition", "output", "priority"] where fields[required] == nil && !(required == "condition" && fields["sequence"] != nil) {
                    throw err(item, "rule '\(name)': needs '\(required)'")
                }
                let cond = try fields["condition"].map { f throws(RuleError) in try condition(f.value, "rule '\(name)'") }
                let outNode = fields["output"]!.value
                let out = try string(outNode, "rule '\(name)': output")
                let prioNode = fields["priority"]!.value
                guard let prio = Priority.parse(try string(prioNode, "priority")) else {
                    throw err(prioNode, "rule '\(name)': priority is one of \(Priority.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                var tags: [String] = []
                if let t = fields["tags"] { tags = try strings(t.value, "tags").map(\.0) }
                var desc = ""
                if let d = fields["desc"] { desc = try string(d.value, "desc") }
                var exceptions: [(String, Expr, TextLocator)] = []
                if let exNode = fields["exceptions"]?.value {
                    guard case .sequence(let seq) = exNode else { throw err(exNode, "rule '\(name)': exceptions: expected a list of {name, condition}") }
                    for ex in seq {
                        guard case .mapping(let em) = ex else { throw err(ex, "rule '\(name)': an exception is {name, condition}") }
                        var exName: String?, exCond: (Expr, TextLocator)?
                        for (k, v) in em {
                            switch try string(k, "key") {
                            case "name": exName = try string(v, "exception name")
                            case "condition": exCond = try condition(v, "rule '\(name)' exception")
                            case let other: throw err(k, "exception: unknown key '\(other)'; known: name, condition")
                            }
                        }
                        guard let exName, let exCond else { throw err(ex, "rule '\(name)': an exception needs 'name' and 'condition'") }
                        exceptions.append((exName, exCond.0, exCond.1))
                    }
                }
                var aggregate: AggregateDefinition?
                if let agNode = fields["aggregate"]?.value {
                    guard case .mapping(let am) = agNode else { throw err(agNode, "rule '\(name)': aggregate: expected a mapping of \(RuleSet.aggregateKeys.joined(separator: ", "))") }
                    var by: [(String, Int?)] = [("proc.exec_id", nil)]
                    var distinct: (String, Int?)?
                    var count: Int?
                    var window: UInt64?
                    var regular: Double?
                    func fieldName(_ n: Node) throws(RuleError) -> (String, Int?) {
                        let text = try string(n, "aggregate field")
                        guard case .success(.name(let f, let index, _)) = ExpressionParser.parse(text) else { throw err(n, "aggregate: '\(text)' is not a field name") }
                        switch Fields.access(f, index: index) {
                        case .success(.string), .success(.int): return (f, index)
                        case .success: throw err(n, "aggregate: '\(f)' must be a string or a number")
                        case .failure(let p): throw err(n, "aggregate: \(p.reason)")
                        }
                    }
                    for (k, v) in am {
                        switch try string(k, "key") {
                        case "by":
                            guard case .sequence(let seq) = v, !seq.isEmpty, seq.count <= 4 else { throw err(v, "aggregate: by: a list of 1 to 4 fields") }
                            by = []
                            for n in seq { by.append(try fieldName(n)) }
                        case "distinct": distinct = try fieldName(v)
                        case "count":
                            guard let c = Int(try string(v, "count")), c >= 2, c <= Aggregate.maxCount else { throw err(v, "aggregate: count is a whole number from 2 to \(Aggregate.maxCount)") }
                            count = c
                        case "window":
                            guard let w = Aggregate.parseDuration(try string(v, "window")), w >= 1_000_000, w <= 86_400_000_000_000 else {
                                throw err(v, "aggregate: window is a duration from 1ms to 24h such as 10s")
                            }
                            window = w
                        case "regular":
                            guard let r = Double(try string(v, "regular")), r > 0, r <= 1 else { throw err(v, "aggregate: regular is a share from 0 to 1 such as 0.1") }
                            regular = r
                        case let other: throw err(k, "aggregate: unknown key '\(other)'; known: \(RuleSet.aggregateKeys.joined(separator: ", "))")
                        }
                    }
                    guard let count, let window else { throw err(agNode, "rule '\(name)': aggregate needs 'count' and 'window'") }
                    if regular != nil, distinct != nil { throw err(agNode, "rule '\(name)': aggregate: 'regular' times repeats of one thing; it excludes 'distinct'") }
                    if regular != nil, count < 4 { throw err(agNode, "rule '\(name)': aggregate: 'regular' needs a count of at least 4") }
                    aggregate = AggregateDefinition(by: by, distinct: distinct, count: count, window: window, regular: regular, locator: locator(agNode, ""))
                }
                var sequence: SequenceDefinition?
                if let sqNode = fields["sequence"]?.value {
                    if aggregate != nil { throw err(sqNode, "rule '\(name)': a rule is an aggregate or a sequence, not both") }
                    guard case .mapping(let sm) = sqNode else { throw err(sqNode, "rule '\(name)': sequence: expected a mapping of \(RuleSet.sequenceKeys.joined(separator: ", "))") }
                    var within: UInt64?
                    var by = StepSequence.By.lineage
                    var steps: [(condition: (Expr, TextLocator), key: (String, Int?)?)] = []
                    var stepsNode: Node?
                    for (k, v) in sm {
                        switch try string(k, "key") {
                        case "within":
                            guard let w = Aggregate.parseDuration(try string(v, "within")), w >= 1_000_000, w <= 86_400_000_000_000 else {
                                throw err(v, "sequence: within is a duration from 1ms to 24h such as 60s")
                            }
                            within = w
                        case "by":
                            guard let b = StepSequence.By(rawValue: try string(v, "by")) else { throw err(v, "sequence: by is lineage or process") }
                            by = b
                        case "steps":
                            stepsNode = v
                            guard case .sequence(let list) = v, list.count >= 2, list.count <= StepSequence.maxSteps else {
                                throw err(v, "sequence: steps: a list of 2 to \(StepSequence.maxSteps) conditions")
                            }
                            for (n, stepNode) in list.enumerated() {
                                let what = "rule '\(name)' step \(n + 1)"
                                if case .mapping(let stm) = stepNode {
                                    var c: (Expr, TextLocator)?, key: (String, Int?)?
                                    for (sk, sv) in stm {
                                        switch try string(sk, "key") {
                                        case "condition": c = try condition(sv, what)
                                        case "key":
                                            let text = try string(sv, "key")
                                            guard case .success(.name(let f, let index, _)) = ExpressionParser.parse(text) else { throw err(sv, "sequence: key: '\(text)' is not a field name") }
                                            switch Fields.access(f, index: index) {
                                            case .success(.string), .success(.int): key = (f, index)
                                            case .success: throw err(sv, "sequence: key: '\(f)' must be a string or a number")
                                            case .failure(let p): throw err(sv, "sequence: key: \(p.reason)")
                                            }
                                        case let other: throw err(sk, "sequence step: unknown key '\(other)'; known: \(RuleSet.stepKeys.joined(separator: ", "))")
                                        }
                                    }
                                    guard let c else { throw err(stepNode, "\(what): needs 'condition'") }
                                    steps.append((c, key))
                                } else {
                                    steps.append((try condition(stepNode, what), nil))
                                }
                            }
                        case let other: throw err(k, "sequence: unknown key '\(other)'; known: \(RuleSet.sequenceKeys.joined(separator: ", "))")
                        }
                    }
                    guard let within, stepsNode != nil else { throw err(sqNode, "rule '\(name)': sequence needs 'within' and 'steps'") }
                    let keyed = steps.filter { $0.key != nil }.count
                    if keyed != 0, keyed != steps.count { throw err(stepsNode, "rule '\(name)': sequence: give every step a key, or none") }
                    sequence = SequenceDefinition(within: within, by: by, steps: steps)
                }
                let def = RuleDefinition(
                    name: name, desc: desc, condition: cond,
                    output: (out, locator(outNode, out)), priority: prio, tags: tags, exceptions: exceptions, enabled: enabled,
                    aggregate: aggregate, sequence: sequence, file: file, line: head.key.mark?.line ?? 1)
                if let i = rules.firstIndex(where: { $0.name == name }) { rules[i] = def } else { rules.append(def) }
                guard rules.count <= RuleSet.maxRules else { throw err(head.value, "more than \(RuleSet.maxRules) rules") }
            }
        }
    }

    /// Compiles every enabled rule: macros and lists resolve against the
    /// final definitions, so a later file can change a macro a built-in rule uses.
    func compile() throws(RuleError) -> ([CompiledRule], usesExeWritten: Bool) {
        var out: [CompiledRule] = []
        var usesExeWritten = false
        for def in rules {
            var cc = ConditionCompiler(lists: lists, macros: macros)
            var c = try def.condition.map { d throws(RuleError) in try cc.compile(d.0, d.1) } ?? .init(condition: { _ in true }, kinds: .all)
            var sequence: StepSequence?
            if let sq = def.sequence {
                var steps: [StepSequence.StepDefinition] = []
                var kinds = KindSet.none
                for st in sq.steps {
                    let sc = try cc.compile(st.condition.0, st.condition.1)
                    kinds = kinds.union(sc.kinds)
                    steps.append(.init(condition: sc.condition, kinds: sc.kinds, key: st.key.map { Loader.accessor($0) }))
                }
                c = .init(condition: c.condition, kinds: c.kinds.intersection(kinds))
                sequence = StepSequence(steps: steps, within: sq.within, by: sq.by)
            }
            var condition = c.condition
            if !def.exceptions.isEmpty {
                var excluded: [Condition] = []
                for (_, e, loc) in def.exceptions { excluded.append(try cc.compile(e, loc).condition) }
                let base = condition
                condition = { i in base(i) && !excluded.contains { $0(i) } }
            }
            let output = try Loader.template(def.output.0, def.output.1)
            guard def.enabled else { continue }
            usesExeWritten = usesExeWritten || cc.usesExeWritten || def.output.0.contains("%proc.exe_written")
            let aggregate = def.aggregate.map { a in
                Aggregate(by: a.by.map { Loader.accessor($0) }, byNames: a.by.map { $0.0 }, distinct: a.distinct.map { Loader.accessor($0) },
                          distinctName: a.distinct?.0, count: a.count, window: a.window, regular: a.regular)
            }
            out.append(CompiledRule(name: def.name, desc: def.desc, priority: def.priority, tags: def.tags, kinds: c.kinds,
                                    condition: condition, output: output, aggregate: aggregate, sequence: sequence, file: def.file, line: def.line))
        }
        return (out, usesExeWritten)
    }

    static func accessor(_ f: (String, Int?)) -> FieldAccess {
        guard case .success(let a) = Fields.access(f.0, index: f.1) else { preconditionFailure("checked when parsed") }
        return a
    }

    /// `%field` and `%proc.aname[2]` in an output become the event's values.
    static func template(_ text: String, _ loc: TextLocator) throws(RuleError) -> [OutputPart] {
        let b = Array(text.utf8)
        var parts: [OutputPart] = []
        var lit: [UInt8] = []
        var i = 0
        while i < b.count {
            guard b[i] == 37, i + 1 < b.count, ExpressionParser.isNameByte(b[i + 1]) else { lit.append(b[i]); i += 1; continue }
            let start = i
            i += 1
            let nameStart = i
            while i < b.count, ExpressionParser.isNameByte(b[i]) { i += 1 }
            // A trailing dot ends a sentence, not a field name.
            while i > nameStart, b[i - 1] == 46 { i -= 1 }
            let name = String(decoding: b[nameStart..<i], as: UTF8.self)
            var index: Int?
            if i < b.count, b[i] == 91, let close = b[i...].firstIndex(of: 93), let n = Int(String(decoding: b[(i + 1)..<close], as: UTF8.self)) {
                index = n
                i = close + 1
            }
            if name == "agg.count" || name == "agg.values" {
                if !lit.isEmpty { parts.append(.text(String(decoding: lit, as: UTF8.self))); lit = [] }
                parts.append(name == "agg.count" ? .aggCount : .aggValues)
                continue
            }
            switch Fields.access(name, index: index) {
            case .success(let a):
                if !lit.isEmpty { parts.append(.text(String(decoding: lit, as: UTF8.self))); lit = [] }
                parts.append(.field(a))
            case .failure(let p):
                throw loc.error(at: start, "output: \(p.reason)")
            }
        }
        if !lit.isEmpty { parts.append(.text(String(decoding: lit, as: UTF8.self))) }
        return parts
    }
}

/// Evaluates a rule set over the event stream, keeping the lineage table
/// that process fields read. Each event costs one kind lookup; only events
/// of a kind some rule can match are evaluated, and only by those rules.
public final class RuleEngine {
    public let lineage: LineageTable
    public let rules: [CompiledRule]
    /// Per kind, the rules that can match it, `table[starts[k] ..< starts[k + 1]]`:
    /// unretained references in buffers the engine owns (`rules` keeps them
    /// alive), so the hot path does no reference counting for them.
    private let table: UnsafeMutablePointer<Unmanaged<CompiledRule>>
    private let starts: UnsafeMutablePointer<Int>
    private let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: Fields.scratchBytes, alignment: 8)

    /// Whether the lineage keeps written paths (for `proc.exe_written`).
    private let tracksWritten: Bool

    public init(rules: RuleSet, snapshot: ProcessSnapshot?) {
        lineage = LineageTable(snapshot: snapshot, tracksWritten: rules.usesExeWritten)
        tracksWritten = rules.usesExeWritten
        self.rules = rules.rules
        var list: [Unmanaged<CompiledRule>] = []
        let kinds = SecurityEventKind.allCases
        starts = .allocate(capacity: kinds.count + 1)
        for k in kinds {
            starts[k.rawValue] = list.count
            for r in rules.rules where r.kinds.contains(k) { list.append(.passUnretained(r)) }
        }
        starts[kinds.count] = list.count
        table = .allocate(capacity: max(list.count, 1))
        table.initialize(from: list, count: list.count)
    }

    deinit {
        scratch.deallocate()
        table.deallocate()
        starts.deallocate()
    }

    /// Forgets aggregate groups whose window has passed by `now` (event
    /// time, an aligned tick): what a rule holds follows the recent keys,
    /// not every key ever seen.
    public func expire(now: UInt64) {
        for r in rules {
            r.aggregate?.expire(now: now)
            r.sequence?.expire(now: now)
        }
    }

    /// Processes one event; calls `onMatch` for each rule it matches, in
    /// rule order (for an aggregate rule: when its group reaches its count).
    @inline(__always)
    public func process(_ e: Event, onMatch: (CompiledRule, RuleInput, AggregateMatch?) -> Void) {
        guard let kind = SecurityEventKind.of(e) else { return }
        switch kind {
        case .fork, .exec: lineage.apply(e)
        case .open where tracksWritten:
            if let f = e.as(FileRecord.self), f.ret >= 0, f.openFlags & (3 | 0o100 | 0o1000) != 0 { lineage.noteWritten(f.path, at: e.timestamp) }
        case .rename where tracksWritten:
            if let f = e.as(FileRecord.self), f.ret >= 0 { lineage.noteWritten(f.path2, at: e.timestamp) }
        case .chmodExec where tracksWritten:
            if let p = e.as(PrivilegeRecord.self), p.ret >= 0, p.strLen > 0 { lineage.noteWritten(p.str, at: e.timestamp) }
        case .netBytes: lineage.traffic.add(e, execution: lineage.execution(e.pid))
        default: break
        }
        let from = starts[kind.rawValue], to = starts[kind.rawValue + 1]
        if from < to {
            // A fork is the parent's act: its fields are the parent's.
            let input = RuleInput(event: e, kind: kind, proc: lineage.execution(e.pid), lineage: lineage, scratch: scratch)
            for i in from..<to {
                let matched = table[i]._withUnsafeGuaranteedRef { $0.condition(input) }
                guard matched else { continue }
                let rule = table[i].takeUnretainedValue()
                if let a = rule.aggregate {
                    if let m = a.add(input) { onMatch(rule, input, m) }
                } else if let sq = rule.sequence {
                    if let m = sq.advance(input) { onMatch(rule, input, m.aggregateMatch) }
                } else {
                    onMatch(rule, input, nil)
                }
            }
        }
        if kind == .exit { lineage.retire(e) }
    }
}
