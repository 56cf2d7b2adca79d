#if canImport(Glibc)
import Glibc
#endif
import CFlightboxSys

/// What a path names, to tell whether two paths are one file: device and
/// inode when it exists (so symlinks and hard links compare equal), else the
/// directory it would be created in and its name there.
public enum FileIdentity: Hashable, Sendable {
    case file(device: UInt64, inode: UInt64)
    case entry(device: UInt64, inode: UInt64, name: String)

    public init?(path: String) {
        var st = stat()
        if stat(path, &st) == 0 {
            self = .file(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
            return
        }
        let (dir, name) = splitPath(path)
        guard stat(dir, &st) == 0 else { return nil }
        self = .entry(device: UInt64(st.st_dev), inode: UInt64(st.st_ino), name: name)
    }

    public init?(fd: Int32) {
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        self = .file(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }

    /// The file a path names itself, not what a symlink there points to.
    init?(entryAt path: String) {
        var st = stat()
        guard lstat(path, &st) == 0 else { return nil }
        self = .file(device: UInt64(st.st_dev), inode: UInt64(st.st_ino))
    }
}

/// An exclusive flock(2) on a file or a directory, taken without waiting and
/// held until `release()` or deinit. Flightbox writers hold one on what they
/// write for as long as they write it, so a second writer can be refused
/// before it touches anything.
public final class FileLock {
    public let path: String
    public private(set) var fd: Int32

    /// Locks `path`; `.busy` (naming the holder's pid when /proc/locks shows
    /// it) when another open file holds the lock.
    public init(path: String) throws {
        // O_NONBLOCK: opening a FIFO that a caller did not expect must not hang.
        var fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        if fd < 0, errno == EACCES { fd = open(path, O_WRONLY | O_CLOEXEC | O_NONBLOCK) }
        guard fd >= 0 else { throw TraceError.cannotOpen(path: path, errno: errno) }
        let r = fb_flock_try(fd)
        guard r == 0 else {
            let holder = r == -EWOULDBLOCK ? FileLock.holder(of: fd) : nil
            Glibc.close(fd)
            throw r == -EWOULDBLOCK ? TraceError.busy(path: path, holder: holder) : TraceError.cannotOpen(path: path, errno: -r)
        }
        self.path = path
        self.fd = fd
    }

    public func release() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { release() }

    /// The pid that holds a flock on the file open at `fd`, as /proc/locks
    /// tells (lines like "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF").
    static func holder(of fd: Int32) -> Int32? {
        var st = stat()
        guard fstat(fd, &st) == 0, let text = readSmallFile("/proc/locks") else { return nil }
        let dev = UInt64(st.st_dev)
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & ~0xfff)
        let minor = (dev & 0xff) | ((dev >> 12) & ~0xff)
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ")
            // Waiters ("1: -> FLOCK ...") do not hold the lock.
            guard f.count >= 6, f[1] == "FLOCK" else { continue }
            let id = f[5].split(separator: ":")
            guard id.count == 3, UInt64(id[0], radix: 16) == major, UInt64(id[1], radix: 16) == minor,
                  UInt64(id[2]) == UInt64(st.st_ino) else { continue }
            return Int32(f[4])
        }
        return nil
    }
}

/// A file that appears at its path only once it holds something readable.
///
/// It is created unnamed (O_TMPFILE) in the directory of its path, or under a
/// hidden temporary name there where the filesystem cannot do that, and is
/// locked (`FileLock`'s flock) for as long as it is open. `publish()` puts it
/// at its path in one step: link(2) when the path is free, rename(2) over an
/// existing file only after taking that file's lock, so it never replaces a
/// file another writer is still writing. Until then, and if the owner dies,
/// the path keeps what it had; the file goes away unless published.
public final class OutputFile {
    /// The path as given, for messages.
    public let path: String
    /// Where the file goes: `path` through a symlink, whose target is replaced (as open(2) would write through it).
    public let target: String
    public private(set) var fd: Int32
    public private(set) var isPublished = false
    /// Set when the file was created under a temporary name (no O_TMPFILE).
    private var temporaryPath: String?

    /// Creates the file beside `path`, after `check(path:)`. Nothing is
    /// visible at `path` until `publish()`.
    public init(path: String, mode: mode_t = 0o600) throws {
        try OutputFile.check(path: path)
        let target = OutputFile.resolve(path)
        let (dir, name) = splitPath(target)
        var fd = fb_open_tmpfile(dir, mode)
        var temporary: String?
        if fd == -EOPNOTSUPP || fd == -EISDIR || fd == -EINVAL {
            var template = Array("\(dir)/.\(name).XXXXXX".utf8CString)
            fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
            if fd >= 0 {
                temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            } else {
                fd = -errno
            }
        }
        guard fd >= 0 else { throw TraceError.cannotCreate(path: path, errno: -fd) }
        // The mode given, whatever the umask: traces hold argv and paths.
        fchmod(fd, mode)
        // A new inode: nobody else can hold its lock.
        _ = fb_flock_try(fd)
        self.path = path
        self.target = target
        self.fd = fd
        temporaryPath = temporary
    }

    deinit { close() }

