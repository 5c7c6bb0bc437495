import Foundation
import Logging
import Synchronization
import Testing
import Warren
import WarrenSimulator

/// The simulator against the real driver: the same small topology (a ring of 6, degree 0,
/// explicit seeds) and the same workload give the same deliveries with the same hop counts in
/// `Simulator` (virtual time) and in real `GossipNode`s on loopback.
///
/// Every message is published with ttl 3: on a ring of 6 the longer way round to a node at
/// distance d < 3 is 6 − d > 3 hops, so only shortest paths can deliver and the hop counts do
/// not depend on which path happens to be faster on a loaded machine (the ttl rule is part of
/// what is compared).
@Suite(.serialized, .timeLimit(.minutes(1)))
struct SimulatorVsDriverTests {
    struct Receipt: Hashable, Comparable {
        var node: Int, message: Int, hops: UInt8
        static func < (a: Receipt, b: Receipt) -> Bool { (a.node, a.message, a.hops) < (b.node, b.message, b.hops) }
    }

    static let n = 6
    /// Ring edges (i, j), i < j: node j is started with node i as its seed.
    static let edges: [(Int, Int)] = (0..<5).map { ($0, $0 + 1) } + [(0, 5)]

    static func topic(_ k: Int) -> Topic { Topic(bytes: [UInt8](repeating: UInt8(k + 1), count: 31) + [0x5a])! }
    static let community = Topic(bytes: [UInt8](repeating: 0xc0, count: 32))!

    /// Every node publishes one message to every other node, then node 2 to the community.
    static var workload: [(from: Int, topic: Topic, envelope: [UInt8])] {
        var w: [(Int, Topic, [UInt8])] = []
        for s in 0..<n { for r in 0..<n where r != s { w.append((s, topic(r), [0x01, UInt8(s), UInt8(r)])) } }
        w.append((2, community, [0x02, 0xff]))
        return w
    }

    static func simulate() -> [Receipt] {
        var sim = Simulator(seed: 42, latency: .logNormal(median: 100_000, sigma: 0.3))
        for i in 0..<n {
            let seeds = edges.filter { $0.1 == i }.map { "tcp://10.0.0.\($0.0):7000" }
            var c = EngineConfig.local(endpoint: "tcp://10.0.0.\(i):7000", seeds: seeds)
            c.targetDegree = 0
            sim.addNode(config: c)
            sim.subscribe(i, topic(i))
            sim.subscribe(i, community)
        }
        sim.run(until: 3_000_000_000)
        for (k, w) in workload.enumerated() {
            let m = sim.publish(from: w.from, topic: w.topic, envelope: w.envelope, ttl: 3)
            #expect(m == k)
            sim.run(for: 10_000_000)
        }
        sim.run(for: 1_000_000_000)
        return sim.deliveries.map { Receipt(node: Int($0.node), message: Int($0.message), hops: $0.hops) }.sorted()
    }

    @Test func sameDeliveriesAndHops() async throws {
        let expected = Self.simulate()
        // 6 × 5 point-to-point deliveries + 6 community deliveries (the publisher's own, hops 0).
        #expect(expected.count == Self.n * (Self.n - 1) + Self.n)

        let receipts = Mutex<[Receipt]>([])
        let envelopes = Self.workload.map(\.envelope)
        var nodes: [GossipNode] = []
        for i in 0..<Self.n {
            var cfg = GossipConfiguration.local(listen: "tcp://127.0.0.1:*")
            cfg.peers = Self.edges.filter { $0.1 == i }.map { nodes[$0.0].endpoint }
            cfg.degree = 0
            let node = try GossipNode(configuration: cfg, callbacks: GossipNodeCallbacks(deliver: { _, env, hops, _ in
                let m = envelopes.firstIndex(of: env) ?? -1
                receipts.withLock { $0.append(Receipt(node: i, message: m, hops: hops)) }
            }), logger: Logger(label: "test.simvsdriver"))
            nodes.append(node)
            await node.subscribe(Self.topic(i))
            await node.subscribe(Self.community)
        }
        let clock = ContinuousClock()
        var deadline = clock.now.advanced(by: .seconds(15))
        while clock.now < deadline {
            var ok = true
            for n in nodes where await n.stats().neighbours.count < 2 { ok = false }
            if ok { break }
            try await Task.sleep(for: .milliseconds(20))
        }
        for (k, w) in Self.workload.enumerated() {
            nodes[w.from].publish(topic: w.topic, envelope: w.envelope, ttl: 3)
            // Let each flood finish before the next, as in the simulation (order of arrival).
            deadline = clock.now.advanced(by: .seconds(5))
            while clock.now < deadline, receipts.withLock({ r in !r.contains { $0.message == k } }) {
                try await Task.sleep(for: .milliseconds(5))
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        deadline = clock.now.advanced(by: .seconds(5))
        while clock.now < deadline, receipts.withLock({ $0.count }) < expected.count {
            try await Task.sleep(for: .milliseconds(20))
        }
        try await Task.sleep(for: .milliseconds(100))
        for n in nodes { await n.stop() }
        let real = receipts.withLock { $0 }.sorted()
        #expect(real == expected)
    }
}
