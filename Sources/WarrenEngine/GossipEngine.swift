import CSodium

/// The sans-I/O gossip engine: frame handling, de-duplication, TTL, peer table,
/// membership handshake, liveness, peer exchange. Owns no sockets, threads, clock or
/// global randomness. Every input appends `Action`s to a caller-supplied buffer; the
/// caller must call `tick` at `nextDeadline`. See docs/PROTOCOL.md.
public struct GossipEngine: Sendable {
    // Stored properties are ordered so that what a DATA frame from a neighbour touches (the
    // duplicate path of a flood: activity, sender lookup, seen cache, counters) and what a
    // driver's read of `nextDeadline` touches (the four generations and the cached deadline)
    // share as few cache lines as possible, near the front (the simulator prefetches the first
    // few); a simulator of 10,000 engines is bound by memory latency.
    public let nodeID: NodeID
    var started = false
    var stopped = false
    /// Hot copies of `config.maxTTL` and `config.leaf`.
    let maxTTL: UInt8
    let isLeaf: Bool
    /// The peer table; its compact per-frame part (`peers[key: i]`) is what every inbound frame
    /// reads and writes.
    var peers = PeerTable()
    var links = LinkTable()
    var seeds = SeedList()
    var timers = Timers()
    var seen: SeenCache
    public internal(set) var stats = EngineStats()
    var localTopics: Set<Topic> = []
    /// Shared bucket for frames whose `from` (or connection) is not a neighbour's.
    var strangerBucket = TokenBucket()
    /// The shares of `newIDRate` (admitted, forwarded) of everything that is not a peer.
    var strangerShare = TokenBucket()
    var strangerForward = TokenBucket()
    /// Every ready link, as of the link table's generation `allReadyGeneration`.
    var allReadyCache: [LinkID] = []
    var allReadyGeneration: UInt64 = .max

    public let config: EngineConfig
    var known: KnownTable
    /// Endpoints found to lead back to this engine (HELLO from ourselves).
    var selfEndpoints: Set<String> = []
    /// Link ids: SipHash-2-4 of a counter under a key drawn at start (unpredictable tokens),
    /// unless a driver gave the key (`init(config:nodeID:linkKey:)`).
    var linkKey: (UInt64, UInt64) = (0, 0)
    var linkCounter: UInt64 = 0
    var linkKeyGiven = false
    /// Dials to endpoints that were never up: a token bucket (`dialRate`, `dialBurst`).
    var dialBucket = TokenBucket()
    /// Connections of neighbours disconnected for misbehaviour, ignored until `until`.
    var bans: [Ban] = []
    /// Forged frames this score interval per connection bound to nobody.
    var strangerBad: [UInt64: UInt32] = [:]
    /// The last penalties (at most 16), newest last.
    public internal(set) var recentPenalties: [Penalty] = []

    public init(config: EngineConfig, nodeID: NodeID) {
        self.config = config
        self.nodeID = nodeID
        self.maxTTL = config.maxTTL
        self.isLeaf = config.leaf
        self.seen = SeenCache(capacity: config.seenCapacity, window: config.seenWindow, seed: mix64(~nodeID.raw))
        self.known = KnownTable(limit: max(1, config.maxKnownEndpoints))
    }

    var active: Bool { started && !stopped }

    // MARK: - Inputs

    /// Subscribes the control topic (and everything, unless leaf) and dials the seeds.
    public mutating func start(now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        guard !started else { return }
        started = true
        if !linkKeyGiven { linkKey = (rng.next(), rng.next()) }
        timers.score = satAdd(now, config.scoreInterval)
        actions.append(.subscribe(Topic.control.bytes))
        if !config.leaf { actions.append(.subscribe([])) }
        timers.heartbeat = satAdd(now, config.heartbeatInterval)
        let half = config.peerExchangeInterval / 2
        timers.exchange = satAdd(satAdd(now, half), rng.next(upperBound: half &+ 1))
        for s in config.seeds where !seeds.contains(where: { $0.endpoint == s }) {
            guard s != config.endpoint, Frame.isEncodable(endpoint: s) else { continue }
            seeds.append(SeedState(endpoint: s))
        }
        for i in seeds.indices { _ = dial(seeds[i].endpoint, seed: i, node: nil, now: now, into: &actions) }
    }

    /// The remote SUB's subscription arrived on `link`: (re)send HELLO.
    public mutating func linkReady(_ link: LinkID, now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        guard active, let li = links.index(of: link) else { return }
        _ = links.markReady(li, now: now)
        var echo: UInt64 = 0
        if let n = links[li].node, let pi = peers.index(of: n) { echo = peers[pi].token }
        sendHello(on: link, echo: echo, rng: &rng, into: &actions)
        if let n = links[li].node { updateUp(n, now: now, into: &actions) }
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
        guard active else { return }
        let via = via?.raw == 0 ? nil : via   // 0 names no connection
        let done: Bool? = topic.withContiguousStorageIfAvailable { t in
            body.withContiguousStorageIfAvailable { b in
                receive(topic: t, contiguousBody: b, via: via, id: messageID, now: now, rng: &rng, into: &actions)
                return true
            }
        } ?? nil
        if done == true { return }
        let t = Array(topic), b = Array(body)
        t.withUnsafeBufferPointer { tp in
            b.withUnsafeBufferPointer { bp in
                receive(topic: tp, contiguousBody: bp, via: via, id: messageID, now: now, rng: &rng, into: &actions)
            }
        }
    }

