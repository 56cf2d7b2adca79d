// flightbox-load: a workload whose syscalls are known exactly, for tests,
// fixtures and `flightbox bench`.
//
//   flightbox-load getppid N        N getppid(2) calls
//   flightbox-load read N [SIZE]    N read(2) calls of SIZE bytes (default 64) from /dev/zero;
//                                   prints the loop's wall time in ns
//   flightbox-load latency DIR      the latency-outlier scenario of fixtures/latency-outlier
//   flightbox-load threads N [CALLS] starts N threads that each make CALLS getppid(2) (default 1) and exit
//   flightbox-load wait-getppid MS N  sleeps MS milliseconds, then N getppid(2) calls
//   flightbox-load trickle N MS     N getppid(2) calls, MS milliseconds apart
//   flightbox-load direct-write DIR N SIZE  N O_DIRECT writes of SIZE bytes to a file in DIR
//   flightbox-load privilege DIR    setuid, capset, ptrace, memfd, mount, chmod +x, dup2 onto 2, ...
//   flightbox-load spin MS CPU      busy for MS milliseconds, pinned to CPU
//   flightbox-load serve N WORK SLEEP CPU  N requests pinned to CPU: WORK ms of CPU time each, SLEEP ms apart
//   flightbox-load serve-read FILE N SLEEP CPU  N requests pinned to CPU: a pread of all of FILE each, SLEEP ms apart
//   flightbox-load tcp N            N loopback connections, then one to a closed port
//   flightbox-load net-storm N SIZE N sends of SIZE bytes on one loopback connection (bench net)
//   flightbox-load netbytes N       1,000,001 + N bytes out and 1,234 back on one loopback connection, the last N 100 ms apart
//   flightbox-load tcp-outage N MS  N accepted loopback connects, then the listener closes: MS ms of refused ones
//   flightbox-load accept-stop MODE SERVE_MS AFTER_MS  a server that accepts, then close|stall|restart|idle (see CFlightboxLoad)
//   flightbox-load retransmit MS    a SYN the listener drops, retransmitted; gives up after MS ms
//   flightbox-load http MS          a loopback HTTP server under load for MS ms; prints requests served
//   flightbox-load writes DIR       known writes to two files in DIR and to a pipe (see the tests)
//   flightbox-load linger DIR       3 writes of 1000 bytes, 256 pages touched, then 2.5 s asleep; exits without close
//   flightbox-load faults DIR PAGES PAGES major faults (file in DIR read back uncached), PAGES minor
//   flightbox-load oom CGROUP MB    joins the memory cgroup (its directory), then touches MB MiB
//   flightbox-load use KIND SHAPE RATE PERIOD SECONDS [FILE]
//                                   holds a resource in a known shape over time (exhaustion fixtures):
//                                   KIND memory (KiB, anonymous, touched), file (KiB written to FILE),
//                                   fds (/dev/null opened), tasks (children that sleep);
//                                   SHAPE leak (RATE units a second, never released), sawtooth (the same,
//                                   all released every PERIOD s), burst (RATE x PERIOD units at once after
//                                   PERIOD s, released 2 s later), flat (RATE x PERIOD units at once, held);
//                                   for SECONDS s or until the resource runs out, in steps of 100 ms
//   flightbox-load exit CODE        exits with CODE
//   flightbox-load signal SIG       kills itself with signal SIG
#if canImport(Glibc)
import Glibc
#endif
import CFlightboxLoad

