import FlightboxDetectors
import FlightboxEvents

extension ConfigFile {
    /// A complete, commented configuration file holding `configuration`
    /// (the defaults for `flightbox detectors --default-config`). It parses
    /// back to the same configuration.
    public static func text(of configuration: DetectorConfiguration = .defaults) -> String {
        var out = """
        # Flightbox configuration (flightbox detectors --default-config).
        # Use it with --config FILE on `record --detect`, `replay` and `test`.
        #
        # Durations: 500us, 1ms, 10s, 2m, 1h, 1d (0 needs no unit). Sizes: bytes,
        # or 64KiB, 16MiB, 1GiB (also kB, MB, GB). Ratios: up to 3 decimals.
        # Every detector also takes:
        #   enabled: false   to leave it out (unless named by --detectors)
        #   exclude:         events of these processes are not judged, and findings
        #                    naming these processes, cgroups, endpoints or devices are dropped:
        #     comm: [name, ...]      command names, as in /proc/PID/comm
        #     pid: [1234, ...]
        #     cgroup: [/system.slice/backup.service, ...]   a path and what is below it
        #     endpoint: [10.0.0.5:5432, ...]                detectors keyed by remote endpoint
        #     device: [nvme0n1, ...]                        detectors keyed by block device
        # Keys left out keep their defaults.

        detectors:

        """
        for s in configuration.detectors {
            let spec = s.spec
            out += "  # \(spec.name): \(spec.judges) (family: \(spec.family)).\n"
            out += "  \(spec.name):\n"
            out += "    enabled: \(s.enabled)\n"
            for p in spec.parameters {
                out += "    # \(p.doc). \(p.kind.rawValue.capitalizedFirst), \(p.rangeText); default \(p.defaultValue.configText).\n"
                out += "    \(p.name): \(s.value(p.name).configText)\n"
            }
            out += "    exclude:\n"
            let ex = s.exclude
            let lists: [(String, [String])] = [
                ("comm", ex.comms), ("pid", ex.pids.map(String.init)), ("cgroup", ex.cgroups),
                ("endpoint", ex.endpoints), ("device", ex.devices),
            ]
            for (key, values) in lists {
                out += "      \(key): \(key == "pid" ? "[" + values.joined(separator: ", ") + "]" : SettingValue.strings(values).configText)\n"
            }
            out += "\n"
        }
        out += """
        # Security rules, for the security detector: rule files applied after the
        # built-in ones (rules/default.yaml) in order, paths relative to this file,
        # then rules turned off or on by name. --rules FILE adds files after these.
        # rules:
        #   files: [local-rules.yaml]
        #   disable: [Beaconing]

        """
        out += probesText(configuration["health"]?.checks ?? [])
        return out
    }

    /// The `probes:` section: the checks, or a commented example.
    static func probesText(_ checks: [HealthCheck]) -> String {
        var out = """
        # Application health checks, judged by the health detector; recorded by
        # `record` and `flight` (the probes are attached while they run) and stored
        # in the trace, so replay judges them the same without this file.
        # Each check: name; target: binary:function or binary:0xoffset, or
        # usdt: provider:name with binary: (an executable or a library); optional
        # pid: or comm: limit; args: integer arguments captured (0 to 4); string: the
        # argument that points to a string to record with each event; return:
        # int or long; and at least one judgement:
        #   latency:   { statistic: p99 or max, above: 50ms and/or baseline: 3 (times its
        #                own median window), window: 10s, min_calls: 1 }
        #   errors:    { when: ret < 0 (or ret == -5, arg3 != 0), rate: 0.1, window: 10s, min_calls: 5 }
        #   heartbeat: { every: 5s }   missed when a process that called it stops for longer
        #   argument:  { when: arg2 > 100000 }
        # Windows and periods are multiples of 100ms. For example:
        #
        # probes:
        #   - name: checkout
        #     target: /usr/local/bin/shop:handle_checkout
        #     args: 1
        #     latency: { statistic: p99, above: 250ms, window: 10s }
        #     errors: { when: ret < 0, rate: 0.05, window: 10s, min_calls: 20 }
        #   - name: python-gc
        #     usdt: python:gc__done
        #     binary: /usr/bin/python3.11
        #     args: 1
        #     argument: { when: arg1 > 100000 }
        #   - name: worker-alive
        #     target: /usr/local/bin/shop:worker_tick
        #     heartbeat: { every: 5s }

        """
        guard !checks.isEmpty else { return out + "probes: []\n" }
        out += "probes:\n"
        func q(_ s: String) -> String { JSON.string(s).serialized() }
        for c in checks {
            out += "  - name: \(q(c.name))\n"
            switch c.target {
            case .function, .offset: out += "    target: \(q(c.target.description))\n"
            case .usdt(let b, let p, let n): out += "    usdt: \(q(p + ":" + n))\n    binary: \(q(b))\n"
            }
            if let p = c.pid { out += "    pid: \(p)\n" }
            if let m = c.comm { out += "    comm: \(q(m))\n" }
            out += "    args: \(c.arguments)\n"
            if c.stringArgument > 0 { out += "    string: \(c.stringArgument)\n" }
            if !c.target.isUSDT { out += "    return: \(c.int32Return ? "int" : "long")\n" }
            if let l = c.latency {
                var f = ["statistic: \(l.statistic.rawValue)"]
                if let a = l.aboveNs { f.append("above: \(SettingValue.durationText(a))") }
                if let b = l.baseline { f.append("baseline: \(SettingValue.ratio(b).configText)") }
                f += ["window: \(SettingValue.durationText(l.windowNs))", "min_calls: \(l.minCalls)"]
                out += "    latency: { \(f.joined(separator: ", ")) }\n"
            }
            if let e = c.errors {
                out += "    errors: { when: \(q(e.when.description)), rate: \(SettingValue.ratio(e.rate).configText), window: \(SettingValue.durationText(e.windowNs)), min_calls: \(e.minCalls) }\n"
            }
            if let h = c.heartbeat { out += "    heartbeat: { every: \(SettingValue.durationText(h.everyNs)) }\n" }
            if let a = c.argument { out += "    argument: { when: \(q(a.description)) }\n" }
        }
        return out
    }

    /// `flightbox detectors`: each detector, its family, what it judges and its parameters.
    public static func listing() -> String {
        var out = ""
        for spec in DetectorRegistry.all {
            out += "\(spec.name) (family: \(spec.family))\n"
            out += "  judges: \(spec.judges)\n"
            let width = spec.parameters.map(\.name.count).max() ?? 0
            let defaults = spec.parameters.map(\.defaultValue.configText)
            // A long default (a list) overflows its column rather than widening it for every row.
            let dwidth = max(4, defaults.map(\.count).filter { $0 <= 24 }.max() ?? 0)
            for (p, d) in zip(spec.parameters, defaults) {
                let name = p.name.padding(width)
                out += "  \(name)  \(d.padding(dwidth))  \(p.kind.rawValue), \(p.rangeText): \(p.doc)\n"
            }
            out += "  \("enabled".padding(width))  \("true".padding(dwidth))  and exclude: {\(Exclusions.fields.joined(separator: ", "))}\n"
        }
        return out
    }
}

extension String {
    var capitalizedFirst: String { prefix(1).uppercased() + dropFirst() }
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
