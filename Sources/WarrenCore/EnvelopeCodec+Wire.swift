import CSodium
import Foundation

/// A fast path for the Envelope's protobuf wire form. An Envelope is three length-delimited
/// fields (sender = 1, recipient = 2, contents = 3 holding body = 1 and nonce = 2); the canonical
/// encoding that swift-protobuf, Go and Python all produce writes them in field order, each once.
/// This reads and writes exactly that form without building intermediate messages; any other
/// (valid) layout — unknown fields, repeated or reordered fields — falls back to swift-protobuf,
/// so the accepted language is unchanged.
extension EnvelopeCodec {
    struct WireEnvelope {
        var sender: Range<Int>
        var recipient: Range<Int>
        var body: Range<Int>
        var nonce: Range<Int>
    }

    /// A cursor over wire bytes.
    struct WireReader {
        let p: UnsafeBufferPointer<UInt8>
        var i = 0
        init(_ p: UnsafeBufferPointer<UInt8>) { self.p = p }

        mutating func varint(limit: Int) -> Int? {
            var v = 0, shift = 0
            while i < limit, shift < 35 {
                let b = p[i]
                i += 1
                v |= Int(b & 0x7F) << shift
                if b & 0x80 == 0 { return v }
                shift += 7
            }
            return nil
        }

        enum Field { case absent, present(Range<Int>), invalid }

        /// Reads length-delimited field `tag` if it comes next.
        mutating func field(_ tag: UInt8, limit: Int) -> Field {
            guard i < limit, p[i] == tag else { return .absent }
            i += 1
            guard let n = varint(limit: limit), n <= limit - i else { return .invalid }
            let r = i..<(i + n)
            i += n
            return .present(r)
        }
    }

    /// Parses the canonical layout; nil means "not canonical, use the general parser".
    static func parseCanonical(_ p: UnsafeBufferPointer<UInt8>) -> WireEnvelope? {
        var r = WireReader(p)
        let end = p.count
        func range(_ f: WireReader.Field, empty: Int) -> Range<Int>? {
            switch f {
            case .absent: return empty..<empty
            case .present(let x): return x
            case .invalid: return nil
            }
        }
        guard let sender = range(r.field(0x0A, limit: end), empty: 0),
              let recipient = range(r.field(0x12, limit: end), empty: 0) else { return nil }
        var body = 0..<0, nonce = 0..<0
        if r.i < end {
            guard p[r.i] == 0x1A else { return nil }
            r.i += 1
            guard let n = r.varint(limit: end), n <= end - r.i else { return nil }
            let cend = r.i + n
            guard let b = range(r.field(0x0A, limit: cend), empty: cend),
                  let nn = range(r.field(0x12, limit: cend), empty: cend), r.i == cend else { return nil }
            body = b
            nonce = nn
        }
        guard r.i == end else { return nil }
        return WireEnvelope(sender: sender, recipient: recipient, body: body, nonce: nonce)
    }

    static func varintSize(_ v: Int) -> Int {
        var v = UInt(v), n = 1
        while v >= 0x80 { v >>= 7; n += 1 }
        return n
    }

