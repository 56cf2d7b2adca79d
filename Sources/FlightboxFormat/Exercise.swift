#if canImport(Glibc)
import Glibc
#endif
import CFlightboxSys
import FlightboxEvents

extension TraceReader {
    /// Reads everything a trace holds the way the tools do (every event,
    /// every field, a time window, the metadata, what `inspect` and `repair`
    /// compute) and returns a digest. The fuzzers call it on hostile input: it
    /// must return, whatever the bytes, and it traps on purpose when the
    /// reader breaks its own promises (a sequence number read twice, counts
    /// that disagree), so a silent wrong answer is a finding too.
    public static func exercise(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        guard let reader = try? TraceReader(bytes: bytes, name: "<fuzz>") else { return 0 }
        var digest: UInt64 = 0
        var seen = Set<UInt64>()
        var decoded: UInt64 = 0
        reader.forEachEvent { e in
            digest &+= UInt64(e.json().serialized().utf8.count)
            digest &+= UInt64(e.text(ts: "", comm: nil).utf8.count)
            precondition(seen.insert(e.sequence).inserted, "sequence number \(e.sequence) read twice")
            decoded += 1
        }
        precondition(decoded <= reader.eventCount, "\(decoded) records read, \(reader.eventCount) counted")
        // What repair does: blocks in sequence order, numbers only growing.
        var next: UInt64 = 0
        var first = true
        for entry in reader.eventBlocks.sorted(by: { ($0.firstSequence, $0.offset) < ($1.firstSequence, $1.offset) }) {
            reader.decodeBlock(entry) { e in
                precondition(first || e.sequence >= next, "repair would renumber: \(e.sequence) after \(next)")
                first = false
                next = e.sequence &+ 1
            }
        }
        if let lo = reader.firstTimestamp, let hi = reader.lastTimestamp {
            precondition(lo <= hi, "time range \(lo)...\(hi) runs backwards")
            digest &+= UInt64(formatDuration(hi - lo).utf8.count)
            reader.forEachEvent(from: lo + (hi - lo) / 2, to: hi) { digest &+= $0.timestamp }
        }
        digest &+= reader.sequenceGaps.reduce(0) { $0 &+ $1.missing }
        digest &+= UInt64(reader.metadata.json.serialized().utf8.count)
        digest &+= UInt64(reader.snapshot?.processes.count ?? 0)
        digest &+= UInt64(reader.problems.count)
        switch reader.readCheckpoint() {
        case .success(let b): digest &+= UInt64(b.count)
        case .failure(let p): digest &+= UInt64(p.description.utf8.count)
        case nil: break
        }
        return digest
    }
}

