#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Flightbox's syscall facts, generated from one description.

Inputs, committed:
  bpf/syscalls/x86_64.tbl, bpf/syscalls/arm64.tbl
      number and name of every syscall of each architecture, extracted from the kernel's
      tables by --import (so a build never needs kernel headers or sources)
  bpf/syscalls/classes.txt
      which syscalls are what to Flightbox, by name (how to add one: its first lines)
Outputs, committed, never edited by hand:
  bpf/syscall_table.h                          the BPF programs' numbers, classes, argument kinds
  Sources/FlightboxEvents/SyscallTables.swift  the same names and classes for Swift

usage:
  python3 bpf/gen-syscalls.py            write the outputs
  python3 bpf/gen-syscalls.py --check    exit 1, saying what differs, when an output is stale
                                         (SyscallTableTests runs this)
  python3 bpf/gen-syscalls.py --import [ARCH=FILE ...]
      merge the numbers of the kernel's tables into bpf/syscalls/ARCH.tbl, then write the
      outputs. FILE is a uapi header or a kernel source table:
        x86_64  /usr/include/x86_64-linux-gnu/asm/unistd_64.h (default),
                or arch/x86/entry/syscalls/syscall_64.tbl of a kernel tree
        arm64   /usr/include/asm-generic/unistd.h (default; read as arm64 reads it),
                or scripts/syscall.tbl of a kernel tree (6.11 and later)
      Syscall numbers are ABI, so the lists only grow: an older source adds nothing and
      removes nothing; a source that contradicts a list (another name for a number) is an
      error to resolve by hand.
