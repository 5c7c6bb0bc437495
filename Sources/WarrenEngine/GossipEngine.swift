/// The sans-I/O gossip engine: frame handling, de-duplication, TTL, peer table,
/// membership handshake, liveness, peer exchange. Owns no sockets, threads, clock or
/// global randomness. Every input appends `Action`s to a caller-supplied buffer; the
/// caller must call `tick` at `nextDeadline`. See docs/PROTOCOL.md.
///
/// This is the engine's face: its inputs and queries, each a call into its state and rules
/// (`Core`, GossipEngine+Core.swift and the other GossipEngine+*.swift files), and the package
/// surface for this package's drivers (GossipEngine+Package.swift).
public struct GossipEngine: Sendable {
    /// The state and the rules. Readable inside this module (queries, tests); changed only by
    /// the inputs below.
    private(set) var core: Core

    public init(config: EngineConfig, nodeID: NodeID) {
        core = Core(config: config, nodeID: nodeID)
    }

    init(core: Core) { self.core = core }

    public var nodeID: NodeID { core.nodeID }
    public var config: EngineConfig { core.config }
    public var stats: EngineStats { core.stats }
    /// The last penalties (at most 16), newest last.
    public var recentPenalties: [Penalty] { core.recentPenalties }

    // MARK: - Inputs

    /// Subscribes the control topic (and everything, unless leaf) and dials the seeds.
    public mutating func start(now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        core.start(now: now, rng: &rng, into: &actions)
    }

    /// The remote SUB's subscription arrived on `link`: (re)send HELLO.
    public mutating func linkReady(_ link: LinkID, now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        core.linkReady(link, now: now, rng: &rng, into: &actions)
    }

    /// Decodes and handles one inbound 2-part message: one frame, or a BATCH of frames for
    /// the same topic. Malformed input is counted and dropped.
    ///
    /// `via`: the inbound connection it arrived on, if the driver can tell (the ZeroMQ driver
    /// can). Then every frame speaks only for the node bound to that connection (bound by its
    /// first HELLO): a frame claiming another node, or this one, is `forged` and changes nothing.
    /// Without it the engine must trust each frame's `from` (the simulator, older drivers).
    ///
    /// `messageID`: the message id of the envelope when `body` is one DATA frame and the driver
    /// already has it (the simulator delivers one frame's bytes to many engines and hashes its
    /// envelope once); nil: the engine computes it (BLAKE2b-128 of the envelope, which a given
    /// id must equal). Ignored for other frames and for BATCH bodies.
    public mutating func receive(
        topic: some Collection<UInt8>, body: some Collection<UInt8>, via: ConnectionID? = nil, messageID: MessageID? = nil,
        now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        core.receive(topic: topic, body: body, via: via, messageID: messageID, now: now, rng: &rng, into: &actions)
    }

    /// Publishes an envelope to `topic`. Refuses (counts `malformed`) the control topic and
    /// empty envelopes. Content already in the seen cache is not sent again (`duplicates`).
    /// ttl 0 delivers locally only.
    public mutating func publish(
        topic: Topic, envelope: [UInt8], ttl: UInt8?,
        now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        core.publish(topic: topic, envelope: envelope, ttl: ttl, now: now, rng: &rng, into: &actions)
    }

    /// The driver could not send a message the engine asked for on `link`: the link's queue was
    /// full (a ZeroMQ high-water mark), or the link was gone. `body` is the message as sent (one
    /// frame, or a BATCH). A routed frame is its message's only copy, so a ROUTED frame of this
    /// node in it is flooded from here instead (docs/PROTOCOL.md §9, "Routed messages");
    /// anything else is dropped as before. Drivers that never refuse need not call it.
    public mutating func sendFailed(link: LinkID, topic: Topic, body: [UInt8], now: UInt64, into actions: inout [Action]) {
        body.withUnsafeBufferPointer { core.sendFailed(link: link, topic: topic, body: $0, now: now, into: &actions) }
    }

    /// This node wants DATA for `topic`. A leaf also subscribes its SUB to the topic.
    public mutating func subscribeLocal(_ topic: Topic, into actions: inout [Action]) {
        core.subscribeLocal(topic, into: &actions)
    }

    public mutating func unsubscribeLocal(_ topic: Topic, into actions: inout [Action]) {
        core.unsubscribeLocal(topic, into: &actions)
    }

