import XCTest

/// Shell completions and the man page that scripts/setup.sh installs.
final class CompletionTests: XCTestCase {
    static let bash = "/usr/share/bash-completion/completions/flightbox"
    static let man = "/usr/local/share/man/man1/flightbox.1"

    func installed() throws {
        for path in [CompletionTests.bash, CompletionTests.man] where !FileManager.default.fileExists(atPath: path) {
            if ProcessInfo.processInfo.environment["FLIGHTBOX_REQUIRE_BPF"] == "1" { XCTFail("\(path) is missing: scripts/setup.sh installs it") }
            throw XCTSkip("\(path) is not installed (scripts/setup.sh, as root, installs it)")
        }
    }

    /// Bash completes subcommands and each one's options, as a user pressing Tab gets them.
    func testBashCompletesSubcommandsAndOptions() throws {
        try installed()
        func complete(_ line: String) throws -> [String] {
            let words = line.split(separator: " ", omittingEmptySubsequences: false).map { "'\($0)'" }.joined(separator: " ")
            let r = try Tool.run("/bin/bash", ["-c", """
                source \(CompletionTests.bash)
                COMP_WORDS=(\(words)); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); COMP_LINE='\(line)'; COMP_POINT=${#COMP_LINE}
                _flightbox flightbox "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
                printf '%s\\n' "${COMPREPLY[@]}"
                """])
            XCTAssertEqual(r.status, 0, r.stderr)
            return r.lines
        }
        XCTAssertEqual(try complete("flightbox cu"), ["cut"])
        XCTAssertTrue(try complete("flightbox e").contains("export"))
        let export = try complete("flightbox export x.fbt --")
        XCTAssertTrue(export.contains("--perfetto") && export.contains("--min-syscall"), "\(export)")
        let test = try complete("flightbox test --")
        XCTAssertTrue(test.contains("--junit") && test.contains("--update"), "\(test)")
    }

    /// The man page names every subcommand and renders.
    func testManPageDescribesTheCommands() throws {
        try installed()
        let page = try String(contentsOfFile: CompletionTests.man, encoding: .utf8)
        for sub in ["record", "events", "replay", "cut", "export", "test"] { XCTAssertTrue(page.contains(sub), sub) }
        XCTAssertTrue(page.contains(".It Fl -perfetto Ar perfetto"))
        let r = try Tool.run("/usr/bin/man", ["-l", CompletionTests.man])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("FLIGHTBOX(1)"), r.stdout)
        XCTAssertTrue(r.stdout.contains("--perfetto"), r.stdout)
    }
}
