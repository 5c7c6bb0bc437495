import Synchronization

/// Who wants which messages: per private key (i.e. per recipient public key), handlers per sender
/// key, `.zero` meaning any sender. Shared by every backend; thread-safe.
///
/// Return values follow the contract: `subscribe` is true when it created the first subscription
/// for that private key; `unsubscribe` is true when it removed the last handler for that pair.
/// When the last handler of a private key goes, the key's subscription goes with it, so a later
/// `subscribe` reports it as first again (and a gossip node drops the topic).
public final class SubscriptionRegistry: Sendable {
    struct Entry {
        var privateKey: PrivateKey
        var handlers: [Key: [any MessageHandler]] = [:]
    }
    /// Entries keyed by our public key, and how many handlers each key has (`Holders`: the
    /// first makes the key's entry, the last removes it).
    private struct State {
        var entries: [Key: Entry] = [:]
        var handlers = Holders<Key>()
    }
    private let state = Mutex(State())

    public init() {}

    public struct SubscribeResult: Sendable { public var firstForKey: Bool; public var added: Bool }

    public func subscribe(_ kp: KeyPair, _ handler: any MessageHandler) -> SubscribeResult {
        state.withLock { s in
            let pub = kp.ours.publicKey
            var entry = s.entries[pub] ?? Entry(privateKey: kp.ours)
            var list = entry.handlers[kp.theirs] ?? []
            guard !list.contains(where: { $0 === handler }) else { return SubscribeResult(firstForKey: false, added: false) }
            list.append(handler)
            entry.handlers[kp.theirs] = list
            s.entries[pub] = entry
            return SubscribeResult(firstForKey: s.handlers.take(pub) == .first, added: true)
        }
    }

    public struct UnsubscribeResult: Sendable {
        /// The handler was registered for the pair and removed, and the pair has none left.
        public var lastForPair: Bool
        /// The private key has no handler left at all (its subscription is gone).
        public var lastForKey: Bool
    }

    public func unsubscribe(_ kp: KeyPair, _ handler: any MessageHandler) throws -> UnsubscribeResult {
        try state.withLock { s throws in
            let pub = kp.ours.publicKey
            guard var entry = s.entries[pub] else { throw BackendError.notSubscribed(pub) }
            var list = entry.handlers[kp.theirs] ?? []
            guard let idx = list.firstIndex(where: { $0 === handler }) else {
                return UnsubscribeResult(lastForPair: false, lastForKey: false)
            }
            list.remove(at: idx)
            entry.handlers[kp.theirs] = list.isEmpty ? nil : list
            let lastForKey = s.handlers.release(pub) == .last
            s.entries[pub] = lastForKey ? nil : entry
            return UnsubscribeResult(lastForPair: list.isEmpty, lastForKey: lastForKey)
        }
    }

    /// The private key subscribed for `recipient`, if any.
    public func privateKey(for recipient: Key) -> PrivateKey? {
        state.withLock { $0.entries[recipient]?.privateKey }
    }

    /// Every recipient public key with at least one handler.
    public var recipients: [Key] { state.withLock { Array($0.entries.keys) } }

    public var isEmpty: Bool { state.withLock { $0.entries.isEmpty } }

    /// Handlers for a message from `sender` to `recipient`: the any-sender ones first, then the
    /// sender-specific ones (a handler registered under both is called for each).
    public func handlers(recipient: Key, sender: Key) -> [any MessageHandler] {
        state.withLock { s in
            guard let e = s.entries[recipient] else { return [] }
            return (e.handlers[.zero] ?? []) + (sender.isZero ? [] : (e.handlers[sender] ?? []))
        }
    }

    /// Opens `envelope` (already addressed to a subscribed key) and calls its handlers outside the
    /// lock. Returns the number of handler calls; throws if the envelope is refused (then no
    /// handler is called). Envelopes for keys nobody subscribed are dropped: returns 0.
    @discardableResult
    public func dispatch(_ envelope: Envelope, codec: EnvelopeCodec) throws -> Int {
        call(try codec.open(envelope, keyFor: privateKey(for:)))
    }

    /// `dispatch` for serialized envelope bytes, as they arrive: the codec's wire fast path opens
    /// them without building an `Envelope` (the same envelopes refused, with the same errors).
    @discardableResult
    public func dispatch(_ bytes: [UInt8], codec: EnvelopeCodec) throws -> Int {
        call(try codec.open(bytes, keyFor: privateKey(for:)))
    }

    private func call(_ opened: (PublicKeyPair, SignalingMessage)?) -> Int {
        guard let opened else { return 0 }
        let (pair, message) = opened
        let hs = handlers(recipient: pair.ours, sender: pair.theirs)
        for h in hs { h.onSignalingMessage(pair, message) }
        return hs.count
    }
}
