// Links, bindings, neighbours coming up and going down, back-off.

extension GossipEngine.Core {
    func isSeed(_ endpoint: String) -> Bool { seeds.contains { $0.endpoint == endpoint } }

    func dialable(_ endpoint: String) -> Bool {
        endpoint != config.endpoint && !selfEndpoints.contains(endpoint) && Frame.isEncodable(endpoint: endpoint)
    }

    /// True if link `li` may be bound to `node` by rule 2 (it advertises the link's endpoint): the
    /// link carries no other node that is up.
    func mayRebind(_ li: Int, to node: NodeID) -> Bool {
        guard let other = links[li].node, other != node, let pi = peers.index(of: other) else { return true }
        return !peers[pi].up
    }

    /// An endpoint that was up once (or is a seed) needs no dial budget.
    func isVerified(_ endpoint: String) -> Bool {
        if isSeed(endpoint) { return true }
        if let i = known.find(endpoint) { return known[i].verified }
        return false
    }

    /// The dial budget for endpoints never verified: at most `maxPendingDials` of them in flight,
    /// at `dialRate` per second (burst `dialBurst`). Takes a token when it allows the dial.
    mutating func mayDial(_ endpoint: String, now: UInt64) -> Bool {
        if let i = known.find(endpoint), now < known[i].penalizedUntil { return false }
        if isVerified(endpoint) { return true }
        var pending = 0
        for i in links.indices where !linkIsUp(i) && links[i].seed == nil && !isVerified(links[i].endpoint) { pending += 1 }
        guard pending < config.maxPendingDials else { return false }
        guard config.dialRate > 0 else { return true }
        return dialBucket.take(now: now, rate: config.dialRate, burst: config.dialBurst)
    }

    /// Opens a link. `node` pre-binds it.
    mutating func dial(_ endpoint: String, seed: Int?, node: NodeID?, request: Frame.Request = .neighbour, now: UInt64,
                       into actions: inout [Action]) -> LinkID {
        let id = newLinkID()
        links.dial(id, endpoint: endpoint, seed: seed, node: node, request: request, now: now)
        actions.append(.connect(id, endpoint: endpoint))
        return id
    }

    /// Binds link `li` to node `to` (a peer that sent us a HELLO). A different node bound
    /// there before was an older incarnation (`.replaced`). If the node already has another
    /// link, one of the two is closed.
    mutating func bind(_ li: Int, to node: NodeID, now: UInt64,
                       rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        let l = links[li].id
        if let old = links[li].node, old != node, let opi = peers.index(of: old) {
            let p = peers[opi]
            if p.up { actions.append(.peerDown(neighbour(p), reason: .replaced)) }
            peers.remove(at: opi)
            for s in seeds.indices where seeds[s].node == old { seeds[s].node = node }
        }
        guard let li = links.index(of: l), let pi = peers.index(of: node) else { return }
        links.bind(li, to: node)
        if let s = links[li].seed { seeds[s].node = node }
        guard let existing = peers[pi].link, existing != l, let ei = links.index(of: existing) else {
            peers[pi].link = l
            return
        }
        // Two links reach the same node: keep the existing one unless only the new one is ready.
        let keepNew = links[li].ready && !links[ei].ready
        let drop = keepNew ? existing : l
        if keepNew { peers[pi].link = l }
        if let di = links.index(of: drop) { links.bind(di, to: nil) }
        closeLink(drop, reason: nil, failure: false, now: now, rng: &rng, into: &actions)
    }

    /// Emits `.peerUp` once our link to `node` is ready and bound and its HELLO arrived.
    mutating func updateUp(_ node: NodeID, now: UInt64, into actions: inout [Action]) {
        guard let pi = peers.index(of: node), !peers[pi].up, let l = peers[pi].link,
              let li = links.index(of: l), links[li].ready else { return }
        peers[pi].up = true
        peers[pi].since = now
        peers[key: pi].lastHeard = now
        let endpoint = peers[pi].endpoint
        if let s = links[li].seed { seeds[s].failures = 0 }
        for s in seeds.indices where seeds[s].endpoint == endpoint { seeds[s].failures = 0 }
        if let i = known.find(endpoint) { known[i].failures = 0; known[i].retryAt = 0; known[i].verified = true }
        if let i = known.find(links[li].endpoint) { known[i].failures = 0; known[i].retryAt = 0; known[i].verified = true }
        actions.append(.peerUp(neighbour(peers[pi])))
        if routing != nil { routingPeerUp(pi, into: &actions) }
    }

