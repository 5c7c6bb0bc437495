// Bounded views (HyParView, docs/PROTOCOL.md §6 "Views"): the active view and its bound, refusing
// and evicting (DISCONNECT), JOIN walks (FORWARD_JOIN), rejoining through seeds, and the periodic
// reconnect that heals a partition.

/// A link dialled only to refuse a request: once ready it carries one DISCONNECT echoing `echo`
/// (the requester's token), then it is closed.
struct Shed: Sendable {
    var link: LinkID
    var echo: UInt64
}

extension GossipEngine.Core {
    /// Views are on for this engine: configured, not a leaf, and a degree to keep (with
    /// `targetDegree` 0 the topology is explicit: only seeds and inbound, the rules before views).
    var viewsOn: Bool { config.views && !isLeaf && config.targetDegree > 0 }

    var maxDegree: Int { config.effectiveMaxDegree }

    func isShed(_ l: LinkID) -> Bool { !sheds.isEmpty && sheds.contains { $0.link == l } }

    /// The active view's size: links that carry an up non-leaf neighbour, and links not up yet
    /// (except those dialled only to refuse, and those dialled back to a leaf).
    func activeCount() -> Int {
        var n = 0
        // Routing contact links (§9) are outside the view.
        for i in links.indices where !links[i].contact {
            let node = links[i].node
            let pi = node.flatMap { peers.index(of: $0) }
            if let pi, peers[pi].leaf { continue }
            if linkIsUp(i) { n += 1; continue }
            if !isShed(links[i].id) { n += 1 }
        }
        return n
    }

    /// Indices of the up non-leaf neighbours with views, except `excluding`.
    func viewPeers(excluding: NodeID?, _ other: NodeID? = nil) -> [Int] {
        var out: [Int] = []
        for pi in peers.indices {
            let p = peers[pi]
            guard p.up, !p.leaf, p.views, let l = p.link, p.id != excluding, p.id != other else { continue }
            if let li = links.index(of: l), links[li].contact { continue }
            out.append(pi)
        }
        return out
    }

    /// Makes room for one more in the active view: while it is at its bound, a random up
    /// neighbour with views (never `keep`) is evicted (DISCONNECT on its link). Neighbours without
    /// views are never evicted: with only those, the view may stay above the bound.
    mutating func makeRoom(keep: NodeID?, now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        while activeCount() >= maxDegree {
            let candidates = viewPeers(excluding: keep)
            if !candidates.isEmpty {
                let pi = candidates[Int(rng.next(upperBound: UInt64(candidates.count)))]
                evict(pi, now: now, rng: &rng, into: &actions)
                continue
            }
            // Every slot is a handshake still under way (many requests at once): one of them
            // gives way, so the bound holds even then.
            guard cancelPending(keep: keep, now: now, rng: &rng, into: &actions) else { return }
        }
    }

    /// Gives up one link of the active view that is not up yet (never a seed's, never one bound
    /// to `keep`): a dial back to a node with views we had taken becomes a refusal (DISCONNECT
    /// once ready); a dial of our own is closed. False if there is none.
    mutating func cancelPending(keep: NodeID?, now: UInt64, rng: inout some RandomNumberGenerator,
                                into actions: inout [Action]) -> Bool {
        var choices: [Int] = []
        for i in links.indices where !linkIsUp(i) && links[i].seed == nil && !links[i].contact && !isShed(links[i].id) {
            if let n = links[i].node {
                guard n != keep, let pi = peers.index(of: n), !peers[pi].leaf, peers[pi].views else { continue }
            }
            choices.append(i)
        }
        guard !choices.isEmpty else { return false }
        let li = choices[Int(rng.next(upperBound: UInt64(choices.count)))]
        let l = links[li].id
        if let n = links[li].node, let pi = peers.index(of: n) {
            stats.shed &+= 1
            sheds.append(Shed(link: l, echo: peers[pi].token))
            links.bind(li, to: nil)
            peers.remove(at: pi)
            if links[li].ready {
                // Ready but not up (its HELLO not yet answered): refuse now.
                actions.append(.send([l], Frame(kind: .disconnect(echo: sheds[sheds.count - 1].echo), from: nodeID).encode()))
                stats.framesOut &+= 1
                closeLink(l, reason: nil, failure: false, now: now, rng: &rng, into: &actions)
            }
        } else {
            closeLink(l, reason: nil, failure: false, now: now, rng: &rng, into: &actions)
        }
        return true
    }

