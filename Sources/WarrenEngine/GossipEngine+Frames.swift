// Inbound frame handling: DATA flooding with de-dup and TTL, HELLO handshake, PEERS, BYE.

/// Whom an admitted inbound frame is from: the up-or-not peer at `peers[i]` (bound to the frame's
/// connection, or named by its `from` when the driver cannot tell connections apart), or anyone
/// else (a connection not bound yet, a node id that is not a peer).
enum Source {
    /// Named by `from` (connections unknown).
    case peer(Int)
    /// Bound to the frame's connection: its frames count for or against it (scoring).
    case bound(Int)
    case other
    case drop

    var peerIndex: Int? {
        switch self {
        case .peer(let i), .bound(let i): i
        case .other, .drop: nil
        }
    }
}

extension GossipEngine.Core {
    mutating func handle(_ frame: Frame, via: ConnectionID?, now: UInt64,
                         rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        let from = frame.from
        if from == nodeID {
            // A connection bound to a neighbour cannot speak for us.
            if let via, let pi = peers.index(conn: via.raw) { stats.forged &+= 1; peers[key: pi].noteBad(.forged); return }
            if case .hello(let h) = frame.kind, !handleSelfHello(h, now: now, rng: &rng, into: &actions) { forgedByStranger(via) }
            return
        }
        let source = admit(from, via: via, now: now)
        if case .drop = source { return }
        // With connections known, only the node bound to this one may speak about itself.
        let speaks = via == nil || source.peerIndex != nil
        switch frame.kind {
        case .data:
            break   // never here: `receiveData` takes DATA before anything is decoded
        case .hello(let h):
            if let via, !speaks, !bindConnection(via, to: from, hello: h) { return }
            handleHello(h, from: from, now: now, rng: &rng, into: &actions)
            if let via, let pi = peers.index(of: from), peers[key: pi].conn != via.raw {
                peers[key: pi].left = peers[key: pi].conn
                peers[key: pi].conn = via.raw
            }
        case .heartbeat:
            break
        case .peers(let list):
            guard speaks else { return claimed(from, via: via) }
            learn(list, now: now, rng: &rng)
        case .bye:
            guard speaks else { return claimed(from, via: via) }
            handleBye(from: from, now: now, rng: &rng, into: &actions)
        case .disconnect(let echo):
            // Without views this engine is what a node built before them is: the frame is malformed.
            guard viewsOn else { return malformed(via: via) }
            if !handleDisconnect(from: from, echo: echo, speaks: speaks, now: now, rng: &rng, into: &actions) && !speaks {
                claimed(from, via: via)
            }
        case .forwardJoin(let ttl, let node):
            guard viewsOn else { return malformed(via: via) }
            guard speaks else { return claimed(from, via: via) }
            handleForwardJoin(ttl: ttl, node: node, from: from, now: now, rng: &rng, into: &actions)
        }
    }

    /// A frame on a connection that is not bound to `from`: forged if `from` is a peer of ours
    /// (it would speak for another node's link).
    mutating func claimed(_ from: NodeID, via: ConnectionID?) {
        guard let pi = peers.index(of: from) else { return }
        // Sent before it moved to its new connection (a driver's connections can overtake each
        // other): late, not forged.
        if let via, peers[key: pi].left == via.raw || (via.isBacklink && !ConnectionID(raw: peers[key: pi].conn).isBacklink) { return }
        stats.forged &+= 1
        forgedByStranger(via)
    }

    /// A forged frame on a connection bound to nobody: counted per connection (at most 1,024
    /// connections per score interval), so that one which keeps forging is ignored too.
    mutating func forgedByStranger(_ via: ConnectionID?) {
        guard let via, peers.index(conn: via.raw) == nil else { return }
        if strangerBad.count < 1_024 || strangerBad[via.raw] != nil { strangerBad[via.raw, default: 0] &+= 1 }
    }

