#if canImport(Glibc)
import Glibc
#endif

/// A scripted source, for tests and simulations: each poll plays one step of
/// the script and takes its timeout, on a `ManualClock` when given one (no
/// sleeping), else for real. It logs every call the recorder makes, so tests
/// can check the order of a shutdown.
public final class SyntheticSource: EventSource {
    /// What one poll does.
    public struct Step {
        /// Records the poll hands over.
        public var records: [[UInt8]] = []
        /// Loss records the `losses` call after the poll hands over.
        public var losses: [[UInt8]] = []
        /// Runs during the poll (a stop request, a clock jump).
        public var action: (() -> Void)?
        /// The poll fails with this error instead.
        public var failure: (any Error)?

        public init(records: [[UInt8]] = [], losses: [[UInt8]] = [], action: (() -> Void)? = nil, failure: (any Error)? = nil) {
            self.records = records
            self.losses = losses
            self.action = action
            self.failure = failure
        }

        public static func records(_ records: [[UInt8]]) -> Step { Step(records: records) }
        public static func losses(_ losses: [[UInt8]]) -> Step { Step(losses: losses) }
        public static func action(_ action: @escaping () -> Void) -> Step { Step(action: action) }
        public static func failure(_ error: any Error) -> Step { Step(failure: error) }
        public static var idle: Step { Step() }
    }

    /// A call the recorder made, in order.
    public enum Call: Equatable, Sendable {
        case poll, losses, flushBatches, sweep(all: Bool), detach, drainAll
    }

    private var steps: [Step]
    private var nextStep = 0
    private var pendingLosses: [[UInt8]] = []
    private let clock: ManualClock?
    /// When the script runs out: exhausted (a replay's end), or idle polls for ever (a quiet live source).
    private let endsWithScript: Bool
    /// Records only `drainAll` hands over, after `detach`: what per-CPU
    /// batches and the ring still hold when recording stops.
    public var heldUntilDrain: [[UInt8]]
    /// Loss records the first `losses` call after `detach` hands over.
    public var finalLosses: [[UInt8]]
    public private(set) var calls: [Call] = []

    public init(steps: [Step], clock: ManualClock? = nil, endsWithScript: Bool = true,
                heldUntilDrain: [[UInt8]] = [], finalLosses: [[UInt8]] = []) {
        self.steps = steps
        self.clock = clock
        self.endsWithScript = endsWithScript
        self.heldUntilDrain = heldUntilDrain
        self.finalLosses = finalLosses
    }

    public var isExhausted: Bool { endsWithScript && nextStep >= steps.count }
    public private(set) var isDetached = false

    public func poll(timeoutMs: Int32, _ sink: RecordSink) throws {
        calls.append(.poll)
        if let clock { clock.advance(by: UInt64(max(timeoutMs, 0)) * 1_000_000) } else { usleep(useconds_t(max(timeoutMs, 0)) * 1000) }
        guard nextStep < steps.count else { return }
        let step = steps[nextStep]
        nextStep += 1
        step.action?()
        if let failure = step.failure { throw failure }
        for r in step.records { r.withUnsafeBytes(sink) }
        pendingLosses += step.losses
    }

    public func losses(_ sink: RecordSink) {
        calls.append(.losses)
        if isDetached {
            pendingLosses += finalLosses
            finalLosses = []
        }
        for r in pendingLosses { r.withUnsafeBytes(sink) }
        pendingLosses = []
    }

    public func flushBatches() { calls.append(.flushBatches) }
    public func sweep(all: Bool) { calls.append(.sweep(all: all)) }
    public func detach() {
        calls.append(.detach)
        isDetached = true
    }

    public func drainAll(_ sink: RecordSink) throws {
        calls.append(.drainAll)
        guard isDetached else { return }
        for r in heldUntilDrain { r.withUnsafeBytes(sink) }
        heldUntilDrain = []
    }
}
