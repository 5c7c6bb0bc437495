// Inbound frame handling: DATA flooding with de-dup and TTL, HELLO handshake, PEERS, BYE.

extension GossipEngine {
    mutating func handle(_ frame: Frame, now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        let from = frame.from
        if from == nodeID {
            if case .hello(let h) = frame.kind { handleSelfHello(h, now: now, into: &actions) }
            return
        }
        guard admit(from, now: now) else { return }
        switch frame.kind {
        case .data(let topic, let envelope, let id):
            handleDataFrame(topic: topic, envelope: .array(envelope), id: id, ttl: frame.ttl, hops: frame.hops,
                            from: from, now: now, into: &actions)
        case .hello(let h):
            handleHello(h, from: from, now: now, rng: &rng, into: &actions)
            recomputeDeadline()
        case .heartbeat:
            break
        case .peers(let list):
            learn(list, now: now, rng: &rng)
        case .bye:
            handleBye(from: from, now: now, rng: &rng, into: &actions)
            recomputeDeadline()
        }
    }

    /// Rate limit, then liveness: false if the frame must be dropped (counted).
    @inline(__always)
    mutating func admit(_ from: NodeID, now: UInt64) -> Bool {
        let pi = peerIndex(from)
        if config.rateLimit > 0 {
            let ok = pi.map { peerKeys[$0].bucket.take(now: now, rate: config.rateLimit, burst: config.rateBurst) }
                ?? strangerBucket.take(now: now, rate: config.rateLimit, burst: config.rateBurst)
            guard ok else { stats.rateLimited &+= 1; return false }
        }
        if let pi, peerKeys[pi].lastHeard < now { peerKeys[pi].lastHeard = now }
        return true
    }

    /// An admitted DATA frame, decoded or still in the receive buffer.
    mutating func handleDataFrame(
        topic: Topic, envelope: DataPayload, id: MessageID, ttl: UInt8, hops: UInt8,
        from: NodeID, now: UInt64, into actions: inout [Action]
    ) {
        guard ttl != 0, !topic.isControl, !envelope.isEmpty, from.raw != 0 else {
            stats.malformed &+= 1
            return
        }
        handleData(topic: topic, envelope: envelope, id: id, ttl: ttl, hops: hops,
                   from: from, now: now, into: &actions)
    }

    mutating func handleData(
        topic: Topic, envelope: DataPayload, id: MessageID, ttl: UInt8, hops: UInt8,
        from: NodeID, now: UInt64, into actions: inout [Action]
    ) {
        // A ttl above the maximum is not from a conforming node (each hop lowers it, and a
        // publish starts at most at maxTTL): drop it before it can claim a seen-cache entry.
        guard ttl <= maxTTL else {
            stats.overTTL &+= 1
            stats.malformed &+= 1
            return
        }
        guard seen.insert(id, now: now) else {
            stats.duplicates &+= 1
            return
        }
        let h = hops == .max ? hops : hops + 1
        if !localTopics.isEmpty && localTopics.contains(topic) {
            actions.append(.deliver(topic: topic, envelope: envelope.bytes, hops: h, id: id))
            stats.delivered &+= 1
            if UInt64(h) > stats.maxHops { stats.maxHops = UInt64(h) }
        }
        guard !isLeaf else { return }
        guard ttl > 1 else {
            stats.ttlExpired &+= 1
            return
        }
        let targets = sendTargets(excluding: from)
        guard !targets.isEmpty else { return }
        let body = envelope.forwardBody(ttl: ttl - 1, hops: h, from: nodeID)
        actions.append(.send(targets, OutFrame(topic: topic, body: body)))
        stats.relayed &+= UInt64(targets.count)
        stats.framesOut &+= UInt64(targets.count)
    }

    /// The handshake. See docs/PROTOCOL.md "Handshake".
    mutating func handleHello(
        _ h: Frame.Hello, from: NodeID, now: UInt64,
        rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        if h.leaf {
            known.remove(h.endpoint)
        } else if let i = learn(h.endpoint, node: from, rng: &rng) {
            known[i].blockedNode = 0
        }
        learn(h.peers, now: now, rng: &rng)

        if let pi = peerIndex(from) {
            peers[pi].endpoint = h.endpoint
            peers[pi].leaf = h.leaf
            peers[pi].token = h.token
        } else {
            var p = PeerState(id: from, endpoint: h.endpoint, leaf: h.leaf)
            p.token = h.token
            appendPeer(p, lastHeard: now)
        }

        // (1) the echo names one of our links: it reaches the sender.
        if h.echo != 0, let li = linkIndex(raw: h.echo) {
            bind(li, to: from, now: now, into: &actions)
        } else if let li = links.firstIndex(where: { $0.endpoint == h.endpoint }) {
            // (2) we have a link to the endpoint it advertises.
            bind(li, to: from, now: now, into: &actions)
        } else if let pi = peerIndex(from), peers[pi].link == nil, dialable(h.endpoint) {
            // (3) dial it back, pre-bound.
            let l = dial(h.endpoint, seed: nil, node: from, now: now, into: &actions)
            if let pi = peerIndex(from) { peers[pi].link = l }
        }

        guard let pi = peerIndex(from), let l = peers[pi].link, let li = linkIndex(l), links[li].ready else { return }
        if h.echo != l.raw {
            // It has not yet seen our token for this link: answer once.
            sendHello(on: l, echo: h.token, rng: &rng, into: &actions)
        }
        updateUp(from, now: now, into: &actions)
    }

    /// A HELLO from ourselves: one of our links leads back here (e.g. a seed that is an
    /// alias of our own endpoint). Close it and never dial that endpoint again.
    mutating func handleSelfHello(_ h: Frame.Hello, now: UInt64, into actions: inout [Action]) {
        guard let li = linkIndex(raw: h.token) else { return }
        let l = links[li]
        selfEndpoints.insert(l.endpoint)
        if let s = l.seed { seeds[s].disabled = true }
        known.remove(l.endpoint)
        closeLink(l.id, reason: nil, failure: false, now: now, into: &actions)
        recomputeDeadline()
    }

    mutating func handleBye(from: NodeID, now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        guard let pi = peerIndex(from) else { return }
        let p = peers[pi]
        if !isSeed(p.endpoint), let i = known.find(p.endpoint) {
            known[i].node = from.raw
            known[i].blockedNode = from.raw
        }
        if let l = p.link {
            closeLink(l, reason: .bye, failure: true, now: now, rng: &rng, into: &actions)
        } else {
            removePeer(at: pi)
        }
    }

    /// Learns a peer list (never ourselves).
    mutating func learn(_ list: [Frame.PeerEntry], now: UInt64, rng: inout some RandomNumberGenerator) {
        for e in list where e.nodeID != nodeID {
            _ = learn(e.endpoint, node: e.nodeID, rng: &rng)
        }
    }

    /// Learns one endpoint; returns its index in the known table.
    mutating func learn(_ endpoint: String, node: NodeID, rng: inout some RandomNumberGenerator) -> Int? {
        guard node != nodeID, endpoint != config.endpoint, !selfEndpoints.contains(endpoint),
              Frame.isEncodable(endpoint: endpoint) else { return nil }
        let links = self.links
        return known.upsert(endpoint, node: node.raw, rng: &rng) { e in links.contains { $0.endpoint == e } }
    }
}