    /// Runs everything that is due at `now`.
    ///
    /// `inputReadUpTo`: the time up to which the driver has read its input (nil: `now`, it is
    /// caught up). A driver that fell behind (starved of CPU, busy with a burst of publishes)
    /// may hold a neighbour's frames unread; silence is judged as of this time, so no neighbour
    /// is declared dead and no dial times out for frames waiting in the node's own socket. The
    /// rest (heartbeats, peer exchange, de-dup expiry) runs at `now`.
    public mutating func tick(now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action],
                              inputReadUpTo: UInt64? = nil) {
        core.tick(now: now, rng: &rng, into: &actions, inputReadUpTo: inputReadUpTo)
    }

    /// A node announced itself by a discovery beacon (the driver owns the socket). The endpoint
    /// is learned like a peer-list entry; if this node wants more neighbours, the degree rule
    /// dials one at once. Our own beacons, BYE-blocked and unencodable endpoints are ignored.
    public mutating func discovered(
        endpoint: String, node: NodeID, now: UInt64,
        rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        core.discovered(endpoint: endpoint, node: node, now: now, rng: &rng, into: &actions)
    }

    /// Closes every link whose endpoint `refused` rejects and forgets those endpoints; a
    /// neighbour on such a link goes down with `.removed`. The endpoints are not backed off:
    /// the driver refuses to dial them while they stay refused.
    public mutating func closeLinks(
        where refused: (String) -> Bool, now: UInt64,
        rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        core.closeLinks(where: refused, now: now, rng: &rng, into: &actions)
    }

    /// BYE to every ready link, disconnect all links, `.peerDown(.closed)` for each neighbour.
    public mutating func stop(now: UInt64, into actions: inout [Action]) {
        core.stop(now: now, into: &actions)
    }

    // MARK: - Queries

    /// When `tick` must run next (nil before start and after stop). May be earlier than
    /// strictly necessary; ticking early is harmless. Computed on the first read after the
    /// links, peers, seeds or timers changed (or a tick ran) and cached until then (see
    /// `Timers`): hence `mutating`.
    public var nextDeadline: UInt64? {
        mutating get { core.nextDeadline() }
    }

    /// Up gossip neighbours. Routing contacts on contact links (docs/PROTOCOL.md §9) are not
    /// among them: they are not flooded to and not part of the degree.
    public var neighbours: [Neighbour] {
        core.peers.filter { p in
            guard p.up else { return false }
            guard core.routing != nil, let l = p.link, let li = core.links.index(of: l) else { return true }
            return !core.links[li].contact
        }.map { core.neighbour($0) }
    }

    /// Endpoints learned via HELLO/PEERS (non-leaf nodes), excluding our own.
    public var knownEndpoints: [String] { core.known.entries.map(\.endpoint) }

    public var seenCount: Int { core.seen.count }

    /// Local topics this engine delivers.
    public var subscribedTopics: Set<Topic> { core.localTopics.topics }

    /// Current outbound links (for drivers and tests).
    public var linkIDs: [LinkID] { core.links.map(\.id) }

    /// Our link to the node whose last HELLO carried `token` (its LinkID of its link to us),
    /// nil if no such node has a link of ours. Only that node and we know the token: a driver
    /// uses it to attach a back-link that node opened (docs/PROTOCOL.md §1, "Back-links").
    public func link(toPeerWithToken token: UInt64) -> LinkID? {
        guard token != 0, let p = core.peers.first(where: { $0.token == token }) else { return nil }
        return p.link
    }

    /// Every known (non-leaf) endpoint, as the peer table and peer exchange learned them.
    public var knownNodes: [KnownNode] {
        core.known.entries.map {
            KnownNode(endpoint: $0.endpoint, nodeID: $0.node == 0 ? nil : NodeID(raw: $0.node),
                      failures: $0.failures, gone: $0.blocked)
        }
    }

    /// When a frame from neighbour `id` last arrived (engine time), if it is one.
    public func lastHeard(_ id: NodeID) -> UInt64? {
        core.peers.index(of: id).map { core.peers[key: $0].lastHeard }
    }
}

/// A neighbour (or a connection bound to nobody) disconnected and ignored for misbehaviour, with
/// what it sent in the score interval that ended it.
public struct Penalty: Sendable, Hashable {
    public enum Kind: Sendable, Hashable { case forged, malformed, overRate, overShare }
    public struct Counts: Sendable, Hashable {
        public var forged: UInt32 = 0
        public var malformed: UInt32 = 0
        public var overRate: UInt32 = 0
        public var overShare: UInt32 = 0
        public init() {}
    }
    /// The neighbour (nil: a connection bound to nobody that kept forging).
    public var node: NodeID?
    public var endpoint: String?
    public var connection: ConnectionID
    public var counts: Counts
    /// Good frames in the same interval.
    public var good: UInt32
    public var time: UInt64
    /// The kind of bad frame it sent most.
    public var reason: Kind {
        let c = counts
        let m = max(c.forged, c.malformed, c.overRate, c.overShare)
        return m == c.forged ? .forged : m == c.malformed ? .malformed : m == c.overRate ? .overRate : .overShare
    }
}

/// A connection ignored until `until` (its neighbour misbehaved).
struct Ban: Sendable {
    var conn: UInt64
    var until: UInt64
}

/// A token bucket: `rate` tokens per second up to `burst`; one token per frame.
struct TokenBucket: Sendable {
    var tokens: Double = -1   // < 0: not yet used (starts full)
    var at: UInt64 = 0

    mutating func take(now: UInt64, rate: Double, burst: Double) -> Bool {
        if tokens < 0 { tokens = burst; at = now }
        if now > at {
            tokens = min(burst, tokens + Double(now - at) * rate / 1e9)
            at = now
        }
        guard tokens >= 1 else { return false }
        tokens -= 1
        return true
    }
}

/// Saturating addition (deadlines never wrap around).
@inline(__always)
func satAdd(_ a: UInt64, _ b: UInt64) -> UInt64 {
    let (r, o) = a.addingReportingOverflow(b)
    return o ? .max : r
}
