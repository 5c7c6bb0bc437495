import Foundation
import Testing
import WarrenTestSupport
@testable import WarrenEngine
import WarrenSimulator

/// A hostile neighbour written from docs/PROTOCOL.md: it has its own connection to the victim (or
/// opens fresh ones), knows the victim's node id and its neighbours' ids (from PEERS), and sends
/// whatever frames it likes. Each test is one attack of docs/SECURITY.md's table.
@Suite(.computeLane) struct HostileNeighbourTests {
    /// The attacker's node id and its own inbound connection at the victim (the in-memory
    /// network numbers its connections from 1, so these never collide with honest ones).
    static let attacker = NodeID(raw: 0xA77A_C4E2)
    static let attackerConn = ConnectionID(raw: 1 << 40)
    static func freshConn(_ k: Int) -> ConnectionID { ConnectionID(raw: (1 << 41) + UInt64(k)) }
    static let deadEndpoint = "tcp://10.66.0.1:9"

    /// Victim 0 seeds node 1; nodes 2 and 3 seed the victim; 1, 2, 3 reach each other only
    /// through it. Every node subscribes its own topic.
    static func overlay(seed: UInt64 = 5, victim: (inout EngineConfig) -> Void = { _ in }) -> InMemoryNetwork {
        var net = InMemoryNetwork(seed: seed)
        var v = cfg(0, seeds: [1])
        victim(&v)
        net.addNode(config: v)
        net.addNode(config: cfg(1))
        net.addNode(config: cfg(2, seeds: [0]))
        net.addNode(config: cfg(3, seeds: [0]))
        _ = net.run(for: 3 * second)
        for i in 0..<4 { net.subscribe(i, topic(UInt8(i + 1))) }
        return net
    }

    /// The attacker joins like any neighbour: a HELLO on its own connection.
    static func join(_ net: inout InMemoryNetwork, endpoint: String = deadEndpoint) {
        let hello = Frame(kind: .hello(Frame.Hello(leaf: false, token: 77, echo: 0, endpoint: endpoint, peers: [])), from: attacker).encode()
        net.inject(to: 0, topic: hello.topic.bytes, body: hello.body, via: attackerConn)
    }

    static func send(_ net: inout InMemoryNetwork, _ f: Frame, via: ConnectionID = attackerConn) {
        let o = f.encode()
        net.inject(to: 0, topic: o.topic.bytes, body: o.body, via: via)
    }

    /// Every honest node publishes one envelope to every other; returns how many of the 12
    /// arrived exactly once (and how many arrived more than once).
    static func allPairs(_ net: inout InMemoryNetwork, rng: inout SeededGenerator) -> (once: Int, twice: Int) {
        var ids: [(Int, MessageID)] = []
        for i in 0..<4 { for j in 0..<4 where j != i {
            ids.append((j, net.publish(from: i, topic: topic(UInt8(j + 1)), envelope: envelope(&rng, 48))))
        } }
        _ = net.run(for: 2 * second)
        var once = 0, twice = 0
        for (j, id) in ids {
            let n = net.deliveries(j, id).count
            if n == 1 { once += 1 } else if n > 1 { twice += 1 }
        }
        return (once, twice)
    }

    static func neighbourSet(_ net: InMemoryNetwork) -> Set<NodeID> { net.neighbourIDs(0) }

    @Test func forgedByeFromAnHonestNeighbourChangesNothing() throws {
        var net = Self.overlay()
        var rng = SeededGenerator(seed: 1)
        let honest = Self.neighbourSet(net)
        #expect(honest.count == 3)
        Self.join(&net)
        let before = try #require(net.engine(0)).stats
        for round in 0..<50 {
            for h in honest {
                // On its own (bound) connection, and on a connection of its own that never said HELLO.
                Self.send(&net, Frame(kind: .bye, from: h))
                Self.send(&net, Frame(kind: .bye, from: h), via: Self.freshConn(round))
                Self.send(&net, Frame(kind: .peers([Frame.PeerEntry(nodeID: h, endpoint: Self.deadEndpoint)]), from: h))
            }
            _ = net.run(for: 20 * msNS)
            #expect(Self.neighbourSet(net) == honest, "round \(round)")
        }
        let s = try #require(net.engine(0)).stats
        #expect(s.forged - before.forged == 50 * 3 * 3)
        let r = Self.allPairs(&net, rng: &rng)
        #expect(r.once == 12 && r.twice == 0)
        #expect(net.nodes[0].peerEvents.allSatisfy { if case .down = $0 { false } else { true } })
    }

