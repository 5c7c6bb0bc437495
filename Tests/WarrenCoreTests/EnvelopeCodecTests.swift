import Foundation
import SwiftProtobuf
import Testing
@testable import WarrenCore

@Suite struct EnvelopeCodecTests {
    let codec = EnvelopeCodec()
    let a = PrivateKey.generate()
    let b = PrivateKey.generate()

    func credentials() -> SignalingMessage {
        var m = SignalingMessage()
        m.credentials.ufrag = "ufrag"; m.credentials.pwd = "pwd"; m.credentials.needCreds = true
        return m
    }

    @Test func sealOpenRoundTrip() throws {
        let bytes = try codec.sealBytes(credentials(), from: a, to: b.publicKey)
        let (pair, msg) = try codec.open(bytes, with: b)
        #expect(pair == PublicKeyPair(ours: b.publicKey, theirs: a.publicKey))
        #expect(msg == credentials())
        let env = try codec.parse(bytes)
        #expect(env.contents.nonce.count == 24)
        #expect(env.contents.body.count == (try credentials().serializedBytes() as [UInt8]).count + 16)
    }

    @Test func freshNoncePerMessage() throws {
        let e1 = try codec.seal(credentials(), from: a, to: b.publicKey)
        let e2 = try codec.seal(credentials(), from: a, to: b.publicKey)
        #expect(e1.contents.nonce != e2.contents.nonce)
    }

    @Test func sharedKeyComputedOncePerPair() throws {
        let c = EnvelopeCodec(cacheCapacity: 2)
        for _ in 0..<10 { _ = try c.sealBytes(credentials(), from: a, to: b.publicKey) }
        #expect(c.cacheStatistics.misses == 1)
        #expect(c.cacheStatistics.hits == 9)
        // bounded
        for _ in 0..<5 { _ = try c.sealBytes(credentials(), from: PrivateKey.generate(), to: b.publicKey) }
        #expect(c.cacheStatistics.entries == 2)
        // opening uses the same pair key as sealing from the other side
        let bytes = try c.sealBytes(credentials(), from: a, to: b.publicKey)
        #expect(try c.open(bytes, with: b).1 == credentials())
    }

    @Test func wrongRecipient() throws {
        let bytes = try codec.sealBytes(credentials(), from: a, to: b.publicKey)
        #expect(throws: EnvelopeError.wrongRecipient(expected: a.publicKey, got: b.publicKey)) { try codec.open(bytes, with: a) }
    }

    @Test func nonceLength() throws {
        var env = try codec.seal(credentials(), from: a, to: b.publicKey)
        env.contents.nonce = Data(count: 12)
        #expect(throws: EnvelopeError.invalidNonceLength(12)) { try codec.open(env, with: b) }
        #expect(throws: EnvelopeError.invalidNonceLength(3)) { try codec.seal(credentials(), from: a, to: b.publicKey, nonce: [1, 2, 3]) }
    }

    @Test func keyLengths() throws {
        var env = try codec.seal(credentials(), from: a, to: b.publicKey)
        env.sender = Data(count: 31)
        #expect(throws: EnvelopeError.invalidKeyLength(field: "sender", length: 31)) { try codec.open(env, with: b) }
        env = try codec.seal(credentials(), from: a, to: b.publicKey)
        env.recipient = Data(count: 0)
        #expect(throws: EnvelopeError.invalidKeyLength(field: "recipient", length: 0)) { try codec.open(env, with: b) }
    }

    @Test func bitFlipsAnywhereFailAuthentication() throws {
        let env = try codec.seal(credentials(), from: a, to: b.publicKey)
        for i in 0..<env.contents.body.count {
            var t = env; t.contents.body[t.contents.body.startIndex + i] ^= 0x01
            #expect(throws: EnvelopeError.authenticationFailed) { try codec.open(t, with: b) }
        }
        for i in 0..<24 {
            var t = env; t.contents.nonce[t.contents.nonce.startIndex + i] ^= 0x80
            #expect(throws: EnvelopeError.authenticationFailed) { try codec.open(t, with: b) }
        }
        var t = env; t.sender[t.sender.startIndex + 31] ^= 0x80
        #expect(throws: EnvelopeError.nonCanonicalKey(field: "sender")) { try codec.open(t, with: b) }
        t = env; t.sender = PrivateKey.generate().publicKey.data
        #expect(throws: EnvelopeError.authenticationFailed) { try codec.open(t, with: b) }
        t = env; t.contents.body = Data(count: 5)
        #expect(throws: EnvelopeError.authenticationFailed) { try codec.open(t, with: b) }
    }

    @Test func malformedBytes() throws {
        do { _ = try codec.open([0xFF, 0xFF, 0xFF], with: b); Issue.record("accepted garbage") } catch {
            guard case .malformedEnvelope? = error as? EnvelopeError else { Issue.record("wrong error \(error)"); return }
        }
    }

    @Test func malformedMessageInsideValidBox() throws {
        // Seal garbage plaintext by hand: authenticates, but is not a Message.
        let k = codec.sharedKey(ours: a, theirs: b.publicKey)
        let plain: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
        let nonce = [UInt8](repeating: 7, count: 24)
        var body = [UInt8](repeating: 0, count: plain.count + 16)
        _ = body.withUnsafeMutableBufferPointer { c in
            k.withUnsafeBytes { kk in
                crypto_box_easy_afternm_shim(c.baseAddress!, plain, nonce, kk)
            }
        }
        var env = Envelope()
        env.sender = a.publicKey.data; env.recipient = b.publicKey.data
        env.contents.body = Data(body); env.contents.nonce = Data(nonce)
        do { _ = try codec.open(env, with: b); Issue.record("accepted garbage message") } catch {
            guard case .malformedMessage? = error as? EnvelopeError else { Issue.record("wrong error \(error)"); return }
        }
    }
}

import CSodium
func crypto_box_easy_afternm_shim(_ c: UnsafeMutablePointer<UInt8>, _ m: [UInt8], _ n: [UInt8], _ k: UnsafeRawBufferPointer) -> Int32 {
    crypto_box_easy_afternm(c, m, UInt64(m.count), n, k.baseAddress!.assumingMemoryBound(to: UInt8.self))
}
