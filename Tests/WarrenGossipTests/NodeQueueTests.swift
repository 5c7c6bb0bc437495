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