    mutating func receive(
        topic: UnsafeBufferPointer<UInt8>, contiguousBody body: UnsafeBufferPointer<UInt8>, via: ConnectionID?, id: MessageID?,
        now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        if let via, isBanned(via, now: now) { stats.penaltyDrops &+= 1; return }
        defer { if let via { penalizeIfDue(via, now: now, rng: &rng, into: &actions) } }
        guard FrameBatch.isBatch(body) else {
            return receiveOne(topic: topic, body: body, id: id, via: via, now: now, rng: &rng, into: &actions)
        }
        stats.batchesIn &+= 1
        // Each entry is one frame, as if it had come in its own message.
        let error = FrameBatch.split(body) { entry in
            receiveOne(topic: topic, body: entry, id: nil, via: via, now: now, rng: &rng, into: &actions)
        }
        if error != nil { stats.framesIn &+= 1; malformed(via: via) }
    }

    /// One frame: DATA is handled in the receive buffer (GossipEngine+FastPath.swift); the rest is decoded.
    mutating func receiveOne(
        topic: UnsafeBufferPointer<UInt8>, body: UnsafeBufferPointer<UInt8>, id: MessageID?, via: ConnectionID?,
        now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        stats.framesIn &+= 1
        if receiveData(topic: topic, body: body, id: id, via: via, now: now, into: &actions) { return }
        let frame: Frame
        switch Frame.decode(topic: topic, body: body) {
        case .success(let f): frame = f
        case .failure: malformed(via: via); return
        }
        handle(frame, via: via, now: now, rng: &rng, into: &actions)
    }

    /// Publishes an envelope to `topic`. Refuses (counts `malformed`) the control topic and
    /// empty envelopes. Content already in the seen cache is not sent again (`duplicates`).
    /// ttl 0 delivers locally only.
    public mutating func publish(
        topic: Topic, envelope: [UInt8], ttl: UInt8?,
        now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        guard !stopped else { return }
        guard !topic.isControl, !envelope.isEmpty, envelope.count <= Frame.maxBodyBytes - Frame.headerSize else {
            stats.malformed &+= 1
            return
        }
        let id = MessageID(envelope: envelope)
        switch seen.insert(id, now: now, hold: config.seenHold) {
        case .duplicate: stats.duplicates &+= 1; return
        case .full: stats.seenFull &+= 1; return
        case .inserted: break
        }
        stats.published &+= 1
        if localTopics.contains(topic) {
            actions.append(.deliver(topic: topic, envelope: envelope, hops: 0, id: id))
            stats.delivered &+= 1
        }
        let ttl = min(ttl ?? config.defaultTTL, config.maxTTL)
        guard ttl > 0, active else { return }
        let targets = sendTargets(excluding: nil)
        guard !targets.isEmpty else { return }
        let body = Frame.encodeData(envelope: envelope, ttl: ttl, hops: 0, from: nodeID)
        actions.append(.send(targets, OutFrame(topic: topic, body: body)))
        stats.framesOut &+= UInt64(targets.count)
    }

    /// This node wants DATA for `topic`. A leaf also subscribes its SUB to the topic.
    public mutating func subscribeLocal(_ topic: Topic, into actions: inout [Action]) {
        guard !topic.isControl, localTopics.insert(topic).inserted else { return }
        if config.leaf { actions.append(.subscribe(topic.bytes)) }
    }

    public mutating func unsubscribeLocal(_ topic: Topic, into actions: inout [Action]) {
        guard localTopics.remove(topic) != nil else { return }
        if config.leaf { actions.append(.unsubscribe(topic.bytes)) }
    }

    /// BYE to every ready link, disconnect all links, `.peerDown(.closed)` for each neighbour.
    public mutating func stop(now: UInt64, into actions: inout [Action]) {
        guard active else { stopped = true; return }
        let targets = sendTargets(excluding: nil)
        if !targets.isEmpty {
            actions.append(.send(targets, Frame(kind: .bye, from: nodeID).encode()))
            stats.framesOut &+= UInt64(targets.count)
        }
        for p in peers where p.up { actions.append(.peerDown(neighbour(p), reason: .closed)) }
        for l in links { actions.append(.disconnect(l.id)) }
        links.removeAll()
        peers.removeAll()
        stopped = true
    }

    // MARK: - Queries