    @Test func forgedSelfHelloCannotIsolate() throws {
        var net = Self.overlay()
        var rng = SeededGenerator(seed: 2)
        let honest = Self.neighbourSet(net)
        let victimID = try #require(net.nodes[0].nodeID)
        Self.join(&net)
        let before = try #require(net.engine(0)).stats
        // Tokens an attacker might try: the old predictable ones (mix64(node id) + n), random
        // ones, and — stronger than any real attacker — every link id the victim has.
        var tokens = (1...64).map { mix64(victimID.raw) &+ UInt64($0) } + (0..<64).map { _ in rng.next() | 1 }
        tokens += try #require(net.engine(0)).linkIDs.map(\.raw)
        for (k, t) in tokens.enumerated() {
            let h = Frame.Hello(leaf: false, token: t, echo: 0, endpoint: endpoint(0), peers: [])
            Self.send(&net, Frame(kind: .hello(h), from: victimID))
            Self.send(&net, Frame(kind: .hello(h), from: victimID), via: Self.freshConn(k))
        }
        _ = net.run(for: 1 * second)
        #expect(Self.neighbourSet(net) == honest)
        let e = try #require(net.engine(0))
        // Only the link to the attacker itself (its token was sent to it) can be closed this way.
        #expect(e.core.selfEndpoints.isSubset(of: [Self.deadEndpoint]) && e.core.seeds.allSatisfy { !$0.disabled })
        #expect(e.stats.forged - before.forged >= UInt64(tokens.count))
        // The seed is still dialled when it comes back: restart node 1.
        net.restart(1)
        net.subscribe(1, topic(2))
        _ = net.run(for: 5 * second)
        #expect(net.isUp(0, 1))
        let r = Self.allPairs(&net, rng: &rng)
        #expect(r.once == 12 && r.twice == 0)
    }

    /// A genuine self-connection (a seed that is an alias of the node's own endpoint) is still found.
    @Test func realSelfConnectionStillDetected() throws {
        var net = InMemoryNetwork(seed: 3)
        net.alias("tcp://localhost:7000", to: endpoint(0))
        net.addNode(config: EngineConfig.local(endpoint: endpoint(0), seeds: ["tcp://localhost:7000"]))
        _ = net.run(for: 2 * second)
        let e = try #require(net.engine(0))
        #expect(e.core.selfEndpoints == ["tcp://localhost:7000"])
        #expect(e.linkIDs.isEmpty && e.stats.forged == 0)
    }

