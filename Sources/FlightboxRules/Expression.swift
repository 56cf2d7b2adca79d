/// A problem in a rules file: where it is and why, as one line.
public struct RuleError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let line: Int
    public let column: Int
    public let reason: String

    public init(file: String, line: Int, column: Int, reason: String) {
        self.file = file
        self.line = line
        self.column = column
        self.reason = reason
    }

    public var description: String { "\(file):\(line):\(column): \(reason)" }
}

/// A comparison operator.
public enum Operator: String, CaseIterable, Sendable {
    case eq = "=", ne = "!=", lt = "<", le = "<=", gt = ">", ge = ">="
    case `in`, contains, startswith, endswith, glob

    static let words: [String: Operator] = ["in": .in, "contains": .contains, "startswith": .startswith, "endswith": .endswith, "glob": .glob]
}

/// A literal operand, with the offset of its first byte in the expression.
public struct Literal: Equatable, Sendable {
    public let text: String
    public let quoted: Bool
    public let at: Int
}

/// The right-hand side of a comparison.
public enum Operand: Equatable, Sendable {
    case single(Literal)
    /// `(a, b, c)`: items may name lists, which are spliced in.
    case list([Literal], at: Int)
}

/// A parsed condition. Offsets are UTF-8 byte offsets into its text.
public indirect enum Expr: Equatable, Sendable {
    case and(Expr, Expr)
    case or(Expr, Expr)
    case not(Expr, at: Int)
    /// A bare identifier: a macro, or a boolean field.
    case name(String, index: Int?, at: Int)
    case compare(field: String, index: Int?, fieldAt: Int, op: Operator, opAt: Int, operand: Operand)
}

/// Parses the condition language:
///
///     expr    := or
///     or      := and ("or" and)*
///     and     := unary ("and" unary)*
///     unary   := "not" unary | "(" expr ")" | NAME [op operand]
///     op      := = | == | != | < | <= | > | >= | in | contains | startswith | endswith | glob
///     operand := STRING | WORD | "(" [operand-item ("," operand-item)*] ")"
///
/// NAME is a field (`proc.aname[2]`) or a macro. Words are bare values up to
/// a blank, a comma or a parenthesis; strings are in single or double quotes
/// with `\\` escaping the quote and the backslash. Nesting is bounded.
public struct ExpressionParser {
    let bytes: [UInt8]
    var pos = 0
    var depth = 0
    public static let maxDepth = 64

    public struct Failure: Error, Equatable {
        public let offset: Int
        public let reason: String
    }

    public static func parse(_ text: String) -> Result<Expr, Failure> {
        var p = ExpressionParser(bytes: Array(text.utf8))
        do {
            p.skipBlanks()
            guard p.pos < p.bytes.count else { throw Failure(offset: 0, reason: "empty condition") }
            let e = try p.parseOr()
            p.skipBlanks()
            if p.pos < p.bytes.count { throw Failure(offset: p.pos, reason: "unexpected '\(p.peekToken())'; expected 'and', 'or' or the end") }
            return .success(e)
        } catch let f as Failure {
            return .failure(f)
        } catch {
            return .failure(Failure(offset: 0, reason: "\(error)"))
        }
    }

    mutating func skipBlanks() {
        while pos < bytes.count, bytes[pos] == 32 || bytes[pos] == 9 || bytes[pos] == 10 || bytes[pos] == 13 { pos += 1 }
    }

    static func isNameByte(_ b: UInt8) -> Bool {
        (b >= 97 && b <= 122) || (b >= 65 && b <= 90) || (b >= 48 && b <= 57) || b == 95 || b == 46
    }

    static func isWordByte(_ b: UInt8) -> Bool {
        !(b == 32 || b == 9 || b == 10 || b == 13 || b == 40 || b == 41 || b == 44 || b == 39 || b == 34)
    }

    func peekToken() -> String {
        var end = pos
        while end < bytes.count, ExpressionParser.isWordByte(bytes[end]) { end += 1 }
        if end == pos { end = min(pos + 1, bytes.count) }
        return String(decoding: bytes[pos..<end], as: UTF8.self)
    }

    /// The keyword at pos (a whole word), without consuming it.
    func atKeyword(_ k: String) -> Bool {
        let kb = Array(k.utf8)
        guard pos + kb.count <= bytes.count, Array(bytes[pos..<pos + kb.count]) == kb else { return false }
        return pos + kb.count == bytes.count || !ExpressionParser.isNameByte(bytes[pos + kb.count])
    }

    mutating func parseOr() throws -> Expr {
        var e = try parseAnd()
        while true {
            skipBlanks()
            guard atKeyword("or") else { return e }
            pos += 2
            e = .or(e, try parseAnd())
        }
    }

    mutating func parseAnd() throws -> Expr {
        var e = try parseUnary()
        while true {
            skipBlanks()
            guard atKeyword("and") else { return e }
            pos += 3
            e = .and(e, try parseUnary())
        }
    }

