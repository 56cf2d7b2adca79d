/// An `Encoder` whose JSON is the same bytes for the same state: object keys
/// sorted, and dictionaries and sets (whose iteration order is the hash
/// seed's, different in every process) in the order of their keys. What it
/// writes is what `JSONEncoder` would, ordered, so `JSONDecoder` reads it:
/// a dictionary keyed by String or Int is an object, any other a flat array
/// `[key, value, key, value, …]`; non-finite numbers are the strings "inf",
/// "-inf" and "nan". A detector's state needs nothing for this but keys
/// that are `Comparable` (a dictionary or set of others keeps hash order).
enum CanonicalJSON {
    static func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(1 << 16)
        try Node.make(value, path: []).write(into: &out)
        return out
    }
}

/// A value written as a JSON scalar.
protocol CanonicalScalar {
    var node: Node { get }
}

extension String: CanonicalScalar { var node: Node { .string(self) } }
extension Bool: CanonicalScalar { var node: Node { .bool(self) } }
extension Double: CanonicalScalar { var node: Node { .double(self) } }
extension Float: CanonicalScalar { var node: Node { .double(Double(self)) } }
extension Int: CanonicalScalar { var node: Node { .int(Int64(self)) } }
extension Int8: CanonicalScalar { var node: Node { .int(Int64(self)) } }
extension Int16: CanonicalScalar { var node: Node { .int(Int64(self)) } }
extension Int32: CanonicalScalar { var node: Node { .int(Int64(self)) } }
extension Int64: CanonicalScalar { var node: Node { .int(self) } }
extension UInt: CanonicalScalar { var node: Node { .uint(UInt64(self)) } }
extension UInt8: CanonicalScalar { var node: Node { .uint(UInt64(self)) } }
extension UInt16: CanonicalScalar { var node: Node { .uint(UInt64(self)) } }
extension UInt32: CanonicalScalar { var node: Node { .uint(UInt64(self)) } }
extension UInt64: CanonicalScalar { var node: Node { .uint(self) } }

/// A dictionary or set written in key order.
protocol CanonicallyOrdered {
    func canonicalNode(path: [any CodingKey]) throws -> Node
}

extension Dictionary: CanonicallyOrdered where Key: Encodable & Comparable, Value: Encodable {
    func canonicalNode(path: [any CodingKey]) throws -> Node {
        let sorted = self.sorted { $0.key < $1.key }
        if Key.self == String.self || Key.self == Int.self {
            let object = ObjectBox()
            for (k, v) in sorted { object.fields.append(("\(k)", try Node.make(v, path: path))) }
            return .object(object)
        }
        let array = ArrayBox()
        for (k, v) in sorted {
            array.items.append(try Node.make(k, path: path))
            array.items.append(try Node.make(v, path: path))
        }
        return .array(array)
    }
}

extension Set: CanonicallyOrdered where Element: Encodable & Comparable {
    func canonicalNode(path: [any CodingKey]) throws -> Node {
        let array = ArrayBox()
        for e in sorted() { array.items.append(try Node.make(e, path: path)) }
        return .array(array)
    }
}

/// An object's fields as encoded: keys are unique within a container (a
/// repeated one is written once, its last value), sorted when written.
final class ObjectBox { var fields: [(key: String, node: Node)] = [] }
final class ArrayBox {
    var items: [Node]
    init(_ items: [Node] = []) { self.items = items }
}

/// A JSON value being built; containers are boxes, filled in place.
enum Node {
    case null
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case double(Double)
    case string(String)
    case object(ObjectBox)
    case array(ArrayBox)

    static func make<T: Encodable>(_ value: T, path: [any CodingKey]) throws -> Node {
        // The types of nearly every value first, by metatype (no conformance
        // lookup); histograms are arrays of integers.
        if T.self == UInt64.self { return .uint(unsafeBitCast(value, to: UInt64.self)) }
        if T.self == UInt32.self { return .uint(UInt64(unsafeBitCast(value, to: UInt32.self))) }
        if T.self == String.self { return .string(unsafeBitCast(value, to: String.self)) }
        if T.self == [UInt32].self { return .array(ArrayBox(unsafeBitCast(value, to: [UInt32].self).map { .uint(UInt64($0)) })) }
        if T.self == [UInt64].self { return .array(ArrayBox(unsafeBitCast(value, to: [UInt64].self).map { .uint($0) })) }
        if let v = value as? any CanonicalScalar { return v.node }
        if let v = value as? any CanonicallyOrdered { return try v.canonicalNode(path: path) }
        let e = NodeEncoder(path: path)
        try value.encode(to: e)
        // A value that encodes nothing is an empty object, as with JSONEncoder.
        return e.node ?? .object(ObjectBox())
    }

