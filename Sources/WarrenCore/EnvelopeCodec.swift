import CSodium
import Foundation
import Synchronization
import SwiftProtobuf

/// Seals `Message`s into cunīcu `Envelope`s and opens them again.
///
/// `body` is NaCl `crypto_box` (Curve25519-XSalsa20-Poly1305: 16-byte MAC, then ciphertext) of the
/// serialized `Message`, under a fresh random 24-byte nonce, with the sender's private key and the
/// recipient's public key: byte-for-byte what Go's `nacl/box.Seal` produces.
///
/// The X25519 work (`crypto_box_beforenm`) is done once per (our private key, their public key)
/// pair and kept in a bounded cache, so each further message costs only the symmetric part.
/// The codec is thread-safe.
public final class EnvelopeCodec: Sendable {
    public static let nonceLength = 24
    public static let macLength = 16

    /// The process-wide codec used by the backends.
    public static let shared = EnvelopeCodec()

    private struct PairKey: Hashable {
        var ours: Key
        var theirs: Key
        /// Keys are uniformly random: two words are plenty for the hash (equality checks all 64 bytes).
        func hash(into h: inout Hasher) { h.combine(ours.storage.0 ^ theirs.storage.1); h.combine(theirs.storage.0) }
        static func == (a: PairKey, b: PairKey) -> Bool { a.ours == b.ours && a.theirs == b.theirs }
    }
    private struct Cache {
        var map: [PairKey: Key] = [:]
        var order: [PairKey] = []   // FIFO ring for eviction
        var next = 0
        var hits: UInt64 = 0
        var misses: UInt64 = 0
    }
    private let cache = Mutex(Cache())
    private let nonces = NonceGenerator()
    /// Most shared keys kept; the oldest computed is evicted first.
    public let cacheCapacity: Int
    /// When false, every message recomputes the shared key (what `crypto_box_easy` does).
    public let cachesSharedKeys: Bool

    public init(cacheCapacity: Int = 4096, cachesSharedKeys: Bool = true) {
        Sodium.ensureInitialised()
        self.cacheCapacity = max(1, cacheCapacity)
        self.cachesSharedKeys = cachesSharedKeys
    }

    /// (hits, misses, entries) of the shared-key cache.
    public var cacheStatistics: (hits: UInt64, misses: UInt64, entries: Int) {
        cache.withLock { ($0.hits, $0.misses, $0.map.count) }
    }

    /// The precomputed crypto_box key for this pair (computed once, then cached).
    func sharedKey(ours: PrivateKey, theirs: Key) -> Key {
        let pk = PairKey(ours: ours.key, theirs: theirs)
        if cachesSharedKeys, let k = cache.withLock({ c -> Key? in
            if let k = c.map[pk] { c.hits &+= 1; return k }
            return nil
        }) { return k }
        let key = Key { out in
            theirs.withUnsafeBytes { pub in
                ours.key.withUnsafeBytes { sec in
                    // Fails only for low-order public keys; the resulting all-zero key then
                    // never authenticates anything, so open() reports authenticationFailed.
                    _ = crypto_box_beforenm(out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                            pub.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                            sec.baseAddress!.assumingMemoryBound(to: UInt8.self))
                }
            }
        }
        guard cachesSharedKeys else { return key }
        cache.withLock { c in
            c.misses &+= 1
            if c.map[pk] != nil { return }
            if c.order.count < cacheCapacity {
                c.order.append(pk)
            } else {
                c.map[c.order[c.next]] = nil
                c.order[c.next] = pk
                c.next = (c.next + 1) % cacheCapacity
            }
            c.map[pk] = key
        }
        return key
    }

    // MARK: Seal

    /// Seals `message` from `ours` to `recipient`. `nonce` is for test vectors only: pass nil
    /// (the default) to get a fresh random nonce, which is what every real message must use.
    /// The fields of the bytes `sealBytes` writes.
    public func seal(_ message: SignalingMessage, from ours: PrivateKey, to recipient: Key,
                     nonce: [UInt8]? = nil) throws -> Envelope {
        let wire = try sealBytes(message, from: ours, to: recipient, nonce: nonce)
        guard let w = wire.withUnsafeBufferPointer({ Self.parseCanonical($0) }) else {
            preconditionFailure("sealWire writes the canonical layout")
        }
        var env = Envelope()
        env.sender = Data(wire[w.sender])
        env.recipient = Data(wire[w.recipient])
        env.contents.body = Data(wire[w.body])
        env.contents.nonce = Data(wire[w.nonce])
        return env
    }

    /// Seals and serializes: the bytes that travel.
    public func sealBytes(_ message: SignalingMessage, from ours: PrivateKey, to recipient: Key,
                          nonce: [UInt8]? = nil) throws -> [UInt8] {
        let plain: [UInt8]
        do { plain = try message.serializedBytes() } catch { throw EnvelopeError.malformedMessage("\(error)") }
        var n: (UInt64, UInt64, UInt64) = (0, 0, 0)   // 24 bytes on the stack
        if let nonce {
            guard nonce.count == Self.nonceLength else { throw EnvelopeError.invalidNonceLength(nonce.count) }
            withUnsafeMutableBytes(of: &n) { $0.copyBytes(from: nonce) }
        } else {
            withUnsafeMutableBytes(of: &n) { nonces.fill($0) }
        }
        return withUnsafeBytes(of: &n) { sealWire(plain: plain, ours: ours, recipient: recipient, nonce: $0) }
    }

