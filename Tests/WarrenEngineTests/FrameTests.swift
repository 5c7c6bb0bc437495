import Testing
import WarrenTestSupport
@testable import WarrenEngine

/// The hex test vectors of docs/PROTOCOL.md.
enum Vectors {
    static let from = NodeID(raw: 0x0102_0304_0506_0708)
    static let dataTopic = [UInt8](repeating: 0x11, count: 32)
    static let data = "01011000010203040506070868656c6c6f"
    static let dataID = "46fb7408d4f285228f4af516ea25851b"
    static let dataForwarded = "01010f01a1a2a3a4a5a6a7a868656c6c6f"
    static let hello = """
        010200000102030405060708001111111111111111000000000000000000147463703a2f2f3132372e302e30\
        2e313a37303031010a0b0c0d0e0f101100147463703a2f2f3132372e302e302e313a37303032
        """
    static let helloLeaf = """
        010200000102030405060708010000000000000002111111111111111100137463703a2f2f31302e302e302e\
        393a3730303000
        """
    static let heartbeat = "010300000102030405060708"
    static let peers = """
        010400000102030405060708020a0b0c0d0e0f101100147463703a2f2f3132372e302e302e313a373030320000\
        0000000000ff00107463703a2f2f5b3a3a315d3a37303033
        """
    static let bye = "010500000102030405060708"
    /// HELLO with views (flags bit 1) asking to JOIN (request 2, bits 3–4): flags 0x12.
    static let helloViews = """
        010200000102030405060708121111111111111111000000000000000000147463703a2f2f3132372e302e30\
        2e313a3730303100
        """
    static let disconnect = "0107000001020304050607081111111111111111"
    static let forwardJoin = "010800000102030405060708060a0b0c0d0e0f101100147463703a2f2f3132372e302e302e313a37303032"
}

@Suite(.computeLane) struct FrameTests {
    let control = [UInt8](repeating: 0, count: 32)

    @Test func dataVector() throws {
        let f = Frame.data(topic: Topic(bytes: Vectors.dataTopic)!, envelope: Array("hello".utf8), ttl: 16, from: Vectors.from)
        let out = f.encode()
        #expect(out.topic.bytes == Vectors.dataTopic)
        #expect(hexString(out.body) == Vectors.data)
        let d = try Frame.decode(topic: Vectors.dataTopic, body: hex(Vectors.data))
        guard case .data(let t, let env, let id) = d.kind else { Issue.record("not data"); return }
        #expect(t.bytes == Vectors.dataTopic)
        #expect(env == Array("hello".utf8))
        #expect(id.description == Vectors.dataID)
        #expect(id == MessageID(hi: 0x46fb_7408_d4f2_8522, lo: 0x8f4a_f516_ea25_851b))
        #expect(d.ttl == 16 && d.hops == 0 && d.from == Vectors.from)
    }

    @Test func forwardedDataVector() {
        let body = Frame.encodeData(envelope: Array("hello".utf8), ttl: 15, hops: 1, from: NodeID(raw: 0xa1a2_a3a4_a5a6_a7a8))
        #expect(hexString(body) == Vectors.dataForwarded)
    }

    /// One header for every body, read from and written into the vectors' bytes; the DATA view
    /// of the DATA vector, and its forward, byte for byte the forwarded vector.
    @Test func headerAndDataViewOnTheVectors() {
        let data = hex(Vectors.data)
        data.withUnsafeBufferPointer { b in
            guard case .success(let h) = FrameHeader.read(b) else { Issue.record("no header"); return }
            #expect(h == FrameHeader(type: Frame.TypeCode.data.rawValue, ttl: 16, hops: 0, from: Vectors.from))
            var out: [UInt8] = []
            h.append(to: &out)
            #expect(out == Array(data.prefix(FrameHeader.size)))
            var copy = data
            copy.withUnsafeMutableBufferPointer { FrameHeader(type: 1, ttl: 15, hops: 1, from: NodeID(raw: 0xa1a2_a3a4_a5a6_a7a8)).write(to: $0) }
            #expect(hexString(copy) == Vectors.dataForwarded)
            Vectors.dataTopic.withUnsafeBufferPointer { t in
                guard let v = DataFrameView(topic: t, body: b) else { Issue.record("no view"); return }
                #expect(v.header == h && v.topic == Topic(bytes: Vectors.dataTopic))
                #expect(Array(v.envelope) == Array("hello".utf8))
                #expect(v.messageID().description == Vectors.dataID)
                #expect(hexString(v.forwarded(ttl: 15, hops: 1, from: NodeID(raw: 0xa1a2_a3a4_a5a6_a7a8))) == Vectors.dataForwarded)
            }
            #expect(DataFrameView(topic: .control, body: b) == nil)   // DATA on the control topic
        }
        hex(Vectors.heartbeat).withUnsafeBufferPointer { b in
            #expect(DataFrameView(topic: .control, body: b) == nil)   // not DATA
            #expect(FrameHeader.read(b) == .success(FrameHeader(type: Frame.TypeCode.heartbeat.rawValue, from: Vectors.from)))
        }
        #expect([UInt8](repeating: 1, count: 11).withUnsafeBufferPointer { FrameHeader.read($0) } == .failure(.shortHeader(11)))
        #expect(([2] + hex(Vectors.bye).dropFirst()).withUnsafeBufferPointer { FrameHeader.read($0) } == .failure(.unsupportedVersion(2)))
    }

