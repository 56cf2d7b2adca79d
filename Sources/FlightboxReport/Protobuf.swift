import FlightboxEvents

/// A protocol-buffers encoder for the few messages `PerfettoExport` writes.
///
/// Written by hand rather than generated with swift-protobuf: the export only
/// writes, it uses about thirty fields of six messages, and the wire format
/// of those (varints, length-delimited bytes, 64-bit doubles) is a page of
/// code; a generated module and its runtime would add a package and minutes
/// of build time to a tool that never reads protobuf. Field numbers are
/// Perfetto's (protos/perfetto/trace/, named next to each use); the tests
/// read the output back with Perfetto's own generated Python classes.
struct ProtoWriter {
    private(set) var bytes: [UInt8] = []

    init() {}

    mutating func varint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func tag(_ field: UInt32, _ wire: UInt32) { varint(UInt64(field << 3 | wire)) }

    mutating func uint(_ field: UInt32, _ v: UInt64) {
        tag(field, 0)
        varint(v)
    }

    /// int32/int64 fields: two's complement as a 64-bit varint (not zigzag).
    mutating func int(_ field: UInt32, _ v: Int64) { uint(field, UInt64(bitPattern: v)) }

    mutating func bool(_ field: UInt32, _ v: Bool) { uint(field, v ? 1 : 0) }

    mutating func double(_ field: UInt32, _ v: Double) {
        tag(field, 1)
        withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func string(_ field: UInt32, _ s: String) {
        tag(field, 2)
        varint(UInt64(s.utf8.count))
        bytes.append(contentsOf: s.utf8)
    }

    mutating func bytes(_ field: UInt32, _ b: [UInt8]) {
        tag(field, 2)
        varint(UInt64(b.count))
        bytes.append(contentsOf: b)
    }

    /// A nested message, built by `body`.
    mutating func message(_ field: UInt32, _ body: (inout ProtoWriter) -> Void) {
        var inner = ProtoWriter()
        body(&inner)
        bytes(field, inner.bytes)
    }
}

/// Perfetto's DebugAnnotation (protos/perfetto/trace/track_event/debug_annotation.proto):
/// name 10, bool_value 2, uint_value 3, int_value 4, double_value 5,
/// string_value 6, dict_entries 11, array_values 12.
enum DebugAnnotation {
    static func write(_ w: inout ProtoWriter, name: String?, value: JSON) {
        if let name { w.string(10, name) }
        switch value {
        case .null: w.string(6, "null")
        case .bool(let b): w.bool(2, b)
        case .int(let i): w.int(4, i)
        case .uint(let u): w.uint(3, u)
        case .double(let d): w.double(5, d)
        case .string(let s): w.string(6, s)
        case .array(let a):
            // An empty array is still a value: without entries Perfetto shows nothing, so say "[]".
            if a.isEmpty { w.string(6, "[]") }
            for v in a { w.message(12) { write(&$0, name: nil, value: v) } }
        case .object(let kv):
            if kv.isEmpty { w.string(6, "{}") }
            for (k, v) in kv { w.message(11) { write(&$0, name: k, value: v) } }
        }
    }
}
