import Foundation

/// The event definitions read out of bpf/events.h: the one description of
/// every wire record, from which the Swift views, the schema, the JSON walk
/// and SPEC.md's record tables are generated.
public struct EventHeader: Equatable, Sendable {
    public var header: Record
    public var events: [Record]
    /// `#define NAME value` integer constants.
    public var constants: [String: Int]
    /// Every enum's entries, in order, with their comments.
    public var enums: [String: [EnumEntry]] = [:]

    public struct EnumEntry: Equatable, Sendable {
        public var name: String
        public var value: Int
        public var doc: String
    }

    public struct Record: Equatable, Sendable {
        /// The C struct, e.g. `fb_syscall`.
        public var cName: String
        /// The event type's name, e.g. `syscall`; `header` for `fb_header`.
        public var name: String
        /// The enum fb_event_type constant and its value (0 for the header).
        public var typeConstant: String
        public var typeID: Int
        public var doc: String
        /// Every field after the common header, padding included, in order.
        public var fields: [Field]
        public var size: Int

        /// Fields in the schema: not padding.
        public var schemaFields: [Field] { fields.filter { !$0.isPadding } }
        /// Variable parts, in the order they follow the fixed part.
        public var trailing: [Field] { fields.filter { $0.trailing != nil } }
    }

    public struct Field: Equatable, Sendable {
        public var name: String
        /// The C scalar: u8, u16, u32, u64, s8, s16, s32, s64 or char.
        public var scalar: String
        /// Array length, nil for a scalar.
        public var count: Int?
        public var offset: Int
        public var doc: String
        /// For a length field: the variable part it measures.
        public var trailing: Trailing?
        /// Names this field had in older traces.
        public var was: [String]

        public struct Trailing: Equatable, Sendable {
            public var name: String
            /// `bytes`, or `strings` (each followed by one NUL).
            public var kind: String
            public var doc: String
        }

        public var isPadding: Bool { name.hasPrefix("_") }
        public var elementSize: Int { EventHeader.scalarSize[scalar]! }
        public var size: Int { elementSize * (count ?? 1) }
        /// The schema's kind: `u64`, `s32`, `char[16]`, `u64[3]`, `u8[16]`.
        public var kind: String { count.map { "\(scalar)[\($0)]" } ?? scalar }
    }

    static let scalarSize = ["u8": 1, "s8": 1, "char": 1, "u16": 2, "s16": 2, "u32": 4, "s32": 4, "u64": 8, "s64": 8]

    public struct ParseError: Error, CustomStringConvertible, Equatable {
        public var line: Int
        public var reason: String
        public var description: String { "bpf/events.h:\(line): \(reason)" }
    }

