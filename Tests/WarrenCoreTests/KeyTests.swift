import Foundation
import Testing
@testable import WarrenCore

@Suite struct KeyTests {
    @Test func generateDeriveAndPrint() throws {
        let k = PrivateKey.generate()
        #expect(k.base64.count == 44)
        let again = try PrivateKey(base64: k.base64)
        #expect(again == k)
        #expect(again.publicKey == k.publicKey)
        #expect(k.publicKey != .zero)
        // clamping
        let b = k.key.bytes
        #expect(b[0] & 7 == 0 && b[31] & 0x80 == 0 && b[31] & 0x40 != 0)
    }

    @Test func knownPublicKey() throws {
        // RFC 7748 §6.1: Alice's private key and public key.
        let sk = Data(hexString: "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")!
        let pk = Data(hexString: "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")!
        #expect(PrivateKey(try Key(bytes: sk)).publicKey == (try Key(bytes: pk)))
    }

    @Test func badInputIsATypedError() {
        #expect(throws: KeyError.empty) { try Key(base64: "  ") }
        #expect(throws: KeyError.wrongLength(16)) { try Key(base64: Data(count: 16).base64EncodedString()) }
        #expect(throws: KeyError.wrongLength(33)) { try Key(bytes: [UInt8](repeating: 1, count: 33)) }
        do { _ = try Key(base64: "not base64!!"); Issue.record("accepted garbage") } catch {
            guard case .invalidBase64? = error as? KeyError else { Issue.record("wrong error \(error)"); return }
            #expect("\(error)".contains("base64"))
        }
    }

    /// Key errors never repeat the text: it may be a private key.
    @Test func keyErrorsCarryNoKeyMaterial() {
        let k = PrivateKey.generate().base64
        let urlSafe = k.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_") + "-"
        for (text, why) in [(urlSafe, "URL-safe"), (k + "\n" + k, "several lines"), (k + "!", "standard base64")] {
            do { _ = try Key(base64: text); Issue.record("accepted \(why)") } catch {
                let d = "\(error)"
                #expect(d.contains(why), "\(d)")
                #expect(!d.contains(String(k.prefix(12))) && !d.contains(String(urlSafe.prefix(12))), "key material in \(d)")
            }
        }
    }

    @Test func zeroKeyMeansAnyPeer() throws {
        #expect(Key.zero.isZero)
        #expect(try Key(base64: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=") == .zero)
    }

    @Test func communityKeyKnownAnswer() throws {
        let k = try PrivateKey.community(passphrase: "hallo")
        #expect(k.base64 == "EOUvCX2JaJ/1FOIA5T4B2MZzHRNzE7IdIHHg3zLCF1c=")
        #expect(throws: CommunityKeyError.emptyPassphrase) { try PrivateKey.community(passphrase: "") }
    }

    @Test func bigEndianOrder() throws {
        var a = [UInt8](repeating: 0, count: 32), b = a
        a[0] = 1; b[31] = 0xFF
        #expect(Key.isBigEndianLess(try Key(bytes: b), try Key(bytes: a)))
        #expect(!Key.isBigEndianLess(try Key(bytes: a), try Key(bytes: a)))
    }
}

extension Data {
    init?(hexString: String) {
        var out = Data()
        var it = hexString.makeIterator()
        while let c1 = it.next() {
            guard let c2 = it.next(), let b = UInt8(String([c1, c2]), radix: 16) else { return nil }
            out.append(b)
        }
        self = out
    }
    var hex: String { map { String(format: "%02x", $0) }.joined() }
}