    /// A first HELLO on connection `via` (not bound yet) from `from`. A node that is up, bound to
    /// another connection, may move to this one only if the HELLO proves that it saw our HELLO on
    /// our link to it (it echoes the link's token): a reconnect. Anything else claiming that node
    /// is forged. A node that is not up yet has nothing to steal and may move freely (its link may
    /// have reconnected before it saw our HELLO).
    ///
    /// A node never moves back to the connection it left: a HELLO still arriving there was sent
    /// before the one that moved it (two connections of the same node, e.g. a back-link and the
    /// link that replaced it, can deliver out of order), and is ignored.
    mutating func bindConnection(_ via: ConnectionID, to from: NodeID, hello h: Frame.Hello) -> Bool {
        guard let pi = peers.index(of: from) else { return true }
        let conn = peers[key: pi].conn
        if conn != 0 && conn != via.raw && (peers[key: pi].left == via.raw || (via.isBacklink && !ConnectionID(raw: conn).isBacklink)) {
            return false
        }
        if conn != 0 && conn != via.raw, peers[pi].up, let l = peers[pi].link, h.echo != l.raw {
            stats.forged &+= 1
            forgedByStranger(via)
            return false
        }
        return true
    }

    /// A malformed frame: counted, and held against the neighbour bound to its connection.
    mutating func malformed(via: ConnectionID?) {
        stats.malformed &+= 1
        if let via, let pi = peers.index(conn: via.raw) { peers[key: pi].noteBad(.malformed) }
    }

    /// Connection binding, rate limit, then liveness; `.drop` if the frame must be dropped
    /// (counted).
    @inline(__always)
    mutating func admit(_ from: NodeID, via: ConnectionID?, now: UInt64) -> Source {
        if let via {
            if let pi = peers.index(conn: via.raw) {
                guard peers[key: pi].id == from.raw else {
                    stats.forged &+= 1
                    peers[key: pi].noteBad(.forged)
                    return .drop
                }
                if rateLimit > 0 && !peers[key: pi].bucket.take(now: now, rate: rateLimit, burst: rateBurst) {
                    stats.rateLimited &+= 1
                    peers[key: pi].noteBad(.overRate)
                    return .drop
                }
                peers[key: pi].good &+= 1
                if peers[key: pi].lastHeard < now { peers[key: pi].lastHeard = now }
                return .bound(pi)
            }
            if rateLimit > 0 && !strangerBucket.take(now: now, rate: rateLimit, burst: rateBurst) {
                stats.rateLimited &+= 1
                return .drop
            }
            return .other
        }
        let pi = peers.index(of: from)
        if rateLimit > 0 {
            let ok = pi.map { peers[key: $0].bucket.take(now: now, rate: rateLimit, burst: rateBurst) }
                ?? strangerBucket.take(now: now, rate: rateLimit, burst: rateBurst)
            guard ok else { stats.rateLimited &+= 1; return .drop }
        }
        guard let pi else { return .other }
        if peers[key: pi].lastHeard < now { peers[key: pi].lastHeard = now }
        return .peer(pi)
    }

    /// Takes one new id from the source's share of `newIDRate`: half of it to admit, a quarter to
    /// forward, each with a burst of one second's worth.
    @inline(__always)
    mutating func takeShare(_ source: Source, forward: Bool, now: UInt64) -> Bool {
        let rate = newIDRate / (forward ? 4 : 2)
        let burst = max(1, rate)
        if let pi = source.peerIndex {
            return forward ? peers[key: pi].forward.take(now: now, rate: rate, burst: burst)
                           : peers[key: pi].share.take(now: now, rate: rate, burst: burst)
        }
        return forward ? strangerForward.take(now: now, rate: rate, burst: burst)
                       : strangerShare.take(now: now, rate: rate, burst: burst)
    }

    /// De-duplication and admission of a relayed message's id (DATA and ROUTED alike): true if
    /// `id` is new and now recorded in the seen cache; otherwise counted (duplicate, over the
    /// source's share, seen cache full) and false.
    @inline(__always)
    mutating func recordNew(_ id: MessageID, source: Source, now: UInt64) -> Bool {
        if seenHold == 0 {
            guard seen.insert(id, now: now) else {
                stats.duplicates &+= 1
                return false
            }
            return true
        }
        // Admission (docs/PROTOCOL.md §5): a new id takes one from its source's share, and
        // is recorded only if that evicts no id younger than the hold.
        seen.expire(now: now)
        if seen.has(id) { stats.duplicates &+= 1; return false }
        guard takeShare(source, forward: false, now: now) else {
            stats.overShare &+= 1
            // Over its share of new ids: held against a neighbour on its own connection.
            if case .bound(let pi) = source {
                peers[key: pi].noteBad(.overShare)
                if peers[key: pi].good > 0 { peers[key: pi].good -= 1 }
            }
            return false
        }
        guard seen.insert(id, now: now, hold: seenHold) == .inserted else { stats.seenFull &+= 1; return false }
        return true
    }

