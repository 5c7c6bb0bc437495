import Foundation
import Testing
import WarrenTestSupport
@testable import WarrenCore

/// A bounded fuzz campaign over the envelope codec: mutated sealed envelopes and garbage.
/// Properties: `open` never traps; anything it accepts is authentic (the exact message and
/// sender that were sealed) — no mutation forges a message. `WARREN_FUZZ_ITERATIONS` sets the
/// number of inputs (default 100,000).
@Suite(.computeLane) struct EnvelopeFuzzTests {
    static var iterations: Int {
        ProcessInfo.processInfo.environment["WARREN_FUZZ_ITERATIONS"].flatMap(Int.init) ?? 100_000
    }

    struct RNG: RandomNumberGenerator {
        var s: UInt64
        mutating func next() -> UInt64 {
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test func openNeverTrapsAndNeverForges() throws {
        let codec = EnvelopeCodec()
        let senders = (0..<4).map { _ in PrivateKey.generate() }
        let recipient = PrivateKey.generate()
        var rng = RNG(s: 0xE17E1)
        var originals: [([UInt8], SignalingMessage, Key)] = []
        for (i, s) in senders.enumerated() {
            var m = SignalingMessage()
            switch i {
            case 0: m.credentials.ufrag = "u"; m.credentials.pwd = "p"; m.credentials.needCreds = true
            case 1: m.candidate.address = "10.0.0.\(i)"; m.candidate.port = 51820; m.candidate.type = .host
            case 2: m.peer.name = "peer"; m.peer.allowedIps = ["10.0.0.0/24"]
            default: m.pske.publicKey = Data(repeating: 7, count: 32)
            }
            originals.append((try codec.sealBytes(m, from: s, to: recipient.publicKey), m, s.publicKey))
        }
        var outcomes: [String: Int] = [:]
        let n = Self.iterations
        for k in 0..<n {
            let (orig, msg, sender) = originals[k % originals.count]
            var b = orig
            if k % 20 == 19 {
                b = (0..<Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            } else {
                for _ in 0..<(1 + Int(rng.next() % 3)) {
                    switch rng.next() % 5 {
                    case 0: let i = Int(rng.next() % UInt64(max(1, b.count))); if i < b.count { b[i] ^= UInt8(1) << UInt8(rng.next() % 8) }
                    case 1: let i = Int(rng.next() % UInt64(max(1, b.count))); if i < b.count { b[i] = UInt8(truncatingIfNeeded: rng.next()) }
                    case 2: b.removeLast(Int(rng.next() % UInt64(b.count + 1)))
                    case 3: b.insert(UInt8(truncatingIfNeeded: rng.next()), at: Int(rng.next() % UInt64(b.count + 1)))
                    default: b += [0x78, UInt8(rng.next() % 128)]   // an unknown varint field
                    }
                }
            }
            do {
                let (pair, opened) = try codec.open(b, with: recipient)
                // Accepted: must be exactly what was sealed (unknown fields may have been added).
                #expect(opened == msg && pair.theirs == sender, "forged or altered message accepted at input \(k)")
                outcomes["accepted", default: 0] += 1
            } catch let e as EnvelopeError {
                let name = "\(e)".split(separator: ":").first.map(String.init) ?? "\(e)"
                outcomes[String(name.prefix(40)), default: 0] += 1
            }
        }
        #expect(outcomes.values.reduce(0, +) == n)
        #expect((outcomes["accepted"] ?? 0) < n / 2)
    }
}