"""

import difflib
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLES = os.path.join(ROOT, "bpf", "syscalls")
CLASSES = os.path.join(TABLES, "classes.txt")
EVENTS_H = os.path.join(ROOT, "bpf", "events.h")
OUT_C = os.path.join(ROOT, "bpf", "syscall_table.h")
OUT_SWIFT = os.path.join(ROOT, "Sources", "FlightboxEvents", "SyscallTables.swift")

# Every number of every table must be below this: the BPF side's class array has this size.
NR_MAX = 512

ARCHES = {
    "x86_64": {
        "target": "__TARGET_ARCH_x86",
        "header": "/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
        # arch/x86/entry/syscalls/syscall_64.tbl: x32's own numbers (512-547) are not x86_64's.
        "abis": {"common", "64"},
        "defines": {},
    },
    "arm64": {
        "target": "__TARGET_ARCH_arm64",
        "header": "/usr/include/asm-generic/unistd.h",
        # scripts/syscall.tbl with arch/arm64/kernel/Makefile.syscalls' syscall_abis_64.
        "abis": {"common", "64", "renameat", "newstat", "rlimit", "memfd_secret"},
        # What arch/arm64/include/uapi/asm/unistd.h defines before it includes
        # asm-generic/unistd.h (until 6.11), on a 64-bit kernel.
        "defines": {
            "__BITS_PER_LONG": "64",
            "__ARCH_WANT_RENAMEAT": "1",
            "__ARCH_WANT_NEW_STAT": "1",
            "__ARCH_WANT_SET_GET_RLIMIT": "1",
            "__ARCH_WANT_TIME32_SYSCALLS": "1",
            "__ARCH_WANT_SYS_CLONE3": "1",
            "__ARCH_WANT_MEMFD_SECRET": "1",
        },
    },
}

# Classes: bit values are shared by C and Swift and stored nowhere else.
CLASSES_BITS = [("fd", 1), ("file", 2), ("privilege", 4), ("write", 8), ("close", 16), ("wait", 32), ("storage", 64)]
C_NAMES = {"fd": "FB_SC_FD", "file": "FB_SC_FILE", "privilege": "FB_SC_PRIV", "write": "FB_SC_WRITE",
           "close": "FB_SC_CLOSE", "wait": "FB_SC_WAIT",
           "storage": "FB_SC_STORAGE"}
# Argument kinds each class takes, in the column order of its C X-macro; and what must be there.
KINDS = {
    "close": ["fd", "oldfd"],
    "file": ["dirfd", "path", "path2", "flags", "mode", "how"],
    "privilege": ["str", "str2", "str3", "mode", "fd"],
}
REQUIRED_KINDS = {"close": ["fd"], "file": ["path"]}
OPTIONS = {"file": {"op", "flags"}, "privilege": {"op"}}
REQUIRED_OPTIONS = {"file": ["op"], "privilege": ["op"]}
MAX_ARG = 4


class Error(Exception):
    pass


# ---------------------------------------------------------------- number tables


def table_lines(path):
    """(line number, words) of each line of a syscall table, comments and blank lines left out."""
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if line:
                yield lineno, line.split()


def read_table(arch):
    """The committed list of `arch`: {number: name}."""
    path = os.path.join(TABLES, arch + ".tbl")
    table = {}
    for lineno, parts in table_lines(path):
        if len(parts) != 2 or not parts[0].isdigit():
            raise Error(f"{path}:{lineno}: expected '<number> <name>'")
        nr, name = int(parts[0]), parts[1]
        if nr in table:
            raise Error(f"{path}:{lineno}: number {nr} twice")
        table[nr] = name
    names = list(table.values())
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise Error(f"{path}: names with two numbers: {', '.join(dup)}")
    if max(table) >= NR_MAX:
        raise Error(f"{path}: number {max(table)} is not below {NR_MAX} (NR_MAX in bpf/gen-syscalls.py)")
    return table


def table_text(arch, table):
    src = ("arch/x86/entry/syscalls/syscall_64.tbl (ABIs common and 64; x32's own numbers are not x86_64's)"
           if arch == "x86_64" else
           "scripts/syscall.tbl with arm64's ABIs (common, 64, renameat, newstat, rlimit, memfd_secret),\n"
           "# or asm-generic/unistd.h as arm64 includes it (64-bit, __ARCH_WANT_RENAMEAT, _NEW_STAT,\n"
           "# _SET_GET_RLIMIT, _TIME32_SYSCALLS, _SYS_CLONE3, _MEMFD_SECRET)")
    lines = [
        f"# {arch} syscall numbers: <number> <name>, from the kernel's table:",
        f"# {src}.",
        "# Written by `python3 bpf/gen-syscalls.py --import`; numbers are ABI, so this list only grows.",
        "# What each syscall is to Flightbox is in classes.txt.",
    ]
    lines += [f"{nr}\t{table[nr]}" for nr in sorted(table)]
    return "\n".join(lines) + "\n"


def strip_c_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def eval_condition(expr, defines):
    """Evaluates a preprocessor condition of the kinds uapi unistd headers use."""
    def defined(m):
        return "1" if (m.group(1) or m.group(2)) in defines else "0"
    e = re.sub(r"defined\s*\(\s*(\w+)\s*\)|defined\s+(\w+)", defined, expr)
    e = e.replace("&&", " and ").replace("||", " or ")
    e = re.sub(r"!(?!=)", " not ", e)

    def value(m):
        word = m.group(0)
        if word in ("and", "or", "not"):
            return word
        v = defines.get(word, "0").strip() or "1"
        return str(int(v, 0)) if re.fullmatch(r"(0x[0-9a-fA-F]+|\d+)[uUlL]*", v) else "0"
    e = re.sub(r"\b[A-Za-z_]\w*\b", value, e)
    e = re.sub(r"\b(0x[0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", e)
    if not re.fullmatch(r"[\s\d()xa-fA-F!=<>andortn]*", e):
        raise Error(f"cannot evaluate #if {expr}")
    return bool(eval(e, {"__builtins__": {}}, {}))


def parse_header(path, defines):
    """{number: name} from a uapi unistd header: its #define __NR_* after the conditionals."""
    with open(path) as f:
        text = strip_c_comments(f.read().replace("\\\n", " "))
    defs = dict(defines)
    stack = []  # (parent active, this branch taken, some branch taken)
    active = True
    for line in text.splitlines():
        m = re.match(r"\s*#\s*(\w+)\s*(.*)", line)
        if not m:
            continue
        directive, rest = m.group(1), m.group(2).strip()
        if directive in ("if", "ifdef", "ifndef"):
            if directive == "if":
                taken = active and eval_condition(rest, defs)
            elif directive == "ifdef":
                taken = active and rest.split()[0] in defs
            else:
                taken = active and rest.split()[0] not in defs
            stack.append((active, taken, taken))
            active = taken
        elif directive == "elif":
            parent, _, any_taken = stack[-1]
            taken = parent and not any_taken and eval_condition(rest, defs)
            stack[-1] = (parent, taken, any_taken or taken)
            active = taken
        elif directive == "else":
            parent, _, any_taken = stack[-1]
            taken = parent and not any_taken
            stack[-1] = (parent, taken, True)
            active = taken
        elif directive == "endif":
            active = stack.pop()[0]
        elif not active:
            continue
        elif directive == "define":
            dm = re.match(r"(\w+)(\([^)]*\))?\s*(.*)", rest)
            defs[dm.group(1)] = dm.group(3).strip() if not dm.group(2) else "1"
        elif directive == "undef":
            defs.pop(rest.split()[0], None)

    def resolve(v, depth=0):
        v = v.strip()
        if re.fullmatch(r"\d+", v):
            return int(v)
        if depth < 8 and re.fullmatch(r"\w+", v) and v in defs:
            return resolve(defs[v], depth + 1)
        m = re.fullmatch(r"\(?\s*(\w+)\s*\+\s*(\d+)\s*\)?", v)
        if m and depth < 8 and m.group(1) in defs:
            base = resolve(defs[m.group(1)], depth + 1)
            return None if base is None else base + int(m.group(2))
        return None

    table = {}
    for name, v in defs.items():
        if not name.startswith("__NR_") or name in ("__NR_syscalls", "__NR_arch_specific_syscall"):
            continue
        nr = resolve(v)
        if nr is None:
            continue
        if nr in table and table[nr] != name[5:]:
            raise Error(f"{path}: {nr} is both {table[nr]} and {name[5:]}")
        table[nr] = name[5:]
    if not table:
        raise Error(f"{path}: no __NR_ definitions")
    return table