/// Writes to fd 2 (glibc's `stderr` is a shared mutable global to Swift 6).
func printError(_ s: String) {
    var s = s
    s.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

/// A thread's body for `threads`: a plain function, not a closure of the
/// top-level code, which Swift 6 would isolate to the main actor and check
/// at run time on this other thread.
nonisolated func getppidThread(_ arg: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let calls = arg!.assumingMemoryBound(to: Int.self).pointee
    for i in 0..<calls {
        _ = fb_getppid_raw()
        if i % 64 == 63 { sched_yield() }
    }
    return nil
}

func usage() -> Never {
    printError("usage: flightbox-load getppid N | read N [SIZE] | latency DIR | threads N [CALLS] | wait-getppid MS N | trickle N MS | direct-write DIR N SIZE | privilege DIR | spin MS CPU | serve N WORK SLEEP CPU | serve-read FILE N SLEEP CPU | tcp N | netbytes N | net-storm N SIZE | tcp-outage N MS | accept-stop close|stall|restart|idle SERVE_MS AFTER_MS | retransmit MS | http MS | writes DIR | linger DIR | faults DIR PAGES | oom CGROUP MB | use KIND SHAPE RATE PERIOD SECONDS [FILE] | exit CODE | signal SIG\n")
    exit(2)
}

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func check(_ ok: Bool, _ what: String) {
    if !ok {
        printError("flightbox-load: \(what): \(String(cString: strerror(errno)))\n")
        exit(1)
    }
}

let args = CommandLine.arguments
guard args.count >= 3 else { usage() }

switch args[1] {
case "getppid":
    guard let n = Int(args[2]) else { usage() }
    for _ in 0..<n { _ = fb_getppid_raw() }

case "read":
    guard let n = Int(args[2]) else { usage() }
    let size = args.count > 3 ? Int(args[3]) ?? 64 : 64
    let fd = open("/dev/zero", O_RDONLY)
    check(fd >= 0, "open /dev/zero")
    let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64)
    let t0 = now()
    for _ in 0..<n { _ = read(fd, buf, size) }
    let t1 = now()
    print(t1 - t0)

case "latency":
    // A process whose syscalls are fast, except for waits that are slow by
    // design and one write that is slow for real:
    //  - 200 reads of a regular file (page cache, microseconds),
    //  - 3 reads on a pipe that wait 20 ms for a writer (must not be flagged),
    //  - 3 nanosleeps of 20 ms (must not be flagged),
    //  - 200 small pwrites, then one 64 MiB pwrite (must be flagged).
    let dir = args[2]
    let path = dir + "/flightbox-latency.dat"
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
    check(fd >= 0, "open \(path)")
    defer { unlink(path) }
    let small = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
    memset(small, 0x61, 4096)
    check(pwrite(fd, small, 4096, 0) == 4096, "pwrite")
    for _ in 0..<200 { _ = pread(fd, small, 4096, 0); _ = read(fd, small, 16); _ = lseek(fd, 0, SEEK_SET) }
    var p: [Int32] = [0, 0]
    check(pipe(&p) == 0, "pipe")
    let writer = fork()
    if writer == 0 {
        var c: UInt8 = 1
        for _ in 0..<3 { usleep(20_000); _ = write(p[1], &c, 1) }
        _exit(0)
    }
    close(p[1])
    var c: UInt8 = 0
    for _ in 0..<3 { _ = read(p[0], &c, 1) }
    var st: Int32 = 0
    waitpid(writer, &st, 0)
    for _ in 0..<3 { var ts = timespec(tv_sec: 0, tv_nsec: 20_000_000); nanosleep(&ts, nil) }
    for i in 0..<200 { _ = pwrite(fd, small, 4096, off_t(4096 * (i % 16))) }
    let bigSize = 64 << 20
    let big = UnsafeMutableRawPointer.allocate(byteCount: bigSize, alignment: 4096)
    memset(big, 0x62, bigSize)
    check(pwrite(fd, big, bigSize, 1 << 20) == bigSize, "large pwrite")
    close(fd)

case "threads":
    guard let n = Int(args[2]) else { usage() }
    // Each thread makes CALLS getppid(2), yielding every 64 so threads switch and migrate.
    let calls = args.count > 3 ? Int(args[3]) ?? 1 : 1
    let box = UnsafeMutablePointer<Int>.allocate(capacity: 1)
    box.pointee = calls
    var threads: [pthread_t] = []
    for _ in 0..<n {
        var t = pthread_t()
        check(pthread_create(&t, nil, getppidThread, box) == 0, "pthread_create")
        threads.append(t)
    }
    for t in threads { pthread_join(t, nil) }

case "trickle":
    // N getppid(2) calls MS milliseconds apart: a steady trickle of events
    // that never fills a batch or wakes the recorder.
    guard args.count > 3, let n = Int(args[2]), let ms = UInt32(args[3]) else { usage() }
    for _ in 0..<n {
        _ = fb_getppid_raw()
        usleep(ms * 1000)
    }

case "wait-getppid":
    guard args.count > 3, let ms = UInt32(args[2]), let n = Int(args[3]) else { usage() }
    usleep(ms * 1000)
    for _ in 0..<n { _ = fb_getppid_raw() }

case "direct-write":
    // N O_DIRECT writes of SIZE bytes to a file in DIR (which must be on a block device), then fsync.
    guard args.count > 4, let n = Int(args[3]), let size = Int(args[4]), size % 4096 == 0 else { usage() }
    let path = args[2] + "/flightbox-direct.dat"
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | fb_o_direct, 0o600)
    check(fd >= 0, "open \(path) with O_DIRECT")
    defer { unlink(path) }
    let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
    memset(buf, 0x63, size)
    for i in 0..<n { check(pwrite(fd, buf, size, off_t(i * size)) == size, "direct write") }
    check(fsync(fd) == 0, "fsync")
    close(fd)

