import Foundation
import Synchronization
import Warren
import WarrenMeasure

/// A duration in seconds.
public func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }

/// A backend that can take raw serialized envelope bytes, as if they had arrived from the
/// network. The conformance suite uses it to prove that tampered envelopes never reach a handler.
public protocol EnvelopeInjecting: Backend {
    func injectEnvelope(_ bytes: [UInt8]) async throws
}

extension InProcessBackend: EnvelopeInjecting {
    public func injectEnvelope(_ bytes: [UInt8]) async throws { try? deliver(bytes) }
}

/// Records what a handler saw: per (our key, their key), the ids (`candidate.port`) and times.
public final class RecordingHandler: MessageHandler {
    public struct Receipt: Sendable { public var id: Int32; public var at: ContinuousClock.Instant }
    private let state = Mutex<[PublicKeyPair: [Receipt]]>([:])
    private let total = Atomic<Int>(0)
    public let name: String

    public init(name: String = "handler") { self.name = name }

    public func onSignalingMessage(_ pair: PublicKeyPair, _ message: SignalingMessage) {
        let r = Receipt(id: message.candidate.port, at: .now)
        state.withLock { $0[pair, default: []].append(r) }
        total.add(1, ordering: .relaxed)
    }

    public var count: Int { total.load(ordering: .relaxed) }
    public func receipts(_ pair: PublicKeyPair) -> [Receipt] { state.withLock { $0[pair] ?? [] } }
    public var all: [PublicKeyPair: [Receipt]] { state.withLock { $0 } }
}

/// The outcome of one conformance exchange.
public struct ExchangeReport: Sendable, CustomStringConvertible {
    public var peers: Int
    /// Per handler: messages expected (n·(n−1)).
    public var expectedPerHandler: Int
    /// Per handler: messages delivered (counting duplicates).
    public var deliveredPerHandler: [Int]
    public var missing: Int
    public var duplicates: Int
    public var wrongContent: Int
    public var failures: [String]
    public var elapsed: Duration
    /// Publish → handler latency of every first delivery, in seconds.
    public var latencies: [Double]

    public var passed: Bool { missing == 0 && duplicates == 0 && wrongContent == 0 && failures.isEmpty }
    public var delivered: Int { deliveredPerHandler.reduce(0, +) }
    public var expected: Int { expectedPerHandler * deliveredPerHandler.count }

    public func latencyPercentile(_ p: Double) -> Double? {
        Percentile.of(sorted: latencies.sorted(), p / 100)
    }

    public var description: String {
        var s = "\(passed ? "PASS" : "FAIL"): \(peers) peers, delivered \(delivered)/\(expected) "
        s += "(4 handlers × \(expectedPerHandler)), missing \(missing), duplicates \(duplicates), wrong \(wrongContent)"
        if !failures.isEmpty { s += "\n  " + failures.prefix(10).joined(separator: "\n  ") }
        return s
    }
}

public enum ConformanceError: Error, CustomStringConvertible {
    case failed(String)
    public var description: String { if case .failed(let s) = self { return s }; return "" }
}

/// cunīcu's backend conformance suite (its `test/backend.go`) plus Warren's additions, usable
/// with any backend.
public enum Conformance {
    /// A message carrying `id` in `candidate.port`, as the reference exchange sends.
    public static func candidate(id: Int32) -> SignalingMessage {
        var m = SignalingMessage()
        m.candidate.port = id
        return m
    }

    /// cunīcu's reference exchange: `backends.count` peers, each with its own backend and key.
    /// Every peer subscribes to every other peer with two handlers and to the zero key with two
    /// more; then every peer publishes one message to every other with its id in
    /// `candidate.port`. Each handler must see exactly one message from each other peer, with
    /// the right id. Waits up to `timeout` for everything, then `settle` more for duplicates.
    public static func referenceExchange(
        backends: [any Backend],
        keys: [PrivateKey]? = nil,
        timeout: Duration = .seconds(20),
        settle: Duration = .milliseconds(300),
        afterSubscribe: (@Sendable () async throws -> Void)? = nil,
        progress: (@Sendable (Int, Int) -> Void)? = nil
    ) async throws -> ExchangeReport {
        let n = backends.count
        let keys = keys ?? (0..<n).map { _ in PrivateKey.generate() }
        let ids = (0..<n).map { Int32(100 + $0) }
        let h = (1...4).map { RecordingHandler(name: "mh\($0)") }
        let clock = ContinuousClock()

        for (i, b) in backends.enumerated() {
            for (j, o) in keys.enumerated() where j != i {
                let kp = KeyPair(ours: keys[i], theirs: o.publicKey)
                try await b.subscribe(kp, h[0])
                try await b.subscribe(kp, h[1])
            }
            let any = KeyPair(ours: keys[i], theirs: .zero)
            try await b.subscribe(any, h[2])
            try await b.subscribe(any, h[3])
        }
        try await afterSubscribe?()

        let start = clock.now
        var sentAt: [PublicKeyPair: ContinuousClock.Instant] = [:]
        for (i, b) in backends.enumerated() {
            for (j, o) in keys.enumerated() where j != i {
                sentAt[PublicKeyPair(ours: o.publicKey, theirs: keys[i].publicKey)] = clock.now
                try await b.publish(KeyPair(ours: keys[i], theirs: o.publicKey), candidate(id: ids[i]))
            }
        }

        let expected = n * (n - 1)
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            let done = h.map(\.count).min() ?? 0
            progress?(h.map(\.count).reduce(0, +), expected * 4)
            if done >= expected { break }
            try await Task.sleep(for: .milliseconds(5))
        }
        try await Task.sleep(for: settle)
        let elapsed = clock.now - start
        progress?(h.map(\.count).reduce(0, +), expected * 4)

