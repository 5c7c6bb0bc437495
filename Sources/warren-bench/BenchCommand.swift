import ArgumentParser
import CZeroMQ
import Foundation
import Synchronization
import Warren
import WarrenCLI
import WarrenConformance
import WarrenMeasure

func typicalCredentials() -> SignalingMessage {
    var m = SignalingMessage()
    m.credentials.ufrag = "Kq3nLpW2vXz9"
    m.credentials.pwd = "rT7yHb2mQs8dFk4jWn6pZc1x"
    m.credentials.needCreds = true
    return m
}

struct CryptoBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "crypto",
        abstract: "Seal+open round trips per second: shared-key cache vs X25519 per message.",
        discussion: "Both paths run --rounds times, interleaved, in this run; the medians are compared.")
    @Option(help: "Round trips with the cache, per round.") var cached: Int = 100_000
    @Option(help: "Round trips without the cache (what crypto_box_easy / Go's box.Seal do), per round.") var uncached: Int = 2_000
    @Option(help: "Interleaved rounds; medians are reported.") var rounds: Int = 7

    func validate() throws {
        guard cached >= 1, uncached >= 1 else { throw ValidationError("--cached and --uncached must be at least 1") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
    }

    func run() throws {
        let a = PrivateKey.generate(), b = PrivateKey.generate()
        let msg = typicalCredentials()
        func measure(_ codec: EnvelopeCodec, _ n: Int) throws -> Double {
            let t0 = ContinuousClock.now
            for _ in 0..<n {
                let bytes = try codec.sealBytes(msg, from: a, to: b.publicKey)
                let (_, m) = try codec.open(bytes, with: b)
                precondition(m.credentials.needCreds)
            }
            return Double(n) / seconds(ContinuousClock.now - t0)
        }
        let fastCodec = EnvelopeCodec(cachesSharedKeys: true), slowCodec = EnvelopeCodec(cachesSharedKeys: false)
        _ = try measure(fastCodec, 2000); _ = try measure(slowCodec, 100)   // warm-up
        var fast: [Double] = [], slow: [Double] = []
        for _ in 0..<max(1, rounds) {
            fast.append(try measure(fastCodec, cached))
            slow.append(try measure(slowCodec, uncached))
        }
        let f = median(fast), sl = median(slow)
        let envelopeSize = try EnvelopeCodec.shared.sealBytes(msg, from: a, to: b.publicKey).count
        Output.line("warren-bench crypto — \(machineLine())")
        Output.line("  message: credentials, envelope \(envelopeSize) bytes; seal + serialize + parse + open + decode per round trip")
        Output.line("  \(rounds) interleaved rounds of \(cached) cached and \(uncached) uncached round trips; medians (min … max)")
        Output.line(String(format: "  cached shared key (crypto_box_beforenm once per pair): %9.0f round trips/s  (%.2f µs)  (%.0f … %.0f)",
                           f, 1e6 / f, fast.min()!, fast.max()!))
        Output.line(String(format: "  X25519 per message (baseline, crypto_box_easy):        %9.0f round trips/s  (%.2f µs)  (%.0f … %.0f)",
                           sl, 1e6 / sl, slow.min()!, slow.max()!))
        Output.line(String(format: "  speed-up: %.1f×   targets: ≥ 30× and ≥ 200,000/s → %@", f / sl,
                           (f / sl >= 30 && f >= 200_000) ? "met" : "NOT met"))
    }
}

/// A counter the driver thread bumps and the bench thread reads.
final class ArrivalCounter: Sendable {
    let value = Atomic<Int>(0)
    let times = Mutex<[UInt64]>([])
}