    /// When `tick` must run next (nil before start and after stop). May be earlier than
    /// strictly necessary; ticking early is harmless. Computed on the first read after the
    /// links, peers, seeds or timers changed (or a tick ran) and cached until then (see
    /// `Timers`): hence `mutating`.
    public var nextDeadline: UInt64? {
        mutating get {
            guard active else { return nil }
            let stamp = deadlineStamp
            if let d = timers.deadline(at: stamp) { return d }
            let d = computeDeadline()
            timers.cache(deadline: d, at: stamp)
            return d
        }
    }

    public var neighbours: [Neighbour] { peers.filter(\.up).map(neighbour) }

    /// Endpoints learned via HELLO/PEERS (non-leaf nodes), excluding our own.
    public var knownEndpoints: [String] { known.entries.map(\.endpoint) }

    public var seenCount: Int { seen.count }

    /// Local topics this engine delivers.
    public var subscribedTopics: Set<Topic> { localTopics }

    /// Current outbound links (for drivers and tests).
    public var linkIDs: [LinkID] { links.map(\.id) }

    /// Our link to the node whose last HELLO carried `token` (its LinkID of its link to us),
    /// nil if no such node has a link of ours. Only that node and we know the token: a driver
    /// uses it to attach a back-link that node opened (docs/PROTOCOL.md §1, "Back-links").
    public func link(toPeerWithToken token: UInt64) -> LinkID? {
        guard token != 0, let p = peers.first(where: { $0.token == token }) else { return nil }
        return p.link
    }

    /// Rough bytes of engine state.
    public var approximateStateBytes: Int { stateBytes(reserved: true) }

    /// Rough bytes of engine state: with `reserved`, arrays count their capacity (which on Linux
    /// follows `malloc_usable_size`, so it varies slightly from run to run); without, their
    /// element counts (reproducible, used by the simulator's report).
    func stateBytes(reserved: Bool) -> Int {
        func size<T>(_ a: [T]) -> Int { (reserved ? a.capacity : a.count) * MemoryLayout<T>.stride }
        var n = MemoryLayout<GossipEngine>.size + seen.bytes(reserved: reserved)
        n += links.bytes(reserved: reserved)
        for l in links { n += l.endpoint.utf8.count }
        n += peers.bytes(reserved: reserved)
        n += known.bytes(reserved: reserved)
        n += localTopics.count * 48 + size(allReadyCache)
        return n
    }

    // MARK: - Helpers

    func neighbour(_ p: PeerState) -> Neighbour {
        Neighbour(nodeID: p.id, endpoint: p.endpoint, leaf: p.leaf, link: p.link ?? LinkID(raw: 0), since: p.since)
    }

    /// True if link `i` carries an up neighbour.
    func linkIsUp(_ i: Int) -> Bool {
        guard let n = links[i].node, let pi = peers.index(of: n) else { return false }
        return peers[pi].up && peers[pi].link == links[i].id
    }

    /// Ready links, except those bound to `from`. Cached per link-table generation (no
    /// allocation per frame).
    mutating func sendTargets(excluding from: NodeID?) -> [LinkID] {
        let generation = links.generation
        if let from, let pi = peers.index(of: from) {
            if peers[pi].sendCacheGeneration != generation {
                peers.cacheSendList(pi, links.compactMap { $0.ready && $0.node != from ? $0.id : nil }, generation: generation)
            }
            return peers[pi].sendCache
        }
        if allReadyGeneration != generation {
            allReadyCache = links.compactMap { $0.ready ? $0.id : nil }
            allReadyGeneration = generation
        }
        return allReadyCache
    }

    /// A fresh, unpredictable link id: SipHash-2-4 of a counter under `linkKey`.
    mutating func newLinkID() -> LinkID {
        _ = SodiumRuntime.ready
        while true {
            linkCounter &+= 1
            var input = linkCounter.bigEndian
            var key = linkKey
            var out: UInt64 = 0
            withUnsafeMutableBytes(of: &out) { o in
                withUnsafeBytes(of: &input) { i in
                    withUnsafeBytes(of: &key) { k in
                        _ = crypto_shorthash(o.baseAddress!.assumingMemoryBound(to: UInt8.self),
                                             i.baseAddress!.assumingMemoryBound(to: UInt8.self), 8,
                                             k.baseAddress!.assumingMemoryBound(to: UInt8.self))
                    }
                }
            }
            if out != 0 && links.index(raw: out) == nil { return LinkID(raw: out) }
        }
    }

    /// Reconnect delay after `failures` consecutive failures (≥ 1): initial × 2^(failures−1),
    /// capped, ±25 % jitter.
    func backoff(failures: UInt32, rng: inout some RandomNumberGenerator) -> UInt64 {
        var d = config.backoffInitial
        var n = failures > 0 ? failures - 1 : 0
        while n > 0 && d < config.backoffMax {
            d = d > UInt64.max / 2 ? UInt64.max : d * 2
            n -= 1
        }
        d = min(d, config.backoffMax)
        let quarter = d / 4
        return satAdd(d - quarter, rng.next(upperBound: quarter * 2 + 1))
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
