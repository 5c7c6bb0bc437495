// Admission changes decided by the driver (a closed overlay's allow-list, reloaded).

extension GossipEngine {
    /// Closes every link whose endpoint `refused` rejects and forgets those endpoints; a
    /// neighbour on such a link goes down with `.removed`. The endpoints are not backed off:
    /// the driver refuses to dial them while they stay refused.
    public mutating func closeLinks(
        where refused: (String) -> Bool, now: UInt64,
        rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        for l in links.map({ $0 }) where refused(l.endpoint) {
            closeLink(l.id, reason: .removed, failure: false, now: now, rng: &rng, into: &actions)
        }
        for p in peers where refused(p.endpoint) {
            if let l = p.link { closeLink(l, reason: .removed, failure: false, now: now, rng: &rng, into: &actions) }
        }
        for e in known.entries.map(\.endpoint) where refused(e) { known.remove(e) }
    }
}

/// A node the engine knows of, for a member listing.
public struct KnownNode: Sendable, Hashable {
    /// The endpoint it advertised (or was given as a seed).
    public var endpoint: String
    /// Its node id, when one was heard (HELLO or PEERS).
    public var nodeID: NodeID?
    /// Dials that failed in a row.
    public var failures: UInt32
    /// It said BYE (and has not come back as a new incarnation).
    public var gone: Bool
}

extension GossipEngine {
    /// Every known (non-leaf) endpoint, as the peer table and peer exchange learned them.
    public var knownNodes: [KnownNode] {
        known.entries.map {
            KnownNode(endpoint: $0.endpoint, nodeID: $0.node == 0 ? nil : NodeID(raw: $0.node),
                      failures: $0.failures, gone: $0.blocked)
        }
    }

    /// When a frame from neighbour `id` last arrived (engine time), if it is one.
    public func lastHeard(_ id: NodeID) -> UInt64? {
        peers.index(of: id).map { peers[key: $0].lastHeard }
    }
}
