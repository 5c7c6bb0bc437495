import Foundation
import Testing
import WarrenTestSupport
@testable import WarrenEngine

/// A bounded fuzz campaign over the frame decoder and the engine: structure-aware mutations of
/// valid frames (bit flips, byte writes, inserts, deletes, truncations, splices, length-field
/// edits, wrong topic lengths) plus pure garbage. Properties: nothing traps; every input is
/// either decoded or counted as malformed (over-TTL DATA too); good traffic is still delivered afterwards.
/// `WARREN_FUZZ_ITERATIONS` sets the number of inputs (default 100,000; see docs/SECURITY.md).
@Suite(.computeLane) struct FuzzCampaignTests {
    static var iterations: Int {
        ProcessInfo.processInfo.environment["WARREN_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 100_000
    }

    static func mutate(_ input: [UInt8], _ seeds: [[UInt8]], _ rng: inout SeededGenerator) -> [UInt8] {
        var b = input
        let edits = 1 + Int(rng.next(upperBound: UInt64(4)))
        for _ in 0..<edits {
            switch rng.next(upperBound: UInt64(9)) {
            case 0 where !b.isEmpty:   // flip one bit
                let i = Int(rng.next(upperBound: UInt64(b.count)))
                b[i] ^= UInt8(1) << UInt8(rng.next(upperBound: UInt64(8)))
            case 1 where !b.isEmpty:   // write an interesting byte
                let i = Int(rng.next(upperBound: UInt64(b.count)))
                b[i] = [0, 1, 0x7F, 0x80, 0xFF, 32, 255, UInt8.random(in: 0...255, using: &rng)][Int(rng.next(upperBound: UInt64(8)))]
            case 2:                    // insert random bytes
                let i = Int(rng.next(upperBound: UInt64(b.count + 1)))
                b.insert(contentsOf: (0..<Int(1 + rng.next(upperBound: UInt64(8)))).map { _ in UInt8.random(in: 0...255, using: &rng) }, at: i)
            case 3 where !b.isEmpty:   // delete a range
                let i = Int(rng.next(upperBound: UInt64(b.count)))
                b.removeSubrange(i..<min(b.count, i + Int(1 + rng.next(upperBound: UInt64(8)))))
            case 4 where !b.isEmpty:   // truncate
                b.removeLast(Int(rng.next(upperBound: UInt64(b.count))))
            case 5:                    // splice with another seed
                let other = seeds[Int(rng.next(upperBound: UInt64(seeds.count)))]
                let cut = Int(rng.next(upperBound: UInt64(b.count + 1)))
                let from = Int(rng.next(upperBound: UInt64(other.count + 1)))
                b = Array(b.prefix(cut)) + Array(other.suffix(from: from))
            case 6 where b.count > 13: // length fields of endpoints / peer counts (offsets past the header)
                let i = 12 + Int(rng.next(upperBound: UInt64(b.count - 12)))
                b[i] = UInt8.random(in: 0...255, using: &rng)
            case 7 where b.count >= 4: // header fields: version, type, ttl, hops
                b[Int(rng.next(upperBound: UInt64(4)))] = UInt8.random(in: 0...255, using: &rng)
            default:                   // duplicate a chunk
                if !b.isEmpty {
                    let i = Int(rng.next(upperBound: UInt64(b.count)))
                    b.append(contentsOf: b[i..<min(b.count, i + 16)])
                }
            }
        }
        return b
    }

    @Test func decoderAndEngineSurviveHostileInput() throws {
        var rng = SeededGenerator(seed: 0xF0221)
        var engine = GossipEngine(config: cfg(0), nodeID: NodeID(raw: 5))
        var actions = [Action]()
        engine.start(now: 0, rng: &rng, into: &actions)
        let local = topic(9)
        engine.subscribeLocal(local, into: &actions)
        actions.removeAll()
        let seeds = [hex(Vectors.data), hex(Vectors.hello), hex(Vectors.peers),
                     hex(Vectors.helloLeaf), hex(Vectors.bye)]
        let n = Self.iterations
        var decoded = 0, overTTL = 0
        for k in 0..<n {
            var body: [UInt8]
            if k % 16 == 15 {
                body = (0..<Int(rng.next(upperBound: UInt64(300)))).map { _ in UInt8.random(in: 0...255, using: &rng) }
            } else {
                body = Self.mutate(seeds[k % seeds.count], seeds, &rng)
            }
            var t: [UInt8]
            switch k % 7 {
            case 0: t = Array(repeating: 0, count: Int(rng.next(upperBound: UInt64(40))))   // wrong lengths
            case 1, 2: t = [UInt8](repeating: 0, count: 32)
            default: t = k % 3 == 0 ? local.bytes : Vectors.dataTopic
            }
            if body.count > 100_000 { body = Array(body.prefix(100_000)) }
            if let f = try? Frame.decode(topic: t, body: body) {
                decoded += 1
                if case .data = f.kind, f.ttl > engine.config.maxTTL, f.from != engine.nodeID { overTTL += 1 }
            }
            engine.receive(topic: t, body: body, now: UInt64(k) * 1000, rng: &rng, into: &actions)
            actions.removeAll(keepingCapacity: true)
        }
        #expect(engine.stats.framesIn == UInt64(n))
        // Undecodable input, plus decoded DATA frames above maxTTL (dropped by the engine).
        #expect(engine.stats.overTTL == UInt64(overTTL))
        #expect(overTTL > 0, "the campaign must produce over-TTL frames")
        #expect(engine.stats.malformed == UInt64(n - decoded + overTTL))
        #expect(engine.stats.malformed > UInt64(n / 4), "the campaign must mostly produce invalid input")

        // Good traffic is unaffected: a valid DATA frame for a local topic is delivered.
        let env = [UInt8]("an envelope after the storm \(n)".utf8)
        let good = Frame.encodeData(envelope: env, ttl: 3, hops: 0, from: NodeID(raw: 77))
        engine.receive(topic: local.bytes, body: good, now: UInt64(n) * 1000 + 1, rng: &rng, into: &actions)
        #expect(actions.contains { if case .deliver(_, let e, _, _) = $0 { return e == env }; return false })
    }
}

@Suite(.computeLane) struct OversizedFrameTests {
    @Test func oversizedBodiesAreMalformedAndCounted() {
        let big = Frame.encodeData(envelope: [UInt8](repeating: 7, count: Frame.maxBodyBytes), ttl: 2, hops: 0, from: NodeID(raw: 9))
        #expect(throws: FrameError.oversized(big.count)) { try Frame.decode(topic: topic(1).bytes, body: big) }
        var rng = SeededGenerator(seed: 1)
        var e = GossipEngine(config: cfg(0), nodeID: NodeID(raw: 1))
        var actions = [Action]()
        e.start(now: 0, rng: &rng, into: &actions)
        e.subscribeLocal(topic(1), into: &actions)
        e.receive(topic: topic(1).bytes, body: big, now: 1, rng: &rng, into: &actions)
        #expect(e.stats.malformed == 1 && e.stats.delivered == 0)
        e.publish(topic: topic(1), envelope: [UInt8](repeating: 1, count: Frame.maxBodyBytes), ttl: nil, now: 2, rng: &rng, into: &actions)
        #expect(e.stats.malformed == 2 && e.stats.published == 0)
        // the largest allowed envelope still passes
        let ok = Frame.encodeData(envelope: [UInt8](repeating: 3, count: Frame.maxBodyBytes - Frame.headerSize), ttl: 2, hops: 0, from: NodeID(raw: 9))
        #expect((try? Frame.decode(topic: topic(1).bytes, body: ok)) != nil)
    }
}