    func write(into out: inout [UInt8]) throws {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let b): out.append(contentsOf: (b ? "true" : "false").utf8)
        case .int(let v): out.append(contentsOf: String(v).utf8)
        case .uint(let v): out.append(contentsOf: String(v).utf8)
        case .double(let d):
            if d.isNaN { Node.string("nan").writeString(into: &out) }
            else if d.isInfinite { Node.string(d < 0 ? "-inf" : "inf").writeString(into: &out) }
            // Swift's shortest representation that reads back exactly.
            else { out.append(contentsOf: "\(d)".utf8) }
        case .string: writeString(into: &out)
        case .object(let o):
            out.append(UInt8(ascii: "{"))
            // Stable: of a repeated key, the last value is kept.
            let sorted = o.fields.enumerated().sorted { ($0.element.key, $0.offset) < ($1.element.key, $1.offset) }.map(\.element)
            var first = true
            for (i, f) in sorted.enumerated() where i + 1 == sorted.count || sorted[i + 1].key != f.key {
                if !first { out.append(UInt8(ascii: ",")) }
                first = false
                Node.string(f.key).writeString(into: &out)
                out.append(UInt8(ascii: ":"))
                try f.node.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        case .array(let a):
            out.append(UInt8(ascii: "["))
            for (i, n) in a.items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                try n.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
    }

    private func writeString(into out: inout [UInt8]) {
        guard case .string(let s) = self else { return }
        out.append(UInt8(ascii: "\""))
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "\""): out += [UInt8(ascii: "\\"), UInt8(ascii: "\"")]
            case UInt8(ascii: "\\"): out += [UInt8(ascii: "\\"), UInt8(ascii: "\\")]
            case 0..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                out.append(contentsOf: "\\u00".utf8)
                out += [hex[Int(b >> 4)], hex[Int(b & 15)]]
            default: out.append(b)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}

/// Encodes one value into a `Node`.
final class NodeEncoder: Encoder {
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    var node: Node?

    init(path: [any CodingKey]) { codingPath = path }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let box: ObjectBox
        if case .object(let b)? = node { box = b } else { box = ObjectBox(); node = .object(box) }
        return KeyedEncodingContainer(Keyed<Key>(box: box, codingPath: codingPath))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let box: ArrayBox
        if case .array(let b)? = node { box = b } else { box = ArrayBox(); node = .array(box) }
        return Unkeyed(box: box, codingPath: codingPath)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { Single(encoder: self) }

    struct Keyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let box: ObjectBox
        let codingPath: [any CodingKey]

        mutating func encodeNil(forKey key: Key) throws { box.fields.append((key.stringValue, .null)) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            box.fields.append((key.stringValue, try Node.make(value, path: codingPath + [key])))
        }
        mutating func nestedContainer<N: CodingKey>(keyedBy keyType: N.Type, forKey key: Key) -> KeyedEncodingContainer<N> {
            let inner = ObjectBox()
            box.fields.append((key.stringValue, .object(inner)))
            return KeyedEncodingContainer(Keyed<N>(box: inner, codingPath: codingPath + [key]))
        }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            let inner = ArrayBox()
            box.fields.append((key.stringValue, .array(inner)))
            return Unkeyed(box: inner, codingPath: codingPath + [key])
        }
        mutating func superEncoder() -> any Encoder { SuperEncoder(codingPath: codingPath) { [box] in box.fields.append(("super", $0)) } }
        mutating func superEncoder(forKey key: Key) -> any Encoder { SuperEncoder(codingPath: codingPath + [key]) { [box] in box.fields.append((key.stringValue, $0)) } }
    }

    struct Unkeyed: UnkeyedEncodingContainer {
        let box: ArrayBox
        let codingPath: [any CodingKey]
        var count: Int { box.items.count }

        mutating func encodeNil() throws { box.items.append(.null) }
        mutating func encode<T: Encodable>(_ value: T) throws { box.items.append(try Node.make(value, path: codingPath)) }
        mutating func nestedContainer<N: CodingKey>(keyedBy keyType: N.Type) -> KeyedEncodingContainer<N> {
            let inner = ObjectBox()
            box.items.append(.object(inner))
            return KeyedEncodingContainer(Keyed<N>(box: inner, codingPath: codingPath))
        }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
            let inner = ArrayBox()
            box.items.append(.array(inner))
            return Unkeyed(box: inner, codingPath: codingPath)
        }
        mutating func superEncoder() -> any Encoder {
            let i = box.items.count
            box.items.append(.null)
            return SuperEncoder(codingPath: codingPath) { [box] in box.items[i] = $0 }
        }
    }

    struct Single: SingleValueEncodingContainer {
        let encoder: NodeEncoder
        var codingPath: [any CodingKey] { encoder.codingPath }
        mutating func encodeNil() throws { encoder.node = .null }
        mutating func encode<T: Encodable>(_ value: T) throws { encoder.node = try Node.make(value, path: codingPath) }
    }

    /// For classes that encode their superclass apart (none of ours does).
    final class SuperEncoder: Encoder {
        let codingPath: [any CodingKey]
        var userInfo: [CodingUserInfoKey: Any] { [:] }
        private let inner: NodeEncoder
        private let store: (Node) -> Void

        init(codingPath: [any CodingKey], store: @escaping (Node) -> Void) {
            self.codingPath = codingPath
            inner = NodeEncoder(path: codingPath)
            self.store = store
        }

        deinit { store(inner.node ?? .object(ObjectBox())) }

        func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> { inner.container(keyedBy: type) }
        func unkeyedContainer() -> any UnkeyedEncodingContainer { inner.unkeyedContainer() }
        func singleValueContainer() -> any SingleValueEncodingContainer { inner.singleValueContainer() }
    }
}
