import Testing
import WarrenTestSupport
@testable import WarrenEngine
import WarrenSimulator

/// BATCH (type 6, docs/PROTOCOL.md §2 "Batches") and the driver's coalescer.
@Suite(.computeLane) struct BatchTests {
    /// DATA "hello" (the DATA vector) and DATA "world", both ttl 16, batched by `Vectors.from`.
    static let vector = """
        010600000102030405060708 0011 01011000010203040506070868656c6c6f \
        0011 010110000102030405060708776f726c64
        """
    static let world = "010110000102030405060708776f726c64"

    @Test func batchVector() {
        let out = FrameBatch.encode([hex(Vectors.data), hex(Self.world)], from: Vectors.from)
        #expect(hexString(out) == Self.vector.filter { !$0.isWhitespace })
        guard case .success(let entries) = FrameBatch.decode(hex(Self.vector)) else { Issue.record("not a batch"); return }
        #expect(entries == [hex(Vectors.data), hex(Self.world)])
        // The one-frame decoder names a batch instead of calling it an unknown type.
        #expect(throws: FrameError.batchBody) { try Frame.decode(topic: Vectors.dataTopic, body: hex(Self.vector)) }
    }

    @Test func malformedBatchesAreRejectedWhole() {
        func expectError(_ body: [UInt8], _ e: FrameError, sourceLocation: SourceLocation = #_sourceLocation) {
            guard case .failure(let got) = FrameBatch.decode(body) else {
                Issue.record("accepted \(hexString(body))", sourceLocation: sourceLocation); return
            }
            #expect(got == e, sourceLocation: sourceLocation)
        }
        let good = hex(Self.vector)
        let header = Array(good[0..<12])
        expectError(header, .emptyBatch)
        expectError(Array(good.dropLast()), .truncated)                  // last entry one byte short
        expectError(header + [0x00], .truncated)                          // half a length
        expectError(header + [0x00, 0x05, 1, 6, 0, 0, 0], .shortHeader(5)) // entry shorter than a header
        let nested = FrameBatch.encode([hex(Vectors.data)], from: Vectors.from)
        expectError(FrameBatch.encode([nested], from: Vectors.from), .nestedBatch)
        var zeroFrom = good; for k in 4..<12 { zeroFrom[k] = 0 }
        expectError(zeroFrom, .zeroNodeID)
        var ttl = good; ttl[2] = 1
        expectError(ttl, .controlTTLOrHops)
        var version = good; version[0] = 2
        expectError(version, .unsupportedVersion(2))
        expectError(header + [UInt8](repeating: 0, count: Frame.maxBodyBytes), .oversized(Frame.maxBodyBytes + 12))
    }

    /// The engine hands each entry to the ordinary frame path: valid entries are handled (and
    /// counted as frames), an invalid entry is malformed on its own, a broken batch is dropped whole.
    @Test func engineReceivesEachEntry() {
        var net = InMemoryNetwork.build(n: 1, edges: { _ in [] })
        let t = topic(5)
        net.subscribe(0, t)
        net.run(until: 100 * msNS)
        let sender = NodeID(raw: 0x0102_0304_0506_0708)
        let a = Frame.encodeData(envelope: [1, 2, 3], ttl: 4, hops: 0, from: sender)
        let b = Frame.encodeData(envelope: [4, 5, 6], ttl: 4, hops: 0, from: sender)
        var badTTL = Frame.encodeData(envelope: [7], ttl: 4, hops: 0, from: sender); badTTL[2] = 0
        let before = net.engine(0)!.stats
        net.inject(to: 0, topic: t.bytes, body: FrameBatch.encode([a, badTTL, b, a], from: sender))
        let s = net.engine(0)!.stats
        #expect(net.nodes[0].deliveries.map(\.envelope) == [[1, 2, 3], [4, 5, 6]])
        #expect(s.framesIn - before.framesIn == 4 && s.batchesIn - before.batchesIn == 1)
        #expect(s.malformed - before.malformed == 1)
        #expect(s.duplicates - before.duplicates == 1)
        // A batch that is cut short delivers nothing and counts one malformed frame.
        let c = Frame.encodeData(envelope: [9, 9], ttl: 4, hops: 0, from: sender)
        net.inject(to: 0, topic: t.bytes, body: Array(FrameBatch.encode([c, c], from: sender).dropLast()))
        let after = net.engine(0)!.stats
        #expect(net.nodes[0].deliveries.count == 2)
        #expect(after.malformed - s.malformed == 1 && after.framesIn - s.framesIn == 1)
    }