    mutating func parseUnary() throws -> Expr {
        depth += 1
        defer { depth -= 1 }
        if depth > ExpressionParser.maxDepth { throw Failure(offset: pos, reason: "expression nested deeper than \(ExpressionParser.maxDepth)") }
        skipBlanks()
        guard pos < bytes.count else { throw Failure(offset: pos, reason: "unexpected end; expected a field, a macro, 'not' or '('") }
        let start = pos
        if atKeyword("not") {
            pos += 3
            return .not(try parseUnary(), at: start)
        }
        if bytes[pos] == 40 {
            pos += 1
            let e = try parseOr()
            skipBlanks()
            guard pos < bytes.count, bytes[pos] == 41 else { throw Failure(offset: pos, reason: "expected ')' to close the '(' at offset \(start)") }
            pos += 1
            return e
        }
        guard ExpressionParser.isNameByte(bytes[pos]), !(bytes[pos] >= 48 && bytes[pos] <= 57) else {
            throw Failure(offset: pos, reason: "unexpected '\(peekToken())'; expected a field, a macro, 'not' or '('")
        }
        while pos < bytes.count, ExpressionParser.isNameByte(bytes[pos]) { pos += 1 }
        let name = String(decoding: bytes[start..<pos], as: UTF8.self)
        for k in ["and", "or", "in", "contains", "startswith", "endswith", "glob"] where name == k {
            throw Failure(offset: start, reason: "'\(k)' needs a field before it")
        }
        var index: Int?
        if pos < bytes.count, bytes[pos] == 91 { // [N]
            let open = pos
            pos += 1
            var n = 0, digits = 0
            while pos < bytes.count, bytes[pos] >= 48, bytes[pos] <= 57, digits < 6 { n = n * 10 + Int(bytes[pos] - 48); pos += 1; digits += 1 }
            guard digits > 0, pos < bytes.count, bytes[pos] == 93 else { throw Failure(offset: open, reason: "expected an index such as [2] after '\(name)'") }
            pos += 1
            index = n
        }
        skipBlanks()
        let opAt = pos
        guard let op = parseOperator() else { return .name(name, index: index, at: start) }
        skipBlanks()
        let operand = try parseOperand(after: op)
        return .compare(field: name, index: index, fieldAt: start, op: op, opAt: opAt, operand: operand)
    }

    mutating func parseOperator() -> Operator? {
        guard pos < bytes.count else { return nil }
        let b = bytes[pos], next = pos + 1 < bytes.count ? bytes[pos + 1] : 0
        switch b {
        case 61: pos += next == 61 ? 2 : 1; return .eq
        case 33 where next == 61: pos += 2; return .ne
        case 60: if next == 61 { pos += 2; return .le }; pos += 1; return .lt
        case 62: if next == 61 { pos += 2; return .ge }; pos += 1; return .gt
        default:
            for (w, op) in Operator.words.sorted(by: { $0.key < $1.key }) where atKeyword(w) {
                pos += w.utf8.count
                return op
            }
            return nil
        }
    }

    mutating func parseOperand(after op: Operator) throws -> Operand {
        guard pos < bytes.count else { throw Failure(offset: pos, reason: "expected a value after '\(op.rawValue)'") }
        if bytes[pos] == 40 {
            let open = pos
            pos += 1
            var items: [Literal] = []
            skipBlanks()
            if pos < bytes.count, bytes[pos] == 41 { pos += 1; return .list([], at: open) }
            while true {
                skipBlanks()
                items.append(try parseLiteral())
                skipBlanks()
                guard pos < bytes.count else { throw Failure(offset: open, reason: "list not closed with ')'") }
                if bytes[pos] == 44 { pos += 1; continue }
                if bytes[pos] == 41 { pos += 1; return .list(items, at: open) }
                throw Failure(offset: pos, reason: "expected ',' or ')' in the list, found '\(peekToken())'")
            }
        }
        return .single(try parseLiteral())
    }

    mutating func parseLiteral() throws -> Literal {
        guard pos < bytes.count else { throw Failure(offset: pos, reason: "expected a value") }
        let start = pos
        let q = bytes[pos]
        if q == 39 || q == 34 {
            pos += 1
            var out: [UInt8] = []
            while pos < bytes.count, bytes[pos] != q {
                if bytes[pos] == 92, pos + 1 < bytes.count, bytes[pos + 1] == q || bytes[pos + 1] == 92 { pos += 1 }
                out.append(bytes[pos])
                pos += 1
            }
            guard pos < bytes.count else { throw Failure(offset: start, reason: "string not closed") }
            pos += 1
            return Literal(text: String(decoding: out, as: UTF8.self), quoted: true, at: start)
        }
        while pos < bytes.count, ExpressionParser.isWordByte(bytes[pos]) { pos += 1 }
        guard pos > start else { throw Failure(offset: pos, reason: "expected a value, found '\(peekToken())'") }
        return Literal(text: String(decoding: bytes[start..<pos], as: UTF8.self), quoted: false, at: start)
    }
}
