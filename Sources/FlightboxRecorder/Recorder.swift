#if canImport(Glibc)
import Glibc
#endif
import FlightboxDetectors
import FlightboxEvents

/// The recording pipeline: drains a source, numbers each record, appends it
/// to the writer and hands it to the detector engine and the observer, with
/// losses and samples joining the stream where they are noticed, until it is
/// told to stop; then it shuts down in order, so the trace holds everything
/// the source produced.
///
/// The determinism contract rests here: every record reaches the detectors
/// and the observer only after the writer took it, under the number the
/// writer gave it, so the sequence of events detectors see live is exactly
/// the sequence in the trace. A record the writer refuses reaches neither.
///
/// Runs on one thread; `run()` once.
public final class Recorder {
    /// How long each of the periodic duties waits, in clock ns.
    public struct Timers: Sendable {
        /// The longest one poll of the source waits for records.
        public var pollTimeoutMs: Int32 = 50
        /// Pushes batched records of quiet producers into the stream.
        public var batchFlushNs: UInt64 = 100_000_000
        /// Writes out summaries idle for a while.
        public var sweepNs: UInt64 = 1_000_000_000
        /// Seals a block and writes it: with the batch flush and the poll,
        /// at most one second of events is ever only in memory (100 ms in a
        /// per-CPU batch, 50 ms in the ring, 800 ms in the writer).
        public var writerFlushNs: UInt64 = 800_000_000

        public init() {}
    }

    /// When a recording stops, besides errors.
    public struct Configuration: Sendable {
        /// Stop this long after `run()` starts. With a command, the command
        /// is sent SIGTERM then, as timeout(1) does, and recording goes on
        /// until it exits.
        public var durationNs: UInt64?
        /// The recorded command: recording ends when it exits, and stop
        /// requests are passed on to it instead of ending the recording.
        public var command: pid_t?
        /// How long the command has after a first SIGTERM before SIGKILL.
        public var killGraceNs: UInt64 = 2_000_000_000
        public var timers = Timers()

        public init(durationNs: UInt64? = nil, command: pid_t? = nil) {
            self.durationNs = durationNs
            self.command = command
        }
    }

    /// How a recording ended.
    public struct Outcome {
        public enum Reason: Equatable, Sendable {
            case stopRequested
            case durationElapsed
            case commandExited
            /// The source had nothing more to give (a replayed trace).
            case sourceExhausted
            /// The writer failed (`error` says how); nothing after the failure is in the trace.
            case writeFailed
            /// Reading the source failed (`error` says how).
            case sourceFailed
        }

        public var reason: Reason
        /// Why recording stopped early, or the writer could not close the trace.
        public var error: RecorderError?
        /// The command's wait(2) status, when there was a command.
        public var commandStatus: Int32?
        /// Records written.
        public var events: UInt64
        /// Records the source handed over that were not whole records; never written.
        public var rejected: UInt64

        /// The command's exit status as a shell gives it: its exit code, or
        /// 128 + the signal that killed it.
        public var commandExitCode: Int32? {
            commandStatus.map { st in (st & 0x7f) == 0 ? (st >> 8) & 0xff : 128 + (st & 0x7f) }
        }
    }

    // The pipeline's parts, as given to init; the caller reads the writer's
    // and the source's statistics after `run()`.
    public let source: any EventSource
    public let writer: any EventWriter
    public let engine: DetectorEngine?
    public let sampler: (any PeriodicSampler)?
    public let clock: any RecorderClock
    public let stop: any StopRequests
    public let configuration: Configuration
    private let observer: ((Event) -> Void)?
    private let housekeeping: ((UInt64) -> Void)?

    private var writeError: (any Error)?
    private var rejected: UInt64 = 0
    private var hasRun = false

    /// - Parameters:
    ///   - engine: runs the detectors live over the written records; finished at the end.
    ///   - sampler: gauges, sampled every `intervalNs` of clock time, first at the start.
    ///   - stop: SIGINT/SIGTERM (after `StopSignals.install()`) by default.
    ///   - observer: sees every written event after the engine, in sequence
    ///     order; the event is valid only during the call.
    ///   - housekeeping: runs once per turn of the loop, after the periodic
    ///     duties, with the clock's time (the flight recorder's triggers,
    ///     dumps and status); never during shutdown.
    public init(source: any EventSource, writer: any EventWriter, engine: DetectorEngine? = nil,
                sampler: (any PeriodicSampler)? = nil, clock: any RecorderClock = MonotonicClock(),
                stop: any StopRequests = StopSignals(), configuration: Configuration = Configuration(),
                observer: ((Event) -> Void)? = nil, housekeeping: ((UInt64) -> Void)? = nil) {
        self.source = source
        self.writer = writer
        self.engine = engine
        self.sampler = sampler
        self.clock = clock
        self.stop = stop
        self.configuration = configuration
        self.observer = observer
        self.housekeeping = housekeeping
    }

