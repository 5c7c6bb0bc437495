// Periodic work: liveness, dial timeouts, heartbeats, peer exchange, seeds, degree.

extension GossipEngine.Core {
    /// `GossipEngine.tick`: everything that is due at `now`; silence is judged at `inputReadUpTo`
    /// (nil: `now`), the time up to which the driver has read its input.
    mutating func tick(now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action],
                       inputReadUpTo: UInt64? = nil) {
        guard active else { return }
        timers.fired()
        seen.expire(now: now)

        // Liveness of neighbours and timeouts of links that did not come up, as of the moment up
        // to which the driver has read: a frame still waiting in its socket cannot have been
        // heard, so a node that fell behind (starved of CPU, busy with a burst of publishes)
        // does not take its own backlog for a neighbour's silence.
        let judged = min(now, inputReadUpTo ?? now)
        for l in links.map(\.id) {
            guard let li = links.index(of: l) else { continue }
            if let pi = upPeer(ofLink: li) {
                let heard = peers[key: pi].lastHeard
                if judged >= heard && judged - heard >= config.deadAfter {
                    closeLink(l, reason: .timeout, failure: true, now: now, rng: &rng, into: &actions)
                }
            } else {
                let since = links[li].since
                if judged >= since && judged - since >= config.dialTimeout {
                    closeLink(l, reason: .timeout, failure: true, now: now, rng: &rng, into: &actions)
                }
            }
        }
        // Peers that said HELLO but have no link (their endpoint is not dialable) are forgotten.
        var k = 0
        while k < peers.count {
            let heard = peers[key: k].lastHeard
            if peers[k].link == nil && judged >= heard && judged - heard >= config.deadAfter { peers.remove(at: k) } else { k += 1 }
        }

        if now >= timers.heartbeat {
            var targets = sendTargets(excluding: nil)
            if routing != nil { targets += readyContactLinks() }
            if !targets.isEmpty {
                actions.append(.send(targets, Frame(kind: .heartbeat, from: nodeID).encode()))
                stats.framesOut &+= UInt64(targets.count)
            }
            timers.heartbeat = nextPeriod(timers.heartbeat, config.heartbeatInterval, now)
        }

        if now >= timers.exchange {
            let targets = links.indices.compactMap { linkIsUp($0) && !links[$0].contact ? links[$0].id : nil }
            if !targets.isEmpty {
                let list = peerList(rng: &rng)
                actions.append(.send(targets, Frame(kind: .peers(list), from: nodeID).encode()))
                stats.framesOut &+= UInt64(targets.count)
            }
            timers.exchange = nextPeriod(timers.exchange, config.peerExchangeInterval, now)
        }

        if now >= timers.score {
            score(now: now, rng: &rng, into: &actions)
            timers.score = nextPeriod(timers.score, config.scoreInterval, now)
        }

        if viewsOn {
            if now >= timers.reconnect {
                reconnectOnce(now: now, rng: &rng, into: &actions)
                timers.reconnect = nextPeriod(timers.reconnect, config.reconnectInterval, now)
            }
        } else {
            // Without views, seeds are kept connected forever.
            for s in seeds.indices where !seedSatisfied(s) && now >= seeds[s].retryAt {
                _ = dial(seeds[s].endpoint, seed: s, node: nil, now: now, into: &actions)
            }
        }

        fillDegree(now: now, rng: &rng, into: &actions)
        if routing != nil { routingTick(now: now, rng: &rng, into: &actions) }
    }

    func nextPeriod(_ at: UInt64, _ interval: UInt64, _ now: UInt64) -> UInt64 {
        let next = satAdd(at, max(interval, 1))
        return next > now ? next : satAdd(now, max(interval, 1))
    }

    /// A seed is satisfied while a link to its endpoint exists, or the node it led to has a link.
    func seedSatisfied(_ s: Int) -> Bool {
        if seeds[s].disabled { return true }
        if links.contains(where: { $0.endpoint == seeds[s].endpoint }) { return true }
        if let n = seeds[s].node, let pi = peers.index(of: n), peers[pi].link != nil { return true }
        return false
    }

    /// Dials random known non-leaf endpoints while #up non-leaf neighbours + #pending links
    /// is below `targetDegree`. With views, the links dialled only to refuse do not count, a
    /// node whose active view is empty asks with high priority, the rule waits while a JOIN's
    /// walks may still bring neighbours, and when no known endpoint can be dialled a seed is
    /// (JOIN: how a node rejoins).
    mutating func fillDegree(now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        guard config.targetDegree > 0 else { return }
        var have = 0
        if viewsOn {
            have = activeCount()
            if have >= config.targetDegree || (have > 0 && now < joinGraceUntil) { return }
        } else {
            guard !known.isEmpty else { return }
            for i in links.indices where !links[i].contact {
                if linkIsUp(i) {
                    if let n = links[i].node, let pi = peers.index(of: n), !peers[pi].leaf { have += 1 }
                } else {
                    have += 1
                }
            }
        }
        while have < config.targetDegree {
            guard let i = pickCandidate(now: now, rng: &rng) else {
                // Routing (§9): every node we know may already be a contact; one becomes a neighbour.
                if routing != nil && promoteContact(rng: &rng, into: &actions) { have += 1; continue }
                if viewsOn { rejoin(now: now, rng: &rng, into: &actions) }
                return
            }
            let e = known[i]
            guard mayDial(e.endpoint, now: now) else { stats.dialsDeferred &+= 1; return }
            let request: Frame.Request = viewsOn && have == 0 ? .urgent : .neighbour
            _ = dial(e.endpoint, seed: nil, node: nil, request: request, now: now, into: &actions)
            have += 1
        }
    }

    func isCandidate(_ i: Int, now: UInt64) -> Bool {
        let e = known[i]
        guard !e.blocked, now >= e.retryAt, e.node != nodeID.raw, dialable(e.endpoint) else { return false }
        if links.contains(where: { $0.endpoint == e.endpoint }) { return false }
        if e.node != 0, let pi = peers.index(of: NodeID(raw: e.node)), peers[pi].link != nil { return false }
        return true
    }

    func pickCandidate(now: UInt64, rng: inout some RandomNumberGenerator) -> Int? {
        let n = known.count
        guard n > 0 else { return nil }
        for _ in 0..<8 {
            let i = Int(rng.next(upperBound: UInt64(n)))
            if isCandidate(i, now: now) { return i }
        }
        let start = Int(rng.next(upperBound: UInt64(n)))
        for k in 0..<n where isCandidate((start + k) % n, now: now) { return (start + k) % n }
        return nil
    }

    /// The sum of the generations the deadline depends on (see `Timers`).
    var deadlineStamp: UInt64 { links.generation &+ peers.generation &+ seeds.generation &+ timers.generation }

    /// The earliest of the timers, the liveness and dial timeouts of the links, the timeouts of
    /// linkless peers and the seeds' retries.
    func computeDeadline() -> UInt64 {
        var d = timers.earliest
        let deadAfter = config.deadAfter, dialTimeout = config.dialTimeout
        for i in links.indices {
            if let pi = upPeer(ofLink: i) {
                d = min(d, satAdd(peers[key: pi].lastHeard, deadAfter))
            } else {
                d = min(d, satAdd(links[i].since, dialTimeout))
            }
        }
        for k in peers.indices where peers[k].link == nil { d = min(d, satAdd(peers[key: k].lastHeard, deadAfter)) }
        // With views, seeds are dialled by the degree rule, which runs on every tick.
        if !viewsOn { for s in seeds.indices where !seedSatisfied(s) { d = min(d, seeds[s].retryAt) } }
        return d
    }
}

