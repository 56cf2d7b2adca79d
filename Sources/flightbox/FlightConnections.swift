#if canImport(Glibc)
import Glibc
#endif
import CFlightboxSys

/// The connections of a listening socket (the control socket, the metrics
/// endpoint), served from the recorder's only thread without ever blocking
/// it: each turn reads what has arrived and writes what the socket takes.
///
/// A client has one deadline for its whole exchange (`deadlineNs` from its
/// accept), not one per read, so a client trickling a byte at a time holds a
/// slot, never the recorder; at most `maxOpen` are open at once and at most
/// `acceptPerTurn` are accepted per turn (the others wait in the backlog).
final class Connections {
    /// One client: its request so far, then the reply still to be written.
    private struct Client {
        var fd: Int32
        var deadline: UInt64
        var request: [UInt8] = []
        var reply: [UInt8]?
        var written = 0
    }

    let listener: Int32
    let deadlineNs: UInt64
    let maxOpen: Int
    let acceptPerTurn: Int
    /// A request is cut here (and answered as it is).
    let maxRequestBytes: Int
    private var clients: [Client] = []
    /// One read buffer for every client: no allocation per turn.
    private var buffer = [UInt8](repeating: 0, count: 2048)
    /// Clients closed at their deadline before they were answered.
    private(set) var timedOut: UInt64 = 0

    init(listener: Int32, deadlineNs: UInt64 = 1_000_000_000, maxOpen: Int = 8, acceptPerTurn: Int = 4, maxRequestBytes: Int = 16384) {
        self.listener = listener
        self.deadlineNs = deadlineNs
        self.maxOpen = maxOpen
        self.acceptPerTurn = acceptPerTurn
        self.maxRequestBytes = maxRequestBytes
    }

    deinit {
        for c in clients { Glibc.close(c.fd) }
    }

    /// Clients open now.
    var openCount: Int { clients.count }

    /// One turn at clock time `now` (CLOCK_MONOTONIC ns): accepts new
    /// clients, reads, and answers each complete request with `respond`
    /// (`complete` says when the bytes so far are a whole request; end of
    /// input or `maxRequestBytes` make one too). Never waits.
    func serve(now: UInt64, complete: ([UInt8]) -> Bool, respond: ([UInt8]) -> [UInt8]) {
        var accepted = 0
        while accepted < acceptPerTurn, clients.count < maxOpen {
            // The listener is non-blocking; reads and writes say MSG_DONTWAIT.
            let fd = fb_accept(listener)
            if fd < 0 {
                if fd == -EINTR || fd == -ECONNABORTED { continue }
                break
            }
            clients.append(Client(fd: fd, deadline: now &+ deadlineNs))
            accepted += 1
        }
        var i = 0
        while i < clients.count {
            if advance(&clients[i], now: now, complete: complete, respond: respond) {
                i += 1
            } else {
                Glibc.close(clients[i].fd)
                clients.remove(at: i)
            }
        }
    }

    /// Moves one client on; false when it is done (answered, gone, or past its deadline).
    private func advance(_ c: inout Client, now: UInt64, complete: ([UInt8]) -> Bool, respond: ([UInt8]) -> [UInt8]) -> Bool {
        if c.reply == nil {
            var ended = false
            while c.request.count < maxRequestBytes {
                let want = min(buffer.count, maxRequestBytes - c.request.count)
                let n = buffer.withUnsafeMutableBytes { recv(c.fd, $0.baseAddress, want, Int32(MSG_DONTWAIT)) }
                if n < 0, errno == EINTR { continue }
                if n < 0, errno == EAGAIN || errno == EWOULDBLOCK { break }
                if n < 0 { return false }
                if n == 0 { ended = true; break }
                c.request += buffer[0..<n]
                if complete(c.request) { break }
            }
            if ended || c.request.count >= maxRequestBytes || complete(c.request) {
                if c.request.isEmpty && ended { return false }
                c.reply = respond(c.request)
            }
        }
        if let reply = c.reply {
            while c.written < reply.count {
                let n = reply.withUnsafeBytes { send(c.fd, $0.baseAddress! + c.written, $0.count - c.written, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                if n < 0, errno == EINTR { continue }
                if n < 0, errno == EAGAIN || errno == EWOULDBLOCK { break }
                if n <= 0 { return false }
                c.written += n
            }
            if c.written >= reply.count { return false }
        }
        if now >= c.deadline {
            if c.reply == nil { timedOut &+= 1 }
            return false
        }
        return true
    }
}
