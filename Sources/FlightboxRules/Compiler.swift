import FlightboxEvents

/// A condition compiled to a closure tree: each node reads what it needs
/// from the input and compares raw bytes or integers, so evaluating one
/// rule costs a bounded number of comparisons (the size of its expression
/// after macro expansion, times the ancestor limit for `proc.aname`).
public typealias Condition = (RuleInput) -> Bool

/// Maps a byte offset of an expression back to its file, line and column.
public struct TextLocator: Sendable {
    public let file: String
    let fileBytes: [UInt8]
    let lineStarts: [Int]
    /// Where the scalar starts in the file, and its value.
    let start: Int
    let value: [UInt8]

    init(file: String, fileBytes: [UInt8], lineStarts: [Int], line: Int, column: Int, value: String) {
        self.file = file
        self.fileBytes = fileBytes
        self.lineStarts = lineStarts
        let ls = lineStarts.isEmpty ? 0 : lineStarts[min(max(line - 1, 0), lineStarts.count - 1)]
        start = min(ls + max(column - 1, 0), fileBytes.count)
        self.value = Array(value.utf8)
    }

    static func lineStarts(_ bytes: [UInt8]) -> [Int] {
        var out = [0]
        for (i, b) in bytes.enumerated() where b == 10 { out.append(i + 1) }
        return out
    }

    /// YAML folds and indents multi-line scalars, so the value's bytes are
    /// matched in order against the file from the scalar's start, skipping
    /// what folding changed (blanks) — exact for single-line scalars and
    /// for the non-blank bytes of block scalars.
    public func error(at offset: Int, _ reason: String) -> RuleError {
        var j = start
        var i = 0
        let target = min(max(offset, 0), value.count)
        while i <= target, i < value.count {
            let b = value[i]
            if b == 32 || b == 10 || b == 9 { i += 1; continue }
            var k = j
            while k < fileBytes.count, fileBytes[k] != b { k += 1 }
            if k == fileBytes.count { break }
            if i == target { j = k; break }
            j = k + 1
            i += 1
        }
        // Line and column of byte j.
        var lo = 0, hi = lineStarts.count - 1
        while lo < hi {
            let mid = (lo + hi + 1) / 2
            if lineStarts[mid] <= j { lo = mid } else { hi = mid - 1 }
        }
        let lineStart = lineStarts.isEmpty ? 0 : lineStarts[lo]
        let column = String(decoding: fileBytes[lineStart..<min(j, fileBytes.count)], as: UTF8.self).count + 1
        return RuleError(file: file, line: lo + 1, column: column, reason: reason)
    }
}

/// Compiles parsed conditions against the definitions: resolves macros and
/// lists, checks every field and literal's type, and computes the event
/// kinds a condition can match.
struct ConditionCompiler {
    let lists: [String: ListDefinition]
    let macros: [String: MacroDefinition]
    var expanding: [String] = []
    /// Some condition read `proc.exe_written`: only then does the lineage keep written paths.
    var usesExeWritten = false

    struct Compiled {
        let condition: Condition
        /// Event kinds the condition can be true for (a superset).
        let kinds: KindSet
    }

    mutating func compile(_ e: Expr, _ loc: TextLocator) throws(RuleError) -> Compiled {
        switch e {
        case .and(let a, let b):
            let x = try compile(a, loc), y = try compile(b, loc)
            let f = x.condition, g = y.condition
            return Compiled(condition: { f($0) && g($0) }, kinds: x.kinds.intersection(y.kinds))
        case .or(let a, let b):
            let x = try compile(a, loc), y = try compile(b, loc)
            let f = x.condition, g = y.condition
            return Compiled(condition: { f($0) || g($0) }, kinds: x.kinds.union(y.kinds))
        case .not(let a, _):
            let x = try compile(a, loc)
            let f = x.condition
            return Compiled(condition: { !f($0) }, kinds: .all)
        case .name(let name, let index, let at):
            if index == nil, let m = macros[name] {
                if expanding.contains(name) {
                    throw loc.error(at: at, "macro '\(name)' refers to itself (\((expanding + [name]).joined(separator: " -> ")))")
                }
                expanding.append(name)
                defer { expanding.removeLast() }
                return try compile(m.expr, m.locator)
            }
            if name == "proc.exe_written" { usesExeWritten = true }
            switch Fields.access(name, index: index) {
            case .success(.bool(let get)):
                return Compiled(condition: { get($0) == true }, kinds: .all)
            case .success(let access):
                throw loc.error(at: at, "field '\(name)' is a \(access.type.rawValue): compare it with an operator")
            case .failure:
                if name.contains(".") {
                    if case .failure(let p) = Fields.access(name, index: index) { throw loc.error(at: at, p.reason) }
                }
                throw loc.error(at: at, "unknown macro '\(name)'" + (macros.isEmpty ? "" : " (macros are defined with '- macro: NAME')"))
            }
        case .compare(let field, let index, let fieldAt, let op, let opAt, let operand):
            if field == "proc.exe_written" { usesExeWritten = true }
            let access: FieldAccess
            switch Fields.access(field, index: index) {
            case .success(let a): access = a
            case .failure(let p): throw loc.error(at: fieldAt, p.reason)
            }
            let items = try literals(operand, op: op, loc, opAt: opAt)
            if field == "evt.type" { return try compileKind(op: op, items: items, loc, opAt: opAt) }
            return Compiled(condition: try comparison(access, field: field, op: op, items: items, loc, opAt: opAt), kinds: .all)
        }
    }