    @Test func messageIDIsBlake2b128() {
        // Known answers (BLAKE2b, 16-byte digest, no key).
        #expect(MessageID(envelope: []).description == "cae66941d9efbd404e4d88758ea67670")
        #expect(MessageID(envelope: (0...255).map { UInt8($0) }).description == "c2472c0ac37a8dbdb25f05ada0d82643")
    }

    @Test func helloVectors() throws {
        let h = Frame.Hello(leaf: false, token: 0x1111_1111_1111_1111, echo: 0, endpoint: "tcp://127.0.0.1:7001",
                            peers: [.init(nodeID: NodeID(raw: 0x0a0b_0c0d_0e0f_1011), endpoint: "tcp://127.0.0.1:7002")])
        let out = Frame(kind: .hello(h), from: Vectors.from).encode()
        #expect(out.topic == .control)
        #expect(hexString(out.body) == Vectors.hello)
        let d = try Frame.decode(topic: control, body: hex(Vectors.hello))
        guard case .hello(let h2) = d.kind else { Issue.record("not hello"); return }
        #expect(h2 == h)

        let leaf = Frame.Hello(leaf: true, token: 2, echo: 0x1111_1111_1111_1111, endpoint: "tcp://10.0.0.9:7000", peers: [])
        #expect(hexString(Frame(kind: .hello(leaf), from: Vectors.from).encode().body) == Vectors.helloLeaf)
        let d2 = try Frame.decode(topic: control, body: hex(Vectors.helloLeaf))
        guard case .hello(let l2) = d2.kind else { Issue.record("not hello"); return }
        #expect(l2 == leaf)
    }

    @Test func viewsVectors() throws {
        var h = Frame.Hello(leaf: false, token: 0x1111_1111_1111_1111, echo: 0, endpoint: "tcp://127.0.0.1:7001", peers: [])
        h.views = true
        h.request = .join
        #expect(hexString(Frame(kind: .hello(h), from: Vectors.from).encode().body) == Vectors.helloViews)
        guard case .hello(let h2) = try Frame.decode(topic: control, body: hex(Vectors.helloViews)).kind else { Issue.record(); return }
        #expect(h2 == h && h2.views && h2.request == .join)
        // Without views the request bits are not sent (an old node's HELLO is unchanged).
        guard case .hello(let plain) = try Frame.decode(topic: control, body: hex(Vectors.hello)).kind else { Issue.record(); return }
        #expect(!plain.views && plain.request == .neighbour)

        #expect(hexString(Frame(kind: .disconnect(echo: 0x1111_1111_1111_1111), from: Vectors.from).encode().body) == Vectors.disconnect)
        guard case .disconnect(let echo) = try Frame.decode(topic: control, body: hex(Vectors.disconnect)).kind else { Issue.record(); return }
        #expect(echo == 0x1111_1111_1111_1111)

        let node = Frame.PeerEntry(nodeID: NodeID(raw: 0x0a0b_0c0d_0e0f_1011), endpoint: "tcp://127.0.0.1:7002")
        #expect(hexString(Frame(kind: .forwardJoin(ttl: 6, node: node), from: Vectors.from).encode().body) == Vectors.forwardJoin)
        guard case .forwardJoin(let ttl, let n2) = try Frame.decode(topic: control, body: hex(Vectors.forwardJoin)).kind else {
            Issue.record(); return
        }
        #expect(ttl == 6 && n2 == node)
        // Truncated, trailing bytes, a zero node id.
        let d = hex(Vectors.disconnect), f = hex(Vectors.forwardJoin)
        expectError(control, Array(d.dropLast()), .truncated)
        expectError(control, d + [0], .trailingBytes(1))
        expectError(control, Array(f.prefix(13)), .truncated)
        var z = f
        for k in 13..<21 { z[k] = 0 }
        expectError(control, z, .zeroNodeID)
    }