    @Test func coalescerKeepsPerLinkOrderAndSplitsOnTopicAndSize() {
        let l1 = LinkID(raw: 11), l2 = LinkID(raw: 12)
        let t1 = topic(1), t2 = topic(2)
        func body(_ n: UInt8, _ size: Int = 20) -> [UInt8] { Frame.encodeData(envelope: [UInt8](repeating: n, count: size - 12), ttl: 3, hops: 0, from: Vectors.from) }
        var c = FrameCoalescer(from: Vectors.from, limit: 200)
        c.add(link: l1, topic: t1, body: body(1))
        c.add(link: l2, topic: t1, body: body(2))
        c.add(link: l1, topic: t1, body: body(3))
        c.add(link: l1, topic: t2, body: body(4))       // topic changes: l1's run of (1, 3) leaves
        #expect(c.ready.count == 1 && c.ready[0].link == l1 && c.ready[0].frames == 2)
        c.add(link: l1, topic: t2, body: body(5, 150))  // 12 + 22 + 152 ≤ 200: joins
        c.add(link: l1, topic: t2, body: body(6))       // would pass 200: (4, 5) leaves first
        c.add(link: l2, topic: t1, body: body(7, 250))  // larger than the limit: l2's run, then itself
        c.flush()
        let out = c.ready.map { m -> (LinkID, Topic, [[UInt8]]) in
            if m.frames == 1 { return (m.link, m.topic, [m.body]) }
            guard case .success(let e) = FrameBatch.decode(m.body) else { return (m.link, m.topic, []) }
            return (m.link, m.topic, e)
        }
        #expect(out.map(\.0) == [l1, l1, l2, l2, l1])
        #expect(out.map(\.1) == [t1, t2, t1, t1, t2])
        #expect(out.map { $0.2.map { $0[12] } } == [[1, 3], [4, 5], [2], [7], [6]])
        #expect(c.batches == 2 && c.batchedFrames == 4)
        for m in c.ready { #expect(m.body.count <= 250) }
    }

    /// Random frames, links and topics: split(coalesce(x)) gives back every frame of every link
    /// in order, and no batch passes the limit.
    @Test func coalescedThenSplitIsTheIdentity() {
        var rng = SeededGenerator(seed: 42)
        for round in 0..<200 {
            let limit = 64 + Int(rng.next(upperBound: UInt64(4000)))
            var c = FrameCoalescer(from: Vectors.from, limit: limit)
            var expected: [UInt64: [[UInt8]]] = [:], got: [UInt64: [[UInt8]]] = [:]
            for _ in 0..<Int(rng.next(upperBound: UInt64(300))) {
                let link = LinkID(raw: 1 + rng.next(upperBound: UInt64(4)))
                let t = topic(UInt8(1 + rng.next(upperBound: UInt64(3))))
                let b = Frame.encodeData(envelope: envelope(&rng, 1 + Int(rng.next(upperBound: UInt64(300)))), ttl: 2, hops: 0, from: Vectors.from)
                expected[link.raw, default: []].append(t.bytes + b)
                c.add(link: link, topic: t, body: b)
                if rng.next(upperBound: UInt64(50)) == 0 { c.flush() }
            }
            c.flush()
            for m in c.ready {
                if m.frames > 1 { #expect(m.body.count <= limit, "round \(round)") }
                let entries: [[UInt8]]
                if m.body[1] == FrameBatch.typeCode {
                    guard case .success(let e) = FrameBatch.decode(m.body) else { Issue.record("bad batch"); return }
                    #expect(e.count == m.frames)
                    entries = e
                } else { entries = [m.body] }
                got[m.link.raw, default: []] += entries.map { m.topic.bytes + $0 }
            }
            #expect(got == expected, "round \(round)")
        }
    }
}
