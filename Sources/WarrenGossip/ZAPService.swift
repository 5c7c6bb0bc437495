import CZeroMQ
import Foundation
import Logging
import Synchronization
import WarrenCore
import WarrenEngine

/// The ZeroMQ authentication (ZAP, RFC 27) handler of the shared context: one thread with a REP
/// socket on `inproc://zeromq.zap.01`. Every node registers under its own ZAP domain: a
/// closed-overlay node with its allow-list (a CURVE client whose public key is not on the list of
/// the node it dials is refused during the handshake, and the refusal is counted for that node),
/// an open one with none (every NULL handshake is accepted). Every accepted connection gets a
/// user id ending in `#N`, N a number no other connection of the process gets: ZeroMQ attaches
/// it to each message as the `User-Id` property, so the node knows which connection a frame
/// arrived on (its `ConnectionID`).
final class ZAPService: Sendable {
    struct Policy {
        /// nil: an open overlay (NULL mechanism, no allow-list).
        var allowed: Set<Key>?
        var refused: UInt64 = 0
        var refusedKeys: [Key: UInt64] = [:]
        var logger: Logger
    }

    static let shared = ZAPService(context: .shared)

    private let policies = Mutex<[String: Policy]>([:])
    private let started = Atomic<Bool>(false)
    private let startLock = Mutex<Void>(())
    private let context: ZMQContext
    /// The last connection number handed out.
    private let connections = Atomic<UInt64>(0)

    init(context: ZMQContext) { self.context = context }

    /// Whether `context` is the one this handler serves (ZAP is per context).
    func serves(_ context: ZMQContext) -> Bool { context.handle == self.context.handle }

    /// Starts the handler (once); returns when it is bound.
    func start() throws {
        // Under a lock, so no caller returns before the handler is bound: a CURVE server socket
        // must never handshake while no ZAP handler listens.
        try startLock.withLock { _ throws in
            guard !started.load(ordering: .acquiring) else { return }
            let rep = try ZMQSocket(context, type: ZMQ_REP)
            try rep.set(ZMQ_LINGER, 0)
            do { try rep.bind("inproc://zeromq.zap.01") } catch { rep.close(); throw error }
            // The REP goes to the handler's thread, the only one to use it from here on.
            let socket = Handover(rep)
            let t = Thread { [self] in if let rep = socket.take() { serve(rep) } }
            t.name = "warren-zap"
            t.start()
            started.store(true, ordering: .releasing)
        }
    }

    func register(domain: String, allowed: Set<Key>?, logger: Logger) {
        policies.withLock { $0[domain] = Policy(allowed: allowed, logger: logger) }
    }

    /// Replaces a domain's allow-list; returns the previous one.
    func update(domain: String, allowed: Set<Key>) -> Set<Key> {
        policies.withLock { all -> Set<Key> in
            let old = all[domain]?.allowed ?? []
            all[domain]?.allowed = allowed
            return old
        }
    }

    func unregister(domain: String) {
        _ = policies.withLock { $0.removeValue(forKey: domain) }
    }

    /// The domains registered now.
    func registeredDomains() -> Set<String> { policies.withLock { Set($0.keys) } }

    func refusals(domain: String) -> UInt64 { policies.withLock { $0[domain]?.refused ?? 0 } }

    /// A connection number no accepted connection has (for connections the driver opens itself).
    func nextConnectionNumber() -> UInt64 { connections.add(1, ordering: .relaxed).newValue }

    /// A user id for a newly accepted connection: `prefix#N`.
    func connectionUser(_ prefix: String) -> String {
        prefix + "#" + String(connections.add(1, ordering: .relaxed).newValue)
    }