/// Damages traces the way the reliability campaign did, for the fuzzers:
/// bytes flipped, cut, inserted; whole blocks duplicated, dropped, swapped;
/// block headers and index entries rewritten with boundary values; and, most
/// of the time, every checksum made valid again so that what is tested is the
/// reader's logic behind its CRCs.
public enum TraceMutator {
    static let interesting: [UInt64] = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000_0000_0000, .max, .max - 1, 24, 72, 4096]

    /// (offset, length) of each whole block, walking the headers.
    static func blocks(_ b: [UInt8]) -> [(offset: Int, length: Int, type: UInt16)] {
        var out: [(Int, Int, UInt16)] = []
        var o = TraceLayout.headerSize
        b.withUnsafeBytes { p in
            while o + TraceLayout.blockHeaderSize <= p.count, p.loadUnaligned(fromByteOffset: o, as: UInt32.self) == TraceLayout.blockSync {
                let n = TraceLayout.blockHeaderSize + Int(p.loadUnaligned(fromByteOffset: o + 8, as: UInt32.self))
                guard o + n <= p.count else { break }
                out.append((o, n, p.loadUnaligned(fromByteOffset: o + 4, as: UInt16.self)))
                o += n
            }
        }
        return out
    }

    /// Recomputes every block header and payload CRC, and the footer's.
    public static func fixChecksums(_ b: inout [UInt8]) {
        b.withUnsafeMutableBytes { p in
            guard let base = p.baseAddress, p.count >= TraceLayout.headerSize else { return }
            var o = TraceLayout.headerSize
            while o + TraceLayout.blockHeaderSize <= p.count {
                guard base.loadUnaligned(fromByteOffset: o, as: UInt32.self) == TraceLayout.blockSync else { break }
                let stored = Int(base.loadUnaligned(fromByteOffset: o + 8, as: UInt32.self))
                let end = o + TraceLayout.blockHeaderSize + stored
                if stored <= p.count, end <= p.count {
                    let crc = fb_crc32c(0, base + o + TraceLayout.blockHeaderSize, stored)
                    base.storeBytes(of: crc, toByteOffset: o + 44, as: UInt32.self)
                }
                base.storeBytes(of: fb_crc32c(0, base + o, 52), toByteOffset: o + 52, as: UInt32.self)
                guard end <= p.count else { break }
                o = end
            }
            if p.count >= 32 + TraceLayout.footerSize {
                let f = base + p.count - TraceLayout.footerSize
                if memcmp(f, TraceLayout.footerMagic, 8) == 0 {
                    f.storeBytes(of: fb_crc32c(0, f, 28), toByteOffset: 28, as: UInt32.self)
                }
            }
        }
    }

    static func put(_ b: inout [UInt8], _ at: Int, _ v: UInt64, width: Int) {
        for k in 0..<width where at + k < b.count { b[at + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt64(k))) }
    }

    /// One to four mutations of `input`.
    public static func mutate<R: RandomNumberGenerator>(_ input: [UInt8], using rng: inout R) -> [UInt8] {
        var b = input
        var structural = false
        for _ in 0..<Int.random(in: 1...4, using: &rng) where !b.isEmpty {
            let at = Int.random(in: 0..<b.count, using: &rng)
            switch Int.random(in: 0..<12, using: &rng) {
            case 0: b[at] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
            case 1: b[at] = UInt8.random(in: 0...255, using: &rng)
            case 2: put(&b, at, interesting.randomElement(using: &rng)!, width: [1, 2, 4, 8].randomElement(using: &rng)!)
            case 3: b.removeSubrange(at..<min(b.count, at + Int.random(in: 1...64, using: &rng)))
            case 4: b.insert(contentsOf: (0..<Int.random(in: 1...32, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: at)
            case 5: b = Array(b.prefix(at))
            case 6:
                let from = Int.random(in: 0..<b.count, using: &rng)
                b.insert(contentsOf: b[from..<min(b.count, from + Int.random(in: 1...256, using: &rng))], at: at)
            default:
                // Whole blocks: the campaign's duplicated, dropped and reordered blocks.
                let list = blocks(b)
                guard let x = list.randomElement(using: &rng) else { continue }
                structural = true
                let bytesOfX = Array(b[x.offset..<(x.offset + x.length)])
                switch Int.random(in: 0..<5, using: &rng) {
                case 0: // duplicate it, right after itself or elsewhere
                    let dst = Bool.random(using: &rng) ? x.offset + x.length : (list.randomElement(using: &rng)?.offset ?? x.offset)
                    b.insert(contentsOf: bytesOfX, at: dst)
                case 1: // drop it
                    b.removeSubrange(x.offset..<(x.offset + x.length))
                case 2: // swap it with another
                    guard let y = list.randomElement(using: &rng), y.offset > x.offset + x.length - 1 else { continue }
                    let bytesOfY = Array(b[y.offset..<(y.offset + y.length)])
                    b.replaceSubrange(y.offset..<(y.offset + y.length), with: bytesOfX)
                    b.replaceSubrange(x.offset..<(x.offset + x.length), with: bytesOfY)
                case 3: // a header field: timestamps, first sequence, count, lengths
                    let field = [(8, 4), (12, 4), (16, 8), (24, 8), (32, 8), (40, 4)].randomElement(using: &rng)!
                    put(&b, x.offset + field.0, interesting.randomElement(using: &rng)! &+ UInt64.random(in: 0...2, using: &rng), width: field.1)
                default: // an index entry: rewritten, dropped or repeated
                    guard let idx = list.last(where: { $0.type == BlockType.index.rawValue }), idx.length >= TraceLayout.blockHeaderSize + TraceLayout.indexEntrySize else { continue }
                    let entries = (idx.length - TraceLayout.blockHeaderSize) / TraceLayout.indexEntrySize
                    let e = idx.offset + TraceLayout.blockHeaderSize + Int.random(in: 0..<entries, using: &rng) * TraceLayout.indexEntrySize
                    switch Int.random(in: 0..<3, using: &rng) {
                    case 0:
                        let field = [(0, 8), (8, 8), (16, 8), (24, 8), (32, 4)].randomElement(using: &rng)!
                        let v = Bool.random(using: &rng) ? interesting.randomElement(using: &rng)! : UInt64(list.randomElement(using: &rng)!.offset)
                        put(&b, e + field.0, v, width: field.1)
                    case 1:
                        b.removeSubrange(e..<(e + TraceLayout.indexEntrySize))
                        put(&b, idx.offset + 8, UInt64(idx.length - TraceLayout.blockHeaderSize - TraceLayout.indexEntrySize), width: 4)
                        put(&b, idx.offset + 12, UInt64(idx.length - TraceLayout.blockHeaderSize - TraceLayout.indexEntrySize), width: 4)
                    default:
                        b.insert(contentsOf: b[e..<(e + TraceLayout.indexEntrySize)], at: e)
                        put(&b, idx.offset + 8, UInt64(idx.length - TraceLayout.blockHeaderSize + TraceLayout.indexEntrySize), width: 4)
                        put(&b, idx.offset + 12, UInt64(idx.length - TraceLayout.blockHeaderSize + TraceLayout.indexEntrySize), width: 4)
                    }
                }
            }
        }
        if structural || rng.next() & 3 != 0 { fixChecksums(&b) }
        return b
    }
}
