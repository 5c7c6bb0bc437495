// LAN discovery: a beacon's endpoint is an input like a peer-list entry (docs/PROTOCOL.md §8).

extension GossipEngine {
    /// A node announced itself by a discovery beacon (the driver owns the socket). The endpoint
    /// is learned like a peer-list entry; if this node wants more neighbours, the degree rule
    /// dials one at once. Our own beacons, BYE-blocked and unencodable endpoints are ignored.
    public mutating func discovered(
        endpoint: String, node: NodeID, now: UInt64,
        rng: inout some RandomNumberGenerator, into actions: inout [Action]
    ) {
        guard active, node.raw != 0, node != nodeID else { return }
        guard learn(endpoint, node: node, rng: &rng) != nil else { return }
        fillDegree(now: now, rng: &rng, into: &actions)
    }
}
