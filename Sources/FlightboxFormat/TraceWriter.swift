#if canImport(Glibc)
import Glibc
#endif
import CFlightboxSys
import FlightboxEvents

/// Writes a trace: header, metadata, snapshot, then event blocks as records are
/// appended, and on `close()` the index and footer. Every block reaches the
/// file in one write(2), so a writer killed at any point leaves a file that is
/// readable up to its last whole block.
///
/// The file is written beside its path and appears there whole (see
/// `OutputFile`): never empty, never half a header, and never over a file
/// another writer still holds.
///
/// Not thread-safe: one owner appends, seals and closes.
public final class TraceWriter {
    public let path: String
    public let codec: Codec
    /// When the file appears at its path.
    public enum Publication: Sendable {
        /// Once header, metadata and process snapshot are on disk; from then
        /// on the path holds a readable trace that grows block by block: a
        /// recorder, whose file must be readable whenever it is killed.
        case afterHeader
        /// When closed cleanly; until then the path keeps what it had: a
        /// copy (repair, exports), which is complete or not there at all.
        case whenClosed
    }
    public let publication: Publication
    private let file: OutputFile
    private var fd: Int32 { file.fd }
    private var offset: UInt64 = 0
    private let compressor: Compressor
    private let blockBytes: Int

    // The block being filled.
    private let raw: UnsafeMutableRawPointer
    private let filtered: UnsafeMutableRawPointer
    private let stored: UnsafeMutableRawPointer
    private let storedCapacity: Int
    private var used = 0
    /// Raw bytes of the block not yet sealed: with `bytesWritten`, a bound
    /// on what the file will take once they are.
    public var pendingBytes: Int { used }
    private var blockCount: UInt32 = 0
    private var blockFirstSeq: UInt64 = 0
    private var blockMinTs = UInt64.max
    private var blockMaxTs: UInt64 = 0

    /// Sequence number the next appended record gets.
    public private(set) var nextSequence: UInt64 = 0
    public private(set) var index: [IndexEntry] = []
    public private(set) var bytesWritten: UInt64 = 0
    public private(set) var eventBlocks = 0
    public private(set) var isClosed = false

    /// Creates the file (mode 0600: traces hold argv and paths) and writes the
    /// header, metadata and process snapshot.
    public convenience init(path: String, publish: Publication = .afterHeader, codec: Codec = .zstd, level: Int32 = 3,
                            blockBytes: Int = TraceLayout.defaultBlockBytes, metadata: TraceMetadata, snapshot: ProcessSnapshot) throws {
        try self.init(file: OutputFile(path: path), publish: publish, codec: codec, level: level, blockBytes: blockBytes,
                      metadata: metadata, snapshot: snapshot)
    }

    /// Writes into a file created beforehand (a recorder creates it before
    /// loading its probes, so a path that cannot be written fails early).
    public init(file: OutputFile, publish: Publication = .afterHeader, codec: Codec = .zstd, level: Int32 = 3,
                blockBytes: Int = TraceLayout.defaultBlockBytes, metadata: TraceMetadata, snapshot: ProcessSnapshot) throws {
        self.file = file
        path = file.path
        publication = publish
        self.codec = codec
        self.blockBytes = min(max(blockBytes, 4096), TraceLayout.maxBlockBytes / 2)
        compressor = Compressor(codec: codec, level: level)
        let cap = self.blockBytes + 65536
        raw = .allocate(byteCount: cap, alignment: 16)
        filtered = .allocate(byteCount: cap, alignment: 16)
        storedCapacity = compressor.bound(cap) + TraceLayout.blockHeaderSize
        stored = .allocate(byteCount: storedCapacity, alignment: 16)
        // From here every stored property is set, so a throw runs deinit,
        // which frees the buffers and closes (and, unpublished, drops) the file.
        do {
            try writeFileHeader(flags: TraceLayout.flagWriting)
            try writeBlock(type: .metadata, payload: Array(metadata.json.serialized().utf8), firstTs: metadata.clockNs, lastTs: metadata.clockNs)
            try writeBlock(type: .processSnapshot, payload: TraceWriter.snapshotPayload(snapshot), firstTs: snapshot.timestamp, lastTs: snapshot.timestamp)
            if publish == .afterHeader { try file.publish() }
        } catch {
            file.close()
            throw error
        }
    }

