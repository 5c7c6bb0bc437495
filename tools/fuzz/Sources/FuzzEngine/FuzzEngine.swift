// libFuzzer target: the gossip engine fed arbitrary inputs. One engine (node 0 of a three-node
// in-memory overlay, both neighbours up, one local topic) is prepared once; every input runs on
// a copy of it (the engine is a value). The input is a program of operations (docs/FUZZING.md):
//   0 receive: selector, u16 length, body. Selector bits 0–1 pick the topic (control, local,
//     another data topic, or 32 input bytes), bits 2–3 overwrite the body's `from` (keep,
//     neighbour 1, neighbour 2, ourselves).
//   1 tick: advance the clock by byte × 10 ms and tick.
//   2 publish: topic selector, ttl (0 = default), u8 length, envelope.
//   3 link ready: the link at index byte % #links.
//   4 valid DATA: from neighbour 1 or 2, ttl byte, u8 length, envelope (exercises the flood path).
// Properties: nothing traps; every frame the engine sends decodes, DATA it sends never exceeds
// maxTTL and names this node as `from`; control frames go on the control topic; a message is
// delivered at most once within the seen window and only for a local topic; counters never
// decrease; an undecodable input raises `malformed` by one, an over-TTL DATA raises `overTTL`.
import FuzzSupport
import Warren
import WarrenSimulator

struct Fixture: Sendable {
    let engine: GossipEngine
    let neighbours: [NodeID]
    let local: Topic
    let other: Topic
}

let fixture: Fixture = {
    func topic(_ n: UInt8) -> Topic { Topic(bytes: [UInt8](repeating: n, count: 31) + [1])! }
    var net = InMemoryNetwork(seed: 7)
    for i in 0..<3 {
        var c = EngineConfig.local(endpoint: "tcp://127.0.0.1:\(7000 + i)",
                                   seeds: i == 0 ? ["tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002"] : [])
        c.targetDegree = 0
        net.addNode(config: c)
    }
    net.subscribe(0, topic(1))
    net.run(until: 1_000_000_000)
    let e = net.engine(0)!
    require(e.neighbours.count == 2, "fixture: neighbours did not come up")
    return Fixture(engine: e, neighbours: [net.engine(1)!.nodeID, net.engine(2)!.nodeID], local: topic(1), other: topic(2))
}()

struct Cursor {
    let p: UnsafeBufferPointer<UInt8>
    var i = 0
    var atEnd: Bool { i >= p.count }
    mutating func u8() -> UInt8 { defer { i += 1 }; return i < p.count ? p[i] : 0 }
    mutating func bytes(_ n: Int) -> [UInt8] {
        let k = max(0, min(n, p.count - i))
        defer { i += k }
        return Array(p[i..<(i + k)])
    }
}

