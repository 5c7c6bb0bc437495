import Foundation
import Testing
import Warren
import WarrenConformance

/// The conformance suite over real ZeroMQ sockets on loopback.
@Suite(.serialized) struct GossipConformanceTests {
    @Test(arguments: [(10, UInt64(1)), (32, UInt64(2))])
    func referenceExchangeRandomDegree3(n: Int, seed: UInt64) async throws {
        let edges = GossipOverlay.randomTopology(nodes: n, degree: 3, seed: seed)
        let overlay = try await GossipOverlay.start(nodes: n, edges: edges)
        #expect(await overlay.waitFormed(), "overlay did not form")
        let report = try await Conformance.referenceExchange(backends: overlay.backends, timeout: .seconds(30), settle: .milliseconds(500))
        #expect(report.passed, "\(report)")
        await overlay.close()
    }

    @Test func suiteOnTwoLinkedNodes() async throws {
        let overlay = try await GossipOverlay.start(nodes: 3, edges: GossipOverlay.line(3))
        #expect(await overlay.waitFormed())
        let a = overlay.backends[0], b = overlay.backends[2]
        try await Conformance.unsubscribeStopsDelivery(a: a, b: b)
        try await Conformance.specificAndWildcard(a: a, b: b)
        try await Conformance.unknownRecipientDropped(a: a, b: b)
        try await Conformance.tamperedNeverDelivered(receiver: b)
        try await Conformance.concurrentPublishers(publisherBackends: [a, overlay.backends[1]], receiver: b)
        await overlay.close()
    }

    @Test func urlFactoryMakesGossipBackend() async throws {
        let b1 = try await Backends.make(url: "gossip://127.0.0.1:0?preset=local&degree=2&ttl=8")
        let g1 = try #require(b1 as? GossipBackend)
        #expect(g1.type == .gossip)
        let b2 = try await Backends.make(url: "gossip://127.0.0.1:0?peer=\(g1.endpoint)")
        let g2 = try #require(b2 as? GossipBackend)
        #expect(await g2.waitForNeighbours(1))
        #expect(await g1.waitForNeighbours(1))
        try await b1.close(); try await b2.close()
    }

    /// `seen=N` sizes the seen cache, and with it the admission rate (C / (2 × hold)).
    @Test func seenCapacityFromTheURL() throws {
        let c = try GossipConfiguration(url: URL(string: "gossip://127.0.0.1:7001?seen=49152")!)
        #expect(c.engine.seenCapacity == 49_152)
        #expect(c.engine.newIDRate == 4_096)
        #expect(try GossipConfiguration(url: URL(string: "gossip://127.0.0.1:7001")!).engine.seenCapacity == 524_288)
    }

    @Test func badURLsAreClearErrors() async throws {
        for (url, needle) in [("gossip://127.0.0.1:7001?peer=udp://x", "tcp://HOST:PORT"),
                              ("gossip://127.0.0.1:7001?ttl=0", "ttl"),
                              ("gossip://127.0.0.1:7001?ttl=17", "overlay's maximum"),
                              ("gossip://127.0.0.1:7001?discover=0", "discover"),
                              ("gossip://127.0.0.1:7001?discover=70000", "discover"),
                              ("gossip://127.0.0.1:7001?bogus=1", "unknown option"),
                              ("gossip://127.0.0.1:7001?leaf=maybe", "leaf"),
                              ("gossip://127.0.0.1:7001?batch=off", "batch must be true or false"),
                              ("gossip://127.0.0.1:7001?seen=1023", "seen must be 1024…4194304"),
                              ("gossip://127.0.0.1:7001?seen=lots", "seen must be a number")] {
            do { _ = try await Backends.make(url: url); Issue.record("accepted \(url)") } catch {
                #expect("\(error)".contains(needle), "\(url): \(error)")
            }
        }
    }
}
