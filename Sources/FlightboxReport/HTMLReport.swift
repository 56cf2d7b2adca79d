import FlightboxDetectors
import FlightboxEvents
import FlightboxFormat

/// `flightbox report`: one self-contained HTML file (no network: styles,
/// script and data inline) for looking at a trace after the fact: findings on
/// a timeline with their evidence and the lineage of their process, latency
/// histograms per syscall and per block device, gauges over time with the
/// trend toward exhaustion drawn where there is one, the busiest processes.
///
/// The data is gathered in one pass (`add(_:)` per event, in stream order,
/// `add(finding:)` as the engine emits them) and written as one JSON value
/// the page's script draws from.
public final class HTMLReport {
    let arch: SyscallArch
    let metadata: TraceMetadata
    let title: String

    private struct Proc {
        var ppid: UInt32
        var comm: String
        var exe: String
        var argv: [String]
    }
    /// Every process seen, kept after exit: a finding's ancestors may be gone.
    private var processes: [UInt32: Proc] = [:]
    private var eventsPerPid: [UInt32: UInt64] = [:]
    private var events: UInt64 = 0
    private var first = UInt64.max, last: UInt64 = 0

    /// log2 buckets of ns: bucket b holds values < 2^b.
    private struct Histogram {
        var buckets = [UInt64](repeating: 0, count: 65)
        var count: UInt64 = 0
        var max: UInt64 = 0
        var total: UInt64 = 0
        mutating func add(_ v: UInt64) {
            buckets[v == 0 ? 0 : 64 - v.leadingZeroBitCount] += 1
            count += 1
            total &+= v
            if v > max { max = v }
        }
    }
    private var syscalls: [String: Histogram] = [:]
    private var devices: [String: Histogram] = [:]

    private struct Series {
        var kind: GaugeKind?
        var points: [(t: UInt64, v: Double)] = []
        var limit: UInt64 = 0
    }
    private var gauges: [String: Series] = [:]
    private var findings: [(Finding, [Proc], [UInt32])] = []

    public init(title: String, metadata: TraceMetadata, snapshot: ProcessSnapshot?, arch: SyscallArch) {
        self.title = title
        self.metadata = metadata
        self.arch = arch
        for p in snapshot?.processes ?? [] { processes[p.pid] = Proc(ppid: p.ppid, comm: p.comm, exe: p.exe, argv: p.argv) }
    }

    /// Adds one event, in stream order (before the engine sees it, so a
    /// finding's lineage includes the event that triggered it).
    public func add(_ e: Event) {
        events += 1
        let ts = e.timestamp
        if ts < first { first = ts }
        if ts > last { last = ts }
        if e.pid != 0 { eventsPerPid[e.pid, default: 0] += 1 }
        switch e.payload {
        case .syscall(let r):
            syscalls[r.displayName(arch: arch), default: Histogram()].add(r.durationNs)
        case .block(let r):
            devices["\(deviceName(r.dev)) \(r.opName)", default: Histogram()].add(r.latencyNs)
        case .gauge(let r):
            let kind = r.gaugeKind
            let key = "\(kind?.name ?? "gauge\(r.kind)") \(r.name)" + (e.pid != 0 ? " (pid \(e.pid))" : "")
            var s = gauges[key] ?? Series(kind: kind)
            s.points.append((ts, Double(r.value)))
            s.limit = r.limit
            gauges[key] = s
        case .fork(let f) where !f.isThread:
            let p = processes[e.pid]
            processes[f.childPid] = Proc(ppid: e.pid, comm: f.comm, exe: p?.exe ?? "", argv: p?.argv ?? [])
        case .exec(let x):
            processes[e.pid] = Proc(ppid: x.ppid, comm: x.comm, exe: x.filename, argv: x.argv)
        default:
            break
        }
    }

    /// A finding as the engine emits it, with the lineage of its process now.
    public func add(finding f: Finding) {
        var chain: [Proc] = [], pids: [UInt32] = []
        var pid = f.pid
        // Up to init, at most 64 steps (a hostile trace may hold a cycle).
        while pid != 0, pids.count < 64, !pids.contains(pid) {
            guard let p = processes[pid] else { break }
            chain.append(p)
            pids.append(pid)
            pid = p.ppid
        }
        findings.append((f, chain, pids))
    }

