/// The two recorded traces the format and replay benchmarks run on: a
/// syscall storm and a mixed workload, recorded now unless given.
enum BenchCorpora {
    /// (storm, mixed) trace paths: the ones given, or fresh recordings in `dir`.
    static func paths(storm: String?, mixed: String?, dir: String) throws -> (storm: String, mixed: String) {
        let exe = CommandLine.arguments[0]
        let exeDir = exe.contains("/") ? String(exe[..<exe.lastIndex(of: "/")!]) : "."
        let load = exeDir + "/flightbox-load"
        let stormPath = try storm ?? record(exeDir: exeDir, dir: dir, name: "storm", args: ["--", load, "read", "2000000"])
        let mixedPath = try mixed ?? record(exeDir: exeDir, dir: dir, name: "mixed", args: ["--", "/bin/sh", "-c",
            "\(load) latency \(dir); \(load) threads 4 2000; ls -laR /usr/share/doc > /dev/null; find /usr/lib -name '*.so*' | head -2000 | xargs cat > /dev/null; \(load) trickle 50 1"])
        return (stormPath, mixedPath)
    }

    static func record(exeDir: String, dir: String, name: String, args: [String]) throws -> String {
        let path = "\(dir)/flightbox-corpus-\(name).fbt"
        let r = try spawnAndCapture([exeDir + "/flightbox", "record", "-o", path] + args)
        guard r.status == 0 else { throw fail("recording the \(name) corpus failed: \(r.stderr)") }
        return path
    }
}
