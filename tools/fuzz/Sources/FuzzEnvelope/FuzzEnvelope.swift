// libFuzzer target: the envelope codec (EnvelopeCodec.swift, EnvelopeCodec+Wire.swift), as a
// differential test of its two ways of opening: `open(bytes)` (the canonical-layout fast path,
// falling back to swift-protobuf) against `open(parse(bytes))` (swift-protobuf's parser first).
// Both must accept the same inputs with the same result, and refuse the same inputs with the
// same error. Input layout (docs/FUZZING.md), byte 0 % 3 selects:
//   0 raw envelope bytes (the rest), opened with both test keys;
//   1 a message: byte 1 = layout, bytes 2…25 = nonce, the rest = a serialized `Message`. It is
//     sealed both ways (`seal` + swift-protobuf, `sealBytes` fast writer: identical bytes
//     required), laid out canonically or not (unknown field, reordered, repeated fields), and
//     must open to exactly that message from exactly that sender;
//   2 tampering: (u16 offset, xor byte) edits of a valid envelope; whatever still opens must be
//     the original message from the original sender (no forgery).
import Foundation
import SwiftProtobuf
import FuzzSupport
import Warren

let codec = EnvelopeCodec(cacheCapacity: 64)
// Keys of tools/vectors (envelopes.json, vector "credentials").
let recipientKey = PrivateKey(try! Key(base64: "cJWGpITkbaAW7tOX5Xmr/KCYYDF0VWFg5DORdgbqUU0="))
let senderKey = PrivateKey(try! Key(base64: "OJOsCsDaXZdMOvfmTzkCs9/FiD5IrdiyeGSAKsQjx1Y="))
let original: SignalingMessage = {
    var m = SignalingMessage()
    m.credentials.ufrag = "vQyd"
    m.credentials.pwd = "c3FpdmZ3b2tzZ2RqY2ZydXBtbm9x"
    m.credentials.needCreds = true
    return m
}()
let originalBytes = try! codec.sealBytes(original, from: senderKey, to: recipientKey.publicKey,
                                         nonce: Array(1...24))

typealias Opened = (pair: PublicKeyPair, message: SignalingMessage)

/// Opens `bytes` both ways; traps if the two disagree. Returns the common answer.
func differential(_ bytes: [UInt8], _ ours: PrivateKey) -> Opened? {
    func attempt(_ body: () throws -> (PublicKeyPair, SignalingMessage)) -> Result<Opened, EnvelopeError> {
        do { let r = try body(); return .success((r.0, r.1)) } catch let e as EnvelopeError { return .failure(e) } catch {
            fatalError("not an EnvelopeError: \(error)")
        }
    }
    let fast = attempt { try codec.open(bytes, with: ours) }
    let general = attempt { try codec.open(try codec.parse(bytes), with: ours) }
    switch (fast, general) {
    case (.success(let a), .success(let b)):
        require(a.pair == b.pair && a.message == b.message, "open paths disagree on the result")
        require(a.pair.ours == ours.publicKey, "opened with the wrong key")
        return a
    case (.failure(let a), .failure(let b)):
        require(a == b, "open paths disagree on the error: \(a) vs \(b)")
        return nil
    default:
        fatalError("open paths disagree on acceptance: \(fast) vs \(general)")
    }
}

/// Length-delimited field `tag` (wire type 2).
func field(_ tag: UInt8, _ value: [UInt8]) -> [UInt8] {
    var out: [UInt8] = [tag << 3 | 2]
    var n = value.count
    while n >= 0x80 { out.append(UInt8(n & 0x7F) | 0x80); n >>= 7 }
    out.append(UInt8(n))
    return out + value
}

/// The libFuzzer callback (see Main.swift).
func fuzzEnvelope(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Array(UnsafeBufferPointer(start: data, count: size))
    guard let mode = input.first else { return 0 }
    switch mode % 3 {
    case 0:
        let bytes = Array(input.dropFirst())
        _ = differential(bytes, recipientKey)
        _ = differential(bytes, senderKey)
    case 1:
        guard input.count >= 26 else { return 0 }
        let layout = input[1]
        let nonce = Array(input[2..<26])
        let plain = Array(input[26...])
        guard let message = try? SignalingMessage(serializedBytes: plain) else {
            _ = differential(plain, recipientKey)
            return 0
        }
        let wire: [UInt8]
        do { wire = try codec.sealBytes(message, from: senderKey, to: recipientKey.publicKey, nonce: nonce) } catch {
            fatalError("sealBytes refused a parsed message: \(error)")
        }
        let env = try! codec.seal(message, from: senderKey, to: recipientKey.publicKey, nonce: nonce)
        require(try! env.serializedBytes() == wire, "seal and sealBytes differ")
        let sender = field(1, senderKey.publicKey.bytes), recipient = field(2, recipientKey.publicKey.bytes)
        let contents = field(3, field(1, [UInt8](env.contents.body)) + field(2, nonce))
        let laidOut: [UInt8]
        switch layout % 6 {
        case 0: laidOut = wire
        case 1: laidOut = wire + [0x20, 0x01]                          // unknown varint field 4
        case 2: laidOut = contents + recipient + sender                // reordered
        case 3: laidOut = field(2, Array(repeating: 7, count: 32)) + wire   // recipient repeated: last wins
        case 4: laidOut = sender + recipient + field(3, field(2, nonce)) + field(3, field(1, [UInt8](env.contents.body)))
        default: laidOut = sender + recipient + field(3, field(2, nonce) + field(1, [UInt8](env.contents.body)))
        }
        guard let opened = differential(laidOut, recipientKey) else {
            fatalError("a sealed message did not open (layout \(layout % 6))")
        }
        require(opened.pair.theirs == senderKey.publicKey, "wrong sender")
        require(opened.message == message, "opened a different message")
    default:
        var bytes = originalBytes
        var i = 1
        while i + 2 < input.count {
            let offset = (Int(input[i]) << 8 | Int(input[i + 1])) % (bytes.count + 1)
            let x = input[i + 2]
            if offset == bytes.count { bytes.append(x) } else if x == 0 { bytes.remove(at: offset) } else { bytes[offset] ^= x }
            i += 3
        }
        if let opened = differential(bytes, recipientKey) {
            require(opened.pair.theirs == senderKey.publicKey && opened.message == original, "forgery")
        }
    }
    return 0
}
