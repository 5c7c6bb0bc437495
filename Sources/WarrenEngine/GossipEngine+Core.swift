import CSodium

// The engine's state and the rules that change it. `GossipEngine` (GossipEngine.swift) is its
// face: the public inputs and queries and the package surface (GossipEngine+Package.swift), each
// a call into its `Core`. This file holds the state, the inputs and the queries; the other
// GossipEngine+*.swift files extend `Core` by concern (frames, membership, timers, admission,
// discovery, the DATA fast path).

extension GossipEngine {
    /// Everything one engine knows. Private to its `GossipEngine` (a driver reaches none of it);
    /// its members are internal so that the files of each concern share them.
    struct Core: Sendable {
        // Stored properties are ordered so that what a DATA frame from a neighbour touches (the
        // duplicate path of a flood: activity, sender lookup, seen cache, counters, the send
        // list) and what a driver's read of `nextDeadline` touches (the four generations and the
        // cached deadline) share as few cache lines as possible, near the front: the simulator
        // prefetches the first 384 bytes, and a simulator of 10,000 engines is bound by memory
        // latency. `config` (296 bytes) and the rest come after.
        let nodeID: NodeID
        /// Hot copies of `config.rateLimit`, `rateBurst`, `newIDRate` and `seenHold` (the DATA
        /// path reads them per frame; `config` is immutable, so they never differ).
        let rateLimit: Double
        let rateBurst: Double
        let newIDRate: Double
        let seenHold: UInt64
        /// Hot copies of `config.maxTTL` and `config.leaf`, and whether `routing` is on (set at
        /// init only: a duplicate DATA frame asks, and `routing` is stored far back).
        let maxTTL: UInt8
        let isLeaf: Bool
        let routingOn: Bool
        var started = false
        var stopped = false
        /// The peer table; its compact per-frame part (`peers[key: i]`) is what every inbound frame
        /// reads and writes.
        var peers = PeerTable()
        var links = LinkTable()
        var seeds = SeedList()
        var timers = Timers()
        var seen: SeenCache
        var localTopics = TopicSet()
        /// Every ready link, as of the link table's generation `allReadyGeneration`.
        var allReadyCache: [LinkID] = []
        var allReadyGeneration: UInt64 = .max
        var stats = EngineStats()
        /// Shared bucket for frames whose `from` (or connection) is not a neighbour's.
        var strangerBucket = TokenBucket()
        /// The shares of `newIDRate` (admitted, forwarded) of everything that is not a peer.
        var strangerShare = TokenBucket()
        var strangerForward = TokenBucket()

        let config: EngineConfig
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
        var recentPenalties: [Penalty] = []
        /// Views: links dialled only to refuse a request (DISCONNECT once ready, then closed),
        /// with the token to echo.
        var sheds: [Shed] = []
        /// Views: after a JOIN is sent, the degree rule waits until then for the FORWARD_JOIN
        /// walks to bring neighbours.
        var joinGraceUntil: UInt64 = 0
        /// Unicast routing (GossipEngine+Routing.swift); nil when it is off or this is a leaf.
        var routing: RoutingState?

        init(config: EngineConfig, nodeID: NodeID) {
            self.config = config
            self.nodeID = nodeID
            self.maxTTL = config.maxTTL
            self.isLeaf = config.leaf
            self.rateLimit = config.rateLimit
            self.rateBurst = config.rateBurst
            self.newIDRate = config.newIDRate
            self.seenHold = config.seenHold
            self.seen = SeenCache(capacity: config.seenCapacity, window: config.seenWindow, seed: mix64(~nodeID.raw))
            self.known = KnownTable(limit: max(1, config.maxKnownEndpoints))
            self.routingOn = config.routing && !config.leaf
            if routingOn { self.routing = RoutingState(selfID: nodeID, parameters: config.routingParameters) }
        }
    }
}

extension GossipEngine.Core {
    var active: Bool { started && !stopped }

    // MARK: - Inputs (documented at `GossipEngine`)

    /// `GossipEngine.start`.
    mutating func start(now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
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
        if viewsOn {
            // Views: JOIN through one random seed; the others are for rejoining (degree rule).
            let half = config.reconnectInterval / 2
            timers.reconnect = satAdd(satAdd(now, half), rng.next(upperBound: half &+ 1))
            if !seeds.isEmpty { joinSeed(Int(rng.next(upperBound: UInt64(seeds.count))), now: now, into: &actions) }
        } else {
            for i in seeds.indices { _ = dial(seeds[i].endpoint, seed: i, node: nil, now: now, into: &actions) }
        }
    }

    /// `GossipEngine.linkReady`.
    mutating func linkReady(_ link: LinkID, now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        guard active, let li = links.index(of: link) else { return }
        if !sheds.isEmpty, let k = sheds.firstIndex(where: { $0.link == link }) {
            // Dialled only to refuse: DISCONNECT, then closed.
            let echo = sheds[k].echo
            actions.append(.send([link], Frame(kind: .disconnect(echo: echo), from: nodeID).encode()))
            stats.framesOut &+= 1
            closeLink(link, reason: nil, failure: false, now: now, rng: &rng, into: &actions)
            return
        }
        _ = links.markReady(li, now: now)
        var echo: UInt64 = 0
        if let n = links[li].node, let pi = peers.index(of: n) { echo = peers[pi].token }
        sendHello(on: link, echo: echo, rng: &rng, into: &actions)
        if let n = links[li].node { updateUp(n, now: now, into: &actions) }
    }

