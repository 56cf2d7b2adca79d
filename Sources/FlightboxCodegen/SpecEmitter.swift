import Foundation

/// Writes the record tables of format/SPEC.md, between its
/// `<!-- BEGIN GENERATED: records -->` and `<!-- END GENERATED: records -->`
/// markers, from bpf/events.h.
public enum SpecEmitter {
    public static let begin = "<!-- BEGIN GENERATED: records (flightbox-codegen, from bpf/events.h; do not edit) -->"
    public static let end = "<!-- END GENERATED: records -->"

    public static func emit(_ h: EventHeader) -> String {
        var o = "\(begin)\n\n"
        o += "### Common header (\(h.header.size) bytes)\n\n"
        o += table(h.header.schemaFields)
        o += "\nEvent types: " + h.events.map { "\($0.typeID) \($0.name)" }.joined(separator: ", ") + ".\n\n"
        for r in h.events {
            let variable = r.trailing.isEmpty ? "" : " + variable"
            o += "### \(r.typeID) \(r.name) (\(r.size) bytes\(variable))\n\n"
            o += "\(r.doc)\n\n"
            o += table(r.schemaFields, enums: h.enums)
            let pads = r.fields.filter(\.isPadding)
            if !pads.isEmpty {
                o += "\nPadding (zero): " + pads.map { "\($0.size) bytes @\($0.offset)" }.joined(separator: ", ") + ".\n"
            }
            if !r.trailing.isEmpty {
                o += "\nVariable parts, in this order after the fixed part:\n\n"
                for f in r.trailing {
                    let t = f.trailing!
                    let kind = t.kind == "strings" ? "strings, each followed by one NUL" : "bytes, no NUL"
                    o += "- `\(t.name)`: `\(f.name)` bytes (\(kind))\(t.doc.isEmpty ? "" : "; " + t.doc)\n"
                }
                o += "\nA reader MUST check that \(r.size) + " + r.trailing.map { "`\($0.name)`" }.joined(separator: " + ") + " ≤ `size`.\n"
            }
            let renamed = r.fields.filter { !$0.was.isEmpty }
            for f in renamed {
                o += "\n`\(f.name)` was called " + f.was.map { "`\($0)`" }.joined(separator: ", ") + " in the schema of older traces; readers map that name onto it.\n"
            }
            o += "\n"
        }
        return o + end
    }

    static func table(_ fields: [EventHeader.Field], enums: [String: [EventHeader.EnumEntry]] = [:]) -> String {
        var o = "| offset | size | kind | field | meaning |\n|-------:|-----:|------|-------|---------|\n"
        for f in fields {
            o += "| \(f.offset) | \(f.size) | \(f.kind) | `\(f.name)` | \(expand(f.doc, enums).replacingOccurrences(of: "|", with: "\\|")) |\n"
        }
        return o
    }

    /// A doc that names an enum ("enum fb_gauge_kind") without giving its
    /// values gets them from the enum itself, so they are written once.
    static func expand(_ doc: String, _ enums: [String: [EventHeader.EnumEntry]]) -> String {
        guard let r = doc.range(of: "enum fb_") else { return doc }
        let name = "fb_" + doc[r.upperBound...].prefix { $0.isLetter || $0.isNumber || $0 == "_" }
        guard let entries = enums[String(name)], !entries.isEmpty else { return doc }
        let after = doc[doc.index(r.lowerBound, offsetBy: 5 + name.count)...]
        if after.hasPrefix(":") { return doc } // the values are given already
        // FB_GAUGE_FS_BYTES -> "fs bytes": the name past the enum's common prefix.
        let names = entries.map(\.name)
        var prefix = names[0]
        for n in names.dropFirst() { while !n.hasPrefix(prefix) { prefix.removeLast() } }
        if let underscore = prefix.lastIndex(of: "_") { prefix = String(prefix[...underscore]) } else { prefix = "" }
        let values = entries.map { e -> String in
            let short = e.name.dropFirst(prefix.count).lowercased().replacingOccurrences(of: "_", with: " ")
            return "\(e.value) \(short)" + (e.doc.isEmpty ? "" : " (\(e.doc))")
        }
        return String(doc[..<after.startIndex]) + ": " + values.joined(separator: "; ") + String(after)
    }

    /// SPEC.md with its generated section replaced, or nil when the markers are missing.
    public static func splice(into spec: String, _ h: EventHeader) -> String? {
        guard let a = spec.range(of: begin), let b = spec.range(of: end), a.lowerBound < b.lowerBound else { return nil }
        return String(spec[..<a.lowerBound]) + emit(h) + String(spec[b.upperBound...])
    }
}
