#if canImport(Glibc)
import Glibc
#endif

/// A progress line on stderr for long operations, only when stderr is a
/// terminal: pipes and logs get nothing but the final result.
final class Progress {
    private let label: String
    private let total: UInt64
    private let enabled: Bool
    private var count: UInt64 = 0
    private var nextCheck: UInt64 = 1 << 16
    private var lastShown: Double = 0
    private var shown = false

    init(label: String, total: UInt64) {
        self.label = label
        self.total = total
        enabled = isatty(2) == 1
    }

    /// One unit of work done; looks at the clock every 65,536 units.
    @inline(__always) func step() {
        count &+= 1
        if count >= nextCheck { tick() }
    }

    private func tick() {
        nextCheck = count + (1 << 16)
        guard enabled else { return }
        let now = monotonicSeconds()
        // At most five redraws a second.
        guard now - lastShown >= 0.2 else { return }
        lastShown = now
        shown = true
        let pct = total > 0 ? min(100, count * 100 / total) : 0
        FileHandleStderr.write("\r\u{1B}[K\(label): \(count) of \(total) events (\(pct)%)")
    }

    /// Clears the line, if one was drawn.
    func done() {
        if shown { FileHandleStderr.write("\r\u{1B}[K") }
        shown = false
    }
}