    /// Parses the subset of C that events.h is written in: `#define`s,
    /// enums, and structs of fixed-width integer and char fields.
    public init(parsing text: String) throws {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var constants: [String: Int] = [:]
        var enums: [String: [String: Int]] = [:]
        var entries: [String: [EnumEntry]] = [:]
        var records: [Record] = []
        var header: Record?
        var pendingComment: [String] = []
        var inComment = false
        var i = 0
        func fail(_ r: String) -> ParseError { ParseError(line: i + 1, reason: r) }

        while i < lines.count {
            let raw = lines[i]
            let line = raw.trimmingSpaces
            if inComment {
                pendingComment.append(line)
                if line.contains("*/") { inComment = false }
                i += 1
                continue
            }
            if line.hasPrefix("/*") {
                pendingComment = [line]
                inComment = !line.contains("*/")
                i += 1
                continue
            }
            if line.hasPrefix("#define ") {
                let parts = line.dropFirst(8).split(whereSeparator: { $0 == " " || $0 == "\t" })
                if parts.count >= 2, let v = Int(parts[1]) ?? (parts[1].hasPrefix("0x") ? Int(parts[1].dropFirst(2), radix: 16) : nil) {
                    constants[String(parts[0])] = v
                }
                pendingComment = []
                i += 1
                continue
            }
            if line.hasPrefix("enum "), line.hasSuffix("{") {
                let enumName = String(line.dropFirst(5).dropLast().trimmingSpaces)
                i += 1
                while i < lines.count, !lines[i].trimmingSpaces.hasPrefix("}") {
                    let (entry, entryDoc) = lines[i].trimmingSpaces.splitComment
                    let kv = entry.split(separator: "=").map { $0.trimmingSpaces }
                    if enumName == "fb_event_type", !entry.isEmpty {
                        // Every event type has an explicit decimal value: it is the wire id.
                        guard kv.count == 2, let v = Int(kv[1].trimmingCharacters(",")) else { throw fail("enum fb_event_type: '\(entry)' needs an explicit decimal value") }
                        enums[enumName, default: [:]][kv[0]] = v
                    } else if kv.count == 2, let v = Int(kv[1].trimmingCharacters(",")) {
                        enums[enumName, default: [:]][kv[0]] = v
                    }
                    if kv.count == 2, let v = Int(kv[1].trimmingCharacters(",")) {
                        entries[enumName, default: []].append(EnumEntry(name: kv[0], value: v, doc: entryDoc))
                    }
                    i += 1
                }
                pendingComment = []
                i += 1
                continue
            }
            if line.hasPrefix("struct "), !line.hasSuffix("{"), !line.hasSuffix(";") {
                throw fail("write '{' on the struct's own line: '\(line)'")
            }
            if line.hasPrefix("struct "), line.hasSuffix("{") {
                let cName = String(line.dropFirst(7).dropLast().trimmingSpaces)
                let doc = EventHeader.commentText(pendingComment)
                pendingComment = []
                var fields: [Field] = []
                var offset = 0
                var maxAlign = 1
                var isEvent = false
                i += 1
                var leading = "" // a comment on its own line(s) before a field: part of its doc
                while i < lines.count {
                    var l = lines[i].trimmingSpaces
                    if l.hasPrefix("};") { break }
                    if l.isEmpty { i += 1; continue }
                    // A comment that goes on over several lines is read whole.
                    if l.contains("/*"), !l[l.range(of: "/*")!.upperBound...].contains("*/") {
                        while i + 1 < lines.count, !l.hasSuffix("*/") {
                            i += 1
                            l += " " + lines[i].trimmingSpaces.trimmingCharacters("*").trimmingSpaces
                            if lines[i].contains("*/") { break }
                        }
                    }
                    if l.hasPrefix("/*") {
                        leading += (leading.isEmpty ? "" : " ") + l.splitComment.1
                        i += 1
                        continue
                    }
                    var (decl, comment) = l.splitComment
                    if !leading.isEmpty { comment = leading + (comment.isEmpty ? "" : " " + comment); leading = "" }
                    if decl == "struct fb_header h;" {
                        guard cName != "fb_header" else { throw fail("fb_header cannot contain itself") }
                        isEvent = true
                        offset = 24
                        maxAlign = 8
                        i += 1
                        continue
                    }
                    guard decl.hasSuffix(";") else { throw fail("expected a field declaration, found '\(l)'") }
                    let words = decl.dropLast().split(separator: " ", maxSplits: 1).map(String.init)
                    guard words.count == 2, let scalar = EventHeader.scalar(words[0]) else { throw fail("unsupported field type in '\(l)'") }
                    for var declarator in words[1].split(separator: ",").map({ $0.trimmingSpaces }) {
                        var count: Int?
                        if let open = declarator.firstIndex(of: "[") {
                            let dim = String(declarator[declarator.index(after: open)...].dropLast())
                            guard let n = Int(dim) ?? constants[dim] else { throw fail("unknown array length '\(dim)'") }
                            count = n
                            declarator = String(declarator[..<open])
                        }
                        let size = EventHeader.scalarSize[scalar]!
                        if offset % size != 0 { offset += size - offset % size }
                        maxAlign = max(maxAlign, size)
                        var field = Field(name: declarator, scalar: scalar, count: count, offset: offset, doc: "", trailing: nil, was: [])
                        try EventHeader.annotate(&field, comment: comment, fail: fail)
                        fields.append(field)
                        offset += field.size
                    }
                    i += 1
                }
                if offset % maxAlign != 0 { offset += maxAlign - offset % maxAlign }
                if isEvent, cName != "fb_header", !doc.contains("@event ") {
                    throw fail("\(cName) starts with struct fb_header h but has no @event line in the comment right before it")
                }
                if cName == "fb_header" {
                    header = Record(cName: cName, name: "header", typeConstant: "", typeID: 0, doc: doc, fields: fields, size: offset)
                } else if let tag = doc.range(of: "@event ") {
                    guard isEvent else { throw fail("\(cName) is marked @event but does not start with struct fb_header h") }
                    let words = doc[tag.upperBound...].split(whereSeparator: { $0 == " " || $0 == "\n" }).prefix(2).map(String.init)
                    guard words.count == 2, let id = enums["fb_event_type"]?[words[0]] else { throw fail("@event of \(cName) must name an fb_event_type constant and a name") }
                    let cleanDoc = doc.replacingOccurrences(of: "@event \(words[0]) \(words[1])", with: "").trimmingSpaces
                    records.append(Record(cName: cName, name: words[1], typeConstant: words[0], typeID: id, doc: cleanDoc, fields: fields, size: offset))
                }
                i += 1
                continue
            }
            if !line.isEmpty { pendingComment = [] }
            i += 1
        }
        guard let header else { throw ParseError(line: 0, reason: "no struct fb_header") }
        self.header = header
        self.events = records.sorted { $0.typeID < $1.typeID }
        for (name, _) in (enums["fb_event_type"] ?? [:]).sorted(by: { $0.value < $1.value }) where !records.contains(where: { $0.typeConstant == name }) {
            throw ParseError(line: 0, reason: "\(name) has no struct marked @event \(name)")
        }
        self.constants = constants
        self.enums = entries
        try validate()
    }

