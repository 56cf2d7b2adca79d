// Regenerates what is derived from bpf/events.h (the Swift views, schema and
// encoders in Sources/FlightboxEvents/Generated, the record tables of
// format/SPEC.md). `--check` only reports stale files and exits 1 if any.
//
//   swift run flightbox-codegen [--check] [PACKAGE_ROOT]
import FlightboxCodegen
import Foundation

let args = CommandLine.arguments.dropFirst()
let check = args.contains("--check")
let root = args.first { !$0.hasPrefix("--") }.map { URL(fileURLWithPath: $0) }
    ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let generation = Generation(root: root)
do {
    if check {
        let stale = try generation.stale()
        for url in stale { print("stale: \(url.path)") }
        exit(stale.isEmpty ? 0 : 1)
    }
    let written = try generation.write()
    print(written.isEmpty ? "up to date" : written.map { "wrote \($0.path)" }.joined(separator: "\n"))
} catch {
    FileHandle.standardError.write("flightbox-codegen: \(error)\n".data(using: .utf8)!)
    exit(1)
}
