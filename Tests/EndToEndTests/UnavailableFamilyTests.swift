import XCTest
import Foundation
import FlightboxEvents
import FlightboxFormat

final class UnavailableFamilyTests: XCTestCase {
    /// A family that cannot load on this kernel is reported in one line and
    /// skipped; the others record, and the trace says what was left out.
    func testAFamilyThatCannotLoadIsSkippedNotFatal() throws {
        try requireBPF()
        let build = URL(fileURLWithPath: Tool.binDir).deletingLastPathComponent().deletingLastPathComponent()
        let outputs = build.appendingPathComponent("plugins/outputs")
        let fm = FileManager.default
        let objDir = try XCTUnwrap(fm.enumerator(atPath: outputs.path)?.compactMap { $0 as? String }
            .first { $0.hasSuffix("FlightboxBPFBuild/obj/process.bpf.o") }.map { outputs.appendingPathComponent($0).deletingLastPathComponent() })
        let partial = try scratchDirectory("partial-objects")
        for name in ["process", "syscalls"] {
            try fm.copyItem(at: objDir.appendingPathComponent("\(name).bpf.o"), to: URL(fileURLWithPath: partial + "/\(name).bpf.o"))
        }
        // A damaged object stands for a kernel that rejects the family.
        let signals = try Data(contentsOf: objDir.appendingPathComponent("signals.bpf.o"))
        try signals.prefix(2000).write(to: URL(fileURLWithPath: partial + "/signals.bpf.o"))
        let trace = scratch("partial.fbt")
        let rec = Process()
        rec.executableURL = URL(fileURLWithPath: Tool.flightbox)
        rec.arguments = ["record", "-o", trace, "--probes", "process,syscalls,signals,block", "--duration", "1s"]
        rec.environment = ProcessInfo.processInfo.environment.merging(["FLIGHTBOX_BPF_OBJECT_DIR": partial]) { $1 }
        let err = Pipe()
        rec.standardError = err
        try rec.run()
        rec.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(rec.terminationStatus, 0, stderr)
        XCTAssertEqual(stderr.split(separator: "\n").filter { $0.contains("signals probes unavailable") }.count, 1, stderr)
        XCTAssertEqual(stderr.split(separator: "\n").filter { $0.contains("block probes unavailable") }.count, 1, stderr)
        let capture = try XCTUnwrap(try inspectJSON(trace)["capture"])
        XCTAssertEqual(capture["probes"]?.arrayValue?.compactMap(\.stringValue), ["process", "syscalls"])
        XCTAssertEqual(capture["skipped"]?.arrayValue?.compactMap { $0["family"]?.stringValue }, ["signals", "block"])
        XCTAssertGreaterThan(try inspectJSON(trace)["events"]?.uintValue ?? 0, 0)
    }
}
