import Testing
import WarrenTestSupport
import WarrenEngine

/// The routing frames' vectors (docs/PROTOCOL.md §9), encoded and decoded.
@Suite(.computeLane) struct RoutingFrameTests {
    static let from = NodeID(raw: 0x0102_0304_0506_0708)
    static let dataTopic = Topic(bytes: [UInt8](repeating: 0x11, count: 32))!

    static let routed = "010a10000102030405060708010a0b0c0d0e0f101168656c6c6f"
    static let nodes = "010b00000102030405060708010a0b0c0d0e0f101100147463703a2f2f3132372e302e302e313a37303032"
    static let store = "010c00000102030405060708" + String(repeating: "11", count: 32)
        + "0a0b0c0d0e0f101100015f90100000147463703a2f2f3132372e302e302e313a37303032"
    static let helloRouting = "010200000102030405060708041111111111111111000000000000000000147463703a2f2f3132372e302e30"
        + "2e313a37303031010a0b0c0d0e0f101100147463703a2f2f3132372e302e302e313a37303032"
    /// BLAKE2b-128 of 32 × 0x11; the routing point is its first 8 bytes.
    static let point: UInt64 = 0x7f9c_299f_1d9b_be85

    @Test func routedVector() throws {
        let body = RoutedFrameView.encode(envelope: Array("hello".utf8), mode: .node, target: 0x0a0b_0c0d_0e0f_1011,
                                          ttl: 16, hops: 0, from: Self.from)
        #expect(hexString(body) == Self.routed)
        let b = hex(Self.routed)
        b.withUnsafeBufferPointer { p in
            let v = RoutedFrameView(topic: Self.dataTopic, body: p)
            #expect(v?.mode == .node)
            #expect(v?.target == 0x0a0b_0c0d_0e0f_1011)
            #expect(v?.header.ttl == 16)
            #expect(v.map { Array($0.envelope) } == Array("hello".utf8))
            // Same message id as the DATA frame of the same envelope.
            #expect(v?.messageID().description == "46fb7408d4f285228f4af516ea25851b")
            // Malformed: control topic, bad mode, no envelope.
            if case .success = RoutedFrameView.check(topic: .control, body: p) { Issue.record("control topic accepted") }
        }
        var bad = b; bad[12] = 2
        _ = bad.withUnsafeBufferPointer { p in
            #expect(throws: FrameError.badRouteMode(2)) { try RoutedFrameView.check(topic: Self.dataTopic, body: p).get() }
        }
        let short = Array(b.prefix(21))
        _ = short.withUnsafeBufferPointer { p in
            #expect(throws: FrameError.emptyEnvelope) { try RoutedFrameView.check(topic: Self.dataTopic, body: p).get() }
        }
    }

    @Test func nodesAndStoreVectors() throws {
        let entry = Frame.PeerEntry(nodeID: NodeID(raw: 0x0a0b_0c0d_0e0f_1011), endpoint: "tcp://127.0.0.1:7002")
        #expect(hexString(RoutingFrame.encodeNodes([entry], from: Self.from).body) == Self.nodes)
        let s = StoreFrame(key: Self.dataTopic, node: NodeID(raw: 0x0a0b_0c0d_0e0f_1011), lifetimeMilliseconds: 90_000,
                           hopsLeft: 16, replica: false, endpoint: "tcp://127.0.0.1:7002")
        #expect(hexString(s.encode(from: Self.from).body) == Self.store)
        hex(Self.store).withUnsafeBufferPointer { p in
            guard case .success(let (f, from)) = RoutingFrame.decode(topic: .control, body: p), case .store(let d) = f else {
                Issue.record("STORE vector does not decode"); return
            }
            #expect(from == Self.from)
            #expect(d == s)
            if case .success = RoutingFrame.decode(topic: Self.dataTopic, body: p) { Issue.record("STORE on a data topic accepted") }
        }
        hex(Self.nodes).withUnsafeBufferPointer { p in
            guard case .success(let (f, _)) = RoutingFrame.decode(topic: .control, body: p), case .nodes(let list) = f else {
                Issue.record("NODES vector does not decode"); return
            }
            #expect(list == [entry])
        }
        #expect(Self.dataTopic.routingPoint == Self.point)
    }

    /// HELLO flag bit 2: the first HELLO vector of §2 with routing advertised.
    @Test func helloRoutingBit() throws {
        var h = Frame.Hello(leaf: false, token: 0x1111_1111_1111_1111, echo: 0, endpoint: "tcp://127.0.0.1:7001",
                            peers: [Frame.PeerEntry(nodeID: NodeID(raw: 0x0a0b_0c0d_0e0f_1011), endpoint: "tcp://127.0.0.1:7002")])
        h.routing = true
        let out = Frame(kind: .hello(h), from: Self.from).encode()
        #expect(hexString(out.body) == Self.helloRouting)
        let f = try Frame.decode(topic: Topic.control.bytes, body: out.body)
        guard case .hello(let d) = f.kind else { Issue.record("not a HELLO"); return }
        #expect(d.routing && !d.contact && !d.leaf)
    }

    /// A node with routing off treats routing frames as a node built before them does: unknown
    /// type, malformed.
    @Test func routingOffCountsThemMalformed() {
        var e = GossipEngine(config: cfg(0), nodeID: NodeID(raw: 9))
        var rng = SeededGenerator(seed: 1)
        var actions: [Action] = []
        e.start(now: 0, rng: &rng, into: &actions)
        e.receive(topic: Self.dataTopic.bytes, body: hex(Self.routed), now: 1, rng: &rng, into: &actions)
        e.receive(topic: Topic.control.bytes, body: hex(Self.store), now: 1, rng: &rng, into: &actions)
        #expect(e.stats.malformed == 2)
        #expect(e.stats.delivered == 0)
    }
}