def parse_kernel_tbl(path, abis):
    """{number: name} from a kernel source table (<number> <abi> <name> [<entry> ...])."""
    table = {}
    for lineno, parts in table_lines(path):
        if len(parts) < 3 or not parts[0].isdigit():
            raise Error(f"{path}:{lineno}: expected '<number> <abi> <name> ...'")
        if parts[1] not in abis:
            continue
        nr, name = int(parts[0]), parts[2]
        if nr in table and table[nr] != name:
            raise Error(f"{path}:{lineno}: {nr} is both {table[nr]} and {name}")
        table[nr] = name
    if not table:
        raise Error(f"{path}: no entries with the ABIs {', '.join(sorted(abis))}")
    return table


def import_tables(specs):
    """--import: merges each source into its committed list."""
    sources = dict((a, ARCHES[a]["header"]) for a in ARCHES) if not specs else {}
    for spec in specs:
        arch, sep, path = spec.partition("=")
        if not sep or arch not in ARCHES:
            raise Error(f"--import takes ARCH=FILE with ARCH one of {', '.join(ARCHES)}, not '{spec}'")
        sources[arch] = path
    for arch, path in sources.items():
        if not os.path.exists(path):
            raise Error(f"{path} is missing (on Debian it comes with linux-libc-dev); "
                        f"give {arch}=FILE with a header or a kernel source table")
        conf = ARCHES[arch]
        new = parse_kernel_tbl(path, conf["abis"]) if path.endswith(".tbl") else parse_header(path, conf["defines"])
        try:
            old = read_table(arch)
        except FileNotFoundError:
            old = {}
        old_by_name = {n: nr for nr, n in old.items()}
        merged = dict(old)
        for nr, name in sorted(new.items()):
            if nr in old and old[nr] != name:
                raise Error(f"{path}: {arch} {nr} is {name}, but {arch}.tbl says {old[nr]}: resolve by hand")
            if name in old_by_name and old_by_name[name] != nr:
                raise Error(f"{path}: {arch} {name} is {nr}, but {arch}.tbl says {old_by_name[name]}: resolve by hand")
            merged[nr] = name
        added = sorted(set(merged) - set(old))
        kept = sorted(set(old) - set(new))
        with open(os.path.join(TABLES, arch + ".tbl"), "w") as f:
            f.write(table_text(arch, merged))
        print(f"{arch}: {path}: {len(new)} syscalls, {len(added)} new"
              + (f" ({', '.join(merged[n] for n in added[:12])}{', ...' if len(added) > 12 else ''})" if added else "")
              + (f"; {len(kept)} in {arch}.tbl that it lacks were kept" if kept else ""))


