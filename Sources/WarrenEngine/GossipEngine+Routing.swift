// Unicast routing (docs/PROTOCOL.md §9): a location service on the overlay itself.
//
// - Contacts: a Kademlia-like table on the 64-bit node ids (one or two contacts per XOR distance
//   bucket, plus the few closest), learned from HELLO, PEERS, NODES and STORE. Contacts that are
//   not gossip neighbours get a link of their own, of the *contact* class: heartbeats and routing
//   frames only, never flooded to, not counted toward the degree.
// - Location records: the subscriber S of key K stores (K → S) at the r nodes closest to K's point
//   (`Topic.routingPoint`), by a STORE routed greedily there; refreshed, expiring.
// - A unicast DATA travels as ROUTED: toward K's point until a node holds a record, then toward S,
//   one link per hop, greedily (the known, reachable node XOR-closest to the target). Where no
//   hop gets closer, a record is stale, or a key has several subscribers, the message is flooded
//   from that node as ordinary DATA (same message id: exactly once through the seen cache).
//
// Nothing here keeps an envelope: a record is a key, a node id, an endpoint and an expiry.

/// The routing layer's state (nil in `Core` when routing is off or the node is a leaf).
struct RoutingState: Sendable {
    var table: RoutingTable
    var records: LocationStore
    /// Local topics this node stores records for: when next, and the current step of the
    /// 1, 2, 4 … s schedule up to `recordRefresh` (0: not stored yet).
    var subscriptions: [(topic: Topic, next: UInt64, step: UInt64)] = []
    /// Local topics given up since the last tick: their records are withdrawn.
    var withdrawals: [Topic] = []
    var nextExchange: UInt64 = 0
    /// Contact links this node dialled (it closes them when it no longer wants their node).
    var dialled: [LinkID] = []
    /// Messages this node sent on as ROUTED and has not flooded: a flood of one of them that
    /// arrives later (the route fell back further on) is passed on, not dropped as a duplicate.
    var routedOnly = RoutedOnly()

    init(selfID: NodeID, parameters p: RoutingParameters) {
        table = RoutingTable(selfID: selfID.raw, bucketSize: p.bucketSize, closest: p.closest)
        records = LocationStore(maxKeys: p.maxRecords)
    }

    var countedBytes: Int {
        table.countedBytes + records.countedBytes + subscriptions.count * 48 + withdrawals.count * 32
            + dialled.count * MemoryLayout<LinkID>.stride + routedOnly.countedBytes
    }
}

/// The ids of messages a node sent on as ROUTED (published or relayed) and has not flooded,
/// each for `lifetime` after it was routed (the seen cache's window: as long as the cache may
/// still call a copy of it a duplicate), at most `capacity` (the oldest leave first).
///
/// The seen cache makes every node a routed copy passed drop a later flood of that message as a
/// duplicate; when the route falls back to the flood further on, the nodes of the path so far
/// would then be a wall the flood cannot cross — a subscriber whose every way from the fallback
/// node leads through the path would never get the message. So such a flood passes on once at
/// these nodes (and is not delivered again).
struct RoutedOnly: Sendable {
    static let capacity = 4_096
    private var ids: Set<MessageID> = []
    /// Insertion order: (id, time routed), oldest at `head`.
    private var order: [(id: MessageID, at: UInt64)] = []
    private var head = 0

    var isEmpty: Bool { ids.isEmpty }
    var count: Int { ids.count }
    var countedBytes: Int { ids.count * 2 * MemoryLayout<MessageID>.stride + (order.count - head) * 24 }

    mutating func insert(_ id: MessageID, now: UInt64, lifetime: UInt64) {
        expire(now: now, lifetime: lifetime)
        if ids.count >= Self.capacity { dropOldest() }
        if ids.insert(id).inserted { order.append((id, now)) }
    }

    /// True (and forgotten) if `id` was routed here and not flooded.
    mutating func take(_ id: MessageID, now: UInt64, lifetime: UInt64) -> Bool {
        expire(now: now, lifetime: lifetime)
        return ids.remove(id) != nil
    }

    mutating func expire(now: UInt64, lifetime: UInt64) {
        while head < order.count, now > order[head].at && now - order[head].at > lifetime { dropOldest() }
    }

    private mutating func dropOldest() {
        guard head < order.count else { return }
        ids.remove(order[head].id)
        head += 1
        if head == order.count { order.removeAll(keepingCapacity: order.count <= 64); head = 0 }
        else if head >= 1_024 && head * 2 >= order.count { order.removeFirst(head); head = 0 }
    }
}