    deinit {
        file.close()
        raw.deallocate()
        filtered.deallocate()
        stored.deallocate()
    }

    /// Appends one wire record (already validated by the caller: `size` field
    /// equals the buffer's length, at least a header). Returns its sequence number.
    @discardableResult
    public func append(_ record: UnsafeRawBufferPointer) throws -> UInt64 {
        // Numbers are the records' identity: never wrap (repair can continue
        // a hostile file's numbering near 2^64).
        guard nextSequence < .max else { throw TraceError.sequenceExhausted(path: path) }
        if used + record.count > blockBytes, used > 0 { try sealBlock() }
        let ts = record.baseAddress!.loadUnaligned(as: UInt64.self)
        (raw + used).copyMemory(from: record.baseAddress!, byteCount: record.count)
        used += record.count
        if blockCount == 0 { blockFirstSeq = nextSequence }
        blockCount += 1
        if ts < blockMinTs { blockMinTs = ts }
        if ts > blockMaxTs { blockMaxTs = ts }
        nextSequence += 1
        return nextSequence - 1
    }

    /// Writes a detector checkpoint block (type 5): the state of the live
    /// detectors after every event before this file's first. Only before the
    /// first event (readers ignore a checkpoint that follows an event block).
    /// - Parameter ts: the event time the detectors had reached.
    public func writeCheckpoint(_ bytes: [UInt8], ts: UInt64) throws {
        guard nextSequence == 0, used == 0, eventBlocks == 0 else { throw TraceError.checkpointAfterEvents(path: path) }
        try writeBlock(type: .checkpoint, payload: bytes, firstTs: ts, lastTs: ts)
    }

    /// Seals the open block and continues numbering at `sequence`, leaving a
    /// gap that readers see: used by repair, where records were lost.
    public func skip(toSequence sequence: UInt64) throws {
        guard sequence > nextSequence else {
            // Going back would hand out a number twice.
            if sequence < nextSequence { throw TraceError.sequenceOutOfOrder(path: path, sequence: sequence, next: nextSequence) }
            return
        }
        try flush()
        nextSequence = sequence
    }

    /// Convenience for records held in arrays (tests, user-space events).
    @discardableResult
    public func append(_ record: [UInt8]) throws -> UInt64 {
        try record.withUnsafeBytes { try append($0) }
    }

    /// Seals the open block, if any, and writes it.
    public func flush() throws {
        if used > 0 { try sealBlock() }
    }

    private func sealBlock() throws {
        XorFilter.encode(raw, filtered, count: used)
        let payload = stored + TraceLayout.blockHeaderSize
        var n = try compressor.compress(UnsafeRawBufferPointer(start: filtered, count: used), into: payload,
                                         capacity: storedCapacity - TraceLayout.blockHeaderSize)
        var blockCodec = codec
        if used > TraceLayout.maxRawLength(stored: n) {
            // Readers refuse a block that expands past this ratio (it bounds
            // their work): store this freak block as it is.
            payload.copyMemory(from: filtered, byteCount: used)
            n = used
            blockCodec = .none
        }
        let header = BlockHeader(type: BlockType.events.rawValue, codec: blockCodec.rawValue, filter: BlockFilter.xorPrevious.rawValue,
                                 storedLength: UInt32(n), rawLength: UInt32(used), firstTimestamp: blockMinTs, lastTimestamp: blockMaxTs,
                                 firstSequence: blockFirstSeq, count: blockCount,
                                 payloadChecksum: crc32c(UnsafeRawBufferPointer(start: payload, count: n)))
        header.encode(into: stored)
        let at = offset
        try writeAll(UnsafeRawBufferPointer(start: stored, count: TraceLayout.blockHeaderSize + n))
        index.append(IndexEntry(offset: at, firstTimestamp: blockMinTs, lastTimestamp: blockMaxTs, firstSequence: blockFirstSeq, count: blockCount))
        eventBlocks += 1
        used = 0
        blockCount = 0
        blockMinTs = .max
        blockMaxTs = 0
    }

