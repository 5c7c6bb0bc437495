import Foundation
import Testing
import Warren
import WarrenConformance

/// Back-links (docs/PROTOCOL.md §1): a node that cannot be dialled still joins through the node it
/// dials, over its own outbound connections only. On loopback, "cannot be dialled" is a node that
/// advertises an endpoint where nothing listens, so every dial back is refused.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct BacklinkTests {
    /// Where nothing listens: port 1 on loopback refuses every connection.
    static let unreachable = "tcp://127.0.0.1:1"

    func config(peers: [String] = [], advertise: String? = nil, key: PrivateKey? = nil, allow: Set<Key>? = nil,
                leaf: Bool = false, backlink: Bool = true) -> GossipConfiguration {
        var c = GossipConfiguration.local(listen: "tcp://127.0.0.1:*", peers: peers)
        c.degree = 0
        c.advertise = advertise.map { a in key.map { $0.publicKey.base64 + "@" + a } ?? a }
        c.nodeKey = key
        c.allowedKeys = allow
        c.leaf = leaf
        c.backlinkEnabled = backlink
        return c
    }

    /// Both directions deliver: `from` seals to `to`'s key, `to` records it.
    func delivers(from: GossipBackend, fromKey: PrivateKey, to: GossipBackend, toKey: PrivateKey) async throws -> Bool {
        let h = RecordingHandler()
        try await to.subscribe(KeyPair(ours: toKey, theirs: .zero), h)
        try await from.publish(KeyPair(ours: fromKey, theirs: toKey.publicKey), SignalingMessage())
        return await Conformance.eventually(timeout: .seconds(5)) { h.count == 1 }
    }

    @Test func aNodeThatCannotBeDialledJoinsOverItsBacklink() async throws {
        let ka = PrivateKey.generate(), kb = PrivateKey.generate()
        let a = try await GossipBackend.start(config())
        let b = try await GossipBackend.start(config(peers: [a.endpoint], advertise: Self.unreachable))
        let formed = await a.waitForNeighbours(1, timeout: .seconds(10))
        let formedB = await b.waitForNeighbours(1, timeout: .seconds(10))
        #expect(formed && formedB, "the overlay did not form over the back-link")
        let sa = await a.stats(), sb = await b.stats()
        #expect(sa.backlinksCarried == 1, "a's link to b is carried on b's back-link: \(sa.backlinksCarried)")
        #expect(sb.backlinksOpen == 1)
        #expect(try await delivers(from: a, fromKey: ka, to: b, toKey: kb), "a → b (over the back-link)")
        #expect(try await delivers(from: b, fromKey: kb, to: a, toKey: ka), "b → a (over b's own link)")
        // The back-link stays: a's own link never becomes ready, and b stays up past the dial and
        // liveness timeouts.
        try await Task.sleep(for: .seconds(3))
        let na = await a.stats().neighbours.count, nb = await b.stats().neighbours.count
        #expect(na == 1 && nb == 1)
        #expect(await a.stats().backlinksCarried == 1)
        for x in [b, a] { try await x.close() }
    }

    /// The same pair without a back-link at the node it dials: no neighbour (what back-links fix).
    @Test func withoutABacklinkSuchANodeNeverJoins() async throws {
        let a = try await GossipBackend.start(config(backlink: false))
        let b = try await GossipBackend.start(config(peers: [a.endpoint], advertise: Self.unreachable))
        try await Task.sleep(for: .seconds(2))
        #expect(await a.stats().neighbours.isEmpty)
        #expect(await b.stats().neighbours.isEmpty)
        #expect(await b.stats().backlinksOpen == 0, "no announcement, no back-link")
        for x in [b, a] { try await x.close() }
    }

    /// A node that can be dialled opens a back-link only for the moment the dial back takes.
    @Test func aReachableNodeKeepsNoBacklink() async throws {
        let a = try await GossipBackend.start(config())
        let b = try await GossipBackend.start(config(peers: [a.endpoint]))
        let up = await a.waitForNeighbours(1), upB = await b.waitForNeighbours(1)
        #expect(up && upB)
        #expect(await OverlayBehaviourTests.eventually(timeout: .seconds(5)) {
            let sa = await a.stats(), sb = await b.stats()
            return sa.backlinksCarried == 0 && sb.backlinksOpen == 0 && sa.backlinksOpen == 0 && sb.backlinksCarried == 0
        }, "back-links were closed once the links reached both ways")
        let ka = PrivateKey.generate(), kb = PrivateKey.generate()
        #expect(try await delivers(from: a, fromKey: ka, to: b, toKey: kb))
        #expect(try await delivers(from: b, fromKey: kb, to: a, toKey: ka))
        for x in [b, a] { try await x.close() }
    }

    /// A closed overlay: the back-link is CurveZMQ under the same allow-list.
    @Test func closedOverlayBacklink() async throws {
        let ka = PrivateKey.generate(), kb = PrivateKey.generate(), stranger = PrivateKey.generate()
        let allow: Set<Key> = [ka.publicKey, kb.publicKey]
        let a = try await GossipBackend.start(config(key: ka, allow: allow))
        let b = try await GossipBackend.start(config(peers: [a.endpoint], advertise: Self.unreachable, key: kb, allow: allow))
        let up = await a.waitForNeighbours(1, timeout: .seconds(20)), upB = await b.waitForNeighbours(1, timeout: .seconds(20))
        #expect(up && upB)
        #expect(await a.stats().backlinksCarried == 1)
        #expect(try await delivers(from: a, fromKey: ka, to: b, toKey: kb))
        // A node whose key is not listed is refused on the back-link socket as on the SUB.
        let s = try await GossipBackend.start(config(peers: [a.endpoint], advertise: Self.unreachable, key: stranger,
                                                    allow: allow.union([stranger.publicKey])))
        try await Task.sleep(for: .seconds(1))
        #expect(await s.stats().neighbours.isEmpty)
        #expect(await a.stats().neighbours.count == 1)
        for x in [s, b, a] { try await x.close() }
    }

    /// A leaf that cannot be dialled: its back-link filters like its SUB (only its own topics and
    /// the control topic reach it).
    @Test func aLeafBacklinkFilters() async throws {
        let kb = PrivateKey.generate(), other = PrivateKey.generate(), ka = PrivateKey.generate()
        let a = try await GossipBackend.start(config())
        let b = try await GossipBackend.start(config(peers: [a.endpoint], advertise: Self.unreachable, leaf: true))
        let up = await a.waitForNeighbours(1), upB = await b.waitForNeighbours(1)
        #expect(up && upB)
        let h = RecordingHandler()
        try await b.subscribe(KeyPair(ours: kb, theirs: .zero), h)
        try await Task.sleep(for: .milliseconds(200))
        let before = await b.stats().seenEntries
        for _ in 0..<20 { try await a.publish(KeyPair(ours: ka, theirs: other.publicKey), SignalingMessage()) }
        try await a.publish(KeyPair(ours: ka, theirs: kb.publicKey), SignalingMessage())
        #expect(await Conformance.eventually { h.count == 1 })
        // Every DATA frame the leaf received would have taken a seen-cache entry.
        let after = await b.stats().seenEntries
        #expect(after - before == 1, "only the leaf's own topic crossed its back-link: \(after - before) ids")
        for x in [b, a] { try await x.close() }
    }
}
