import Foundation
import PackagePlugin

/// Compiles bpf/*.bpf.c with clang -target bpf and embeds the objects into the
/// target as base64 string literals (SwiftPM does not compile C that plugins
/// generate, and a `[UInt8]` literal of this size compiles very slowly).
@main
struct FlightboxBPFBuild: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: Target) throws -> [Command] {
        let bpfDir = context.package.directoryURL.appendingPathComponent("bpf")
        let script = bpfDir.appendingPathComponent("build.sh")
        let output = context.pluginWorkDirectoryURL.appendingPathComponent("EmbeddedBPF.swift")
        let objDir = context.pluginWorkDirectoryURL.appendingPathComponent("obj")
        let clang = (try? context.tool(named: "clang").url.path) ?? "clang"

        var inputs: [URL] = [script]
        let fm = FileManager.default
        for name in (try? fm.contentsOfDirectory(atPath: bpfDir.path)) ?? [] where name.hasSuffix(".c") || name.hasSuffix(".h") {
            inputs.append(bpfDir.appendingPathComponent(name))
        }
        inputs.append(bpfDir.appendingPathComponent("vmlinux/x86_64/vmlinux.h"))

        return [
            .buildCommand(
                displayName: "Compiling BPF programs",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: [script.path, clang, bpfDir.path, objDir.path, output.path],
                inputFiles: inputs,
                outputFiles: [output]
            ),
        ]
    }
}
