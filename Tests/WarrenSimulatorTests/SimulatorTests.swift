import Testing
import WarrenTestSupport
import WarrenEngine
@testable import WarrenSimulator

/// The simulator (`Sources/WarrenSimulator`) drives the real engine in virtual time.
@Suite(.computeLane) struct SimulatorTests {
    static func small(seed: UInt64 = 7, nodes: Int = 60, messages: Int = 40) -> SimulationConfig {
        var c = SimulationConfig()
        c.nodes = nodes
        c.degree = 3
        c.messages = messages
        c.seed = seed
        c.messageInterval = 5_000_000
        return c
    }

    @Test func sameSeedSameReport() {
        let a = Simulation.run(Self.small())
        let b = Simulation.run(Self.small())
        #expect(a == b)
        #expect(a.text == b.text)
        #expect(a.csvRow == b.csvRow)
        // Another seed gives another run (different topology and latencies).
        let c = Simulation.run(Self.small(seed: 8))
        #expect(c.csvRow != a.csvRow)
    }

    @Test func lossless100PercentExactlyOnce() {
        let r = Simulation.run(Self.small())
        #expect(r.formed)
        #expect(r.messages == 40)
        #expect(r.deliveryRatio == 1.0)
        #expect(r.delivered == 40)
        #expect(r.broadcastDelivered == 59)
        #expect(r.broadcastRatio == 1.0)
        #expect(r.exactlyOnceViolations == 0)
        #expect(r.maxHops >= 1 && r.maxHops <= 16)
        #expect(r.meanDegree >= 3)
        // Flooding: every node forwards each message once on all links but the one it came on.
        #expect(r.rmr > 0)
        #expect(r.framesLost == 0)
        #expect(r.stateBytesMean > 0)
        #expect(r.latencyP50 > 0 && r.latencyP50 <= r.latencyP99 && r.latencyP99 <= r.latencyMax)
    }

    @Test func lossAndChurnStillCounted() {
        var c = Self.small()
        c.loss = 0.05
        c.churnPercentPerMinute = 20
        c.messageInterval = 200_000_000
        let r = Simulation.run(c)
        #expect(r.replacements > 0)
        #expect(r.framesLost > 0)
        #expect(r.exactlyOnceViolations == 0)
        #expect(r.deliveryRatio > 0.5)
        #expect(Simulation.run(c) == r)
    }

    /// Threads split the nodes into shards that run in windows of virtual time; every node sees
    /// the same events in the same order, so the report is the same for any number of threads
    /// (with loss and churn too, where every node draws from its own generator).
    @Test(arguments: [2, 3])
    func threadsDoNotChangeTheReport(threads: Int) {
        var c = Self.small(nodes: 80, messages: 40)
        c.loss = 0.02
        c.churnPercentPerMinute = 60
        c.messageInterval = 200_000_000
        let one = Simulation.run(c, threads: 1)
        let many = Simulation.run(c, threads: threads)
        #expect(one.formed && one.replacements > 0 && one.framesLost > 0)
        #expect(many == one)
        #expect(many.text == one.text)
    }

    /// When the threads are slower than one (a busy machine), the first thread takes over every
    /// shard in the middle of a run. Forcing that at the first check must not change a thing.
    @Test func demotedRunsGiveTheSameDeliveries() {
        func run(threads: Int, demote: Bool) -> (deliveries: [Simulator.Delivery], frames: [Int], demotions: Int) {
            var sim = Simulator(seed: 11, latency: .logNormal(median: 1_000_000, sigma: 0.5), loss: 0.01, threads: threads)
            if demote { sim.blockDemoteRatio = 0 }   // every 256th window: hand over to thread 0
            let t = Topic(bytes: [UInt8](repeating: 7, count: 32))!
            for i in 0..<40 {
                let seeds = i == 0 ? [] : ["tcp://10.0.0.\(sim.random(below: i)):7000"]
                var c = EngineConfig.local(endpoint: "tcp://10.0.0.\(i):7000", seeds: seeds)
                c.targetDegree = 3
                sim.addNode(config: c)
                sim.subscribe(i, t)
            }
            sim.run(until: 10_000_000_000)
            for k in 0..<20 {
                sim.publish(from: sim.random(below: 40), topic: t, envelope: [UInt8(k), 1, 2, 3])
                sim.run(for: 50_000_000)
            }
            sim.run(for: 1_000_000_000)
            return (sim.deliveries, sim.messages.map(\.frames), sim.demotions)
        }
        let one = run(threads: 1, demote: false)
        let demoted = run(threads: 2, demote: true)
        #expect(demoted.demotions >= 1)
        #expect(one.deliveries.count >= 20 * 39)
        #expect(demoted.deliveries == one.deliveries)
        #expect(demoted.frames == one.frames)
    }

