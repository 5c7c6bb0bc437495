import CArgon2

/// Community (group) keys: every member derives the same key pair from a passphrase, subscribes
/// to it with `theirs = .zero`, and publishing to the community public key reaches all of them.
extension PrivateKey {
    /// The 21 ASCII bytes cunīcu uses as Argon2id salt.
    public static let communitySalt: [UInt8] = Array("w1c3c0nn3cts3veryb0dy".utf8)

    /// Argon2id(passphrase, salt "w1c3c0nn3cts3veryb0dy", t = 1, m = 64 MiB, p = 4, 32 bytes), clamped.
    /// Costs about 64 MiB and tens of milliseconds: derive once and keep the result.
    public static func community(passphrase: String) throws -> PrivateKey {
        guard !passphrase.isEmpty else { throw CommunityKeyError.emptyPassphrase }
        var out = [UInt8](repeating: 0, count: 32)
        let pwd = Array(passphrase.utf8)
        let salt = communitySalt
        let rc = pwd.withUnsafeBytes { p in
            salt.withUnsafeBytes { s in
                out.withUnsafeMutableBytes { o in
                    argon2id_hash_raw(1, 64 * 1024, 4, p.baseAddress, p.count, s.baseAddress, s.count,
                                      o.baseAddress, o.count)
                }
            }
        }
        guard rc == Int32(ARGON2_OK.rawValue) else {
            throw CommunityKeyError.argon2(String(cString: argon2_error_message(rc)))
        }
        return PrivateKey(try! Key(bytes: out))
    }
}

public enum CommunityKeyError: Error, Equatable, Sendable, CustomStringConvertible {
    case emptyPassphrase
    case argon2(String)
    public var description: String {
        switch self {
        case .emptyPassphrase: return "community passphrase must not be empty"
        case .argon2(let m): return "Argon2id failed: \(m)"
        }
    }
}
