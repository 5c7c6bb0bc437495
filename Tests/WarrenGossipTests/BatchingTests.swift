import Foundation
import Logging
import Synchronization
import Testing
import WarrenEngine
import WarrenGossip

/// Frame coalescing in the ZeroMQ driver, over real sockets on loopback: a burst leaves in
/// BATCH messages and arrives exactly once; a lone frame is sent as itself.
@Suite(.serialized, .timeLimit(.minutes(1)))
struct BatchingTests {
    final class Received: Sendable {
        let ids = Mutex<[MessageID: Int]>([:])
        var total: Int { ids.withLock { $0.values.reduce(0, +) } }
    }

    @Test func burstThroughARelayIsBatchedAndDeliveredOnce() async throws {
        let received = Received()
        func cfg(_ peers: [String]) -> GossipConfiguration {
            var c = GossipConfiguration.local(listen: "tcp://127.0.0.1:*", peers: peers)
            c.degree = 0
            c.engine.rateLimit = 0
            // Control frames seldom, so that the lone envelope below has nothing to share a batch
            // with even on a busy machine (a heartbeat queued beside it would make a BATCH).
            c.engine.heartbeatInterval = 5_000_000_000
            c.engine.deadAfter = 60_000_000_000
            c.engine.peerExchangeInterval = 30_000_000_000
            return c
        }
        let logger = Logger(label: "test")
        let b = try GossipNode(configuration: cfg([]), callbacks: GossipNodeCallbacks(deliver: { _, _, _, id in
            received.ids.withLock { $0[id, default: 0] += 1 }
        }), logger: logger)
        let r = try GossipNode(configuration: cfg([b.endpoint]), callbacks: .init(), logger: logger)
        let a = try GossipNode(configuration: cfg([r.endpoint]), callbacks: .init(), logger: logger)
        let topic = Topic(bytes: [UInt8](repeating: 0x42, count: 32))!
        await b.subscribe(topic)
        for (n, want) in [(a, 1), (r, 2), (b, 1)] {
            #expect(await OverlayBehaviourTests.eventually { await n.stats().neighbours.count >= want })
        }

        // One envelope on an idle overlay: nothing else is queued, so it is not batched.
        a.publish(topic: topic, envelope: [0xEE, 1, 2, 3])
        #expect(await OverlayBehaviourTests.eventually { received.total == 1 })
        #expect(await a.stats().batchesSent == 0)
        #expect(await r.stats().batchesSent == 0)

        // A burst: publishes queue up faster than the driver drains them, so they coalesce.
        let n = 5_000
        var rng = SeededGenerator(seed: 7)
        for i in 0..<n {
            var env = [UInt8](repeating: 0, count: 150)
            for k in env.indices { env[k] = UInt8(truncatingIfNeeded: rng.next()) }
            env[0] = UInt8(i & 0xff); env[1] = UInt8(i >> 8)
            a.publish(topic: topic, envelope: env)
        }
        #expect(await OverlayBehaviourTests.eventually(timeout: .seconds(20)) { received.total >= n + 1 })
        try await Task.sleep(for: .milliseconds(100))
        #expect(received.total == n + 1)
        #expect(received.ids.withLock { $0.values.allSatisfy { $0 == 1 } && $0.count == n + 1 })
        let sa = await a.stats(), sr = await r.stats(), sb = await b.stats()
        #expect(sa.batchesSent > 0 && sa.batchedFrames >= 2 * sa.batchesSent)
        #expect(sb.engine.batchesIn > 0)
        #expect(sa.hwmDrops == 0 && sr.hwmDrops == 0)
        #expect(sb.engine.malformed == 0 && sr.engine.malformed == 0)
        for node in [a, r, b] { await node.stop() }
    }

    /// `views=false` (`warren node --no-views`) turns bounded views off; they are on by default.
    @Test func viewsOptionOfTheURL() throws {
        #expect(try GossipConfiguration(url: URL(string: "gossip://127.0.0.1:0")!).views)
        #expect(try !GossipConfiguration(url: URL(string: "gossip://127.0.0.1:0?views=false")!).views)
        #expect(throws: GossipConfigurationError.self) { try GossipConfiguration(url: URL(string: "gossip://127.0.0.1:0?views=maybe")!) }
    }

    /// `batch=false` (`--no-batch`): every frame in its own message, everything still delivered.
    @Test func batchingOffSendsFramesAlone() async throws {
        let received = Received()
        var cb = try GossipConfiguration(url: URL(string: "gossip://127.0.0.1:0?batch=false&degree=0")!)
        let defaults = try GossipConfiguration(url: URL(string: "gossip://127.0.0.1:0")!)
        #expect(!cb.batching && defaults.batching)
        cb.engine.rateLimit = 0
        let logger = Logger(label: "test")
        let b = try GossipNode(configuration: cb, callbacks: GossipNodeCallbacks(deliver: { _, _, _, id in
            received.ids.withLock { $0[id, default: 0] += 1 }
        }), logger: logger)
        var ca = try GossipConfiguration(url: URL(string: "gossip://127.0.0.1:0?batch=false&degree=0&peer=\(b.endpoint)")!)
        ca.engine.rateLimit = 0
        let a = try GossipNode(configuration: ca, callbacks: .init(), logger: logger)
        let topic = Topic(bytes: [UInt8](repeating: 0x43, count: 32))!
        await b.subscribe(topic)
        #expect(await OverlayBehaviourTests.eventually { await a.stats().neighbours.count == 1 })
        for i in 0..<2_000 { a.publish(topic: topic, envelope: [UInt8(i & 0xff), UInt8(i >> 8), 9, 9]) }
        #expect(await OverlayBehaviourTests.eventually(timeout: .seconds(20)) { received.total >= 2_000 })
        #expect(received.total == 2_000)
        let sa = await a.stats(), sb = await b.stats()
        #expect(sa.batchesSent == 0 && sb.engine.batchesIn == 0)
        for node in [a, b] { await node.stop() }
    }
}
