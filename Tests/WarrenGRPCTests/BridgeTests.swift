import Foundation
import GRPCCore
import Logging
import Synchronization
import Testing
import Warren
import WarrenConformance
import WarrenTestSupport

/// cunīcu's gRPC signaling API served by gossip nodes, and the grpc:// client backend.
@Suite(.serialized) struct BridgeTests {
    /// The reference exchange with every peer on its own grpc:// backend, spread over 4 nodes'
    /// bridges: envelopes cross the overlay between bridges, and stay local within one.
    @Test(arguments: [10, 16]) func conformanceAcrossFourBridges(peers: Int) async throws {
        let cluster = try await BridgeCluster.start(nodes: 4)
        var clients: [GRPCBackend] = []
        for i in 0..<peers { clients.append(try await cluster.client(i % 4)) }
        let report = try await Conformance.referenceExchange(backends: clients, timeout: .seconds(20))
        #expect(report.passed, "\(report)")
        #expect(report.delivered == report.expected)
        for c in clients {
            #expect(c.counters.refused == 0)
            try await c.close()
        }
        // Every stream went away with its client: the nodes hold no taps.
        let cleaned = await Conformance.eventually {
            cluster.servers.allSatisfy { $0.bridge.counters.openStreams == 0 }
        }
        #expect(cleaned)
        await cluster.close()
    }

    @Test func bridgeAndNativeGossipReachEachOther() async throws {
        let cluster = try await BridgeCluster.start(nodes: 3, edges: GossipOverlay.line(3))
        let native = cluster.overlay.backends[2]
        let a = PrivateKey.generate(), n = PrivateKey.generate()

        // grpc:// client on node 0 → native gossip:// subscriber on node 2.
        let atNative = RecordingHandler()
        try await native.subscribe(KeyPair(ours: n, theirs: .zero), atNative)
        let client = try await cluster.client(0)
        try await client.publish(KeyPair(ours: a, theirs: n.publicKey), Conformance.candidate(id: 7))
        #expect(await Conformance.eventually { atNative.count == 1 })

        // native gossip:// publisher on node 2 → grpc:// subscriber on node 0.
        let atClient = RecordingHandler()
        try await client.subscribe(KeyPair(ours: a, theirs: .zero), atClient)
        try await native.publish(KeyPair(ours: n, theirs: a.publicKey), Conformance.candidate(id: 8))
        #expect(await Conformance.eventually { atClient.count == 1 })
        #expect(atClient.receipts(PublicKeyPair(ours: a.publicKey, theirs: n.publicKey)).map(\.id) == [8])
        try await Task.sleep(for: .milliseconds(200))
        #expect(atNative.count == 1 && atClient.count == 1, "exactly once")
        try await client.close()
        await cluster.close()
    }

    @Test func malformedEnvelopesAreRejectedAndReachNobody() async throws {
        let cluster = try await BridgeCluster.start(nodes: 2, edges: GossipOverlay.line(2))
        let a = PrivateKey.generate(), b = PrivateKey.generate()
        let listener = RecordingHandler()
        let client = try await cluster.client(1)
        try await client.subscribe(KeyPair(ours: b, theirs: .zero), listener)

        let good = try sealed(from: a, to: b.publicKey, id: 1)
        var shortSender = good; shortSender.sender = Data(good.sender.prefix(31))
        var longRecipient = good; longRecipient.recipient = good.recipient + Data([0])
        var noRecipient = good; noRecipient.recipient = Data()
        var badNonce = good; badNonce.contents.nonce = Data(good.contents.nonce.prefix(8))
        var huge = good; huge.contents.body = Data(count: 70_000)
        let malformed = [shortSender, longRecipient, noRecipient, badNonce, huge]
        let codes = try await withRawClient(cluster.addresses[0]) { raw -> [RPCError.Code?] in
            var codes: [RPCError.Code?] = []
            for env in malformed {
                do { _ = try await raw.publish(env); codes.append(nil) } catch let e as RPCError { codes.append(e.code) }
            }
            return codes
        }
        #expect(codes == [RPCError.Code?](repeating: .invalidArgument, count: 5))
        #expect(cluster.servers[0].bridge.counters.rejected == 5)
        #expect(cluster.servers[0].bridge.counters.published == 0)
        try await Task.sleep(for: .milliseconds(300))
        #expect(listener.count == 0)
        #expect(client.counters.received == 0, "nothing malformed was streamed")

        // The good one still goes through afterwards.
        try await client.publish(envelope: good)
        #expect(await Conformance.eventually { listener.count == 1 })
        try await client.close()
        await cluster.close()
    }

