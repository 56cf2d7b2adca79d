#if canImport(Glibc)
import Glibc
#endif
import CFlightboxSys
import FlightboxEvents

/// Something wrong in a trace, and where: the reader reports it and goes on
/// with whatever is intact.
public struct TraceProblem: Hashable, Sendable, CustomStringConvertible, Error {
    public var offset: UInt64
    public var message: String
    public var description: String { "at byte \(offset): \(message)" }
}

/// The bytes of a trace: a read-only mapping of the file (unmapped when the
/// owner goes away), or a copy in memory.
final class MappedFile {
    let base: UnsafeRawPointer?
    let size: Int
    private let owned: Bool

    init(copying bytes: UnsafeRawBufferPointer) {
        size = bytes.count
        owned = true
        if bytes.count > 0 {
            let p = UnsafeMutableRawPointer.allocate(byteCount: bytes.count, alignment: 16)
            p.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            base = UnsafeRawPointer(p)
        } else {
            base = nil
        }
    }

    init(path: String) throws {
        owned = false
        // O_NONBLOCK: opening a FIFO without a writer would otherwise block
        // forever; it changes nothing for a regular file, the only kind read.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw TraceError.cannotOpen(path: path, errno: errno) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw TraceError.cannotOpen(path: path, errno: errno) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw TraceError.notRegularFile(path: path, kind: fileKindName(st.st_mode)) }
        size = Int(st.st_size)
        if size == 0 {
            base = nil
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw TraceError.cannotOpen(path: path, errno: errno) }
        base = UnsafeRawPointer(p)
    }

    deinit {
        guard let base else { return }
        if owned { base.deallocate() } else { munmap(UnsafeMutableRawPointer(mutating: base), size) }
    }
}

/// Reads a trace written by `TraceWriter`, whole or cut short or damaged:
/// with a valid footer it uses the index; otherwise it walks the blocks and
/// stops at the first one the file does not hold completely.
public final class TraceReader {
    public let path: String
    private let file: MappedFile
    public let versionMajor: UInt16
    public let versionMinor: UInt16
    /// The header's "being written" flag was cleared and the footer is valid.
    public let closedCleanly: Bool
    public let metadata: TraceMetadata
    public let snapshot: ProcessSnapshot?
    /// The detector checkpoint block (type 5) before the first event block, if any; `readCheckpoint()` decodes it.
    public let checkpoint: CheckpointBlock?
    /// Event blocks in file order (from the index, or from a scan).
    public let eventBlocks: [IndexEntry]
    /// The index came from the footer rather than a scan.
    public let usedIndex: Bool
    /// Offset just past the last whole block.
    public let endOfData: UInt64
    public var fileSize: Int { file.size }
    /// What was found wrong so far; decoding blocks can add to it.
    public private(set) var problems: [TraceProblem] = []
    /// Problems already reported, so each is reported once (in O(1)).
    private var reported = Set<TraceProblem>()

    private let decompressor = Decompressor()
    /// Set when the file's schema differs from this build's.
    private let adapter: SchemaAdapter?
    /// Scratch for one adapted record; allocated only when adapting.
    private var adaptedBuffer: UnsafeMutableRawPointer?
    private var buffer: UnsafeMutableRawPointer?
    private var bufferCapacity = 0

    public convenience init(path: String) throws {
        try self.init(path: path, file: MappedFile(path: path))
    }

    deinit {
        // A reader the flight recorder opens for every dump must not leave
        // its decode buffers (1 MiB and more) behind.
        buffer?.deallocate()
        adaptedBuffer?.deallocate()
    }

    /// Reads a trace held in memory; `name` stands for the path in messages.
    public convenience init(bytes: UnsafeRawBufferPointer, name: String = "<memory>") throws {
        try self.init(path: name, file: MappedFile(copying: bytes))
    }