    /// An admitted DATA frame, still in the receive buffer, whose envelope has message id `id`.
    mutating func handleData(_ frame: DataFrameView, id: MessageID, source: Source, now: UInt64, into actions: inout [Action]) {
        let ttl = frame.header.ttl, hops = frame.header.hops, topic = frame.topic
        // A ttl above the maximum is not from a conforming node (each hop lowers it, and a
        // publish starts at most at maxTTL): drop it before it can claim a seen-cache entry.
        guard ttl <= maxTTL else {
            stats.overTTL &+= 1
            stats.malformed &+= 1
            return
        }
        let h = hops == .max ? hops : hops + 1
        if recordNew(id, source: source, now: now) {
            if localTopics.contains(topic) {
                actions.append(.deliver(topic: topic, envelope: Array(frame.envelope), hops: h, id: id))
                stats.delivered &+= 1
                if UInt64(h) > stats.maxHops { stats.maxHops = UInt64(h) }
            }
        } else {
            // A duplicate — unless this node only routed the message (§9): then the flood that
            // took over further on passes on from here (delivered here already, if at all).
            guard routingOn, floodPassesRoutedPath(id, now: now) else { return }
            stats.routedFloods &+= 1
        }
        guard !isLeaf else { return }
        guard ttl > 1 else {
            stats.ttlExpired &+= 1
            return
        }
        let targets = sendTargets(excluding: frame.header.from)
        guard !targets.isEmpty else { return }
        if seenHold != 0 && !takeShare(source, forward: true, now: now) {
            stats.unforwarded &+= 1
            return
        }
        let body = frame.forwarded(ttl: ttl - 1, hops: h, from: nodeID)
        actions.append(.send(targets, OutFrame(topic: topic, body: body)))
        stats.relayed &+= UInt64(targets.count)
        stats.framesOut &+= UInt64(targets.count)
    }

    /// The handshake. See docs/PROTOCOL.md "Handshake".
    mutating func handleHello(
        _ h: Frame.Hello, from: NodeID, now: UInt64,
        rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        defer { if routing != nil { routingHello(h, from: from, now: now, rng: &rng, into: &actions) } }
        if h.leaf {
            known.remove(h.endpoint)
        } else if let i = learn(h.endpoint, node: from, rng: &rng) {
            known[i].blockedNode = 0
        }
        learn(h.peers, now: now, rng: &rng)

        if let pi = peers.index(of: from) {
            peers[pi].endpoint = h.endpoint
            peers[pi].leaf = h.leaf
            peers[pi].views = h.views
            peers[pi].token = h.token
            peers[pi].routing = routing != nil && h.routing
        } else {
            // Peers without a link are bounded (a flood of HELLOs from new ids costs nothing).
            var linkless = 0
            for p in peers where p.link == nil { linkless += 1 }
            if linkless >= Self.maxLinklessPeers { stats.strangersRefused &+= 1; return }
            var p = PeerState(id: from, endpoint: h.endpoint, leaf: h.leaf)
            p.token = h.token
            p.views = h.views
            p.routing = routing != nil && h.routing
            peers.append(p, lastHeard: now)
        }

        // (1) the echo names one of our links: it reaches the sender.
        if h.echo != 0, let li = links.index(raw: h.echo) {
            bind(li, to: from, now: now, rng: &rng, into: &actions)
        } else if let li = links.firstIndex(where: { $0.endpoint == h.endpoint && !isShed($0.id) }) {
            // (2) we have a link to the endpoint it advertises: bound unless it carries another
            // node that is up (a new incarnation there proves itself by echoing, rule 1).
            if mayRebind(li, to: from) { bind(li, to: from, now: now, rng: &rng, into: &actions) }
        } else if let pi = peers.index(of: from), peers[pi].link == nil, dialable(h.endpoint) {
            // (3) dial it back, pre-bound: within the budget for endpoints never verified. With
            // views, a request from a node with views is admitted by the bound (Views).
            // A routing contact link (§9) is outside the active view: not a request to join it.
            let isContact = routing != nil && h.contact && h.routing
            let asks = viewsOn && h.views && !h.leaf && !isContact
            if asks && h.request == .neighbour && activeCount() >= maxDegree {
                return shed(from, hello: h, now: now, rng: &rng, into: &actions)
            }
            if mayDial(h.endpoint, now: now) {
                if asks { makeRoom(keep: from, now: now, rng: &rng, into: &actions) }
                let l = dial(h.endpoint, seed: nil, node: from, request: .accept, now: now, into: &actions)
                if let pi = peers.index(of: from) { peers[pi].link = l }
                if asks && h.request == .join {
                    startWalks(for: Frame.PeerEntry(nodeID: from, endpoint: h.endpoint), rng: &rng, into: &actions)
                }
                // The link back to a routing contact link is one too.
                if isContact, let li = links.index(of: l) { links.setContact(li, true) }
            } else {
                // Not kept: it dials us again after its own dial timeout.
                stats.dialsDeferred &+= 1
                stats.strangersRefused &+= 1
                if let pi = peers.index(of: from), peers[pi].link == nil { peers.remove(at: pi) }
                return
            }
        }

        guard let pi = peers.index(of: from), let l = peers[pi].link, let li = links.index(of: l), links[li].ready else { return }
        if h.echo != l.raw {
            // It has not yet seen our token for this link: answer once.
            sendHello(on: l, echo: h.token, rng: &rng, into: &actions)
        }
        updateUp(from, now: now, into: &actions)
    }

