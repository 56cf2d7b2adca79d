// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "flightbox",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "flightbox", targets: ["flightbox"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
        // The flight recorder's metrics registry and Prometheus text exposition.
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries from Debian's -dev packages.
        .systemLibrary(name: "CLibBPF", pkgConfig: "libbpf", providers: [.apt(["libbpf-dev", "libelf-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        // The event wire layout: include/ links to bpf/events.h, the one definition.
        .target(name: "CFlightboxEvents"),
        // Small system shims the product needs that Swift cannot express safely
        // (post-fork code, CRC32C, O_TMPFILE, flock).
        .target(name: "CFlightboxSys"),
        // The test workloads' C side (TCP and HTTP scenarios, privilege calls, faults):
        // linked by flightbox-load only, never by the product.
        .target(name: "CFlightboxLoad"),
        // libbpf glue that is simpler in C: .rodata config by BTF, log capture.
        .target(name: "CFlightboxBPF", dependencies: ["CLibBPF", "CFlightboxEvents"]),

        .target(name: "FlightboxEvents", dependencies: ["CFlightboxEvents"]),
        .target(name: "FlightboxFormat", dependencies: ["FlightboxEvents", "CZstd", "CLZ4", "CFlightboxSys"]),
        .target(
            name: "FlightboxCapture",
            dependencies: ["FlightboxEvents", "FlightboxFormat", "CLibBPF", "CFlightboxBPF", "CFlightboxSys"],
            plugins: ["FlightboxBPFBuild"]
        ),
        // The security rule language: lineage, parser, type checker, evaluator, the built-in rules.
        .target(
            name: "FlightboxRules",
            dependencies: ["FlightboxEvents", "FlightboxFormat", "CFlightboxEvents", .product(name: "Yams", package: "Yams")]
        ),
        .target(name: "FlightboxDetectors", dependencies: ["FlightboxEvents", "FlightboxFormat", "FlightboxRules"]),
        // The configuration file (YAML, read with Yams' node API for line and column):
        // the one module that parses it, so the detectors themselves never see YAML.
        .target(
            name: "FlightboxConfig",
            dependencies: ["FlightboxDetectors", "FlightboxFormat", "FlightboxRules", .product(name: "Yams", package: "Yams")]
        ),
        // Looking at a trace: the Perfetto export (protobuf written by hand, see Protobuf.swift) and the HTML report.
        .target(name: "FlightboxReport", dependencies: ["FlightboxEvents", "FlightboxFormat", "FlightboxDetectors"]),
        // The pipeline drain -> sequence -> write -> detect, for `record` and `flight`.
        .target(
            name: "FlightboxRecorder",
            dependencies: ["FlightboxEvents", "FlightboxFormat", "FlightboxCapture", "FlightboxDetectors", "CFlightboxSys"]
        ),
        .executableTarget(
            name: "flightbox",
            dependencies: [
                "FlightboxEvents", "FlightboxFormat", "FlightboxCapture", "FlightboxDetectors", "FlightboxRecorder",
                "FlightboxConfig", "FlightboxReport", "FlightboxRules",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        // A workload with exactly known syscalls, for tests, fixtures and `flightbox bench`.
        .executableTarget(name: "flightbox-load", dependencies: ["CFlightboxLoad"]),
        // A FUSE file system whose one file backs a loop device that can be made
        // slow or failing on demand, for the block detector's tests and fixture.
        .executableTarget(name: "flightbox-slowfs", linkerSettings: [.linkedLibrary("fuse3")]),
        // An application with functions of known latency and error returns, a heartbeat and
        // USDT probes (<sys/sdt.h>): the target of the health checks' uprobe and USDT tests.
        .executableTarget(name: "flightbox-app"),
        // Generates what derives from bpf/events.h (`swift run flightbox-codegen`).
        .target(name: "FlightboxCodegen"),
        .executableTarget(name: "flightbox-codegen", dependencies: ["FlightboxCodegen"]),
        // The reader's fuzz target (scripts/fuzz.sh builds it with libFuzzer).
        .executableTarget(name: "flightbox-fuzz", dependencies: ["FlightboxFormat"]),

        .plugin(name: "FlightboxBPFBuild", capability: .buildTool()),

        .testTarget(name: "FlightboxEventsTests", dependencies: ["FlightboxEvents"]),
        .testTarget(name: "FlightboxCodegenTests", dependencies: ["FlightboxCodegen", "FlightboxEvents"]),
        .testTarget(name: "FlightboxFormatTests", dependencies: ["FlightboxFormat", "FlightboxEvents"]),
        .testTarget(name: "FlightboxDetectorsTests", dependencies: ["FlightboxDetectors", "FlightboxRules", "FlightboxFormat", "FlightboxEvents"]),
        .testTarget(name: "FlightboxRulesTests", dependencies: ["FlightboxRules", "FlightboxDetectors", "FlightboxFormat", "FlightboxEvents"]),
        .testTarget(name: "FlightboxConfigTests", dependencies: ["FlightboxConfig", "FlightboxDetectors", "FlightboxRules", "FlightboxFormat", "FlightboxEvents"]),
        .testTarget(
            name: "FlightboxCaptureTests",
            dependencies: ["FlightboxCapture", "FlightboxRecorder", "FlightboxFormat", "FlightboxEvents", "CFlightboxSys", "flightbox-app"]
        ),
        .testTarget(
            name: "FlightboxRecorderTests",
            dependencies: ["FlightboxRecorder", "FlightboxDetectors", "FlightboxRules", "FlightboxFormat", "FlightboxEvents"]
        ),
        .testTarget(name: "FlightboxReportTests", dependencies: ["FlightboxReport", "FlightboxDetectors", "FlightboxFormat", "FlightboxEvents"]),
        .testTarget(
            name: "EndToEndTests",
            dependencies: ["FlightboxFormat", "FlightboxEvents", "flightbox", "flightbox-load", "flightbox-slowfs"]
        ),
    ],
    // Every module, tests included, in Swift 6 language mode: strict concurrency checking.
    swiftLanguageModes: [.v6]
)