        var missing = 0, dups = 0, wrong = 0
        var failures: [String] = []
        var latencies: [Double] = []
        for (hi, handler) in h.enumerated() {
            for i in 0..<n {
                for j in 0..<n where j != i {
                    let pair = PublicKeyPair(ours: keys[i].publicKey, theirs: keys[j].publicKey)
                    let rs = handler.receipts(pair)
                    if rs.isEmpty {
                        missing += 1
                        if failures.count < 20 { failures.append("\(handler.name): peer \(ids[i]) received no message from peer \(ids[j])") }
                    } else {
                        if rs.count > 1 {
                            dups += rs.count - 1
                            if failures.count < 20 { failures.append("\(handler.name): peer \(ids[i]) received \(rs.count) messages from peer \(ids[j])") }
                        }
                        if rs[0].id != ids[j] {
                            wrong += 1
                            if failures.count < 20 { failures.append("\(handler.name): peer \(ids[i]) got id \(rs[0].id) from peer \(ids[j])") }
                        }
                        if hi == 0, let t0 = sentAt[pair] {
                            let d = rs[0].at - t0
                            latencies.append(seconds(d))
                        }
                    }
                }
            }
        }
        return ExchangeReport(peers: n, expectedPerHandler: expected, deliveredPerHandler: h.map(\.count),
                              missing: missing, duplicates: dups, wrongContent: wrong, failures: failures,
                              elapsed: elapsed, latencies: latencies)
    }

    /// Waits until `condition` holds or `timeout` passes; returns whether it held.
    public static func eventually(timeout: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return condition()
    }

    static func check(_ ok: Bool, _ what: @autoclosure () -> String) throws {
        if !ok { throw ConformanceError.failed(what()) }
    }

    /// subscribe/unsubscribe return values, and unsubscribe stops delivery.
    /// `a` publishes to `b`; both may be the same backend.
    public static func unsubscribeStopsDelivery(a: any Backend, b: any Backend,
                                                wait: Duration = .milliseconds(500)) async throws {
        let ka = PrivateKey.generate(), kb = PrivateKey.generate()
        let h1 = RecordingHandler(), h2 = RecordingHandler()
        let pair = KeyPair(ours: kb, theirs: ka.publicKey)
        try check(try await b.subscribe(pair, h1), "first subscribe for a key must return true")
        try check(!(try await b.subscribe(pair, h1)), "subscribing the same handler again must return false")
        try check(!(try await b.subscribe(pair, h2)), "second handler for the same key must return false")
        let send = KeyPair(ours: ka, theirs: kb.publicKey)
        try await a.publish(send, candidate(id: 1))
        try check(await eventually { h1.count == 1 && h2.count == 1 }, "both handlers must receive the first message (got \(h1.count), \(h2.count))")
        try check(!(try await b.unsubscribe(pair, h1)), "removing one of two handlers must return false")
        try check(!(try await b.unsubscribe(pair, h1)), "removing a handler that is not registered must return false")
        try await a.publish(send, candidate(id: 2))
        try check(await eventually { h2.count == 2 }, "remaining handler must receive the second message")
        try await Task.sleep(for: wait)
        try check(h1.count == 1, "unsubscribed handler must not receive (got \(h1.count))")
        try check(try await b.unsubscribe(pair, h2), "removing the last handler of a pair must return true")
        try await a.publish(send, candidate(id: 3))
        try await Task.sleep(for: wait)
        try check(h2.count == 2, "after the last unsubscribe nothing may be delivered (got \(h2.count))")
        try check(try await b.subscribe(pair, h1), "subscribing again after the last handler left must return true")
        try await b.unsubscribe(pair, h1)
    }

    /// A handler for the specific sender and one for any sender both fire, once each.
    public static func specificAndWildcard(a: any Backend, b: any Backend) async throws {
        let ka = PrivateKey.generate(), kb = PrivateKey.generate(), kc = PrivateKey.generate()
        let specific = RecordingHandler(), wildcard = RecordingHandler()
        try await b.subscribe(KeyPair(ours: kb, theirs: ka.publicKey), specific)
        try await b.subscribe(KeyPair(ours: kb, theirs: .zero), wildcard)
        try await a.publish(KeyPair(ours: ka, theirs: kb.publicKey), candidate(id: 7))
        try await a.publish(KeyPair(ours: kc, theirs: kb.publicKey), candidate(id: 8))
        try check(await eventually { specific.count >= 1 && wildcard.count >= 2 }, "specific \(specific.count)/1, wildcard \(wildcard.count)/2")
        try await Task.sleep(for: .milliseconds(200))
        try check(specific.count == 1, "specific handler must see only its sender's message (got \(specific.count))")
        try check(wildcard.count == 2, "wildcard handler must see both senders (got \(wildcard.count))")
        try check(specific.receipts(PublicKeyPair(ours: kb.publicKey, theirs: ka.publicKey)).first?.id == 7, "specific handler got the wrong message")
        try check(wildcard.receipts(PublicKeyPair(ours: kb.publicKey, theirs: kc.publicKey)).first?.id == 8, "wildcard handler got the wrong message for the second sender")
        try await b.unsubscribe(KeyPair(ours: kb, theirs: ka.publicKey), specific)
        try await b.unsubscribe(KeyPair(ours: kb, theirs: .zero), wildcard)
    }

    /// A message for a key nobody subscribed is dropped without error, and reaches nobody.
    public static func unknownRecipientDropped(a: any Backend, b: any Backend) async throws {
        let ka = PrivateKey.generate(), kb = PrivateKey.generate(), nobody = PrivateKey.generate()
        let h = RecordingHandler()
        try await b.subscribe(KeyPair(ours: kb, theirs: .zero), h)
        try await a.publish(KeyPair(ours: ka, theirs: nobody.publicKey), candidate(id: 9))
        try await a.publish(KeyPair(ours: ka, theirs: kb.publicKey), candidate(id: 10))
        try check(await eventually { h.count >= 1 }, "subscribed recipient must still receive")
        try await Task.sleep(for: .milliseconds(200))
        try check(h.count == 1 && h.all.values.flatMap { $0 }.allSatisfy { $0.id == 10 }, "only the addressed message may arrive")
        try await b.unsubscribe(KeyPair(ours: kb, theirs: .zero), h)
    }

    /// Bit flips anywhere in an envelope (and truncations) never reach a handler; the untouched
    /// envelope still does. `inject` hands bytes to the backend that holds the recipient.
    public static func tamperedNeverDelivered(receiver b: any EnvelopeInjecting, codec: EnvelopeCodec = .shared) async throws {
        let ka = PrivateKey.generate(), kb = PrivateKey.generate()
        let h = RecordingHandler()
        try await b.subscribe(KeyPair(ours: kb, theirs: .zero), h)
        var msg = SignalingMessage()
        msg.credentials.ufrag = "ufrag"; msg.credentials.pwd = "password-password"; msg.credentials.needCreds = true
        let good = try codec.sealBytes(msg, from: ka, to: kb.publicKey)
        var variants: [[UInt8]] = []
        for i in 0..<good.count {
            for bit in [0, 3, 7] { var t = good; t[i] ^= UInt8(1 << bit); variants.append(t) }
        }
        for cut in stride(from: 0, to: good.count, by: 7) { variants.append(Array(good.prefix(cut))) }
        variants.append(good + [0xFF])
        for v in variants { try await b.injectEnvelope(v) }
        try await Task.sleep(for: .milliseconds(300))
        try check(h.count == 0, "\(h.count) of \(variants.count) tampered envelopes reached a handler")
        let before = h.count
        try await b.injectEnvelope(good)
        try check(await eventually { h.count > before }, "the untouched envelope must still be delivered")
        try await b.unsubscribe(KeyPair(ours: kb, theirs: .zero), h)
    }

    /// `publishers` concurrent tasks, each with its own key, publish `perPublisher` messages to
    /// one receiver; every message arrives exactly once.
    public static func concurrentPublishers(publisherBackends: [any Backend], receiver: any Backend,
                                            publishers: Int = 64, perPublisher: Int = 20,
                                            timeout: Duration = .seconds(20)) async throws {
        let kr = PrivateKey.generate()
        let h = RecordingHandler()
        try await receiver.subscribe(KeyPair(ours: kr, theirs: .zero), h)
        let keys = (0..<publishers).map { _ in PrivateKey.generate() }
        try await withThrowingTaskGroup(of: Void.self) { g in
            for p in 0..<publishers {
                let backend = publisherBackends[p % publisherBackends.count]
                let key = keys[p]
                g.addTask {
                    for m in 0..<perPublisher {
                        try await backend.publish(KeyPair(ours: key, theirs: kr.publicKey),
                                                  candidate(id: Int32(p * 100_000 + m)))
                    }
                }
            }
            try await g.waitForAll()
        }
        let total = publishers * perPublisher
        try check(await eventually(timeout: timeout) { h.count >= total }, "received \(h.count)/\(total)")
        try await Task.sleep(for: .milliseconds(200))
        try check(h.count == total, "received \(h.count) for \(total) sent (duplicates)")
        for (p, key) in keys.enumerated() {
            let ids = Set(h.receipts(PublicKeyPair(ours: kr.publicKey, theirs: key.publicKey)).map(\.id))
            try check(ids.count == perPublisher, "publisher \(p): \(ids.count)/\(perPublisher) distinct messages")
        }
        try await receiver.unsubscribe(KeyPair(ours: kr, theirs: .zero), h)
    }
}