extension GossipEngine.Core {
    static let nodesPerFrame = 16

    var routingParameters: RoutingParameters { config.routingParameters }

    /// How long a routed id is remembered as not flooded (`RoutedOnly`): as long as the seen cache
    /// may still call a copy of it a duplicate (its window; `seenHold` is only the least it keeps).
    var routedOnlyLifetime: UInt64 { max(config.seenWindow, config.seenHold) }

    /// `id` went on as ROUTED from here.
    mutating func noteRouted(_ id: MessageID, now: UInt64) {
        let lifetime = routedOnlyLifetime
        routing?.routedOnly.insert(id, now: now, lifetime: lifetime)
    }

    /// A DATA copy of `id` that the seen cache calls a duplicate: true if this node only routed
    /// that message so far, so the flood must pass on from here (once).
    mutating func floodPassesRoutedPath(_ id: MessageID, now: UInt64) -> Bool {
        guard routing != nil, !routing!.routedOnly.isEmpty else { return false }
        let lifetime = routedOnlyLifetime
        return routing!.routedOnly.take(id, now: now, lifetime: lifetime)
    }

    /// Peer `pi` may carry routed frames now: up, takes routing frames, not a leaf, and heard
    /// from recently (a silent contact stops being a next hop before its link times out).
    func isRoutingPeer(_ pi: Int, now: UInt64) -> Bool {
        let p = peers[pi]
        guard p.up, p.routing, !p.leaf, p.link != nil else { return false }
        let f = routingParameters.freshness
        let fresh = f > 0 ? f : satAdd(2 * config.heartbeatInterval, config.heartbeatInterval / 2)
        let heard = peers[key: pi].lastHeard
        return now <= heard || now - heard <= fresh
    }

    /// The routing peer XOR-closest to `target`, if it is closer than this node.
    func nextHop(toward target: UInt64, excluding: NodeID?, now: UInt64) -> (link: LinkID, node: NodeID)? {
        var best = nodeID.raw ^ target
        var found: (link: LinkID, node: NodeID)? = nil
        for pi in peers.indices where isRoutingPeer(pi, now: now) {
            let id = peers[pi].id
            if id == excluding { continue }
            let d = id.raw ^ target
            if d < best, let l = peers[pi].link { best = d; found = (l, id) }
        }
        return found
    }

    /// Up to `count` routing peers closest to `point`, closest first.
    func routingPeers(closestTo point: UInt64, count: Int, now: UInt64) -> [Int] {
        var list: [Int] = []
        for pi in peers.indices where isRoutingPeer(pi, now: now) { list.append(pi) }
        list.sort { (peers[$0].id.raw ^ point) < (peers[$1].id.raw ^ point) }
        return Array(list.prefix(max(0, count)))
    }

    var advertisedEndpoint: String { Frame.isEncodable(endpoint: config.endpoint) ? config.endpoint : "-" }

    // MARK: - Inbound routing frames

    /// Takes ROUTED, NODES and STORE (types 10–12). Returns false for anything else, and for
    /// every frame when routing is off (the frame is then decoded, as by a node built before
    /// routing: an unknown type, malformed).
    mutating func receiveRouting(
        topic: UnsafeBufferPointer<UInt8>, body: UnsafeBufferPointer<UInt8>, id: MessageID?, via: ConnectionID?,
        now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) -> Bool {
        guard body.count >= 2, RoutingTypeCode.isRouting(body[1]), routing != nil else { return false }
        guard topic.count == 32 else { malformed(via: via); return true }
        let t = Topic(unchecked: topic)
        if body[1] == RoutingTypeCode.routed {
            guard case .success(let v) = RoutedFrameView.check(topic: t, body: body) else { malformed(via: via); return true }
            if v.header.from == nodeID {
                if let via, let pi = peers.index(conn: via.raw) { stats.forged &+= 1; peers[key: pi].noteBad(.forged) }
                return true
            }
            let source = admit(v.header.from, via: via, now: now)
            if case .drop = source { return true }
            handleRouted(v, id: id ?? v.messageID(), source: source, now: now, rng: &rng, into: &actions)
            return true
        }
        guard case .success(let (frame, from)) = RoutingFrame.decode(topic: t, body: body) else { malformed(via: via); return true }
        if from == nodeID {
            if let via, let pi = peers.index(conn: via.raw) { stats.forged &+= 1; peers[key: pi].noteBad(.forged) }
            return true
        }
        let source = admit(from, via: via, now: now)
        // Routing control comes from neighbours only (with connections known: the bound one).
        guard let pi = source.peerIndex, peers[pi].up else { return true }
        switch frame {
        case .nodes(let list):
            stats.nodesIn &+= 1
            for e in list { offerContact(e.nodeID.raw, endpoint: e.endpoint, now: now, into: &actions) }
        case .store(let s):
            stats.storesIn &+= 1
            handleStore(s, from: from, now: now, rng: &rng, into: &actions)
        }
        return true
    }

