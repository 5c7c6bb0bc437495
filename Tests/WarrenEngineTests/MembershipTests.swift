import Testing
import WarrenTestSupport
@testable import WarrenEngine
import WarrenSimulator

@Suite(.computeLane) struct MembershipTests {
    func helloCount(_ net: InMemoryNetwork) -> Int {
        // HELLOs are the only control frames sent on a single link outside heartbeats/exchange;
        // count them through the engines' framesOut minus heartbeats is awkward, so use a
        // driver-level tally instead: frames sent before the first heartbeat.
        net.nodes.map(\.framesSent).reduce(0, +)
    }

    /// Only B knows A: both end up with a bound link to the other.
    @Test func oneSidedHandshake() {
        var net = InMemoryNetwork(seed: 1)
        net.addNode(config: cfg(0))
        net.addNode(config: cfg(1, seeds: [0]))
        // Before any heartbeat (250 ms): the handshake alone.
        net.run(until: 100 * msNS); #expect(!net.budgetExceeded)
        #expect(net.isUp(0, 1) && net.isUp(1, 0))
        // connect(1→0), ready, HELLO 1→0, connect(0→1), ready, HELLO 0→1 (echo): 2 HELLOs, no more.
        #expect(net.framesSent == 2)
        #expect(net.nodes[0].connects.map(\.endpoint) == [endpoint(1)])
        #expect(net.nodes[0].peerEvents.count == 1 && net.nodes[1].peerEvents.count == 1)
        let n0 = net.engine(0)!.neighbours[0]
        #expect(n0.endpoint == endpoint(1) && !n0.leaf)
    }

    /// Both dial simultaneously: bound, exactly one link each way, a bounded number of HELLOs.
    @Test func simultaneousDial() {
        var net = InMemoryNetwork(seed: 2)
        net.addNode(config: cfg(0, seeds: [1]), start: false)
        net.addNode(config: cfg(1, seeds: [0]), start: false)
        net.start(0); net.start(1)
        net.run(until: 100 * msNS); #expect(!net.budgetExceeded)
        #expect(net.isUp(0, 1) && net.isUp(1, 0))
        #expect(net.engine(0)!.linkIDs.count == 1 && net.engine(1)!.linkIDs.count == 1)
        // 2 initial HELLOs + 1 reply each.
        #expect(net.framesSent == 4)
        // Stays quiet: afterwards only heartbeats and PEERS (1 per link per period).
        net.run(until: 10 * second); #expect(!net.budgetExceeded)
        let hb = Int(10 * second / (250 * msNS)), ex = Int(10 * second / second) + 1
        #expect(net.framesSent <= 4 + 2 * (hb + ex))
        #expect(net.nodes[0].peerEvents.count == 1)
    }

    /// A misspelled seed ("localhost" vs advertised "127.0.0.1"): the echo binds it, and the
    /// advertised spelling is not dialled a second time.
    @Test func misspelledSeedBindsByEcho() {
        var net = InMemoryNetwork(seed: 3)
        net.alias("tcp://localhost:7000", to: endpoint(0))
        net.addNode(config: cfg(0))
        var c1 = cfg(1, degree: 3)
        c1.seeds = ["tcp://localhost:7000"]
        net.addNode(config: c1)
        net.run(until: 5 * second); #expect(!net.budgetExceeded)
        #expect(net.isUp(0, 1) && net.isUp(1, 0))
        #expect(net.engine(1)!.linkIDs.count == 1)
        #expect(net.nodes[1].connects.map(\.endpoint) == ["tcp://localhost:7000"])
        #expect(net.engine(1)!.knownEndpoints == [endpoint(0)])
        #expect(net.nodes[1].peerEvents.count == 1)
    }

    /// A seed that is our own endpoint under another name: detected by our own HELLO, dropped.
    @Test func selfSeedIsDropped() {
        var net = InMemoryNetwork(seed: 3)
        net.alias("tcp://localhost:7000", to: endpoint(0))
        var c = cfg(0)
        c.seeds = ["tcp://localhost:7000", endpoint(0)]
        net.addNode(config: c)
        net.run(until: 5 * second); #expect(!net.budgetExceeded)
        #expect(net.engine(0)!.linkIDs.isEmpty)
        #expect(net.nodes[0].connects.count == 1)
        var e0 = net.engine(0)!   // a copy: `nextDeadline` caches, so it is read on a var
        #expect(e0.nextDeadline != nil)
    }

