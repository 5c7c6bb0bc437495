import Foundation
import Testing
import Warren
import WarrenConformance

/// Unicast routing (docs/PROTOCOL.md §9) on real ZeroMQ sockets: cunīcu's reference exchange
/// passes with every node routing, and unicasts do take routed frames.
@Suite(.serialized) struct RoutingOverlayTests {
    @Test func referenceExchangeWithRouting() async throws {
        let n = 12
        let edges = GossipOverlay.randomTopology(nodes: n, degree: 3, seed: 5)
        let overlay = try await GossipOverlay.start(nodes: n, edges: edges, configure: { _, c in c.routing = true })
        #expect(await overlay.waitFormed(), "overlay did not form")
        let report = try await Conformance.referenceExchange(backends: overlay.backends, timeout: .seconds(30), settle: .milliseconds(500))
        #expect(report.passed, "\(report)")
        var routed: UInt64 = 0
        for b in overlay.backends { routed += await b.stats().engine.routed }
        #expect(routed > 0, "no unicast was routed")
        await overlay.close()
    }

    @Test func urlOption() throws {
        #expect(try GossipConfiguration(url: URL(string: "gossip://127.0.0.1:7001?routing=true")!).routing)
        #expect(try !GossipConfiguration(url: URL(string: "gossip://127.0.0.1:7001?routing=false")!).routing)
        #expect(try !GossipConfiguration(url: URL(string: "gossip://127.0.0.1:7001")!).routing)
        #expect(throws: (any Error).self) { try GossipConfiguration(url: URL(string: "gossip://127.0.0.1:7001?routing=maybe")!) }
    }
}
