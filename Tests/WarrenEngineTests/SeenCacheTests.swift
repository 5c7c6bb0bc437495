import Testing
@testable import WarrenEngine

@Suite struct SeenCacheTests {
    func id(_ n: UInt64) -> MessageID { MessageID(hi: n &* 0x9E37_79B9_7F4A_7C15, lo: n) }

    @Test func insertAndLookup() {
        var c = SeenCache(capacity: 100, window: 1000)
        do { let r = c.insert(id(1), now: 0); #expect(r) }
        do { let r = !c.insert(id(1), now: 1); #expect(r) }
        do { let r = c.contains(id(1), now: 2); #expect(r) }
        do { let r = !c.contains(id(2), now: 2); #expect(r) }
        #expect(c.count == 1)
    }

    @Test func boundEvictsOldest() {
        var c = SeenCache(capacity: 8, window: .max)
        for n in 0..<8 { let r = c.insert(id(UInt64(n)), now: UInt64(n)); #expect(r) }
        #expect(c.count == 8)
        do { let r = c.insert(id(100), now: 10); #expect(r) }
        #expect(c.count == 8)
        do { let r = !c.contains(id(0), now: 10); #expect(r) }       // the oldest went
        for n in 1..<8 { let r = c.contains(id(UInt64(n)), now: 10); #expect(r) }
        // An evicted id is new again.
        do { let r = c.insert(id(0), now: 11); #expect(r) }
        do { let r = !c.contains(id(1), now: 11); #expect(r) }
    }

    @Test func windowExpires() {
        var c = SeenCache(capacity: 1000, window: 100)
        c.insert(id(1), now: 0)
        c.insert(id(2), now: 50)
        do { let r = c.contains(id(1), now: 99); #expect(r) }
        do { let r = !c.contains(id(1), now: 100); #expect(r) }  // age ≥ window: forgotten
        do { let r = c.contains(id(2), now: 100); #expect(r) }
        #expect(c.count == 1)
        do { let r = !c.contains(id(2), now: 150); #expect(r) }
        #expect(c.count == 0)
        do { let r = c.insert(id(1), now: 151); #expect(r) }
    }

    /// Random workload against a simple reference model (growth, wrap-around, rehash, deletion).
    /// Against a list model; also with the index's distance field narrowed so that entries
    /// saturate it and deletions must read their home bucket from the ring.
    @Test(arguments: [7, 2, 1, 0] as [UInt32]) func matchesReferenceModel(distanceBits: UInt32) {
        var rng = SeededGenerator(seed: 3)
        let cap = 300, window: UInt64 = 5000
        var c = SeenCache(capacity: cap, window: window, seed: 9, distanceBitsLimit: distanceBits)
        var model: [(MessageID, UInt64)] = []
        var now: UInt64 = 0
        for _ in 0..<40_000 {
            now += rng.next(upperBound: 20)
            let x = id(rng.next(upperBound: 1500))
            model.removeAll { now - $0.1 >= window }
            let present = model.contains { $0.0 == x }
            do { let r = c.insert(x, now: now) == !present; #expect(r) }
            if !present {
                if model.count == cap { model.removeFirst() }
                model.append((x, now))
            }
            #expect(c.count == model.count)
        }
        for (x, _) in model { let r = c.contains(x, now: now); #expect(r) }
    }

    @Test func compactMemory() {
        var c = SeenCache(capacity: 65_536, window: .max)
        #expect(c.approximateBytes < 4096)   // grows on demand
        for n in 0..<65_536 { c.insert(id(UInt64(n)), now: 0) }
        #expect(c.approximateBytes < 65_536 * 40)
    }
}