/// The libFuzzer callback (see Main.swift).
func fuzzEngine(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var c = Cursor(p: UnsafeBufferPointer(start: data, count: size))
    var e = fixture.engine
    var rng = SeededGenerator(seed: 1)
    var now: UInt64 = 1_000_000_000
    var actions: [Action] = []
    var delivered: [MessageID: UInt64] = [:]
    let maxTTL = e.config.maxTTL

    func topic(_ sel: UInt8, _ c: inout Cursor) -> [UInt8] {
        switch sel & 3 {
        case 0: return Topic.control.bytes
        case 1: return fixture.local.bytes
        case 2: return fixture.other.bytes
        default: return c.bytes(32)
        }
    }

    var steps = 0
    while !c.atEnd && steps < 512 {
        steps += 1
        let before = e.stats
        actions.removeAll(keepingCapacity: true)
        now &+= 1_000
        switch c.u8() % 5 {
        case 0:
            let sel = c.u8()
            let t = topic(sel, &c)
            let n = Int(c.u8()) << 8 | Int(c.u8())
            var body = c.bytes(n)
            let fromSel = (sel >> 2) & 3
            if fromSel != 0, body.count >= 12 {
                let id = fromSel == 3 ? e.nodeID : fixture.neighbours[Int(fromSel) - 1]
                for k in 0..<8 { body[4 + k] = UInt8(truncatingIfNeeded: id.raw >> (56 - 8 * k)) }
            }
            let decoded = Result { () throws(FrameError) -> Frame in try Frame.decode(topic: t, body: body) }
            e.receive(topic: t, body: body, now: now, rng: &rng, into: &actions)
            if case .failure(.batchBody) = decoded {
                // A BATCH: each entry is one frame; a batch that does not split is one malformed frame.
                require(e.stats.batchesIn == before.batchesIn + 1, "batchesIn")
                switch FrameBatch.decode(body) {
                case .success(let entries):
                    require(e.stats.framesIn == before.framesIn + UInt64(entries.count), "framesIn of a batch")
                case .failure:
                    require(e.stats.framesIn == before.framesIn + 1 && e.stats.malformed == before.malformed + 1,
                            "a broken batch not counted once")
                }
            } else {
                require(e.stats.framesIn == before.framesIn + 1, "framesIn")
                switch decoded {
                case .failure:
                    require(e.stats.malformed == before.malformed + 1, "undecodable input not counted")
                case .success(let f):
                    if case .data = f.kind, f.ttl > maxTTL, f.from != e.nodeID, e.stats.rateLimited == before.rateLimited {
                        require(e.stats.overTTL == before.overTTL + 1 && e.stats.malformed == before.malformed + 1,
                                     "over-TTL DATA not dropped and counted")
                        require(actions.isEmpty, "over-TTL DATA caused actions")
                    } else {
                        require(e.stats.malformed == before.malformed && e.stats.overTTL == before.overTTL,
                                     "a valid frame was counted as malformed")
                    }
                }
            }
        case 1:
            now &+= UInt64(c.u8()) * 10_000_000
            e.tick(now: now, rng: &rng, into: &actions)
        case 2:
            let sel = c.u8()
            let tb = topic(sel, &c)
            let ttl = c.u8()
            let env = c.bytes(Int(c.u8()))
            if let t = Topic(bytes: tb) {
                e.publish(topic: t, envelope: env, ttl: ttl == 0 ? nil : ttl, now: now, rng: &rng, into: &actions)
            }
        case 3:
            let links = e.linkIDs
            let k = Int(c.u8())
            if !links.isEmpty { e.linkReady(links[k % links.count], now: now, rng: &rng, into: &actions) }
        default:
            let from = fixture.neighbours[Int(c.u8() & 1)]
            let ttl = c.u8()
            var env = c.bytes(Int(c.u8()))
            if env.isEmpty { env = [0] }
            let t = ttl & 0x80 == 0 ? fixture.local : fixture.other
            let body = Frame.encodeData(envelope: env, ttl: max(1, ttl & 0x1F), hops: 0, from: from)
            e.receive(topic: t.bytes, body: body, now: now, rng: &rng, into: &actions)
        }
        check(actions, engine: e, now: now, delivered: &delivered)
        checkMonotonic(before, e.stats)
    }
    return 0
}

func check(_ actions: [Action], engine e: GossipEngine, now: UInt64, delivered: inout [MessageID: UInt64]) {
    for a in actions {
        switch a {
        case .send(let links, let out):
            require(!links.isEmpty, "send to no link")
            let f: Frame
            do { f = try Frame.decode(topic: out.topic.bytes, body: out.body) } catch {
                fatalError("the engine sent an undecodable frame: \(error)")
            }
            require(f.from == e.nodeID, "sent frame does not name us as from")
            if case .data(let t, _, _) = f.kind {
                require(!t.isControl && f.ttl >= 1 && f.ttl <= e.config.maxTTL, "sent DATA ttl \(f.ttl)")
            } else {
                require(out.topic.isControl, "control frame on a data topic")
            }
        case .deliver(let topic, let envelope, _, let id):
            require(e.subscribedTopics.contains(topic), "delivered a topic we do not subscribe")
            require(id == MessageID(envelope: envelope), "delivered id is not the envelope's")
            if let t = delivered[id] {
                require(now &- t >= e.config.seenWindow, "delivered twice within the seen window")
            }
            delivered[id] = now
        case .connect(let l, let endpoint):
            require(l.raw != 0 && Frame.isEncodable(endpoint: endpoint), "bad connect")
        default:
            break
        }
    }
}

func checkMonotonic(_ a: EngineStats, _ b: EngineStats) {
    require(b.published >= a.published && b.delivered >= a.delivered && b.relayed >= a.relayed
                 && b.duplicates >= a.duplicates && b.ttlExpired >= a.ttlExpired && b.overTTL >= a.overTTL
                 && b.malformed >= a.malformed && b.framesIn >= a.framesIn && b.framesOut >= a.framesOut
                 && b.maxHops >= a.maxHops && b.rateLimited >= a.rateLimited, "a counter decreased")
}
