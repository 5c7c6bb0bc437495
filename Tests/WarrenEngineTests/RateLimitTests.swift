import Testing
import WarrenTestSupport
@testable import WarrenEngine
import WarrenSimulator

/// A neighbour that floods is limited by its own token bucket; other neighbours are unaffected.
@Suite(.computeLane) struct RateLimitTests {
    @Test func flooderIsLimitedGoodNeighbourIsNot() throws {
        var net = InMemoryNetwork(seed: 3)
        var victim = cfg(1)
        victim.rateLimit = 1000
        victim.rateBurst = 100
        net.addNode(config: cfg(0, seeds: [1]))
        net.addNode(config: victim)
        net.addNode(config: cfg(2, seeds: [1]))
        let ran = net.run(for: 2_000_000_000)
        #expect(ran)
        #expect(net.isUp(1, 0) && net.isUp(1, 2))
        let local = topic(7)
        net.subscribe(1, local)
        let flooder = try #require(net.nodes[0].nodeID), good = try #require(net.nodes[2].nodeID)
        let before = net.engine(1)!.stats

        // 5,000 distinct DATA frames from the flooder within one instant: the burst passes, the rest is dropped.
        var rng = SeededGenerator(seed: 9)
        for _ in 0..<5000 {
            net.inject(to: 1, topic: local.bytes, body: Frame.encodeData(envelope: envelope(&rng, 40), ttl: 2, hops: 0, from: flooder))
        }
        // The good neighbour, at the same instant, is not affected.
        for _ in 0..<50 {
            net.inject(to: 1, topic: local.bytes, body: Frame.encodeData(envelope: envelope(&rng, 40), ttl: 2, hops: 0, from: good))
        }
        let s = net.engine(1)!.stats
        let limited = s.rateLimited - before.rateLimited
        let delivered = s.delivered - before.delivered
        #expect(limited >= 4890 && limited <= 4910, "limited \(limited)")
        #expect(delivered >= 140 && delivered <= 150, "delivered \(delivered): ~100 burst from the flooder + all 50 good")

        // A second later the flooder's bucket has refilled by the rate.
        let ran2 = net.run(for: 1_000_000_000)
        #expect(ran2)
        let mid = net.engine(1)!.stats
        for _ in 0..<2000 {
            net.inject(to: 1, topic: local.bytes, body: Frame.encodeData(envelope: envelope(&rng, 40), ttl: 2, hops: 0, from: flooder))
        }
        let accepted = (net.engine(1)!.stats.delivered - mid.delivered)
        #expect(accepted <= 101, "after 1 s at 1000/s with burst 100 at most the burst is accepted, got \(accepted)")
    }

    @Test func strangersShareOneBucket() {
        var rng = SeededGenerator(seed: 4)
        var c = cfg(0)
        c.rateLimit = 10
        c.rateBurst = 20
        var e = GossipEngine(config: c, nodeID: NodeID(raw: 1))
        var actions = [Action]()
        e.start(now: 0, rng: &rng, into: &actions)
        e.subscribeLocal(topic(1), into: &actions)
        for k in 0..<1000 {   // each frame claims a different previous hop
            e.receive(topic: topic(1).bytes, body: Frame.encodeData(envelope: envelope(&rng, 20), ttl: 2, hops: 0, from: NodeID(raw: UInt64(100 + k))),
                      now: 1, rng: &rng, into: &actions)
        }
        #expect(e.stats.delivered == 20)
        #expect(e.stats.rateLimited == 980)
    }

    @Test func unlimitedWhenZero() {
        var rng = SeededGenerator(seed: 5)
        var c = cfg(0)
        c.rateLimit = 0
        var e = GossipEngine(config: c, nodeID: NodeID(raw: 1))
        var actions = [Action]()
        e.start(now: 0, rng: &rng, into: &actions)
        e.subscribeLocal(topic(1), into: &actions)
        for k in 0..<5000 {
            e.receive(topic: topic(1).bytes, body: Frame.encodeData(envelope: envelope(&rng, 20), ttl: 2, hops: 0, from: NodeID(raw: UInt64(100 + k))),
                      now: 1, rng: &rng, into: &actions)
        }
        #expect(e.stats.delivered == 5000 && e.stats.rateLimited == 0)
    }
}