case "privilege":
    // Every call the privilege family reports, with known arguments (as root).
    exit(fb_privilege_scenario(args[2]))

case "spin":
    // Busy for MS milliseconds on CPU (pinned): two of these on one CPU wait
    // for it in turn.
    guard args.count > 3, let ms = UInt64(args[2]), let cpu = Int32(args[3]) else { usage() }
    check(fb_pin_to_cpu(cpu) == 0, "pin to cpu \(cpu)")
    let end = now() + ms * 1_000_000
    var x: UInt64 = 0
    while now() < end { x &+= 1 }
    if x == 42 { print("") }

case "serve":
    // A latency-sensitive service, pinned to CPU: N requests, each WORK ms of
    // CPU time (its own CPU clock: under contention a request takes longer),
    // then a sleep of SLEEP ms waiting for the next. Prints the slowest
    // request's wall time in ms.
    guard args.count > 5, let n = Int(args[2]), let work = UInt64(args[3]), let sleep = UInt32(args[4]), let cpu = Int32(args[5]) else { usage() }
    check(fb_pin_to_cpu(cpu) == 0, "pin to cpu \(cpu)")
    func cpuTime() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
    var slowest: UInt64 = 0
    var x: UInt64 = 0
    for _ in 0..<n {
        let start = now(), end = cpuTime() + work * 1_000_000
        while cpuTime() < end { x &+= 1 }
        slowest = max(slowest, now() - start)
        usleep(sleep * 1000)
    }
    print(slowest / 1_000_000)
    if x == 42 { print("") }

case "serve-read":
    // A service whose request is a read: pinned to CPU, N requests, each a
    // pread of all of FILE (kept in memory, on tmpfs: the time is the
    // kernel's copy, CPU time inside the syscall, so under contention the
    // call itself is preempted), then a sleep of SLEEP ms. Prints the
    // slowest request's wall time in ms.
    guard args.count > 5, let n = Int(args[3]), let sleep = UInt32(args[4]), let cpu = Int32(args[5]) else { usage() }
    check(fb_pin_to_cpu(cpu) == 0, "pin to cpu \(cpu)")
    let fd = open(args[2], O_RDONLY)
    check(fd >= 0, "open \(args[2])")
    var st = stat()
    check(fstat(fd, &st) == 0, "fstat")
    let size = max(Int(st.st_size), 1)
    let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
    // Touched once, so a request copies and never faults.
    memset(buf, 0, size)
    var slowest: UInt64 = 0
    for _ in 0..<n {
        let start = now()
        check(pread(fd, buf, size, 0) == Int(st.st_size), "pread")
        slowest = max(slowest, now() - start)
        usleep(sleep * 1000)
    }
    print(slowest / 1_000_000)

case "tcp":
    // N loopback connections, then one refused; prints "PORT REFUSED_PORT CONNECTIONS".
    guard let n = Int32(args[2]) else { usage() }
    var port: Int32 = 0, refused: Int32 = 0
    let made = fb_tcp_scenario(n, &port, &refused)
    print("\(port) \(refused) \(made)")