struct RelayBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "relay",
        abstract: "Envelopes/s through one relay (A → R → B, ZeroMQ on loopback) vs raw PUB→SUB.",
        discussion: """
            Raw and Warren runs alternate --rounds times in this run; the medians are compared. \
            A round ends when every envelope has arrived; envelopes still missing once none has \
            arrived for 10 s (5 s for raw ZeroMQ) are reported as lost.
            """)
    @Option(help: "Envelopes per round.") var count: Int = 200_000
    @Option(help: "Most envelopes in flight at once (the sender waits below this).") var window: Int = 20_000
    @Option(help: "Interleaved rounds; medians are reported.") var rounds: Int = 3

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be at least 1") }
        guard window >= 1 else { throw ValidationError("--window must be at least 1") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
    }

    func run() async throws {
        let a = PrivateKey.generate(), b = PrivateKey.generate()
        // Distinct envelopes (fresh nonces), sealed up front: the bench measures the overlay.
        let total = count * max(1, rounds)
        let envelopes = try (0..<total).map { _ in try EnvelopeCodec.shared.sealBytes(typicalCredentials(), from: a, to: b.publicKey) }
        let frameSize = 32 + 12 + envelopes[0].count

        let topic = Topic(b.publicKey)
        // The product (batching on) and, as a reference, the same overlay sending every frame in
        // its own message (`--no-batch`), each its own A → R → B line.
        let batched = try await RelayLine(topic: topic, batching: true)
        let unbatched = try await RelayLine(topic: topic, batching: false)
        var raws: [Double] = [], warrens: [Double] = [], singles: [Double] = []
        var rawLost = 0
        for round in 0..<max(1, rounds) {
            let raw = try rawPubSub(count: count, bodySize: frameSize - 32, window: window)
            raws.append(raw.rate); rawLost += raw.lost
            let slice = envelopes[(round * count)..<((round + 1) * count)]
            warrens.append(try await batched.round(slice, window: window))
            singles.append(try await unbatched.round(slice, window: window))
        }
        try await Task.sleep(for: .milliseconds(200))
        let (statsA, statsR) = await batched.stats()
        let drops = statsA.hwmDrops + statsR.hwmDrops
        let (unA, unR) = await unbatched.stats()
        /// Frames per ZeroMQ message on the A → R and R → B hops (BATCH coalescing).
        func perMessage(_ s: NodeStats) -> Double {
            let frames = Double(s.engine.framesOut), messages = frames - Double(s.batchedFrames) + Double(s.batchesSent)
            return messages > 0 ? frames / messages : 0
        }
        let lost = batched.lost, duplicates = batched.duplicates(total: total)
        let downs = batched.downs.value.load(ordering: .relaxed), unDowns = unbatched.downs.value.load(ordering: .relaxed)
        await batched.stop(); await unbatched.stop()
        let rate = median(warrens), rawRate = median(raws), single = median(singles)
        Output.line("warren-bench relay — \(machineLine())")
        Output.line("  \(rounds) interleaved rounds of \(count) envelopes of \(envelopes[0].count) bytes (ZeroMQ message \(frameSize) bytes), window \(window); medians (min … max)")
        Output.line(String(format: "  raw ZeroMQ PUB→SUB (baseline):  %9.0f msg/s (%.0f … %.0f)   lost %d", rawRate, raws.min()!, raws.max()!, rawLost))
        Output.line(String(format: "  Warren A → R → B:               %9.0f env/s (%.0f … %.0f)   lost %d   HWM drops %d   duplicates at B %d",
                     rate, warrens.min()!, warrens.max()!, lost, drops, max(0, duplicates)))
        if statsA.queueFull + unA.queueFull > 0 {
            Output.line("    publishes refused by a full queue at A and retried: \(statsA.queueFull) (--no-batch: \(unA.queueFull)); a window above the queue's \(GossipConfiguration.local().publishQueueLimit) makes the sender wait")
        }
        Output.line(String(format: "    frames per ZeroMQ message: A → R %.1f, R → B %.1f (consecutive frames for one link and topic leave as one BATCH)",
                           perMessage(statsA), perMessage(statsR)))
        Output.line(String(format: "  Warren, --no-batch (reference):  %9.0f env/s (%.0f … %.0f)   lost %d   HWM drops %d   %.2f× raw",
                     single, singles.min()!, singles.max()!, unbatched.lost, unA.hwmDrops + unR.hwmDrops, single / rawRate))
        if downs + unDowns > 0 {
            Output.line("  ! neighbours declared down during the run (each end counts): \(downs) (--no-batch: \(unDowns)); what was sent on those links meanwhile is lost")
        }
        Output.line(String(format: "  ratio %.2f× raw   target ≥ 0.5× with 0 lost → %@", rate / rawRate,
                     (rate / rawRate >= 0.5 && lost == 0) ? "met" : "NOT met"))
    }
}

