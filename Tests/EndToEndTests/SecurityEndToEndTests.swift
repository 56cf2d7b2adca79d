import XCTest
import FlightboxEvents

/// The security detector and the capture it relies on, for real.
final class SecurityEndToEndTests: XCTestCase {
    /// An exec records what its stdin and stdout are; a socket's family is
    /// known (here a Unix socketpair on stdin, /dev/null on stdout).
    func testExecRecordsWhatStdioIs() throws {
        try requireBPF()
        let trace = scratch("stdio.fbt")
        let script = "import os, socket; a, b = socket.socketpair(); os.dup2(a.fileno(), 0); n = os.open('/dev/null', os.O_WRONLY); os.dup2(n, 1); os.execv('/bin/true', ['true'])"
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process,privilege", "--", "python3", "-c", script])
        XCTAssertEqual(r.status, 0, r.stderr)
        let exec = try eventsJSON(trace, ["--type", "exec"]).last { $0["fields"]?["comm"]?.stringValue == "true" }
        XCTAssertEqual(exec?["fields"]?["stdin_kind"]?.uintValue, 6, "a socket")
        XCTAssertEqual(exec?["fields"]?["stdin_family"]?.uintValue, 1, "AF_UNIX")
        XCTAssertEqual(exec?["fields"]?["stdout_kind"]?.uintValue, 3, "/dev/null is a character device")
        XCTAssertEqual(exec?["fields"]?["stdout_family"]?.uintValue, 0)
        // The last two dups of that process are python's (a python3 that is a
        // shell shim made its own redirections in the same pid before its exec).
        let pid = exec?["pid"]?.uintValue
        let dups = try eventsJSON(trace, ["--type", "privilege"]).filter { $0["fields"]?["op"]?.uintValue == 10 && $0["pid"]?.uintValue == pid }
        XCTAssertEqual(dups.suffix(2).map { $0["fields"]?["fd_kind"]?.uintValue ?? 99 }, [6, 3])
        XCTAssertEqual(dups.suffix(2).map { $0["fields"]?["sock_family"]?.uintValue ?? 99 }, [1, 0])
        // A Unix socket on stdin is not a reverse shell: no security finding.
        let replay = try Tool.flightbox("replay", trace, "--detectors", "security", "--format", "json")
        XCTAssertEqual(replay.stdout, "")
    }

    /// A reverse shell to a loopback listener, live and on replay: the same
    /// bytes, with the rule, its technique, the lineage and the evidence events.
    func testReverseShellLiveAndReplayAreByteIdentical() throws {
        try requireBPF()
        let trace = scratch("revshell.fbt"), live = scratch("revshell.jsonl")
        let script = """
        import os, socket, sys
        l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(1)
        port = l.getsockname()[1]
        if os.fork() == 0:
            s = socket.create_connection(("127.0.0.1", port))
            for fd in (0, 1, 2): os.dup2(s.fileno(), fd)
            os.execv("/bin/sh", ["sh", "-i"])
        c, _ = l.accept(); c.sendall(b"exit\\n")
        while c.recv(4096): pass
        os.wait()
        """
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process,privilege,tcp,files", "--detect", "--detectors", "security",
                                              "--findings", live, "--", "python3", "-c", script])
        XCTAssertEqual(r.status, 0, r.stderr)
        let liveText = try String(contentsOfFile: live, encoding: .utf8)
        let replay = try Tool.flightbox("replay", trace, "--format", "json")
        XCTAssertEqual(replay.stdout, liveText)
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        let rules = findings.compactMap { $0["evidence"]?["rule"]?.stringValue }
        XCTAssertEqual(rules, ["Stdio redirected to a network socket", "Reverse shell", "incident"], replay.stdout)
        let shell = findings[1]
        XCTAssertEqual(shell["severity"]?.stringValue, "critical")
        XCTAssertEqual(shell["comm"]?.stringValue, "sh")
        XCTAssertEqual(shell["evidence"]?["mitre"]?.arrayValue?.first?.stringValue, "T1059.004")
        XCTAssertEqual(shell["evidence"]?["lineage"]?.arrayValue?.first?["comm"]?.stringValue, "python3")
        XCTAssertEqual(shell["evidence"]?["events"]?.arrayValue?.last?["type"]?.stringValue, "exec")
        XCTAssertNotNil(shell["evidence"]?["events"]?.arrayValue?.last?["seq"]?.uintValue)
    }

    /// A bad rules file is one usage error naming file, line and column, before anything runs.
    func testBadRulesFileIsOneError() throws {
        let rules = scratch("bad-rules.yaml")
        try "- rule: R\n  condition: evt.type = open and fd.nme = /x\n  output: x\n  priority: warning\n".write(toFile: rules, atomically: true, encoding: .utf8)
        let r = try Tool.flightbox("record", "-o", scratch("never.fbt"), "--detect", "--rules", rules, "--duration", "1s")
        XCTAssertEqual(r.status, 2)
        XCTAssertEqual(r.stderr, "flightbox: \(rules):2:34: unknown field 'fd.nme' (fields of that class include 'fd.name')\n")
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch("never.fbt")))
    }
}

