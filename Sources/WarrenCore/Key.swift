import CSodium
import Foundation

/// A 32-byte Curve25519 key (public, private or shared), printed as standard base64
/// exactly like WireGuard keys (44 characters). The all-zero key means "any peer".
public struct Key: Hashable, Sendable, CustomStringConvertible {
    /// The 32 bytes, stored inline.
    public var storage: SIMD32<UInt8>

    public static let length = 32
    /// The all-zero key: in a subscription it stands for "any sender".
    public static let zero = Key(storage: SIMD32<UInt8>(repeating: 0))

    public init(storage: SIMD32<UInt8>) { self.storage = storage }

    /// Creates a key from exactly 32 bytes.
    public init(bytes: some Collection<UInt8>) throws {
        guard bytes.count == Key.length else { throw KeyError.wrongLength(bytes.count) }
        var s = SIMD32<UInt8>(repeating: 0)
        let copied: Void? = bytes.withContiguousStorageIfAvailable { src in
            Swift.withUnsafeMutableBytes(of: &s) { $0.copyMemory(from: UnsafeRawBufferPointer(src)) }
        }
        if copied == nil {
            var i = 0
            for b in bytes { s[i] = b; i += 1 }
        }
        storage = s
    }

    /// Parses a standard base64 key (WireGuard format). Surrounding whitespace is ignored.
    public init(base64 text: some StringProtocol) throws {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw KeyError.empty }
        guard let data = Data(base64Encoded: trimmed) else { throw KeyError.invalidBase64(String(trimmed.prefix(60))) }
        guard data.count == Key.length else { throw KeyError.wrongLength(data.count) }
        try self.init(bytes: data)
    }

    public var bytes: [UInt8] { Swift.withUnsafeBytes(of: storage) { Array($0) } }
    public var data: Data { Swift.withUnsafeBytes(of: storage) { Data($0) } }
    public var base64: String { data.base64EncodedString() }
    public var description: String { base64 }
    public var isZero: Bool { self == .zero }

    /// Hashes the 32 bytes as four words (the synthesized SIMD hash combines 32 single bytes).
    public func hash(into hasher: inout Hasher) {
        let w = unsafeBitCast(storage, to: SIMD4<UInt64>.self)
        hasher.combine(w[0]); hasher.combine(w[1]); hasher.combine(w[2]); hasher.combine(w[3])
    }

    public static func == (a: Key, b: Key) -> Bool { a.storage == b.storage }

    /// Runs `body` with a pointer to the 32 bytes.
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: storage, body)
    }

    /// Compares two keys as 32-byte big-endian integers (used to pick the controlling ICE agent:
    /// the smaller public key controls).
    public static func isBigEndianLess(_ a: Key, _ b: Key) -> Bool {
        for i in 0..<32 where a.storage[i] != b.storage[i] { return a.storage[i] < b.storage[i] }
        return false
    }
}

/// Why a key could not be parsed.
public enum KeyError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    case invalidBase64(String)
    case wrongLength(Int)

    public var description: String {
        switch self {
        case .empty: return "key is empty"
        case .invalidBase64(let s): return "key is not valid base64: \"\(s)\""
        case .wrongLength(let n): return "key must be 32 bytes (44 base64 characters), got \(n) bytes"
        }
    }
}

/// A Curve25519 private key together with its public key (computed once).
public struct PrivateKey: Hashable, Sendable, CustomStringConvertible {
    public let key: Key
    public let publicKey: Key

    /// Wraps a private key; clamps it as WireGuard does and derives the public key.
    public init(_ raw: Key) {
        Sodium.ensureInitialised()
        var s = raw.storage
        s[0] &= 248; s[31] &= 127; s[31] |= 64
        key = Key(storage: s)
        var pub = SIMD32<UInt8>(repeating: 0)
        Swift.withUnsafeMutableBytes(of: &pub) { out in
            Swift.withUnsafeBytes(of: s) { sk in
                _ = crypto_scalarmult_base(out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                           sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
        publicKey = Key(storage: pub)
    }

    public init(base64 text: some StringProtocol) throws { self.init(try Key(base64: text)) }

    /// 32 random bytes from libsodium's CSPRNG, clamped.
    public static func generate() -> PrivateKey {
        Sodium.ensureInitialised()
        var s = SIMD32<UInt8>(repeating: 0)
        Swift.withUnsafeMutableBytes(of: &s) { randombytes_buf($0.baseAddress!, 32) }
        return PrivateKey(Key(storage: s))
    }

    public var base64: String { key.base64 }
    public var description: String { "PrivateKey(public: \(publicKey.base64))" }
}

/// Our private key and the peer's public key: what `publish`, `subscribe` and `unsubscribe` take.
/// `theirs == .zero` in a subscription means "from any sender".
public struct KeyPair: Hashable, Sendable {
    public var ours: PrivateKey
    public var theirs: Key
    public init(ours: PrivateKey, theirs: Key) { self.ours = ours; self.theirs = theirs }
    public var `public`: PublicKeyPair { PublicKeyPair(ours: ours.publicKey, theirs: theirs) }
}

/// What a handler receives: our public key and the sender's public key.
public struct PublicKeyPair: Hashable, Sendable, CustomStringConvertible {
    public var ours: Key
    public var theirs: Key
    public init(ours: Key, theirs: Key) { self.ours = ours; self.theirs = theirs }
    public var description: String { "\(theirs.base64) -> \(ours.base64)" }
}
