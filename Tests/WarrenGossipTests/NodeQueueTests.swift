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
///
/// The wait is an hour, so each outcome — `CancellationError`, `BackendError.closed`, a send —
/// can only come from the event under test, never from the wait running out; the suite's time
/// limit fails a wait that nothing wakes. No wall-clock bound: CI has measured the whole test
/// process stalled for 67 s, which a bound short enough to mean something does not survive.
@Suite(.timeLimit(.minutes(5))) struct PublishWaitTests {
    static let wait: Duration = .seconds(3600)

    func waiting() throws -> GossipBackend {
        var c = GossipConfiguration.local(peers: ["tcp://127.0.0.1:1"])   // a seed that never answers
        c.publishTimeout = Self.wait
        return try GossipBackend(c)
    }

    @Test func cancellationAndCloseEndTheWait() async throws {
        let to = PrivateKey.generate().publicKey, from = PrivateKey.generate()
        let a = try waiting()
        let task = Task { try await a.publish(KeyPair(ours: from, theirs: to), SignalingMessage()) }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        let b = try waiting()
        let pending = Task { try await b.publish(KeyPair(ours: from, theirs: to), SignalingMessage()) }
        try await Task.sleep(for: .milliseconds(100))
        try await b.close()
        await #expect(throws: BackendError.closed) { try await pending.value }
        #expect(a.neighboursUp == 0 && b.neighboursUp == 0, "nothing but the event under test ended the waits")
        try await a.close()
    }

    @Test func theFirstNeighbourReleasesItAtOnce() async throws {
        let to = PrivateKey.generate().publicKey, from = PrivateKey.generate()
        let listener = try GossipBackend(.local())
        var c = GossipConfiguration.local(peers: [listener.endpoint])
        c.publishTimeout = Self.wait
        let b = try GossipBackend(c)
        try await b.publish(KeyPair(ours: from, theirs: to), SignalingMessage())
        #expect(b.neighboursUp >= 1)
        #expect(await b.stats().engine.published == 1, "sent once the neighbour came up")
        try await b.close(); try await listener.close()
    }
}