/// Nodes A → R → B on loopback (unlimited rate, no random links) and B's delivery count.
struct RelayLine {
    let a: GossipNode, r: GossipNode, b: GossipNode
    let got = ArrivalCounter()
    let topic: Topic
    private let lostBox = ArrivalCounter()
    /// Neighbours that went down at A, R or B (each end of a link counts) before `stop`.
    let downs = ArrivalCounter()

    init(topic: Topic, batching: Bool) async throws {
        func cfg(_ peers: [String]) -> GossipConfiguration {
            // Unlimited per-neighbour rate and no admission hold (whose shares cap one source at
            // newIDRate / 2): the bench measures the transport, not the limiters.
            var c = GossipConfiguration.local(listen: "tcp://127.0.0.1:*", peers: peers)
            c.degree = 0; c.engine.rateLimit = 0; c.engine.seenHold = 0; c.batching = batching
            return c
        }
        let got = self.got
        // A link of the line lost (a timeout, say) loses what is sent meanwhile: counted.
        let downs = self.downs
        let down: @Sendable (Neighbour, Bool, PeerDownReason?) -> Void = { _, up, _ in
            if !up { downs.value.add(1, ordering: .relaxed) }
        }
        b = try GossipNode(configuration: cfg([]), callbacks: GossipNodeCallbacks(deliver: { _, _, _, _ in
            got.value.add(1, ordering: .relaxed)
        }, peer: down), logger: .init(label: "bench"))
        r = try GossipNode(configuration: cfg([b.endpoint]), callbacks: .init(peer: down), logger: .init(label: "bench"))
        a = try GossipNode(configuration: cfg([r.endpoint]), callbacks: .init(peer: down), logger: .init(label: "bench"))
        self.topic = topic
        await b.subscribe(topic)
        for (n, want) in [(a, 1), (r, 2), (b, 1)] {
            while await n.stats().neighbours.count < want { try await Task.sleep(for: .milliseconds(10)) }
        }
    }

    var lost: Int { lostBox.value.load(ordering: .relaxed) }
    func duplicates(total: Int) -> Int { got.value.load(ordering: .relaxed) - (total - lost) }

    /// Publishes `envelopes` at A with at most `window` in flight; returns envelopes/s delivered at B.
    func round(_ envelopes: ArraySlice<[UInt8]>, window: Int) async throws -> Double {
        let count = envelopes.count, first = envelopes.startIndex
        let base = got.value.load(ordering: .relaxed)
        let t0 = ContinuousClock.now
        var sent = 0
        while sent < count {
            while sent - (got.value.load(ordering: .relaxed) - base) >= window { try await Task.sleep(for: .microseconds(200)) }
            let burst = min(window / 4, count - sent)
            for i in sent..<(sent + burst) {
                // A full publish queue (`GossipConfiguration.publishQueueLimit`, counted in
                // `NodeStats.queueFull`) is back-pressure: wait for the node's thread and retry.
                while !a.publish(topic: topic, envelope: envelopes[first + i]) { try await Task.sleep(for: .microseconds(200)) }
            }
            sent += burst
        }
        // An envelope is lost when deliveries have stopped, not when a fixed deadline passes: a
        // slow machine (a debug build under load) may still be draining a full window. Wait
        // while arrivals keep coming; give up after `stallLimit` without a single arrival.
        let stallLimit = Duration.seconds(10)
        var seen = got.value.load(ordering: .relaxed) - base
        var lastArrival = ContinuousClock.now
        while seen < count && ContinuousClock.now - lastArrival < stallLimit {
            try await Task.sleep(for: .microseconds(200))
            let now = got.value.load(ordering: .relaxed) - base
            if now != seen { seen = now; lastArrival = ContinuousClock.now }
        }
        let delivered = got.value.load(ordering: .relaxed) - base
        let elapsed = seconds((delivered < count ? lastArrival : ContinuousClock.now) - t0)
        lostBox.value.add(max(0, count - delivered), ordering: .relaxed)
        return Double(delivered) / elapsed
    }

    func stats() async -> (NodeStats, NodeStats) { (await a.stats(), await r.stats()) }
    func stop() async { for n in [a, r, b] { await n.stop() } }
}

