// The seen cache's rising-rate workload: the test that counts its re-layouts and the
// `warren-bench seen` micro-benchmark run the same one.

extension SeenCache {
    /// Calls `body(id, now)` for new, distinct message ids arriving at a rate that rises
    /// linearly from `fromRate` to `toRate` ids per second over `duration` ns (virtual time
    /// from 0). With the defaults: about 180,000 ids over 10 minutes, and (with a 120 s window)
    /// up to about 58,000 of them live at once. `body` returns false to stop early.
    package static func risingRate(from fromRate: Double = 100, to toRate: Double = 500,
                                   over duration: UInt64 = 600_000_000_000,
                                   _ body: (MessageID, UInt64) -> Bool) {
        var now: UInt64 = 0, n: UInt64 = 0
        while now < duration {
            n += 1
            guard body(MessageID(hi: mix64(n), lo: mix64(n ^ 0x5EE9_CAC4E)), now) else { return }
            let rate = fromRate + (toRate - fromRate) * Double(now) / Double(duration)
            now += UInt64(1e9 / rate)
        }
    }

    /// What `timeRisingRate` measured.
    package struct InsertTiming: Sendable {
        /// Inserts made (all of new ids).
        package var inserts = 0
        /// Time spent inside `insert`, in all, and in the slowest single insert.
        package var total = Duration.zero
        package var worst = Duration.zero
        /// Whole-structure passes (`relayouts`) during the run.
        package var relayouts = 0
        /// Most ids held at once, and `approximateBytes` at the end.
        package var peakCount = 0
        package var bytes = 0
    }

    /// Runs `risingRate` with defaults into a cache sized by `config` (capacity, window, and
    /// the hold the engine passes to `insert`), timing each insert with `clock`.
    package static func timeRisingRate<C: Clock>(config: EngineConfig, clock: C) -> InsertTiming
    where C.Duration == Duration {
        var cache = SeenCache(capacity: config.seenCapacity, window: config.seenWindow, seed: 1)
        var t = InsertTiming()
        risingRate { id, now in
            let t0 = clock.now
            let r = cache.insert(id, now: now, hold: config.seenHold)
            let d = t0.duration(to: clock.now)
            precondition(r == .inserted)
            t.inserts += 1
            t.total += d
            if d > t.worst { t.worst = d }
            if cache.count > t.peakCount { t.peakCount = cache.count }
            return true
        }
        t.relayouts = cache.relayouts
        t.bytes = cache.approximateBytes
        return t
    }
}