    @Test func controlVectors() throws {
        #expect(hexString(Frame(kind: .heartbeat, from: Vectors.from).encode().body) == Vectors.heartbeat)
        #expect(hexString(Frame(kind: .bye, from: Vectors.from).encode().body) == Vectors.bye)
        let list: [Frame.PeerEntry] = [.init(nodeID: NodeID(raw: 0x0a0b_0c0d_0e0f_1011), endpoint: "tcp://127.0.0.1:7002"),
                                       .init(nodeID: NodeID(raw: 0xff), endpoint: "tcp://[::1]:7003")]
        #expect(hexString(Frame(kind: .peers(list), from: Vectors.from).encode().body) == Vectors.peers)
        let d = try Frame.decode(topic: control, body: hex(Vectors.peers))
        guard case .peers(let l2) = d.kind else { Issue.record("not peers"); return }
        #expect(l2 == list)
        guard case .heartbeat = try Frame.decode(topic: control, body: hex(Vectors.heartbeat)).kind else { Issue.record(); return }
        guard case .bye = try Frame.decode(topic: control, body: hex(Vectors.bye)).kind else { Issue.record(); return }
    }

    @Test func roundTripRandom() throws {
        var rng = SeededGenerator(seed: 7)
        for n in 1..<200 {
            let env = envelope(&rng, n)
            let f = Frame.data(topic: topic(UInt8(n)), envelope: env, ttl: UInt8(n % 16 + 1), hops: UInt8(n % 7),
                               from: NodeID.random(using: &rng))
            let o = f.encode()
            let d = try Frame.decode(topic: o.topic.bytes, body: o.body)
            guard case .data(let t, let e, let id) = d.kind else { Issue.record(); return }
            #expect(t == topic(UInt8(n)) && e == env && id == MessageID(envelope: env))
            #expect(d.ttl == f.ttl && d.hops == f.hops && d.from == f.from)
            // Non-array collections decode too.
            let d2 = try Frame.decode(topic: o.topic.bytes[...], body: o.body.lazy.map { $0 })
            guard case .data(_, let e2, _) = d2.kind else { Issue.record(); return }
            #expect(e2 == env)
        }
    }

    func expectError(_ topic: [UInt8], _ body: [UInt8], _ expected: FrameError, sourceLocation: SourceLocation = #_sourceLocation) {
        do {
            _ = try Frame.decode(topic: topic, body: body)
            Issue.record("decoded, expected \(expected)", sourceLocation: sourceLocation)
        } catch {
            #expect(error == expected, sourceLocation: sourceLocation)
        }
    }

    @Test func malformed() {
        let data = hex(Vectors.data), hello = hex(Vectors.hello), dt = Vectors.dataTopic
        expectError(Array(dt.prefix(31)), data, .badTopicLength(31))
        expectError(dt + [0], data, .badTopicLength(33))
        expectError(dt, Array(data.prefix(11)), .shortHeader(11))
        expectError(dt, [], .shortHeader(0))
        var b = data; b[0] = 2
        expectError(dt, b, .unsupportedVersion(2))
        b = data; b[1] = 9
        expectError(dt, b, .unknownType(9))
        b = data; b[1] = 0
        expectError(dt, b, .unknownType(0))
        b = data; b[2] = 0
        expectError(dt, b, .zeroTTL)
        expectError(control, data, .dataOnControlTopic)
        expectError(dt, Array(data.prefix(12)), .emptyEnvelope)
        b = data; for k in 4..<12 { b[k] = 0 }
        expectError(dt, b, .zeroNodeID)
        expectError(dt, hello, .controlOnDataTopic)
        expectError(control, hex(Vectors.heartbeat) + [0], .trailingBytes(1))
        expectError(control, hex(Vectors.bye) + [1, 2], .trailingBytes(2))
        expectError(control, hello + [0], .trailingBytes(1))
        b = hex(Vectors.heartbeat); b[2] = 1
        expectError(control, b, .controlTTLOrHops)
        b = hex(Vectors.heartbeat); b[3] = 1
        expectError(control, b, .controlTTLOrHops)
        // Truncated HELLO at every length.
        for n in 12..<hello.count {
            do { _ = try Frame.decode(topic: control, body: Array(hello.prefix(n))); Issue.record("decoded \(n)") } catch {}
        }
        // Zero token.
        b = hello; for k in 13..<21 { b[k] = 0 }
        expectError(control, b, .zeroToken)
        // Bad UTF-8 in the endpoint.
        b = hello; b[31] = 0xff
        expectError(control, b, .invalidUTF8)
        // Endpoint length 0 and 256.
        let hdr = Array(hello.prefix(29))
        expectError(control, hdr + [0, 0, 0], .badEndpointLength(0))
        expectError(control, hdr + [1, 0] + [UInt8](repeating: 0x61, count: 256) + [0], .badEndpointLength(256))
        // 33 peers.
        var peers = Array(hex(Vectors.peers).prefix(12)) + [33]
        for k in 0..<33 { peers += [0, 0, 0, 0, 0, 0, 0, UInt8(k + 1), 0, 1, 0x61] }
        expectError(control, peers, .tooManyPeers(33))
        // Peer list entry with node id 0.
        expectError(control, Array(hex(Vectors.peers).prefix(12)) + [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x61], .zeroNodeID)
        // Peer list count larger than its entries.
        expectError(control, Array(hex(Vectors.peers).prefix(12)) + [2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0x61], .truncated)
    }

