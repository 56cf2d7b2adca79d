import CLZ4
import CZstd

extension Codec {
    /// The compression levels the codec takes; nil when it takes none (lz4, none).
    public var levels: ClosedRange<Int32>? {
        self == .zstd ? ZSTD_minCLevel()...ZSTD_maxCLevel() : nil
    }
}

/// A compressor bound to one codec and level, owning its reusable context.
final class Compressor {
    let codec: Codec
    let level: Int32
    private let cctx: OpaquePointer?

    init(codec: Codec, level: Int32) {
        self.codec = codec
        self.level = level
        cctx = codec == .zstd ? ZSTD_createCCtx() : nil
    }

    deinit { if let cctx { ZSTD_freeCCtx(cctx) } }

    /// Worst-case output size for `n` input bytes.
    func bound(_ n: Int) -> Int {
        switch codec {
        case .none: n
        case .zstd: Int(ZSTD_compressBound(n))
        case .lz4: Int(LZ4_compressBound(Int32(n)))
        }
    }

    /// Compresses `src` into `dst` (at least `bound(src.count)` bytes); returns the stored length.
    func compress(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawPointer, capacity: Int) throws -> Int {
        switch codec {
        case .none:
            dst.copyMemory(from: src.baseAddress!, byteCount: src.count)
            return src.count
        case .zstd:
            let n = ZSTD_compressCCtx(cctx, dst, capacity, src.baseAddress, src.count, level)
            if ZSTD_isError(n) != 0 { throw TraceError.codec("zstd: " + String(cString: ZSTD_getErrorName(n))) }
            return n
        case .lz4:
            let n = LZ4_compress_default(src.baseAddress?.assumingMemoryBound(to: CChar.self), dst.assumingMemoryBound(to: CChar.self), Int32(src.count), Int32(capacity))
            if n <= 0 { throw TraceError.codec("lz4 compression failed") }
            return Int(n)
        }
    }
}

/// A decompressor with a reusable context; output sizes are bounded by the caller.
final class Decompressor {
    private let dctx: OpaquePointer? = ZSTD_createDCtx()

    deinit { ZSTD_freeDCtx(dctx) }

    /// Decompresses exactly `rawLength` bytes or reports why not.
    func decompress(codec: Codec, _ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawPointer, rawLength: Int) -> String? {
        switch codec {
        case .none:
            guard src.count == rawLength else { return "stored length \(src.count) differs from raw length \(rawLength)" }
            if rawLength > 0 { dst.copyMemory(from: src.baseAddress!, byteCount: rawLength) }
            return nil
        case .zstd:
            let n = ZSTD_decompressDCtx(dctx, dst, rawLength, src.baseAddress, src.count)
            if ZSTD_isError(n) != 0 { return "zstd: " + String(cString: ZSTD_getErrorName(n)) }
            return n == rawLength ? nil : "zstd produced \(n) bytes, expected \(rawLength)"
        case .lz4:
            let n = LZ4_decompress_safe(src.baseAddress?.assumingMemoryBound(to: CChar.self), dst.assumingMemoryBound(to: CChar.self), Int32(src.count), Int32(rawLength))
            return Int(n) == rawLength ? nil : "lz4 could not decode the block (result \(n))"
        }
    }
}

/// The XOR-with-previous filter (SPEC.md "Event block filter"). Bytes 8..<12 of
/// each record (type and size) are left as they are so a decoder can walk the
/// filtered records; every other byte is XORed with the same byte of the
/// previous record whose type has the same low 6 bits, over their common length.
enum XorFilter {
    static let classes = 64

    @inline(__always)
    static func xorRecord(_ dst: UnsafeMutableRawPointer, _ src: UnsafeRawPointer, _ prev: UnsafeRawPointer, count n: Int) {
        // Bytes 0..<8: the timestamp.
        if n >= 8 {
            dst.storeBytes(of: src.loadUnaligned(as: UInt64.self) ^ prev.loadUnaligned(as: UInt64.self), as: UInt64.self)
        } else {
            for j in 0..<n { dst.storeBytes(of: src.load(fromByteOffset: j, as: UInt8.self) ^ prev.load(fromByteOffset: j, as: UInt8.self), toByteOffset: j, as: UInt8.self) }
            return
        }
        var j = 12
        while j + 8 <= n {
            let v = src.loadUnaligned(fromByteOffset: j, as: UInt64.self) ^ prev.loadUnaligned(fromByteOffset: j, as: UInt64.self)
            dst.storeBytes(of: v, toByteOffset: j, as: UInt64.self)
            j += 8
        }
        while j < n {
            dst.storeBytes(of: src.load(fromByteOffset: j, as: UInt8.self) ^ prev.load(fromByteOffset: j, as: UInt8.self), toByteOffset: j, as: UInt8.self)
            j += 1
        }
    }

    /// Filters `count` bytes of whole records from `src` into `dst`.
    static func encode(_ src: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer, count: Int) {
        var prevOffset = [Int](repeating: -1, count: classes)
        var prevSize = [Int](repeating: 0, count: classes)
        dst.copyMemory(from: src, byteCount: count)
        var o = 0
        while o + 12 <= count {
            let type = Int(src.loadUnaligned(fromByteOffset: o + 8, as: UInt16.self)) & (classes - 1)
            let size = Int(src.loadUnaligned(fromByteOffset: o + 10, as: UInt16.self))
            guard size >= 12, o + size <= count else { return }
            let p = prevOffset[type]
            if p >= 0 {
                xorRecord(dst + o, src + o, src + p, count: min(size, prevSize[type]))
            }
            prevOffset[type] = o
            prevSize[type] = size
            o += size
        }
    }

    /// Reverses `encode` in place. Returns the offset of the first record that
    /// does not fit, or nil when every record was whole.
    static func decode(_ buf: UnsafeMutableRawPointer, count: Int) -> Int? {
        var prevOffset = [Int](repeating: -1, count: classes)
        var prevSize = [Int](repeating: 0, count: classes)
        var o = 0
        while o < count {
            guard o + 12 <= count else { return o }
            let type = Int(buf.loadUnaligned(fromByteOffset: o + 8, as: UInt16.self)) & (classes - 1)
            let size = Int(buf.loadUnaligned(fromByteOffset: o + 10, as: UInt16.self))
            guard size >= 24, o + size <= count else { return o }
            let p = prevOffset[type]
            if p >= 0 {
                xorRecord(buf + o, buf + o, UnsafeRawPointer(buf + p), count: min(size, prevSize[type]))
            }
            prevOffset[type] = o
            prevSize[type] = size
            o += size
        }
        return nil
    }
}