case "netbytes":
    // Bytes both ways on one loopback connection (see fb_netbytes_scenario);
    // prints "PORT SERVER_PID BYTES_SENT".
    guard let trickle = Int32(args[2]), trickle >= 0 else { usage() }
    var port: Int32 = 0, server: Int32 = 0
    let sent = fb_netbytes_scenario(trickle, &port, &server)
    check(sent > 0, "netbytes scenario")
    print("\(port) \(server) \(sent)")

case "net-storm":
    // N sends of SIZE bytes on one loopback connection; prints the ns they took.
    guard args.count > 3, let n = Int(args[2]), let size = Int32(args[3]), size > 0 else { usage() }
    let ns = fb_net_storm(n, size)
    check(ns > 0, "net-storm")
    print(ns)

case "tcp-outage":
    // Prints "PORT ACCEPTED REFUSED".
    guard args.count > 3, let n = Int32(args[2]), let ms = Int32(args[3]) else { usage() }
    var port: Int32 = 0, refused: Int32 = 0
    let made = fb_tcp_outage(n, ms, &port, &refused)
    check(made >= 0, "tcp-outage listener")
    print("\(port) \(made) \(refused)")

case "accept-stop":
    // Prints "PORT ACCEPTED REFUSED UNANSWERED OTHER".
    guard args.count > 4, let serve = Int32(args[3]), let after = Int32(args[4]) else { usage() }
    var counts = [Int](repeating: 0, count: 4)
    let port = fb_accept_stop(args[2], serve, after, &counts)
    check(port >= 0, "accept-stop \(args[2])")
    print("\(port) \(counts.map(String.init).joined(separator: " "))")

case "retransmit":
    guard let ms = Int32(args[2]) else { usage() }
    var port: Int32 = 0
    check(fb_tcp_retransmit_scenario(ms, &port) == 0, "retransmit scenario")
    print(port)

case "http":
    guard let ms = Int32(args[2]) else { usage() }
    let served = fb_http_load(ms)
    check(served >= 0, "http server")
    print(served)

