import Testing
import WarrenEngine
@testable import WarrenSimulator

/// Unicast routing (docs/PROTOCOL.md §9): a unicast travels a path; the flood is the fallback.
@Suite struct RoutingTests {
    /// An overlay of `n` routing nodes (local preset): node i seeds one or two earlier nodes, degree 3.
    static func net(n: Int, seed: UInt64 = 3, routing: (Int) -> Bool = { _ in true }) -> InMemoryNetwork {
        var net = InMemoryNetwork(seed: seed)
        var r = SeededGenerator(seed: seed ^ 0x5EED)
        for i in 0..<n {
            var seeds: [Int] = []
            if i > 0 { seeds.append(Int(r.next(upperBound: UInt64(i)))) }
            if i > 2 { let b = Int(r.next(upperBound: UInt64(i))); if !seeds.contains(b) { seeds.append(b) } }
            var c = cfg(i, seeds: seeds, degree: 3)
            c.routing = routing(i)
            net.addNode(config: c)
        }
        return net
    }

    /// DATA and ROUTED frames sent by every node so far.
    static func dataSent(_ net: InMemoryNetwork) -> Int { net.nodes.map(\.dataFramesSent).reduce(0, +) }

    static func index(of id: NodeID, in net: InMemoryNetwork) -> Int? { net.nodes.firstIndex { $0.nodeID == id } }

    /// 300 nodes: every unicast is delivered exactly once, and costs a path: at most 3 frames per
    /// hop on average (a flood costs about N × degree).
    @Test func unicastFollowsAPath() {
        var c = SimulationConfig()
        c.nodes = 300
        c.degree = 4
        c.messages = 100
        c.seed = 11
        c.messageInterval = 5_000_000
        c.routing = true
        let r = Simulation.run(c)
        #expect(r.formed)
        #expect(r.deliveryRatio == 1.0)
        #expect(r.exactlyOnceViolations == 0)
        #expect(r.broadcastRatio == 1.0)
        #expect(r.meanHops >= 1)
        #expect(r.framesPerUnicast <= 3 * r.meanHops, "frames per unicast \(r.framesPerUnicast), mean hops \(r.meanHops)")
        #expect(r.framesPerUnicast < Double(c.nodes) / 10)
    }

    /// Routing beside bounded views: a contact link that becomes a gossip link (the other end
    /// dialled us as a neighbour at the same time) joins the active view, and another neighbour
    /// makes room, so no node goes above `maxDegree` (degree + 2) — with routing on, 1,000 nodes
    /// reached 7 at degree 4 before that rule.
    @Test func viewsStayBoundedWithRouting() {
        var c = SimulationConfig()
        c.nodes = 1_000
        c.degree = 4
        c.messages = 20
        c.seed = 1
        c.routing = true
        let r = Simulation.run(c)
        #expect(r.formed)
        #expect(r.maxDegree <= c.degree + 2, "max degree \(r.maxDegree)")
        #expect(r.deliveryRatio == 1.0 && r.exactlyOnceViolations == 0)
    }

    /// The next hop of a route dies without a word: once it has been silent for the freshness
    /// window (2.5 heartbeats), the next message goes another way (another hop, or the flood) and
    /// arrives exactly once — before the neighbour is even declared dead.
    @Test func routeThatDisappearsFallsBack() {
        var net = Self.net(n: 40)
        let key = topic(200)
        net.subscribe(31, key)
        net.run(until: 12 * second); #expect(!net.budgetExceeded)
        let subscriber = net.nodes[31].nodeID!
        // A sender whose route starts at a node other than the subscriber.
        var sender = -1, hop = -1
        for s in 0..<40 where s != 31 {
            if let h = net.engine(s)!.routeNextHop(topic: key, now: net.now), h != subscriber, let hi = Self.index(of: h, in: net) {
                sender = s; hop = hi; break
            }
        }
        #expect(sender >= 0)
        guard sender >= 0 else { return }
        var rng = SeededGenerator(seed: 1)
        let first = net.publish(from: sender, topic: key, envelope: envelope(&rng))
        net.run(for: second)
        #expect(net.deliveries(31, first).count == 1)

        net.kill(hop)
        net.run(for: 700 * msNS)   // > 625 ms of silence; < 1.5 s (deadAfter)
        #expect(net.engine(sender)!.routeNextHop(topic: key, now: net.now) != net.nodes[hop].engine?.nodeID)
        let m2 = net.publish(from: sender, topic: key, envelope: envelope(&rng))
        net.run(for: second)
        #expect(net.deliveries(31, m2).count == 1)

        // Graceful leave (BYE): the very next message already avoids it.
        let other = net.engine(sender)!.routeNextHop(topic: key, now: net.now)
        if let other, other != subscriber, let oi = Self.index(of: other, in: net) {
            net.stop(oi)
            net.run(for: 10 * msNS)
            let m3 = net.publish(from: sender, topic: key, envelope: envelope(&rng))
            net.run(for: second)
            #expect(net.deliveries(31, m3).count == 1)
        }
        #expect(!net.budgetExceeded)
    }

