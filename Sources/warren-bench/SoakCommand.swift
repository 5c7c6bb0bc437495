import ArgumentParser
import Foundation
import Synchronization
import Warren
import WarrenCLI
import WarrenConformance

struct Soak: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an overlay under sustained load and watch memory, descriptors, the de-dup cache and loss.",
        discussion: """
        Starts --nodes gossip nodes on loopback in this process (a ring), and every node publishes \
        sealed envelopes to the other nodes' keys at --rate envelopes/s in total for --duration s. \
        Every --interval s it prints resident memory, open file descriptors, threads, de-dup cache \
        entries, sent, delivered and lost. --ramp then raises the rate step by step until \
        envelopes are lost, to find where loss begins. Build with -c release.
        """)
    @Option(help: "Nodes (a ring).") var nodes: Int = 5
    @Option(help: "Envelopes per second, all nodes together.") var rate: Int = 20_000
    @Option(help: "Seconds of load.") var duration: Int = 60
    @Option(help: "Seconds between report lines.") var interval: Int = 5
    @Option(help: "Seconds treated as warm-up (excluded from the flatness check).") var warmup: Int = 10
    @Flag(help: "After the soak, raise the rate in 5 s steps until loss begins.") var ramp = false

    func validate() throws {
        guard (2...64).contains(nodes) else { throw ValidationError("--nodes must be 2…64") }
        guard rate > 0, duration > 0, interval > 0 else { throw ValidationError("--rate, --duration and --interval must be positive") }
        guard warmup >= 0, warmup < duration else { throw ValidationError("--warmup must be 0 or more and shorter than --duration (\(duration) s)") }
    }

    final class Tally: Sendable {
        let delivered = Atomic<Int>(0)
    }

    static func rssMB() -> Double {
        let s = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = s.split(separator: "\n").first { $0.hasPrefix("VmRSS:") } ?? ""
        let kb = Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
        return kb / 1024
    }
    static func count(_ dir: String) -> Int { (try? FileManager.default.contentsOfDirectory(atPath: dir).count) ?? -1 }

    /// Publishes at `rate`/s for `seconds`; returns envelopes sent.
    static func load(_ backends: [GossipBackend], keys: [PrivateKey], rate: Int, duration: Double,
                     tick: (Double, Int) async -> Void = { _, _ in }) async throws -> Int {
        let clock = ContinuousClock()
        let start = clock.now
        var sent = 0
        var msg = SignalingMessage()
        msg.candidate.address = "192.0.2.1"
        var step = 0
        while true {
            let elapsed = seconds(clock.now - start)
            if elapsed >= duration { break }
            let due = Int(Double(rate) * elapsed)
            while sent < due {
                let from = sent % backends.count
                let to = (from + 1 + (sent / backends.count) % (backends.count - 1)) % backends.count
                msg.candidate.port = Int32(truncatingIfNeeded: sent)
                try await backends[from].publish(KeyPair(ours: keys[from], theirs: keys[to].publicKey), msg)
                sent += 1
            }
            await tick(elapsed, sent)
            step += 1
            try await Task.sleep(for: .milliseconds(2))
        }
        return sent
    }

    func run() async throws {
        let keys = (0..<nodes).map { _ in PrivateKey.generate() }
        let overlay = try await GossipOverlay.start(nodes: nodes, edges: GossipOverlay.ring(nodes))
        guard await overlay.waitFormed() else { Output.line("FAIL: overlay did not form"); throw ExitCode(1) }
        let tally = Tally()
        let counter = ClosureMessageHandler { _, _ in tally.delivered.add(1, ordering: .relaxed) }
        for (b, k) in zip(overlay.backends, keys) { try await b.subscribe(KeyPair(ours: k, theirs: .zero), counter) }

        Output.line("warren-bench soak — \(machineLine())")
        Output.line("  \(nodes) nodes (ring), \(rate) envelopes/s for \(duration) s, report every \(interval) s")
        Output.line("     t    sent   delivered  in flight RSS MB   fds  threads  de-dup (min…max)  HWM drops")
        var rssSamples: [(Double, Double)] = []
        var fdSamples: [(Double, Int)] = []
        var nextReport = Double(interval)
        let sent = try await Self.load(overlay.backends, keys: keys, rate: rate, duration: Double(duration)) { t, sent in
            guard t >= nextReport else { return }
            nextReport += Double(interval)
            var dmin = Int.max, dmax = 0, hwm: UInt64 = 0
            for b in overlay.backends {
                let s = await b.stats()
                dmin = min(dmin, s.seenEntries); dmax = max(dmax, s.seenEntries); hwm += s.hwmDrops
            }
            let rss = Self.rssMB(), fds = Self.count("/proc/self/fd")
            rssSamples.append((t, rss)); fdSamples.append((t, fds))
            let d = tally.delivered.load(ordering: .relaxed)
            Output.line(String(format: "  %4.0f  %7d  %9d  %6d  %7.1f  %4d  %7d  %7d…%-7d  %9d",
                               t, sent, d, max(0, sent - d), rss, fds, Self.count("/proc/self/task"), dmin, dmax, hwm))
        }
        _ = await Conformance.eventually(timeout: .seconds(10)) { tally.delivered.load(ordering: .relaxed) >= sent }
        let delivered = tally.delivered.load(ordering: .relaxed)
        let steady = rssSamples.filter { $0.0 >= Double(warmup) }.map(\.1)
        let fdsSteady = fdSamples.filter { $0.0 >= Double(warmup) }.map(\.1)
        Output.line("")
        Output.line("  sent \(sent), delivered \(delivered), lost \(sent - delivered) (\(delivered > sent ? "DUPLICATES" : "no duplicates"))")
        if let lo = steady.min(), let hi = steady.max() {
            Output.line(String(format: "  resident memory after %d s warm-up: %.1f … %.1f MB (%.1f %% spread; target ≤ 10 %%)",
                               warmup, lo, hi, (hi - lo) / lo * 100))
        }
        if let f0 = fdsSteady.first, let f1 = fdsSteady.last {
            Output.line("  file descriptors after warm-up: \(f0) → \(f1) (growth \(f1 - f0))")
        }
        if ramp {
            Output.line("")
            Output.line("  ramp: 5 s steps until envelopes are lost")
            var r = rate
            var totalSent = sent
            while r <= 2_000_000 {
                // Start each step with nothing in flight, so each step's count is its own.
                let settled = totalSent
                _ = await Conformance.eventually(timeout: .seconds(10)) { tally.delivered.load(ordering: .relaxed) >= settled }
                let before = tally.delivered.load(ordering: .relaxed)
                let n = try await Self.load(overlay.backends, keys: keys, rate: r, duration: 5)
                totalSent += n
                _ = await Conformance.eventually(timeout: .seconds(10)) { tally.delivered.load(ordering: .relaxed) - before >= n }
                try await Task.sleep(for: .milliseconds(200))
                let got = tally.delivered.load(ordering: .relaxed) - before
                let achieved = Double(n) / 5
                Output.line(String(format: "    offered %8d/s  published %9.0f/s  delivered %d/%d", r, achieved, got, n))
                if got < n { Output.line("  loss begins at about \(Int(achieved)) envelopes/s"); break }
                if got > n {
                    Output.line("  exactly-once breaks at about \(Int(achieved)) envelopes/s: \(got - n) duplicates — the de-dup")
                    Output.line("  cache's bound no longer covers the time a frame can spend queued at this rate")
                    break
                }
                if achieved < Double(r) * 0.8 { Output.line("  the publishers saturate at about \(Int(achieved))/s before any loss"); break }
                r = r * 3 / 2
            }
        }
        await overlay.close()
        if delivered != sent { throw ExitCode(1) }
    }
}
