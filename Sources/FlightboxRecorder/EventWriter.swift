import FlightboxFormat

/// Where the recorder writes records: a `TraceWriter`, or in tests a writer
/// that fails on cue. Records are numbered in the order they are appended.
public protocol EventWriter: AnyObject {
    /// The sequence number the next appended record gets.
    var nextSequence: UInt64 { get }
    /// Appends one validated wire record; returns its sequence number.
    @discardableResult
    func append(_ record: UnsafeRawBufferPointer) throws -> UInt64
    /// Puts everything appended so far on disk (a block per call).
    func flush() throws
    /// Flushes and finishes the file (index, footer, clean-close flag).
    func close() throws
}

extension TraceWriter: EventWriter {}