    /// The key moves (unsubscribed at X, subscribed at Y): X's records are withdrawn and Y's
    /// stored, so the next message is routed to Y — a path, not a flood — and X gets nothing.
    @Test func staleRouteAfterTheKeyMovesIsCorrected() {
        let n = 40
        var net = Self.net(n: n)
        let key = topic(201)
        net.subscribe(12, key)
        net.run(until: 12 * second); #expect(!net.budgetExceeded)
        // Contact links are not neighbours (not flooded to, not the degree).
        for i in [0, 12, 30] {
            let e = net.engine(i)!
            #expect(e.contactLinkCounts.up > 0)
            #expect(e.neighbours.count == e.linkCounts.up)
        }
        var rng = SeededGenerator(seed: 2)
        let before = Self.dataSent(net)
        let a = net.publish(from: 3, topic: key, envelope: envelope(&rng))
        net.run(for: second)
        #expect(net.deliveries(12, a).count == 1)
        #expect(Self.dataSent(net) - before < n / 2, "routed, not flooded")

        net.unsubscribe(12, key)
        net.subscribe(27, key)
        net.run(for: 2 * second)
        let mid = Self.dataSent(net)
        let b = net.publish(from: 3, topic: key, envelope: envelope(&rng))
        net.run(for: second); #expect(!net.budgetExceeded)
        #expect(net.deliveries(27, b).count == 1)
        #expect(net.deliveries(12, b).isEmpty)
        #expect(Self.dataSent(net) - mid < n / 2, "routed to the new subscriber, not flooded")
    }

    /// A node without routing (an older node: HELLO without bit 2) in a routing overlay: nobody
    /// sends it a routing frame (it would count them as malformed), and the messages for its key
    /// reach it exactly once (no record: the flood from where the route ends).
    @Test func oldProtocolNodeStillGetsItsMessages() {
        let n = 40, old = 17
        var net = Self.net(n: n, routing: { $0 != old })
        let key = topic(202)
        net.subscribe(old, key)
        net.subscribe(5, topic(203))
        net.run(until: 12 * second); #expect(!net.budgetExceeded)
        var rng = SeededGenerator(seed: 4)
        var ids: [MessageID] = []
        for s in [0, 3, 9, 22, 38] { ids.append(net.publish(from: s, topic: key, envelope: envelope(&rng))) }
        let toFive = net.publish(from: old, topic: topic(203), envelope: envelope(&rng))
        net.run(for: second); #expect(!net.budgetExceeded)
        for id in ids { #expect(net.deliveries(old, id).count == 1) }
        #expect(net.deliveries(5, toFive).count == 1)
        #expect(net.engine(old)!.stats.malformed == 0)
        #expect(net.engine(old)!.stats.routed == 0)
    }

    /// Routing off is the flooding engine of before, bit for bit: the simulator's report of
    /// `warren simulate --nodes 60 --degree 3 --messages 40 --seed 7 --interval-ms 5 --no-views`
    /// equals the one the build before routing (and bounded views) printed (all but the state
    /// line, whose engine grew fields, the first line's "no views", and the "overlay at the end"
    /// line that the fault options added to every report).
    @Test func routingOffIsTodaysBehaviour() {
        var c = SimulationConfig()
        c.views = false
        c.nodes = 60
        c.degree = 3
        c.messages = 40
        c.seed = 7
        c.messageInterval = 5_000_000
        let r = Simulation.run(c)
        let before = """
            nodes 60, degree 3, messages 40 + 1 broadcast, seed 7, no views
            latency log-normal median 1.000 ms, sigma 0.5, loss 0.00 %, churn 0.00 %/min, preset lan, ttl 16, seen capacity 4096
            formation: formed after 4505.900 ms; degree mean 4.27, max 13
            stream: 2200.000 ms virtual, 10699 events, 0 nodes replaced
            point-to-point: delivered 40/40, ratio 1.0000, exactly-once violations 0
              hops max 5, mean 3.45; RMR 2.339 (flooded: frames / (N − 1) − 1)
              latency p50 2.940 ms, p99 4.946 ms, max 4.946 ms
            broadcast: delivered 59/59, ratio 1.0000, last-delivery hop 6, mean 2.98, RMR 2.339
              latency p50 2.628 ms, p99 4.292 ms, max 4.292 ms
            frames: 8077 DATA, 587 control during the stream, 0 lost
            """
        let lines = r.text.split(separator: "\n").filter { !$0.hasPrefix("state per node") && !$0.hasPrefix("overlay at the end") }
        #expect(lines.joined(separator: "\n") == before)
        #expect(r.text.contains("overlay at the end: 1 component of the live overlay, largest 60 of 60 live nodes"))
    }
}
