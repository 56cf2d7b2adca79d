#if canImport(Glibc)
import Glibc
#endif

/// Watches the recorded command from the recorder's loop: passes stop
/// requests on to it, ends it at the deadline as timeout(1) does, kills it
/// when it outstays its grace, and reaps it. Recording goes on until it exits.
struct CommandSupervisor {
    let pid: pid_t
    let graceNs: UInt64
    /// Stop requests passed on so far.
    private var forwarded = 0
    /// When SIGKILL follows the first SIGTERM or stop request.
    private var killAt: UInt64?
    /// The command's wait(2) status, once it has exited and been reaped.
    private(set) var status: Int32?

    init(pid: pid_t, graceNs: UInt64) {
        self.pid = pid
        self.graceNs = graceNs
    }

    /// One look at the command; returns true once it has exited.
    mutating func check(now: UInt64, stop: any StopRequests, deadline: UInt64?) -> Bool {
        guard status == nil else { return true }
        var st: Int32 = 0
        let r = waitpid(pid, &st, WNOHANG)
        if r == pid {
            status = st
            return true
        }
        if r < 0, errno == ECHILD {
            // Reaped by someone else (SIGCHLD ignored before install()): it is
            // gone, and its status with it.
            status = 0
            return true
        }
        // A stop request, or the end of --duration, goes to the command, and
        // recording goes on until it exits; a second request, or the grace
        // running out, kills it.
        let requests = stop.count
        if requests > forwarded {
            kill(pid, forwarded == 0 ? stop.signal : SIGKILL)
            forwarded = requests
            killAt = killAt ?? now.addingClamped(graceNs)
        } else if let deadline, now >= deadline, killAt == nil {
            kill(pid, SIGTERM)
            killAt = now.addingClamped(graceNs)
        }
        if let k = killAt, now >= k { kill(pid, SIGKILL) }
        return false
    }

    /// Recording stopped before the command ended (a full disk, a source that
    /// cannot be read): the command never runs unrecorded, so it is killed
    /// and reaped.
    mutating func killAndReap() {
        guard status == nil else { return }
        kill(pid, SIGKILL)
        var st: Int32 = 0
        var r: pid_t
        repeat { r = waitpid(pid, &st, 0) } while r < 0 && errno == EINTR
        if r == pid { status = st }
    }
}

extension UInt64 {
    /// The sum, or UInt64.max where it would overflow.
    func addingClamped(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? .max : sum
    }
}