    /// DISCONNECT to peer `pi` on its link, which is closed; its endpoint is not dialled for
    /// `reconnectInterval` (it stays known: the passive view).
    mutating func evict(_ pi: Int, now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        let p = peers[pi]
        guard let l = p.link else { return }
        actions.append(.send([l], Frame(kind: .disconnect(echo: p.token), from: nodeID).encode()))
        stats.framesOut &+= 1
        stats.evicted &+= 1
        hold(p.endpoint, now: now)
        if let li = links.index(of: l) { hold(links[li].endpoint, now: now) }
        closeLink(l, reason: .disconnected, failure: false, now: now, rng: &rng, into: &actions)
    }

    /// `endpoint` is not dialled (by the degree rule, a reconnect or a rejoin) before
    /// `reconnectInterval` from now.
    mutating func hold(_ endpoint: String, now: UInt64) {
        let until = satAdd(now, config.reconnectInterval)
        if let i = known.find(endpoint) { known[i].retryAt = max(known[i].retryAt, until) }
        for s in seeds.indices where seeds[s].endpoint == endpoint { seeds[s].retryAt = max(seeds[s].retryAt, until) }
    }

    /// Refuses the request in HELLO `h` from `from` (a low-priority NEIGHBOR while the active view
    /// is full): a link dialled only to carry a DISCONNECT echoing its token. Without dial budget
    /// (or with 64 such links open) the refusal is silent: the requester's dial times out.
    mutating func shed(_ from: NodeID, hello h: Frame.Hello, now: UInt64,
                       rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        stats.shed &+= 1
        if let pi = peers.index(of: from), peers[pi].link == nil { peers.remove(at: pi) }
        guard sheds.count < 64, mayDial(h.endpoint, now: now) else { return }
        let l = dial(h.endpoint, seed: nil, node: nil, now: now, into: &actions)
        sheds.append(Shed(link: l, echo: h.token))
    }

    /// A JOIN was taken: FORWARD_JOIN walks of `joinWalkLength` for the newcomer, on at most
    /// `targetDegree − 1` random neighbours with views, so that its other neighbours are spread
    /// over the overlay.
    mutating func startWalks(for node: Frame.PeerEntry, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        guard Frame.isEncodable(endpoint: node.endpoint), config.joinWalkLength > 0 else { return }
        var candidates = viewPeers(excluding: node.nodeID)
        var targets: [LinkID] = []
        while !candidates.isEmpty && targets.count < max(0, config.targetDegree - 1) {
            let k = Int(rng.next(upperBound: UInt64(candidates.count)))
            if let l = peers[candidates[k]].link { targets.append(l) }
            candidates.remove(at: k)
        }
        guard !targets.isEmpty else { return }
        actions.append(.send(targets, Frame(kind: .forwardJoin(ttl: config.joinWalkLength, node: node), from: nodeID).encode()))
        stats.framesOut &+= UInt64(targets.count)
        stats.forwardJoins &+= UInt64(targets.count)
    }

    /// FORWARD_JOIN from neighbour `from` for newcomer `node`. The walk ends here when its ttl is
    /// spent or we have no other neighbour with views: we take the newcomer (making room) and dial
    /// it (HELLO request `accept`). Else it goes on to a random other neighbour with views, and at
    /// the `passiveWalkLength` step the newcomer is learned (passive view). A newcomer we already
    /// have a link to ends the walk.
    mutating func handleForwardJoin(ttl: UInt8, node: Frame.PeerEntry, from: NodeID, now: UInt64,
                                    rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        guard node.nodeID != nodeID, dialable(node.endpoint) else { return }
        if let pi = peers.index(of: node.nodeID), peers[pi].link != nil { return }
        if links.contains(where: { $0.endpoint == node.endpoint }) { return }
        let ttl = min(ttl, config.joinWalkLength)
        let others = viewPeers(excluding: from, node.nodeID)
        if ttl == 0 || others.isEmpty {
            _ = learn(node.endpoint, node: node.nodeID, rng: &rng)
            guard mayDial(node.endpoint, now: now) else { stats.dialsDeferred &+= 1; return }
            makeRoom(keep: nil, now: now, rng: &rng, into: &actions)
            _ = dial(node.endpoint, seed: nil, node: nil, request: .accept, now: now, into: &actions)
            return
        }
        if ttl == config.passiveWalkLength { _ = learn(node.endpoint, node: node.nodeID, rng: &rng) }
        let pi = others[Int(rng.next(upperBound: UInt64(others.count)))]
        guard let l = peers[pi].link else { return }
        actions.append(.send([l], Frame(kind: .forwardJoin(ttl: ttl - 1, node: node), from: nodeID).encode()))
        stats.framesOut &+= 1
        stats.forwardJoins &+= 1
    }

