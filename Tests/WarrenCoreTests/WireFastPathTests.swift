import Foundation
import SwiftProtobuf
import Testing
@testable import WarrenCore

@Suite struct WireFastPathTests {
    @Test func canonicalLayoutIsRecognised() throws {
        let a = PrivateKey.generate(), b = PrivateKey.generate()
        var m = SignalingMessage(); m.credentials.ufrag = "u"
        let bytes = try EnvelopeCodec.shared.sealBytes(m, from: a, to: b.publicKey)
        // identical to what swift-protobuf writes for the same envelope
        let env = try EnvelopeCodec.shared.parse(bytes)
        #expect(try env.serializedBytes() == bytes)
        let w = bytes.withUnsafeBufferPointer { EnvelopeCodec.parseCanonical($0) }
        #expect(w != nil)
        #expect(w?.sender.count == 32 && w?.nonce.count == 24)
    }

    @Test func nonCanonicalLayoutsFallBackToTheGeneralParser() throws {
        let a = PrivateKey.generate(), b = PrivateKey.generate()
        var m = SignalingMessage(); m.credentials.ufrag = "u"
        let env = try EnvelopeCodec.shared.seal(m, from: a, to: b.publicKey)
        // fields in reverse order, plus an unknown field: still a valid Envelope
        var reordered: [UInt8] = []
        let contents: [UInt8] = try env.contents.serializedBytes()
        reordered += [0x1A, UInt8(contents.count)] + contents
        reordered += [0x12, 32] + b.publicKey.bytes
        reordered += [0x0A, 32] + a.publicKey.bytes
        reordered += [0x78, 0x01]  // field 15, varint 1
        #expect(reordered.withUnsafeBufferPointer { EnvelopeCodec.parseCanonical($0) } == nil)
        let (pair, msg) = try EnvelopeCodec.shared.open(reordered, with: b)
        #expect(pair.theirs == a.publicKey && msg == m)
    }
}

@Test func fastPathTakenForTypicalMessage() throws {
    let a = PrivateKey.generate(), b = PrivateKey.generate()
    var m = SignalingMessage()
    m.credentials.ufrag = "Kq3nLpW2vXz9"; m.credentials.pwd = "rT7yHb2mQs8dFk4jWn6pZc1x"; m.credentials.needCreds = true
    let bytes = try EnvelopeCodec.shared.sealBytes(m, from: a, to: b.publicKey)
    let r = try bytes.withUnsafeBufferPointer { try EnvelopeCodec.shared.openWire($0, with: b) }
    let hit = r.map { _ in true } ?? false
    #expect(hit)
    let viaGeneric: Int? = bytes.withContiguousStorageIfAvailable { $0.count }
    #expect(viaGeneric == bytes.count)
}

@Test func noncesNeverRepeat() {
    let g = NonceGenerator()
    var seen = Set<[UInt8]>()
    var n = [UInt8](repeating: 0, count: 24)
    for _ in 0..<50_000 { g.fill(&n); seen.insert(n) }
    #expect(seen.count == 50_000)
    // two generators (two processes) use independent keys
    let h = NonceGenerator()
    var m = [UInt8](repeating: 0, count: 24)
    h.fill(&m)
    #expect(!seen.contains(m))
}

/// The receive path's `dispatch` of bytes (wire fast path) delivers and refuses exactly like
/// `dispatch` of the parsed `Envelope`: canonical, reordered (general parser), tampered, short,
/// for a key nobody subscribed, garbage.
@Test func dispatchOfBytesMatchesDispatchOfEnvelope() throws {
    final class Count: MessageHandler, @unchecked Sendable {   // called on this thread only
        var n = 0
        func onSignalingMessage(_ pair: PublicKeyPair, _ message: SignalingMessage) { n += 1 }
    }
    let a = PrivateKey.generate(), b = PrivateKey.generate(), stranger = PrivateKey.generate()
    let registry = SubscriptionRegistry(), handler = Count()
    _ = registry.subscribe(KeyPair(ours: b, theirs: .zero), handler)
    _ = registry.subscribe(KeyPair(ours: b, theirs: a.publicKey), handler)
    var m = SignalingMessage(); m.candidate.port = 7
    let codec = EnvelopeCodec.shared
    let good = try codec.sealBytes(m, from: a, to: b.publicKey)
    let env = try codec.seal(m, from: a, to: b.publicKey)
    var reordered: [UInt8] = try env.contents.serializedBytes()
    reordered = [0x1A, UInt8(reordered.count)] + reordered + [0x12, 32] + b.publicKey.bytes + [0x0A, 32] + a.publicKey.bytes
    var tampered = good; tampered[tampered.count - 30] ^= 1
    var shortNonce = env; shortNonce.contents.nonce = Data(env.contents.nonce.prefix(8))
    var noRecipient = env; noRecipient.recipient = Data()
    let cases: [[UInt8]] = [good, reordered, tampered, Array(good.prefix(40)), [0xFF, 0xFF],
                            try codec.sealBytes(m, from: a, to: stranger.publicKey),
                            try shortNonce.serializedBytes(), try noRecipient.serializedBytes()]
    func outcome(_ f: () throws -> Int) -> String {
        do { return "calls \(try f())" } catch { return "\(error)" }
    }
    var outcomes: [String] = []
    for bytes in cases {
        let fast = outcome { try registry.dispatch(bytes, codec: codec) }
        let general = outcome { try registry.dispatch(try codec.parse(bytes), codec: codec) }
        #expect(fast == general)
        outcomes.append(fast)
    }
    #expect(outcomes[0] == "calls 2" && outcomes[1] == "calls 2" && outcomes[5] == "calls 0")
    #expect(outcomes[2] == "\(EnvelopeError.authenticationFailed)")
    #expect(outcomes[6] == "\(EnvelopeError.invalidNonceLength(8))")
    #expect(outcomes[7] == "\(EnvelopeError.invalidKeyLength(field: "recipient", length: 0))")
    #expect(handler.n == 8)
}

/// The shape check a keyless relay (the gRPC bridge) applies.
@Test func shapeCheck() throws {
    let a = PrivateKey.generate(), b = PrivateKey.generate()
    let env = try EnvelopeCodec.shared.seal(SignalingMessage(), from: a, to: b.publicKey)
    #expect(try EnvelopeCodec.checkShape(env) == b.publicKey)
    var e = env; e.sender = Data(env.sender.prefix(31))
    #expect(throws: EnvelopeError.invalidKeyLength(field: "sender", length: 31)) { try EnvelopeCodec.checkShape(e) }
    e = env; e.recipient = env.recipient + Data([0])
    #expect(throws: EnvelopeError.invalidKeyLength(field: "recipient", length: 33)) { try EnvelopeCodec.checkShape(e) }
    e = env; e.contents.nonce = Data()
    #expect(throws: EnvelopeError.invalidNonceLength(0)) { try EnvelopeCodec.checkShape(e) }
    e = env; e.contents.body = Data(count: 15)
    #expect(throws: EnvelopeError.authenticationFailed) { try EnvelopeCodec.checkShape(e) }
}
