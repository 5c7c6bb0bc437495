/// The one "first holder starts it, last holder stops it" rule: how many holders each key has.
/// The subscription registry counts a private key's handlers with it (its first handler makes
/// the key's subscription, its last removes it), the gossip backend counts a topic's holders
/// (the registry and every envelope tap: the first subscribes the node's topic, the last
/// unsubscribes it), and the `grpc://` client opens and closes a key's stream on the registry's
/// first and last. Not thread-safe by itself: it lives inside its owner's lock.
public struct Holders<Key: Hashable & Sendable>: Sendable {
    public enum Change: Sendable, Equatable {
        /// The key had no holder before this one.
        case first
        /// That was the key's last holder.
        case last
        /// Neither.
        case none
    }

    private var counts: [Key: Int] = [:]

    public init() {}

    /// One more holder of `key`.
    @discardableResult
    public mutating func take(_ key: Key) -> Change {
        let n = counts[key, default: 0] + 1
        counts[key] = n
        return n == 1 ? .first : .none
    }

    /// One holder of `key` fewer; releasing a key nobody holds changes nothing (`.none`).
    @discardableResult
    public mutating func release(_ key: Key) -> Change {
        guard let n = counts[key] else { return .none }
        if n <= 1 { counts[key] = nil; return .last }
        counts[key] = n - 1
        return .none
    }

    public func holds(_ key: Key) -> Bool { counts[key] != nil }
    public func count(of key: Key) -> Int { counts[key] ?? 0 }
    public var isEmpty: Bool { counts.isEmpty }
}