    /// An admitted ROUTED frame: de-duplicated and admitted like DATA (§5), delivered if local,
    /// then sent one hop closer to its target, or flooded from here.
    ///
    /// A routed hop does not spend the ttl: the frame's ttl is the budget of the flood that
    /// continues wherever the route ends (the publish's own, so that flood reaches as far from
    /// there as the publish's would have from the publisher), and the route itself is bounded by
    /// its hop count: a node that received it on hop `maxTTL` floods it.
    mutating func handleRouted(_ v: RoutedFrameView, id: MessageID, source: Source, now: UInt64,
                               rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        let ttl = v.header.ttl, hops = v.header.hops, topic = v.topic, from = v.header.from
        guard ttl <= maxTTL else { stats.overTTL &+= 1; stats.malformed &+= 1; return }
        let h = hops == .max ? hops : hops + 1
        guard recordNew(id, source: source, now: now) else {
            // A duplicate. If this node only routed the message so far, its route has come back
            // here: the target changed on the way (the key's point, then the subscriber a record
            // named) and the new path crossed the old one. Going on would loop, and dropping it
            // would lose the message's only copy: the flood takes it from here (once).
            if routingOn, floodPassesRoutedPath(id, now: now) {
                stats.routedLoops &+= 1
                floodFallback(v.envelope, topic: topic, ttl: ttl, hops: h, source: source, now: now, into: &actions)
            }
            return
        }
        let local = localTopics.contains(topic)
        if local {
            actions.append(.deliver(topic: topic, envelope: Array(v.envelope), hops: h, id: id))
            stats.delivered &+= 1
            if UInt64(h) > stats.maxHops { stats.maxHops = UInt64(h) }
        }
        guard !isLeaf else { return }
        var mode = v.mode, target = v.target
        if mode == .node && target == nodeID.raw {
            // It was for us. Not subscribed (any more): the record that sent it here is stale.
            if local { return }
            stats.fallbackStaleRecord &+= 1
            return floodFallback(v.envelope, topic: topic, ttl: ttl, hops: h, source: source, now: now, into: &actions)
        }
        if mode == .key, let r = routing {
            switch r.records.lookup(topic, now: now) {
            case .one(let n) where n == nodeID.raw:
                if local { return }
                stats.fallbackStaleRecord &+= 1
                return floodFallback(v.envelope, topic: topic, ttl: ttl, hops: h, source: source, now: now, into: &actions)
            case .one(let n):
                mode = .node
                target = n
            case .many:
                stats.fallbackGroup &+= 1
                return floodFallback(v.envelope, topic: topic, ttl: ttl, hops: h, source: source, now: now, into: &actions)
            case .none:
                break
            }
        }
        guard let hop = nextHop(toward: target, excluding: from, now: now) else {
            // No known node is closer: no record where there should be one, or the subscriber is
            // out of reach.
            if mode == .key && local { return }
            if mode == .key { stats.fallbackNoRecord &+= 1 } else { stats.fallbackNoCloserHop &+= 1 }
            return floodFallback(v.envelope, topic: topic, ttl: ttl, hops: h, source: source, now: now, into: &actions)
        }
        // The route has used its hops: the flood takes it from here, with the whole budget.
        guard h < maxTTL else {
            stats.fallbackHopLimit &+= 1
            return floodFallback(v.envelope, topic: topic, ttl: ttl, hops: h, source: source, now: now, into: &actions)
        }
        if seenHold != 0 && !takeShare(source, forward: true, now: now) { stats.unforwarded &+= 1; return }
        let body = RoutedFrameView.encode(envelope: v.envelope, mode: mode, target: target, ttl: ttl, hops: h, from: nodeID)
        actions.append(.send([hop.link], OutFrame(topic: topic, body: body)))
        noteRouted(id, now: now)
        stats.routed &+= 1
        stats.relayed &+= 1
        stats.framesOut &+= 1
    }