    /// Makes the file durable and puts it at its path, replacing what was
    /// there unless another writer holds it (`.busy`).
    public func publish() throws {
        guard !isPublished else { return }
        guard fd >= 0 else { throw TraceError.closed }
        if fsync(fd) != 0 { throw TraceError.writeFailed(path: path, errno: errno) }
        let (dir, name) = splitPath(target)
        var attempts = 0
        while !isPublished {
            attempts += 1
            // Others appear or go between our look and our move; each retry follows one of their moves.
            guard attempts <= 16 else { throw TraceError.busy(path: path, holder: nil) }
            var st = stat()
            if lstat(target, &st) != 0 {
                guard errno == ENOENT else { throw TraceError.cannotCreate(path: path, errno: errno) }
                // Nothing there: appear without replacing what may appear meanwhile.
                let r = temporaryPath.map { fb_rename_noreplace($0, target) } ?? fb_link_fd(fd, target)
                if r == -EEXIST { continue }
                guard r == 0 else { throw TraceError.cannotCreate(path: path, errno: -r) }
                isPublished = true
                break
            }
            if st.st_mode & S_IFMT == S_IFDIR { throw TraceError.cannotCreate(path: path, errno: EISDIR) }
            guard st.st_mode & S_IFMT == S_IFREG else { throw TraceError.notARegularFile(path: path) }
            // Holding the old file's lock across the rename keeps every other
            // writer from moving its own file over it meanwhile.
            var held: FileLock?
            do {
                held = try FileLock(path: target)
            } catch TraceError.busy(_, let holder) {
                throw TraceError.busy(path: path, holder: holder)
            } catch {
                // Unreadable to us (not root): there is no lock we could check.
            }
            defer { held?.release() }
            if let held, FileIdentity(fd: held.fd) != FileIdentity(entryAt: target) { continue }
            var moving = temporaryPath
            if moving == nil {
                // An unnamed file gets a temporary name beside its path, then rename(2) moves it over the old one.
                for i in 0..<100 {
                    let side = "\(dir)/.\(name).\(getpid()).\(i)"
                    let r = fb_link_fd(fd, side)
                    if r == -EEXIST { continue }
                    guard r == 0 else { throw TraceError.cannotCreate(path: path, errno: -r) }
                    moving = side
                    break
                }
            }
            guard let moving else { throw TraceError.cannotCreate(path: path, errno: EEXIST) }
            guard rename(moving, target) == 0 else {
                let e = errno
                unlink(moving)
                throw TraceError.cannotCreate(path: path, errno: e)
            }
            isPublished = true
        }
        temporaryPath = nil
        // The new name itself must survive a crash too.
        let d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if d >= 0 {
            _ = fsync(d)
            Glibc.close(d)
        }
    }

    /// Closes the file, releasing its lock; unpublished, it is gone.
    public func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
        if !isPublished, let temporaryPath { unlink(temporaryPath) }
        temporaryPath = nil
    }

    /// Checks, creating nothing, that a file can be written at `path`: its
    /// directory exists and is writable, the path is not a directory nor a
    /// device, FIFO or socket, and no other writer holds the file there.
    public static func check(path: String) throws {
        if path.isEmpty { throw TraceError.cannotCreate(path: path, errno: ENOENT) }
        if path.hasSuffix("/") { throw TraceError.cannotCreate(path: path, errno: EISDIR) }
        let target = resolve(path)
        var st = stat()
        if stat(target, &st) == 0 {
            if st.st_mode & S_IFMT == S_IFDIR { throw TraceError.cannotCreate(path: path, errno: EISDIR) }
            guard st.st_mode & S_IFMT == S_IFREG else { throw TraceError.notARegularFile(path: path) }
            // Taken and let go at once: only whether another writer holds it matters here.
            do { _ = try FileLock(path: target) } catch TraceError.busy(_, let holder) {
                throw TraceError.busy(path: path, holder: holder)
            } catch {}
        }
        let (dir, _) = splitPath(target)
        guard stat(dir, &st) == 0 else { throw TraceError.cannotCreate(path: path, errno: errno) }
        guard st.st_mode & S_IFMT == S_IFDIR else { throw TraceError.cannotCreate(path: path, errno: ENOTDIR) }
        guard access(dir, W_OK | X_OK) == 0 else { throw TraceError.cannotCreate(path: path, errno: errno) }
    }

    /// `path` through a symlink to its target; a dangling link is replaced itself.
    static func resolve(_ path: String) -> String {
        var st = stat()
        guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFLNK, let real = realpath(path, nil) else { return path }
        defer { free(real) }
        return String(cString: real)
    }
}

/// The directory a path is in and its last component.
func splitPath(_ path: String) -> (dir: String, name: String) {
    guard let slash = path.lastIndex(of: "/") else { return (".", path) }
    let dir = path[..<slash]
    return (dir.isEmpty ? "/" : String(dir), String(path[path.index(after: slash)...]))
}

func readSmallFile(_ path: String, limit: Int = 1 << 20) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { Glibc.close(fd) }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16384)
    while out.count < limit {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0, errno == EINTR { continue }
        if n <= 0 { break }
        out += chunk[0..<n]
    }
    return String(decoding: out, as: UTF8.self)
}