    @Test func buildInfoAndBadSubscribeKey() async throws {
        let cluster = try await BridgeCluster.start(nodes: 1, edges: [])
        let (info, code) = try await withRawClient(cluster.addresses[0]) { raw -> (Cunicu_BuildInfo, RPCError.Code?) in
            let info = try await raw.getBuildInfo(Cunicu_Empty())
            var params = Cunicu_Signaling_SubscribeParams()
            params.key = Data(repeating: 1, count: 5)
            do {
                try await raw.subscribe(params) { r in for try await _ in r.messages {} }
                return (info, nil)
            } catch let e as RPCError { return (info, e.code) }
        }
        #expect(info.version == WarrenVersion.string)
        #expect(code == .invalidArgument)
        await cluster.close()
    }

    /// The first stream for a key subscribes the node's topic, the last one leaving unsubscribes;
    /// several streams for one key each get every envelope (group delivery).
    @Test func streamsFollowTopicsAndShareKeys() async throws {
        let cluster = try await BridgeCluster.start(nodes: 2, edges: GossipOverlay.line(2))
        let node = cluster.overlay.backends[1]
        let a = PrivateKey.generate(), b = PrivateKey.generate()
        let c1 = try await cluster.client(1), c2 = try await cluster.client(1)
        let h1 = RecordingHandler(), h2 = RecordingHandler()
        try await c1.subscribe(KeyPair(ours: b, theirs: .zero), h1)
        try await c2.subscribe(KeyPair(ours: b, theirs: .zero), h2)
        #expect(node.tapCount(for: b.publicKey) == 2)
        let sender = try await cluster.client(0)
        try await sender.publish(KeyPair(ours: a, theirs: b.publicKey), Conformance.candidate(id: 1))
        #expect(await Conformance.eventually { h1.count == 1 && h2.count == 1 })

        try await c1.close()
        #expect(await Conformance.eventually { node.tapCount(for: b.publicKey) == 1 })
        try await c2.close()
        #expect(await Conformance.eventually { node.tapCount(for: b.publicKey) == 0 })
        // With no stream left the node no longer delivers the key: nothing reaches it.
        let delivered = await node.stats().engine.delivered
        try await sender.publish(KeyPair(ours: a, theirs: b.publicKey), Conformance.candidate(id: 2))
        try await Task.sleep(for: .milliseconds(300))
        #expect(await node.stats().engine.delivered == delivered)
        try await sender.close()
        await cluster.close()
    }

    /// A leaf node subscribes a stream's topic at its neighbour like its own keys' topics.
    @Test func leafNodeBridge() async throws {
        let overlay = try await GossipOverlay.start(nodes: 2, edges: GossipOverlay.line(2)) { i, c in c.leaf = (i == 1) }
        _ = await overlay.waitFormed()
        let leaf = overlay.backends[1]
        let served = try await ServedBridge.start(leaf)
        let client = try await Backends.make(url: "grpc://\(served.address)?insecure=true")
        let me = PrivateKey.generate(), other = PrivateKey.generate()
        let h = RecordingHandler()
        try await client.subscribe(KeyPair(ours: me, theirs: .zero), h)
        try await Task.sleep(for: .milliseconds(200))   // the leaf's subscription reaches its neighbour
        try await overlay.backends[0].publish(KeyPair(ours: other, theirs: me.publicKey), Conformance.candidate(id: 9))
        #expect(await Conformance.eventually { h.count == 1 })
        try await client.close()
        await served.stop()
        await overlay.close()
    }