    /// The routed message continues as ordinary DATA from here, with the routed frame's ttl (the
    /// flood's whole budget: a flood started here reaches as far as a publish from here) and
    /// hop count, on every gossip link — the previous hop's too: it only routed the message, so
    /// unlike a flooding neighbour it has not sent it on to its own neighbours, and may be the
    /// only way to some of them. `source`: whose forwarding share it takes (nil: none, a frame
    /// of our own that could not be sent).
    mutating func floodFallback(_ envelope: UnsafeBufferPointer<UInt8>, topic: Topic, ttl: UInt8, hops h: UInt8,
                                source: Source?, now: UInt64, into actions: inout [Action]) {
        stats.routeFallbacks &+= 1
        let targets = sendTargets(excluding: nil)
        guard !targets.isEmpty else { return }
        if let source, seenHold != 0 && !takeShare(source, forward: true, now: now) { stats.unforwarded &+= 1; return }
        var body = [UInt8]()
        body.reserveCapacity(FrameHeader.size + envelope.count)
        FrameHeader(type: Frame.TypeCode.data.rawValue, ttl: ttl, hops: h, from: nodeID).append(to: &body)
        body.append(contentsOf: envelope)
        actions.append(.send(targets, OutFrame(topic: topic, body: body)))
        stats.relayed &+= UInt64(targets.count)
        stats.framesOut &+= UInt64(targets.count)
    }

    /// The driver could not send `body` on `link` (its queue was full, the link was gone). A
    /// ROUTED frame of ours in it — alone or in a BATCH — was its message's only copy: the
    /// message is flooded from here instead (ttl and hops of that frame), on every gossip link
    /// (that node's too, if it is a gossip neighbour: nothing else may reach it). Other frames are not sent again (a flood has
    /// other copies; control frames are repeated by their timers).
    mutating func sendFailed(link: LinkID, topic: Topic, body: UnsafeBufferPointer<UInt8>, now: UInt64,
                             into actions: inout [Action]) {
        guard routing != nil, active, !isLeaf, body.count >= 2, !topic.isControl else { return }
        func take(_ b: UnsafeBufferPointer<UInt8>) {
            guard b.count >= 2, b[1] == RoutingTypeCode.routed,
                  case .success(let v) = RoutedFrameView.check(topic: topic, body: b), v.header.from == nodeID else { return }
            stats.routeRefused &+= 1
            let lifetime = routedOnlyLifetime
            _ = routing?.routedOnly.take(v.messageID(), now: now, lifetime: lifetime)
            floodFallback(v.envelope, topic: topic, ttl: v.header.ttl, hops: v.header.hops, source: nil, now: now, into: &actions)
        }
        if FrameBatch.isBatch(body) {
            _ = FrameBatch.split(body) { take($0) }
        } else {
            take(body)
        }
    }

    /// A publish to a topic this node does not subscribe: sent as ROUTED on one link if a
    /// routing peer is closer to the target (the subscriber, if this node holds its record, else
    /// the key's point). False: flood it (no route, a group, a stale record of our own).
    mutating func routePublish(topic: Topic, envelope: [UInt8], id: MessageID, ttl: UInt8, now: UInt64,
                               into actions: inout [Action]) -> Bool {
        guard let r = routing, !localTopics.contains(topic) else { return false }
        var mode = RouteMode.key, target = topic.routingPoint
        switch r.records.lookup(topic, now: now) {
        case .one(let n) where n == nodeID.raw: return false
        case .one(let n): mode = .node; target = n
        case .many: return false
        case .none: break
        }
        guard let hop = nextHop(toward: target, excluding: nil, now: now) else { stats.publishesNotRouted &+= 1; return false }
        let body = RoutedFrameView.encode(envelope: envelope, mode: mode, target: target, ttl: ttl, hops: 0, from: nodeID)
        actions.append(.send([hop.link], OutFrame(topic: topic, body: body)))
        noteRouted(id, now: now)
        stats.routed &+= 1
        stats.framesOut &+= 1
        return true
    }

    // MARK: - Location records

