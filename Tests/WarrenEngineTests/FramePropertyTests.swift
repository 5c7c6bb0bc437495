import PropertyBased
import Testing
import WarrenTestSupport
import WarrenEngine

/// Property-based campaigns (swift-property-based) over the frame decoder and the engine; with
/// EnvelopePropertyTests and DiscoveryTests, `swift test` runs 105,000 generated inputs. A failure
/// prints the input and a `.fixedSeed(…)` that reproduces it. Serialized: run side by side, these
/// CPU-bound tests starved the overlay tests' formation. The long, coverage-guided campaign is
/// libFuzzer's: docs/FUZZING.md.
@Suite(.serialized, .computeLane) struct FramePropertyTests {
    static let endpoint = Gen.letterOrNumber.string(of: 1...40).map { "tcp://" + $0 }
    static let peers = zip(Gen.uint64(in: 1...UInt64.max), endpoint).array(of: 0...Frame.maxPeers)
        .map { $0.map { Frame.PeerEntry(nodeID: NodeID(raw: $0.0), endpoint: $0.1) } }
    static let envelope = Gen.uint8().array(of: 1...300)

    /// Every frame the encoder can write decodes to the same frame, and re-encodes identically.
    @Test func encodedFramesDecodeToThemselves() async {
        await propertyCheck(count: 10_000, input: Gen.int(in: 0...6), Gen.uint64(in: 1...UInt64.max),
                            Gen.uint8(in: 1...255), Gen.uint8(), Self.envelope, Self.endpoint, Self.peers,
                            zip(Gen.uint64(in: 1...UInt64.max), Gen.uint64(), Gen.bool())) { kind, from, ttl, hops, env, ep, peers, hello in
            let id = NodeID(raw: from)
            let frame: Frame
            switch kind {
            case 0: frame = .data(topic: topic(3), envelope: env, ttl: ttl, hops: hops, from: id)
            case 1:
                var h = Frame.Hello(leaf: hello.2, token: hello.0, echo: hello.1, endpoint: ep, peers: peers)
                if hops & 1 != 0 { h.views = true; h.request = Frame.Request(rawValue: (hops >> 1) & 3)! }
                frame = Frame(kind: .hello(h), from: id)
            case 2: frame = Frame(kind: .peers(peers), from: id)
            case 3: frame = Frame(kind: .heartbeat, from: id)
            case 5: frame = Frame(kind: .disconnect(echo: hello.1), from: id)
            case 6: frame = Frame(kind: .forwardJoin(ttl: ttl, node: Frame.PeerEntry(nodeID: NodeID(raw: hello.0), endpoint: ep)), from: id)
            default: frame = Frame(kind: .bye, from: id)
            }
            let out = frame.encode()
            let back: Frame
            do { back = try Frame.decode(topic: out.topic.bytes, body: out.body) } catch {
                Issue.record("encoded frame refused: \(error)"); return
            }
            #expect(back.encode().body == out.body && back.encode().topic == out.topic)
            #expect(back.from == id && back.typeCode == frame.typeCode)
            switch (frame.kind, back.kind) {
            case (.data(_, let e1, let i1), .data(_, let e2, let i2)):
                #expect(e1 == e2 && i1 == i2 && back.ttl == ttl && back.hops == hops)
            case (.hello(let h1), .hello(let h2)): #expect(h1 == h2)
            case (.peers(let p1), .peers(let p2)): #expect(p1 == p2)
            case (.heartbeat, .heartbeat), (.bye, .bye): break
            case (.disconnect(let e1), .disconnect(let e2)): #expect(e1 == e2)
            case (.forwardJoin(let t1, let n1), .forwardJoin(let t2, let n2)): #expect(t1 == t2 && n1 == n2)
            default: Issue.record("kind changed: \(frame.kind) → \(back.kind)")
            }
        }
    }

    static let vectors = [hex(Vectors.data), hex(Vectors.dataForwarded), hex(Vectors.hello), hex(Vectors.helloLeaf),
                          hex(Vectors.heartbeat), hex(Vectors.peers), hex(Vectors.bye),
                          hex(Vectors.helloViews), hex(Vectors.disconnect), hex(Vectors.forwardJoin)]
    /// A vector with edits: (position, xor) pairs; xor 0 deletes the byte, a position past the
    /// end appends.
    static let mutated = zip(Gen.int(in: 0...9), zip(Gen.uint16(), Gen.uint8()).array(of: 0...6)).map { v, edits in
        var b = vectors[v]
        for (pos, x) in edits {
            let i = Int(pos) % (b.count + 1)
            if i == b.count { b.append(x) } else if x == 0 { b.remove(at: i) } else { b[i] ^= x }
        }
        return b
    }
    static let garbage = Gen.uint8().array(of: 0...200)
    /// The vectors above and the routing frames' (ROUTED, NODES, STORE, HELLO with bit 2), mutated.
    static let routingVectors = vectors + [hex(RoutingFrameTests.routed), hex(RoutingFrameTests.nodes),
                                           hex(RoutingFrameTests.store), hex(RoutingFrameTests.helloRouting)]
    static let mutatedWithRouting = zip(Gen.int(in: 0...13), zip(Gen.uint16(), Gen.uint8()).array(of: 0...6)).map { v, edits in
        var b = routingVectors[v]
        for (pos, x) in edits {
            let i = Int(pos) % (b.count + 1)
            if i == b.count { b.append(x) } else if x == 0 { b.remove(at: i) } else { b[i] ^= x }
        }
        return b
    }

