/// A field of the schema: where it lies in the fixed part and what it holds.
public struct FieldDescriptor: Sendable, Equatable {
    public var name: String
    /// `u64`, `s32`, `char[16]`, `u64[3]`, `u8[16]`, ...
    public var kind: String
    public var offset: Int
    public var size: Int
}

/// An event type of the schema (generated from bpf/events.h).
public struct TypeDescriptor: Sendable {
    public var id: UInt16
    public var name: String
    public var fixedSize: Int
    public var fields: [FieldDescriptor]
    /// Variable parts in order: (name, its u16 length field, kind).
    public var trailing: [(name: String, lengthField: String, kind: String)]
}

/// The self-description of every event type, written into each trace's
/// metadata so a reader can decode a trace whose structs differ from its own.
/// Everything in it is generated from bpf/events.h (Generated/EventRecords.swift).
public enum EventSchema {
    /// The schema as JSON: header fields, then one entry per type.
    public static let json: JSON = make()

    static func fieldJSON(_ f: FieldDescriptor) -> JSON {
        .object([("name", .string(f.name)), ("kind", .string(f.kind)), ("offset", .int(Int64(f.offset))), ("size", .int(Int64(f.size)))])
    }

    static func make() -> JSON {
        let types: [JSON] = typeDescriptors.map { t in
            var kv: [(String, JSON)] = [("id", .int(Int64(t.id))), ("name", .string(t.name)), ("fixed_size", .int(Int64(t.fixedSize))),
                                        ("fields", .array(t.fields.map(fieldJSON)))]
            if !t.trailing.isEmpty {
                kv.append(("trailing", .array(t.trailing.map {
                    .object([("name", .string($0.name)), ("length_field", .string($0.lengthField)), ("kind", .string($0.kind))])
                })))
            }
            return .object(kv)
        }
        return .object([("header", .array(headerFields.map(fieldJSON))), ("types", .array(types)), ("syscall_table", .string(SyscallArch.host.rawValue))])
    }

    /// The schema with another syscall numbering named (a copy of a trace
    /// recorded elsewhere keeps its numbering).
    public static func json(syscallTable arch: SyscallArch) -> JSON {
        guard case .object(var kv) = json, let i = kv.firstIndex(where: { $0.0 == "syscall_table" }) else { return json }
        kv[i].1 = .string(arch.rawValue)
        return .object(kv)
    }

    /// A field's current name for a name it had in an older trace's schema.
    public static func currentName(type: UInt16, field: String) -> String {
        renamedFields[type]?[field] ?? field
    }
}
