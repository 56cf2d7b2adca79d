import Foundation
import FlightboxEvents

/// A detector whose state a checkpoint carries: everything `observe` and
/// `tick` learned, as one `Codable` value. Settings are not state: a
/// checkpoint is restored only into a detector made with the same settings
/// (`DetectorConfiguration.fingerprint`), which rebuilds whatever derives
/// from them (compiled rules, tables).
///
/// A new detector keeps its learned state in `var state: State` (or maps its
/// fields onto one `State` struct) and conforms: that is all the engine needs.
public protocol CheckpointedDetector: Detector {
    associatedtype State: Codable
    /// Read at a checkpoint; set once, on a detector that has seen no event, to restore one.
    var state: State { get set }
    /// Why a decoded state cannot be used (a fixed-size table of the wrong
    /// size, a reference out of range), or nil: a hostile checkpoint is
    /// refused here rather than trapping later.
    func problem(with state: State) -> String?
}

extension CheckpointedDetector {
    public func problem(with state: State) -> String? { nil }

    func encodeState<K: CodingKey>(into c: inout KeyedEncodingContainer<K>, forKey key: K) throws {
        try c.encode(state, forKey: key)
    }

    /// Decodes and checks the state; the returned closure applies it (only
    /// once every detector's state decoded: a restore is all or nothing).
    func decodeState<K: CodingKey>(from c: KeyedDecodingContainer<K>, forKey key: K) throws -> () -> Void {
        let s = try c.decode(State.self, forKey: key)
        if let problem = problem(with: s) {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath + [key], debugDescription: problem))
        }
        return { self.state = s }
    }
}

/// Why a checkpoint was not restored. The engine is left as it was: fresh.
public struct CheckpointError: Error, CustomStringConvertible, Equatable {
    public let reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { "detector checkpoint not used: \(reason); the detectors start fresh" }
}

/// What a restore did, per detector.
public struct CheckpointRestore: Equatable, Sendable {
    /// Detectors that continue from the checkpoint, in engine order.
    public var restored: [String] = []
    /// Detectors that start fresh, with why (another configuration, not in the checkpoint, no checkpoint support).
    public var fresh: [(name: String, reason: String)] = []
    /// Events the live engine had seen when the checkpoint was taken.
    public var eventsBefore: UInt64 = 0

    public static func == (a: CheckpointRestore, b: CheckpointRestore) -> Bool {
        a.restored == b.restored && a.fresh.map(\.name) == b.fresh.map(\.name) && a.fresh.map(\.reason) == b.fresh.map(\.reason) && a.eventsBefore == b.eventsBefore
    }

    /// One line for stderr.
    public var summary: String {
        var s = "detector checkpoint restored (\(eventsBefore) events before this trace): \(restored.isEmpty ? "no detector" : restored.joined(separator: ","))"
        if !fresh.isEmpty { s += "; starting fresh: " + fresh.map { "\($0.name) (\($0.reason))" }.joined(separator: ", ") }
        return s
    }
}

/// The checkpoint's bytes: UTF-8 JSON in one order for one state
/// (`CanonicalJSON`; the trace stores it zstd-compressed),
/// `{"format":"flightbox-checkpoint","version":1,"engine":{…},"detectors":[{"name","fingerprint","next_boundary","state"}…]}`.
enum CheckpointCoding {
    static let format = "flightbox-checkpoint"
    static let version = 1
    /// Most bytes a checkpoint may have: the trace's block limit.
    static let maxBytes = 64 << 20
    static let targetsKey = CodingUserInfoKey(rawValue: "flightbox.checkpoint.targets")!

    static func decoder(targets: Targets) -> JSONDecoder {
        let d = JSONDecoder()
        d.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        d.userInfo[targetsKey] = targets
        return d
    }

    /// The engine's own counters and clocks.
    struct Engine: Codable {
        var eventsSeen: UInt64
        var now: UInt64
        var firstTimestamp: UInt64
        var findingCount: UInt64
        /// pid -> comm, by pid.
        var comms: [Comm]
    }

    struct Comm: Codable {
        var pid: UInt32
        var comm: String
    }

    enum Keys: String, CodingKey {
        case format, version, engine, detectors
        case name, fingerprint, nextBoundary = "next_boundary", state
    }