    /// `GossipEngine.receive(topic:body:via:messageID:now:rng:into:)`.
    mutating func receive(
        topic: some Collection<UInt8>, body: some Collection<UInt8>, via: ConnectionID?, messageID: MessageID?,
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
        if receiveRouting(topic: topic, body: body, id: id, via: via, now: now, rng: &rng, into: &actions) { return }
        let frame: Frame
        switch Frame.decode(topic: topic, body: body) {
        case .success(let f): frame = f
        case .failure: malformed(via: via); return
        }
        handle(frame, via: via, now: now, rng: &rng, into: &actions)
    }

    /// `GossipEngine.publish`: recorded as seen, delivered locally, flooded.
    mutating func publish(
        topic: Topic, envelope: [UInt8], ttl: UInt8?,
        now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        guard !stopped else { return }
        guard !topic.isControl, !envelope.isEmpty, envelope.count <= Frame.maxBodyBytes - Frame.headerSize else {
            stats.malformed &+= 1
            return
        }
        let id = MessageID(envelope: envelope)
        switch seen.insert(id, now: now, hold: seenHold) {
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
        if routing != nil && routePublish(topic: topic, envelope: envelope, id: id, ttl: ttl, now: now, into: &actions) { return }
        let targets = sendTargets(excluding: nil)
        guard !targets.isEmpty else { return }
        let body = Frame.encodeData(envelope: envelope, ttl: ttl, hops: 0, from: nodeID)
        actions.append(.send(targets, OutFrame(topic: topic, body: body)))
        stats.framesOut &+= UInt64(targets.count)
    }

    /// `GossipEngine.subscribeLocal`.
    mutating func subscribeLocal(_ topic: Topic, into actions: inout [Action]) {
        guard !topic.isControl, localTopics.insert(topic) else { return }
        if config.leaf { actions.append(.subscribe(topic.bytes)) }
        routingSubscribed(topic)
    }

    mutating func unsubscribeLocal(_ topic: Topic, into actions: inout [Action]) {
        guard localTopics.remove(topic) else { return }
        if config.leaf { actions.append(.unsubscribe(topic.bytes)) }
        routingUnsubscribed(topic)
    }

    /// `GossipEngine.stop`.
    mutating func stop(now: UInt64, into actions: inout [Action]) {
        guard active else { stopped = true; return }
        var targets = sendTargets(excluding: nil)
        if routing != nil { targets += readyContactLinks() }
        if !targets.isEmpty {
            actions.append(.send(targets, Frame(kind: .bye, from: nodeID).encode()))
            stats.framesOut &+= UInt64(targets.count)
        }
        for p in peers where p.up { actions.append(.peerDown(neighbour(p), reason: .closed)) }
        for l in links { actions.append(.disconnect(l.id)) }
        links.removeAll()
        sheds.removeAll()
        peers.removeAll()
        stopped = true
    }

    // MARK: - Queries

    /// `GossipEngine.nextDeadline`: cached against the generations it depends on (`Timers`).
    mutating func nextDeadline() -> UInt64? {
        guard active else { return nil }
        let stamp = deadlineStamp
        if let d = timers.deadline(at: stamp) { return d }
        let d = computeDeadline()
        timers.cache(deadline: d, at: stamp)
        return d
    }

    /// Rough bytes of engine state, arrays counted by their elements (not their capacity, which
    /// on Linux follows `malloc_usable_size` and so varies slightly from run to run): the
    /// simulator's report is reproducible.
    func countedStateBytes() -> Int {
        var n = MemoryLayout<GossipEngine.Core>.size + seen.bytes(reserved: false)
        n += links.countedBytes
        for l in links { n += l.endpoint.utf8.count }
        n += peers.countedBytes
        n += known.countedBytes
        n += localTopics.count * 48 + allReadyCache.count * MemoryLayout<LinkID>.stride
        n += sheds.count * MemoryLayout<Shed>.stride
        if let r = routing { n += r.countedBytes }
        return n
    }

    // MARK: - Helpers

    func neighbour(_ p: PeerState) -> Neighbour {
        Neighbour(nodeID: p.id, endpoint: p.endpoint, leaf: p.leaf, link: p.link ?? LinkID(raw: 0), since: p.since)
    }

    /// True if link `i` carries an up neighbour.
    func linkIsUp(_ i: Int) -> Bool { upPeer(ofLink: i) != nil }

    /// The index of the peer that link `i` is up to (the peer is up and this is its link), or
    /// nil: `linkIsUp` with the peer lookup kept for a caller that reads the peer next.
    func upPeer(ofLink i: Int) -> Int? {
        guard let n = links[i].node, let pi = peers.index(of: n) else { return nil }
        return peers[pi].up && peers[pi].link == links[i].id ? pi : nil
    }

    /// Ready gossip links (not routing contact links), except those bound to `from`. Cached per link-table generation (no
    /// allocation per frame).
    mutating func sendTargets(excluding from: NodeID?) -> [LinkID] {
        let generation = links.generation
        if let from, let pi = peers.index(of: from) {
            if peers[pi].sendCacheGeneration != generation {
                peers.cacheSendList(pi, links.compactMap { $0.ready && !$0.contact && $0.node != from ? $0.id : nil }, generation: generation)
            }
            return peers[pi].sendCache
        }
        if allReadyGeneration != generation {
            allReadyCache = links.compactMap { $0.ready && !$0.contact ? $0.id : nil }
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
