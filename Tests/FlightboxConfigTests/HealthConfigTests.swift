import XCTest
import FlightboxDetectors
@testable import FlightboxConfig

/// The configuration's `probes:` section: health checks, parsed and checked
/// up front, every error one line with its position.
final class HealthConfigTests: XCTestCase {
    func checks(_ text: String) throws(ConfigError) -> [HealthCheck] { try ConfigFile.parse(text, file: "f.yaml")["health"]?.checks ?? [] }

    func failure(_ text: String, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try checks(text)
            XCTFail("parsed without an error", file: file, line: line)
            return ""
        } catch {
            return "\(error.line ?? 0):\(error.column ?? 0): \(error.reason)"
        }
    }

    func testEveryTargetAndJudgement() throws {
        let c = try checks("""
        probes:
          - name: work
            target: /usr/bin/app:handle_request
            args: 1
            latency: { statistic: max, above: 50ms, window: 2s }
          - name: raw
            target: /opt/stripped:0x1f40
            pid: 1234
            return: long
            latency: { baseline: 2.5, min_calls: 10 }
            errors: { when: ret == -5, rate: 0.25, window: 500ms, min_calls: 2 }
          - name: gc
            usdt: python:gc__done
            binary: /usr/bin/python3.11
            comm: python3
            args: 2
            string: 2
            argument: arg1 > 100000
            heartbeat: 5s
        """)
        XCTAssertEqual(c.map(\.id), [1, 2, 3])
        XCTAssertEqual(c[0], HealthCheck(id: 1, name: "work", target: .function(binary: "/usr/bin/app", symbol: "handle_request"), arguments: 1,
                                         latency: .init(statistic: .max, aboveNs: 50_000_000, windowNs: 2_000_000_000)))
        XCTAssertEqual(c[1].target, .offset(binary: "/opt/stripped", offset: 0x1f40))
        XCTAssertEqual(c[1].pid, 1234)
        XCTAssertFalse(c[1].int32Return)
        XCTAssertEqual(c[1].latency, .init(statistic: .p99, baseline: 2.5, windowNs: 10_000_000_000, minCalls: 10))
        XCTAssertEqual(c[1].errors, .init(when: Condition(.ret, .eq, -5), rate: 0.25, windowNs: 500_000_000, minCalls: 2))
        XCTAssertEqual(c[2].target, .usdt(binary: "/usr/bin/python3.11", provider: "python", name: "gc__done"))
        XCTAssertEqual(c[2].comm, "python3")
        XCTAssertEqual(c[2].stringArgument, 2)
        XCTAssertEqual(c[2].argument, Condition(.arg(1), .gt, 100_000))
        XCTAssertEqual(c[2].heartbeat, .init(everyNs: 5_000_000_000))
        XCTAssertEqual(try checks("probes:\n"), [])
        XCTAssertEqual(try checks("probes: []\n"), [])
    }

    func testTheDefaultConfigShowsAnExampleAndChecksRoundTrip() throws {
        let text = ConfigFile.text()
        XCTAssertTrue(text.contains("#     usdt: python:gc__done"), text)
        XCTAssertTrue(text.hasSuffix("probes: []\n"))
        XCTAssertEqual(try ConfigFile.parse(text, file: "d.yaml"), .defaults)
        var c = try ConfigFile.parse("""
        probes:
          - { name: "a b", target: "/x:f", args: 2, errors: { when: "arg2 != 0" }, latency: { above: 1500us, baseline: 3 } }
          - { name: u, usdt: "p:n", binary: libfoo.so.1, args: 4, string: 3, argument: { when: arg4 <= -3 }, heartbeat: { every: 1m } }
        """, file: "c.yaml")
        XCTAssertEqual(try ConfigFile.parse(ConfigFile.text(of: c), file: "t.yaml"), c)
        c["health"]?.checks = []
        XCTAssertEqual(c, .defaults)
    }

    func testErrorsNameTheLineAndTheCheck() {
        XCTAssertEqual(failure("probes: {a: 1}\n"), "1:9: probes: expected a list of checks (- name: ...), found a mapping")
        XCTAssertEqual(failure("probes:\n  - target: /x:f\n    heartbeat: 1s\n"), "2:5: probes[1]: a check needs a name")
        XCTAssertEqual(failure("probes:\n  - name: a\n    heartbeat: 1s\n"), "2:5: probes.a: needs target (binary:function) or usdt (provider:name with binary)")
        XCTAssertEqual(failure("probes:\n  - name: a\n    target: /x:f\n"), "2:5: probes.a: judges nothing; give latency, errors, heartbeat or argument")
        XCTAssertEqual(failure("probes:\n  - name: a\n    target: /x:f\n    heartbat: 1s\n"),
                       "4:5: probes[1]: unknown key 'heartbat' (did you mean 'heartbeat'?); known: \(Resolver.checkKeys.joined(separator: ", "))")
        XCTAssertEqual(failure("probes:\n  - name: a\n    target: nocolon\n    heartbeat: 1s\n"), "3:13: probes.a.target: 'nocolon' is not binary:function or binary:0xoffset")
        XCTAssertEqual(failure("probes:\n  - name: a\n    target: /x:0xzz\n    heartbeat: 1s\n"), "3:13: probes.a.target: '0xzz' is not a hexadecimal offset")
        XCTAssertEqual(failure("probes:\n  - name: a\n    usdt: p:n\n    heartbeat: 1s\n"), "3:5: probes.a: usdt needs binary: the executable or library holding the probe")
        XCTAssertEqual(failure("probes:\n  - name: a\n    usdt: pn\n    binary: /x\n    heartbeat: 1s\n"), "3:11: probes.a.usdt: 'pn' is not provider:name")
        XCTAssertEqual(failure("probes:\n  - name: a\n    usdt: p:n\n    binary: /x\n    latency: { above: 1ms }\n"),
                       "5:5: probes.a.latency: a USDT probe has no latency (probe a function for that)")
        XCTAssertEqual(failure("probes:\n  - name: a\n    usdt: p:n\n    binary: /x\n    errors: { when: ret < 0 }\n"),
                       "5:21: probes.a.errors.when: a USDT probe has no return value; compare one of its arguments (arg1 to arg4)")
        XCTAssertEqual(failure("probes:\n  - name: a\n    target: /x:f\n    argument: arg2 > 1\n"),
                       "4:15: probes.a.argument.when: arg2 is not captured (args: 0); set args: 2 or more")
        XCTAssertEqual(failure("probes:\n  - name: a\n    target: /x:f\n    argument: ret > 1\n"),
                       "4:15: probes.a.argument.when: compares an argument (arg1 to arg4), not ret; use errors: for return values")
        XCTAssertEqual(failure("probes:\n  - name: a\n    target: /x:f\n    errors: { when: ret < zero }\n"),
                       "4:21: probes.a.errors.when: 'ret < zero': 'zero' is not a whole number")
        XCTAssertEqual(failure("probes:\n  - name: a\n    target: /x:f\n    heartbeat: 150ms\n"),
                       "4:16: probes.a.heartbeat.every: '150ms' must be a multiple of 100ms from 100ms to 1d")
        XCTAssertEqual(failure("probes:\n  - name: a\n    target: /x:f\n    latency: { window: 1s }\n"),
                       "4:14: probes.a.latency: needs above (a duration) or baseline (a factor), or both")
        XCTAssertEqual(failure("probes:\n  - name: a\n    target: /x:f\n    errors: { when: ret < 0, rate: 1.5 }\n"),
                       "4:36: probes.a.errors.rate: expected a share of calls above 0 and at most 1 (0.1 is 10%)")
        XCTAssertEqual(failure("probes:\n  - name: a\n    target: /x:f\n    args: 5\n    heartbeat: 1s\n"), "4:11: probes.a.args: '5' is not 0 to 4")
        XCTAssertEqual(failure("probes:\n  - name: a\n    target: /x:f\n    args: 1\n    string: 2\n    heartbeat: 1s\n"),
                       "5:13: probes.a.string: arg2 is not captured (args: 1); set args: 2 or more")
        XCTAssertEqual(failure("probes:\n  - name: a\n    target: /x:f\n    comm: a-name-longer-than-15\n    heartbeat: 1s\n"),
                       "4:11: probes.a.comm: 'a-name-longer-than-15' is not a command name (1 to 15 bytes, as in /proc/PID/comm)")
        XCTAssertEqual(failure("probes:\n  - {name: a, target: /x:f, heartbeat: 1s}\n  - {name: a, target: /x:g, heartbeat: 1s}\n"),
                       "3:5: probes: check 'a' is given twice (first at 2:5)")
    }
}