    /// At most this many peers that said HELLO but have no link of ours are kept.
    static var maxLinklessPeers: Int { 256 }

    /// A HELLO from ourselves: one of our links leads back here (e.g. a seed that is an
    /// alias of our own endpoint). Close it and never dial that endpoint again. Only the HELLO we
    /// sent can name such a link: its token is one of our (unpredictable) link ids, of a link that
    /// carries no neighbour, and it advertises our endpoint. Anything else is forged.
    /// Returns false if the HELLO was forged (counted).
    @discardableResult
    mutating func handleSelfHello(_ h: Frame.Hello, now: UInt64,
                                  rng: inout some RandomNumberGenerator, into actions: inout [Action]) -> Bool {
        let ours = Frame.isEncodable(endpoint: config.endpoint) ? config.endpoint : "-"
        guard let li = links.index(raw: h.token), !linkIsUp(li), h.endpoint == ours else {
            stats.forged &+= 1
            return false
        }
        let l = links[li]
        selfEndpoints.insert(l.endpoint)
        if let s = l.seed { seeds[s].disabled = true }
        known.remove(l.endpoint)
        closeLink(l.id, reason: nil, failure: false, now: now, rng: &rng, into: &actions)
        return true
    }

    mutating func handleBye(from: NodeID, now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        guard let pi = peers.index(of: from) else { return }
        let p = peers[pi]
        if !isSeed(p.endpoint), let i = known.find(p.endpoint) {
            known[i].node = from.raw
            known[i].blockedNode = from.raw
        }
        if let l = p.link {
            closeLink(l, reason: .bye, failure: true, now: now, rng: &rng, into: &actions)
        } else {
            peers.remove(at: pi)
        }
    }

    /// Learns a peer list (never ourselves).
    mutating func learn(_ list: [Frame.PeerEntry], now: UInt64, rng: inout some RandomNumberGenerator) {
        for e in list where e.nodeID != nodeID {
            _ = learn(e.endpoint, node: e.nodeID, rng: &rng)
        }
        if routing != nil { for e in list where e.nodeID != nodeID { offerContactLater(e.nodeID.raw, endpoint: e.endpoint, now: now) } }
    }

    /// Learns one endpoint; returns its index in the known table. When the table is full, an
    /// entry that has a link or was verified (once up) is never the one replaced.
    mutating func learn(_ endpoint: String, node: NodeID, rng: inout some RandomNumberGenerator) -> Int? {
        // Already known under this node: nothing changes (a known endpoint passed the checks
        // below, and one found to be our own is removed from the table).
        if let i = known.find(endpoint, node: node.raw) { return i }
        guard node != nodeID, endpoint != config.endpoint, !selfEndpoints.contains(endpoint),
              Frame.isEncodable(endpoint: endpoint) else { return nil }
        let links = self.links
        let i = known.upsert(endpoint, node: node.raw, rng: &rng) { e in e.verified || links.contains { $0.endpoint == e.endpoint } }
        if i == nil { stats.knownRefused &+= 1 }
        return i
    }
}