    /// The operand's values, lists spliced in; `in` needs a list (or a list's name).
    func literals(_ operand: Operand, op: Operator, _ loc: TextLocator, opAt: Int) throws(RuleError) -> [Literal] {
        var out: [Literal] = []
        func splice(_ lit: Literal, depth: Int) throws(RuleError) {
            if !lit.quoted, let l = lists[lit.text] {
                guard depth < 8 else { throw loc.error(at: lit.at, "list '\(lit.text)' nests lists more than 8 deep") }
                for item in l.items { try splice(item, depth: depth + 1) }
            } else {
                out.append(lit)
            }
        }
        switch operand {
        case .single(let lit):
            if op == .in {
                guard !lit.quoted, lists[lit.text] != nil else { throw loc.error(at: lit.at, "'in' needs a list such as (a, b) or a list's name, found '\(lit.text)'") }
            } else if !lit.quoted, lists[lit.text] != nil, op != .eq, op != .ne {
                // A list after contains/startswith/...: any of its items.
            } else {
                out.append(lit)
                return out
            }
            try splice(lit, depth: 0)
        case .list(let items, let at):
            guard op == .in || op == .contains || op == .startswith || op == .endswith || op == .glob else {
                throw loc.error(at: at, "'\(op.rawValue)' takes one value, not a list")
            }
            for item in items { try splice(item, depth: 0) }
        }
        return out
    }

    func compileKind(op: Operator, items: [Literal], _ loc: TextLocator, opAt: Int) throws(RuleError) -> Compiled {
        var set = KindSet.none
        for lit in items {
            guard let k = SecurityEventKind.byName[lit.text] else {
                throw loc.error(at: lit.at, "unknown event type '\(lit.text)'; known: \(SecurityEventKind.allCases.map(\.name).joined(separator: ", "))")
            }
            set = set.union(KindSet([k]))
        }
        let bits = set.bits
        switch op {
        case .eq, .in: return Compiled(condition: { bits & (1 << UInt64($0.kind.rawValue)) != 0 }, kinds: set)
        case .ne: return Compiled(condition: { bits & (1 << UInt64($0.kind.rawValue)) == 0 }, kinds: set.complement)
        default: throw loc.error(at: opAt, "evt.type takes =, != or in, not '\(op.rawValue)'")
        }
    }

    func comparison(_ access: FieldAccess, field: String, op: Operator, items: [Literal], _ loc: TextLocator, opAt: Int) throws(RuleError) -> Condition {
        switch access {
        case .int(let get):
            var values: [Int64] = []
            for lit in items {
                guard let v = ConditionCompiler.integer(lit.text) else { throw loc.error(at: lit.at, "'\(field)' is a number; '\(lit.text)' is not") }
                values.append(v)
            }
            switch op {
            case .eq: let v = values[0]; return { get($0) == v }
            case .ne: let v = values[0]; return { get($0).map { $0 != v } ?? false }
            case .lt: let v = values[0]; return { get($0).map { $0 < v } ?? false }
            case .le: let v = values[0]; return { get($0).map { $0 <= v } ?? false }
            case .gt: let v = values[0]; return { get($0).map { $0 > v } ?? false }
            case .ge: let v = values[0]; return { get($0).map { $0 >= v } ?? false }
            case .in: return { i in get(i).map { values.contains($0) } ?? false }
            default: throw loc.error(at: opAt, "'\(op.rawValue)' compares strings; '\(field)' is a number")
            }
        case .bool(let get):
            guard op == .eq || op == .ne, items.count == 1, let v = ["true": true, "false": false][items[0].text] else {
                throw loc.error(at: opAt, "'\(field)' is a boolean: use it alone, with 'not', or '= true' / '= false'")
            }
            return op == .eq ? { get($0) == v } : { get($0).map { $0 != v } ?? false }
        case .string(let get):
            let match = try ConditionCompiler.matcher(op: op, items: items, field: field, loc, opAt: opAt)
            if op == .ne { return { i in get(i).map { !match($0) } ?? false } }
            return { i in get(i).map(match) ?? false }
        case .anyAncestor(let pick):
            let match = try ConditionCompiler.matcher(op: op, items: items, field: field, loc, opAt: opAt)
            let negate = op == .ne
            return { i in
                var e = i.proc?.parent
                var n = 0
                while let c = e, n < Fields.maxAncestors {
                    if match(pick(c)) != negate { return true }
                    e = c.parent
                    n += 1
                }
                return false
            }
        }
    }

