import Testing
import WarrenEngine

/// The simulator (`Sources/WarrenEngine/Simulation`) drives the real engine in virtual time.
@Suite struct SimulatorTests {
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

    /// The hand-built API: a line of 6 with explicit seeds and degree 0, one community topic.
    @Test func lineHopsAndRMR() {
        var sim = Simulator(seed: 3, latency: .fixed(1_000_000))
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
