import CSodium
import Foundation

/// A 32-byte Curve25519 key (public, private or shared), printed as standard base64
/// exactly like WireGuard keys (44 characters). The all-zero key means "any peer".
public struct Key: Hashable, Sendable, CustomStringConvertible {
    /// The 32 bytes in memory order, held as four words. (Deliberately not a SIMD vector: its
    /// 16/32-byte alignment is not honoured in async frames by this toolchain, which corrupts
    /// memory; a tuple of UInt64 has plain 8-byte alignment and a guaranteed contiguous layout.)
    public typealias Storage = (UInt64, UInt64, UInt64, UInt64)
    public var storage: Storage

    public static let length = 32
    /// The all-zero key: in a subscription it stands for "any sender".
    public static let zero = Key(storage: (0, 0, 0, 0))

    public init(storage: Storage) { self.storage = storage }

    /// Builds a key by letting `body` write the 32 bytes.
    @inlinable
    public init(writing body: (UnsafeMutableRawBufferPointer) throws -> Void) rethrows {
        var s: Storage = (0, 0, 0, 0)
        try Swift.withUnsafeMutableBytes(of: &s, body)
        storage = s
    }

    /// Creates a key from exactly 32 bytes.
    public init(bytes: some Collection<UInt8>) throws {
        guard bytes.count == Key.length else { throw KeyError.wrongLength(bytes.count) }
        self.init { out in
            let copied: Void? = bytes.withContiguousStorageIfAvailable { out.copyMemory(from: UnsafeRawBufferPointer($0)) }
            if copied == nil { for (i, b) in bytes.enumerated() { out[i] = b } }
        }
    }

    /// Parses a standard base64 key (WireGuard format). Surrounding whitespace is ignored.
    public init(base64 text: some StringProtocol) throws {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { throw KeyError.empty }
        guard let data = Data(base64Encoded: trimmed) else { throw KeyError.invalidBase64(KeyError.whyNotBase64(trimmed)) }
        guard data.count == Key.length else { throw KeyError.wrongLength(data.count) }
        try self.init(bytes: data)
    }

    /// Byte `i` (0…31).
    public subscript(byte i: Int) -> UInt8 { withUnsafeBytes { $0[i] } }

    public var bytes: [UInt8] { withUnsafeBytes { Array($0) } }
    public var data: Data { withUnsafeBytes { Data($0) } }
    public var base64: String { data.base64EncodedString() }
    public var description: String { base64 }
    public var isZero: Bool { self == .zero }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(storage.0); hasher.combine(storage.1); hasher.combine(storage.2); hasher.combine(storage.3)
    }

    public static func == (a: Key, b: Key) -> Bool {
        a.storage.0 == b.storage.0 && a.storage.1 == b.storage.1 && a.storage.2 == b.storage.2 && a.storage.3 == b.storage.3
    }

    /// Runs `body` with a pointer to the 32 bytes.
    @inlinable
    public func withUnsafeBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        try Swift.withUnsafeBytes(of: storage, body)
    }

    /// Compares two keys as 32-byte big-endian integers (used to pick the controlling ICE agent:
    /// the smaller public key controls).
    public static func isBigEndianLess(_ a: Key, _ b: Key) -> Bool {
        for i in 0..<32 where a[byte: i] != b[byte: i] { return a[byte: i] < b[byte: i] }
        return false
    }
}

/// Why a key could not be parsed.
public enum KeyError: Error, Equatable, Sendable, CustomStringConvertible {
    case empty
    /// Not standard base64; the payload says why (never the text itself: it may be a private key).
    case invalidBase64(String)
    case wrongLength(Int)

    public var description: String {
        switch self {
        case .empty: return "key is empty"
        case .invalidBase64(let why): return "key is not valid base64 (\(why))"
        case .wrongLength(let n): return "key must be 32 bytes (44 base64 characters), got \(n) bytes"
        }
    }
}

extension KeyError {
    /// Why `text` is not one standard base64 key, without repeating any of it.
    static func whyNotBase64(_ text: String) -> String {
        if text.contains(where: { $0 == "\n" || $0 == "\r" }) { return "it spans several lines; give one key" }
        if text.contains(where: { $0 == "-" || $0 == "_" }) {
            return "it uses the URL-safe alphabet ('-', '_'); keys use standard base64 ('+', '/'), as wg prints them"
        }
        if text.contains(where: { $0.isWhitespace }) { return "it contains spaces" }
        return "expected 44 characters of standard base64, as warren genkey or wg genkey print"
    }
}

/// A Curve25519 private key together with its public key (computed once).
public struct PrivateKey: Hashable, Sendable, CustomStringConvertible {
    public let key: Key
    public let publicKey: Key

    /// Wraps a private key; clamps it as WireGuard does and derives the public key.
    public init(_ raw: Key) {
        Sodium.ensureInitialised()
        let clamped = Key { out in
            raw.withUnsafeBytes { out.copyMemory(from: $0) }
            out[0] &= 248; out[31] &= 127; out[31] |= 64
        }
        key = clamped
        publicKey = Key { out in
            clamped.withUnsafeBytes { sk in
                _ = crypto_scalarmult_base(out.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                           sk.baseAddress!.assumingMemoryBound(to: UInt8.self))
            }
        }
    }

    public init(base64 text: some StringProtocol) throws { self.init(try Key(base64: text)) }

    /// 32 random bytes from libsodium's CSPRNG, clamped.
    public static func generate() -> PrivateKey {
        Sodium.ensureInitialised()
        return PrivateKey(Key { randombytes_buf($0.baseAddress!, 32) })
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
