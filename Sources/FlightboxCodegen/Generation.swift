import Foundation

/// The files generated from bpf/events.h, as they should be.
public struct Generation {
    public var root: URL

    public init(root: URL) { self.root = root }

    public var headerURL: URL { root.appendingPathComponent("bpf/events.h") }
    public var swiftURL: URL { root.appendingPathComponent("Sources/FlightboxEvents/Generated/EventRecords.swift") }
    public var specURL: URL { root.appendingPathComponent("format/SPEC.md") }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// (file, expected contents) for every generated file.
    public func outputs() throws -> [(URL, String)] {
        let header = try EventHeader(parsing: String(contentsOf: headerURL, encoding: .utf8))
        let spec = try String(contentsOf: specURL, encoding: .utf8)
        guard let newSpec = SpecEmitter.splice(into: spec, header) else {
            throw Failure(description: "\(specURL.path) lacks the generated-section markers (\(SpecEmitter.begin) ... \(SpecEmitter.end))")
        }
        return [(swiftURL, SwiftEmitter.emit(header)), (specURL, newSpec)]
    }

    /// The generated files that differ from what bpf/events.h gives.
    public func stale() throws -> [URL] {
        try outputs().filter { url, text in (try? String(contentsOf: url, encoding: .utf8)) != text }.map(\.0)
    }

    /// Writes every generated file that changed; returns them.
    @discardableResult
    public func write() throws -> [URL] {
        var written: [URL] = []
        for (url, text) in try outputs() where (try? String(contentsOf: url, encoding: .utf8)) != text {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try text.write(to: url, atomically: true, encoding: .utf8)
            written.append(url)
        }
        return written
    }
}
