// LAN discovery: a beacon's endpoint is an input like a peer-list entry (docs/PROTOCOL.md §8).

extension GossipEngine.Core {
    /// `GossipEngine.discovered`: a beacon's endpoint, learned like a peer-list entry.
    mutating func discovered(
        endpoint: String, node: NodeID, now: UInt64,
        rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        guard active, node.raw != 0, node != nodeID else { return }
        guard learn(endpoint, node: node, rng: &rng) != nil else { return }
        fillDegree(now: now, rng: &rng, into: &actions)
    }
}
