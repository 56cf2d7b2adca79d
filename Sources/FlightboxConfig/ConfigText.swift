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