    /// A STORE from neighbour `from` (nil: our own). Routed on toward the key's point while a
    /// routing peer is closer; the node where it stops holds the record and has its closest
    /// routing peers hold replicas.
    mutating func handleStore(_ s: StoreFrame, from: NodeID?, now: UInt64,
                              rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        if from != nil { offerContact(s.node.raw, endpoint: s.endpoint, now: now, into: &actions) }
        if s.replica { return keep(s, now: now) }
        let point = s.key.routingPoint
        if s.hopsLeft > 1, let hop = nextHop(toward: point, excluding: from, now: now) {
            var f = s
            f.hopsLeft -= 1
            actions.append(.send([hop.link], f.encode(from: nodeID)))
            stats.framesOut &+= 1
            return
        }
        keep(s, now: now)
        var replica = s
        replica.replica = true
        for pi in routingPeers(closestTo: point, count: routingParameters.replicas - 1, now: now) {
            guard let l = peers[pi].link else { continue }
            actions.append(.send([l], replica.encode(from: nodeID)))
            stats.framesOut &+= 1
        }
    }

    mutating func keep(_ s: StoreFrame, now: UInt64) {
        if s.lifetimeMilliseconds == 0 {
            routing?.records.withdraw(s.key, node: s.node.raw)
        } else {
            let expiry = satAdd(now, UInt64(s.lifetimeMilliseconds) * 1_000_000)
            routing?.records.store(s.key, node: s.node.raw, endpoint: s.endpoint, expiry: expiry, now: now)
        }
    }

    /// Stores (or withdraws, lifetime 0) our own record for `topic`.
    mutating func storeOwn(_ topic: Topic, lifetime: UInt64, now: UInt64,
                           rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        let ms = UInt32(min(lifetime / 1_000_000, UInt64(UInt32.max)))
        let s = StoreFrame(key: topic, node: nodeID, lifetimeMilliseconds: ms, hopsLeft: maxTTL, replica: false,
                           endpoint: advertisedEndpoint)
        handleStore(s, from: nil, now: now, rng: &rng, into: &actions)
    }

    /// `subscribeLocal`: the record is stored at the next tick.
    mutating func routingSubscribed(_ topic: Topic) {
        guard routing != nil else { return }
        routing!.withdrawals.removeAll { $0 == topic }
        if !routing!.subscriptions.contains(where: { $0.topic == topic }) { routing!.subscriptions.append((topic, 0, 0)) }
    }

    /// `unsubscribeLocal`: the record is withdrawn at the next tick.
    mutating func routingUnsubscribed(_ topic: Topic) {
        guard routing != nil else { return }
        routing!.subscriptions.removeAll { $0.topic == topic }
        routing!.records.withdraw(topic, node: nodeID.raw)
        if !routing!.withdrawals.contains(topic) { routing!.withdrawals.append(topic) }
    }

    // MARK: - Contacts

    /// A node learned (with its endpoint): into the table, dialled if it became wanted.
    mutating func offerContact(_ id: UInt64, endpoint: String, now: UInt64, into actions: inout [Action]) {
        guard routing != nil, id != nodeID.raw, endpoint != "-", dialable(endpoint) else { return }
        if routing!.table.offer(id, endpoint: endpoint, now: now) { dialContact(id, now: now, into: &actions) }
    }

    /// The same, dialled at the next tick (from peer lists, which arrive without an action buffer).
    mutating func offerContactLater(_ id: UInt64, endpoint: String, now: UInt64) {
        guard routing != nil, id != nodeID.raw, endpoint != "-", dialable(endpoint) else { return }
        _ = routing!.table.offer(id, endpoint: endpoint, now: now)
    }

    var pendingContacts: Int {
        var n = 0
        for i in links.indices where links[i].contact && !linkIsUp(i) { n += 1 }
        return n
    }

    /// Dials a contact link to table entry `id`, unless a link reaches it already, its last dial
    /// did not come up and its back-off has not passed (`contactRetry`), or the budget
    /// (`maxPendingContacts`, and the dial budget of §6 for endpoints never verified) says no.
    mutating func dialContact(_ id: UInt64, now: UInt64, into actions: inout [Action]) {
        guard routing != nil, let i = routing!.table.index(of: id) else { return }
        if let pi = peers.index(of: NodeID(raw: id)), peers[pi].link != nil { return }
        let c = routing!.table.entries[i]
        if c.failures > 0 && now < satAdd(c.dialledAt, contactRetry(afterDials: c.failures)) { return }
        let e = c.endpoint
        guard dialable(e), !links.contains(where: { $0.endpoint == e || $0.node?.raw == id }) else { return }
        guard pendingContacts < routingParameters.maxPendingContacts, mayDial(e, now: now) else { return }
        let l = dial(e, seed: nil, node: NodeID(raw: id), now: now, into: &actions)
        if let li = links.index(of: l) { links.setContact(li, true) }
        routing!.dialled.append(l)
        routing!.table.update(i) { $0.failures &+= 1; $0.dialledAt = now }
        stats.contactDials &+= 1
    }