# ---------------------------------------------------------------- classes


class Entry:
    def __init__(self, name, args, options, lineno):
        self.name, self.args, self.options, self.lineno = name, args, options, lineno

    def index(self, kind):
        return self.args.index(kind) if kind in self.args else -1


def read_classes(tables):
    """{class: (doc lines, [Entry])} from classes.txt, checked against the tables."""
    known = dict(CLASSES_BITS)
    classes = {}
    current = None
    with open(CLASSES) as f:
        lines = f.read().splitlines()
    all_names = set()
    for t in tables.values():
        all_names.update(t.values())
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        where = f"{CLASSES}:{lineno}"
        m = re.fullmatch(r"\[(\w+)\]", line)
        if m:
            current = m.group(1)
            if current not in known:
                raise Error(f"{where}: unknown class [{current}] (known: {', '.join(known)})")
            if current in classes:
                raise Error(f"{where}: [{current}] twice")
            classes[current] = ([], [])
            continue
        if line.startswith("#"):
            if current and not classes[current][1]:
                classes[current][0].append(line[1:].strip())
            continue
        if not line:
            continue
        if current is None:
            raise Error(f"{where}: a syscall before any [class]")
        args = None
        m = re.match(r"(\w+)\(([^)]*)\)(.*)", line)
        if m:
            names = [m.group(1)]
            args = [a.strip() for a in m.group(2).split(",")] if m.group(2).strip() else []
            rest = m.group(3).split()
        else:
            tokens = line.split()
            names = [t for t in tokens if "=" not in t]
            rest = [t for t in tokens if "=" in t]
        if any("=" not in t for t in rest):
            raise Error(f"{where}: after name(args), only key=value options")
        options = dict(t.split("=", 1) for t in rest)
        allowed_kinds = KINDS.get(current, [])
        if args is not None:
            if not allowed_kinds:
                raise Error(f"{where}: [{current}] takes no argument kinds")
            for a in args:
                if a != "-" and a not in allowed_kinds:
                    raise Error(f"{where}: [{current}] argument kinds are {', '.join(allowed_kinds)} or -, not '{a}'")
                if a != "-" and args.count(a) > 1:
                    raise Error(f"{where}: '{a}' twice")
                if a != "-" and args.index(a) > MAX_ARG:
                    raise Error(f"{where}: '{a}' is argument {args.index(a)}; the BPF side reads arguments 0-{MAX_ARG}")
        args = args or []
        for k in REQUIRED_KINDS.get(current, []):
            if k not in args:
                raise Error(f"{where}: [{current}] needs the argument kind '{k}'")
        for k in options:
            if k not in OPTIONS.get(current, set()):
                raise Error(f"{where}: [{current}] has no option '{k}'")
        for k in REQUIRED_OPTIONS.get(current, []):
            if k not in options:
                raise Error(f"{where}: [{current}] needs {k}=...")
        for name in names:
            if not re.fullmatch(r"\w+", name):
                raise Error(f"{where}: '{name}' is not a syscall name")
            if name not in all_names:
                raise Error(f"{where}: no architecture has a syscall '{name}' (import the kernel's tables?)")
            if any(e.name == name for e in classes[current][1]):
                raise Error(f"{where}: {name} twice in [{current}]")
            classes[current][1].append(Entry(name, args, options, lineno))
    for c, _ in CLASSES_BITS:
        if c not in classes:
            raise Error(f"{CLASSES}: no [{c}] class")
    check_ops(classes)
    return classes