// Per-neighbour accounting: a neighbour whose frames are mostly bad is disconnected.

extension GossipEngine.Core {
    /// Ends one `scoreInterval`: every peer whose bad frames (forged, malformed on its
    /// connection, over its rate limit or its share of new ids) reached `penaltyThreshold` and
    /// outnumber its good ones is penalized; then the counts start again. Expired bans are dropped.
    mutating func score(now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        bans.removeAll { $0.until <= now }
        if !strangerBad.isEmpty { strangerBad.removeAll(keepingCapacity: true) }
        var k = 0
        while k < peers.count {
            let bad = peers[key: k].bad, good = peers[key: k].good
            let kinds = peers[key: k].badKinds
            peers[key: k].bad = 0
            peers[key: k].good = 0
            peers[key: k].badKinds = Penalty.Counts()
            if config.penaltyThreshold > 0 && bad >= config.penaltyThreshold && bad > good {
                penalize(at: k, kinds: kinds, good: good, now: now, rng: &rng, into: &actions)
            } else {
                k += 1
            }
        }
    }

    /// Penalizes the peer bound to `conn` at once, within the score interval, as soon as its bad
    /// frames reach the threshold and outnumber its good ones (checked after every message).
    @inline(__always)
    mutating func penalizeIfDue(_ conn: ConnectionID, now: UInt64, rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        guard config.penaltyThreshold > 0 else { return }
        guard let k = peers.index(conn: conn.raw) else {
            // A connection bound to nobody that keeps forging: ignored for the penalty time.
            if let b = strangerBad[conn.raw], b >= config.penaltyThreshold {
                strangerBad[conn.raw] = nil
                stats.penalized &+= 1
                ban(conn.raw, until: satAdd(now, config.penaltyTime))
                var counts = Penalty.Counts()
                counts.forged = b
                record(Penalty(node: nil, endpoint: nil, connection: conn, counts: counts, good: 0, time: now))
            }
            return
        }
        let bad = peers[key: k].bad
        guard bad >= config.penaltyThreshold && bad > peers[key: k].good else { return }
        penalize(at: k, kinds: peers[key: k].badKinds, good: peers[key: k].good, now: now, rng: &rng, into: &actions)
    }