    // MARK: Open

    /// Parses serialized envelope bytes (no decryption).
    public func parse(_ bytes: some Collection<UInt8>) throws -> Envelope {
        do {
            return try Envelope(serializedBytes: Array(bytes))
        } catch {
            throw EnvelopeError.malformedEnvelope("\(error)")
        }
    }

    /// Opens serialized envelope bytes addressed to `ours`.
    public func open(_ bytes: [UInt8], with ours: PrivateKey) throws -> (PublicKeyPair, SignalingMessage) {
        let fast: Result<(PublicKeyPair, SignalingMessage)?, any Error> = bytes.withUnsafeBufferPointer { p in
            do { return .success(try openWire(p, with: ours)) } catch { return .failure(error) }
        }
        if let r = try fast.get() { return r }
        return try open(try parse(bytes), with: ours)
    }

    /// Opens serialized envelope bytes addressed to `ours`.
    public func open(_ bytes: some Collection<UInt8>, with ours: PrivateKey) throws -> (PublicKeyPair, SignalingMessage) {
        try open(Array(bytes), with: ours)
    }

    /// Opens serialized envelope bytes with the private key `key` gives for their recipient (a
    /// receiver's subscriptions); nil, and nothing opened, when it gives none. The canonical
    /// layout takes the wire fast path, without building an `Envelope`; any other is parsed in
    /// full first. Either way the same envelopes are refused, with the same errors, as by
    /// `parse` followed by `open(_:keyFor:)`.
    public func open(_ bytes: [UInt8], keyFor key: (Key) -> PrivateKey?) throws -> (PublicKeyPair, SignalingMessage)? {
        switch try openWire(bytes, keyFor: key) {
        case .opened(let pair, let message): return (pair, message)
        case .notOurs: return nil
        case .notCanonical: return try open(try parse(bytes), keyFor: key)
        }
    }

    /// Opens `envelope` with the private key `key` gives for its recipient; nil, and nothing
    /// opened, when it gives none. The recipient must be 32 bytes in any case.
    public func open(_ envelope: Envelope, keyFor key: (Key) -> PrivateKey?) throws -> (PublicKeyPair, SignalingMessage)? {
        guard let ours = key(try Self.recipientKey(envelope.recipient)) else { return nil }
        return try open(envelope, with: ours)
    }

    /// The shape every envelope must have before anyone can open it: 32-byte sender and
    /// recipient keys, a 24-byte nonce, a body at least its 16-byte MAC (`authenticationFailed`
    /// if shorter). What a relay that holds no key can check; returns the recipient.
    public static func checkShape(_ envelope: Envelope) throws -> Key {
        try checkKeyLengths(sender: envelope.sender.count, recipient: envelope.recipient.count)
        try checkBoxLengths(body: envelope.contents.body.count, nonce: envelope.contents.nonce.count)
        return try recipientKey(envelope.recipient)
    }

    /// Opens `envelope` with our private key: checks the key lengths, that it is addressed to us,
    /// the nonce length, authenticates and decrypts the body, and parses the `Message`.
    /// Nothing that fails any of these checks is returned.
    public func open(_ envelope: Envelope, with ours: PrivateKey) throws -> (PublicKeyPair, SignalingMessage) {
        try envelope.sender.withUnsafeBytes { sender in
            try envelope.recipient.withUnsafeBytes { recipient in
                try envelope.contents.body.withUnsafeBytes { body in
                    try envelope.contents.nonce.withUnsafeBytes { nonce in
                        try openFields(sender: sender, recipient: recipient, body: body, nonce: nonce, with: ours)
                    }
                }
            }
        }
    }
}

/// Why an envelope was refused. Nothing refused ever reaches a handler.
public enum EnvelopeError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The envelope is addressed to another key.
    case wrongRecipient(expected: Key, got: Key)
    /// `contents.nonce` is not 24 bytes.
    case invalidNonceLength(Int)
    /// The MAC did not verify: the body, nonce or keys were altered, or it was sealed for someone else.
    case authenticationFailed
    /// The envelope bytes are not a valid `cunicu.signaling.Envelope`.
    case malformedEnvelope(String)
    /// The decrypted body is not a valid `cunicu.signaling.Message` (or the message could not be serialized).
    case malformedMessage(String)
    /// `sender` or `recipient` is not 32 bytes.
    case invalidKeyLength(field: String, length: Int)
    /// The key has its top bit set: X25519 would treat it as another key (an alias), so it is refused.
    case nonCanonicalKey(field: String)

    public var description: String {
        switch self {
        case .wrongRecipient(let e, let g): return "envelope is addressed to \(g.base64), not to our key \(e.base64)"
        case .invalidNonceLength(let n): return "nonce must be 24 bytes, got \(n)"
        case .authenticationFailed: return "authentication failed (envelope altered or not sealed for this key)"
        case .malformedEnvelope(let m): return "malformed envelope: \(m)"
        case .malformedMessage(let m): return "malformed message: \(m)"
        case .invalidKeyLength(let f, let n): return "\(f) key must be 32 bytes, got \(n)"
        case .nonCanonicalKey(let f): return "\(f) key is not a canonical Curve25519 public key (top bit set)"
        }
    }
}
