import Foundation
import PropertyBased
import Testing
import WarrenTestSupport
@testable import WarrenCore

/// Property-based campaigns (swift-property-based) over the envelope codec, as a differential
/// test of its two ways of opening: `open(bytes)` (the canonical-layout fast path, falling back to
/// swift-protobuf) against `open(parse(bytes))` (swift-protobuf first). See docs/FUZZING.md.
@Suite(.serialized, .computeLane) struct EnvelopePropertyTests {
    static let codec = EnvelopeCodec(cacheCapacity: 64)
    static let recipient = PrivateKey(try! Key(base64: "cJWGpITkbaAW7tOX5Xmr/KCYYDF0VWFg5DORdgbqUU0="))
    static let sender = PrivateKey(try! Key(base64: "OJOsCsDaXZdMOvfmTzkCs9/FiD5IrdiyeGSAKsQjx1Y="))

    enum Outcome: Equatable {
        case opened(PublicKeyPair, SignalingMessage)
        case refused(EnvelopeError)
    }

    static func outcome(_ body: () throws -> (PublicKeyPair, SignalingMessage)) -> Outcome {
        do { let (p, m) = try body(); return .opened(p, m) } catch let e as EnvelopeError { return .refused(e) } catch {
            Issue.record("not an EnvelopeError: \(error)")
            return .refused(.authenticationFailed)
        }
    }

    /// Both ways of opening give the same answer (same message, or the same error).
    static func differential(_ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> Outcome {
        let fast = outcome { try codec.open(bytes, with: recipient) }
        let general = outcome { try codec.open(try codec.parse(bytes), with: recipient) }
        #expect(fast == general, "open paths disagree", sourceLocation: sourceLocation)
        return fast
    }

    static let text = Gen.letterOrNumber.string(of: 0...40)
    static let message = zip(Gen.int(in: 0...3), text, text, zip(Gen.bool(), Gen.int32(), Gen.int32())).map { kind, a, b, x in
        var m = SignalingMessage()
        switch kind {
        case 0: m.credentials.ufrag = a; m.credentials.pwd = b; m.credentials.needCreds = x.0
        case 1: m.candidate.foundation = a; m.candidate.address = b; m.candidate.port = x.1; m.candidate.priority = x.2
        case 2: m.peer.name = a; m.peer.allowedIps = [a, b]; m.peer.publicKey = Data(b.utf8)
        default: m.pske.publicKey = Data(a.utf8); m.pske.cipherText = Data(b.utf8)
        }
        return m
    }

    /// Generated messages: the fast writer (`sealBytes`) and swift-protobuf (`seal`) produce the
    /// same bytes, and both ways of opening return exactly the message and its sender.
    @Test func sealedMessagesOpenToThemselvesBothWays() async throws {
        await propertyCheck(count: 15_000, input: Self.message, Gen.uint8().array(of: 24)) { m, nonce in
            let wire = try Self.codec.sealBytes(m, from: Self.sender, to: Self.recipient.publicKey, nonce: nonce)
            let env = try Self.codec.seal(m, from: Self.sender, to: Self.recipient.publicKey, nonce: nonce)
            #expect(try env.serializedBytes() == wire, "seal and sealBytes differ")
            #expect(Self.differential(wire) == .opened(PublicKeyPair(ours: Self.recipient.publicKey, theirs: Self.sender.publicKey), m))
        }
    }

    /// Edits of a sealed envelope ((position, xor) pairs; xor 0 deletes, past the end appends):
    /// both ways agree, and whatever still opens is the original message from the original
    /// sender — no forgery.
    @Test func editedEnvelopesNeverForge() async throws {
        var m = SignalingMessage()
        m.credentials.ufrag = "vQyd"; m.credentials.pwd = "c3FpdmZ3b2tzZ2RqY2ZydXBtbm9x"; m.credentials.needCreds = true
        let original = try Self.codec.sealBytes(m, from: Self.sender, to: Self.recipient.publicKey, nonce: Array(1...24))
        let pair = PublicKeyPair(ours: Self.recipient.publicKey, theirs: Self.sender.publicKey)
        var opened = 0, runs = 0
        await propertyCheck(count: 15_000, input: zip(Gen.uint16(), Gen.uint8()).array(of: 0...4)) { edits in
            runs += 1
            var b = original
            for (pos, x) in edits {
                let i = Int(pos) % (b.count + 1)
                if i == b.count { b.append(x) } else if x == 0 { b.remove(at: i) } else { b[i] ^= x }
            }
            if case .opened(let p, let got) = Self.differential(b) {
                #expect(p == pair && got == m, "forged or altered message accepted")
                opened += 1
            }
        }
        #expect(runs == 15_000)
        #expect(opened > 0 && opened < 15_000, "the edits must both keep and break envelopes (\(opened) opened)")
    }

    /// Arbitrary bytes: both ways of opening agree (almost always: refused with the same error).
    @Test func arbitraryBytesGetTheSameAnswerBothWays() async {
        await propertyCheck(count: 10_000, input: Gen.uint8().array(of: 0...200)) { bytes in
            _ = Self.differential(bytes)
        }
    }
}
