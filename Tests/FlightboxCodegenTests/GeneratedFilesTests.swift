import XCTest
@testable import FlightboxCodegen
import FlightboxEvents

/// What is generated from bpf/events.h is in step with it, and what the
/// generator computed agrees with the C compiler.
final class GeneratedFilesTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func header() throws -> EventHeader {
        try EventHeader(parsing: String(contentsOf: Self.root.appendingPathComponent("bpf/events.h"), encoding: .utf8))
    }

    func testGeneratedFilesAreNotStale() throws {
        let stale = try Generation(root: Self.root).stale()
        XCTAssertEqual(stale.map(\.lastPathComponent), [], "bpf/events.h changed: run `swift run flightbox-codegen` and commit what it writes")
    }

    /// The generator lays structs out by C's rules; the compiler is the judge.
    func testLayoutMatchesTheCompiler() throws {
        let h = try header()
        var expected: [String: Int] = [:]
        for f in h.header.schemaFields { expected["header.\(f.name)"] = f.offset }
        for r in h.events {
            expected["\(r.name).(size)"] = r.size
            for f in r.schemaFields { expected["\(r.name).\(f.name)"] = f.offset }
        }
        var compiled: [String: Int] = [:]
        for (t, f, o) in EventSchema.compiledLayout { compiled["\(t).\(f)"] = o }
        XCTAssertEqual(compiled, expected)
        XCTAssertEqual(h.events.count, EventType.allCases.count)
    }

    /// Every field of every struct appears in the schema, in SPEC.md and in
    /// the formatter's output, and names are unique within a record.
    func testEveryFieldIsInSchemaSpecAndJSON() throws {
        let h = try header()
        let spec = try String(contentsOf: Self.root.appendingPathComponent("format/SPEC.md"), encoding: .utf8)
        let schema = EventSchema.json
        let headerNames = (schema["header"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
        XCTAssertEqual(headerNames, h.header.schemaFields.map(\.name))
        for r in h.events {
            let t = try XCTUnwrap(schema["types"]?.arrayValue?.first { $0["name"]?.stringValue == r.name }, r.name)
            let names = (t["fields"]?.arrayValue ?? []).compactMap { $0["name"]?.stringValue }
            XCTAssertEqual(names, r.schemaFields.map(\.name), r.name)
            let all = headerNames + names + r.trailing.map { $0.trailing!.name }
            XCTAssertEqual(Set(all).count, all.count, "\(r.name): names unique within the record")
            XCTAssertTrue(spec.contains("### \(r.typeID) \(r.name) (\(r.size) bytes"), "SPEC.md has \(r.name)")
            for f in r.schemaFields { XCTAssertTrue(spec.contains("| \(f.offset) | \(f.size) | \(f.kind) | `\(f.name)` |"), "SPEC.md has \(r.name).\(f.name)") }
            // A record of this type with every field set formats every field under its schema name.
            let type = try XCTUnwrap(EventType(rawValue: UInt16(r.typeID)))
            let bytes = EventEncoder.sample(type)
            let json = try XCTUnwrap(bytes.withUnsafeBytes { Event.validated($0, sequence: 1)?.json() }, r.name)
            let fields = try XCTUnwrap(json["fields"], r.name)
            for f in r.schemaFields { XCTAssertNotNil(fields[f.name], "\(r.name).\(f.name) in JSON") }
            for f in r.trailing { XCTAssertNotNil(fields[f.trailing!.name], "\(r.name).\(f.trailing!.name) in JSON") }
            if case .object(let kv) = fields { XCTAssertEqual(kv.count, r.schemaFields.count + r.trailing.count, "\(r.name): nothing but the schema's fields") }
            for k in headerNames where k != "size" { XCTAssertNotNil(json[k], "header field \(k) in JSON") }
        }
    }

    func testParserRejectsWhatTheFormatForbids() throws {
        let base = """
        struct fb_header {
        \t__u64 ts_ns;
        \t__u16 type;
        \t__u16 size;
        \t__u16 cpu;
        \t__u16 flags;
        \t__u32 pid;
        \t__u32 tid;
        };
        enum fb_event_type {
        \tFB_EV_A = 1,
        };
        """
        let dup = base + "\n/* @event FB_EV_A a */\nstruct fb_a {\n\tstruct fb_header h;\n\t__u32 flags;\n\t__u32 x;\n};\n"
        XCTAssertThrowsError(try EventHeader(parsing: dup)) { XCTAssertTrue("\($0)".contains("not unique"), "\($0)") }
        let badLen = base + "\n/* @event FB_EV_A a */\nstruct fb_a {\n\tstruct fb_header h;\n\t__u32 n; /* @trailing s bytes */\n\t__u32 x;\n};\n"
        XCTAssertThrowsError(try EventHeader(parsing: badLen)) { XCTAssertTrue("\($0)".contains("u16"), "\($0)") }
        let ok = base + "\n/* @event FB_EV_A a\n * A doc. */\nstruct fb_a {\n\tstruct fb_header h;\n\t__u32 n; /* a count; @was m */\n\t__u16 s_len; /* @trailing s strings */\n\t__u16 _pad;\n};\n"
        // An event struct without its @event line (here lost behind a #define) is an error, not a silent drop.
        let noTag = base + "\n/* @event FB_EV_A a */\n#define X 1\nstruct fb_a {\n\tstruct fb_header h;\n\t__u64 x;\n};\n"
        XCTAssertThrowsError(try EventHeader(parsing: noTag)) { XCTAssertTrue("\($0)".contains("no @event"), "\($0)") }
        // An event type without a struct.
        XCTAssertThrowsError(try EventHeader(parsing: base)) { XCTAssertTrue("\($0)".contains("FB_EV_A has no struct"), "\($0)") }
        // A brace on the next line.
        let brace = base + "\n/* @event FB_EV_A a */\nstruct fb_a\n{\n\tstruct fb_header h;\n\t__u64 x;\n};\n"
        XCTAssertThrowsError(try EventHeader(parsing: brace)) { XCTAssertTrue("\($0)".contains("'{'"), "\($0)") }
        // A field named like a member of every typed view, or a Swift keyword.
        for name in ["timestamp", "in", "event"] {
            let bad = base + "\n/* @event FB_EV_A a */\nstruct fb_a {\n\tstruct fb_header h;\n\t__u64 \(name);\n};\n"
            XCTAssertThrowsError(try EventHeader(parsing: bad), name) { XCTAssertTrue("\($0)".contains("taken"), "\($0)") }
        }
        // Annotations on a comment's continuation line, and several @was, are read.
        let multi = base + "\n/* @event FB_EV_A a */\nstruct fb_a {\n\tstruct fb_header h;\n\t__u32 n; /* a count;\n\t * @was m @was k */\n\t__u16 s_len; /* the name,\n\t   @trailing s bytes */\n\t__u16 _pad;\n};\n"
        let hm = try EventHeader(parsing: multi)
        XCTAssertEqual(hm.events[0].fields[0].was, ["m", "k"])
        XCTAssertEqual(hm.events[0].trailing.first?.trailing?.name, "s")
        let h = try EventHeader(parsing: ok)
        XCTAssertEqual(h.events.map(\.name), ["a"])
        XCTAssertEqual(h.events[0].doc, "A doc.")
        XCTAssertEqual(h.events[0].fields.map(\.offset), [24, 28, 30])
        XCTAssertEqual(h.events[0].size, 32)
        XCTAssertEqual(h.events[0].fields[0].was, ["m"])
        XCTAssertEqual(h.events[0].trailing.first?.trailing?.kind, "strings")
    }
}