    /// Seals straight into the canonical wire form (the same bytes swift-protobuf would write).
    func sealWire(plain: [UInt8], ours: PrivateKey, recipient: Key, nonce: UnsafeRawBufferPointer) -> [UInt8] {
        let bodyLen = plain.count + Self.macLength
        let contentsLen = 1 + Self.varintSize(bodyLen) + bodyLen + 1 + 1 + Self.nonceLength
        let total = 2 * 34 + 1 + Self.varintSize(contentsLen) + contentsLen
        let k = sharedKey(ours: ours, theirs: recipient)
        return [UInt8](unsafeUninitializedCapacity: total) { out, count in
            var i = 0
            func put(_ b: UInt8) { out[i] = b; i += 1 }
            func put(_ key: Key) { key.withUnsafeBytes { src in for j in 0..<32 { out[i + j] = src[j] } }; i += 32 }
            func putVarint(_ v: Int) {
                var v = UInt(v)
                while v >= 0x80 { put(UInt8(v & 0x7F) | 0x80); v >>= 7 }
                put(UInt8(v))
            }
            put(0x0A); put(32); put(ours.publicKey)
            put(0x12); put(32); put(recipient)
            put(0x1A); putVarint(contentsLen)
            put(0x0A); putVarint(bodyLen)
            let bodyStart = i
            i += bodyLen
            put(0x12); put(UInt8(Self.nonceLength))
            for j in 0..<Self.nonceLength { out[i + j] = nonce[j] }
            i += Self.nonceLength
            plain.withUnsafeBufferPointer { m in
                k.withUnsafeBytes { kk in
                    _ = crypto_box_easy_afternm(out.baseAddress! + bodyStart, m.baseAddress, UInt64(m.count),
                                                nonce.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                                kk.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
            count = i
        }
    }

    /// Opens a canonical wire envelope; nil if the layout is not canonical.
    func openWire(_ p: UnsafeBufferPointer<UInt8>, with ours: PrivateKey) throws -> (PublicKeyPair, SignalingMessage)? {
        guard let w = Self.parseCanonical(p) else { return nil }
        return try openWire(w, in: p, with: ours)
    }

    func openWire(_ w: WireEnvelope, in p: UnsafeBufferPointer<UInt8>, with ours: PrivateKey) throws -> (PublicKeyPair, SignalingMessage) {
        let raw = UnsafeRawBufferPointer(p)
        return try openFields(sender: UnsafeRawBufferPointer(rebasing: raw[w.sender]),
                              recipient: UnsafeRawBufferPointer(rebasing: raw[w.recipient]),
                              body: UnsafeRawBufferPointer(rebasing: raw[w.body]),
                              nonce: UnsafeRawBufferPointer(rebasing: raw[w.nonce]), with: ours)
    }

    /// What `openWire(_:keyFor:)` did.
    enum WireOpened {
        /// Not the canonical layout: nothing read, use the general parser.
        case notCanonical
        /// `keyFor` gave no private key for the recipient: not opened.
        case notOurs
        case opened(PublicKeyPair, SignalingMessage)
    }

    /// Opens canonical wire bytes with the private key `key` gives for their recipient.
    func openWire(_ bytes: [UInt8], keyFor key: (Key) -> PrivateKey?) throws -> WireOpened {
        try bytes.withUnsafeBufferPointer { p in
            guard let w = Self.parseCanonical(p) else { return .notCanonical }
            let recipient = try Self.recipientKey(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(p)[w.recipient]))
            guard let ours = key(recipient) else { return .notOurs }
            let (pair, message) = try openWire(w, in: p, with: ours)
            return .opened(pair, message)
        }
    }

    /// The recipient field as a key (`invalidKeyLength` unless it is 32 bytes).
    static func recipientKey(_ r: some Collection<UInt8>) throws -> Key {
        guard r.count == Key.length, let k = try? Key(bytes: r) else {
            throw EnvelopeError.invalidKeyLength(field: "recipient", length: r.count)
        }
        return k
    }

    /// The length rules of an envelope's keys: 32 bytes each.
    static func checkKeyLengths(sender: Int, recipient: Int) throws {
        guard sender == Key.length else { throw EnvelopeError.invalidKeyLength(field: "sender", length: sender) }
        guard recipient == Key.length else { throw EnvelopeError.invalidKeyLength(field: "recipient", length: recipient) }
    }

    /// The length rules of an envelope's box: a 24-byte nonce, a body at least its 16-byte MAC
    /// (a shorter one can never authenticate).
    static func checkBoxLengths(body: Int, nonce: Int) throws {
        guard nonce == Self.nonceLength else { throw EnvelopeError.invalidNonceLength(nonce) }
        guard body >= Self.macLength else { throw EnvelopeError.authenticationFailed }
    }

    /// The checks and decryption shared by every way of opening: key lengths, recipient,
    /// canonical sender key, nonce length, authentication, then the `Message`.
    func openFields(sender s: UnsafeRawBufferPointer, recipient r: UnsafeRawBufferPointer,
                    body: UnsafeRawBufferPointer, nonce: UnsafeRawBufferPointer,
                    with ours: PrivateKey) throws -> (PublicKeyPair, SignalingMessage) {
        try Self.checkKeyLengths(sender: s.count, recipient: r.count)
        let recipient = try Key(bytes: r)
        guard recipient == ours.publicKey else { throw EnvelopeError.wrongRecipient(expected: ours.publicKey, got: recipient) }
        let sender = try Key(bytes: s)
        // X25519 ignores the top bit of a public key, so a sender key with bit 255 set is a second
        // spelling of another key: it would authenticate while naming a different sender.
        // crypto_scalarmult_base never produces one, so refuse it.
        guard sender[byte: 31] & 0x80 == 0 else { throw EnvelopeError.nonCanonicalKey(field: "sender") }
        try Self.checkBoxLengths(body: body.count, nonce: nonce.count)
        let k = sharedKey(ours: ours, theirs: sender)
        let plainCount = body.count - Self.macLength
        var rc: Int32 = -1
        let plain = [UInt8](unsafeUninitializedCapacity: max(plainCount, 1)) { m, count in
            rc = k.withUnsafeBytes { kk in
                crypto_box_open_easy_afternm(m.baseAddress!,
                                             body.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt64(body.count),
                                             nonce.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                             kk.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
            count = rc == 0 ? plainCount : 0
        }
        guard rc == 0 else { throw EnvelopeError.authenticationFailed }
        do {
            let msg = try SignalingMessage(serializedBytes: plain)
            return (PublicKeyPair(ours: ours.publicKey, theirs: sender), msg)
        } catch {
            throw EnvelopeError.malformedMessage("\(error)")
        }
    }
}