    /// Seals the last block, writes the index and footer, makes it durable,
    /// then clears the "being written" flag.
    public func close() throws {
        guard !isClosed else { return }
        try flush()
        let indexOffset = offset
        var payload = [UInt8](repeating: 0, count: index.count * TraceLayout.indexEntrySize)
        payload.withUnsafeMutableBytes { p in
            for (i, e) in index.enumerated() {
                let b = p.baseAddress! + i * TraceLayout.indexEntrySize
                b.storeBytes(of: e.offset.littleEndian, toByteOffset: 0, as: UInt64.self)
                b.storeBytes(of: e.firstTimestamp.littleEndian, toByteOffset: 8, as: UInt64.self)
                b.storeBytes(of: e.lastTimestamp.littleEndian, toByteOffset: 16, as: UInt64.self)
                b.storeBytes(of: e.firstSequence.littleEndian, toByteOffset: 24, as: UInt64.self)
                b.storeBytes(of: e.count.littleEndian, toByteOffset: 32, as: UInt32.self)
            }
        }
        let first = index.first?.firstTimestamp ?? 0
        let last = index.map(\.lastTimestamp).max() ?? 0
        try writeBlock(type: .index, payload: payload, firstTs: first, lastTs: last, count: UInt32(index.count), codec: Codec.none)
        var footer = [UInt8](repeating: 0, count: TraceLayout.footerSize)
        footer.withUnsafeMutableBytes { p in
            TraceLayout.footerMagic.withUnsafeBytes { p.copyMemory(from: $0) }
            p.storeBytes(of: indexOffset.littleEndian, toByteOffset: 8, as: UInt64.self)
            p.storeBytes(of: nextSequence.littleEndian, toByteOffset: 16, as: UInt64.self)
            p.storeBytes(of: UInt32(index.count).littleEndian, toByteOffset: 24, as: UInt32.self)
            p.storeBytes(of: fb_crc32c(0, p.baseAddress, 28).littleEndian, toByteOffset: 28, as: UInt32.self)
        }
        try footer.withUnsafeBytes { try writeAll($0) }
        if fsync(fd) != 0 { throw TraceError.writeFailed(path: path, errno: errno) }
        try writeFileHeader(flags: 0)
        if publication == .whenClosed {
            try file.publish()
        } else {
            _ = fsync(fd)
        }
        file.close()
        isClosed = true
    }

    private func writeFileHeader(flags: UInt32) throws {
        var h = [UInt8](repeating: 0, count: TraceLayout.headerSize)
        h.withUnsafeMutableBytes { p in
            TraceLayout.magic.withUnsafeBytes { p.copyMemory(from: $0) }
            p.storeBytes(of: TraceLayout.versionMajor.littleEndian, toByteOffset: 8, as: UInt16.self)
            p.storeBytes(of: TraceLayout.versionMinor.littleEndian, toByteOffset: 10, as: UInt16.self)
            p.storeBytes(of: UInt32(TraceLayout.headerSize).littleEndian, toByteOffset: 12, as: UInt32.self)
            p.storeBytes(of: flags.littleEndian, toByteOffset: 16, as: UInt32.self)
            p.storeBytes(of: fb_crc32c(0, p.baseAddress, 28).littleEndian, toByteOffset: 28, as: UInt32.self)
        }
        if offset == 0 {
            try h.withUnsafeBytes { try writeAll($0) }
        } else {
            let n = h.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
            if n != TraceLayout.headerSize { throw TraceError.writeFailed(path: path, errno: errno) }
        }
    }

