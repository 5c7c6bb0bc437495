import Testing
import WarrenEngine

@Suite struct SeenCacheTests {
    func id(_ n: UInt64) -> MessageID { MessageID(hi: n &* 0x9E37_79B9_7F4A_7C15, lo: n) }

    @Test func insertAndLookup() {
        var c = SeenCache(capacity: 100, window: 1000)
        #expect(c.insert(id(1), now: 0))
        #expect(!c.insert(id(1), now: 1))
        #expect(c.contains(id(1), now: 2))
        #expect(!c.contains(id(2), now: 2))
        #expect(c.count == 1)
    }

    @Test func boundEvictsOldest() {
        var c = SeenCache(capacity: 8, window: .max)
        for n in 0..<8 { #expect(c.insert(id(UInt64(n)), now: UInt64(n))) }
        #expect(c.count == 8)
        #expect(c.insert(id(100), now: 10))
        #expect(c.count == 8)
        #expect(!c.contains(id(0), now: 10))       // the oldest went
        for n in 1..<8 { #expect(c.contains(id(UInt64(n)), now: 10)) }
        // An evicted id is new again.
        #expect(c.insert(id(0), now: 11))
        #expect(!c.contains(id(1), now: 11))
    }

    @Test func windowExpires() {
        var c = SeenCache(capacity: 1000, window: 100)
        c.insert(id(1), now: 0)
        c.insert(id(2), now: 50)
        #expect(c.contains(id(1), now: 99))
        #expect(!c.contains(id(1), now: 100))  // age ≥ window: forgotten
        #expect(c.contains(id(2), now: 100))
        #expect(c.count == 1)
        #expect(!c.contains(id(2), now: 150))
        #expect(c.count == 0)
        #expect(c.insert(id(1), now: 151))
    }

    /// Random workload against a simple reference model (growth, wrap-around, rehash, deletion).
    @Test func matchesReferenceModel() {
        var rng = SeededGenerator(seed: 3)
        let cap = 300, window: UInt64 = 5000
        var c = SeenCache(capacity: cap, window: window)
        var model: [(MessageID, UInt64)] = []
        var now: UInt64 = 0
        for _ in 0..<40_000 {
            now += rng.next(upperBound: 20)
            let x = id(rng.next(upperBound: 1500))
            model.removeAll { now - $0.1 >= window }
            let present = model.contains { $0.0 == x }
            #expect(c.insert(x, now: now) == !present)
            if !present {
                if model.count == cap { model.removeFirst() }
                model.append((x, now))
            }
            #expect(c.count == model.count)
        }
        for (x, _) in model { #expect(c.contains(x, now: now)) }
    }

    @Test func compactMemory() {
        var c = SeenCache(capacity: 65_536, window: .max)
        #expect(c.approximateBytes < 4096)   // grows on demand
        for n in 0..<65_536 { c.insert(id(UInt64(n)), now: 0) }
        #expect(c.approximateBytes < 65_536 * 40)
    }
}