    /// A byte matcher for a string operator and its values (`!=` gives the `=` matcher; the caller negates).
    static func matcher(op: Operator, items: [Literal], field: String, _ loc: TextLocator, opAt: Int) throws(RuleError) -> (UnsafeRawBufferPointer) -> Bool {
        let values = items.map { Array($0.text.utf8) }
        switch op {
        case .eq, .ne, .in:
            if values.count == 1 { let v = values[0]; return { ByteMatch.equal($0, v) } }
            return { s in values.contains { ByteMatch.equal(s, $0) } }
        case .contains: return { s in values.contains { ByteMatch.contains(s, $0) } }
        case .startswith: return { s in values.contains { ByteMatch.hasPrefix(s, $0) } }
        case .endswith: return { s in values.contains { ByteMatch.hasSuffix(s, $0) } }
        case .glob: return { s in values.contains { ByteMatch.glob(s, $0) } }
        case .lt, .le, .gt, .ge: throw loc.error(at: opAt, "'\(op.rawValue)' compares numbers; '\(field)' is a string")
        }
    }

    /// Decimal, 0x hex or 0o octal, optionally negative.
    static func integer(_ text: String) -> Int64? {
        var t = Substring(text)
        let negative = t.hasPrefix("-")
        if negative { t = t.dropFirst() }
        let v: Int64?
        if t.hasPrefix("0x") { v = Int64(t.dropFirst(2), radix: 16) } else if t.hasPrefix("0o") { v = Int64(t.dropFirst(2), radix: 8) } else { v = Int64(t) }
        return v.map { negative ? -$0 : $0 }
    }
}

/// Byte-string comparisons without allocation.
enum ByteMatch {
    static func equal(_ s: UnsafeRawBufferPointer, _ v: [UInt8]) -> Bool {
        guard s.count == v.count else { return false }
        return v.withUnsafeBytes { memcmpEqual(s, $0, count: v.count, at: 0) }
    }

    static func hasPrefix(_ s: UnsafeRawBufferPointer, _ v: [UInt8]) -> Bool {
        guard s.count >= v.count else { return false }
        return v.withUnsafeBytes { memcmpEqual(s, $0, count: v.count, at: 0) }
    }

    static func hasSuffix(_ s: UnsafeRawBufferPointer, _ v: [UInt8]) -> Bool {
        guard s.count >= v.count else { return false }
        return v.withUnsafeBytes { memcmpEqual(s, $0, count: v.count, at: s.count - v.count) }
    }

    static func contains(_ s: UnsafeRawBufferPointer, _ v: [UInt8]) -> Bool {
        guard v.count <= s.count else { return false }
        if v.isEmpty { return true }
        return v.withUnsafeBytes { p in
            let first = p[0]
            for i in 0...(s.count - v.count) where s[i] == first && memcmpEqual(s, p, count: v.count, at: i) { return true }
            return false
        }
    }

    @inline(__always)
    static func memcmpEqual(_ s: UnsafeRawBufferPointer, _ v: UnsafeRawBufferPointer, count: Int, at: Int) -> Bool {
        var i = 0
        while i < count {
            if s[at + i] != v[i] { return false }
            i += 1
        }
        return true
    }

    /// Shell-style `*` (any run, slashes included) and `?` (one byte); linear
    /// in practice, bounded by |s| * |pattern| comparisons.
    static func glob(_ s: UnsafeRawBufferPointer, _ p: [UInt8]) -> Bool {
        var si = 0, pi = 0, star = -1, mark = 0
        while si < s.count {
            if pi < p.count, p[pi] == 63 || p[pi] == s[si], p[pi] != 42 {
                si += 1; pi += 1
            } else if pi < p.count, p[pi] == 42 {
                star = pi; mark = si; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; si = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == 42 { pi += 1 }
        return pi == p.count
    }
}
