/// A JSON value whose objects keep their keys in the order given, so output is
/// byte-stable (findings, `events --format json`, metadata).
public indirect enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case array([JSON])
    case object([(String, JSON)])

    /// Equal when they serialize to the same bytes (so `.int(5) == .uint(5)`),
    /// compared structurally: readers compare whole schemas on every open.
    public static func == (a: JSON, b: JSON) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0 == $1 }
        case (.object(let x), .object(let y)): return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case (.int(let x), .int(let y)): return x == y
        case (.uint(let x), .uint(let y)): return x == y
        case (.int, _), (.uint, _), (.double, _): return a.isNumber && b.isNumber && a.serialized() == b.serialized()
        default: return false
        }
    }

    var isNumber: Bool {
        switch self { case .int, .uint, .double: true; default: false }
    }

    /// Compact serialization, keys in insertion order.
    public func serialized() -> String {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    public func write(to out: inout String) { out += serialized() }

    /// Appends the compact serialization as UTF-8: output paths (millions of
    /// events) write bytes, with no intermediate String per value.
    public func write(into out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: JSON.nullBytes)
        case .bool(let b): out.append(contentsOf: b ? JSON.trueBytes : JSON.falseBytes)
        case .int(let i):
            if i < 0 { out.append(UInt8(ascii: "-")) }
            JSON.appendDecimal(i.magnitude, into: &out)
        case .uint(let u): JSON.appendDecimal(u, into: &out)
        case .double(let d):
            if d.isFinite {
                // Fixed precision keeps the output independent of float printing quirks.
                if d == d.rounded(), abs(d) < 1e15 {
                    JSON.int(Int64(d)).write(into: &out)
                } else {
                    out.append(contentsOf: String(format3: d).utf8)
                }
            } else { out.append(contentsOf: JSON.nullBytes) }
        case .string(let s): JSON.escape(s, into: &out)
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, v) in a.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                v.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let kv):
            out.append(UInt8(ascii: "{"))
            for (i, (k, v)) in kv.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSON.escape(k, into: &out)
                out.append(UInt8(ascii: ":"))
                v.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static let nullBytes = Array("null".utf8), trueBytes = Array("true".utf8), falseBytes = Array("false".utf8)

    static func appendDecimal(_ v: UInt64, into out: inout [UInt8]) {
        if v < 10 { out.append(UInt8(truncatingIfNeeded: v) &+ 48); return }
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0) // 24 bytes: room for 20 digits
        var n = 0
        var x = v
        withUnsafeMutableBytes(of: &digits) { buf in
            while x > 0 {
                buf[23 - n] = UInt8(truncatingIfNeeded: x % 10) &+ 48
                x /= 10
                n += 1
            }
            out.append(contentsOf: buf[(24 - n)...])
        }
    }

    static func appendInt(_ v: Int64, into out: inout [UInt8]) {
        if v < 0 { out.append(UInt8(ascii: "-")) }
        appendDecimal(v.magnitude, into: &out)
    }

    /// Lower-case hex, two digits a byte, quoted (as `hexString`).
    static func appendHex(_ p: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for b in p {
            let hi = b >> 4, lo = b & 15
            out.append(hi < 10 ? 48 + hi : 87 + hi)
            out.append(lo < 10 ? 48 + lo : 87 + lo)
        }
        out.append(UInt8(ascii: "\""))
    }

    static func escape(_ s: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        var s = s
        s.withUTF8 { u in
            var start = 0
            for (i, b) in u.enumerated() where b < 0x20 || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") {
                out.append(contentsOf: UnsafeBufferPointer(rebasing: u[start..<i]))
                switch b {
                case UInt8(ascii: "\""): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
                case UInt8(ascii: "\\"): out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
                case 0x0a: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
                case 0x0d: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "r")])
                case 0x09: out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "t")])
                default:
                    let hex = Array("0123456789abcdef".utf8)
                    out.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "u"), 48, 48, hex[Int(b >> 4)], hex[Int(b & 15)]])
                }
                start = i + 1
            }
            out.append(contentsOf: UnsafeBufferPointer(rebasing: u[start...]))
        }
        out.append(UInt8(ascii: "\""))
    }

    public subscript(key: String) -> JSON? {
        if case .object(let kv) = self { return kv.first(where: { $0.0 == key })?.1 }
        return nil
    }
}

extension String {
    /// Three decimals, no locale. Values too large for three decimals to mean
    /// anything (|d| >= 1e15, or hostile input such as -1e300) print in Swift's
    /// shortest round-trip form ("1e+300"), which is deterministic and valid
    /// JSON; non-finite values print as "null" would in JSON, spelled out.
    public init(format3 d: Double) {
        guard d.isFinite else {
            self = d.isNaN ? "nan" : (d < 0 ? "-inf" : "inf")
            return
        }
        guard abs(d) < 1e15 else {
            self = d.description
            return
        }
        let scaled = (d * 1000).rounded()
        let neg = scaled < 0
        let m = Int64(abs(scaled))
        let frac = m % 1000
        let f = String(frac)
        self = (neg ? "-" : "") + String(m / 1000) + "." + String(repeating: "0", count: 3 - f.count) + f
    }
}