def check_ops(classes):
    """op=... names an enum value of events.h (FB_FILE_*, FB_PRIV_*)."""
    with open(EVENTS_H) as f:
        events = f.read()
    for cls, prefix in (("file", "FB_FILE_"), ("privilege", "FB_PRIV_")):
        for e in classes[cls][1]:
            c = prefix + e.options["op"].upper()
            if not re.search(r"\b" + c + r"\s*=", events):
                raise Error(f"{CLASSES}:{e.lineno}: op={e.options['op']}: events.h has no {c}")
    for e in classes["file"][1]:
        if "flags" in e.options:
            if "flags" in e.args:
                raise Error(f"{CLASSES}:{e.lineno}: flags both as an argument and as flags=")
            try:
                int(e.options["flags"], 0)
            except ValueError:
                raise Error(f"{CLASSES}:{e.lineno}: flags={e.options['flags']} is not a number")


def members(classes, table):
    """[(number, name, [classes])] of one architecture, by number."""
    by_name = {n: nr for nr, n in table.items()}
    out = {}
    for cls, _ in CLASSES_BITS:
        for e in classes[cls][1]:
            if e.name in by_name:
                out.setdefault(by_name[e.name], []).append(cls)
    return [(nr, table[nr], sorted(out[nr], key=lambda c: dict(CLASSES_BITS)[c])) for nr in sorted(out)]


def missing(classes, table):
    names = set(table.values())
    return sorted({e.name for c, _ in CLASSES_BITS for e in classes[c][1] if e.name not in names})


# ---------------------------------------------------------------- outputs

HEADER_NOTE = ("Generated by bpf/gen-syscalls.py from bpf/syscalls/classes.txt, bpf/syscalls/x86_64.tbl and "
               "bpf/syscalls/arm64.tbl. Do not edit: change those and run `python3 bpf/gen-syscalls.py`.")


def wrap(text, width, prefix):
    words, lines, cur = text.split(), [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > width:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}" if cur else w
    if cur:
        lines.append(cur)
    return [prefix + l for l in lines]


def c_comment(text, width=96, indent=""):
    """A C comment of `text`, wrapped: /* ... * ... */."""
    lines = wrap(text, width, "")
    out = [indent + ("/* " if i == 0 else " * ") + l for i, l in enumerate(lines)]
    out[-1] += " */"
    return out


def c_header(tables, classes):
    out = ["/* SPDX-License-Identifier: Apache-2.0 */"]
    out += c_comment(HEADER_NOTE)
    out += [
        "/* One architecture's part is compiled, chosen by the __TARGET_ARCH_* that build.sh defines:",
        " * FB_NR_<name>, the number of every syscall the architecture has;",
        " * FB_SC_CLASSES, the initializer of a class array indexed by number (bits FB_SC_*);",
        " * FB_SC_CLOSE_OPS(X), FB_SC_FILE_OPS(X), FB_SC_PRIV_OPS(X), one X(number, ...) per member",
        " * of those classes, its argument kinds given as argument indices (-1: none). */",
        "#ifndef FLIGHTBOX_SYSCALL_TABLE_H",
        "#define FLIGHTBOX_SYSCALL_TABLE_H",
        "",
    ]
    for cls, bit in CLASSES_BITS:
        out += c_comment(" ".join(classes[cls][0]))
        out.append(f"#define {C_NAMES[cls]} {bit}")
    out += [
        "",
        "/* Every syscall number of every architecture is below this. */",
        f"#define FB_SC_NR_MAX {NR_MAX}",
        "",
    ]
    first = True
    for arch, conf in ARCHES.items():
        table = tables[arch]
        out.append(f"#{'if' if first else 'elif'} defined({conf['target']})")
        first = False
        out.append(f'#define FB_SC_ARCH "{arch}"')
        gone = missing(classes, table)
        if gone:
            out += c_comment(f"Of classes.txt, {arch} has no {', '.join(gone)}.")
        out += [f"#define FB_NR_{table[nr]} {nr}" for nr in sorted(table)]
        out.append("")
        out.append("#define FB_SC_CLASSES \\")
        for nr, name, cls in members(classes, table):
            out.append(f"\t[FB_NR_{name}] = {' | '.join(C_NAMES[c] for c in cls)}, \\")
        out[-1] = out[-1][:-2]
        present = set(table.values())

        def xmacro(macro, cls, doc, columns):
            out.append("")
            out.append(f"/* X(number, {doc}) */")
            rows = [e for e in classes[cls][1] if e.name in present]
            out.append(f"#define {macro}(X)" + (" \\" if rows else ""))
            for i, e in enumerate(rows):
                cols = ", ".join(str(c(e)) for c in columns)
                out.append(f"\tX(FB_NR_{e.name}, {cols})" + (" \\" if i < len(rows) - 1 else ""))

        xmacro("FB_SC_CLOSE_OPS", "close", "fd, oldfd", [lambda e: e.index("fd"), lambda e: e.index("oldfd")])
        xmacro("FB_SC_FILE_OPS", "file", "op, dirfd, path, path2, flags, mode, how, flags implied",
               [lambda e: "FB_FILE_" + e.options["op"].upper()]
               + [lambda e, k=k: e.index(k) for k in KINDS["file"]]
               + [lambda e: e.options.get("flags", "0")])
        xmacro("FB_SC_PRIV_OPS", "privilege", "op, str, str2, str3, mode, fd",
               [lambda e: "FB_PRIV_" + e.options["op"].upper()]
               + [lambda e, k=k: e.index(k) for k in KINDS["privilege"]])
        out.append("")
    out += [
        "#else",
        '#error "syscall_table.h: no table for this architecture (build.sh defines __TARGET_ARCH_x86 or __TARGET_ARCH_arm64)"',
        "#endif",
        "",
        "#endif",
    ]
    return "\n".join(out) + "\n"