    /// Disconnects peer `k` (`.misbehaving`), ignores its connection for `penaltyTime` and does
    /// not dial its endpoint before then.
    mutating func penalize(at k: Int, kinds: Penalty.Counts, good: UInt32, now: UInt64,
                           rng: inout some RandomNumberGenerator, into actions: inout [Action]) {
        stats.penalized &+= 1
        let p = peers[k]
        record(Penalty(node: p.id, endpoint: p.endpoint, connection: ConnectionID(raw: peers[key: k].conn),
                       counts: kinds, good: good, time: now))
        let until = satAdd(now, config.penaltyTime)
        if peers[key: k].conn != 0 { ban(peers[key: k].conn, until: until) }
        for e in [p.endpoint] + (p.link.flatMap { l in links.index(of: l).map { [links[$0].endpoint] } } ?? []) {
            if let i = known.find(e) {
                known[i].failures &+= 1
                known[i].retryAt = max(known[i].retryAt, until)
                known[i].verified = false
                known[i].penalizedUntil = until
            }
            for s in seeds.indices where seeds[s].endpoint == e {
                seeds[s].failures &+= 1
                seeds[s].retryAt = max(seeds[s].retryAt, until)
            }
        }
        if let l = p.link, links.index(of: l) != nil {
            closeLink(l, reason: .misbehaving, failure: false, now: now, rng: &rng, into: &actions)
        } else {
            peers.remove(at: k)
        }
        if let i = peers.index(of: p.id) { peers.remove(at: i) }
    }

    mutating func record(_ p: Penalty) {
        if recentPenalties.count >= 16 { recentPenalties.removeFirst() }
        recentPenalties.append(p)
    }

    mutating func ban(_ conn: UInt64, until: UInt64) {
        if bans.count >= 256 { bans.removeFirst() }
        bans.append(Ban(conn: conn, until: until))
    }

    /// True while `conn` is ignored (its neighbour was penalized).
    @inline(__always)
    func isBanned(_ conn: ConnectionID, now: UInt64) -> Bool {
        guard !bans.isEmpty else { return false }
        for b in bans where b.conn == conn.raw && now < b.until { return true }
        return false
    }
}
