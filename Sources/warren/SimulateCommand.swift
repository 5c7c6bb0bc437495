import ArgumentParser
import Foundation
import Warren
import WarrenCLI
import WarrenConformance
import WarrenSimulator

/// `warren simulate`: thousands of nodes running the real `GossipEngine` in virtual time.
struct Simulate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Simulate an overlay of N nodes (the real engine, virtual time, seeded) and report delivery, hops, RMR, latency and state.",
        discussion: """
        The overlay is built by the engine's own membership logic: node i starts with 1–2 random \
        earlier nodes as seeds and dials more through peer exchange until it has --degree \
        neighbours. Then a stream of --messages messages between random pairs and one community \
        broadcast. The same seed gives the same report. Build with -c release:

          swift build -c release --product warren
          .build/release/warren simulate --nodes 10000 --messages 1000 --seed 1
          .build/release/warren simulate --sweep --out docs/plots      # CSV for tools/sim/plot.sh
          .build/release/warren simulate --nodes 2000 --messages 2400 --interval-ms 100 --kill 0.5
          .build/release/warren simulate --nodes 2000 --messages 2400 --interval-ms 100 --partition 120

        --kill and --partition begin at --fault-at of the stream (a third of the way in); the \
        report gives the delivery ratio before, during and after the fault, the time to recover \
        (delivery, one component) and the components of the live overlay (docs/SIMULATION.md, \
        "Faults").
        """)

    @Option(help: "Number of nodes.") var nodes: Int = 1_000
    @Option(help: "Target degree of every node (EngineConfig.targetDegree).") var degree: Int = 4
    @Option(help: "Point-to-point messages between random pairs.") var messages: Int = 1_000
    @Flag(help: "Leave out the community broadcast.") var noBroadcast = false
    @Flag(help: "Membership without bounded views (seeds kept forever, every inbound accepted), as before them.") var noViews = false
    @Option(help: "Seed of everything random.") var seed: UInt64 = 1
    @Option(help: "Median one-way link latency (ms), log-normal.") var latencyMs: Double = 1
    @Option(help: "Sigma of the log-normal latency (0 = every link has the median).") var latencySigma: Double = 0.5
    @Option(help: "Per-frame loss probability (0…1).") var loss: Double = 0
    @Option(help: "Percent of nodes replaced per simulated minute during the stream.") var churn: Double = 0
    @Option(help: "Fraction of the nodes (0…1, chosen by the seed) killed at once at --fault-at of the stream, for good.") var kill: Double?
    @Option(help: "Virtual seconds of a cut between two halves of the overlay (every frame between them lost), from --fault-at of the stream; then it heals.") var partition: Double?
    @Option(help: "With --kill or --partition: where in the stream the fault begins, as a fraction of it (default: 1/3).") var faultAt: Double?
    @Option(help: "Virtual time between two messages (ms).") var intervalMs: Double = 20
    @Option(help: "Engine timers: lan or local.") var preset: String = "lan"
    @Option(help: "TTL of every message (and maxTTL).") var ttl: UInt8 = 16
    @Option(help: "Seen-cache capacity per engine.") var seenCapacity: Int = 4_096
    @Option(help: "Envelope size in bytes.") var envelopeSize: Int = 200
    @Flag(inversion: .prefixedNo, help: "Unicast routing on every node (docs/PROTOCOL.md §9); --no-routing (the default): flood only.") var routing = false
    @Option(help: "With --routing: virtual seconds between formation and the stream, for contacts and records to settle, 0…3600 (default: 10).") var routingSettle: Double?
    @Option(help: "With --routing: contacts per XOR distance bucket, 1…64 (default: \(RoutingParameters().bucketSize)).") var routingBucketSize: Int?
    @Flag(help: ArgumentHelp("With --routing: no contact links (greedy routing over the gossip neighbours only; for comparison).", visibility: .hidden)) var routingNoContacts = false
    @Option(help: "Append the report as a CSV row to this file (header if new).") var csv: String?
    @Option(help: "Threads to run the nodes on (default: the cores available, at most 8). The report is the same for any number.")
    var threads: Int?

    @Flag(help: "Run the sweep (N × degree, then loss and churn) and write CSV files to --out.") var sweep = false
    @Option(help: "Sweep: directory for sweep.csv and faults.csv.") var out: String = "docs/plots"
    @Option(help: "Sweep: node counts, comma-separated.") var sweepNodes: String = "100,300,1000,3000,10000"
    @Option(help: "Sweep: degrees, comma-separated.") var sweepDegrees: String = "3,4,5,6,7,8"
    @Option(help: "Sweep: messages per run.") var sweepMessages: Int = 200
    @Option(help: "Sweep: node counts of the loss/churn runs, comma-separated.") var faultNodes: String = "1000,10000"
    @Option(help: "Sweep: run only 'grid' (N × degree), 'faults' (loss, churn) or 'resilience' (flood, views, routing × churn, loss, kill, partition).") var sweepOnly: String?
    @Option(help: "Sweep: nodes of the resilience runs.") var resilienceNodes: Int = 2_000
    @Option(help: "Sweep: messages of each resilience run, spread over its 4-minute stream.") var resilienceMessages: Int = 2_400

    func validate() throws {
        guard nodes >= 1 else { throw ValidationError("--nodes must be ≥ 1") }
        guard nodes >= 2 || messages == 0 else {
            throw ValidationError("--messages needs --nodes ≥ 2 (a message goes between two different nodes); give --messages 0 for one node")
        }
        guard degree >= 0 && degree <= 64 else { throw ValidationError("--degree must be 0…64") }
        guard messages >= 0 else { throw ValidationError("--messages must be ≥ 0") }
        guard (0...1).contains(loss) else { throw ValidationError("--loss must be in 0…1") }
        guard churn >= 0 && churn < 100 else { throw ValidationError("--churn must be at least 0 and below 100 (percent of the nodes replaced per minute)") }
        guard latencyMs > 0, latencySigma >= 0 else { throw ValidationError("--latency-ms must be > 0, --latency-sigma ≥ 0") }
        guard intervalMs >= 0 else { throw ValidationError("--interval-ms must be ≥ 0") }
        guard SimulationConfig.Preset(rawValue: preset) != nil else { throw ValidationError("--preset must be lan or local") }
        guard ttl >= 1 else { throw ValidationError("--ttl must be ≥ 1") }
        guard seenCapacity >= 1, envelopeSize >= 1 else { throw ValidationError("--seen-capacity and --envelope-size must be ≥ 1") }
        if let threads { guard (1...64).contains(threads) else { throw ValidationError("--threads must be 1…64") } }
        if !routing && (routingSettle != nil || routingBucketSize != nil || routingNoContacts) {
            throw ValidationError("--routing-settle and --routing-bucket-size need --routing (without it the overlay only floods)")
        }
        if let kill { guard kill.isFinite, kill > 0, kill < 1 else { throw ValidationError("--kill must be above 0 and below 1 (the fraction of the nodes killed at once)") } }
        if let partition {
            guard partition.isFinite, partition > 0, partition <= 86_400 else { throw ValidationError("--partition must be above 0 and at most 86400 (virtual seconds)") }
        }
        if faultAt != nil && kill == nil && partition == nil { throw ValidationError("--fault-at needs --kill or --partition") }
        if let routingSettle { guard routingSettle.isFinite, (0...3600).contains(routingSettle) else { throw ValidationError("--routing-settle must be 0…3600 (virtual seconds)") } }
        if let routingBucketSize { guard (1...64).contains(routingBucketSize) else { throw ValidationError("--routing-bucket-size must be 1…64") } }
        // Last: baseConfig converts the values checked above.
        if let problem = baseConfig.faultProblem { throw ValidationError(problem) }
    }

    var baseConfig: SimulationConfig {
        var c = SimulationConfig()
        c.nodes = nodes
        c.degree = degree
        c.messages = messages
        c.broadcast = !noBroadcast
        c.views = !noViews
        c.seed = seed
        let median = UInt64(latencyMs * 1e6)
        c.latency = latencySigma == 0 ? .fixed(median) : .logNormal(median: median, sigma: latencySigma)
        c.loss = loss
        c.churnPercentPerMinute = churn
        c.killFraction = kill ?? 0
        c.partitionDuration = UInt64((partition ?? 0) * 1e9)
        c.faultAt = faultAt ?? 1.0 / 3
        c.messageInterval = UInt64(intervalMs * 1e6)
        c.preset = SimulationConfig.Preset(rawValue: preset) ?? .lan
        c.ttl = ttl
        c.seenCapacity = seenCapacity
        c.envelopeSize = envelopeSize
        c.routing = routing
        c.routingSettle = UInt64((routingSettle ?? 10) * 1e9)
        c.routingParameters.bucketSize = routingBucketSize ?? RoutingParameters().bucketSize
        if routingNoContacts { c.routingParameters.maxPendingContacts = 0; c.routingParameters.maxPinned = 0 }
        return c
    }

    func run() async throws {
        if sweep { try runSweep(); return }
        let (report, wall, demotions) = Self.measure(baseConfig, threads: threadCount)
        Output.line("warren simulate — \(machineLine())")
        Output.line(report.text)
        Output.line("real time: \(formatFixed(wall, 2)) s (\(Self.threadsNote(threadCount, demotions)))")
        if let csv { try Self.appendCSV(csv, report, wall) }
    }

    var threadCount: Int { threads ?? max(1, min(ProcessInfo.processInfo.activeProcessorCount, 8)) }

    static func threadsNote(_ threads: Int, _ demotions: Int) -> String {
        var s = "\(threads) thread\(threads == 1 ? "" : "s")"
        if demotions > 0 {
            s += "; \(demotions) stretch\(demotions == 1 ? "" : "es") ran on one thread because the threads were slower there, e.g. with other work on the cores"
        }
        return s
    }

    /// Runs `c`; runs longer than 5 s print a progress line on stderr every 5 s.
    static func measure(_ c: SimulationConfig, threads: Int) -> (SimulationReport, Double, Int) {
        let t0 = ContinuousClock.now
        var nextNote = t0.advanced(by: .seconds(5))
        let (r, demotions) = Simulation.runMeasured(c, threads: threads) { p in
            let now = ContinuousClock.now
            guard now >= nextNote else { return }
            nextNote = now.advanced(by: .seconds(5))
            let line: String
            switch p {
            case .forming(let started, let n): line = "formation: \(started)/\(n) nodes started"
            case .converging(let ms): line = "formation: all nodes started, waiting for degrees (\(ms) ms virtual)"
            case .streaming(let sent, let m): line = "stream: \(sent)/\(m) messages"
            }
            FileHandle.standardError.write(Data("  … \(formatFixed(seconds(now - t0), 0)) s: \(line)\n".utf8))
        }
        return (r, seconds(ContinuousClock.now - t0), demotions)
    }

    static func appendCSV(_ path: String, _ r: SimulationReport, _ wall: Double) throws {
        let fm = FileManager.default
        var text = ""
        if !fm.fileExists(atPath: path) { text += SimulationReport.csvHeader + ",wall_s\n" }
        text += r.csvRow + "," + formatFixed(wall, 2) + "\n"
        if let h = FileHandle(forWritingAtPath: path) {
            h.seekToEndOfFile()
            h.write(Data(text.utf8))
            try h.close()
        } else {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
    }

    static func list(_ s: String, _ name: String) throws -> [Int] {
        let v = s.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !v.isEmpty, v.allSatisfy({ ($0 ?? 0) >= 1 }) else { throw ValidationError("\(name): comma-separated positive integers") }
        return v.map { $0! }
    }

    func runSweep() throws {
        let ns = try Self.list(sweepNodes, "--sweep-nodes")
        let ds = try Self.list(sweepDegrees, "--sweep-degrees")
        let fns = try Self.list(faultNodes, "--fault-nodes")
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        guard sweepOnly == nil || ["grid", "faults", "resilience"].contains(sweepOnly!) else {
            throw ValidationError("--sweep-only must be grid, faults or resilience")
        }
        guard resilienceNodes >= 2, resilienceMessages >= 10 else {
            throw ValidationError("--resilience-nodes must be ≥ 2 and --resilience-messages ≥ 10")
        }
        let grid = sweepOnly == nil || sweepOnly == "grid", faultRuns = sweepOnly == nil || sweepOnly == "faults"
        let resilience = sweepOnly == nil || sweepOnly == "resilience"
        let sweepPath = out + "/sweep.csv", faultPath = out + "/faults.csv"
        let resiliencePath = out + "/resilience.csv", timelinePath = out + "/resilience-timeline.csv"
        for (p, on) in [(sweepPath, grid), (faultPath, faultRuns), (resiliencePath, resilience), (timelinePath, resilience)]
        where on && FileManager.default.fileExists(atPath: p) {
            try FileManager.default.removeItem(atPath: p)
        }
        Output.line("warren simulate --sweep — \(machineLine())")
        if grid { Output.line("N × degree (\(sweepMessages) messages each) → \(sweepPath)") }
        for n in grid ? ns : [] {
            for d in ds {
                var c = baseConfig
                c.nodes = n; c.degree = d; c.messages = sweepMessages
                c.loss = 0; c.churnPercentPerMinute = 0
                let (r, wall, _) = Self.measure(c, threads: threadCount)
                try Self.appendCSV(sweepPath, r, wall)
                Output.line("  N \(n) D \(d): ratio \(formatFixed(r.deliveryRatio, 4)), bcast last hop \(r.broadcastLastHop), RMR \(SimulationReport.rmrText(r.rmr)), state \(r.stateBytesMean) B, \(formatFixed(wall, 1)) s")
            }
        }
        if resilience { try runResilience(resiliencePath, timelinePath) }
        guard faultRuns else { return }
        Output.line("loss and churn (degree \(degree), \(sweepMessages) messages) → \(faultPath)")
        let faults: [(loss: Double, churn: Double)] = [(0, 0), (0.01, 0), (0.05, 0), (0.10, 0), (0.20, 0), (0.30, 0),
                                                      (0.40, 0), (0.50, 0), (0, 5), (0.01, 5), (0.10, 5)]
        for n in fns {
            for f in faults {
                var c = baseConfig
                c.nodes = n; c.messages = sweepMessages
                c.loss = f.loss; c.churnPercentPerMinute = f.churn
                // Churn needs simulated minutes: stretch the stream to 2 minutes.
                if f.churn > 0 { c.messageInterval = 120_000_000_000 / UInt64(max(1, sweepMessages)) }
                let (r, wall, _) = Self.measure(c, threads: threadCount)
                try Self.appendCSV(faultPath, r, wall)
                Output.line("  N \(n) loss \(formatFixed(f.loss * 100, 0)) % churn \(formatFixed(f.churn, 0)) %/min: ratio \(formatFixed(r.deliveryRatio, 4)), bcast \(formatFixed(r.broadcastRatio, 4)), violations \(r.exactlyOnceViolations), \(formatFixed(wall, 1)) s")
            }
        }
    }

    /// The three overlays (flooding without views, views, views + routing) × the faults of
    /// docs/SIMULATION.md, "Faults": a 4-minute stream (the partition's 2 minutes from a third
    /// of the way in, and 40 s after it) at `resilienceNodes`. One row per run in `path`; the
    /// delivery ratio by 5-s bucket of publish time in `timelinePath`.
    func runResilience(_ path: String, _ timelinePath: String) throws {
        let modes: [(name: String, views: Bool, routing: Bool)] = [("flood", false, false), ("views", true, false), ("routing", true, true)]
        let faults: [(name: String, churn: Double, loss: Double, kill: Double, partition: UInt64)] = [
            ("none", 0, 0, 0, 0), ("churn5", 5, 0, 0, 0), ("loss10", 0, 0.10, 0, 0), ("loss20", 0, 0.20, 0, 0),
            ("kill50", 0, 0, 0.5, 0), ("partition120", 0, 0, 0, 120_000_000_000),
        ]
        let stream: UInt64 = 240_000_000_000
        Output.line("resilience (N \(resilienceNodes), degree \(degree), \(resilienceMessages) messages over 240 s) → \(path), \(timelinePath)")
        var timeline = "mode,fault,bucket_start_s,sent,delivered,ratio\n"
        var rows = "mode,fault," + SimulationReport.csvHeader + ",wall_s\n"
        for mode in modes {
            for f in faults {
                var c = baseConfig
                c.nodes = resilienceNodes; c.messages = resilienceMessages
                c.messageInterval = stream / UInt64(resilienceMessages)
                c.views = mode.views; c.routing = mode.routing
                c.churnPercentPerMinute = f.churn; c.loss = f.loss
                c.killFraction = f.kill; c.partitionDuration = f.partition; c.faultAt = 1.0 / 3
                if let problem = c.faultProblem { throw ValidationError(problem) }
                let (r, wall, _) = Self.measure(c, threads: threadCount)
                rows += "\(mode.name),\(f.name)," + r.csvRow + "," + formatFixed(wall, 2) + "\n"
                try rows.write(toFile: path, atomically: true, encoding: .utf8)
                for (b, t) in r.timeline.enumerated() {
                    timeline += "\(mode.name),\(f.name),\(formatFixed(Double(UInt64(b) * c.timelineBucket) / 1e9, 1)),\(t.sent),\(t.delivered),\(formatFixed(t.ratio, 5))\n"
                }
                try timeline.write(toFile: timelinePath, atomically: true, encoding: .utf8)
                func ms(_ v: UInt64?) -> String { v.map { formatFixed(Double($0) / 1e6, 0) + " ms" } ?? "never" }
                let recovery = c.hasFault ? ", recovery \(ms(r.deliveryRecovery)) (delivery) / \(ms(r.connectivityRecovery)) (one component)" : ""
                Output.line("  \(mode.name) \(f.name): ratio \(formatFixed(r.deliveryRatio, 4)), after \(formatFixed(r.after.ratio, 4))\(recovery), components \(r.components), violations \(r.exactlyOnceViolations), \(formatFixed(wall, 1)) s")
            }
        }
    }
}