    /// DISCONNECT from `from`: it evicted us, or refused our request. Our link to it (the link
    /// bound to it, or — on a connection that does not speak for it — the not-yet-up link whose
    /// id it echoes, which only it can know) is closed, and its endpoint is not dialled for
    /// `reconnectInterval`; the degree rule runs at once. Returns false if it named no link of ours.
    mutating func handleDisconnect(from: NodeID, echo: UInt64, speaks: Bool, now: UInt64,
                                   rng: inout some RandomNumberGenerator, into actions: inout [Action]) -> Bool {
        var target: LinkID? = nil
        if speaks, let pi = peers.index(of: from), let l = peers[pi].link { target = l }
        if target == nil, echo != 0, let li = links.index(raw: echo), !linkIsUp(li),
           links[li].node == nil || links[li].node == from {
            target = links[li].id
        }
        guard let l = target, let li = links.index(of: l) else { return false }
        stats.disconnectsReceived &+= 1
        hold(links[li].endpoint, now: now)
        if let pi = peers.index(of: from) { hold(peers[pi].endpoint, now: now) }
        closeLink(l, reason: .disconnected, failure: false, now: now, rng: &rng, into: &actions)
        if let pi = peers.index(of: from), peers[pi].link == nil { peers.remove(at: pi) }
        // Ask another at once rather than at the next tick.
        fillDegree(now: now, rng: &rng, into: &actions)
        return true
    }

    /// Seed `s` is dialled with a JOIN; the degree rule then waits a moment for the walks.
    mutating func joinSeed(_ s: Int, now: UInt64, into actions: inout [Action]) {
        _ = dial(seeds[s].endpoint, seed: s, node: nil, request: .join, now: now, into: &actions)
        joinGraceUntil = satAdd(now, min(config.dialTimeout, 1_000_000_000))
    }

    /// The active view is below target and no known endpoint can be dialled: JOIN again through a
    /// random seed that is not linked and not in back-off (one seed dial at a time).
    mutating func rejoin(now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        guard !seeds.isEmpty else { return }
        for i in links.indices where links[i].seed != nil && !linkIsUp(i) { return }
        let start = Int(rng.next(upperBound: UInt64(seeds.count)))
        for k in 0..<seeds.count {
            let s = (start + k) % seeds.count
            guard !seedSatisfied(s), now >= seeds[s].retryAt else { continue }
            if let i = known.find(seeds[s].endpoint), now < known[i].penalizedUntil { continue }
            stats.reconnects &+= 1
            joinSeed(s, now: now, into: &actions)
            return
        }
    }

    /// Every `reconnectInterval`: with room in the active view, one endpoint that failed before (a
    /// neighbour lost to a timeout or a dial that did not come up) is dialled, else a seed that
    /// failed. After a partition, the endpoints across it are such endpoints: the halves meet
    /// again without waiting for a view to empty.
    mutating func reconnectOnce(now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        let have = activeCount()
        guard have < maxDegree else { return }
        let n = known.count
        if n > 0 {
            let start = Int(rng.next(upperBound: UInt64(n)))
            for k in 0..<n {
                let i = (start + k) % n
                guard known[i].failures > 0, isCandidate(i, now: now) else { continue }
                let e = known[i].endpoint
                guard mayDial(e, now: now) else { return }
                stats.reconnects &+= 1
                _ = dial(e, seed: nil, node: nil, request: have == 0 ? .urgent : .neighbour, now: now, into: &actions)
                return
            }
        }
        for s in seeds.indices where seeds[s].failures > 0 && !seedSatisfied(s) && now >= seeds[s].retryAt {
            stats.reconnects &+= 1
            joinSeed(s, now: now, into: &actions)
            return
        }
    }
}
