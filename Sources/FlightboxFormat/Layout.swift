import CFlightboxSys

/// Byte-level constants of trace format v1 (format/SPEC.md is normative).
public enum TraceLayout {
    public static let magic: [UInt8] = Array("FLIGHTBX".utf8)
    public static let footerMagic: [UInt8] = Array("FBXFOOT1".utf8)
    public static let blockSync: UInt32 = 0x4B4C_4246 // "FBLK" little-endian
    public static let versionMajor: UInt16 = 1
    public static let versionMinor: UInt16 = 0
    public static let headerSize = 32
    public static let blockHeaderSize = 56
    public static let footerSize = 32
    public static let indexEntrySize = 40
    /// File-header flag: the file is being written (or its writer died).
    public static let flagWriting: UInt32 = 1
    /// Largest block payload, stored or raw, a reader accepts: bounds its memory.
    public static let maxBlockBytes = 64 << 20
    /// The common event header: no record is shorter.
    public static let minimumRecord = 24
    /// Raw size at which the writer seals an event block.
    public static let defaultBlockBytes = 1 << 20
    /// Most raw bytes a block of `stored` bytes may claim: bounds a reader's
    /// work by the bytes in the file (a few KB of zstd can claim 64 MiB). Real
    /// event blocks stay far below it; a writer stores a block uncompressed
    /// rather than exceed it.
    public static func maxRawLength(stored: Int) -> Int { stored * 4096 + 65536 }
}

/// Block types. Readers skip types they do not know.
public enum BlockType: UInt16, Sendable {
    case metadata = 1
    case processSnapshot = 2
    case events = 3
    case index = 4
    /// The live detectors' state before the file's first event (flight segments and dumps).
    case checkpoint = 5
}

/// Block payload codecs.
public enum Codec: UInt8, Sendable, CaseIterable {
    case none = 0
    case zstd = 1
    case lz4 = 2

    public var name: String {
        switch self { case .none: "none"; case .zstd: "zstd"; case .lz4: "lz4" }
    }

    public init?(name: String) {
        guard let c = Codec.allCases.first(where: { $0.name == name }) else { return nil }
        self = c
    }
}

/// Reversible transforms applied to an event block's records before the codec.
public enum BlockFilter: UInt8, Sendable {
    case none = 0
    /// Each record XORed with the previous record of the same type class (see SPEC.md).
    case xorPrevious = 1
}

/// The fixed header in front of every block.
public struct BlockHeader: Equatable, Sendable {
    public var type: UInt16
    public var codec: UInt8
    public var filter: UInt8
    public var storedLength: UInt32
    public var rawLength: UInt32
    public var firstTimestamp: UInt64
    public var lastTimestamp: UInt64
    public var firstSequence: UInt64
    public var count: UInt32
    public var payloadChecksum: UInt32
    public var flags: UInt32

    public init(type: UInt16, codec: UInt8, filter: UInt8, storedLength: UInt32, rawLength: UInt32, firstTimestamp: UInt64, lastTimestamp: UInt64, firstSequence: UInt64, count: UInt32, payloadChecksum: UInt32, flags: UInt32 = 0) {
        self.type = type
        self.codec = codec
        self.filter = filter
        self.storedLength = storedLength
        self.rawLength = rawLength
        self.firstTimestamp = firstTimestamp
        self.lastTimestamp = lastTimestamp
        self.firstSequence = firstSequence
        self.count = count
        self.payloadChecksum = payloadChecksum
        self.flags = flags
    }

    func encode(into p: UnsafeMutableRawPointer) {
        p.storeBytes(of: TraceLayout.blockSync.littleEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: type.littleEndian, toByteOffset: 4, as: UInt16.self)
        p.storeBytes(of: codec, toByteOffset: 6, as: UInt8.self)
        p.storeBytes(of: filter, toByteOffset: 7, as: UInt8.self)
        p.storeBytes(of: storedLength.littleEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: rawLength.littleEndian, toByteOffset: 12, as: UInt32.self)
        p.storeBytes(of: firstTimestamp.littleEndian, toByteOffset: 16, as: UInt64.self)
        p.storeBytes(of: lastTimestamp.littleEndian, toByteOffset: 24, as: UInt64.self)
        p.storeBytes(of: firstSequence.littleEndian, toByteOffset: 32, as: UInt64.self)
        p.storeBytes(of: count.littleEndian, toByteOffset: 40, as: UInt32.self)
        p.storeBytes(of: payloadChecksum.littleEndian, toByteOffset: 44, as: UInt32.self)
        p.storeBytes(of: flags.littleEndian, toByteOffset: 48, as: UInt32.self)
        let crc = fb_crc32c(0, p, 52)
        p.storeBytes(of: crc.littleEndian, toByteOffset: 52, as: UInt32.self)
    }

    /// Decodes and verifies a block header; `p` must have blockHeaderSize bytes.
    static func decode(_ p: UnsafeRawPointer) -> Result<BlockHeader, DecodeFailureError> {
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: p.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        guard u32(0) == TraceLayout.blockSync else { return .failure(.noSync) }
        guard fb_crc32c(0, p, 52) == u32(52) else { return .failure(.badChecksum) }
        return .success(BlockHeader(
            type: UInt16(littleEndian: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self)),
            codec: p.load(fromByteOffset: 6, as: UInt8.self), filter: p.load(fromByteOffset: 7, as: UInt8.self),
            storedLength: u32(8), rawLength: u32(12), firstTimestamp: u64(16), lastTimestamp: u64(24),
            firstSequence: u64(32), count: u32(40), payloadChecksum: u32(44), flags: u32(48)))
    }

    enum DecodeFailureError: Error { case noSync, badChecksum }
}

/// One entry of the block index.
public struct IndexEntry: Equatable, Sendable {
    public var offset: UInt64
    public var firstTimestamp: UInt64
    public var lastTimestamp: UInt64
    public var firstSequence: UInt64
    public var count: UInt32
}

func crc32c(_ buffer: UnsafeRawBufferPointer) -> UInt32 {
    fb_crc32c(0, buffer.baseAddress, buffer.count)
}