    /// The report's data, as the page's script reads it.
    public var data: JSON {
        let span = last >= first ? last - first : 0
        func hist(_ name: String, _ h: Histogram) -> JSON {
            // Every bucket from the first used to the last, empty ones too: the axis stays log2.
            let lo = h.buckets.firstIndex { $0 > 0 } ?? 0, hi = h.buckets.lastIndex { $0 > 0 } ?? -1
            let used = lo <= hi ? Array(lo...hi) : []
            return .object([("name", .string(name)), ("count", .uint(h.count)), ("max_ns", .uint(h.max)), ("total_ns", .uint(h.total)),
                            ("buckets", .array(used.map { b in .array([.uint(b == 0 ? 0 : b >= 64 ? .max : (1 << UInt64(b)) - 1), .uint(h.buckets[b])]) }))])
        }
        // The syscalls that took the most time in all, then by name: a stable order.
        let topSyscalls = syscalls.sorted { ($0.value.total, $1.key) > ($1.value.total, $0.key) }.prefix(24)
        let busiest = eventsPerPid.sorted { ($0.value, $1.key) > ($1.value, $0.key) }.prefix(20)
        var gaugeList: [JSON] = []
        for key in gauges.keys.sorted() {
            let s = gauges[key]!
            let stride = max(1, s.points.count / 400)
            var points = Swift.stride(from: 0, to: s.points.count, by: stride).map { s.points[$0] }
            if let l = s.points.last, points.last?.t != l.t { points.append(l) }
            var kv: [(String, JSON)] = [("name", .string(key)), ("bytes", .bool(key.contains("bytes") || s.kind == .memAvailable || s.kind == .swapFree || s.kind == .cgroupMemory || s.kind == .processRSS)),
                                        ("limit", .uint(s.limit)),
                                        ("points", .array(points.map { .array([.uint($0.t), .double($0.v)]) }))]
            if let p = prediction(s, span: span) { kv.append(("prediction", p)) }
            gaugeList.append(.object(kv))
        }
        return .object([
            ("title", .string(title)), ("host", .string(metadata.host)), ("kernel", .string(metadata.kernelRelease)),
            ("start_wall_ns", .int(metadata.wallClock(first == .max ? metadata.clockNs : first))),
            ("first_ns", .uint(first == .max ? 0 : first)), ("last_ns", .uint(last)), ("events", .uint(events)),
            ("findings", .array(findings.map { f, chain, pids in
                .object([("ts_ns", .uint(f.ts)), ("detector", .string(f.detector)), ("severity", .string(f.severity.rawValue)),
                         ("pid", .uint(UInt64(f.pid))), ("tid", .uint(UInt64(f.tid))), ("comm", .string(f.comm)),
                         ("summary", .string(f.summary)), ("evidence", f.evidence),
                         ("lineage", .array(zip(pids, chain).map { pid, p in
                             .object([("pid", .uint(UInt64(pid))), ("ppid", .uint(UInt64(p.ppid))), ("comm", .string(p.comm)),
                                      ("exe", .string(p.exe)), ("argv", .array(p.argv.prefix(16).map { .string(String($0.prefix(200))) }))])
                         }))])
            })),
            ("syscalls", .array(topSyscalls.map { hist($0.key, $0.value) })),
            ("devices", .array(devices.keys.sorted().map { hist($0, devices[$0]!) })),
            ("gauges", .array(gaugeList)),
            ("busiest", .array(busiest.map { pid, n in
                .object([("pid", .uint(UInt64(pid))), ("comm", .string(processes[pid]?.comm ?? "?")), ("events", .uint(n))])
            })),
        ])
    }

    /// Where a gauge's recent trend (Theil–Sen over its last 60 samples, most
    /// steps the same way) reaches its limit or zero, if within ten times the
    /// trace's span: drawn as a dashed line, a hint next to the detectors'
    /// own judgement, not a finding.
    private func prediction(_ s: Series, span: UInt64) -> JSON? {
        guard let t = TrendEstimator.fit(Array(s.points.suffix(60))), t.monotoneShare >= 0.6 else { return nil }
        let draining: Set<GaugeKind> = [.fsBytes, .fsInodes, .memAvailable, .swapFree]
        let seconds: Double?
        let target: Double
        if let k = s.kind, draining.contains(k) {
            seconds = t.secondsUntilEmpty()
            target = 0
        } else {
            seconds = t.secondsUntil(reaching: Double(s.limit))
            target = Double(s.limit)
        }
        guard let seconds, seconds * 1e9 <= Double(max(span, 1_000_000_000)) * 10 else { return nil }
        return .object([("from_ns", .uint(t.at)), ("from_value", .double(t.valueAtEnd)),
                        ("at_ns", .uint(t.at &+ UInt64(seconds * 1e9))), ("value", .double(target)), ("seconds", .double(seconds))])
    }

