import Foundation
import Testing
import Warren
import WarrenConformance

/// The conformance suite over the in-process backend.
@Suite struct InProcessConformanceTests {
    @Test(arguments: [10, 32])
    func referenceExchange(n: Int) async throws {
        let ready = ReadyCounter()
        var backends: [any Backend] = []
        for _ in 0..<n { backends.append(try await Backends.make(url: "inprocess:", onReady: [ready])) }
        #expect(ready.count == n)
        let report = try await Conformance.referenceExchange(backends: backends)
        #expect(report.passed, "\(report)")
        #expect(report.delivered == 4 * n * (n - 1))
        for b in backends { try await b.close() }
    }

    @Test func unsubscribe() async throws {
        let a = InProcessBackend(), b = InProcessBackend()
        try await Conformance.unsubscribeStopsDelivery(a: a, b: b, wait: .milliseconds(50))
    }

    @Test func specificAndWildcard() async throws {
        try await Conformance.specificAndWildcard(a: InProcessBackend(), b: InProcessBackend())
    }

    @Test func unknownRecipient() async throws {
        try await Conformance.unknownRecipientDropped(a: InProcessBackend(), b: InProcessBackend())
    }

    @Test func tampered() async throws {
        try await Conformance.tamperedNeverDelivered(receiver: InProcessBackend())
    }

    @Test func concurrentPublishers() async throws {
        let bs = (0..<8).map { _ in InProcessBackend() as any Backend }
        try await Conformance.concurrentPublishers(publisherBackends: bs, receiver: bs[0])
    }

    @Test func unsubscribeUnknownKeyIsAnError() async throws {
        let b = InProcessBackend()
        let k = PrivateKey.generate()
        await #expect(throws: BackendError.notSubscribed(k.publicKey)) {
            try await b.unsubscribe(KeyPair(ours: k, theirs: .zero), RecordingHandler())
        }
    }

    @Test func closedBackendRefuses() async throws {
        let b = InProcessBackend()
        try await b.close()
        await #expect(throws: BackendError.closed) {
            try await b.publish(KeyPair(ours: .generate(), theirs: PrivateKey.generate().publicKey), SignalingMessage())
        }
    }

    @Test func unknownSchemeIsAClearError() async throws {
        do { _ = try await Backends.make(url: "carrier-pigeon://x"); Issue.record("accepted") } catch let e as BackendError {
            #expect(e.description.contains("carrier-pigeon") && e.description.contains("inprocess"))
        }
    }

    @Test func multiBackendFansOut() async throws {
        let k1 = PrivateKey.generate(), k2 = PrivateKey.generate()
        let multi = MultiBackend([InProcessBackend(), InProcessBackend()])
        #expect(multi.type == .multi)
        let h = RecordingHandler()
        #expect(try await multi.subscribe(KeyPair(ours: k2, theirs: .zero), h))
        try await multi.publish(KeyPair(ours: k1, theirs: k2.publicKey), SignalingMessage())
        // Both in-process backends share one registry and one handler list, so the message is
        // published twice and each copy delivered once.
        #expect(h.count == 2)

    }
}

final class ReadyCounter: BackendReadyHandler {
    private let n = Mutex(0)
    func onSignalingBackendReady(_ backend: any Backend) { n.withLock { $0 += 1 } }
    var count: Int { n.withLock { $0 } }
}

import Synchronization
