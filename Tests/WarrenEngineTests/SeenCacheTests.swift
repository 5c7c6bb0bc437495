import Testing
import WarrenTestSupport
@testable import WarrenEngine

@Suite(.computeLane) struct SeenCacheTests {
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

    /// The same through phases that grow the ring unwrapped (from empty) and wrapped (after
    /// expiry moved its head), fill slots its array does not hold yet, and shrink it after idle
    /// gaps (a FIFO model: ids expire and are evicted in insertion order).
    @Test func matchesReferenceModelAcrossGrowthAndShrink() {
        var rng = SeededGenerator(seed: 11)
        let cap = 20_000, window: UInt64 = 4000
        var c = SeenCache(capacity: cap, window: window, seed: 5)
        var fifo: [(MessageID, UInt64)] = [], first = 0, live: [MessageID: Int] = [:]
        var now: UInt64 = 0, next: UInt64 = 0, checked = 0
        for phase in 0..<24 {
            // 1 … 7 ids per tick; after every third phase an idle gap that expires everything.
            let perTick = 1 + Int(rng.next(upperBound: UInt64(7))), ticks = 200 + Int(rng.next(upperBound: UInt64(3000)))
            for _ in 0..<ticks {
                now += 1
                while first < fifo.count && now - fifo[first].1 >= window {
                    if live[fifo[first].0] == first { live[fifo[first].0] = nil }
                    first += 1
                }
                for _ in 0..<perTick {
                    // Mostly new ids, sometimes one seen before (live or expired).
                    let x: MessageID
                    if next > 0 && rng.next(upperBound: UInt64(4)) == 0 { x = id(rng.next(upperBound: next)) } else { x = id(next); next += 1 }
                    let present = live[x] != nil
                    let r: Bool = c.insert(x, now: now)
                    if r == present { Issue.record("phase \(phase): insert of a \(present ? "live" : "new") id returned \(r)"); return }
                    if !present {
                        if fifo.count - first == cap { live[fifo[first].0] = nil; first += 1 }
                        live[x] = fifo.count
                        fifo.append((x, now))
                    }
                    if c.count != fifo.count - first { Issue.record("phase \(phase): count \(c.count) ≠ \(fifo.count - first)"); return }
                }
            }
            // Every live id is found.
            for k in first..<fifo.count where !c.has(fifo[k].0) { Issue.record("phase \(phase): live id lost"); return }
            checked += fifo.count - first
            if phase % 3 == 2 { now += window + rng.next(upperBound: window) }
        }
        #expect(checked > 100_000)
        #expect(c.relayouts > 10)
    }

    @Test func compactMemory() {
        var c = SeenCache(capacity: 65_536, window: .max)
        #expect(c.approximateBytes < 4096)   // grows on demand
        for n in 0..<65_536 { c.insert(id(UInt64(n)), now: 0) }
        #expect(c.approximateBytes < 65_536 * 40)
    }
}

@Suite(.computeLane) struct SeenCacheGrowthTests {
    /// Ids at a rate rising from 100 to 500 per second over 10 minutes, with the presets' window,
    /// bound and hold: the storage grows with the live ids in a number of whole-structure passes
    /// logarithmic in the bound, not one pass per insert. (Growing one slot at a time and
    /// re-laying the ring whenever it had wrapped made 38,406 passes here.)
    @Test func risingRateRelaysOutLogarithmically() {
        let config = EngineConfig.local(endpoint: "tcp://127.0.0.1:7001", seeds: [])
        let bound = 2 * (Int.bitWidth - config.seenCapacity.leadingZeroBitCount)   // 40
        var c = SeenCache(capacity: config.seenCapacity, window: config.seenWindow, seed: 1)
        var times: [UInt64] = [], live = 0, inserts = 0, last = MessageID(hi: 0, lo: 0), end: UInt64 = 0
        SeenCache.risingRate { id, now in
            guard c.insert(id, now: now, hold: config.seenHold) == .inserted else { Issue.record("not inserted"); return false }
            times.append(now)
            while now - times[live] >= config.seenWindow { live += 1 }
            inserts += 1; last = id; end = now
            guard c.count == times.count - live else { Issue.record("count \(c.count) ≠ \(times.count - live)"); return false }
            return c.relayouts <= bound   // stop as soon as the bound is broken
        }
        #expect(c.relayouts <= bound)
        #expect(inserts > 170_000)
        #expect(c.count > 50_000)
        #expect(c.has(last))
        do { let r = c.insert(last, now: end, hold: config.seenHold); #expect(r == .duplicate) }
        // Idle: everything expires and the storage shrinks back (one pass).
        let passes = c.relayouts
        c.expire(now: end + config.seenWindow)
        #expect(c.count == 0)
        #expect(c.relayouts == passes + 1)
        #expect(c.approximateBytes < 4096)
    }

    /// A steady rate, once the window is full, makes no whole-structure pass at all.
    @Test func steadyRateMakesNoPass() {
        let config = EngineConfig.local(endpoint: "tcp://127.0.0.1:7001", seeds: [])
        var c = SeenCache(capacity: config.seenCapacity, window: config.seenWindow, seed: 1)
        var passes: Int?
        SeenCache.risingRate(from: 300, to: 300, over: 3 * config.seenWindow) { id, now in
            if now >= config.seenWindow && passes == nil { passes = c.relayouts }
            return c.insert(id, now: now)
        }
        #expect(c.relayouts == passes)
        #expect(c.count >= 35_000 && c.count <= 36_001)
    }

    /// Falling and rising traffic: the ring shrinks once the live ids fall below an eighth of it,
    /// grows again, and lookups stay right across both.
    @Test func shrinksAndGrowsBack() {
        var c = SeenCache(capacity: 100_000, window: 1000)
        for n in 0..<4096 { c.insert(id(UInt64(n)), now: 0) }
        for n in 4096..<4196 { c.insert(id(UInt64(n)), now: 500) }
        let full = c.approximateBytes, passes = c.relayouts
        c.expire(now: 1000)   // the first 4096 go
        #expect(c.count == 100)
        #expect(c.relayouts == passes + 1)
        #expect(c.approximateBytes < full / 8)
        for n in 4096..<4196 { #expect(c.has(id(UInt64(n)))) }
        #expect(!c.has(id(0)))
        for n in 4196..<8292 { let r = c.insert(id(UInt64(n)), now: 1200); #expect(r) }
        #expect(c.count == 4196)
        for n in 4096..<8292 { #expect(c.has(id(UInt64(n)))) }
        for n in 4096..<8292 { let r = !c.insert(id(UInt64(n)), now: 1300); #expect(r) }
    }

    func id(_ n: UInt64) -> MessageID { MessageID(hi: n &* 0x9E37_79B9_7F4A_7C15, lo: n) }
}