    /// The page: data inline, drawn by the inline script with SVG.
    public var html: String {
        // "</" cannot end the script element from inside a JSON string.
        let json = data.serialized().replacingOccurrences(of: "</", with: "<\\/")
        return HTMLReport.page.replacingOccurrences(of: "@TITLE@", with: HTMLReport.escape(title))
            .replacingOccurrences(of: "@DATA@", with: json)
    }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static let page = #"""
    <!DOCTYPE html>
    <html lang="en">
    <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Flightbox report: @TITLE@</title>
    <style>
    body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1100px; padding: 16px 24px; color: #1d2330; background: #fff; }
    h1 { font-size: 22px; margin: 4px 0; } h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #dde; padding-bottom: 4px; }
    .meta { color: #556; } .sev { display: inline-block; padding: 0 7px; border-radius: 9px; color: #fff; font-size: 12px; font-weight: 600; }
    .critical { background: #c62828; } .warning { background: #e08a00; } .info { background: #3465a4; }
    .finding { border: 1px solid #dde; border-radius: 6px; padding: 8px 12px; margin: 8px 0; }
    .finding:target { outline: 2px solid #3465a4; }
    pre { background: #f5f6f8; padding: 8px; overflow-x: auto; font-size: 12px; margin: 6px 0; }
    table { border-collapse: collapse; } td, th { padding: 2px 10px; text-align: left; border-bottom: 1px solid #eef; }
    th { color: #556; font-weight: 600; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
    .charts { display: flex; flex-wrap: wrap; gap: 12px; } .chart { border: 1px solid #eef; padding: 6px; width: 334px; }
    .chart h3 { font-size: 13px; margin: 0 0 4px; font-weight: 600; overflow-wrap: anywhere; } svg text { font-size: 10px; fill: #556; }
    ul.lineage { margin: 4px 0; padding-left: 18px; } .empty { color: #889; font-style: italic; }
    #errors { color: #c62828; }
    </style>
    </head>
    <body>
    <ul id="errors"></ul>
    <h1>Flightbox report: @TITLE@</h1>
    <div class="meta" id="meta"></div>
    <h2>Findings</h2>
    <div id="timeline"></div>
    <div id="findings"></div>
    <h2>Syscall latency (log<sub>2</sub> buckets, counts on a log scale)</h2>
    <div class="charts" id="syscalls"></div>
    <h2>Block I/O latency per device</h2>
    <div class="charts" id="devices"></div>
    <h2>Gauges</h2>
    <div class="charts" id="gauges"></div>
    <h2>Busiest processes</h2>
    <div id="busiest"></div>
    <script id="data" type="application/json">@DATA@</script>
    <script>
    "use strict";
    window.addEventListener("error", function (e) {
      var li = document.createElement("li"); li.textContent = "error: " + e.message; document.getElementById("errors").appendChild(li);
    });
    (function () {
      var D = JSON.parse(document.getElementById("data").textContent);
      var NS = "http://www.w3.org/2000/svg";
      function el(tag, attrs, text) { var e = document.createElement(tag); for (var k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; return e; }
      function svg(tag, attrs, text) { var e = document.createElementNS(NS, tag); for (var k in attrs) e.setAttribute(k, attrs[k]); if (text !== undefined) e.textContent = text; return e; }
      function dur(ns) { if (ns >= 1e9) return (ns / 1e9).toFixed(3) + " s"; if (ns >= 1e6) return (ns / 1e6).toFixed(3) + " ms"; if (ns >= 1e3) return (ns / 1e3).toFixed(1) + " µs"; return ns + " ns"; }
      function off(ts) { return "+" + ((ts - D.first_ns) / 1e9).toFixed(6) + " s"; }
      function num(v, bytes) { if (!bytes) return v >= 1e6 ? v.toExponential(2) : String(Math.round(v * 1000) / 1000); var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0; while (v >= 1024 && i < 4) { v /= 1024; i++; } return v.toFixed(1) + " " + u[i]; }
      var span = Math.max(1, D.last_ns - D.first_ns);
      var counts = { critical: 0, warning: 0, info: 0 };
      D.findings.forEach(function (f) { counts[f.severity]++; });
      document.getElementById("meta").textContent = D.host + ", Linux " + D.kernel + ", from " + new Date(D.start_wall_ns / 1e6).toISOString() +
        " for " + dur(span) + ", " + D.events + " events; findings: " + counts.critical + " critical, " + counts.warning + " warning, " + counts.info + " info";

      // Timeline: one row per detector, a marker per finding, linked to its card.
      var detectors = []; D.findings.forEach(function (f) { if (detectors.indexOf(f.detector) < 0) detectors.push(f.detector); }); detectors.sort();
      var W = 1000, left = 130, rowH = 22, H = 30 + rowH * Math.max(1, detectors.length);
      var t = svg("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, role: "img" });
      t.appendChild(svg("line", { x1: left, x2: W - 10, y1: H - 18, y2: H - 18, stroke: "#99a" }));
      for (var i = 0; i <= 5; i++) {
        var x = left + (W - left - 10) * i / 5;
        t.appendChild(svg("line", { x1: x, x2: x, y1: 4, y2: H - 14, stroke: "#eef" }));
        t.appendChild(svg("text", { x: x, y: H - 3, "text-anchor": "middle" }, "+" + (span * i / 5 / 1e9).toFixed(2) + " s"));
      }
      detectors.forEach(function (d, r) { t.appendChild(svg("text", { x: 4, y: 20 + r * rowH }, d)); });
      var colors = { critical: "#c62828", warning: "#e08a00", info: "#3465a4" };
      D.findings.forEach(function (f, i) {
        var a = svg("a", { href: "#finding-" + i });
        var c = svg("circle", { cx: left + (W - left - 10) * (f.ts_ns - D.first_ns) / span, cy: 16 + detectors.indexOf(f.detector) * rowH, r: 6, fill: colors[f.severity] });
        c.appendChild(svg("title", {}, f.severity + " " + f.detector + " at " + off(f.ts_ns) + ": " + f.summary));
        a.appendChild(c); t.appendChild(a);
      });
      document.getElementById("timeline").appendChild(t);

      var list = document.getElementById("findings");
      if (!D.findings.length) list.appendChild(el("p", { "class": "empty" }, "No findings: every detector stayed quiet on this trace."));
      D.findings.forEach(function (f, i) {
        var card = el("div", { "class": "finding", id: "finding-" + i });
        var head = el("div");
        head.appendChild(el("span", { "class": "sev " + f.severity }, f.severity));
        head.appendChild(document.createTextNode(" " + f.detector + " · " + off(f.ts_ns) + " · " + f.comm + " (pid " + f.pid + ")"));
        card.appendChild(head);
        card.appendChild(el("p", {}, f.summary));
        if (f.lineage.length) {
          var det = el("details"); det.appendChild(el("summary", {}, "Lineage (" + f.lineage.length + " processes, the process first)"));
          var ul = el("ul", { "class": "lineage" });
          f.lineage.forEach(function (p) { ul.appendChild(el("li", {}, p.comm + " (pid " + p.pid + ", parent " + p.ppid + ")" + (p.exe ? " " + p.exe : "") + (p.argv.length ? ": " + p.argv.join(" ") : ""))); });
          det.appendChild(ul); card.appendChild(det);
        }
        var ev = el("details", { open: "" }); ev.appendChild(el("summary", {}, "Evidence"));
        ev.appendChild(el("pre", {}, JSON.stringify(f.evidence, null, 2))); card.appendChild(ev);
        list.appendChild(card);
      });

      function histogram(target, h) {
        var box = el("div", { "class": "chart" }); box.appendChild(el("h3", {}, h.name + ": " + h.count + " calls, max " + dur(h.max_ns)));
        var w = 330, hh = 120, n = h.buckets.length, bw = Math.max(4, Math.min(24, (w - 30) / Math.max(1, n)));
        var s = svg("svg", { width: w, height: hh + 28, role: "img" });
        var top = Math.log10(Math.max.apply(null, h.buckets.map(function (b) { return b[1]; })) + 1);
        h.buckets.forEach(function (b, i) {
          var bh = hh * Math.log10(b[1] + 1) / Math.max(top, 1e-9);
          var r = svg("rect", { x: 4 + i * bw, y: hh - bh, width: bw - 2, height: bh, fill: "#3465a4" });
          r.appendChild(svg("title", {}, "≤ " + dur(b[0]) + ": " + b[1])); s.appendChild(r);
          if (i % Math.ceil(64 / bw) === 0) s.appendChild(svg("text", { x: 4 + i * bw, y: hh + 12 }, "≤" + dur(b[0])));
        });
        box.appendChild(s); target.appendChild(box);
      }
      var sc = document.getElementById("syscalls");
      if (!D.syscalls.length) sc.appendChild(el("p", { "class": "empty" }, "No syscalls recorded (the syscalls family was off)."));
      D.syscalls.forEach(function (h) { histogram(sc, h); });
      var dv = document.getElementById("devices");
      if (!D.devices.length) dv.appendChild(el("p", { "class": "empty" }, "No block I/O recorded."));
      D.devices.forEach(function (h) { histogram(dv, h); });

      var gs = document.getElementById("gauges");
      if (!D.gauges.length) gs.appendChild(el("p", { "class": "empty" }, "No gauges recorded (the gauges family was off)."));
      D.gauges.forEach(function (g) {
        var box = el("div", { "class": "chart" });
        var pts = g.points, last = pts[pts.length - 1][1];
        box.appendChild(el("h3", {}, g.name + ": " + num(last, g.bytes) + (g.limit ? " of " + num(g.limit, g.bytes) : "")));
        var w = 330, hh = 110, t0 = D.first_ns, t1 = D.last_ns;
        var vmax = Math.max.apply(null, pts.map(function (p) { return p[1]; }).concat([g.limit || 0, 1]));
        if (g.prediction) { t1 = Math.max(t1, g.prediction.at_ns); vmax = Math.max(vmax, g.prediction.value); }
        function X(ts) { return 40 + (w - 50) * (ts - t0) / Math.max(1, t1 - t0); } function Y(v) { return 6 + (hh - 10) * (1 - v / vmax); }
        var s = svg("svg", { width: w, height: hh + 20, role: "img" });
        s.appendChild(svg("text", { x: 0, y: 12 }, num(vmax, g.bytes)));
        s.appendChild(svg("line", { x1: 40, x2: w - 10, y1: Y(0), y2: Y(0), stroke: "#99a" }));
        if (g.limit) s.appendChild(svg("line", { x1: 40, x2: w - 10, y1: Y(g.limit), y2: Y(g.limit), stroke: "#c62828", "stroke-dasharray": "2 3" }));
        s.appendChild(svg("polyline", { points: pts.map(function (p) { return X(p[0]) + "," + Y(p[1]); }).join(" "), fill: "none", stroke: "#3465a4", "stroke-width": 1.5 }));
        if (g.prediction) {
          var p = g.prediction, line = svg("line", { x1: X(p.from_ns), y1: Y(p.from_value), x2: X(p.at_ns), y2: Y(p.value), stroke: "#c62828", "stroke-dasharray": "5 4", "stroke-width": 1.5 });
          line.appendChild(svg("title", {}, "at this rate: " + (p.value ? "reaches the limit" : "runs out") + " in " + dur(p.seconds * 1e9)));
          s.appendChild(line);
          box.appendChild(el("div", { "class": "meta" }, "Trend: " + (p.value ? "reaches its limit" : "runs out") + " in " + dur(p.seconds * 1e9) + " at this rate"));
        }
        box.insertBefore(s, box.childNodes[1] || null); gs.appendChild(box);
      });

      var tb = el("table"), hr = el("tr");
      ["pid", "process", "events"].forEach(function (h) { hr.appendChild(el("th", {}, h)); }); tb.appendChild(hr);
      D.busiest.forEach(function (p) { var tr = el("tr"); tr.appendChild(el("td", { "class": "n" }, p.pid)); tr.appendChild(el("td", {}, p.comm)); tr.appendChild(el("td", { "class": "n" }, p.events)); tb.appendChild(tr); });
      document.getElementById("busiest").appendChild(tb);
      document.body.setAttribute("data-rendered", "ok");
    })();
    </script>
    </body>
    </html>

    """#
}
