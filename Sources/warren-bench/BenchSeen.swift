import ArgumentParser
import Foundation
import Warren
import WarrenCLI
import WarrenConformance
import WarrenEngine
import WarrenMeasure

struct SeenBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "seen",
        abstract: "Time inside the seen cache's insert under a rising rate: total and worst single insert.",
        discussion: """
            New ids at a rate rising from 100 to 500 per second over 10 minutes of virtual time, into \
            a cache with the local preset's bound, window and hold (524,288 / 120 s / 6 s), as a \
            node's engine inserts them; each insert is timed.
            """)
    @Option(help: "Runs of the workload; each is reported, then the medians.") var rounds: Int = 3

    func validate() throws {
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
    }

    func run() throws {
        let config = EngineConfig.local(endpoint: "", seeds: [])
        Output.line("warren-bench seen — \(machineLine())")
        var totals: [Double] = [], worsts: [Double] = []
        for k in 0..<max(1, rounds) {
            let t = SeenCache.timeRisingRate(config: config, clock: ContinuousClock())
            totals.append(seconds(t.total)); worsts.append(seconds(t.worst))
            if k == 0 {
                Output.line("  \(t.inserts) inserts, at most \(t.peakCount) ids held, \(t.bytes) bytes at the end")
            }
            Output.line(String(format: "  run %d: %.1f ms in insert (%.3f µs each), worst single insert %.3f ms, %d re-layouts",
                               k + 1, totals[k] * 1e3, totals[k] * 1e6 / Double(t.inserts), worsts[k] * 1e3, t.relayouts))
        }
        Output.line(String(format: "  median: %.1f ms in insert, worst single insert %.3f ms", median(totals) * 1e3, median(worsts) * 1e3))
    }
}