    @Test func fuzzNeverTraps() {
        var rng = SeededGenerator(seed: 99)
        var engine = GossipEngine(config: cfg(0), nodeID: NodeID(raw: 5))
        var actions = [Action]()
        engine.start(now: 0, rng: &rng, into: &actions)
        let seeds = [hex(Vectors.data), hex(Vectors.hello), hex(Vectors.peers), hex(Vectors.helloLeaf), hex(Vectors.bye)]
        var decoded = 0, overTTL = 0
        for k in 0..<5000 {
            var b = seeds[k % seeds.count]
            let edits = Int(rng.next(upperBound: UInt64(4)))
            for _ in 0..<edits {
                switch rng.next(upperBound: UInt64(3)) {
                case 0 where !b.isEmpty: b[Int(rng.next(upperBound: UInt64(b.count)))] = UInt8.random(in: 0...255, using: &rng)
                case 1 where !b.isEmpty: b.removeLast(Int(rng.next(upperBound: UInt64(b.count))))
                default: b.append(UInt8.random(in: 0...255, using: &rng))
                }
            }
            let t = k % 2 == 0 ? control : Vectors.dataTopic
            if let f = try? Frame.decode(topic: t, body: b) {
                decoded += 1
                if case .data = f.kind, f.ttl > engine.config.maxTTL, f.from != engine.nodeID { overTTL += 1 }
            }
            engine.receive(topic: t, body: b, now: UInt64(k), rng: &rng, into: &actions)
            actions.removeAll(keepingCapacity: true)
        }
        #expect(engine.stats.framesIn == 5000)
        // Undecodable frames plus DATA above maxTTL (decodes, but the engine drops it).
        #expect(engine.stats.overTTL == UInt64(overTTL))
        #expect(engine.stats.malformed == UInt64(5000 - decoded + overTTL))
        #expect(engine.stats.malformed > 1000)
    }

    @Test func engineCountsMalformed() {
        var rng = SeededGenerator(seed: 1)
        var e = GossipEngine(config: cfg(0), nodeID: NodeID(raw: 5))
        var a = [Action]()
        e.start(now: 0, rng: &rng, into: &a)
        e.receive(topic: control, body: hex(Vectors.data), now: 1, rng: &rng, into: &a)    // DATA on control topic
        e.receive(topic: Vectors.dataTopic, body: [1, 1, 0], now: 1, rng: &rng, into: &a)  // short
        // DATA with ttl 0 is refused as well.
        e.receive(topic: topic(1).bytes, body: Frame.encodeData(envelope: [1], ttl: 0, hops: 0, from: NodeID(raw: 9)),
                  now: 1, rng: &rng, into: &a)
        e.publish(topic: .control, envelope: [1], ttl: nil, now: 1, rng: &rng, into: &a)  // refused
        e.publish(topic: topic(1), envelope: [], ttl: nil, now: 1, rng: &rng, into: &a)   // refused
        #expect(e.stats.malformed == 5)
        #expect(e.stats.framesIn == 3)
        #expect(e.stats.published == 0)
    }

    @Test func topicBasics() {
        #expect(Topic(bytes: [UInt8](repeating: 0, count: 31)) == nil)
        #expect(Topic.control.bytes == [UInt8](repeating: 0, count: 32))
        #expect(Topic.control.isControl)
        let b = (0..<32).map { UInt8($0 * 7) }
        #expect(Topic(bytes: b)!.bytes == b)
        #expect(Topic(bytes: b)!.hasPrefix(Array(b.prefix(5))))
        #expect(!Topic(bytes: b)!.hasPrefix([1]))
    }
}