/// Connects a PUB to a freshly bound SUB (subscribed to everything) and waits until a probe
/// gets through, so no measured message is lost to the connection still forming.
func rawConnectedPair(_ ctx: UnsafeMutableRawPointer, hwm: Int32) -> (pub: UnsafeMutableRawPointer, sub: UnsafeMutableRawPointer) {
    let pub = zmq_socket(ctx, ZMQ_PUB)!, sub = zmq_socket(ctx, ZMQ_SUB)!
    var h = hwm
    zmq_setsockopt(pub, ZMQ_SNDHWM, &h, 4); zmq_setsockopt(sub, ZMQ_RCVHWM, &h, 4)
    var linger: Int32 = 0
    zmq_setsockopt(pub, ZMQ_LINGER, &linger, 4); zmq_setsockopt(sub, ZMQ_LINGER, &linger, 4)
    zmq_bind(sub, "tcp://127.0.0.1:*")
    var buf = [CChar](repeating: 0, count: 256); var len = 256
    zmq_getsockopt(sub, ZMQ_LAST_ENDPOINT, &buf, &len)
    zmq_setsockopt(sub, ZMQ_SUBSCRIBE, nil, 0)
    zmq_connect(pub, String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
    var t: Int32 = 20
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &t, 4)
    var probe: UInt8 = 0
    var scratch = [UInt8](repeating: 0, count: 512)
    for _ in 0..<500 {
        zmq_send(pub, &probe, 1, 0)
        if zmq_recv(sub, &scratch, 512, 0) >= 0 { break }
    }
    while zmq_recv(sub, &scratch, 512, 0) >= 0 {}   // drain late probes (20 ms of quiet)
    t = -1
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &t, 4)
    return (pub, sub)
}

/// Raw ZeroMQ PUB → SUB over loopback TCP in this process: the transport's own limit.
func rawPubSub(count: Int, bodySize: Int, window: Int) throws -> (rate: Double, lost: Int) {
    let (pub, sub) = rawConnectedPair(ZMQContext.shared.handle, hwm: 0)
    let topic = [UInt8](repeating: 7, count: 32), body = [UInt8](repeating: 1, count: bodySize)
    var received = 0
    var msg = zmq_msg_t()
    /// Receives what is waiting (or, blocking, one whole message); false on timeout.
    @discardableResult
    func drain(block: Bool) -> Bool {
        while true {
            zmq_msg_init(&msg)
            if zmq_msg_recv(&msg, sub, block ? 0 : ZMQ_DONTWAIT) < 0 { zmq_msg_close(&msg); return false }
            let last = zmq_msg_more(&msg) == 0
            if last { received += 1 }
            zmq_msg_close(&msg)
            if block && last { return true }
        }
    }
    let t0 = ContinuousClock.now
    for _ in 0..<count {
        zmq_send(pub, topic, 32, ZMQ_SNDMORE); zmq_send(pub, body, body.count, 0)
        drain(block: false)
    }
    var rcvTimeout: Int32 = 5000
    zmq_setsockopt(sub, ZMQ_RCVTIMEO, &rcvTimeout, 4)
    while received < count {
        if !drain(block: true) { break }
    }
    let rate = Double(received) / seconds(ContinuousClock.now - t0)
    zmq_close(pub); zmq_close(sub)
    return (rate, count - received)
}

struct LatencyBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "latency",
        abstract: "Delivery latency over 1 hop and an 8-hop line vs raw ZeroMQ one-way (ping-pong / 2).")
    @Option(help: "Samples per measurement.") var samples: Int = 2000

    func validate() throws {
        guard samples >= 1 else { throw ValidationError("--samples must be at least 1") }
    }

    func run() async throws {
        let raw = try rawOneWay(samples: samples)
        let one = try await lineLatency(hops: 1, samples: samples)
        let eight = try await lineLatency(hops: 8, samples: samples)
        Output.line("warren-bench latency — \(machineLine())")
        Output.line("  \(samples) sequential messages each; times in µs")
        func row(_ name: String, _ v: [Double]) {
            let s = v.sorted()
            func p(_ q: Double) -> Double { Percentile.of(sorted: s, q) ?? .nan }
            let padded = name.padding(toLength: 30, withPad: " ", startingAt: 0)
            Output.line(padded + String(format: " p50 %8.1f   p99 %8.1f   max %8.1f", p(0.5), p(0.99), s.last ?? 0))
        }
        row("raw ZeroMQ one-way (RTT/2)", raw)
        row("Warren 1 hop", one)
        row("Warren 8 hops (9-node line)", eight)
        // The verdict reads the same percentiles as the rows above.
        let rawP50 = percentile(raw, 0.5), oneP50 = percentile(one, 0.5), eightP99 = percentile(eight, 0.99)
        Output.line(String(format: "  1-hop p50 = %.2f× raw one-way (target ≤ 2×) → %@;  8-hop p99 = %.2f ms (target < 5 ms) → %@",
                     oneP50 / rawP50, oneP50 <= 2 * rawP50 ? "met" : "NOT met",
                     eightP99 / 1000, eightP99 < 5000 ? "met" : "NOT met"))
    }
}

