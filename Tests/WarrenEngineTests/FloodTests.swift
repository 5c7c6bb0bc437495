import Testing
import WarrenTestSupport
import WarrenEngine
import WarrenSimulator

@Suite(.computeLane) struct FloodTests {
    /// 10-node line: ttl 9 crosses 9 hops, ttl 8 does not reach the 10th node.
    @Test func lineTTL() {
        var net = InMemoryNetwork.build(n: 10, edges: { $0 == 0 ? [] : [$0 - 1] })
        net.subscribe(9, topic(9))
        net.run(until: 2 * second); #expect(!net.budgetExceeded)
        for i in 0..<9 { #expect(net.isUp(i, i + 1) && net.isUp(i + 1, i)) }
        let a = net.publish(from: 0, topic: topic(9), envelope: [1, 2, 3], ttl: 9)
        let b = net.publish(from: 0, topic: topic(9), envelope: [4, 5, 6], ttl: 8)
        net.run(for: second); #expect(!net.budgetExceeded)
        #expect(net.deliveries(9, a).map(\.hops) == [9])
        #expect(net.deliveries(9, b).isEmpty)
        #expect(net.engine(8)!.stats.ttlExpired == 1)   // b reached node 8 (8 hops) with ttl 1
        #expect(net.engine(9)!.stats.maxHops == 9)
        // Default TTL 16 reaches.
        let c = net.publish(from: 0, topic: topic(9), envelope: [7], ttl: nil)
        net.run(for: second); #expect(!net.budgetExceeded)
        #expect(net.deliveries(9, c).count == 1)
        #expect(!net.budgetExceeded)
    }

    func expectExactlyOnce(_ net: InMemoryNetwork, _ nodes: Range<Int>, _ id: MessageID,
                           sourceLocation: SourceLocation = #_sourceLocation) {
        for i in nodes { #expect(net.deliveries(i, id).count == 1, "node \(i)", sourceLocation: sourceLocation) }
    }

    @Test func ringDeliversOnceNoLoop() {
        let n = 12
        var net = InMemoryNetwork.build(n: n, edges: { [($0 + n - 1) % n] })
        for i in 0..<n { net.subscribe(i, topic(1)) }   // community topic
        net.run(until: 2 * second); #expect(!net.budgetExceeded)
        let id = net.publish(from: 3, topic: topic(1), envelope: [42], ttl: nil)
        let sentBefore = net.nodes.map(\.dataFramesSent).reduce(0, +)
        net.run(for: 2 * second); #expect(!net.budgetExceeded)
        expectExactlyOnce(net, 0..<n, id)
        let sent = net.nodes.map(\.dataFramesSent).reduce(0, +) - sentBefore
        // Each node forwards a message at most once (≤ 2 links each): no loop.
        #expect(sent <= 2 * n)
        let dups = (0..<n).map { net.engine($0)!.stats.duplicates }.reduce(0, +)
        #expect(dups >= 1)
    }

    @Test func fullMeshDeliversOnce() {
        let n = 8
        var net = InMemoryNetwork.build(n: n, edges: { Array(0..<$0) })
        for i in 0..<n { net.subscribe(i, topic(UInt8(i + 1))) }
        net.run(until: 2 * second); #expect(!net.budgetExceeded)
        for i in 0..<n { #expect(net.neighbourIDs(i).count == n - 1) }
        var ids: [(Int, MessageID)] = []
        for s in 0..<n {
            for r in 0..<n where r != s {
                ids.append((r, net.publish(from: s, topic: topic(UInt8(r + 1)), envelope: [UInt8(s), UInt8(r)])))
            }
        }
        net.run(for: second); #expect(!net.budgetExceeded)
        for (r, id) in ids {
            #expect(net.deliveries(r, id).count == 1)
            #expect(net.deliveries(r, id).first?.hops ?? 0 >= 1)
        }
        for i in 0..<n { #expect(net.nodes[i].deliveries.count == n - 1) }
        // Every node relays each message once to n−2 links: n·(n−1) messages × ((n−1) + (n−1)(n−2)) link-sends.
        #expect(!net.budgetExceeded)
    }

    /// Dense random graph, lossless but with jitter and duplication: many paths, reordering.
    @Test func manyPathsReorderedDuplicatedDeliveredOnce() {
        var o = InMemoryNetwork.Options()
        o.latency = 1 * msNS...5 * msNS
        o.jitter = 10 * msNS
        o.duplication = 0.3
        let n = 20
        var net = InMemoryNetwork.build(n: n, seed: 5, options: o, edges: { i in
            i == 0 ? [] : [(i * 7) % i, (i * 3 + 1) % i, i - 1].reduce(into: [Int]()) { if !$0.contains($1) { $0.append($1) } }
        })
        for i in 0..<n { net.subscribe(i, topic(7)) }
        net.run(until: 3 * second); #expect(!net.budgetExceeded)
        var rng = SeededGenerator(seed: 11)
        var ids: [MessageID] = []
        for k in 0..<30 { ids.append(net.publish(from: k % n, topic: topic(7), envelope: envelope(&rng))) }
        net.run(for: 2 * second); #expect(!net.budgetExceeded)
        for id in ids { expectExactlyOnce(net, 0..<n, id) }
        let dups = (0..<n).map { net.engine($0)!.stats.duplicates }.reduce(0, +)
        #expect(dups > 100)
    }

    /// Loss on a redundant mesh still reaches everyone (several paths).
    @Test func lossyMeshStillDelivers() {
        var o = InMemoryNetwork.Options()
        o.loss = 0.1
        let n = 10
        var net = InMemoryNetwork.build(n: n, seed: 8, options: o, edges: { Array(0..<$0) })
        for i in 0..<n { net.subscribe(i, topic(3)) }
        net.run(until: 5 * second); #expect(!net.budgetExceeded)
        let id = net.publish(from: 0, topic: topic(3), envelope: [9, 9])
        net.run(for: second); #expect(!net.budgetExceeded)
        for i in 1..<n { #expect(net.deliveries(i, id).count == 1) }
    }

    @Test func publishDeliversLocallyAndEchoIsDuplicate() {
        var net = InMemoryNetwork.build(n: 3, edges: { $0 == 0 ? [] : Array(0..<$0) })
        net.subscribe(0, topic(1))
        net.subscribe(2, topic(1))
        net.run(until: second); #expect(!net.budgetExceeded)
        let id = net.publish(from: 0, topic: topic(1), envelope: [1])
        net.run(for: second); #expect(!net.budgetExceeded)
        #expect(net.deliveries(0, id).map(\.hops) == [0])
        #expect(net.deliveries(2, id).map(\.hops) == [1])
        let s0 = net.engine(0)!.stats
        #expect(s0.published == 1 && s0.delivered == 1)
        #expect(s0.duplicates == 0)   // never sent back to the node it came from
        #expect(net.engine(1)!.stats.duplicates == 1 && net.engine(2)!.stats.duplicates == 1)  // 1↔2 cross
        // Publishing identical content again is a duplicate, not sent.
        net.publish(from: 0, topic: topic(1), envelope: [1])
        #expect(net.engine(0)!.stats.published == 1)
    }

    /// docs/PROTOCOL.md §4: an inbound ttl above maxTTL is dropped and counted (not delivered, not
    /// forwarded, no seen-cache entry); ttl = maxTTL is accepted; a publish asking for more than
    /// maxTTL is clamped to it.
    @Test func ttlAboveMaximumIsDroppedAndPublishIsClamped() {
        var net = InMemoryNetwork(seed: 2)
        for i in 0..<3 {
            var c = cfg(i, seeds: i == 0 ? [] : [i - 1])
            c.maxTTL = 4
            net.addNode(config: c)
        }
        net.subscribe(1, topic(1)); net.subscribe(2, topic(1))
        net.run(until: second); #expect(!net.budgetExceeded)
        #expect(net.isUp(0, 1) && net.isUp(1, 2))
        let from = net.engine(0)!.nodeID
        let before = net.engine(1)!.stats
        for ttl: UInt8 in [5, 200, 255] {
            let body = Frame.encodeData(envelope: [5], ttl: ttl, hops: 0, from: from)
            net.inject(to: 1, topic: topic(1).bytes, body: body)
        }
        net.run(for: second); #expect(!net.budgetExceeded)
        let s = net.engine(1)!.stats
        #expect(s.overTTL - before.overTTL == 3)
        #expect(s.malformed - before.malformed == 3)
        #expect(s.delivered == before.delivered && s.relayed == before.relayed && s.duplicates == before.duplicates)
        #expect(net.nodes[1].deliveries.isEmpty && net.nodes[2].deliveries.isEmpty)
        // The dropped copies claimed no seen-cache entry: the same envelope at ttl = maxTTL is
        // delivered at node 1 and forwarded to node 2.
        let ok = Frame.encodeData(envelope: [5], ttl: 4, hops: 0, from: from)
        net.inject(to: 1, topic: topic(1).bytes, body: ok)
        net.run(for: second); #expect(!net.budgetExceeded)
        #expect(net.nodes[1].deliveries.count == 1 && net.nodes[2].deliveries.count == 1)
        #expect(net.engine(1)!.stats.overTTL - before.overTTL == 3)
        #expect(net.engine(2)!.stats.overTTL == 0)

        // Publish asks for more than maxTTL: clamped to it, so a frame crosses at most maxTTL hops.
        var line = InMemoryNetwork(seed: 1)
        var c0 = cfg(0); c0.maxTTL = 2
        line.addNode(config: c0)
        for i in 1..<4 { line.addNode(config: cfg(i, seeds: [i - 1])) }
        line.subscribe(2, topic(2)); line.subscribe(3, topic(2))
        line.run(until: second); #expect(!line.budgetExceeded)
        let id = line.publish(from: 0, topic: topic(2), envelope: [1], ttl: 100)
        line.run(for: second); #expect(!line.budgetExceeded)
        #expect(line.deliveries(2, id).count == 1)
        #expect(line.deliveries(3, id).isEmpty)
        #expect((0..<4).allSatisfy { line.engine($0)!.stats.overTTL == 0 })
    }

    @Test func statsCounters() {
        var net = InMemoryNetwork.build(n: 3, edges: { $0 == 0 ? [] : [$0 - 1] })   // line 0-1-2
        net.subscribe(2, topic(2))
        net.run(until: second); #expect(!net.budgetExceeded)
        let before = (0..<3).map { net.engine($0)!.stats }
        net.publish(from: 0, topic: topic(2), envelope: [1, 2], ttl: 5)
        net.run(for: 200 * msNS); #expect(!net.budgetExceeded)
        let s = (0..<3).map { net.engine($0)!.stats }
        #expect(s[0].published == 1 && s[0].relayed == 0)
        #expect(s[1].relayed - before[1].relayed == 1)         // to node 2 only
        #expect(s[2].delivered == 1 && s[2].maxHops == 2)
        #expect(s[2].relayed == before[2].relayed)             // no other links
        #expect(s[0].duplicates == 0 && s[2].duplicates == 0)
        #expect(s[1].framesIn > before[1].framesIn && s[1].framesOut > before[1].framesOut)
        #expect(s[0].malformed == 0)
    }
}

@Suite(.computeLane) struct ReplayTests {
    /// A replay inside the window is a duplicate; older than the window (or evicted by the
    /// bound) it is treated as new.
    @Test func replayAfterWindowOrEvictionIsNew() {
        var rng = SeededGenerator(seed: 1)
        var c = cfg(0)
        c.seenWindow = 10 * second
        c.seenCapacity = 4
        c.seenHold = 0   // the bound may evict ids of any age (no admission hold)
        var e = GossipEngine(config: c, nodeID: NodeID(raw: 1))
        var a = [Action]()
        e.start(now: 0, rng: &rng, into: &a)
        e.subscribeLocal(topic(1), into: &a)
        let frame = Frame.data(topic: topic(1), envelope: [1, 2, 3], ttl: 3, hops: 2, from: NodeID(raw: 2)).encode()
        func feed(_ f: OutFrame, at t: UInt64) {
            e.receive(topic: f.topic.bytes, body: f.body, now: t, rng: &rng, into: &a)
        }
        feed(frame, at: 1)
        feed(frame, at: 9 * second)
        #expect(e.stats.delivered == 1 && e.stats.duplicates == 1)
        #expect(e.seenCount == 1)
        feed(frame, at: 1 + 10 * second)               // window passed
        #expect(e.stats.delivered == 2)
        // Bound: 4 other ids evict it.
        for k in 0..<4 {
            feed(Frame.data(topic: topic(1), envelope: [UInt8(k)], ttl: 3, from: NodeID(raw: 2)).encode(), at: 11 * second)
        }
        #expect(e.seenCount == 4)
        feed(frame, at: 11 * second)
        #expect(e.stats.delivered == 7)
        var hops: [UInt8] = []
        for x in a { if case .deliver(_, _, let h, _) = x { hops.append(h) } }
        #expect(hops.first == 3)
    }
}
