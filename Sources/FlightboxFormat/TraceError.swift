/// Everything that can go wrong reading or writing a trace, with what to do.
public enum TraceError: Error, CustomStringConvertible, Equatable {
    case cannotOpen(path: String, errno: Int32)
    case cannotCreate(path: String, errno: Int32)
    case notATrace(path: String)
    case notRegularFile(path: String, kind: String)
    case sequenceExhausted(path: String)
    /// A detector checkpoint goes before the first event, not after.
    case checkpointAfterEvents(path: String)
    case blockTooLarge(path: String, bytes: Int)
    case sequenceOutOfOrder(path: String, sequence: UInt64, next: UInt64)
    case unsupportedVersion(path: String, major: UInt16, minor: UInt16)
    case writeFailed(path: String, errno: Int32)
    case diskFull(path: String)
    case corruptHeader(path: String, reason: String)
    case missingMetadata(path: String, reason: String)
    case codec(String)
    case closed
    /// Another process holds the file's lock: a writer is still writing it.
    case busy(path: String, holder: Int32?)
    /// The path names a device, a FIFO or a socket: replacing it is never what was meant.
    case notARegularFile(path: String)

    public var description: String {
        switch self {
        case .cannotOpen(let p, let e): "cannot open \(p): \(errorString(e))"
        case .cannotCreate(let p, let e): "cannot create \(p): \(errorString(e)); choose a writable path with -o"
        case .notATrace(let p): "\(p) is not a Flightbox trace (no FLIGHTBX magic at offset 0)"
        case .notRegularFile(let p, let k): "\(p) is \(k), not a regular file: a trace is read from a file (copy a stream to a file first)"
        case .sequenceExhausted(let p): "\(p): sequence numbers exhausted (2^64 records); start a new trace"
        case .checkpointAfterEvents(let p): "\(p): a detector checkpoint must be written before the first event"
        case .blockTooLarge(let p, let n): "\(p): a \(n)-byte block is over the \(TraceLayout.maxBlockBytes)-byte limit readers accept; not written"
        case .sequenceOutOfOrder(let p, let s, let n): "\(p): record \(s) comes after \(n - 1) was written; sequence numbers only grow"
        case .unsupportedVersion(let p, let ma, let mi): "\(p) is trace format v\(ma).\(mi); this flightbox reads v1.x: upgrade flightbox"
        case .writeFailed(let p, let e): "writing \(p) failed: \(errorString(e))"
        case .diskFull(let p): "disk full writing \(p): the trace is valid up to its last complete block; free space or record elsewhere with -o"
        case .corruptHeader(let p, let r): "\(p): file header is corrupt (\(r))"
        case .missingMetadata(let p, let r): "\(p): metadata block unreadable (\(r)); the file is not a usable trace"
        case .codec(let r): "codec error: \(r)"
        case .closed: "the trace writer is already closed"
        case .busy(let p, let pid):
            "\(p) is being written by another process\(pid.map { " (pid \($0))" } ?? ""); stop it or choose another path with -o"
        case .notARegularFile(let p): "\(p) exists and is not a regular file; choose a file path with -o"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif

func errorString(_ e: Int32) -> String { String(cString: strerror(e)) }