    private init(path: String, file: MappedFile) throws {
        self.path = path
        self.file = file
        guard let base = file.base, file.size >= TraceLayout.headerSize,
              memcmp(base, TraceLayout.magic, 8) == 0 else { throw TraceError.notATrace(path: path) }
        versionMajor = UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
        versionMinor = UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 10, as: UInt16.self))
        guard versionMajor == TraceLayout.versionMajor else {
            throw TraceError.unsupportedVersion(path: path, major: versionMajor, minor: versionMinor)
        }
        let headerCrc = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 28, as: UInt32.self))
        let headerSize = Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
        guard fb_crc32c(0, base, 28) == headerCrc else { throw TraceError.corruptHeader(path: path, reason: "checksum mismatch") }
        guard headerSize >= TraceLayout.headerSize, headerSize <= file.size else {
            throw TraceError.corruptHeader(path: path, reason: "header size \(headerSize)")
        }
        let flags = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 16, as: UInt32.self))

        var problems: [TraceProblem] = []
        var metadata: TraceMetadata?
        var snapshot: ProcessSnapshot?
        let footer = TraceReader.readFooter(base: base, size: file.size, problems: &problems)
        var snapshotTried = false
        var checkpoint: CheckpointBlock?

        // Walk the chain of block headers from the start, always: the blocks
        // are the truth, the index only a shortcut that must agree with them
        // (SPEC "Reading"). Headers are 56 bytes each and checked by their own
        // CRC; payloads are checked when decoded.
        var chain: [IndexEntry] = []
        var offset = headerSize
        var end = offset
        var metadataError: String?
        let dataEnd = footer?.index.map { Int($0.offset) } ?? file.size
        scan: while offset < file.size {
            if file.size - offset == TraceLayout.footerSize, memcmp(base + offset, TraceLayout.footerMagic, 8) == 0 {
                break scan // the footer of a cleanly closed file
            }
            switch TraceReader.blockAt(base: base, size: file.size, offset: offset) {
            case .success(let h):
                let next = offset + TraceLayout.blockHeaderSize + Int(h.storedLength)
                switch BlockType(rawValue: h.type) {
                case .metadata where metadata == nil:
                    if let text = TraceReader.payloadText(base: base, offset: offset, header: h, decompressor: decompressor, problems: &problems) {
                        do {
                            metadata = TraceMetadata(json: try JSONParser.parse(text))
                            if metadata == nil { metadataError = "the metadata block at byte \(offset) lacks the clock mapping" }
                        } catch {
                            metadataError = "the metadata block at byte \(offset) is not valid JSON: \(error)"
                        }
                    }
                case .processSnapshot where !snapshotTried:
                    // The first one only (SPEC): later ones are not tried, so
                    // damaged copies cannot each cost a decompression.
                    snapshotTried = true
                    if let text = TraceReader.payloadText(base: base, offset: offset, header: h, decompressor: decompressor, problems: &problems),
                       let json = try? JSONParser.parse(text) {
                        snapshot = ProcessSnapshot(json: json)
                    }
                case .checkpoint where checkpoint == nil && chain.isEmpty:
                    // Only before the first event block (SPEC): a checkpoint is
                    // the detectors' state before the file's first event.
                    checkpoint = CheckpointBlock(offset: UInt64(offset), timestamp: h.firstTimestamp, storedLength: h.storedLength, rawLength: h.rawLength)
                case .events:
                    chain.append(TraceReader.entry(h, at: offset, problems: &problems))
                default:
                    break // unknown or repeated block types are skipped
                }
                offset = next
                end = next
            case .failure(let f):
                if case .truncated(let need) = f {
                    // Cut short, unless a valid block follows: then this
                    // header's length lies, and what follows is still read.
                    guard let resync = TraceReader.resync(base: base, size: file.size, from: offset + 1) else {
                        problems.append(TraceProblem(offset: UInt64(offset), message: "the file ends inside a block (\(file.size - offset) of \(need) bytes present): the trace was cut short; everything before this offset was read"))
                        break scan
                    }
                    problems.append(TraceProblem(offset: UInt64(offset), message: "block claims \(need) bytes, past the end of the file, yet a valid block follows: skipped \(resync - offset) bytes to it"))
                    offset = resync
                    continue scan
                }
                // Damaged header: look for the next block that verifies.
                guard let resync = TraceReader.resync(base: base, size: file.size, from: offset + 1) else {
                    problems.append(TraceProblem(offset: UInt64(offset), message: "\(f); nothing readable after it (\(file.size - offset) bytes skipped)"))
                    break scan
                }
                problems.append(TraceProblem(offset: UInt64(offset), message: "\(f); skipped \(resync - offset) bytes to the next valid block"))
                offset = resync
            }
        }
        guard let metadata else {
            throw TraceError.missingMetadata(path: path, reason: metadataError ?? problems.first?.description ?? "no metadata block")
        }
        self.metadata = metadata
        self.snapshot = snapshot
        self.checkpoint = checkpoint
        adapter = SchemaAdapter(fileSchema: metadata.schema)

        var blocks = chain
        var notIndexed: [UInt64] = []
        if let index = footer?.index {
            (blocks, notIndexed) = TraceReader.reconcile(chain: chain, index: index.entries, base: base, size: file.size, dataEnd: dataEnd, problems: &problems)
        }
        eventBlocks = TraceReader.checkSequences(blocks, problems: &problems) { entry in
            // Used only to choose between copies of a block: rare, and bounded by the bytes.
            guard case .success(let h) = TraceReader.blockAt(base: base, size: file.size, offset: Int(entry.offset)) else { return false }
            return crc32c(UnsafeRawBufferPointer(start: base + Int(entry.offset) + TraceLayout.blockHeaderSize, count: Int(h.storedLength))) == h.payloadChecksum
        }
        let read = Set(eventBlocks.map(\.offset))
        let unindexed = notIndexed.filter { read.contains($0) }
        if let first = unindexed.first {
            problems.append(TraceProblem(offset: first, message: "\(unindexed.count) event block(s) from byte \(first) on are not in the index; read anyway"))
        }
        usedIndex = footer?.index != nil
        endOfData = footer != nil ? UInt64(file.size) : UInt64(end)
        maxRecords = TraceReader.maxRecords(fileSize: file.size)
        closedCleanly = flags & TraceLayout.flagWriting == 0 && footer != nil
        if flags & TraceLayout.flagWriting != 0 {
            problems.insert(TraceProblem(offset: 16, message: "the trace was not closed cleanly (the recorder stopped while writing); read up to byte \(endOfData)"), at: 0)
        }
        self.problems = problems
    }

    /// The index entry a block header makes. A header may claim at most as
    /// many records as its raw payload can hold (24 bytes each): more is
    /// reported and capped, so no count a reader reports exceeds what the
    /// bytes in the file could hold.
    static func entry(_ h: BlockHeader, at offset: Int, problems: inout [TraceProblem]) -> IndexEntry {
        let most = UInt32(Int(h.rawLength) / TraceLayout.minimumRecord)
        if h.count > most {
            problems.append(TraceProblem(offset: UInt64(offset), message: "event block claims \(h.count) records, more than its \(h.rawLength) raw bytes can hold; read as at most \(most)"))
        }
        return IndexEntry(offset: UInt64(offset), firstTimestamp: h.firstTimestamp, lastTimestamp: h.lastTimestamp,
                          firstSequence: h.firstSequence, count: min(h.count, most))
    }

    /// Merges the index into the blocks the walk found. Blocks win: an entry
    /// that disagrees with the block it points at is reported and the block's
    /// own header used; an entry pointing where no event block starts is
    /// reported and ignored; a block the index leaves out is reported and read.
    /// Each block appears once, in file order, whatever the index repeats.
    static func reconcile(chain: [IndexEntry], index: [IndexEntry], base: UnsafeRawPointer, size: Int, dataEnd: Int,
                          problems: inout [TraceProblem]) -> (blocks: [IndexEntry], notIndexed: [UInt64]) {
        var byOffset: [UInt64: IndexEntry] = [:]
        for b in chain { byOffset[b.offset] = b }
        var indexed = Set<UInt64>()
        // A hostile index can hold millions of entries: report the first few of each kind, then a count.
        var counts: [String: Int] = [:]
        func note(_ kind: String, _ offset: UInt64, _ message: @autoclosure () -> String) {
            counts[kind, default: 0] += 1
            if counts[kind]! <= 4 { problems.append(TraceProblem(offset: offset, message: message())) }
        }
        for (i, entry) in index.enumerated() {
            if !indexed.insert(entry.offset).inserted {
                note("repeated", entry.offset, "index entry \(i) repeats the block at byte \(entry.offset); read once")
                continue
            }
            if let block = byOffset[entry.offset] {
                if block != entry {
                    note("disagreeing", entry.offset, "index entry \(i) disagrees with the block header at byte \(entry.offset) (index: seq \(entry.firstSequence) count \(entry.count) ts \(entry.firstTimestamp)...\(entry.lastTimestamp); block: seq \(block.firstSequence) count \(block.count) ts \(block.firstTimestamp)...\(block.lastTimestamp)); the block header wins")
                }
                continue
            }
            // Not on the walk: a block the walk could not reach (hidden by a
            // damaged header), or nothing at all.
            guard entry.offset < UInt64(dataEnd), case .success(let h) = blockAt(base: base, size: size, offset: Int(entry.offset)),
                  h.type == BlockType.events.rawValue else {
                note("nowhere", entry.offset, "index entry \(i) points at byte \(entry.offset), where no event block starts; ignored")
                continue
            }
            note("hidden", entry.offset, "index entry \(i) names an event block at byte \(entry.offset) that the walk of the file did not reach; read")
            byOffset[entry.offset] = TraceReader.entry(h, at: Int(entry.offset), problems: &problems)
        }
        for (kind, n) in counts.sorted(by: { $0.key < $1.key }) where n > 4 {
            problems.append(TraceProblem(offset: UInt64(dataEnd), message: "\(n - 4) more index entries like the above (\(kind))"))
        }
        // Blocks the index leaves out are reported once their fate is known
        // (a duplicate among them is reported as that, not twice).
        return (byOffset.values.sorted { $0.offset < $1.offset }, chain.filter { !indexed.contains($0.offset) }.map(\.offset))
    }

    /// Gives every sequence number to one record (SPEC "Reading", 5-6).
    /// Blocks whose range runs past 2^64 are dropped; of blocks starting at
    /// the same number, one is kept (one whose payload checksum verifies,
    /// then the one claiming most records, then the first in the file) and
    /// the others are duplicates; each kept block is read up to where the
    /// next one starts, as a writer numbers them. Numbers are never
    /// reassigned: they are the records' identity.
    static func checkSequences(_ blocks: [IndexEntry], problems: inout [TraceProblem], verifies: (IndexEntry) -> Bool) -> [IndexEntry] {
        var ok: [IndexEntry] = []
        ok.reserveCapacity(blocks.count)
        for var b in blocks {
            if b.lastTimestamp < b.firstTimestamp {
                problems.append(TraceProblem(offset: b.offset, message: "event block claims last_ts \(b.lastTimestamp) before first_ts \(b.firstTimestamp); its records' own times are used"))
                swap(&b.firstTimestamp, &b.lastTimestamp)
            }
            if b.firstSequence.addingReportingOverflow(UInt64(b.count)).overflow {
                problems.append(TraceProblem(offset: b.offset, message: "event block claims sequence numbers \(b.firstSequence)+\(b.count), past 2^64; its \(b.count) records are not read"))
                continue
            }
            ok.append(b)
        }
        let bySequence = ok.sorted { ($0.firstSequence, $0.offset) < ($1.firstSequence, $1.offset) }
        var kept: [IndexEntry] = []
        var i = 0
        while i < bySequence.count {
            var j = i + 1
            while j < bySequence.count, bySequence[j].firstSequence == bySequence[i].firstSequence { j += 1 }
            var group = Array(bySequence[i..<j])
            if group.count > 1 {
                let good = group.map(verifies)
                let order = group.indices.sorted { a, b in
                    (good[a] ? 0 : 1, UInt64.max - UInt64(group[a].count), group[a].offset) < (good[b] ? 0 : 1, UInt64.max - UInt64(group[b].count), group[b].offset)
                }
                let keep = group[order[0]]
                for k in order.dropFirst() {
                    problems.append(TraceProblem(offset: group[k].offset, message: "event block repeats sequence numbers from \(group[k].firstSequence), already read from the block at byte \(keep.offset) (a duplicated block); skipped"))
                }
                group = [keep]
            }
            kept.append(group[0])
            i = j
        }
        // A block is read up to where the next one starts.
        for k in kept.indices.dropLast() {
            let next = kept[k + 1].firstSequence
            if kept[k].firstSequence + UInt64(kept[k].count) > next {
                problems.append(TraceProblem(offset: kept[k].offset, message: "event block's sequence numbers \(kept[k].firstSequence)+\(kept[k].count) overlap the next block's, which starts at \(next); read up to there"))
                kept[k].count = UInt32(next - kept[k].firstSequence)
            }
        }
        let limits = Dictionary(kept.map { ($0.offset, $0) }, uniquingKeysWith: { a, _ in a })
        // Back in file order: the stream's order.
        return ok.compactMap { limits[$0.offset] }
    }

    /// The most records a file of this size could hold (every byte stored at
    /// the largest ratio a writer may use, 24 bytes a record): a bound on any
    /// count of missing records a reader reports.
    static func maxRecords(fileSize: Int) -> UInt64 {
        UInt64(TraceLayout.maxRawLength(stored: fileSize) / TraceLayout.minimumRecord)
    }

    // MARK: Footer and index

    /// A footer whose checksum is valid, and the index it points at when that
    /// block is whole and valid too.
    struct Footer {
        var index: (offset: UInt64, entries: [IndexEntry])?
    }

    private static func readFooter(base: UnsafeRawPointer, size: Int, problems: inout [TraceProblem]) -> Footer? {
        guard size >= TraceLayout.headerSize + TraceLayout.footerSize else { return nil }
        let f = base + (size - TraceLayout.footerSize)
        guard memcmp(f, TraceLayout.footerMagic, 8) == 0 else { return nil }
        guard fb_crc32c(0, f, 28) == UInt32(littleEndian: f.loadUnaligned(fromByteOffset: 28, as: UInt32.self)) else {
            problems.append(TraceProblem(offset: UInt64(size - TraceLayout.footerSize), message: "footer checksum mismatch; scanning blocks instead"))
            return nil
        }
        let indexOffset = UInt64(littleEndian: f.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        guard indexOffset >= UInt64(TraceLayout.headerSize), indexOffset < UInt64(size),
              case .success(let h) = blockAt(base: base, size: size, offset: Int(indexOffset)),
              h.type == BlockType.index.rawValue, h.codec == Codec.none.rawValue,
              h.rawLength == h.storedLength, Int(h.storedLength) % TraceLayout.indexEntrySize == 0 else {
            problems.append(TraceProblem(offset: indexOffset, message: "index block missing or damaged; scanning blocks instead"))
            return Footer(index: nil)
        }
        let p = base + Int(indexOffset) + TraceLayout.blockHeaderSize
        guard fb_crc32c(0, p, Int(h.storedLength)) == h.payloadChecksum else {
            problems.append(TraceProblem(offset: indexOffset, message: "index checksum mismatch; scanning blocks instead"))
            return Footer(index: nil)
        }
        var entries: [IndexEntry] = []
        let n = Int(h.storedLength) / TraceLayout.indexEntrySize
        entries.reserveCapacity(n)
        for i in 0..<n {
            let e = p + i * TraceLayout.indexEntrySize
            // Entries pointing nowhere (past the index included) are judged one by one in `reconcile`.
            entries.append(IndexEntry(
                offset: UInt64(littleEndian: e.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                firstTimestamp: UInt64(littleEndian: e.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
                lastTimestamp: UInt64(littleEndian: e.loadUnaligned(fromByteOffset: 16, as: UInt64.self)),
                firstSequence: UInt64(littleEndian: e.loadUnaligned(fromByteOffset: 24, as: UInt64.self)),
                count: UInt32(littleEndian: e.loadUnaligned(fromByteOffset: 32, as: UInt32.self))))
        }
        return Footer(index: (indexOffset, entries))
    }

    // MARK: Blocks

    enum BlockFailure: Error, CustomStringConvertible {
        case truncated(need: Int)
        case noSync
        case badHeaderChecksum
        case hostileSize(UInt32, UInt32)

        var description: String {
            switch self {
            case .truncated(let n): "block needs \(n) bytes past the end of the file"
            case .noSync: "no block marker (FBLK) where a block should start"
            case .badHeaderChecksum: "block header checksum mismatch"
            case .hostileSize(let s, let r): "block claims \(s) stored / \(r) raw bytes, over the \(TraceLayout.maxBlockBytes)-byte limit"
            }
        }
    }

    static func blockAt(base: UnsafeRawPointer, size: Int, offset: Int) -> Result<BlockHeader, BlockFailure> {
        guard offset + TraceLayout.blockHeaderSize <= size else { return .failure(.truncated(need: TraceLayout.blockHeaderSize)) }
        switch BlockHeader.decode(base + offset) {
        case .failure(.noSync): return .failure(.noSync)
        case .failure(.badChecksum): return .failure(.badHeaderChecksum)
        case .success(let h):
            guard Int(h.storedLength) <= TraceLayout.maxBlockBytes, Int(h.rawLength) <= TraceLayout.maxBlockBytes else {
                return .failure(.hostileSize(h.storedLength, h.rawLength))
            }
            let need = TraceLayout.blockHeaderSize + Int(h.storedLength)
            guard offset + need <= size else { return .failure(.truncated(need: need)) }
            return .success(h)
        }
    }

    static func resync(base: UnsafeRawPointer, size: Int, from: Int) -> Int? {
        var o = from
        while o + TraceLayout.blockHeaderSize <= size {
            if base.loadUnaligned(fromByteOffset: o, as: UInt32.self) == TraceLayout.blockSync.littleEndian,
               case .success = blockAt(base: base, size: size, offset: o) {
                return o
            }
            o += 1
        }
        return nil
    }

    private static func payloadText(base: UnsafeRawPointer, offset: Int, header h: BlockHeader, decompressor: Decompressor, problems: inout [TraceProblem]) -> [UInt8]? {
        guard Int(h.rawLength) <= TraceLayout.maxRawLength(stored: Int(h.storedLength)) else {
            problems.append(TraceProblem(offset: UInt64(offset), message: "block claims \(h.rawLength) raw bytes from \(h.storedLength) stored, beyond the ratio a writer may produce; not decoded"))
            return nil
        }
        let payload = UnsafeRawBufferPointer(start: base + offset + TraceLayout.blockHeaderSize, count: Int(h.storedLength))
        guard crc32c(payload) == h.payloadChecksum else {
            problems.append(TraceProblem(offset: UInt64(offset), message: "block payload checksum mismatch (type \(h.type))"))
            return nil
        }
        guard let codec = Codec(rawValue: h.codec) else {
            problems.append(TraceProblem(offset: UInt64(offset), message: "unknown codec \(h.codec)"))
            return nil
        }
        var out = [UInt8](repeating: 0, count: Int(h.rawLength))
        let err = out.withUnsafeMutableBytes { decompressor.decompress(codec: codec, payload, into: $0.baseAddress ?? UnsafeMutableRawPointer(bitPattern: 1)!, rawLength: Int(h.rawLength)) }
        if let err {
            problems.append(TraceProblem(offset: UInt64(offset), message: err))
            return nil
        }
        return out
    }

    // MARK: Detector checkpoint

    /// Where a trace's detector checkpoint is.
    public struct CheckpointBlock: Sendable, Equatable {
        public var offset: UInt64
        /// The event time the live detectors had reached.
        public var timestamp: UInt64
        public var storedLength: UInt32
        public var rawLength: UInt32
    }

    /// The checkpoint's bytes, checked (payload CRC, codec, ratio) and
    /// decoded; or why not, in one line. nil when the trace has none.
    public func readCheckpoint() -> Result<[UInt8], TraceProblem>? {
        guard let c = checkpoint, let base = file.base else { return nil }
        guard case .success(let h) = TraceReader.blockAt(base: base, size: file.size, offset: Int(c.offset)) else {
            return .failure(TraceProblem(offset: c.offset, message: "the detector checkpoint block is damaged"))
        }
        var problems: [TraceProblem] = []
        guard let bytes = TraceReader.payloadText(base: base, offset: Int(c.offset), header: h, decompressor: decompressor, problems: &problems) else {
            return .failure(problems.first ?? TraceProblem(offset: c.offset, message: "the detector checkpoint block cannot be decoded"))
        }
        return .success(bytes)
    }

    // MARK: Events

    /// Event blocks whose time range overlaps [from, to] (both inclusive, nil = open).
    public func blocks(from: UInt64? = nil, to: UInt64? = nil) -> [IndexEntry] {
        eventBlocks.filter { e in
            (from.map { e.lastTimestamp >= $0 } ?? true) && (to.map { e.firstTimestamp <= $0 } ?? true)
        }
    }

    /// Calls `body` with every event in stream order whose timestamp lies in
    /// [from, to], reading only the blocks that overlap the window. Damaged
    /// blocks are skipped and reported in `problems`.
    public func forEachEvent(from: UInt64? = nil, to: UInt64? = nil, _ body: (Event) throws -> Void) rethrows {
        for entry in blocks(from: from, to: to) {
            try decodeBlock(entry) { e in
                let ts = e.timestamp
                if let from, ts < from { return }
                if let to, ts > to { return }
                try body(e)
            }
        }
    }

    /// Decodes one event block and calls `body` for each record in it. The
    /// block's own header is authoritative (its count and first sequence
    /// number); records past its count are reported, not delivered, because
    /// their numbers belong to the next block.
    public func decodeBlock(_ entry: IndexEntry, _ body: (Event) throws -> Void) rethrows {
        guard let base = file.base, let offset = Int(exactly: entry.offset) else { return }
        let h: BlockHeader
        switch TraceReader.blockAt(base: base, size: file.size, offset: offset) {
        case .success(let header): h = header
        case .failure(let f):
            report(offset, "event block unreadable: \(f)")
            return
        }
        guard h.type == BlockType.events.rawValue else { report(offset, "index points at a block of type \(h.type), not events"); return }
        let payload = UnsafeRawBufferPointer(start: base + offset + TraceLayout.blockHeaderSize, count: Int(h.storedLength))
        guard crc32c(payload) == h.payloadChecksum else {
            report(offset, "event block payload checksum mismatch: \(h.count) events (seq \(h.firstSequence)...) lost")
            return
        }
        guard let codec = Codec(rawValue: h.codec) else { report(offset, "unknown codec \(h.codec)"); return }
        guard let filter = BlockFilter(rawValue: h.filter) else { report(offset, "unknown block filter \(h.filter)"); return }
        let raw = Int(h.rawLength)
        guard raw <= TraceLayout.maxRawLength(stored: Int(h.storedLength)) else {
            report(offset, "event block claims \(raw) raw bytes from \(h.storedLength) stored, beyond the ratio a writer may produce; not decoded")
            return
        }
        let buf = ensureBuffer(raw)
        if let err = decompressor.decompress(codec: codec, payload, into: buf, rawLength: raw) {
            report(offset, "event block does not decode: \(err)")
            return
        }
        // Where the filter stopped is where the walk below stops: reported there, once.
        let filteredEnd = filter == .xorPrevious ? (XorFilter.decode(buf, count: raw) ?? raw) : raw
        // Read as many records as the block is read for (its header's count,
        // or fewer where the next block's numbers begin: `checkSequences`).
        let limit = min(h.count, entry.count)
        var o = 0
        var seq = h.firstSequence
        var seen: UInt32 = 0
        while o < raw {
            if seen == limit {
                report(offset, limit == h.count
                    ? "event block holds records past the \(h.count) its header counts (from payload byte \(o)); they are not read"
                    : "event block is read for its first \(limit) records (the next block's numbers begin there); the rest are not read")
                return
            }
            guard o < filteredEnd else {
                report(offset, "malformed record at payload byte \(o) of event block (seq \(seq)); the \(h.count - seen) records from it to the block's end are lost")
                return
            }
            var record = UnsafeRawBufferPointer(start: buf + o, count: filteredEnd - o)
            var stored = 0
            if let adapter {
                let adapted = adaptedBuffer ?? UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 16)
                adaptedBuffer = adapted
                // Records of another schema: take this one's length from its
                // header, then read it in this build's layout.
                let n = filteredEnd - o >= TraceLayout.minimumRecord ? Int(record.baseAddress!.loadUnaligned(fromByteOffset: 10, as: UInt16.self)) : 0
                let type = n > 0 ? record.baseAddress!.loadUnaligned(fromByteOffset: 8, as: UInt16.self) : 0
                if let fixed = adapter.fileFixedSize(type), n < fixed {
                    // Shorter than its type's fixed part in the file's own schema: it ends the block.
                    report(offset, "malformed record at payload byte \(o) of event block (seq \(seq)): \(n) bytes, below its type's \(fixed) in this file's schema; the \(h.count - seen) records from it to the block's end are lost")
                    return
                }
                if n >= TraceLayout.minimumRecord, n <= filteredEnd - o,
                   let m = adapter.adapt(UnsafeRawBufferPointer(start: buf + o, count: n), into: adapted) {
                    record = UnsafeRawBufferPointer(start: adapted, count: m)
                    stored = n
                }
            }
            guard let e = Event.validated(record, sequence: seq) else {
                report(offset, "malformed record at payload byte \(o) of event block (seq \(seq)); the \(h.count - seen) records from it to the block's end are lost")
                return
            }
            try body(e)
            o += stored > 0 ? stored : e.size
            guard seq < .max else { return } // an entry not from `eventBlocks` can start anywhere
            seq += 1
            seen += 1
        }
        if seen != limit { report(offset, "event block holds \(seen) records, its header says \(h.count)") }
    }

    /// Problems kept at most; beyond, they are counted in a last one.
    static let maxProblems = 1_000

    private func report(_ offset: Int, _ message: String) {
        let p = TraceProblem(offset: UInt64(offset), message: message)
        guard reported.insert(p).inserted else { return }
        if problems.count < TraceReader.maxProblems {
            problems.append(p)
        } else {
            droppedProblems += 1
            let summary = TraceProblem(offset: 0, message: "\(droppedProblems) more problems not listed")
            if problems.count == TraceReader.maxProblems { problems.append(summary) } else { problems[problems.count - 1] = summary }
        }
    }
    private var droppedProblems = 0

    private func ensureBuffer(_ n: Int) -> UnsafeMutableRawPointer {
        if n > bufferCapacity || buffer == nil {
            buffer?.deallocate()
            bufferCapacity = max(n, 1 << 20)
            buffer = .allocate(byteCount: bufferCapacity, alignment: 16)
        }
        return buffer!
    }

    /// Records missing between blocks, from gaps in the sequence numbers: a
    /// damaged block, or the lost part of a cut or repaired file.
    /// All gaps together are at most what the file's bytes could have held (a
    /// hostile first sequence number cannot claim 2^63 records missing).
    public var sequenceGaps: [(after: UInt64, missing: UInt64)] {
        var out: [(UInt64, UInt64)] = []
        var expected: UInt64 = 0
        var budget = maxRecords
        for b in eventBlocks.sorted(by: { ($0.firstSequence, $0.offset) < ($1.firstSequence, $1.offset) }) {
            if b.firstSequence > expected {
                let missing = min(b.firstSequence - expected, budget)
                budget -= missing
                out.append((expected, missing))
            }
            expected = max(expected, b.firstSequence + UInt64(b.count))
        }
        return out
    }

    /// The most records this file could hold (`maxRecords(fileSize:)`).
    private let maxRecords: UInt64

    /// Total records according to the block headers, each sequence number
    /// counted once.
    public var eventCount: UInt64 { eventBlocks.reduce(0) { $0 + UInt64($1.count) } }
    public var firstTimestamp: UInt64? { eventBlocks.map(\.firstTimestamp).min() }
    public var lastTimestamp: UInt64? { eventBlocks.map(\.lastTimestamp).max() }
}

/// ls(1)'s word for a file type, for "not a regular file" messages.
func fileKindName(_ mode: mode_t) -> String {
    switch mode & S_IFMT {
    case S_IFIFO: "a FIFO"
    case S_IFDIR: "a directory"
    case S_IFCHR: "a character device"
    case S_IFBLK: "a block device"
    case S_IFSOCK: "a socket"
    case S_IFLNK: "a symbolic link"
    default: "not a regular file"
    }
}