    /// No HELLO ping-pong, driven by hand: replies stop after one exchange.
    @Test func noHelloPingPong() throws {
        var rng = SeededGenerator(seed: 4)
        var a = GossipEngine(config: cfg(0, seeds: [1]), nodeID: NodeID(raw: 0xA))
        var b = GossipEngine(config: cfg(1, seeds: [0]), nodeID: NodeID(raw: 0xB))
        var aa = [Action](), ba = [Action]()
        a.start(now: 0, rng: &rng, into: &aa)
        b.start(now: 0, rng: &rng, into: &ba)
        func link(_ acts: [Action]) -> LinkID? {
            for x in acts { if case .connect(let l, _) = x { return l } }
            return nil
        }
        let la = try #require(link(aa)), lb = try #require(link(ba))
        aa.removeAll(); ba.removeAll()
        a.linkReady(la, now: 1, rng: &rng, into: &aa)
        b.linkReady(lb, now: 1, rng: &rng, into: &ba)
        // Shuttle frames until quiet; at most 10 rounds.
        var rounds = 0, hellos = 0
        while (!aa.isEmpty || !ba.isEmpty) && rounds < 10 {
            let toB = aa.compactMap { if case .send(_, let f) = $0 { f } else { nil } }
            let toA = ba.compactMap { if case .send(_, let f) = $0 { f } else { nil } }
            hellos += toA.count + toB.count
            aa.removeAll(); ba.removeAll()
            for f in toB { b.receive(topic: f.topic.bytes, body: f.body, now: 2, rng: &rng, into: &ba) }
            for f in toA { a.receive(topic: f.topic.bytes, body: f.body, now: 2, rng: &rng, into: &aa) }
            aa.removeAll { if case .send = $0 { false } else { true } }
            ba.removeAll { if case .send = $0 { false } else { true } }
            rounds += 1
        }
        #expect(rounds <= 3)
        #expect(hellos == 4)
        #expect(a.neighbours.map(\.nodeID) == [NodeID(raw: 0xB)])
        #expect(b.neighbours.map(\.nodeID) == [NodeID(raw: 0xA)])
    }

    /// A node started with one seed learns every endpoint of the overlay through PEERS.
    @Test func learnsAllEndpointsFromOneSeed() {
        let n = 15
        var net = InMemoryNetwork.build(n: n, edges: { $0 == 0 ? [] : [$0 - 1] })   // a line
        net.run(until: 2 * second); #expect(!net.budgetExceeded)
        let newcomer = net.addNode(config: cfg(n, seeds: [0]))
        net.run(for: 20 * second); #expect(!net.budgetExceeded)
        let known = Set(net.engine(newcomer)!.knownEndpoints)
        #expect(known == Set((0..<n).map(endpoint)))
        #expect(!known.contains(endpoint(n)))
    }