/// Publishes one envelope at a time from node 0 of a line to node `hops`, timing each delivery.
func lineLatency(hops: Int, samples: Int) async throws -> [Double] {
    let a = PrivateKey.generate(), b = PrivateKey.generate()
    let topic = Topic(b.publicKey)
    let arrivals = ArrivalCounter()
    var nodes: [GossipNode] = []
    for i in 0...hops {
        var c = GossipConfiguration.local(listen: "tcp://127.0.0.1:*", peers: nodes.last.map { [$0.endpoint] } ?? [])
        c.degree = 0
        let cb = i == hops ? GossipNodeCallbacks(deliver: { _, _, _, _ in
            let t = monotonicNanos()
            arrivals.times.withLock { $0.append(t) }
            arrivals.value.add(1, ordering: .releasing)
        }) : GossipNodeCallbacks()
        nodes.append(try GossipNode(configuration: c, callbacks: cb, logger: .init(label: "bench")))
    }
    await nodes[hops].subscribe(topic)
    for (i, n) in nodes.enumerated() {
        let want = (i == 0 || i == hops) ? 1 : 2
        while await n.stats().neighbours.count < want { try await Task.sleep(for: .milliseconds(10)) }
    }
    let envs = try (0..<(samples + 100)).map { _ in try EnvelopeCodec.shared.sealBytes(typicalCredentials(), from: a, to: b.publicKey) }
    var lat: [Double] = []
    for i in 0..<(samples + 100) {
        let t0 = monotonicNanos()
        nodes[0].publish(topic: topic, envelope: envs[i])
        while arrivals.value.load(ordering: .acquiring) <= i {
            if monotonicNanos() - t0 > 2_000_000_000 { break }
        }
        let t1 = arrivals.times.withLock { $0.last ?? t0 }
        if i >= 100 { lat.append(Double(t1 &- t0) / 1000) }   // first 100: warm-up
    }
    for n in nodes { await n.stop() }
    return lat
}


/// Raw PUB/SUB ping-pong between two socket pairs in two threads; one-way = RTT / 2 (µs).
func rawOneWay(samples: Int) throws -> [Double] {
    let ctx = ZMQContext.shared.handle
    let (pingPub, pingSub) = rawConnectedPair(ctx, hwm: 1000), (pongPub, pongSub) = rawConnectedPair(ctx, hwm: 1000)
    let ponger = UnsafeSendable((pingSub, pongPub))
    let total = samples + 100
    let t = Thread {
        let (s, p) = ponger.value
        var tmo: Int32 = 3000
        zmq_setsockopt(s, ZMQ_RCVTIMEO, &tmo, 4)
        var buf = [UInt8](repeating: 0, count: 512)
        while true {
            let n = zmq_recv(s, &buf, 512, 0)
            if n <= 1 { break }   // timeout or the 1-byte stop message
            zmq_send(p, buf, Int(n), 0)
        }
    }
    t.start()
    let body = [UInt8](repeating: 1, count: 300)
    var buf = [UInt8](repeating: 0, count: 512)
    var tmo: Int32 = 1000
    zmq_setsockopt(pongSub, ZMQ_RCVTIMEO, &tmo, 4)
    var out: [Double] = []
    for i in 0..<total {
        let t0 = monotonicNanos()
        zmq_send(pingPub, body, body.count, 0)
        if zmq_recv(pongSub, &buf, 512, 0) < 0 { continue }
        if i >= 100 { out.append(Double(monotonicNanos() - t0) / 2000) }
    }
    var stop: UInt8 = 0
    zmq_send(pingPub, &stop, 1, 0)
    usleep(50_000)
    for s in [pingPub, pingSub, pongPub, pongSub] { zmq_close(s) }
    return out
}

