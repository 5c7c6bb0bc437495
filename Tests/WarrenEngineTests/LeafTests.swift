import Testing
import WarrenTestSupport
import WarrenEngine
import WarrenSimulator

@Suite(.computeLane) struct LeafTests {
    /// A leaf receives only its own topics (filtered at the publisher), forwards nothing,
    /// and is neither advertised nor counted toward degree.
    @Test func leafReceivesOnlyItsTopics() {
        var net = InMemoryNetwork(seed: 20)
        for i in 0..<4 { net.addNode(config: cfg(i, seeds: i == 0 ? [] : [i - 1], degree: 2)) }
        let leaf = net.addNode(config: cfg(9, seeds: [1, 2], leaf: true))
        net.subscribe(leaf, topic(9))
        net.subscribe(3, topic(3))
        net.run(until: 5 * second); #expect(!net.budgetExceeded)
        #expect(net.engine(leaf)!.neighbours.count == 2)
        #expect(net.nodes[leaf].subscriptions.count == 2)   // control + topic(9)
        for i in 0..<4 { #expect(!net.engine(i)!.knownEndpoints.contains(endpoint(9)), "node \(i)") }

        let dataBefore = net.nodes[leaf].dataFramesReceived
        let filteredBefore = net.filteredAtSender
        var others: [MessageID] = []
        for k in 0..<10 { others.append(net.publish(from: 0, topic: topic(3), envelope: [3, UInt8(k)])) }
        let mine = net.publish(from: 0, topic: topic(9), envelope: [9])
        net.run(for: second); #expect(!net.budgetExceeded)
        // Only its own message arrives at the leaf: once from each of its 2 neighbours at most.
        let got = net.nodes[leaf].dataFramesReceived - dataBefore
        #expect(got >= 1 && got <= 2)
        #expect(net.deliveries(leaf, mine).count == 1)
        #expect(net.filteredAtSender - filteredBefore >= 10)
        for id in others { #expect(net.deliveries(3, id).count == 1) }
        #expect(net.nodes[leaf].dataFramesSent == 0)
        #expect(net.engine(leaf)!.stats.relayed == 0)
        // The leaf publishes on its links.
        let fromLeaf = net.publish(from: leaf, topic: topic(3), envelope: [1, 2, 3])
        net.run(for: second); #expect(!net.budgetExceeded)
        #expect(net.deliveries(3, fromLeaf).count == 1)
        #expect(net.nodes[leaf].dataFramesSent == 2)
        // Unsubscribing stops delivery (filtered at the publisher).
        net.unsubscribe(leaf, topic(9))
        let gone = net.publish(from: 0, topic: topic(9), envelope: [9, 9])
        net.run(for: second); #expect(!net.budgetExceeded)
        #expect(net.deliveries(leaf, gone).isEmpty)
    }

    @Test func leafStartSubscriptions() {
        var rng = SeededGenerator(seed: 1)
        var e = GossipEngine(config: cfg(0, leaf: true), nodeID: NodeID(raw: 3))
        var a = [Action]()
        e.start(now: 0, rng: &rng, into: &a)
        e.subscribeLocal(topic(1), into: &a)
        e.subscribeLocal(topic(1), into: &a)
        var subs: [[UInt8]] = []
        for x in a { if case .subscribe(let p) = x { subs.append(p) } }
        #expect(subs == [Topic.control.bytes, topic(1).bytes])

        var n = GossipEngine(config: cfg(0), nodeID: NodeID(raw: 3))
        a.removeAll()
        n.start(now: 0, rng: &rng, into: &a)
        n.subscribeLocal(topic(1), into: &a)
        subs = []
        for x in a { if case .subscribe(let p) = x { subs.append(p) } }
        #expect(subs == [Topic.control.bytes, []])
    }

    /// Community topic: several nodes subscribe the same topic; each gets it exactly once,
    /// including a leaf member.
    @Test func communityTopic() {
        var net = InMemoryNetwork(seed: 21)
        for i in 0..<10 { net.addNode(config: cfg(i, seeds: i == 0 ? [] : [0], degree: 3)) }
        let leaf = net.addNode(config: cfg(10, seeds: [4], leaf: true))
        let members = [1, 4, 7, 9, leaf]
        let community = topic(0xC0)
        for m in members { net.subscribe(m, community) }
        net.run(until: 5 * second); #expect(!net.budgetExceeded)
        var ids: [MessageID] = []
        for s in [0, 7, leaf] { ids.append(net.publish(from: s, topic: community, envelope: [UInt8(s), 0xC0])) }
        net.run(for: second); #expect(!net.budgetExceeded)
        for id in ids {
            for m in members { #expect(net.deliveries(m, id).count == 1, "member \(m)") }
            for i in [0, 2, 3, 5, 6, 8] { #expect(net.deliveries(i, id).isEmpty) }
        }
    }
}