extension SecurityEndToEndTests {
    /// `inspect` shows the stored rules as a summary, not ~13 KB of YAML
    /// inside the capture; `--full-rules` prints them whole.
    func testInspectSummarizesStoredRules() throws {
        let trace = Tool.packageRoot + "/fixtures/security-attack/trace.fbt"
        let rules = try XCTUnwrap(inspectJSON(trace)["capture"]?["detectors"]?["security"]?["rules"])
        XCTAssertNotNil(rules["rules"]?.uintValue)
        XCTAssertGreaterThanOrEqual(rules["rules"]?.uintValue ?? 0, 20)
        let file = try XCTUnwrap(rules["files"]?.arrayValue?.first)
        XCTAssertEqual(file["name"]?.stringValue, "default")
        XCTAssertEqual(file["sha256"]?.stringValue?.utf8.count, 64)
        XCTAssertNil(file["text"])
        let text = try Tool.flightbox("inspect", trace)
        XCTAssertFalse(text.stdout.contains("- rule:"), "no YAML in the summary")
        XCTAssertLessThan(text.stdout.utf8.count, 4096)
        let full = try Tool.flightbox("inspect", trace, "--format", "json", "--full-rules")
        let stored = try JSONParser.parse(full.stdout)["capture"]?["detectors"]?["security"]?["rules"]?.arrayValue?.first
        XCTAssertTrue(stored?["text"]?.stringValue?.contains("- rule: Read shadow password file") == true)
    }
}

extension SecurityEndToEndTests {
    /// `rules:` in --config: a rule file relative to the configuration and a
    /// built-in turned off, on replay of the attack fixture; --rules files
    /// come after the configuration's.
    func testConfigurationRulesOnReplay() throws {
        let dir = scratch("config-rules")
        try FileManager.default.createDirectory(atPath: dir + "/rules", withIntermediateDirectories: true)
        try """
        - rule: Dropped binary named dropper
          condition: evt.type = exec and proc.name = dropper
          output: "%proc.name ran"
          priority: notice
          tags: [T1204]
        """.write(toFile: dir + "/rules/local.yaml", atomically: true, encoding: .utf8)
        try "rules:\n  files: [rules/local.yaml]\n  disable: [Read shadow password file]\n".write(toFile: dir + "/flightbox.yaml", atomically: true, encoding: .utf8)
        let trace = Tool.packageRoot + "/fixtures/security-attack/trace.fbt"
        func rules(_ args: String...) throws -> [String] {
            let r = try Tool.run(Tool.flightbox, ["replay", trace, "--detectors", "security", "--format", "json"] + args)
            XCTAssertEqual(r.status, 0, r.stderr)
            return try r.lines.map { try JSONParser.parse($0)["evidence"]?["rule"]?.stringValue ?? "" }
        }
        let plain = try rules()
        XCTAssertTrue(plain.contains("Read shadow password file"))
        let configured = try rules("--config", dir + "/flightbox.yaml")
        XCTAssertFalse(configured.contains("Read shadow password file"))
        XCTAssertEqual(configured.filter { $0 == "Dropped binary named dropper" }.count, 1)
        // A --rules file after the configuration's turns the rule back on.
        try "- rule: Read shadow password file\n  enabled: true\n".write(toFile: dir + "/on.yaml", atomically: true, encoding: .utf8)
        let both = try rules("--config", dir + "/flightbox.yaml", "--rules", dir + "/on.yaml")
        XCTAssertTrue(both.contains("Read shadow password file"))
        XCTAssertTrue(both.contains("Dropped binary named dropper"))
        // An error in the configuration's rule file names that file.
        try "- rule: X\n  condition: evt.type = nope\n  output: x\n  priority: info\n".write(toFile: dir + "/rules/local.yaml", atomically: true, encoding: .utf8)
        let bad = try Tool.run(Tool.flightbox, ["replay", trace, "--config", dir + "/flightbox.yaml"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.hasPrefix("flightbox: \(dir)/rules/local.yaml:2:25: unknown event type 'nope'"), bad.stderr)
    }
}

extension SecurityEndToEndTests {
    /// The dropped-executable sequence for real: copied, made executable and
    /// run by one shell's children; live and replay byte for byte, every
    /// step in the evidence.
    func testDroppedExecutableSequenceLiveAndReplay() throws {
        try requireBPF()
        let trace = scratch("dropped.fbt"), live = scratch("dropped.jsonl")
        let dir = scratch("dropped-dir")
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        // This test runs under swift-test, a build tool the rule exempts: the list is narrowed.
        let narrow = scratch("dropped-rules.yaml")
        try "- list: build_tools\n  items: [make]\n".write(toFile: narrow, atomically: true, encoding: .utf8)
        let script = "cp /bin/true \(dir)/payload && chmod 0644 \(dir)/payload && chmod +x \(dir)/payload && \(dir)/payload && cp /bin/true \(dir)/other && /bin/true"
        let r = try Tool.run(Tool.flightbox, ["record", "-o", trace, "--probes", "process,files,privilege", "--detect", "--detectors", "security",
                                              "--rules", narrow, "--findings", live, "--", "sh", "-c", script])
        XCTAssertEqual(r.status, 0, r.stderr)
        let liveText = try String(contentsOfFile: live, encoding: .utf8)
        let replay = try Tool.flightbox("replay", trace, "--format", "json")
        XCTAssertEqual(replay.stdout, liveText)
        let findings = try replay.lines.map { try JSONParser.parse($0) }
        XCTAssertEqual(findings.compactMap { $0["evidence"]?["rule"]?.stringValue }, ["Dropped executable run"], replay.stdout)
        let f = try XCTUnwrap(findings.first)
        XCTAssertEqual(f["comm"]?.stringValue, "payload")
        XCTAssertEqual(f["evidence"]?["events"]?.arrayValue?.compactMap { $0["type"]?.stringValue }, ["chmod_exec", "exec"])
        XCTAssertEqual(f["evidence"]?["sequence"]?["by"]?.stringValue, "lineage")
        let seqs = f["evidence"]?["events"]?.arrayValue?.compactMap { $0["seq"]?.uintValue } ?? []
        XCTAssertEqual(seqs, seqs.sorted(), "steps in stream order")
    }
}
