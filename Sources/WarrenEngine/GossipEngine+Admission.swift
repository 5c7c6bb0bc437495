// Admission changes decided by the driver (a closed overlay's allow-list, reloaded).

extension GossipEngine.Core {
    /// `GossipEngine.closeLinks(where:)`: links to refused endpoints closed (`.removed`, no
    /// back-off), the endpoints forgotten.
    mutating func closeLinks(
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
