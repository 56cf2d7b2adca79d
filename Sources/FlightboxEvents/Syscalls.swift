/// A syscall numbering: the table a trace's syscall numbers are read with.
/// The rawValue is the name the trace's schema gives it ("syscall_table").
public enum SyscallArch: String, CaseIterable, Sendable {
    case x86_64
    case arm64

    /// The architecture this binary runs on: the numbering of what it records.
    public static var host: SyscallArch {
        #if arch(arm64)
        .arm64
        #else
        .x86_64
        #endif
    }

    /// From uname(2)'s machine ("x86_64", "aarch64"); nil for one without a table.
    public init?(machine: String) {
        switch machine {
        case "x86_64", "amd64": self = .x86_64
        case "aarch64", "arm64": self = .arm64
        default: return nil
        }
    }

    /// The numbering of a trace: the table its schema names, else the machine
    /// it was recorded on, else x86_64 (the only one before arm64's).
    public init(schema: JSON, machine: String) {
        if let name = schema["syscall_table"]?.stringValue, let arch = SyscallArch(rawValue: name) {
            self = arch
        } else {
            self = SyscallArch(machine: machine) ?? .x86_64
        }
    }

    public var table: SyscallTable {
        switch self {
        case .x86_64: .x86_64
        case .arm64: .arm64
        }
    }
}

/// What a syscall is to Flightbox (bpf/syscalls/classes.txt); the classes
/// themselves are in the generated SyscallTables.swift.
public struct SyscallClass: OptionSet, Hashable, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
}

/// One architecture's syscalls: names by number and their classes. The
/// tables are generated (SyscallTables.swift, by bpf/gen-syscalls.py) from the
/// kernel's tables, the same facts the BPF programs are compiled with.
public struct SyscallTable: Sendable {
    public let arch: SyscallArch
    /// Names by number; "" for a number the architecture does not assign.
    public let names: [String]
    private let classesByNumber: [SyscallClass]
    private let numbersByName: [String: UInt32]

    init(arch: SyscallArch, names: [String], classes: [UInt32: SyscallClass]) {
        self.arch = arch
        self.names = names
        var byNumber = [SyscallClass](repeating: [], count: names.count)
        for (nr, c) in classes { byNumber[Int(nr)] = c }
        classesByNumber = byNumber
        var byName: [String: UInt32] = [:]
        for (nr, name) in names.enumerated() where !name.isEmpty { byName[name] = UInt32(nr) }
        numbersByName = byName
    }

    /// The name of `nr`, nil if the architecture has no such syscall.
    public func name(_ nr: UInt32) -> String? {
        let i = Int(nr)
        return i < names.count && !names[i].isEmpty ? names[i] : nil
    }

    public func number(named name: String) -> UInt32? { numbersByName[name] }

    /// The classes `nr` is in (empty for most syscalls).
    public func classes(_ nr: UInt32) -> SyscallClass {
        let i = Int(nr)
        return i < classesByNumber.count ? classesByNumber[i] : []
    }

    /// Numbers of the syscalls in every one of `classes`, in order.
    public func numbers(in classes: SyscallClass) -> [UInt32] {
        guard !classes.isEmpty else { return [] }
        return classesByNumber.indices.filter { classesByNumber[$0].isSuperset(of: classes) }.map { UInt32($0) }
    }
}

/// Name of a syscall number in a numbering (by default this machine's);
/// "syscall_N" for a number it does not assign.
public func syscallName(_ nr: UInt32, arch: SyscallArch = .host) -> String {
    arch.table.name(nr) ?? "syscall_\(nr)"
}

/// Syscall number for a name, for filters given by name.
public func syscallNumber(named name: String, arch: SyscallArch = .host) -> UInt32? {
    arch.table.number(named: name)
}