def swift_string(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def swift_file(tables, classes):
    out = [f"// {l}" for l in wrap(HEADER_NOTE, 100, "")]
    out += ["", "extension SyscallClass {"]
    for cls, bit in CLASSES_BITS:
        out += wrap(" ".join(classes[cls][0]), 96, "    /// ")
        out.append(f"    public static let {cls} = SyscallClass(rawValue: {bit})")
    out += ["}", "", "extension SyscallTable {"]
    for arch in ARCHES:
        table = tables[arch]
        out.append(f"    /// {arch}, from bpf/syscalls/{arch}.tbl: names by number (\"\" where none).")
        gone = missing(classes, table)
        if gone:
            out += wrap(f"Of classes.txt, {arch} has no {', '.join(gone)}.", 96, "    /// ")
        out.append(f"    public static let {arch} = SyscallTable(arch: .{arch}, names: [")
        for nr in range(max(table) + 1):
            out.append(f"        {swift_string(table.get(nr, ''))}, // {nr}")
        out.append("    ], classes: [")
        for nr, name, cls in members(classes, table):
            out.append(f"        {nr}: [{', '.join('.' + c for c in cls)}], // {name}")
        out.append("    ])")
    out += ["}"]
    return "\n".join(out) + "\n"


def outputs():
    tables = {arch: read_table(arch) for arch in ARCHES}
    classes = read_classes(tables)
    return {OUT_C: c_header(tables, classes), OUT_SWIFT: swift_file(tables, classes)}


def main(argv):
    check = "--check" in argv
    if "--import" in argv:
        i = argv.index("--import")
        import_tables([a for a in argv[i + 1:] if not a.startswith("--")])
    elif any(a not in ("--check",) for a in argv):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    stale = []
    for path, text in outputs().items():
        rel = os.path.relpath(path, ROOT)
        try:
            with open(path) as f:
                old = f.read()
        except FileNotFoundError:
            old = None
        if old == text:
            continue
        if check:
            stale.append(rel)
            if old is not None:
                diff = list(difflib.unified_diff(old.splitlines(), text.splitlines(), "committed/" + rel, "generated/" + rel, lineterm="", n=1))
                print("\n".join(diff[:40] + (["..."] if len(diff) > 40 else [])))
        else:
            with open(path, "w") as f:
                f.write(text)
            print(f"wrote {rel}")
    if stale:
        print(f"stale: {', '.join(stale)} (generated from bpf/syscalls/); run `python3 bpf/gen-syscalls.py` and commit the result",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except Error as e:
        print(f"gen-syscalls: {e}", file=sys.stderr)
        sys.exit(1)
