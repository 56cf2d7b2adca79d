import FlightboxEvents

/// Maps records written under another schema (an older or newer Flightbox)
/// onto this build's layout, field by name, so every reader downstream sees
/// the current structs. Fields this build does not know are dropped; fields
/// the file lacks read as zero; a field whose size changed reads as zero.
/// Variable-length data after the fixed part moves with it.
struct SchemaAdapter {
    struct Copy {
        let from: Int
        let to: Int
        let size: Int
    }

    struct Plan {
        let fileFixed: Int
        let currentFixed: Int
        let copies: [Copy]
    }

    /// By type id; types not in here (unchanged or unknown) pass through.
    private var plans: [UInt16: Plan] = [:]

    /// A field is known by its part (the common header, or the type's own
    /// fields) and its name: the header's `flags` and a record's own `flags`
    /// are different fields.
    enum Part: Hashable { case header, type }
    struct Key: Hashable {
        let part: Part
        let name: String
    }

    /// nil when the file's schema is this build's: nothing to adapt.
    init?(fileSchema: JSON) {
        let current = EventSchema.json
        guard fileSchema != .null, fileSchema != current else { return nil }
        func fields(_ list: JSON?, _ part: Part, type: UInt16) -> [Key: (offset: Int, size: Int)] {
            var out: [Key: (Int, Int)] = [:]
            for f in list?.arrayValue ?? [] {
                guard let n = f["name"]?.stringValue, let o = f["offset"]?.intValue, let s = f["size"]?.intValue,
                      o >= 0, s > 0, o <= 65535, s <= 65535 else { continue }
                // A field renamed since the file was written is read under its new name.
                let name = part == .type ? EventSchema.currentName(type: type, field: n) : n
                out[Key(part: part, name: name)] = (Int(o), Int(s))
            }
            return out
        }
        let currentTypes = current["types"]?.arrayValue ?? []
        for t in fileSchema["types"]?.arrayValue ?? [] {
            guard let id = t["id"]?.intValue, let type = EventType(rawValue: UInt16(truncatingIfNeeded: id)),
                  let fileFixed = t["fixed_size"]?.intValue, fileFixed >= TraceLayout.minimumRecord, fileFixed <= 65535,
                  let cur = currentTypes.first(where: { $0["id"]?.intValue == id }) else { continue }
            let fileHeader = fields(fileSchema["header"], .header, type: type.rawValue)
            let currentHeader = fields(current["header"], .header, type: type.rawValue)
            if t == cur, fileSchema["header"] == current["header"] { continue }
            var copies: [Copy] = []
            let f = fileHeader.merging(fields(t["fields"], .type, type: type.rawValue)) { a, _ in a }
            let c = currentHeader.merging(fields(cur["fields"], .type, type: type.rawValue)) { a, _ in a }
            for (key, dst) in c.sorted(by: { $0.value.offset < $1.value.offset }) {
                guard let src = f[key], src.size == dst.size, src.offset + src.size <= Int(fileFixed) else { continue }
                copies.append(Copy(from: src.offset, to: dst.offset, size: dst.size))
            }
            plans[type.rawValue] = Plan(fileFixed: Int(fileFixed), currentFixed: type.fixedSize, copies: copies)
        }
        if plans.isEmpty { return nil }
    }

    /// The fixed size the file's schema gives a type this build adapts.
    func fileFixedSize(_ type: UInt16) -> Int? { plans[type]?.fileFixed }

    /// Writes the current-layout form of `record` into `out` (at least
    /// 65535 bytes) and returns its length, or nil to use the record as is.
    func adapt(_ record: UnsafeRawBufferPointer, into out: UnsafeMutableRawPointer) -> Int? {
        guard record.count >= TraceLayout.minimumRecord else { return nil }
        let type = record.baseAddress!.loadUnaligned(fromByteOffset: 8, as: UInt16.self)
        guard let plan = plans[type], record.count >= plan.fileFixed else { return nil }
        let trailing = record.count - plan.fileFixed
        let size = plan.currentFixed + trailing
        guard size <= 65535 else { return nil }
        out.initializeMemory(as: UInt8.self, repeating: 0, count: plan.currentFixed)
        for c in plan.copies {
            (out + c.to).copyMemory(from: record.baseAddress! + c.from, byteCount: c.size)
        }
        if trailing > 0 {
            (out + plan.currentFixed).copyMemory(from: record.baseAddress! + plan.fileFixed, byteCount: trailing)
        }
        out.storeBytes(of: type, toByteOffset: 8, as: UInt16.self)
        out.storeBytes(of: UInt16(size), toByteOffset: 10, as: UInt16.self)
        return size
    }
}
