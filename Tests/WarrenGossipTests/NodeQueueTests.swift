import Foundation
import Logging
import Testing
import Warren

/// The queue of commands into a node's thread is bounded for publishes: a caller that publishes
/// faster than the node sends is told, and the refusal is counted.
@Suite struct NodeQueueTests {
    @Test func aFullPublishQueueRefusesAndCounts() async throws {
        var c = GossipConfiguration.local()
        c.publishQueueLimit = 3
        // Not started: nothing drains the queue.
        let b = try GossipBackend(c, start: false)
        let recipient = PrivateKey.generate().publicKey
        for i in 0..<3 { try b.publish(envelope: [1, 2, UInt8(i)], to: recipient) }   // distinct ids
        #expect(throws: GossipPublishError.queueFull(limit: 3)) { try b.publish(envelope: [1, 2, 9], to: recipient) }
        #expect(!b.node.publish(topic: Topic(recipient), envelope: [4]))
        b.start()
        let s = await b.stats()
        #expect(s.queueFull == 2)
        #expect(s.engine.published == 3, "the three queued publishes were sent: \(s.engine.published)")
        // Drained: publishing works again.
        try b.publish(envelope: [5], to: recipient)
        try await b.close()
    }
}

/// A publish waiting for a first neighbour is woken by it, by close, and by cancellation.
@Suite struct PublishWaitTests {
    func waiting() throws -> GossipBackend {
        var c = GossipConfiguration.local(peers: ["tcp://127.0.0.1:1"])   // a seed that never answers
        c.publishTimeout = .seconds(120)
        return try GossipBackend(c)
    }

    @Test func cancellationAndCloseEndTheWait() async throws {
        let to = PrivateKey.generate().publicKey, from = PrivateKey.generate()
        let a = try waiting()
        let clock = ContinuousClock(), t0 = clock.now
        let task = Task { try await a.publish(KeyPair(ours: from, theirs: to), SignalingMessage()) }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        // Well before the 120 s wait would have ended (the bound allows for a loaded machine).
        #expect(clock.now - t0 < .seconds(60), "the cancelled wait ended before its timeout")
        let b = try waiting()
        let t1 = clock.now
        let pending = Task { try await b.publish(KeyPair(ours: from, theirs: to), SignalingMessage()) }
        try await Task.sleep(for: .milliseconds(100))
        try await b.close()
        await #expect(throws: BackendError.closed) { try await pending.value }
        #expect(clock.now - t1 < .seconds(60))
        try await a.close()
    }

    @Test func theFirstNeighbourReleasesItAtOnce() async throws {
        let to = PrivateKey.generate().publicKey, from = PrivateKey.generate()
        let listener = try GossipBackend(.local())
        var c = GossipConfiguration.local(peers: [listener.endpoint])
        c.publishTimeout = .seconds(120)
        let b = try GossipBackend(c)
        let clock = ContinuousClock(), t0 = clock.now
        try await b.publish(KeyPair(ours: from, theirs: to), SignalingMessage())
        #expect(b.neighboursUp >= 1)
        #expect(clock.now - t0 < .seconds(60))
        try await b.close(); try await listener.close()
    }
}