    /// How long after a contact's dial the next may be made, when `dials` dials have not come
    /// up: dialTimeout × 2^dials (the first retry one dial timeout after the first timed out,
    /// then twice that, …). Without it an overloaded listener — whose accepts lag, so dials time
    /// out — is dialled again at once by every node that wants it, and the overload feeds itself.
    /// (Not `backoff(failures:)`: its first steps, 100 ms local and 500 ms on a LAN, are far below
    /// one dial timeout, 2 s and 5 s — the very gap to close here.)
    func contactRetry(afterDials dials: UInt8) -> UInt64 {
        let t = max(config.dialTimeout, 1)
        let shift = min(Int(dials), 4)
        return t > UInt64.max >> shift ? UInt64.max : t << shift
    }

    /// After a HELLO from `from`: learn it as a contact (or that it does not route), and settle
    /// the class of our link to it — a contact link stays one only if the other end says so too.
    mutating func routingHello(_ h: Frame.Hello, from: NodeID, now: UInt64,
                               rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        guard routing != nil, let pi = peers.index(of: from) else { return }
        if !h.leaf {
            if h.routing { offerContact(from.raw, endpoint: h.endpoint, now: now, into: &actions) }
            else { routing!.table.markNonRouting(from.raw) }
        }
        guard let l = peers[pi].link, let li = links.index(of: l), links[li].contact, !h.contact else { return }
        // A gossip link at the other end (or a node that knows nothing of routing): ours is one too.
        links.setContact(li, false)
        // It has joined the active view (§6 "Views"): above the bound, another neighbour makes room.
        guard viewsOn else { return }
        while activeCount() > maxDegree {
            let others = viewPeers(excluding: from)
            guard !others.isEmpty else { return }
            evict(others[Int(rng.next(upperBound: UInt64(others.count)))], now: now, rng: &rng, into: &actions)
        }
    }

    /// The degree wants a neighbour and no endpoint we know is free of a link: an up contact
    /// link (a random one) becomes a gossip link. Our HELLO on it, without bit 5, makes the other
    /// end's link a gossip link too (`routingHello`: the class is gossip if either end says so).
    /// Without this a node whose every known node is a contact (a small overlay) stays below its
    /// degree. False: none to promote.
    mutating func promoteContact(rng: inout some RandomNumberGenerator, into actions: inout [Action]) -> Bool {
        var up: [Int] = []
        for i in links.indices where links[i].contact && linkIsUp(i) {
            if let n = links[i].node, let pi = peers.index(of: n), !peers[pi].leaf { up.append(i) }
        }
        guard !up.isEmpty else { return false }
        let li = up[Int(rng.next(upperBound: UInt64(up.count)))]
        links.setContact(li, false)
        let l = links[li].id
        var echo: UInt64 = 0
        if let n = links[li].node, let pi = peers.index(of: n) { echo = peers[pi].token }
        sendHello(on: l, echo: echo, rng: &rng, into: &actions)
        return true
    }

    /// A routing peer came up: tell it the nodes we know closest to it.
    mutating func routingPeerUp(_ pi: Int, into actions: inout [Action]) {
        guard routing != nil, peers[pi].routing, !peers[pi].leaf else { return }
        if let i = routing!.table.index(of: peers[pi].id.raw) { routing!.table.update(i) { $0.failures = 0 } }
        sendNodes(to: pi, into: &actions)
    }

