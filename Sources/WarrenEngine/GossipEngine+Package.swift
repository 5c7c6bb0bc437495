// The package surface of the engine: what this package's drivers and the simulator
// (WarrenSimulator) may read or set beyond the public API. Everything else about an engine's
// state is private to it (`GossipEngine.core`); each entry here is narrow and changes no
// protocol rule.

extension GossipEngine {
    /// An engine whose link ids (SipHash-2-4 of a counter) are keyed by `linkKey` instead of a
    /// key drawn from the generator at `start`. Only for drivers that run every node themselves
    /// and so face no outsider guessing ids, and that want a node's draws to be the protocol's
    /// alone (the simulator).
    package init(config: EngineConfig, nodeID: NodeID, linkKey: (UInt64, UInt64)) {
        var core = Core(config: config, nodeID: nodeID)
        core.linkKey = linkKey
        core.linkKeyGiven = true
        self.init(core: core)
    }

    /// Outbound links that carry an up neighbour (`up`), and the others: dialling, waiting for
    /// the handshake, or bound to a node that is not up on this link (`pending`).
    package var linkCounts: (up: Int, pending: Int) {
        var up = 0, contacts = 0
        for i in core.links.indices {
            if core.links[i].contact { contacts += 1 } else if core.linkIsUp(i) { up += 1 }
        }
        return (up, core.links.count - contacts - up)
    }

    /// Bytes of engine state counted by element (not by reserved capacity, which on Linux
    /// follows `malloc_usable_size`): the same for the same run, so a simulation's report is
    /// reproducible.
    package var countedStateBytes: Int { core.countedStateBytes() }

    /// Routing contact links (docs/PROTOCOL.md §9): up, and in all (not in `linkCounts`).
    package var contactLinkCounts: (up: Int, all: Int) {
        var up = 0, all = 0
        for i in core.links.indices where core.links[i].contact {
            all += 1
            if core.linkIsUp(i) { up += 1 }
        }
        return (up, all)
    }

    /// The nodes the routing table wants links to (docs/PROTOCOL.md §9, "Contacts").
    package var routingContacts: [NodeID] { core.routing?.table.entries.map { NodeID(raw: $0.id) } ?? [] }

    /// Location records held (keys).
    package var locationRecordCount: Int { core.routing?.records.count ?? 0 }

    /// The neighbour a publish to `topic` would be routed to at `now` (nil: it would be flooded).
    package func routeNextHop(topic: Topic, now: UInt64) -> NodeID? {
        guard let r = core.routing, !core.localTopics.contains(topic) else { return nil }
        var target = topic.routingPoint
        switch r.records.lookup(topic, now: now) {
        case .one(let n) where n == core.nodeID.raw: return nil
        case .one(let n): target = n
        case .many: return nil
        case .none: break
        }
        return core.nextHop(toward: target, excluding: nil, now: now)?.node
    }

    /// For a driver that knows its next input ahead (the simulator, hiding memory latency): the
    /// addresses that receiving a DATA frame with message id `id` reads first — the peer keys'
    /// header and first entries (the lookup's scan), and the seen cache's headers and its bucket for `id`
    /// — so that it can prefetch them. Changes nothing; receiving without it gives the same
    /// result. (`mutating` only so that a caller's array element is used in place, not copied.)
    package mutating func dataReceiveMemory(id: MessageID) -> ReceiveMemory {
        var m = receiveMemory()
        (m.addresses.0, m.addresses.1, m.addresses.2) = core.seen.lookupMemory(id)
        return m
    }

    /// `dataReceiveMemory` for a frame of any type: only the peer keys, which every frame's
    /// sender lookup reads.
    package mutating func receiveMemory() -> ReceiveMemory {
        var m = ReceiveMemory()
        // An array's header (count) sits just before its elements: both are read.
        core.peers.withKeys { b in
            if let p = b.baseAddress { m.keys = UnsafeRawPointer(p) }
        }
        return m
    }

    /// `dataReceiveMemory`'s answer: the peer keys' storage — its header (the count) sits in the
    /// 32 bytes before `keys`, and the lookup reads each key's node id, at `keys + k × keyStride`
    /// — and up to three addresses of the seen cache (nil: none).
    package struct ReceiveMemory {
        package var keys: UnsafeRawPointer?
        package var addresses: (UnsafeRawPointer?, UnsafeRawPointer?, UnsafeRawPointer?) = (nil, nil, nil)
        package static var keyStride: Int { MemoryLayout<PeerKey>.stride }
    }
}