    /// What the format promises: names unique within a record, header
    /// included; every event type defined once; lengths are u16.
    func validate() throws {
        var ids = Set<Int>()
        for r in events {
            guard ids.insert(r.typeID).inserted else { throw ParseError(line: 0, reason: "two structs are @event \(r.typeConstant)") }
            var names = Set(header.schemaFields.map(\.name))
            for f in r.schemaFields + r.trailing.map({ Field(name: $0.trailing!.name, scalar: "u8", count: nil, offset: 0, doc: "", trailing: nil, was: []) }) {
                guard names.insert(f.name).inserted else {
                    throw ParseError(line: 0, reason: "\(r.cName): field name '\(f.name)' is not unique within the record (header included)")
                }
            }
            for f in r.schemaFields where EventHeader.reserved.contains(f.name) || EventHeader.reserved.contains(f.trailing?.name ?? "") {
                throw ParseError(line: 0, reason: "\(r.cName).\(f.name): the name is taken by the typed views or by Swift; choose another")
            }
            for f in r.trailing where f.scalar != "u16" || f.count != nil {
                throw ParseError(line: 0, reason: "\(r.cName).\(f.name): a @trailing length must be a u16")
            }
            guard r.size % 8 == 0 else { throw ParseError(line: 0, reason: "\(r.cName) is \(r.size) bytes, not a multiple of 8") }
        }
    }

    /// Names a field cannot have: members every typed view has, and Swift keywords.
    static let reserved: Set<String> = [
        "event", "timestamp", "payload", "eventType", "fieldsJSON", "encode", "init", "self", "Type", "Protocol",
        "associatedtype", "class", "deinit", "enum", "extension", "fileprivate", "func", "import", "inout", "internal", "let",
        "open", "operator", "private", "protocol", "public", "rethrows", "static", "struct", "subscript", "typealias", "var",
        "break", "case", "catch", "continue", "default", "defer", "do", "else", "fallthrough", "for", "guard", "if", "in",
        "repeat", "return", "throw", "switch", "where", "while", "as", "Any", "false", "is", "nil", "super", "throws", "true", "try",
    ]

    static func scalar(_ c: String) -> String? {
        switch c {
        case "__u8": "u8"
        case "__u16": "u16"
        case "__u32": "u32"
        case "__u64": "u64"
        case "__s8": "s8"
        case "__s16": "s16"
        case "__s32": "s32"
        case "__s64": "s64"
        case "char": "char"
        default: nil
        }
    }

    static func annotate(_ f: inout Field, comment: String, fail: (String) -> ParseError) throws {
        var doc = comment
        while let r = doc.range(of: "@was ") {
            let rest = doc[r.upperBound...]
            let name = rest.prefix { $0.isLetter || $0.isNumber || $0 == "_" }
            guard !name.isEmpty else { throw fail("@was needs a name on \(f.name)") }
            f.was.append(String(name))
            doc.removeSubrange(r.lowerBound..<rest.index(rest.startIndex, offsetBy: name.count))
        }
        if let r = doc.range(of: "@trailing ") {
            let words = doc[r.upperBound...].split(separator: " ", maxSplits: 2).map(String.init)
            guard words.count >= 2, ["bytes", "strings"].contains(words[1].trimmingCharacters(";")) else {
                throw fail("@trailing needs a name and a kind (bytes or strings) on \(f.name)")
            }
            let tdoc = words.count > 2 ? words[2].trimmingSpaces : ""
            f.trailing = Field.Trailing(name: words[0], kind: words[1].trimmingCharacters(";"), doc: tdoc)
            doc = String(doc[..<r.lowerBound])
        }
        f.doc = doc.trimmingCharacters(";").trimmingSpaces
    }

    /// The text of a block comment, `*` margins removed, lines joined.
    static func commentText(_ lines: [String]) -> String {
        lines.map { l -> String in
            var s = l.trimmingSpaces
            if s.hasPrefix("/*") { s = String(s.dropFirst(2)) }
            if s.hasSuffix("*/") { s = String(s.dropLast(2)) }
            if s.hasPrefix("*") { s = String(s.dropFirst()) }
            return s.trimmingSpaces
        }.filter { !$0.isEmpty }.joined(separator: " ")
    }
}

extension StringProtocol {
    var trimmingSpaces: String { trimmingCharacters(" \t") }

    func trimmingCharacters(_ set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }

    /// A line without its `/* ... */` comment.
    var strippingComment: String { splitComment.0 }

    /// (declaration, comment text) of one line.
    var splitComment: (String, String) {
        guard let r = range(of: "/*") else { return (trimmingSpaces, "") }
        var c = String(self[r.upperBound...])
        if let e = c.range(of: "*/") { c = String(c[..<e.lowerBound]) }
        return (String(self[..<r.lowerBound]).trimmingSpaces, c.trimmingSpaces)
    }
}

extension Substring {
    var trimmingSpaces: String { trimmingCharacters(" \t") }
}
