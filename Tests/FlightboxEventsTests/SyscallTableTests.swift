import Foundation
import XCTest
@testable import FlightboxEvents

/// The syscall facts (bpf/syscalls/) and what is generated from them.
final class SyscallTableTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// bpf/syscall_table.h and SyscallTables.swift are what bpf/gen-syscalls.py
    /// makes of bpf/syscalls/ now: a change to classes.txt or to a number table
    /// without regenerating fails here.
    func testGeneratedFilesAreCurrent() throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", SyscallTableTests.root.appendingPathComponent("bpf/gen-syscalls.py").path, "--check"]
        p.currentDirectoryURL = SyscallTableTests.root
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        do {
            try p.run()
        } catch {
            return XCTFail("cannot run python3 to check the generated syscall tables (bpf/gen-syscalls.py --check): \(error)")
        }
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        if p.terminationStatus == 127 {
            return XCTFail("python3 is not installed: it checks the generated syscall tables (bpf/gen-syscalls.py --check)\n\(text)")
        }
        XCTAssertEqual(p.terminationStatus, 0, "generated syscall files are stale; run `python3 bpf/gen-syscalls.py` and commit:\n\(text)")
    }

    /// The numbers the code used before there were tables (bpf/syscalls.bpf.c,
    /// the tests, the vectors) are what the x86_64 table says.
    func testX86_64NumbersAreTheOnesTheCodeUsed() {
        let used: [String: UInt32] = [
            "read": 0, "write": 1, "open": 2, "close": 3, "ioctl": 16, "pread64": 17, "pwrite64": 18, "readv": 19,
            "writev": 20, "dup2": 33, "nanosleep": 35, "getpid": 39, "connect": 42, "accept": 43, "clone": 56, "fork": 57,
            "vfork": 58, "execve": 59, "exit": 60, "wait4": 61, "rename": 82, "creat": 85, "unlink": 87, "chmod": 90,
            "fchmod": 91, "ptrace": 101, "setuid": 105, "setgid": 106, "getppid": 110, "setreuid": 113, "setregid": 114,
            "setresuid": 117, "setresgid": 119, "setfsuid": 122, "setfsgid": 123, "capset": 126, "mount": 165,
            "init_module": 175, "futex": 202, "getdents64": 217, "exit_group": 231, "epoll_wait": 232, "openat": 257,
            "unlinkat": 263, "renameat": 264, "fchmodat": 268, "accept4": 288, "dup3": 292, "pwritev": 296,
            "process_vm_writev": 311, "finit_module": 313, "renameat2": 316, "memfd_create": 319, "bpf": 321,
            "preadv2": 327, "pwritev2": 328, "clone3": 435, "openat2": 437, "fchmodat2": 452,
        ]
        let t = SyscallTable.x86_64
        for (name, nr) in used {
            XCTAssertEqual(t.number(named: name), nr, name)
            XCTAssertEqual(t.name(nr), name)
        }
        XCTAssertEqual(syscallName(39, arch: .x86_64), "getpid")
        XCTAssertEqual(syscallName(400, arch: .x86_64), "syscall_400", "a hole in the table")
        XCTAssertEqual(syscallName(9999, arch: .x86_64), "syscall_9999")
    }

    /// arm64 uses the generic table: other numbers, and none of the old calls
    /// that have an *at or 2 form.
    func testArm64NumbersOfWellKnownCalls() {
        let known: [String: UInt32] = [
            "read": 63, "write": 64, "openat": 56, "close": 57, "execve": 221, "clone": 220, "exit_group": 94,
            "getpid": 172, "getppid": 173, "nanosleep": 101, "futex": 98, "dup3": 24, "ioctl": 29, "mount": 40,
            "unlinkat": 35, "renameat2": 276, "fchmodat": 53, "setuid": 146, "capset": 91, "ptrace": 117,
            "finit_module": 273, "memfd_create": 279, "bpf": 280, "openat2": 437, "fchmodat2": 452,
            // What arm64 wants of the generic table's optional entries (__ARCH_WANT_*).
            "renameat": 38, "newfstatat": 79, "fstat": 80, "getrlimit": 163, "setrlimit": 164, "clone3": 435,
            "memfd_secret": 447, "sync_file_range": 84,
        ]
        let t = SyscallTable.arm64
        for (name, nr) in known {
            XCTAssertEqual(t.number(named: name), nr, name)
            XCTAssertEqual(t.name(nr), name)
        }
        for name in ["open", "fork", "vfork", "stat", "lstat", "creat", "unlink", "rename", "chmod", "dup2", "pipe",
                     "poll", "select", "epoll_wait", "pause", "sync_file_range2", "fstatat64", "mmap2"] {
            XCTAssertNil(t.number(named: name), "arm64 has no \(name)")
        }
        XCTAssertEqual(syscallName(63, arch: .arm64), "read")
        XCTAssertEqual(syscallName(0, arch: .arm64), "io_setup")
        XCTAssertEqual(syscallName(250, arch: .arm64), "syscall_250", "244-259 are other architectures' own")
    }

    /// The classes of x86_64 syscalls are those hard-coded before classes.txt:
    /// bpf/syscalls.bpf.c's nr_class table and the latency detector's waits.
    func testX86_64ClassesAreUnchanged() {
        let t = SyscallTable.x86_64
        XCTAssertEqual(t.numbers(in: .fd), [0, 1, 16, 17, 18, 19, 20, 42, 43, 44, 45, 46, 47, 73, 74, 75, 77, 217, 232, 275,
                                           277, 281, 285, 288, 295, 296, 299, 307, 326, 327, 328])
        XCTAssertEqual(t.numbers(in: .write), [1, 18, 20, 296, 328])
        XCTAssertEqual(t.numbers(in: .close), [3, 33, 292])
        XCTAssertEqual(t.numbers(in: .file), [2, 82, 85, 87, 257, 263, 264, 316, 437])
        XCTAssertEqual(t.numbers(in: .privilege), [33, 90, 91, 101, 105, 106, 113, 114, 117, 119, 122, 123, 126, 165, 175,
                                                  268, 292, 311, 313, 319, 321, 452])
        let waits = ["nanosleep", "clock_nanosleep", "pause", "wait4", "waitid", "poll", "ppoll", "select", "pselect6",
                     "epoll_wait", "epoll_pwait", "epoll_pwait2", "futex", "futex_waitv", "rt_sigsuspend", "rt_sigtimedwait",
                     "accept", "accept4", "msgrcv", "semop", "semtimedop", "mq_timedreceive", "io_getevents", "io_pgetevents",
                     "io_uring_enter", "restart_syscall", "vfork", "sched_yield", "flock", "sigaltstack"]
        XCTAssertEqual(t.numbers(in: .wait), waits.map { t.number(named: $0)! }.sorted())
        XCTAssertEqual(t.numbers(in: [.fd, .write]), [1, 18, 20, 296, 328])
        XCTAssertEqual(t.classes(1), [.fd, .write], "write: buffered, not a storage wait")
        XCTAssertEqual(t.classes(0), [.fd, .storage], "read")
        XCTAssertEqual(t.classes(74), [.fd, .storage], "fsync")
        XCTAssertEqual(t.classes(39), [])
        XCTAssertEqual(t.classes(16), [.fd], "ioctl: not a file-system call")
        XCTAssertEqual(t.classes(217), [.fd, .storage], "getdents64")
        XCTAssertEqual(t.classes(262), [.storage], "newfstatat: by path")
        XCTAssertEqual(t.classes(100_000), [])
    }

    /// The same classes by name on arm64, where the calls exist.
    func testArm64ClassesFollowTheNames() {
        let x86 = SyscallTable.x86_64, arm = SyscallTable.arm64
        for cls: SyscallClass in [.fd, .file, .privilege, .write, .close, .wait, .storage] {
            let x86Names = Set(x86.numbers(in: cls).map { x86.name($0)! })
            let armNames = Set(arm.numbers(in: cls).map { arm.name($0)! })
            XCTAssertEqual(armNames, x86Names.filter { arm.number(named: $0) != nil })
        }
        XCTAssertEqual(arm.classes(63), [.fd, .storage], "read")
        XCTAssertEqual(arm.classes(101), [.wait], "nanosleep")
        XCTAssertEqual(arm.classes(24), [.privilege, .close], "dup3")
        XCTAssertEqual(arm.numbers(in: .file).map { arm.name($0)! }, ["unlinkat", "renameat", "openat", "renameat2", "openat2"])
    }

    /// A trace names the numbering it was recorded with; events decode with it.
    func testTraceArchitectureChoosesTheTable() throws {
        XCTAssertEqual(SyscallArch(schema: .object([("syscall_table", .string("arm64"))]), machine: "x86_64"), .arm64)
        XCTAssertEqual(SyscallArch(schema: .object([("syscall_table", .string("x86_64"))]), machine: "aarch64"), .x86_64)
        XCTAssertEqual(SyscallArch(schema: .null, machine: "aarch64"), .arm64)
        XCTAssertEqual(SyscallArch(schema: .object([("syscall_table", .string("mips"))]), machine: "riscv64"), .x86_64)
        XCTAssertEqual(SyscallArch(machine: "x86_64"), .x86_64)
        XCTAssertNil(SyscallArch(machine: "s390x"))
        XCTAssertEqual(EventSchema.json["syscall_table"]?.stringValue, SyscallArch.host.rawValue)

        let rec = EventEncoder.syscall(ts: 1, pid: 1, tid: 1, nr: 63, duration: 10, ret: 4, args: [3, 0, 4])
        try rec.withUnsafeBytes { raw in
            let e = try XCTUnwrap(Event.validated(raw, sequence: 0))
            XCTAssertEqual(e.json(arch: .arm64)["syscall"]?.stringValue, "read")
            XCTAssertEqual(e.json(arch: .x86_64)["syscall"]?.stringValue, "uname")
            XCTAssertTrue(e.text(ts: "+0", comm: "cat", arch: .arm64).contains("read(0x3, 0x0, 0x4) = 4"))
        }
    }
}