    /// The snapshot's JSON, within the block limit readers enforce: on a host
    /// with very many processes with long command lines, arguments are cut
    /// first (to 256 bytes each), then processes (the last ones) are left out.
    static func snapshotPayload(_ snapshot: ProcessSnapshot, limit: Int = TraceLayout.maxBlockBytes) -> [UInt8] {
        var payload = Array(snapshot.json.serialized().utf8)
        guard payload.count > limit else { return payload }
        var cut = snapshot
        cut.processes = cut.processes.map { p in
            var p = p
            p.argv = p.argv.map { String(decoding: $0.utf8.prefix(256), as: UTF8.self) }
            return p
        }
        payload = Array(cut.json.serialized().utf8)
        while payload.count > limit, !cut.processes.isEmpty {
            cut.processes.removeLast(max(1, cut.processes.count * (payload.count - limit) / payload.count + 1))
            payload = Array(cut.json.serialized().utf8)
        }
        return payload
    }

    private func writeBlock(type: BlockType, payload: [UInt8], firstTs: UInt64, lastTs: UInt64, count: UInt32 = 1, codec: Codec? = nil) throws {
        // Readers refuse blocks over the limit as hostile: never write one.
        guard payload.count <= TraceLayout.maxBlockBytes else { throw TraceError.blockTooLarge(path: path, bytes: payload.count) }
        let c = codec ?? (self.codec == .none ? .none : .zstd)
        let comp = c == compressor.codec ? compressor : Compressor(codec: c, level: 3)
        var out = [UInt8](repeating: 0, count: TraceLayout.blockHeaderSize + comp.bound(payload.count))
        let n = try payload.withUnsafeBytes { src in
            try out.withUnsafeMutableBytes { dst in
                try comp.compress(src, into: dst.baseAddress! + TraceLayout.blockHeaderSize, capacity: dst.count - TraceLayout.blockHeaderSize)
            }
        }
        out.withUnsafeMutableBytes { dst in
            let payloadPtr = UnsafeRawBufferPointer(start: dst.baseAddress! + TraceLayout.blockHeaderSize, count: n)
            BlockHeader(type: type.rawValue, codec: c.rawValue, filter: BlockFilter.none.rawValue, storedLength: UInt32(n),
                        rawLength: UInt32(payload.count), firstTimestamp: firstTs, lastTimestamp: lastTs, firstSequence: nextSequence,
                        count: count, payloadChecksum: crc32c(payloadPtr)).encode(into: dst.baseAddress!)
        }
        try out.withUnsafeBytes { try writeAll(UnsafeRawBufferPointer(rebasing: $0[0..<(TraceLayout.blockHeaderSize + n)])) }
    }

    /// Cuts the file back to the end of its last whole block.
    private func cutBack() {
        _ = ftruncate(fd, off_t(offset))
        _ = lseek(fd, off_t(offset), SEEK_SET)
    }

    private func writeAll(_ buf: UnsafeRawBufferPointer) throws {
        guard fd >= 0 else { throw TraceError.closed }
        var done = 0
        while done < buf.count {
            let n = write(fd, buf.baseAddress! + done, buf.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                let e = errno
                // A partial block may have reached the disk: cut it off so the
                // file ends on a whole block (readers would stop there anyway),
                // and write on from there if the caller tries again (the flight
                // recorder, after freeing space), not past a hole.
                cutBack()
                if e == ENOSPC || e == EDQUOT { throw TraceError.diskFull(path: path) }
                throw TraceError.writeFailed(path: path, errno: e)
            }
            if n == 0 { cutBack(); throw TraceError.diskFull(path: path) }
            done += n
            // A short write: keep going; on the next failure the partial block is cut above.
        }
        offset += UInt64(buf.count)
        bytesWritten = offset
    }
}
