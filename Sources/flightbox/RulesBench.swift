import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import FlightboxCapture
import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat

/// `flightbox bench rules`: the security rules' evaluation throughput on a
/// stream made only of the events they look at — process lifecycle, file
/// opens, TCP, byte summaries and privilege records — so the figure is the rules' cost per
/// event they judge, not diluted by syscalls they never see (the replay
/// bench's `decode + security` row gives that). Run it under `taskset -c N`
/// for one core.
struct RulesBench: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rules", abstract: "Measure the security rules' evaluation throughput on a synthetic stream of the events they judge.")

    @Option(help: "Events in the stream.") var events: Int = 2_000_000
    @Option(help: "Rounds (the median is reported).") var rounds: Int = 5

    func validate() throws {
        try checkRange(events, 1000...100_000_000, flag: "--events")
        try checkRange(rounds, 1...1000, flag: "--rounds")
    }

    func run() throws {
        let (buffer, offsets, mix) = RulesBench.stream(count: events)
        var times: [Double] = []
        var cpuTimes: [Double] = []
        var findings = 0
        for _ in 0..<rounds {
            let engine = DetectorEngine(detectors: [DetectorRegistry.make("security")!], snapshot: RulesBench.snapshot)
            let t0 = monotonicNow(), c0 = RulesBench.threadCPUNow()
            buffer.withUnsafeBytes { raw in
                for (i, o) in offsets.enumerated() {
                    let size = Int(raw.loadUnaligned(fromByteOffset: o + 10, as: UInt16.self))
                    engine.process(Event.validated(UnsafeRawBufferPointer(rebasing: raw[o..<(o + size)]), sequence: UInt64(i))!)
                }
            }
            engine.finish()
            times.append(Double(monotonicNow() - t0) / 1e9)
            cpuTimes.append(Double(RulesBench.threadCPUNow() - c0) / 1e9)
            findings = engine.findings.count
        }
        let s = times.sorted()[times.count / 2]
        print("stream: \(events) events (\(mix)); \(findings) findings")
        print("security (all built-in rules): \(String(format3: s)) s, \(String(format3: Double(events) / s / 1e6)) M events/s (median of \(rounds))")
        // On a loaded machine the wall clock counts the time other tasks held
        // the core; the thread's CPU time does not.
        let c = cpuTimes.sorted()[cpuTimes.count / 2]
        print("per CPU second (this thread's CPU time): \(String(format3: Double(events) / c / 1e6)) M events/s (median of \(rounds))")
    }

    /// This thread's CPU time, ns.
    static func threadCPUNow() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    static let snapshot = ProcessSnapshot(timestamp: 0, processes: [
        ProcessRecord(pid: 1, ppid: 0, uid: 0, comm: "systemd", exe: "/usr/lib/systemd/systemd", argv: ["/sbin/init"]),
        ProcessRecord(pid: 10, ppid: 1, uid: 0, comm: "sshd", exe: "/usr/sbin/sshd", argv: ["sshd", "-D"]),
        ProcessRecord(pid: 11, ppid: 10, uid: 1000, comm: "bash", exe: "/usr/bin/bash", argv: ["-bash"]),
    ])

    static let paths = [
        "/usr/lib/x86_64-linux-gnu/libc.so.6", "/etc/ld.so.cache", "/proc/self/status", "/etc/passwd", "/etc/nsswitch.conf",
        "/home/user/project/src/main.c", "/tmp/build/main.o", "/usr/include/stdio.h", "/etc/hosts", "/var/log/syslog",
        "/home/user/.ssh/known_hosts", "/etc/pam.d/common-auth", "/usr/share/zoneinfo/UTC", "/dev/null", "/etc/crontab",
        "/home/user/project/Makefile",
    ]

    /// A deterministic mix per 100 events: 60 opens (reads over 16 paths
    /// some rules look at; 1 in 4 writes a build output), 8 fork + 8 exec + 8 exit over 64 recycled pids, 8 TCP
    /// state changes (connects, established, refused), 4 byte summaries
    /// (uploads and downloads, one accepted), 4 privilege records (dup onto
    /// stdio of a pipe, setuid dropping privileges, a capset re-raise).
    static func stream(count: Int) -> ([UInt8], [Int], String) {
        var buf: [UInt8] = []
        var offsets: [Int] = []
        buf.reserveCapacity(count * 80)
        offsets.reserveCapacity(count)
        let comms = ["make", "cc", "sh", "python3", "curl", "git", "ls", "cat"]
        var ts: UInt64 = 1_000_000
        for i in 0..<count {
            ts += 500
            let slot = i % 100
            let pid = UInt32(1000 + (i / 100) % 64)
            let rec: [UInt8]
            switch slot {
            case 0..<60:
                // Reads over the 16 paths; 1 in 4 opens writes a build output.
                let write = slot % 4 == 0
                let path = write ? "/tmp/build/obj\(i % 32).o" : paths[(i / 7) % paths.count]
                rec = FileRecord.encode(ts: ts, pid: pid, tid: pid, ret: 3, op: 1, dirfd: -100, openFlags: write ? 0o1101 : 0,
                                        path: Array(path.utf8))
            case 60..<68:
                rec = ForkRecord.encode(ts: ts, pid: 11, tid: 11, childPid: pid, childTid: pid, comm: "bash")
            case 68..<76:
                let c = comms[(i / 100) % comms.count]
                let argv = [c, "-O2", "file\(i % 10).c"]
                rec = ExecRecord.encode(ts: ts, pid: pid, tid: pid, ppid: 11, uid: 1000, argc: 3, stdinKind: 5, stdoutKind: 5, comm: c,
                                        filename: Array("/usr/bin/\(c)".utf8), argv: argv.flatMap { Array($0.utf8) + [0] })
            case 76..<84:
                rec = ExitRecord.encode(ts: ts, flags: exitGroupFlag, pid: pid, tid: pid)
            case 92..<96:
                // Byte summaries of uploads and downloads, out and accepted, to 7 hosts.
                let up = slot % 2 == 0
                rec = NetbytesRecord.encode(ts: ts, pid: pid, tid: pid, bytesSent: up ? 900_000 : 500, bytesReceived: up ? 500 : 900_000,
                                            totalSent: up ? 900_000 : 500, totalReceived: up ? 500 : 900_000,
                                            daddr: [10, 0, UInt8(i % 7), 1] + [UInt8](repeating: 0, count: 12), sends: 20, receives: 20,
                                            sport: 40000, dport: 443, family: 2, reason: 1, direction: slot == 95 ? 2 : 1)
            case 84..<92:
                let (old, new): (UInt8, UInt8) = slot % 3 == 0 ? (7, 2) : slot % 3 == 1 ? (2, 1) : (2, 7)
                rec = TCPRecord.encode(ts: ts, pid: pid, tid: pid, daddr: [10, 0, UInt8(i % 7), 1] + [UInt8](repeating: 0, count: 12),
                                       sport: 40000, dport: UInt16(443 + slot % 2), family: 2, kind: 1, oldstate: old, newstate: new)
            case 99:
                // A capability re-raised within the permitted set (not adding).
                rec = PrivilegeRecord.encode(ts: ts, pid: pid, tid: pid, ret: 0, nr: 126, op: 2, capEffective: 1 << 13, capPermitted: 1 << 13,
                                             oldCapEffective: 0, oldCapPermitted: 1 << 13)
            default:
                rec = slot % 2 == 0
                    ? PrivilegeRecord.encode(ts: ts, pid: pid, tid: pid, ret: 1, nr: 33, op: 10, args: [4, 1, 0, 0], fdKind: 5)
                    : PrivilegeRecord.encode(ts: ts, pid: pid, tid: pid, ret: 0, nr: 105, op: 1, args: [65534, 0, 0, 0], uid: 65534, euid: 65534, oldUid: 0, oldEuid: 0)
            }
            offsets.append(buf.count)
            buf += rec
        }
        return (buf, offsets, "60% file opens, 24% fork/exec/exit, 8% TCP, 4% byte summaries, 4% privilege")
    }
}