    /// NODES to peer `pi`: the 16 nodes we know (table and routing peers) closest to it.
    mutating func sendNodes(to pi: Int, into actions: inout [Action]) {
        guard let r = routing, let l = peers[pi].link else { return }
        let target = peers[pi].id.raw
        // Ids first (no endpoint copied), the endpoints of the 16 chosen after: entry k of the
        // table is `k`, peer q is `-1 - q`.
        var cands: [(d: UInt64, ref: Int)] = []
        cands.reserveCapacity(r.table.entries.count + peers.count)
        for (k, e) in r.table.entries.enumerated() where e.id != target { cands.append((e.id ^ target, k)) }
        for q in peers.indices where peers[q].up && peers[q].routing && !peers[q].leaf {
            let id = peers[q].id.raw
            if id != target && r.table.index(of: id) == nil { cands.append((id ^ target, -1 - q)) }
        }
        cands.sort { $0.d < $1.d }
        var list: [Frame.PeerEntry] = []
        for c in cands where list.count < Self.nodesPerFrame {
            let e = c.ref >= 0 ? r.table.entries[c.ref].endpoint : peers[-1 - c.ref].endpoint
            guard e != "-", Frame.isEncodable(endpoint: e) else { continue }
            list.append(Frame.PeerEntry(nodeID: NodeID(raw: c.d ^ target), endpoint: e))
        }
        guard !list.isEmpty else { return }
        actions.append(.send([l], RoutingFrame.encodeNodes(list, from: nodeID)))
        stats.framesOut &+= 1
    }

    /// Ready contact links (they get heartbeats beside the gossip links).
    func readyContactLinks() -> [LinkID] {
        links.compactMap { $0.ready && $0.contact ? $0.id : nil }
    }

    // MARK: - Periodic

    /// Every tick: records expire, our records are stored on schedule and withdrawn, pinned
    /// subscribers follow the records, contacts are dialled, dropped or closed, and every peer
    /// exchange interval NODES go to a few routing peers.
    mutating func routingTick(now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        guard routing != nil else { return }
        let p = routingParameters
        routing!.records.expire(now: now)

        let lifetime = p.recordRefresh > UInt64.max / 3 ? UInt64.max : 3 * p.recordRefresh
        for k in routing!.subscriptions.indices where routing!.subscriptions[k].next <= now {
            let topic = routing!.subscriptions[k].topic
            let step = routing!.subscriptions[k].step == 0 ? min(1_000_000_000, p.recordRefresh) : routing!.subscriptions[k].step
            routing!.subscriptions[k].next = satAdd(now, step)
            routing!.subscriptions[k].step = min(step > UInt64.max / 2 ? step : 2 * step, max(p.recordRefresh, 1))
            storeOwn(topic, lifetime: lifetime, now: now, rng: &rng, into: &actions)
        }
        let gone = routing!.withdrawals
        routing!.withdrawals.removeAll()
        for t in gone { storeOwn(t, lifetime: 0, now: now, rng: &rng, into: &actions) }

        let singles = routing!.records.singleSubscribers(now: now, limit: p.maxPinned)
        routing!.table.unpin(except: Set(singles.map(\.node)))
        for s in singles where s.node != nodeID.raw && s.endpoint != "-" && dialable(s.endpoint) {
            _ = routing!.table.pin(s.node, endpoint: s.endpoint, now: now)
        }

        var k = 0
        while k < routing!.table.entries.count {
            let e = routing!.table.entries[k]
            if let pi = peers.index(of: NodeID(raw: e.id)), peers[pi].link != nil {
                if peers[pi].up { routing!.table.update(k) { $0.failures = 0 } }
                k += 1
                continue
            }
            if e.failures >= 3 && !links.contains(where: { $0.node?.raw == e.id }) {
                routing!.table.holdDown(e.id, until: satAdd(now, p.contactHoldDown))
                continue
            }
            dialContact(e.id, now: now, into: &actions)
            k += 1
        }

        // Contact links we dialled to nodes we no longer want.
        var d = 0
        while d < routing!.dialled.count {
            let l = routing!.dialled[d]
            guard let li = links.index(of: l), links[li].contact else { routing!.dialled.remove(at: d); continue }
            if let n = links[li].node, routing!.table.index(of: n.raw) == nil, linkIsUp(li) {
                routing!.dialled.remove(at: d)
                closeLink(l, reason: nil, failure: false, now: now, rng: &rng, into: &actions)
                continue
            }
            d += 1
        }

        if now >= routing!.nextExchange {
            routing!.nextExchange = satAdd(now, max(config.peerExchangeInterval, 1))
            var chosen = routingPeers(closestTo: nodeID.raw, count: 2, now: now)
            var all: [Int] = []
            for pi in peers.indices where isRoutingPeer(pi, now: now) && !chosen.contains(pi) { all.append(pi) }
            if !all.isEmpty { chosen.append(all[Int(rng.next(upperBound: UInt64(all.count)))]) }
            for pi in chosen { sendNodes(to: pi, into: &actions) }
        }
    }
}