    /// Closes a link. If it carries a neighbour, that neighbour is removed (`.peerDown(reason)`
    /// if it was up). `failure` backs off its endpoints (the link's, its seed's, the one the
    /// neighbour advertised) unless it is a contact link: the delays' jitter is drawn from `rng`,
    /// which is not drawn from without `failure`.
    mutating func closeLink(
        _ l: LinkID, reason: PeerDownReason?, failure: Bool, now: UInt64,
        rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        guard let li = links.index(of: l) else { return }
        let link = links.remove(at: li)
        if !sheds.isEmpty { sheds.removeAll { $0.link == l } }
        actions.append(.disconnect(l))
        var advertised: String? = nil
        if let n = link.node, let pi = peers.index(of: n), peers[pi].link == l {
            let p = peers.remove(at: pi)
            if p.up { actions.append(.peerDown(neighbour(p), reason: reason ?? .timeout)) }
            advertised = p.endpoint
        }
        // A contact link's dials back off in the routing table (`contactRetry`); it is not a
        // neighbour, so its failure does not make its endpoint one to reconnect to (§6).
        guard failure, !link.contact else { return }
        if let s = link.seed {
            seeds[s].failures &+= 1
            seeds[s].retryAt = satAdd(now, backoff(failures: seeds[s].failures, rng: &rng))
        }
        var endpoints = [link.endpoint]
        if let a = advertised, a != link.endpoint { endpoints.append(a) }
        for e in endpoints {
            if let s = seeds.firstIndex(where: { $0.endpoint == e }), s != link.seed {
                seeds[s].failures &+= 1
                seeds[s].retryAt = satAdd(now, backoff(failures: seeds[s].failures, rng: &rng))
            }
            if let i = known.find(e) {
                known[i].failures &+= 1
                known[i].retryAt = satAdd(now, backoff(failures: known[i].failures, rng: &rng))
            }
        }
    }

    /// HELLO on link `l`.
    mutating func sendHello(on l: LinkID, echo: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        let endpoint = Frame.isEncodable(endpoint: config.endpoint) ? config.endpoint : "-"
        // A routing contact link carries no peer exchange: its HELLO has an empty peer list.
        let contact = routing != nil && (links.index(of: l).map { links[$0].contact } ?? false)
        var hello = Frame.Hello(leaf: config.leaf, token: l.raw, echo: echo, endpoint: endpoint,
                                peers: contact ? [] : peerList(rng: &rng))
        if viewsOn {
            hello.views = true
            // A contact link asks for nothing: it is outside the active view.
            if !contact, let li = links.index(of: l) { hello.request = links[li].request }
        }
        if routing != nil {
            hello.routing = true
            hello.contact = contact
        }
        actions.append(.send([l], Frame(kind: .hello(hello), from: nodeID).encode()))
        stats.framesOut &+= 1
    }

    /// Up to 32 entries: up non-leaf neighbours first, then random known endpoints.
    func peerList(rng: inout some RandomNumberGenerator) -> [Frame.PeerEntry] {
        var list = [Frame.PeerEntry]()
        for p in peers where p.up && !p.leaf && Frame.isEncodable(endpoint: p.endpoint) {
            list.append(Frame.PeerEntry(nodeID: p.id, endpoint: p.endpoint))
            if list.count == Frame.maxPeers { return list }
        }
        let n = known.count
        guard n > 0 else { return list }
        let start = Int(rng.next(upperBound: UInt64(n)))
        var scanned = 0
        while scanned < n && scanned < 3 * Frame.maxPeers && list.count < Frame.maxPeers {
            let e = known[(start + scanned) % n]
            scanned += 1
            guard e.node != 0, !e.blocked else { continue }
            if list.contains(where: { $0.nodeID.raw == e.node || $0.endpoint == e.endpoint }) { continue }
            list.append(Frame.PeerEntry(nodeID: NodeID(raw: e.node), endpoint: e.endpoint))
        }
        return list
    }
}
