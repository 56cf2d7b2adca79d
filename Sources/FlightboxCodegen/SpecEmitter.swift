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
            o += table(r.schemaFields)
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

    static func table(_ fields: [EventHeader.Field]) -> String {
        var o = "| offset | size | kind | field | meaning |\n|-------:|-----:|------|-------|---------|\n"
        for f in fields {
            o += "| \(f.offset) | \(f.size) | \(f.kind) | `\(f.name)` | \(f.doc.replacingOccurrences(of: "|", with: "\\|")) |\n"
        }
        return o
    }

    /// SPEC.md with its generated section replaced, or nil when the markers are missing.
    public static func splice(into spec: String, _ h: EventHeader) -> String? {
        guard let a = spec.range(of: begin), let b = spec.range(of: end), a.lowerBound < b.lowerBound else { return nil }
        return String(spec[..<a.lowerBound]) + emit(h) + String(spec[b.upperBound...])
    }
}