    /// Any input: decoding never traps, and what it accepts is canonical — re-encoding gives back
    /// exactly the input (HELLO flag bits other than bit 0, bit 1 and — with bit 1 — bits 3–4,
    /// bit 2 and bit 5 are ignored on receive).
    @Test(arguments: ["mutated vectors", "garbage"])
    func acceptedInputIsCanonical(_ source: String) async {
        let bodies = source == "garbage" ? Self.garbage.eraseToAny() : Self.mutated.eraseToAny()
        await propertyCheck(count: 20_000, input: Gen.int(in: 0...2), bodies) { t, body in
            let topicBytes = t == 0 ? Topic.control.bytes : t == 1 ? Vectors.dataTopic : [UInt8](repeating: 0x11, count: 31)
            guard let f = try? Frame.decode(topic: topicBytes, body: body) else { return }
            var expected = body
            if case .hello = f.kind {
                let flags = expected[Frame.headerSize]
                expected[Frame.headerSize] &= (flags & 2 != 0 ? 0x1B : 1) | 0b10_0100
            }
            #expect(f.encode().body == expected)
            #expect(f.encode().topic.bytes == topicBytes)
        }
    }

    /// Sequences of hostile frames into a fresh engine: every frame is handled or counted —
    /// `malformed` = undecodable + DATA above maxTTL, `overTTL` = the latter — and nothing is
    /// delivered twice or outside the local topics.
    /// An engine with bounded views and routing on takes any such bytes, on any connection and
    /// with timers running between them: nothing traps, every frame is counted, and no envelope
    /// is delivered twice.
    @Test func engineWithViewsAndRoutingTakesAnyBytes() async {
        await propertyCheck(count: 3_000, input: zip(Gen.int(in: 0...2), Self.mutatedWithRouting).array(of: 1...16)) { frames in
            var rng = SeededGenerator(seed: 4)
            var c = cfg(0, seeds: [1], degree: 3)
            c.routing = true
            var e = GossipEngine(config: c, nodeID: NodeID(raw: 5))
            var actions = [Action]()
            e.start(now: 0, rng: &rng, into: &actions)
            e.subscribeLocal(Topic(bytes: Vectors.dataTopic)!, into: &actions)
            for l in e.linkIDs { e.linkReady(l, now: 1, rng: &rng, into: &actions) }
            actions.removeAll()
            for (k, (t, body)) in frames.enumerated() {
                let topicBytes = t == 0 ? Topic.control.bytes : t == 1 ? Vectors.dataTopic : topic(4).bytes
                let now = UInt64(k + 1) * 300_000_000
                e.receive(topic: topicBytes, body: body, via: ConnectionID(raw: UInt64(k % 3 + 1)), now: now, rng: &rng, into: &actions)
                e.tick(now: now, rng: &rng, into: &actions)
            }
            #expect(e.stats.framesIn == UInt64(frames.count))
            var ids = Set<MessageID>()
            for case .deliver(_, _, _, let id) in actions { #expect(ids.insert(id).inserted, "delivered twice") }
        }
    }

    @Test func engineCountsEveryHostileFrame() async {
        await propertyCheck(count: 10_000, input: zip(Gen.int(in: 0...2), Self.mutated).array(of: 1...12)) { frames in
            var rng = SeededGenerator(seed: 3)
            var e = GossipEngine(config: cfg(0), nodeID: NodeID(raw: 5))
            var actions = [Action]()
            e.start(now: 0, rng: &rng, into: &actions)
            e.subscribeLocal(Topic(bytes: Vectors.dataTopic)!, into: &actions)
            actions.removeAll()
            var undecodable: UInt64 = 0, overTTL: UInt64 = 0
            for (k, (t, body)) in frames.enumerated() {
                let topicBytes = t == 0 ? Topic.control.bytes : t == 1 ? Vectors.dataTopic : topic(4).bytes
                switch Result(catching: { () throws(FrameError) in try Frame.decode(topic: topicBytes, body: body) }) {
                case .failure: undecodable += 1
                case .success(let f):
                    if case .data = f.kind, f.ttl > e.config.maxTTL, f.from != e.nodeID { overTTL += 1 }
                    // This engine has no views (degree 0): DISCONNECT and FORWARD_JOIN are
                    // malformed to it, as to a node built before them.
                    switch f.kind {
                    case .disconnect, .forwardJoin: if f.from != e.nodeID { undecodable += 1 }
                    default: break
                    }
                }
                e.receive(topic: topicBytes, body: body, now: UInt64(k + 1) * 1_000, rng: &rng, into: &actions)
            }
            #expect(e.stats.framesIn == UInt64(frames.count))
            #expect(e.stats.overTTL == overTTL)
            #expect(e.stats.malformed == undecodable + overTTL)
            var ids = Set<MessageID>()
            for case .deliver(let topic, _, _, let id) in actions {
                #expect(topic.bytes == Vectors.dataTopic)
                #expect(ids.insert(id).inserted, "delivered twice")
            }
        }
    }
}
