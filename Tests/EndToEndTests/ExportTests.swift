import XCTest
import FlightboxEvents

/// `flightbox export --perfetto`, read back by Perfetto's own trace proto
/// (perfetto_trace_pb2 from its Python package, installed by scripts/setup.sh)
/// and checked against `flightbox events` and `replay`.
final class ExportTests: XCTestCase {
    static let python = ProcessInfo.processInfo.environment["FLIGHTBOX_PERFETTO_PYTHON"] ?? "/opt/flightbox/python/bin/python3"

    /// Parses the file with Perfetto's classes and checks what the UI relies on:
    /// time order, every used track described, slices strictly nested per track
    /// (one deep on block lanes), the first packet clearing the sequence state.
    static let reader = #"""
    import json, sys, collections
    from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb
    trace = pb.Trace()
    trace.ParseFromString(open(sys.argv[1], 'rb').read())
    E = pb.TrackEvent
    problems, described, used = [], {}, set()
    threads, processes, counters = {}, {}, {}
    slices, instants, values = collections.Counter(), collections.Counter(), collections.Counter()
    findings, stacks, depth, last = [], collections.defaultdict(list), 0, 0
    if not trace.packet or trace.packet[0].sequence_flags != 1: problems.append('first packet does not clear the sequence state')
    for p in trace.packet:
        if p.trusted_packet_sequence_id != 1: problems.append('packet off the sequence')
        if p.timestamp < last: problems.append('time goes back at %d' % p.timestamp)
        last = p.timestamp
        if p.HasField('track_descriptor'):
            d = p.track_descriptor
            described[d.uuid] = d
            if d.HasField('thread'): threads[d.thread.tid] = d.thread.pid
            if d.HasField('process'): processes[d.process.pid] = d.process.process_name
            if d.HasField('counter'): counters[d.uuid] = d.name
            if d.HasField('parent_uuid') and d.parent_uuid not in described: problems.append('parent %d undescribed' % d.parent_uuid)
        if p.HasField('track_event'):
            t = p.track_event
            used.add(t.track_uuid)
            if t.track_uuid not in described: problems.append('track %d used before it is described' % t.track_uuid)
            s = stacks[t.track_uuid]
            if t.type == E.TYPE_SLICE_BEGIN:
                s.append(t.name); slices[t.name] += 1
                if described[t.track_uuid].name.startswith('block '): depth = max(depth, len(s))
            elif t.type == E.TYPE_SLICE_END:
                if not s: problems.append('end without begin on track %d at %d' % (t.track_uuid, p.timestamp))
                else: s.pop()
            elif t.type == E.TYPE_INSTANT:
                instants[t.name.split(' ')[0]] += 1
                if t.track_uuid == 1:
                    a = {x.name: x for x in t.debug_annotations}
                    findings.append({'ts': p.timestamp, 'name': t.name, 'summary': a['summary'].string_value,
                                     'pid': a['pid'].uint_value, 'evidence_keys': [x.name for x in a['evidence'].dict_entries]})
            elif t.type == E.TYPE_COUNTER:
                if t.track_uuid not in counters: problems.append('counter value on a track without a counter descriptor')
                values[counters.get(t.track_uuid, '?')] += 1
            else: problems.append('event of type %d' % t.type)
    problems += ['slice left open on track %d' % u for u, s in stacks.items() if s]
    print(json.dumps({'packets': len(trace.packet), 'problems': problems[:10], 'depth': depth, 'slices': slices, 'instants': instants,
                      'counter_values': values, 'threads': {str(k): v for k, v in threads.items()}, 'processes': len(processes),
                      'findings': findings}, sort_keys=True))
    """#

    func exported(_ fixture: String, _ extra: [String] = []) throws -> (summary: String, parsed: JSON) {
        guard FileManager.default.isExecutableFile(atPath: ExportTests.python) else {
            if ProcessInfo.processInfo.environment["FLIGHTBOX_REQUIRE_BPF"] == "1" { XCTFail("no \(ExportTests.python): run scripts/setup.sh") }
            throw XCTSkip("Perfetto's Python package is not installed (scripts/setup.sh installs it)")
        }
        let out = scratch("\(fixture).pftrace")
        let r = try Tool.flightbox(["export", Tool.packageRoot + "/fixtures/\(fixture)/trace.fbt", "--perfetto", out] + extra)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr, "", "no progress when stderr is not a terminal")
        let p = try Tool.run(ExportTests.python, ["-c", ExportTests.reader, out])
        XCTAssertEqual(p.status, 0, p.stderr)
        let parsed = try JSONParser.parse(p.stdout)
        XCTAssertEqual(parsed["problems"], .array([]))
        return (r.stdout, parsed)
    }

    func count(_ events: [JSON], _ match: (JSON) -> Bool) -> UInt64 { UInt64(events.filter(match).count) }

    /// Scheduler waits as slices (a run-queue wait nests in the off-CPU wait
    /// it ends, which the reader's nesting check covers), gauges as counters, the finding with its evidence, threads
    /// under their processes.
    func testSchedulerGaugesAndFindings() throws {
        let (summary, t) = try exported("cpu-hogs")
        let events = try eventsJSON(Tool.packageRoot + "/fixtures/cpu-hogs/trace.fbt")
        let sched = events.filter { $0["type"]?.stringValue == "sched" }
        XCTAssertEqual(t["slices"]?["run queue"]?.uintValue, count(sched) { $0["kind_name"]?.stringValue == "runqueue" })
        XCTAssertEqual(t["slices"]?["off-CPU"]?.uintValue ?? 0, count(sched) { $0["kind_name"]?.stringValue == "offcpu" })
        let gauges = count(events) { $0["type"]?.stringValue == "gauge" }
        XCTAssertGreaterThan(gauges, 0)
        guard case .object(let values)? = t["counter_values"] else { return XCTFail("no counters") }
        XCTAssertEqual(values.reduce(0) { $0 + ($1.1.uintValue ?? 0) }, gauges)
        for e in sched {
            let tid = e["tid"]!.serialized()
            XCTAssertEqual(t["threads"]?[tid], e["pid"], "thread \(tid)")
        }
        let replay = try Tool.flightbox("replay", Tool.packageRoot + "/fixtures/cpu-hogs/trace.fbt", "--format", "json").lines.map { try JSONParser.parse($0) }
        XCTAssertEqual(replay.count, 1)
        let f = try XCTUnwrap(t["findings"]?.arrayValue?.first)
        XCTAssertEqual(t["findings"]?.arrayValue?.count, 1)
        XCTAssertEqual(f["summary"], replay[0]["summary"])
        XCTAssertEqual(f["ts"], replay[0]["ts_ns"])
        XCTAssertEqual(f["pid"], replay[0]["pid"])
        XCTAssertEqual(f["name"], .string("scheduling warning: flightbox-load"))
        if case .object(let kv)? = replay[0]["evidence"] { XCTAssertEqual(f["evidence_keys"], .array(kv.map { .string($0.0) })) }
        XCTAssertTrue(summary.contains(" 1 findings"), summary)
    }

    /// Slow syscalls are slices named by syscall, exactly those over --min-syscall.
    func testSlowSyscallsAreSlices() throws {
        let events = try eventsJSON(Tool.packageRoot + "/fixtures/latency-outlier/trace.fbt")
        for (flag, floor) in [("1ms", UInt64(1_000_000)), ("50us", 50_000)] {
            let (_, t) = try exported("latency-outlier", ["--min-syscall", flag])
            var expected: [String: UInt64] = [:]
            for e in events where e["type"]?.stringValue == "syscall" && (e["fields"]?["duration_ns"]?.uintValue ?? 0) >= floor {
                expected[e["syscall"]!.stringValue!, default: 0] += 1
            }
            guard case .object(let got)? = t["slices"] else { return XCTFail("no slices") }
            XCTAssertEqual(Dictionary(uniqueKeysWithValues: got.map { ($0.0, $0.1.uintValue ?? 0) }), expected, flag)
            XCTAssertEqual(t["findings"]?.arrayValue?.count, 1)
        }
    }

    /// Block requests overlap; each lane of a device holds one at a time, so
    /// no track has slices that do not nest.
    func testBlockRequestsGetLanes() throws {
        let (_, t) = try exported("cold-cache-healthy")
        let events = try eventsJSON(Tool.packageRoot + "/fixtures/cold-cache-healthy/trace.fbt", ["--type", "block"])
        guard case .object(let got)? = t["slices"] else { return XCTFail("no slices") }
        let block = got.filter { $0.0.hasPrefix("read ") || $0.0.hasPrefix("write ") || $0.0.hasPrefix("flush ") || $0.0.hasPrefix("discard ") || $0.0.hasPrefix("other ") }
        XCTAssertEqual(block.reduce(0) { $0 + ($1.1.uintValue ?? 0) }, UInt64(events.count))
        XCTAssertGreaterThan(events.count, 8000)
        XCTAssertEqual(t["depth"]?.uintValue, 1)
        XCTAssertEqual(t["findings"]?.arrayValue?.count, 0)
    }

    /// The same trace gives the same bytes, for the export and the report.
    func testExportAndReportAreDeterministic() throws {
        let trace = Tool.packageRoot + "/fixtures/preempted-read/trace.fbt"
        var outputs: [Data] = []
        for i in 0..<2 {
            let a = scratch("same-\(i).pftrace"), b = scratch("same-\(i).html")
            XCTAssertEqual(try Tool.flightbox("export", trace, "--perfetto", a).status, 0)
            XCTAssertEqual(try Tool.flightbox("report", trace, "-o", b).status, 0)
            outputs += [try Data(contentsOf: URL(fileURLWithPath: a)), try Data(contentsOf: URL(fileURLWithPath: b))]
        }
        XCTAssertEqual(outputs[0], outputs[2])
        XCTAssertEqual(outputs[1], outputs[3])
    }

    /// TCP events are instants; the fixture's process and its name are there.
    func testTCPEventsAreInstants() throws {
        let (_, t) = try exported("tcp-refused")
        let tcp = try eventsJSON(Tool.packageRoot + "/fixtures/tcp-refused/trace.fbt", ["--type", "tcp"])
        XCTAssertEqual(t["instants"]?["tcp"]?.uintValue, UInt64(tcp.count))
        XCTAssertEqual(t["threads"]?["28316"]?.uintValue, 28316)
        XCTAssertEqual(t["findings"]?.arrayValue?.first?["name"], .string("tcp-anomaly critical: flightbox-load"))
    }
}

/// Long operations draw progress on stderr only when it is a terminal.
final class ProgressTests: XCTestCase {
    func testProgressOnATerminalOnly() throws {
        let trace = Tool.packageRoot + "/fixtures/cold-cache-healthy/trace.fbt"
        let out = scratch("progress.pftrace")
        // script(1) gives the command a pseudo-terminal; its output is the terminal's.
        let tty = try Tool.run("/usr/bin/script", ["-qec", "\(Tool.flightbox) export \(trace) --perfetto \(out) >/dev/null", "/dev/null"])
        XCTAssertEqual(tty.status, 0, tty.stdout)
        XCTAssertTrue(tty.stdout.contains("\r\u{1B}[Kexport: 65536 of 195011 events (33%)"), tty.stdout.debugDescription)
        XCTAssertTrue(tty.stdout.hasSuffix("%)\r\u{1B}[K"), "the line is cleared at the end: \(tty.stdout.debugDescription)")
        let pipe = try Tool.flightbox("replay", trace)
        XCTAssertEqual(pipe.status, 0)
        XCTAssertEqual(pipe.stderr, "flightbox: 195011 events replayed, 0 findings\n")
    }
}