    /// targetDegree is reached with random extra links beyond the single seed.
    @Test func targetDegreeReached() {
        let n = 12
        var net = InMemoryNetwork(seed: 6)
        for i in 0..<n { net.addNode(config: cfg(i, seeds: i == 0 ? [] : [0], degree: 3)) }
        net.run(until: 10 * second); #expect(!net.budgetExceeded)
        for i in 0..<n {
            let e = net.engine(i)!
            #expect(e.neighbours.count >= 3, "node \(i)")
            #expect(e.neighbours.count < n - 1 || i == 0, "node \(i) should not be fully meshed")
        }
        // Non-seed nodes have links to nodes other than the seed.
        #expect((1..<n).contains { net.engine($0)!.neighbours.contains { $0.endpoint != endpoint(0) } })
        // And the overlay floods.
        for i in 0..<n { net.subscribe(i, topic(4)) }
        let id = net.publish(from: n - 1, topic: topic(4), envelope: [4])
        net.run(for: second); #expect(!net.budgetExceeded)
        for i in 0..<n { #expect(net.deliveries(i, id).count == 1) }
    }

    /// A dead neighbour is detected (timeout) and replaced to keep the degree.
    @Test func deadNeighbourDetectedAndReplaced() {
        let n = 8
        var net = InMemoryNetwork(seed: 7)
        for i in 0..<n { net.addNode(config: cfg(i, seeds: i == 0 ? [] : [0], degree: 3)) }
        net.run(until: 10 * second); #expect(!net.budgetExceeded)
        let victim = net.engine(3)!.nodeID
        let watchers = (0..<n).filter { $0 != 3 && net.neighbourIDs($0).contains(victim) }
        #expect(!watchers.isEmpty)
        let t0 = net.now
        net.kill(3)
        net.run(for: 10 * second); #expect(!net.budgetExceeded)
        for w in watchers {
            let down = net.nodes[w].peerEvents.compactMap { e -> UInt64? in
                if case .down(victim, .timeout, let t) = e { return t } else { return nil }
            }
            #expect(down.count == 1, "watcher \(w)")
            if let t = down.first { #expect(t - t0 <= 1_500 * msNS + 300 * msNS) }
            #expect(!net.neighbourIDs(w).contains(victim))
            #expect(net.engine(w)!.neighbours.count >= 3, "watcher \(w) replaced the dead neighbour")
        }
    }

    /// A driver that fell behind on its input (`inputReadUpTo` before `now`) does not declare
    /// neighbours dead for silence after the point it has read up to: their frames may be among
    /// the unread ones. Silence up to that point counts; once caught up, all of it counts.
    @Test func noDeathVerdictWhileInputIsPending() {
        var net = InMemoryNetwork.build(n: 2, edges: { $0 == 0 ? [] : [0] })
        net.run(until: second); #expect(!net.budgetExceeded)
        #expect(net.isUp(0, 1))
        var engine = net.engine(0)!
        var rng = SeededGenerator(seed: 3)
        var actions: [Action] = []
        let late = net.now + 5 * second     // far past deadAfter (1.5 s) with nothing heard
        engine.tick(now: late, rng: &rng, into: &actions, inputReadUpTo: net.now)
        let downs = { (a: [Action]) in a.filter { if case .peerDown = $0 { true } else { false } }.count }
        #expect(downs(actions) == 0)
        #expect(engine.neighbours.count == 1)
        actions.removeAll()
        // Read up to 1 s after the last frame: still within deadAfter (1.5 s) of it.
        engine.tick(now: late + 1, rng: &rng, into: &actions, inputReadUpTo: net.now + second)
        #expect(downs(actions) == 0)
        #expect(engine.neighbours.count == 1)
        actions.removeAll()
        engine.tick(now: late + 2, rng: &rng, into: &actions)
        #expect(downs(actions) == 1, "caught up and still silent: the neighbour is dead")
        #expect(engine.neighbours.isEmpty)
    }

    /// Killed middle node of a ring: the rest still delivers (the other way round).
    @Test func ringSurvivesKilledNode() {
        let n = 8
        var net = InMemoryNetwork.build(n: n, edges: { [($0 + n - 1) % n] })
        for i in 0..<n { net.subscribe(i, topic(5)) }
        net.run(until: 2 * second); #expect(!net.budgetExceeded)
        net.kill(4)
        let id = net.publish(from: 3, topic: topic(5), envelope: [5])
        net.run(for: 3 * second); #expect(!net.budgetExceeded)
        for i in 0..<n where i != 4 { #expect(net.deliveries(i, id).count == 1, "node \(i)") }
        #expect(net.deliveries(5, id).first?.hops == 6)
    }

    /// A restarted node (new NodeID, same endpoint) rejoins and receives; its old
    /// incarnation is reported replaced or timed out.
    @Test func restartedNodeRejoins() {
        var net = InMemoryNetwork.build(n: 4, edges: { $0 == 0 ? [] : [$0 - 1] })   // line; node 3 at the end
        net.run(until: 2 * second); #expect(!net.budgetExceeded)
        let old = net.engine(3)!.nodeID
        net.restart(3)           // no seeds of its own besides node 2 → it re-dials 2
        let new = net.engine(3)!.nodeID
        #expect(old != new)
        net.subscribe(3, topic(6))
        net.run(for: 3 * second); #expect(!net.budgetExceeded)
        #expect(net.isUp(2, 3) && net.isUp(3, 2))
        let id = net.publish(from: 0, topic: topic(6), envelope: [6])
        net.run(for: second); #expect(!net.budgetExceeded)
        #expect(net.deliveries(3, id).count == 1)
        let downs = net.nodes[2].peerEvents.filter { if case .down(old, _, _) = $0 { true } else { false } }
        #expect(downs.count == 1)
    }

    /// A restarted node that nobody seeds and that seeds nobody: the others' links reconnect
    /// (linkReady again), HELLO with a stale echo, and it rebinds with `.replaced`.
    @Test func restartOfSeededNodeIsReplaced() {
        var net = InMemoryNetwork(seed: 9)
        net.addNode(config: cfg(0))
        net.addNode(config: cfg(1, seeds: [0]))
        net.run(until: 500 * msNS); #expect(!net.budgetExceeded)
        let old = net.engine(0)!.nodeID
        net.restart(0)
        net.subscribe(0, topic(8))
        net.run(for: 500 * msNS)     // well before deadAfter
        #expect(net.nodes[1].peerEvents.contains { if case .down(old, .replaced, _) = $0 { true } else { false } })
        #expect(net.isUp(1, 0) && net.isUp(0, 1))
        let id = net.publish(from: 1, topic: topic(8), envelope: [8])
        net.run(for: second); #expect(!net.budgetExceeded)
        #expect(net.deliveries(0, id).count == 1)
    }

    /// BYE: peerDown(.bye); a non-seed endpoint is not re-dialled until it says HELLO again.
    @Test func byeIsHonoured() {
        var net = InMemoryNetwork(seed: 10)
        net.addNode(config: cfg(0, degree: 3))
        net.addNode(config: cfg(1, seeds: [0], degree: 3))
        net.addNode(config: cfg(2, seeds: [0], degree: 3))
        net.run(until: 5 * second); #expect(!net.budgetExceeded)
        #expect(net.isUp(1, 2))
        let id2 = net.engine(2)!.nodeID
        net.stop(2)
        net.run(for: 100 * msNS); #expect(!net.budgetExceeded)
        #expect(net.nodes[1].peerEvents.contains { if case .down(id2, .bye, _) = $0 { true } else { false } })
        let before = net.nodes[1].connects.count
        net.run(for: 5 * second); #expect(!net.budgetExceeded)
        #expect(net.nodes[1].connects.count == before)   // not re-dialled
        var e0 = net.engine(0)!   // a copy: `nextDeadline` caches, so it is read on a var
        #expect(e0.nextDeadline != nil)
        // It comes back: HELLO → linked again.
        net.start(2)
        net.run(for: 5 * second); #expect(!net.budgetExceeded)
        #expect(net.isUp(1, 2) || net.isUp(0, 2))
        #expect(net.isUp(0, 2))
    }

    /// Seeds are re-dialled forever with growing, jittered back-off.
    @Test func backoffGrowsAndIsJittered() {
        var net = InMemoryNetwork(seed: 11)
        net.addNode(config: cfg(0, seeds: [5]))   // nobody at 7005
        net.run(until: 60 * second); #expect(!net.budgetExceeded)
        let times = net.nodes[0].connects.map(\.time)
        #expect(times.count >= 10)
        // Gap = dial timeout (2 s) + back-off (100 ms × 2^k, ≤ 2 s, ±25 %).
        let backoffs = zip(times.dropFirst(), times).map { $0 - $1 - 2 * second }
        for (k, b) in backoffs.enumerated() {
            let nominal = min(100 * msNS << UInt64(min(k, 20)), 2 * second)
            #expect(b >= nominal - nominal / 4 && b <= nominal + nominal / 4, "back-off \(k): \(b)")
        }
        #expect(backoffs[3] > backoffs[0])
        // Jittered: the capped ones are not all equal.
        let capped = backoffs.suffix(5)
        #expect(Set(capped).count > 1)
        // When the seed finally appears, it connects.
        net.addNode(config: cfg(5))
        net.run(for: 5 * second); #expect(!net.budgetExceeded)
        #expect(net.isUp(0, 1))
    }

    /// Back-off is reset after success: direct unit check of the formula.
    @Test func backoffFormula() {
        var c = cfg(0); c.backoffInitial = 100; c.backoffMax = 1000
        let e = GossipEngine(config: c, nodeID: NodeID(raw: 1))
        var rng = SeededGenerator(seed: 1)
        for (f, nominal) in [(1, 100), (2, 200), (3, 400), (4, 800), (5, 1000), (60, 1000)] {
            for _ in 0..<50 {
                let b = e.core.backoff(failures: UInt32(f), rng: &rng)
                #expect(b >= UInt64(nominal * 3 / 4) && b <= UInt64(nominal * 5 / 4))
            }
        }
        c.backoffInitial = .max / 3; c.backoffMax = .max
        let e2 = GossipEngine(config: c, nodeID: NodeID(raw: 1))
        _ = e2.core.backoff(failures: 1000, rng: &rng)   // no overflow trap
    }

    @Test func stopSaysByeAndCloses() {
        var net = InMemoryNetwork.build(n: 3, edges: { $0 == 0 ? [] : Array(0..<$0) })
        net.run(until: second); #expect(!net.budgetExceeded)
        var e = net.engine(0)!
        var a = [Action]()
        e.stop(now: net.now, into: &a)
        var byes = 0, disconnects = 0, downs = 0
        for x in a {
            switch x {
            case .send(let ls, let f): if f.body.count == 12 && f.body[1] == 5 { byes += ls.count }
            case .disconnect: disconnects += 1
            case .peerDown(_, .closed): downs += 1
            default: break
            }
        }
        #expect(byes == 2 && disconnects == 2 && downs == 2)
        #expect(e.nextDeadline == nil && e.neighbours.isEmpty)
    }

    @Test func nextDeadlineIsSane() {
        var net = InMemoryNetwork.build(n: 5, edges: { $0 == 0 ? [] : [$0 - 1] }, degree: 2)
        for _ in 0..<20 {
            net.run(for: 137 * msNS); #expect(!net.budgetExceeded)
            for i in 0..<5 {
                var e = net.engine(i)!
                let d = e.nextDeadline!
                #expect(d + 250 * msNS >= net.now)
                #expect(d <= net.now + 1_000 * msNS)
            }
        }
        #expect(net.steps < 20_000)
    }
}