    /// The hot path: one record from the source, or made in user space.
    @inline(__always)
    private func accept(_ record: UnsafeRawBufferPointer) {
        guard writeError == nil else { return }
        // Validated once here; the number is the one the writer gives it next.
        guard let event = Event.validated(record, sequence: writer.nextSequence), event.size == record.count else {
            rejected += 1
            return
        }
        do {
            try writer.append(record)
        } catch {
            writeError = error
            return
        }
        engine?.process(event)
        observer?(event)
    }

    /// Records until stopped, then shuts down in order: the source detached,
    /// its batches flushed, every summary swept and everything drained, the
    /// last losses, the detectors finished, the trace closed. Ends early, and
    /// cleanly, when the writer or the source fails; a command still running
    /// then is killed.
    public func run() -> Outcome {
        precondition(!hasRun, "a Recorder runs once")
        hasRun = true
        let timers = configuration.timers
        let start = clock.now()
        let firstSequence = writer.nextSequence
        let deadline = configuration.durationNs.map { start.addingClamped($0) }
        var supervisor = configuration.command.map { CommandSupervisor(pid: $0, graceNs: configuration.killGraceNs) }
        var nextSample = start
        var lastBatchFlush = start
        var lastSweep = start
        var lastWriterFlush = start
        var reason = Outcome.Reason.writeFailed
        var sourceError: (any Error)?

        loop: while writeError == nil {
            do {
                try source.poll(timeoutMs: timers.pollTimeoutMs) { accept($0) }
            } catch {
                sourceError = error
                reason = .sourceFailed
                break loop
            }
            source.losses { accept($0) }
            let now = clock.now()
            if let sampler, now >= nextSample {
                for record in sampler.sample(at: clock.now()) { record.withUnsafeBytes { accept($0) } }
                nextSample = max(nextSample.addingClamped(sampler.intervalNs), now)
            }
            if now - lastBatchFlush >= timers.batchFlushNs {
                source.flushBatches()
                lastBatchFlush = now
            }
            if now - lastSweep >= timers.sweepNs {
                source.sweep(all: false)
                lastSweep = now
            }
            if now - lastWriterFlush >= timers.writerFlushNs {
                do { try writer.flush() } catch { writeError = error }
                lastWriterFlush = now
            }
            housekeeping?(now)
            if source.isExhausted {
                reason = .sourceExhausted
                break
            }
            if supervisor != nil {
                if supervisor!.check(now: now, stop: stop, deadline: deadline) {
                    reason = .commandExited
                    break
                }
                continue
            }
            if stop.count != 0 {
                reason = .stopRequested
                break
            }
            if let deadline, now >= deadline {
                reason = .durationElapsed
                break
            }
        }
        if writeError != nil { reason = .writeFailed }
        supervisor?.killAndReap()

        // Detaching waits for running producers, so the flush that follows
        // finds every batch idle; then the source holds everything.
        source.detach()
        source.flushBatches()
        source.sweep(all: true)
        if writeError == nil {
            // Everything read before a failure is already in the trace.
            try? source.drainAll { accept($0) }
        }
        source.losses { accept($0) }
        engine?.finish()
        if writeError == nil {
            do { try writer.close() } catch { writeError = error }
        }

        let error: RecorderError? = writeError.map { .write($0) } ?? sourceError.map { .source($0) }
        return Outcome(reason: reason, error: error, commandStatus: supervisor?.status, events: writer.nextSequence - firstSequence, rejected: rejected)
    }
}

/// Why a recording stopped early, with what it means for the trace.
public enum RecorderError: Error, CustomStringConvertible {
    /// Writing the trace failed (a full disk): nothing after the failure is
    /// in it, and the file is valid up to its last complete block. The
    /// underlying error (a `TraceError`) says what to do.
    case write(any Error)
    /// Reading the source failed (the BPF ring buffer); the trace was closed
    /// cleanly with everything read before.
    case source(any Error)

    public var description: String {
        switch self {
        case .write(let e): "\(e)"
        case .source(let e): "\(e); the trace holds everything read before it"
        }
    }
}
