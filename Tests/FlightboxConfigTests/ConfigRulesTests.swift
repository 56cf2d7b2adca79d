import XCTest
import FlightboxDetectors
import FlightboxRules
@testable import FlightboxConfig

/// `rules:` in the configuration file: rule files relative to it, rules
/// turned off or on by name, errors naming the file they are in.
final class ConfigRulesTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "fbx-config-rules-\(getpid())-\(name.hashValue & 0xffff)"
        try FileManager.default.createDirectory(atPath: dir + "/rules", withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir) }

    func write(_ name: String, _ text: String) throws -> String {
        let path = dir + "/" + name
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    static let local = """
    - rule: Read the fixture secret
      condition: evt.type = open and fd.name = /srv/secret
      output: "%proc.name read %fd.name"
      priority: warning
      tags: [T1005]
    """

    func load(_ config: String) throws(ConfigError) -> [RuleSource] {
        let path = (try? write("flightbox.yaml", config)) ?? ""
        return try ConfigFile.load(path: path)["security"]?.rules ?? []
    }

    func testFilesAreRelativeToTheConfigurationAndFollowTheBuiltIns() throws {
        _ = try write("rules/local.yaml", ConfigRulesTests.local)
        let sources = try load("rules:\n  files: [rules/local.yaml]\n")
        XCTAssertEqual(sources.map(\.name), [DefaultRules.name, dir + "/rules/local.yaml"])
        let set = try RuleSet(sources: sources)
        XCTAssertEqual(set.rules.last?.name, "Read the fixture secret")
        XCTAssertEqual(set.rules.count, RuleSet.builtIn().rules.count + 1)
        // The short form: a list of files.
        XCTAssertEqual(try load("rules: [rules/local.yaml]\n").map(\.name), sources.map(\.name))
    }

    func testDisableAndEnableByName() throws {
        _ = try write("rules/local.yaml", ConfigRulesTests.local)
        let sources = try load("""
        rules:
          files: [rules/local.yaml]
          disable: [Beaconing, "Read the fixture secret", Port scan]
          enable: [Port scan]
        """)
        let names = try RuleSet(sources: sources).rules.map(\.name)
        XCTAssertFalse(names.contains("Beaconing"))
        XCTAssertFalse(names.contains("Read the fixture secret"))
        XCTAssertTrue(names.contains("Port scan"), "enabled again after")
        XCTAssertTrue(names.contains("Read shadow password file"))
    }

    func testNoRulesKeyLeavesTheDetectorOnItsDefaults() throws {
        XCTAssertEqual(try load("detectors:\n  security:\n    incident_min_rules: 3\n"), [])
    }

    func failure(_ config: String) -> ConfigError? {
        do { _ = try load(config); return nil } catch { return error }
    }

    func testErrorsNameTheFileTheyAreIn() throws {
        let config = dir + "/flightbox.yaml"
        // An unknown rule name: the configuration file, at the name.
        var e = failure("rules:\n  disable: [Beaconnig]\n")
        XCTAssertEqual(e?.description, "\(config):2:13: rules.disable: no rule named 'Beaconnig' (did you mean 'Beaconing'?)")
        // A file that is not there: the configuration file, at the path.
        e = failure("rules:\n  files:\n    - nothere.yaml\n")
        XCTAssertEqual(e?.file, config)
        XCTAssertEqual(e?.line, 3)
        XCTAssertEqual(e?.column, 7)
        XCTAssertTrue(e?.reason.hasPrefix("rules: cannot read '\(dir)/nothere.yaml'") == true, e?.reason ?? "")
        // A bad rule: the rules file, its line and column.
        _ = try write("rules/bad.yaml", "- rule: R\n  condition: evt.type = open and fd.nme = /x\n  output: x\n  priority: warning\n")
        e = failure("rules: {files: [rules/bad.yaml]}\n")
        XCTAssertEqual(e?.description, "\(dir)/rules/bad.yaml:2:34: unknown field 'fd.nme' (fields of that class include 'fd.name')")
        // Unknown keys and shapes.
        XCTAssertEqual(failure("rules:\n  file: [a.yaml]\n")?.reason, "rules: unknown key 'file' (did you mean 'files'?); known: files, disable, enable")
        XCTAssertEqual(failure("rules:\n  disable: {a: b}\n")?.reason, "rules.disable: expected a list such as [a, b], found a mapping")
    }
}