    /// A fallback to one thread holds 250 ms, doubling while fallbacks follow each other (each
    /// one: threads slower again as soon as they were tried), up to 4 s; the retry time follows.
    @Test func fallbacksBackOffAndStayBounded() {
        var sim = Simulator(seed: 1, latency: .fixed(1_000_000), loss: 0, threads: 2)
        var holds: [UInt64] = []
        for _ in 0..<7 {
            let before = simMonotonicNanoseconds()
            let hold = sim.demoteHold
            sim.demote()
            #expect(sim.parallelRetryAt >= before + hold)
            holds.append(hold)
        }
        #expect(holds == [250, 500, 1_000, 2_000, 4_000, 4_000, 4_000].map { UInt64($0) * 1_000_000 })
        #expect(sim.demotions == 7)

        // Threads that keep up for 20 ms of wall time set the hold back to 250 ms (the ratios
        // are set so that no fallback can happen on however busy a machine).
        sim.demoteRatio = .infinity
        sim.blockDemoteRatio = .infinity
        sim.parallelRetryAt = 0
        for i in 0..<40 {
            var c = EngineConfig.local(endpoint: "tcp://10.0.0.\(i):7000", seeds: i == 0 ? [] : ["tcp://10.0.0.0:7000"])
            c.targetDegree = 3
            sim.addNode(config: c)
        }
        var seconds = 0
        while sim.demoteHold != Simulator.minDemoteHold && seconds < 600 {
            sim.run(for: 1_000_000_000)
            seconds += 1
        }
        #expect(sim.demoteHold == Simulator.minDemoteHold, "after \(seconds) s of virtual time")
        #expect(sim.demotions == 7)
    }

    /// The lower bound the windows rely on: no draw is shorter than `minimum`.
    @Test func latencyNeverBelowMinimum() {
        var rng = SeededGenerator(seed: 5)
        let cases: [LatencyDistribution] = [.fixed(0), .fixed(250), .uniform(0...10), .uniform(40...90),
                                            .logNormal(median: 1_000_000, sigma: 0.5), .logNormal(median: 2_000, sigma: 3)]
        for d in cases {
            let m = d.minimum
            #expect(m >= 1)
            var lowest = UInt64.max
            for _ in 0..<20_000 { lowest = min(lowest, d.draw(using: &rng)) }
            #expect(lowest >= m, "\(d)")
        }
        #expect(LatencyDistribution.logNormal(median: 1_000_000, sigma: 0.5).minimum == 82_084)
        #expect(LatencyDistribution.logNormal(median: 2_000, sigma: 3).minimum == 1_000)
        #expect(LatencyDistribution.fixed(0).minimum == 1)
    }

    /// The hand-built API: a line of 6 with explicit seeds and degree 0, one community topic.
    @Test(arguments: [1, 2, 4])
    func lineHopsAndRMR(threads: Int) {
        var sim = Simulator(seed: 3, latency: .fixed(1_000_000), threads: threads)
        let t = Topic(bytes: [UInt8](repeating: 9, count: 32))!
        for i in 0..<6 {
            var c = EngineConfig.local(endpoint: "tcp://10.0.0.\(i):7000", seeds: i == 0 ? [] : ["tcp://10.0.0.\(i - 1):7000"])
            c.targetDegree = 0
            sim.addNode(config: c)
            sim.subscribe(i, t)
        }
        sim.run(until: 3_000_000_000)
        for i in 0..<6 { #expect(sim.degree(i).up == (i == 0 || i == 5 ? 1 : 2)) }
        let m = sim.publish(from: 0, topic: t, envelope: [1, 2, 3])
        sim.run(for: 1_000_000_000)
        let hops = (0..<6).map { i in sim.deliveries.filter { Int($0.node) == i && Int($0.message) == m }.map(\.hops) }
        #expect(hops == [[0], [1], [2], [3], [4], [5]])
        // A line: 5 link-sends for 5 receivers, RMR 0.
        #expect(sim.messages[m].frames == 5)
    }
}

/// The simulator's own map of the engine's link ids: scanned for a few links, hashed for a hub.
@Suite(.computeLane) struct SimLinksTests {
    @Test func findsEveryOpenLinkAndNoClosedOne() {
        var links = SimLinks()
        var rng = SeededGenerator(seed: 3)
        var ids: [LinkID] = []
        for k in 0..<200 {
            let id = LinkID(raw: rng.next() | 1)
            ids.append(id)
            #expect(links.open(SimLink(id: id, latency: UInt64(k), target: Int32(k))) == k)
            if k == 10 || k == 199 {   // below and above the scan limit
                for (j, seen) in ids.enumerated() { #expect(links.slot(of: seen) == j) }
            }
        }
        for id in ids.prefix(50) { links.close(id) }
        for (j, id) in ids.enumerated() { #expect(links.slot(of: id) == (j < 50 ? nil : j)) }
        #expect(links.slot(of: LinkID(raw: 2)) == nil)
        #expect(links[slot: 120].latency == 120)
    }
}