case "writes":
    // A: 10 writes of 4096 bytes, one of 100, 3 pwrites of 512, one write to
    // a bad buffer (EFAULT), then close: one summary of 15 calls, 42,596
    // bytes, 1 error. B: 1 byte every 100 ms for 1.5 s: a summary per second.
    // Writes to a pipe are not summarized.
    let dir = args[2]
    let a = dir + "/flightbox-writes-a.dat", b = dir + "/flightbox-writes-b.dat"
    let buf = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 64)
    memset(buf, 0x77, 4096)
    var fd = open(a, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    check(fd >= 0, "open \(a)")
    for _ in 0..<10 { check(write(fd, buf, 4096) == 4096, "write") }
    check(write(fd, buf, 100) == 100, "write")
    for i in 0..<3 { check(pwrite(fd, buf, 512, off_t(i * 512)) == 512, "pwrite") }
    check(write(fd, UnsafeRawPointer(bitPattern: 8), 16) == -1, "a write from a bad buffer fails")
    close(fd)
    var p: [Int32] = [0, 0]
    check(pipe(&p) == 0, "pipe")
    for _ in 0..<5 { _ = write(p[1], buf, 10) }
    fd = open(b, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    check(fd >= 0, "open \(b)")
    for _ in 0..<15 { check(write(fd, buf, 1) == 1, "write"); usleep(100_000) }
    close(fd)
    unlink(a)
    unlink(b)

case "linger":
    // Writes and faults, then nothing for 2.5 s: the kernel-side summaries
    // must come out on their own (the sweep), before the process exits; the
    // fd is never closed by close(2).
    let path = args[2] + "/flightbox-linger.dat"
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    check(fd >= 0, "open \(path)")
    let buf = UnsafeMutableRawPointer.allocate(byteCount: 1000, alignment: 64)
    memset(buf, 0x6c, 1000)
    for _ in 0..<3 { check(write(fd, buf, 1000) == 1000, "write") }
    let pages = UnsafeMutableRawPointer.allocate(byteCount: 256 * 4096, alignment: 4096)
    for i in 0..<256 { pages.storeBytes(of: 1, toByteOffset: i * 4096, as: UInt8.self) }
    unlink(path)
    usleep(2_500_000)
    exit(0)

case "faults":
    guard args.count > 3, let pages = Int32(args[3]) else { usage() }
    check(fb_fault_scenario(args[2] + "/flightbox-faults.dat", pages) == 0, "fault scenario")

case "oom":
    // Joins the cgroup, then touches memory a MiB at a time until the
    // cgroup's limit makes the kernel kill it.
    guard args.count > 3, let mb = Int(args[3]) else { usage() }
    let procs = open(args[2] + "/cgroup.procs", O_WRONLY)
    check(procs >= 0, "open \(args[2])/cgroup.procs")
    let me = Array("\(getpid())\n".utf8)
    check(write(procs, me, me.count) == me.count, "join the cgroup")
    close(procs)
    var chunks: [UnsafeMutableRawPointer] = []
    for _ in 0..<mb {
        let c = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        memset(c, 0x5a, 1 << 20)
        chunks.append(c)
    }
    print("survived \(chunks.count) MiB")

case "use":
    guard args.count > 6, let rate = Double(args[4]), let period = Double(args[5]), let seconds = Double(args[6]), rate >= 0, period > 0
    else { usage() }
    let kind = args[2], shape = args[3]
    guard ["memory", "file", "fds", "tasks"].contains(kind), ["leak", "sawtooth", "burst", "flat"].contains(shape),
          kind != "file" || args.count > 7 else { usage() }
    /// Units the shape holds `t` seconds in.
    func target(_ t: Double) -> Int {
        switch shape {
        case "leak": Int(rate * t)
        case "sawtooth": Int(rate * t.truncatingRemainder(dividingBy: period))
        case "burst": t >= period && t < period + 2 ? Int(rate * period) : 0
        default: Int(rate * period)
        }
    }
    var held = 0
    var maps: [(UnsafeMutableRawPointer, Int)] = []
    var fds: [Int32] = []
    var children: [pid_t] = []
    var file: Int32 = -1
    let chunk = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 4096)
    memset(chunk, 0x66, 1 << 16)
    if kind == "file" {
        file = open(args[7], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o600)
        check(file >= 0, "open \(args[7])")
    }
    /// Takes `n` more units; false when the resource ran out.
    func take(_ n: Int) -> Bool {
        switch kind {
        case "memory":
            let size = n * 1024
            guard let p = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else { return false }
            memset(p, 0x5a, size)
            maps.append((p, size))
        case "file":
            var left = n * 1024
            while left > 0 {
                let w = write(file, chunk, min(left, 1 << 16))
                if w < 0 { return false }
                left -= w
            }
        case "fds":
            for _ in 0..<n {
                let fd = open("/dev/null", O_RDONLY)
                if fd < 0 { return false }
                fds.append(fd)
            }
        default:
            for _ in 0..<n {
                let c = fork()
                if c < 0 { return false }
                if c == 0 { while true { pause() } }
                children.append(c)
            }
        }
        held += n
        return true
    }
    func releaseAll() {
        for (p, size) in maps { munmap(p, size) }
        maps.removeAll()
        if file >= 0 { check(ftruncate(file, 0) == 0, "truncate") }
        for fd in fds { close(fd) }
        fds.removeAll()
        for c in children { kill(c, SIGKILL) }
        for c in children { var st: Int32 = 0; waitpid(c, &st, 0) }
        children.removeAll()
        held = 0
    }
    let start = now()
    var tick: UInt64 = 0
    while true {
        let t = Double(now() - start) / 1e9
        if t >= seconds { break }
        let want = target(t)
        if want < held { releaseAll() }
        if want > held, !take(want - held) {
            // Exhausted: say when (CLOCK_MONOTONIC, the trace's clock) and how much was held.
            print("exhausted \(kind) at \(now()) ns after \(held) units: \(String(cString: strerror(errno)))")
            releaseAll()
            exit(0)
        }
        tick += 1
        let next = start + tick * 100_000_000
        let n = now()
        if next > n { usleep(UInt32((next - n) / 1000)) }
    }
    print("held \(held) units at the end")
    releaseAll()

case "exit":
    guard let code = Int32(args[2]) else { usage() }
    exit(code)

case "signal":
    guard let sig = Int32(args[2]) else { usage() }
    kill(getpid(), sig)
    pause()

default:
    usage()
}
