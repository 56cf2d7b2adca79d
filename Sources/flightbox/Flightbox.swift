import ArgumentParser

@main
struct Flightbox: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flightbox",
        abstract: "A flight recorder for Linux: kernel events via eBPF into an indexed trace, with detectors live and on replay.",
        version: "0.1.0",
        subcommands: [Record.self, Inspect.self, Events.self, Replay.self, Repair.self, FixtureTest.self, Bench.self]
    )
}