    struct Out: Encodable {
        var engine: Engine
        var detectors: [DetectorOut]

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(CheckpointCoding.format, forKey: .format)
            try c.encode(CheckpointCoding.version, forKey: .version)
            try c.encode(engine, forKey: .engine)
            try c.encode(detectors, forKey: .detectors)
        }
    }

    struct DetectorOut: Encodable {
        var name: String
        var fingerprint: String
        var nextBoundary: UInt64?
        var detector: (any CheckpointedDetector)?

        func encode(to encoder: Encoder) throws {
            var c = encoder.container(keyedBy: Keys.self)
            try c.encode(name, forKey: .name)
            try c.encode(fingerprint, forKey: .fingerprint)
            try c.encode(nextBoundary, forKey: .nextBoundary)
            if let detector { try detector.encodeState(into: &c, forKey: .state) }
        }
    }

    /// The detectors a checkpoint is restored into, by name, with their fingerprints.
    final class Targets: @unchecked Sendable {
        var byName: [String: (detector: any CheckpointedDetector, fingerprint: String)] = [:]
    }

    struct In: Decodable {
        var engine: Engine
        var detectors: [DetectorIn]

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            let format = try c.decode(String.self, forKey: .format)
            guard format == CheckpointCoding.format else { throw CheckpointError("format '\(format)' is not \(CheckpointCoding.format)") }
            let version = try c.decode(Int.self, forKey: .version)
            guard version == CheckpointCoding.version else { throw CheckpointError("version \(version) (this flightbox reads version \(CheckpointCoding.version))") }
            engine = try c.decode(Engine.self, forKey: .engine)
            detectors = try c.decode([DetectorIn].self, forKey: .detectors)
        }
    }

    struct DetectorIn: Decodable {
        var name: String
        var nextBoundary: UInt64?
        /// Applies the decoded state, or nil with why the detector starts fresh.
        var apply: (() -> Void)?
        var fresh: String?

        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: Keys.self)
            name = try c.decode(String.self, forKey: .name)
            let fingerprint = try c.decode(String.self, forKey: .fingerprint)
            nextBoundary = try c.decodeIfPresent(UInt64.self, forKey: .nextBoundary)
            guard let targets = decoder.userInfo[CheckpointCoding.targetsKey] as? Targets, let target = targets.byName[name] else { return }
            if target.fingerprint != fingerprint {
                fresh = "its configuration differs from the checkpoint's"
            } else if !c.contains(.state) {
                fresh = "the checkpoint holds no state for it"
            } else {
                apply = try target.detector.decodeState(from: c, forKey: .state)
            }
        }
    }

    /// One line of what went wrong in decoding, without Foundation's debug noise.
    static func describe(_ error: any Error) -> String {
        if let e = error as? CheckpointError { return e.reason }
        guard let d = error as? DecodingError else { return "\(error)" }
        func path(_ p: [any CodingKey]) -> String { p.isEmpty ? "the top" : p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".") }
        switch d {
        case .dataCorrupted(let c): return "corrupt at \(path(c.codingPath)): \(c.debugDescription)"
        case .keyNotFound(let k, let c): return "'\(k.stringValue)' missing at \(path(c.codingPath))"
        case .typeMismatch(_, let c), .valueNotFound(_, let c): return "wrong type at \(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(error)"
        }
    }
}

extension DetectorEngine {
    /// The state of the engine and of every detector after the events
    /// processed so far. Restoring it into a fresh engine with the same
    /// configuration (`restore`) and feeding it the events that follow gives
    /// the findings this engine gives, byte for byte.
    /// - Parameter configuration: what the detectors were made from: each
    ///   detector's fingerprint is stored with its state.
    public func checkpoint(configuration: DetectorConfiguration) throws -> [UInt8] {
        let out = CheckpointCoding.Out(engine: engineCheckpoint, detectors: detectors.enumerated().map { i, d in
            CheckpointCoding.DetectorOut(name: d.name, fingerprint: configuration.fingerprint(d.name), nextBoundary: boundary(of: i),
                                         detector: d as? any CheckpointedDetector)
        })
        return try CanonicalJSON.encode(out)
    }

    /// Continues from a checkpoint: the engine must not have seen an event.
    /// All or nothing: on a checkpoint that cannot be read (damaged, hostile,
    /// another version) nothing changes and the error says why in one line.
    /// Detectors whose configuration differs from the checkpoint's, or that
    /// it does not hold, start fresh (`CheckpointRestore.fresh`).
    @discardableResult
    public func restore(_ bytes: [UInt8], configuration: DetectorConfiguration) throws(CheckpointError) -> CheckpointRestore {
        guard eventsSeen == 0 else { throw CheckpointError("the engine has already seen \(eventsSeen) events") }
        guard bytes.count <= CheckpointCoding.maxBytes else { throw CheckpointError("\(bytes.count) bytes, over the \(CheckpointCoding.maxBytes) limit") }
        let targets = CheckpointCoding.Targets()
        for d in detectors {
            if let c = d as? any CheckpointedDetector { targets.byName[d.name] = (c, configuration.fingerprint(d.name)) }
        }
        let decoded: CheckpointCoding.In
        do {
            decoded = try CheckpointCoding.decoder(targets: targets).decode(CheckpointCoding.In.self, from: Data(bytes))
        } catch {
            throw CheckpointError(CheckpointCoding.describe(error))
        }
        let e = decoded.engine
        guard e.now >= e.firstTimestamp || e.eventsSeen == 0 else { throw CheckpointError("event time \(e.now) is before the first event's \(e.firstTimestamp)") }
        var result = CheckpointRestore(eventsBefore: e.eventsSeen)
        var byName: [String: CheckpointCoding.DetectorIn] = [:]
        for d in decoded.detectors where byName[d.name] == nil { byName[d.name] = d }
        for (i, d) in detectors.enumerated() {
            guard let entry = byName[d.name] else {
                result.fresh.append((d.name, d is any CheckpointedDetector ? "not in the checkpoint" : "it cannot be checkpointed"))
                continue
            }
            guard let apply = entry.apply else {
                result.fresh.append((d.name, entry.fresh ?? "it cannot be checkpointed"))
                continue
            }
            apply()
            setBoundary(of: i, entry.nextBoundary)
            result.restored.append(d.name)
        }
        restoreEngine(e)
        return result
    }
}

extension DetectorConfiguration {
    /// A detector's settings (its parameters, exclusions and rules; not
    /// whether it is enabled) as a short stable hash: a checkpoint is
    /// restored only into a detector with the same one.
    public func fingerprint(_ name: String) -> String {
        guard let s = self[name] else { return "" }
        var settings = s
        settings.enabled = true
        // FNV-1a 64 of the stable JSON.
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in settings.json.serialized().utf8 {
            h ^= UInt64(b)
            h = h &* 0x100_0000_01b3
        }
        let hex = String(h, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