    @Test func helloFloodDialsBoundedNumberOfEndpoints() throws {
        var net = Self.overlay()
        var rng = SeededGenerator(seed: 3)
        let honest = Self.neighbourSet(net)
        let connectsBefore = net.nodes[0].connects.count
        Self.join(&net)
        // 20,000 HELLOs from random node ids, each advertising another dead endpoint: a third on
        // the attacker's connection, a third on fresh connections, a third where the driver
        // cannot tell connections apart.
        var maxLinks = 0
        for k in 0..<20_000 {
            let id = NodeID.random(using: &rng)
            let ep = "tcp://10.\(66 + k / 65536).\((k / 256) % 256).\(k % 256):9"
            let peers = (0..<4).map { Frame.PeerEntry(nodeID: NodeID.random(using: &rng), endpoint: "tcp://10.99.\($0).\(k % 256):\(k)") }
            let f = Frame(kind: .hello(Frame.Hello(leaf: false, token: rng.next() | 1, echo: 0, endpoint: ep, peers: peers)), from: id).encode()
            switch k % 3 {
            case 0: net.inject(to: 0, topic: f.topic.bytes, body: f.body, via: Self.attackerConn)
            case 1: net.inject(to: 0, topic: f.topic.bytes, body: f.body, via: Self.freshConn(k))
            default: net.inject(to: 0, topic: f.topic.bytes, body: f.body)
            }
            if k % 100 == 0 { _ = net.run(for: 1 * msNS) }   // 20,000 HELLOs in 0.2 s
            maxLinks = max(maxLinks, try #require(net.engine(0)).linkIDs.count)
        }
        _ = net.run(for: 5 * second)
        let e = try #require(net.engine(0))
        let c = net.config(0)
        #expect(maxLinks <= honest.count + c.maxPendingDials)
        // Over 5.2 s: at most the burst plus the rate, and the seed re-dials.
        let dials = net.nodes[0].connects.count - connectsBefore
        #expect(dials <= Int(c.dialBurst + c.dialRate * 5.2) + 1, "dials \(dials)")
        #expect(e.knownEndpoints.count <= c.maxKnownEndpoints)
        #expect(e.core.peers.count <= GossipEngine.Core.maxLinklessPeers + honest.count + c.maxPendingDials)
        #expect(e.stats.dialsDeferred > 1000 && e.stats.strangersRefused > 1000)
        // The attacker's own connection is cut off once its forged HELLOs outnumber the rest.
        #expect(e.stats.forged > 1000 && e.stats.penalized >= 1 && e.stats.forged + e.stats.penaltyDrops > 6000)
        #expect(Self.neighbourSet(net) == honest)
        let r = Self.allPairs(&net, rng: &rng)
        #expect(r.once == 12 && r.twice == 0)
    }

    /// Exactly-once under a flood the rate limit admits: the victim's seen cache is small here
    /// (8,192 ids), the flood is larger, and an honest message's second copy arrives after it.
    @Test func floodCannotEvictAnIdWhileCopiesTravel() throws {
        var opts = InMemoryNetwork.Options()
        opts.latency = 1 * msNS...1 * msNS
        var net = InMemoryNetwork(seed: 11, options: opts)
        var v = cfg(0, seeds: [1, 2])
        v.seenCapacity = 8_192
        v.seenHold = 1 * second
        net.addNode(config: v)
        net.addNode(config: cfg(1, seeds: [2]))
        net.addNode(config: cfg(2))
        _ = net.run(for: 3 * second)
        #expect(net.isUp(0, 1) && net.isUp(0, 2) && net.isUp(1, 2))
        net.subscribe(0, topic(1))
        Self.join(&net)
        var rng = SeededGenerator(seed: 4)
        let before = try #require(net.engine(0)).stats
        // Node 1 publishes: the victim gets it from 1 at once (1 ms) and again via 2 (2 ms).
        let m = net.publish(from: 1, topic: topic(1), envelope: envelope(&rng, 48))
        _ = net.run(for: 1 * msNS)
        #expect(net.deliveries(0, m).count == 1)
        // Between the two copies, 20,000 new ids from the attacker (ttl 1: not relayed).
        for _ in 0..<20_000 {
            Self.send(&net, .data(topic: topic(9), envelope: envelope(&rng, 24), ttl: 1, from: Self.attacker))
        }
        _ = net.run(for: 2 * second)
        let s = try #require(net.engine(0)).stats
        #expect(net.deliveries(0, m).count == 1, "delivered twice: the flood evicted its id")
        #expect(s.overShare - before.overShare > 1_000 && s.penalized - before.penalized == 1)
        #expect(s.overShare + s.penaltyDrops - before.overShare - before.penaltyDrops > 10_000)
        #expect(s.duplicates > before.duplicates)
        let r = Self.allPairsThree(&net, rng: &rng)
        #expect(r.once == 6 && r.twice == 0)
    }

    /// Honest traffic through a relay that a neighbour floods: the relay forwards at most what its
    /// seen cache admits, which its own neighbours' rate limit always accepts.
    @Test func floodThroughRelayIsNotThrottledDownstream() throws {
        var net = InMemoryNetwork(seed: 12)
        func small(_ c: inout EngineConfig) {
            c.seenCapacity = 2_048
            c.seenHold = 1 * second          // newIDRate 1,024/s
            c.rateLimit = 2_000              // > newIDRate: an honest relay is never limited
            c.rateBurst = 4_000
        }
        // Relay 0; honest source 1, downstream 2, both only through the relay.
        var r = cfg(0); small(&r); net.addNode(config: r)
        var a = cfg(1, seeds: [0]); small(&a); net.addNode(config: a)
        var b = cfg(2, seeds: [0]); small(&b); net.addNode(config: b)
        _ = net.run(for: 3 * second)
        #expect(net.isUp(0, 1) && net.isUp(0, 2))
        net.subscribe(2, topic(3))
        net.subscribe(0, topic(1))
        Self.join(&net)
        var rng = SeededGenerator(seed: 5)
        var honest: [MessageID] = []
        // 3 s: the attacker sends 3,000 new ids per second (all within its frame rate limit as a
        // stranger), node 1 publishes 20 honest messages per second to node 2.
        for ms in 0..<3_000 {
            for _ in 0..<3 {
                Self.send(&net, .data(topic: topic(9), envelope: envelope(&rng, 24), ttl: 8, from: Self.attacker))
            }
            if ms % 50 == 0 { honest.append(net.publish(from: 1, topic: topic(3), envelope: envelope(&rng, 48))) }
            _ = net.run(for: 1 * msNS)
        }
        _ = net.run(for: 1 * second)
        #expect(honest.allSatisfy { net.deliveries(2, $0).count == 1 })
        let late = honest.compactMap { id -> UInt64? in net.deliveries(2, id).first.map(\.hops).map(UInt64.init) }
        #expect(late.allSatisfy { $0 == 2 })
        #expect(try #require(net.engine(2)).stats.rateLimited == 0)
        // Refused beyond its share, then cut off (its connection ignored) as it keeps on.
        let rs = try #require(net.engine(0)).stats
        #expect(rs.overShare > 500 && rs.penalized == 1 && rs.overShare + rs.penaltyDrops > 5_000)
    }

    @Test func misbehavingNeighbourIsDisconnectedAndIgnored() throws {
        var net = Self.overlay()
        var rng = SeededGenerator(seed: 6)
        let honest = Self.neighbourSet(net)
        // The attacker joins at a live endpoint of its own (node 4, so it comes up), then sends
        // junk on its connection.
        net.addNode(config: cfg(4, seeds: [0]))
        _ = net.run(for: 2 * second)
        #expect(net.isUp(0, 4))
        let bad = try #require(net.nodes[4].nodeID)
        let conn = try #require(net.engine(4)?.linkIDs.first.flatMap { net.connection(from: 4, link: $0, to: 0) })
        for k in 0..<3_000 {
            var body = Frame(kind: .heartbeat, from: bad).encode().body
            body[0] = 9    // unsupported version
            net.inject(to: 0, topic: Topic.control.bytes, body: body, via: conn)
            if k % 2 == 0 { net.inject(to: 0, topic: Topic.control.bytes, body: Frame(kind: .bye, from: honest.first!).encode().body, via: conn) }
        }
        _ = net.run(for: 1500 * msNS)
        let e = try #require(net.engine(0))
        #expect(e.stats.penalized == 1)
        #expect(net.nodes[0].peerEvents.contains { if case .down(bad, .misbehaving, _) = $0 { true } else { false } })
        let p = try #require(e.recentPenalties.last)
        #expect(p.node == bad && p.endpoint == endpoint(4) && p.reason == .malformed)
        #expect(p.counts.malformed + p.counts.forged >= 1_000 && p.counts.forged > 0 && p.connection == conn)
        #expect(!net.isUp(0, 4))
        // Its connection is ignored, and its endpoint not dialled, for the penalty.
        let drops = e.stats.penaltyDrops
        net.inject(to: 0, topic: Topic.control.bytes, body: Frame(kind: .heartbeat, from: bad).encode().body, via: conn)
        #expect(try #require(net.engine(0)).stats.penaltyDrops == drops + 1)
        _ = net.run(for: 10 * second)
        #expect(!net.isUp(0, 4))
        #expect(Self.neighbourSet(net) == honest)
        #expect(try #require(net.engine(0)).stats.penalized == 1)
        let r = Self.allPairs(&net, rng: &rng)
        #expect(r.once == 12 && r.twice == 0)
    }

    /// Honest neighbours in a dense mesh send many duplicates; that is not misbehaviour.
    @Test func honestMeshIsNeverPenalized() {
        var net = InMemoryNetwork.build(n: 6, edges: { i in Array(0..<i) })
        _ = net.run(for: 3 * second)
        var rng = SeededGenerator(seed: 7)
        for i in 0..<6 { net.subscribe(i, topic(UInt8(i + 1))) }
        for _ in 0..<400 {
            for i in 0..<6 { net.publish(from: i, topic: topic(UInt8((i + 1) % 6 + 1)), envelope: envelope(&rng, 40)) }
            _ = net.run(for: 2 * msNS)
        }
        _ = net.run(for: 3 * second)
        for i in 0..<6 {
            let s = net.engine(i)!.stats
            #expect(s.penalized == 0 && s.forged == 0 && s.overShare == 0 && s.seenFull == 0)
            #expect(s.delivered == 400)
        }
    }
}

extension HostileNeighbourTests {
    /// All pairs among three nodes (0, 1, 2), each subscribed to topic(i + 1) first.
    static func allPairsThree(_ net: inout InMemoryNetwork, rng: inout SeededGenerator) -> (once: Int, twice: Int) {
        for i in 0..<3 { net.subscribe(i, topic(UInt8(i + 1))) }
        var ids: [(Int, MessageID)] = []
        for i in 0..<3 { for j in 0..<3 where j != i {
            ids.append((j, net.publish(from: i, topic: topic(UInt8(j + 1)), envelope: envelope(&rng, 48))))
        } }
        _ = net.run(for: 2 * second)
        var once = 0, twice = 0
        for (j, id) in ids {
            let n = net.deliveries(j, id).count
            if n == 1 { once += 1 } else if n > 1 { twice += 1 }
        }
        return (once, twice)
    }
}

extension InMemoryNetwork {
    func config(_ i: Int) -> EngineConfig { nodes[i].config }
}

@Suite(.computeLane) struct BatchBoundTests {
    /// A batch may carry at most `FrameBatch.maxEntries` frames; the coalescer never builds more.
    @Test func entryCountIsBounded() {
        let hb = Frame(kind: .heartbeat, from: NodeID(raw: 5)).encode().body
        let ok = FrameBatch.encode([[UInt8]](repeating: hb, count: FrameBatch.maxEntries), from: NodeID(raw: 5))
        let over = FrameBatch.encode([[UInt8]](repeating: hb, count: FrameBatch.maxEntries + 1), from: NodeID(raw: 5))
        #expect((try? FrameBatch.decode(ok).get())?.count == FrameBatch.maxEntries)
        #expect(throws: FrameError.tooManyEntries) { try FrameBatch.decode(over).get() }
        var c = FrameCoalescer(from: NodeID(raw: 5), limit: Frame.maxBodyBytes)
        for _ in 0..<(FrameBatch.maxEntries + 10) { c.add(link: LinkID(raw: 1), topic: .control, body: hb) }
        c.flush()
        #expect(c.ready.map(\.frames) == [FrameBatch.maxEntries, 10])
    }
}

/// A campaign of mixed attacks from several hostile connections at once (forged control frames,
/// HELLO floods, DATA floods and replays, batches, malformed bytes, self-HELLOs), interleaved with
/// honest all-pairs traffic, on the four-node overlay of `HostileNeighbourTests`. Throughout: the
/// victim's links, peers, known table and seen cache stay within their bounds and its honest
/// neighbours stay up; every honest message is delivered exactly once. `WARREN_FUZZ_ITERATIONS`
/// sets the number of attack rounds / 100 (default 100,000 → 1,000 rounds of ~100 frames).
@Suite(.computeLane) struct HostileCampaignTests {
    static var rounds: Int {
        (ProcessInfo.processInfo.environment["WARREN_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 100_000) / 100
    }

    static func pick(_ rng: inout SeededGenerator, _ n: Int) -> Int { Int(rng.next(upperBound: UInt64(n))) }

    @Test func mixedAttacksKeepBoundsAndExactlyOnce() throws {
        func pick(_ rng: inout SeededGenerator, _ n: Int) -> Int { Self.pick(&rng, n) }
        var net = HostileNeighbourTests.overlay(seed: 21)
        var rng = SeededGenerator(seed: 22)
        let honest = net.neighbourIDs(0)
        let victim = try #require(net.nodes[0].nodeID)
        let c = net.config(0)
        HostileNeighbourTests.join(&net)
        var replay: [[UInt8]] = []
        var published: [(Int, MessageID)] = []
        for round in 0..<Self.rounds {
            for _ in 0..<100 {
                let conn = pick(&rng, 4) == 0 ? HostileNeighbourTests.freshConn(pick(&rng, 1_000))
                                                       : HostileNeighbourTests.attackerConn
                let claim = [HostileNeighbourTests.attacker, victim, honest.randomElement(using: &rng)!, NodeID.random(using: &rng)][pick(&rng, 4)]
                let f: OutFrame
                switch pick(&rng, 8) {
                case 0: f = Frame(kind: .bye, from: claim).encode()
                case 1: f = Frame(kind: .peers([Frame.PeerEntry(nodeID: NodeID.random(using: &rng), endpoint: "tcp://10.9.\(round % 256).\(pick(&rng, 256)):1")]), from: claim).encode()
                case 2:
                    // As token even the victim's own link ids (a self-HELLO must still not pass);
                    // as echo only guesses (nobody but a link's far end knows its token).
                    let token = pick(&rng, 2) == 0 ? (net.engine(0)?.linkIDs.randomElement(using: &rng)?.raw ?? 1) : rng.next() | 1
                    f = Frame(kind: .hello(Frame.Hello(leaf: pick(&rng, 4) == 0, token: token, echo: pick(&rng, 2) == 0 ? rng.next() : 0,
                                                       endpoint: pick(&rng, 2) == 0 ? endpoint(pick(&rng, 4)) : "tcp://10.8.\(pick(&rng, 256)).1:2",
                                                       peers: [])), from: claim).encode()
                case 3, 4:
                    let body = Frame.encodeData(envelope: envelope(&rng, 30), ttl: UInt8(1 + pick(&rng, 17)), hops: 0, from: claim)
                    if replay.count < 64 { replay.append(body) }
                    f = OutFrame(topic: topic(UInt8(1 + pick(&rng, 5))), body: body)
                case 5:
                    f = OutFrame(topic: topic(1), body: replay.isEmpty ? [1] : replay[pick(&rng, replay.count)])
                case 6:
                    let entries = (0..<1 + pick(&rng, 40)).map { _ in Frame.encodeData(envelope: envelope(&rng, 20), ttl: 3, hops: 0, from: claim) }
                    f = OutFrame(topic: topic(3), body: FrameBatch.encode(entries, from: claim))
                default:
                    var b = Frame(kind: .heartbeat, from: claim).encode().body
                    b[pick(&rng, b.count)] = UInt8(truncatingIfNeeded: rng.next())
                    f = OutFrame(topic: .control, body: b)
                }
                net.inject(to: 0, topic: f.topic.bytes, body: f.body, via: conn)
            }
            if round % 10 == 0 {
                let i = pick(&rng, 4), j = (i + 1 + pick(&rng, 3)) % 4
                published.append((j, net.publish(from: i, topic: topic(UInt8(j + 1)), envelope: envelope(&rng, 48))))
            }
            _ = net.run(for: 10 * msNS)
            let e = try #require(net.engine(0))
            #expect(e.linkIDs.count <= honest.count + c.maxPendingDials + 1, "round \(round)")
            #expect(e.core.peers.count <= GossipEngine.Core.maxLinklessPeers + honest.count + c.maxPendingDials + 1)
            #expect(e.knownEndpoints.count <= c.maxKnownEndpoints && e.seenCount <= c.seenCapacity)
            // Even with the victim's own link ids as tokens, only links to endpoints the attacker
            // made up (not up, not honest) can be taken for loops.
            #expect(e.core.selfEndpoints.isDisjoint(with: (1...3).map(endpoint)) && e.core.seeds.allSatisfy { !$0.disabled })
            #expect(honest.isSubset(of: net.neighbourIDs(0)), "round \(round): an honest neighbour was dropped")
        }
        _ = net.run(for: 2 * second)
        for (j, id) in published { #expect(net.deliveries(j, id).count == 1) }
        let s = try #require(net.engine(0)).stats
        #expect(s.forged > 0 && s.malformed > 0)
    }
}

/// One node and a peer that said HELLO on `first` and is up: frames from the peer on any
/// connection, and the engine's view of it.
struct ConnectionMoveFixture {
    var e = GossipEngine(config: .local(endpoint: "tcp://10.0.0.1:7000", seeds: []), nodeID: NodeID(raw: 1))
    var rng: SeededGenerator
    var actions: [Action] = []
    var now: UInt64 = 1_000_000_000
    let peer = NodeID(raw: 2)
    var link = LinkID(raw: 0)

    init(seed: UInt64, first: ConnectionID) throws {
        rng = SeededGenerator(seed: seed)
        e.start(now: now, rng: &rng, into: &actions)
        // The peer says HELLO; we dial it back, our link is ready, and it echoes our token.
        actions.removeAll()
        receive(hello(echo: 0), via: first)
        guard case .connect(let l, _)? = actions.first(where: { if case .connect = $0 { return true }; return false }) else {
            throw FixtureError(description: "no dial back: \(actions)")
        }
        link = l
        e.linkReady(link, now: now, rng: &rng, into: &actions)
        receive(hello(echo: link.raw), via: first)
    }

    struct FixtureError: Error, CustomStringConvertible { var description: String }

    func hello(echo: UInt64) -> OutFrame {
        Frame(kind: .hello(Frame.Hello(leaf: false, token: 99, echo: echo, endpoint: "tcp://10.0.0.2:7000", peers: [])), from: peer).encode()
    }

    mutating func receive(_ f: OutFrame, via: ConnectionID) {
        e.receive(topic: f.topic.bytes, body: f.body, via: via, now: now, rng: &rng, into: &actions)
    }

    /// PEERS on `late` (late, not forged) must not count as forged.
    mutating func latePeersIsNotForged(on late: ConnectionID) -> Bool {
        let forged = e.stats.forged
        receive(Frame(kind: .peers([]), from: peer).encode(), via: late)
        return e.stats.forged == forged
    }

    /// Heartbeats on `on` only, past the dead-after time: the peer stays up if they count.
    mutating func staysUpOnHeartbeats(on conn: ConnectionID) -> Bool {
        for _ in 0..<12 {
            now += e.config.heartbeatInterval
            receive(Frame(kind: .heartbeat, from: peer).encode(), via: conn)
            e.tick(now: now, rng: &rng, into: &actions)
        }
        return e.neighbours.map(\.nodeID) == [peer]
    }
}

/// A node that moved to a new connection (its back-link replaced by its own link) is not moved
/// back by a HELLO that was sent earlier on the old one and arrives late.
@Suite(.computeLane) struct ConnectionMoveTests {
    @Test func aLateHelloOnTheConnectionALinkLeftDoesNotMoveItBack() throws {
        let old = ConnectionID(raw: 7), new = ConnectionID(raw: 8)
        var f = try ConnectionMoveFixture(seed: 3, first: old)
        #expect(f.e.neighbours.map(\.nodeID) == [f.peer])
        // It moves to a new connection (echoing our token), then a HELLO it sent earlier arrives
        // on the old one.
        f.receive(f.hello(echo: f.link.raw), via: new)
        f.receive(f.hello(echo: f.link.raw), via: old)
        // It speaks on the new connection only: PEERS there is its own, and its heartbeats keep
        // it alive past the dead-after time.
        let forged = f.e.stats.forged
        f.receive(Frame(kind: .peers([]), from: f.peer).encode(), via: new)
        let lateNotForged = f.latePeersIsNotForged(on: old)
        #expect(lateNotForged)
        #expect(f.e.stats.forged == forged, "forged \(f.e.stats.forged - forged)")
        let up = f.staysUpOnHeartbeats(on: new)
        #expect(up, "the peer timed out: its frames on the new connection no longer counted")
    }

    /// A HELLO the node sent on its back-link before its direct link was ready, arriving after the
    /// direct one, does not move it off the direct connection.
    @Test func aLateHelloOnABacklinkDoesNotTakeADirectConnection() throws {
        let direct = ConnectionID(raw: 7), back = ConnectionID.backlink(8)
        #expect(back.isBacklink && !direct.isBacklink)
        var f = try ConnectionMoveFixture(seed: 4, first: direct)
        f.receive(f.hello(echo: f.link.raw), via: back)   // late, from before its direct link was ready
        let lateNotForged = f.latePeersIsNotForged(on: back)
        #expect(lateNotForged)
        let up = f.staysUpOnHeartbeats(on: direct)
        #expect(up, "moved to the back-link: its direct heartbeats no longer counted")
    }
}