    /// A stream whose client stops reading is closed with RESOURCE_EXHAUSTED once its queue
    /// overflows; another stream on the same bridge keeps receiving everything meanwhile.
    @Test func stalledStreamIsClosedWithoutStallingOthers() async throws {
        let bound = 32
        let cluster = try await BridgeCluster.start(nodes: 1, edges: [], queueBound: bound)
        let bridge = cluster.servers[0].bridge
        let slowKey = PrivateKey.generate(), fastKey = PrivateKey.generate(), a = PrivateKey.generate()
        let fast = try await cluster.client(0)
        let h = RecordingHandler()
        try await fast.subscribe(KeyPair(ours: fastKey, theirs: .zero), h)

        let release = Mutex<CheckedContinuation<Void, Never>?>(nil)
        let stalled = Task { () -> RPCError.Code? in
            // The smallest window HTTP/2 allows: once the client stops reading, the server's
            // writes to this stream wait after about 64 KiB, and the bridge's queue fills behind
            // them however fast the machine is.
            try await withRawClient(cluster.addresses[0], windowSize: 65_535) { raw -> RPCError.Code? in
                var params = Cunicu_Signaling_SubscribeParams()
                params.key = slowKey.publicKey.data
                do {
                    try await raw.subscribe(params) { r in
                        var it = r.messages.makeAsyncIterator()
                        _ = try await it.next()   // the "live" envelope
                        // Stop reading until the test says so.
                        await withCheckedContinuation { k in release.withLock { $0 = k } }
                        while try await it.next() != nil {}
                    }
                    return nil
                } catch let e as RPCError { return e.code }
            }
        }
        #expect(await Conformance.eventually { bridge.counters.openStreams == 2 })
        let slowEnv = try sealed(from: a, to: slowKey.publicKey, id: 0)
        let publisher = try await cluster.client(0)
        // Publish to the stalled key (200 calls at a time) until its queue overflows — HTTP/2 flow
        // control and the client's buffers absorb some first — with a message to the reading
        // stream every 40.
        var sentFast = 0, sent = 0
        while bridge.counters.overflows == 0 && sent < 20_000 {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in sent..<(sent + 200) {
                    let env = slowEnv.withFreshNonce(i)
                    group.addTask { try await publisher.publish(envelope: env) }
                }
                try await group.waitForAll()
            }
            for i in stride(from: sent, to: sent + 200, by: 40) {
                try await publisher.publish(KeyPair(ours: a, theirs: fastKey.publicKey), Conformance.candidate(id: Int32(i)))
                sentFast += 1
            }
            sent += 200
        }
        let overflowed = await Conformance.eventually { bridge.counters.overflows == 1 }
        if !overflowed { stalled.cancel() }   // the stalled stream would otherwise never end
        try #require(overflowed, "no overflow after \(sent) envelopes")
        #expect(await Conformance.eventually { h.count == sentFast }, "the other stream got all \(sentFast): \(h.count)")
        // Let the stalled client read: it drains what was in flight and gets RESOURCE_EXHAUSTED.
        #expect(await Conformance.eventually { release.withLock { $0 != nil } })
        release.withLock { $0?.resume(); $0 = nil }
        let code = try await stalled.value
        #expect(code == .resourceExhausted)
        #expect(await Conformance.eventually { bridge.counters.openStreams == 1 })
        try await fast.close()
        try await publisher.close()
        await cluster.close()
    }

    /// When the server goes away and comes back, the client subscribes again by itself.
    @Test func clientResubscribesAfterServerRestart() async throws {
        let overlay = try await GossipOverlay.start(nodes: 1, edges: [])
        let node = overlay.backends[0]
        let first = try await ServedBridge.start(node)
        let client = try await Backends.make(url: "grpc://\(first.address)?insecure=true") as! GRPCBackend
        let me = PrivateKey.generate(), other = PrivateKey.generate()
        let h = RecordingHandler()
        try await client.subscribe(KeyPair(ours: me, theirs: .zero), h)

        await first.stop()
        let second = try await ServedBridge.start(node, GRPCBridgeConfiguration(host: "127.0.0.1", port: first.port))
        #expect(await Conformance.eventually(timeout: .seconds(15)) { second.bridge.counters.openStreams == 1 })
        #expect(client.counters.resubscribed >= 1)
        try await node.publish(KeyPair(ours: other, theirs: me.publicKey), Conformance.candidate(id: 3))
        #expect(await Conformance.eventually { h.count == 1 })

        try await client.close()
        await #expect(throws: BackendError.closed) { try await client.publish(KeyPair(ours: me, theirs: other.publicKey), SignalingMessage()) }
        await second.stop()
        await overlay.close()
    }

    /// A bridge that goes away is a warning at the client, once per outage (not once per retry),
    /// and its return is said too: `warren connect --backend grpc://…` at the default level must
    /// not sit silent in front of a dead bridge.
    @Test func anOutageIsReportedOnceAndItsEndToo() async throws {
        let overlay = try await GossipOverlay.start(nodes: 1, edges: [])
        let node = overlay.backends[0]
        let first = try await ServedBridge.start(node)
        let lines = CapturedLog()
        var logger = Logger(label: "test.grpc.client") { _ in lines }
        logger.logLevel = .warning
        let client = try GRPCBackend(GRPCConfiguration(url: URL(string: "grpc://\(first.address)?insecure=true")!), logger: logger)
        let me = PrivateKey.generate()
        try await client.subscribe(KeyPair(ours: me, theirs: .zero), RecordingHandler())
        #expect(lines.messages.isEmpty, "\(lines.messages)")

        await first.stop()
        // Nobody serves for a while: several retries, one warning.
        #expect(await Conformance.eventually(timeout: .seconds(10)) { client.counters.resubscribed >= 3 })
        let down = lines.messages.filter { $0.hasPrefix("cannot subscribe at \(first.address)") }
        #expect(down.count == 1, "\(lines.messages)")
        let second = try await ServedBridge.start(node, GRPCBridgeConfiguration(host: "127.0.0.1", port: first.port))
        #expect(await Conformance.eventually(timeout: .seconds(15)) { second.bridge.counters.openStreams == 1 })
        #expect(await Conformance.eventually { lines.messages.contains { $0.hasPrefix("subscribed again at") } }, "\(lines.messages)")
        #expect(lines.messages.count == 2, "\(lines.messages)")

        try await client.close()
        #expect(lines.messages.count == 2, "closing is no outage: \(lines.messages)")
        await second.stop()
        await overlay.close()
    }

    @Test func subscribeFailsClearlyWhenNobodyServes() async throws {
        // A port nobody listens on any more: a bridge's, after it stopped.
        let overlay = try await GossipOverlay.start(nodes: 1, edges: [])
        let gone = try await ServedBridge.start(overlay.backends[0])
        await gone.stop()
        await overlay.close()
        let port = gone.port
        let client = try await Backends.make(url: "grpc://127.0.0.1:\(port)?insecure=true&timeout=1") as! GRPCBackend
        let k = PrivateKey.generate()
        await #expect(throws: GRPCBackendError.self) { try await client.subscribe(KeyPair(ours: k, theirs: .zero), RecordingHandler()) }
        #expect(client.registry.isEmpty, "a subscription that never went live is taken back")
        try await client.close()
    }

    /// `--grpc-tls`: the bridge over TLS with a self-signed certificate; a client that trusts it
    /// (`ca=`) exchanges messages, a plain-text client does not get through.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl"), "needs /usr/bin/openssl (Debian: openssl)"))
    func tlsBridge() async throws {
        let dir = FileManager.default.temporaryDirectory.appending(path: "warren-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let cert = dir.appending(path: "cert.pem").path, key = dir.appending(path: "key.pem").path
        let openssl = ChildProcess()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        openssl.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                             "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=warren-test",
                             "-addext", "subjectAltName=IP:127.0.0.1"]
        openssl.standardError = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        try #require(openssl.terminationStatus == 0)

        let overlay = try await GossipOverlay.start(nodes: 1, edges: [])
        let config = GRPCBridgeConfiguration(host: "127.0.0.1", port: 0, tls: .init(certificateChain: cert, privateKey: key))
        let served = try await ServedBridge.start(overlay.backends[0], config)
        let address = served.address

        let client = try await Backends.make(url: "grpc://\(address)?ca=\(cert)&timeout=5")
        let me = PrivateKey.generate(), other = PrivateKey.generate()
        let h = RecordingHandler()
        try await client.subscribe(KeyPair(ours: me, theirs: .zero), h)
        try await client.publish(KeyPair(ours: other, theirs: me.publicKey), Conformance.candidate(id: 5))
        #expect(await Conformance.eventually { h.count == 1 })
        try await client.close()

        let plain = try await Backends.make(url: "grpc://\(address)?insecure=true&timeout=1")
        await #expect(throws: (any Error).self) {
            try await plain.publish(KeyPair(ours: other, theirs: me.publicKey), Conformance.candidate(id: 6))
        }
        try await plain.close()
        // TLS against the system's trust roots: the self-signed certificate is not trusted.
        let untrusting = try await Backends.make(url: "grpc://\(address)?timeout=1")
        await #expect(throws: (any Error).self) {
            try await untrusting.publish(KeyPair(ours: other, theirs: me.publicKey), Conformance.candidate(id: 7))
        }
        try await untrusting.close()
        #expect(h.count == 1)
        await served.stop()
        await overlay.close()
    }

    @Test func urlsAndAddresses() throws {
        let ok = try GRPCConfiguration(url: URL(string: "grpc://127.0.0.1:8080?insecure=true")!)
        #expect(ok.host == "127.0.0.1" && ok.port == 8080 && ok.insecure)
        #expect(try GRPCConfiguration(url: URL(string: "grpc://example.org:443")!).insecure == false)
        for bad in ["grpc://127.0.0.1", "grpc://:80", "grpc://h:80?insecure=yes", "grpc://h:80?color=red",
                    "grpc://h:80?timeout=-1", "grpc://h:80?insecure=true&ca=/etc/hostname"] {
            #expect(throws: BackendError.self, "\(bad)") { try GRPCConfiguration(url: URL(string: bad)!) }
        }
        #expect(try GRPCBridgeConfiguration(address: "127.0.0.1:0").isLoopback)
        #expect(try GRPCBridgeConfiguration(address: "[::1]:80").host == "::1")
        #expect(throws: GRPCBridgeError.self) { try GRPCBridgeConfiguration(address: "127.0.0.1") }
        #expect(throws: GRPCBridgeError.self) { try GRPCBridgeConfiguration(address: "0.0.0.0:8080").validate() }
        var tls = try GRPCBridgeConfiguration(address: "0.0.0.0:8080")
        tls.allowPlaintextAnywhere = true
        try tls.validate()
    }
}

extension Envelope {
    /// The same envelope under another (invalid, but distinct) nonce: a distinct message id.
    func withFreshNonce(_ i: Int) -> Envelope {
        var e = self
        var n = [UInt8](contents.nonce)
        withUnsafeBytes(of: UInt64(i).littleEndian) { for (j, b) in $0.enumerated() { n[j] = b } }
        e.contents.nonce = Data(n)
        return e
    }
}

/// Log messages kept in memory (a `LogHandler` shared by every logger made from it).
final class CapturedLog: LogHandler, @unchecked Sendable {
    // @unchecked: `lines` is behind a Mutex; the LogHandler's own fields are set once before use.
    private let lines = Mutex<[String]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    var messages: [String] { lines.withLock { $0 } }
    func log(event: LogEvent) {
        lines.withLock { $0.append(event.message.description) }
    }
}