/// Minimal JSON parser for the project's own files (metadata, snapshots, findings).
public struct JSONParser {
    public enum Failure: Error, CustomStringConvertible {
        case invalid(offset: Int, reason: String)
        public var description: String {
            switch self { case .invalid(let o, let r): "invalid JSON at byte \(o): \(r)" }
        }
    }

    let bytes: [UInt8]
    var i = 0
    var depth = 0

    public static func parse(_ text: String) throws -> JSON { try parse(Array(text.utf8)) }

    public static func parse(_ bytes: [UInt8]) throws -> JSON {
        var p = JSONParser(bytes: bytes)
        let v = try p.value()
        p.skipSpace()
        guard p.i == bytes.count else { throw Failure.invalid(offset: p.i, reason: "trailing data") }
        return v
    }

    mutating func skipSpace() {
        while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x0a || bytes[i] == 0x0d || bytes[i] == 0x09 { i += 1 }
    }

    func fail(_ r: String) -> Failure { .invalid(offset: i, reason: r) }

    mutating func value() throws -> JSON {
        skipSpace()
        guard i < bytes.count else { throw fail("unexpected end") }
        switch bytes[i] {
        case UInt8(ascii: "{"):
            depth += 1
            guard depth < 64 else { throw fail("nested too deeply") }
            defer { depth -= 1 }
            i += 1
            var kv: [(String, JSON)] = []
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "}") { i += 1; return .object(kv) }
            while true {
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: "\"") else { throw fail("expected key") }
                let k = try string()
                skipSpace()
                guard i < bytes.count, bytes[i] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                i += 1
                kv.append((k, try value()))
                skipSpace()
                guard i < bytes.count else { throw fail("unexpected end") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "}") { i += 1; return .object(kv) }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            depth += 1
            guard depth < 64 else { throw fail("nested too deeply") }
            defer { depth -= 1 }
            i += 1
            var a: [JSON] = []
            skipSpace()
            if i < bytes.count, bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
            while true {
                a.append(try value())
                skipSpace()
                guard i < bytes.count else { throw fail("unexpected end") }
                if bytes[i] == UInt8(ascii: ",") { i += 1; continue }
                if bytes[i] == UInt8(ascii: "]") { i += 1; return .array(a) }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        default:
            return try number()
        }
    }

    mutating func literal(_ s: String) throws {
        let u = Array(s.utf8)
        guard i + u.count <= bytes.count, Array(bytes[i..<(i + u.count)]) == u else { throw fail("bad literal") }
        i += u.count
    }

    mutating func number() throws -> JSON {
        let start = i
        while i < bytes.count, let c = Optional(bytes[i]), (c >= 0x30 && c <= 0x39) || c == 0x2d || c == 0x2b || c == 0x2e || c == 0x65 || c == 0x45 { i += 1 }
        let s = String(decoding: bytes[start..<i], as: UTF8.self)
        if let v = Int64(s) { return .int(v) }
        if let v = UInt64(s) { return .uint(v) }
        if let v = Double(s) { return .double(v) }
        throw Failure.invalid(offset: start, reason: "bad number")
    }

    mutating func string() throws -> String {
        i += 1
        var out = [UInt8]()
        while i < bytes.count {
            let c = bytes[i]
            if c == UInt8(ascii: "\"") { i += 1; return String(decoding: out, as: UTF8.self) }
            if c == UInt8(ascii: "\\") {
                i += 1
                guard i < bytes.count else { break }
                switch bytes[i] {
                case UInt8(ascii: "n"): out.append(0x0a)
                case UInt8(ascii: "r"): out.append(0x0d)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0c)
                case UInt8(ascii: "u"):
                    guard i + 4 < bytes.count, let v = UInt32(String(decoding: bytes[(i + 1)...(i + 4)], as: UTF8.self), radix: 16) else { throw fail("bad escape") }
                    i += 4
                    out += Array(String(Unicode.Scalar(v).map(Character.init) ?? "\u{FFFD}").utf8)
                default: out.append(bytes[i])
                }
                i += 1
                continue
            }
            out.append(c)
            i += 1
        }
        throw fail("unterminated string")
    }
}

extension JSON {
    public var stringValue: String? { if case .string(let s) = self { return s }; return nil }
    public var intValue: Int64? {
        switch self {
        case .int(let i): return i
        case .uint(let u): return u <= UInt64(Int64.max) ? Int64(u) : nil
        case .double(let d): return Int64(exactly: d)
        default: return nil
        }
    }
    public var uintValue: UInt64? {
        switch self {
        case .int(let i): return i >= 0 ? UInt64(i) : nil
        case .uint(let u): return u
        default: return nil
        }
    }
    public var arrayValue: [JSON]? { if case .array(let a) = self { return a }; return nil }
}
