import Foundation
import Testing
import Warren
import WarrenConformance

/// Closing backends leaves no thread, socket or file descriptor behind.
@Suite(.serialized) struct ShutdownTests {
    static func openDescriptors() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? -1
    }
    static func threads() -> Int {
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1
    }

    @Test func closeReleasesEverything() async throws {
        // Warm up: the shared ZeroMQ context and its I/O threads exist for the process lifetime.
        let warm = try await GossipOverlay.start(nodes: 2, edges: GossipOverlay.line(2))
        _ = await warm.waitFormed()
        await warm.close()
        try await Task.sleep(for: .milliseconds(300))
        let fds0 = Self.openDescriptors(), threads0 = Self.threads()

        for round in 0..<3 {
            // Other suites in this process open and close descriptors meanwhile: the "holds
            // sockets" check compares with the count just before this round's nodes start, and
            // right after they start (not after formation, which can take seconds under load).
            let before = Self.openDescriptors()
            let o = try await GossipOverlay.start(nodes: 6, edges: GossipOverlay.ring(6))
            #expect(Self.openDescriptors() > before, "nodes hold sockets while running")
            #expect(await o.waitFormed(), "round \(round)")
            await o.close()
            for b in o.backends { #expect(!b.node.isRunning) }
        }
        // ZeroMQ's reaper closes sockets asynchronously: give it a moment.
        let settled = await Conformance.eventually(timeout: .seconds(5)) {
            Self.openDescriptors() <= fds0 && Self.threads() <= threads0
        }
        #expect(settled, "fds \(fds0) → \(Self.openDescriptors()), threads \(threads0) → \(Self.threads())")
    }

    @Test func closedBackendRefusesAndCloseIsIdempotent() async throws {
        let b = try await GossipBackend.start(.local())
        try await b.close()
        try await b.close()
        await #expect(throws: BackendError.closed) {
            try await b.publish(KeyPair(ours: .generate(), theirs: PrivateKey.generate().publicKey), SignalingMessage())
        }
        #expect(await b.stats().neighbours.isEmpty)
    }
}