    /// Decides one request: NULL for an open node's domain, listed CURVE keys for a closed one's:
    /// 200 with a fresh connection user id; 400 otherwise.
    func decide(domain: String, mechanism: String, credential: [UInt8]) -> (status: String, text: String, user: String) {
        guard mechanism == "CURVE" else {
            guard mechanism == "NULL" else { return ("400", "CURVE required", "") }
            if domain.isEmpty { return ("200", "OK", "") }
            let open = policies.withLock { $0[domain].map { $0.allowed == nil } }
            return open == true ? ("200", "OK", connectionUser("")) : ("400", "CURVE required", "")
        }
        guard credential.count == 32, let key = try? Key(bytes: credential) else { return ("400", "bad key", "") }
        return policies.withLock { all -> (String, String, String) in
            guard var p = all[domain], let allowed = p.allowed else { return ("400", "unknown domain", "") }
            if allowed.contains(key) { return ("200", "OK", connectionUser(key.base64)) }
            p.refused &+= 1
            let n = (p.refusedKeys[key] ?? 0) &+ 1
            if p.refusedKeys.count < 4096 || p.refusedKeys[key] != nil { p.refusedKeys[key] = n }
            // Log the first refusal of each key, then every 1,000th: no log flood.
            if n == 1 || n % 1000 == 0 {
                p.logger.warning("refused a node that is not on the allow-list",
                                 metadata: ["key": "\(key.base64)", "attempts": "\(n)"])
            }
            all[domain] = p
            return ("400", "not allowed", "")
        }
    }

    private func serve(_ rep: ZMQSocket) {
        var frames: [[UInt8]] = []
        var msg = zmq_msg_t()
        while true {
            frames.removeAll(keepingCapacity: true)
            repeat {
                zmq_msg_init(&msg)
                if zmq_msg_recv(&msg, rep.handle, 0) < 0 {
                    zmq_msg_close(&msg)
                    if zmq_errno() == ETERM { rep.close(); return }
                    break
                }
                frames.append(Array(UnsafeRawBufferPointer(start: zmq_msg_data(&msg), count: zmq_msg_size(&msg))))
                let more = zmq_msg_more(&msg) != 0
                zmq_msg_close(&msg)
                if !more { break }
            } while true
            guard frames.count >= 6 else { continue }
            // version, request id, domain, address, identity, mechanism, credentials…
            let domain = String(decoding: frames[2], as: UTF8.self)
            let mechanism = String(decoding: frames[5], as: UTF8.self)
            let (status, text, user) = decide(domain: domain, mechanism: mechanism,
                                              credential: frames.count > 6 ? frames[6] : [])
            let reply: [[UInt8]] = [Array("1.0".utf8), frames[1], Array(status.utf8), Array(text.utf8), Array(user.utf8), []]
            for (i, f) in reply.enumerated() {
                f.withUnsafeBytes { _ = zmq_send(rep.handle, $0.baseAddress, $0.count, i < reply.count - 1 ? ZMQ_SNDMORE : 0) }
            }
        }
    }
}

/// "KEY@tcp://HOST:PORT" names a peer of a closed overlay: its node public key, then its endpoint.
public struct PeerAddress: Sendable, Hashable {
    public var key: Key?
    public var endpoint: String

    public init(key: Key?, endpoint: String) { self.key = key; self.endpoint = endpoint }

    public init(parsing s: String) throws {
        if let at = s.firstIndex(of: "@") {
            let k = s[..<at], e = String(s[s.index(after: at)...])
            do { key = try Key(base64: k) } catch { throw GossipConfigurationError.invalid("peer key in \"\(s)\": \(error)") }
            endpoint = e
        } else {
            key = nil
            endpoint = s
        }
        try GossipConfiguration.checkEndpoint(endpoint)
    }

    public var description: String { key.map { "\($0.base64)@\(endpoint)" } ?? endpoint }
}

extension GossipNode {
    /// The ZAP domains the shared context's handler has registered now, one per running node
    /// (tests: a node that failed to start left none behind).
    package static var registeredZAPDomains: Set<String> { ZAPService.shared.registeredDomains() }
}
