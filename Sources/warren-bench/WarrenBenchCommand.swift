import ArgumentParser
import Warren
import WarrenCLI

/// `warren-bench`: Warren measured against its baselines (raw ZeroMQ, a central NATS server, a
/// plain gRPC server, libnice over a pipe), each in one run on this machine. The benches that
/// run whole nodes start the product's own `warren` as child processes (`warren node`,
/// `warren connect`), and their helpers (`peer`, `session-peer`) from this binary.
@main
struct WarrenBenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren-bench",
        abstract: "Measure Warren against its baseline, in one run, on this machine.",
        discussion: "Build with -c release for meaningful figures: swift run -c release warren-bench crypto",
        version: WarrenVersion.string,
        subcommands: [CryptoBench.self, RelayBench.self, LatencyBench.self, BridgeBench.self, CompareBench.self, BenchPeer.self,
                      SessionBench.self, BenchSessionPeer.self, Soak.self, SeenBench.self])

    static func main() async { await CommandMain.run(Self.self) }
}
