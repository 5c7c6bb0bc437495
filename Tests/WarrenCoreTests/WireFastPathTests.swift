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
