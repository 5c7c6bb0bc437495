/// One encoded 2-part ZeroMQ message: part 1 = `topic` (32 bytes), part 2 = `body`.
public struct OutFrame: Sendable {
    public var topic: Topic
    public var body: [UInt8]
    public init(topic: Topic, body: [UInt8]) { self.topic = topic; self.body = body }
}

/// Why a neighbour went down.
public enum PeerDownReason: Sendable, Hashable {
    /// No frame from it for `deadAfter`.
    case timeout
    /// It said BYE.
    case bye
    /// A new incarnation (new `NodeID`) now answers at its endpoint / on its link.
    case replaced
    /// This engine stopped.
    case closed
    /// Its driver no longer admits it (a closed overlay's allow-list dropped its key).
    case removed
    /// It left our active view, or we left its (bounded views: a DISCONNECT, sent or received).
    case disconnected
    /// Its frames were mostly bad (forged, malformed, over its rate limit or admission share):
    /// disconnected, and its connection ignored for `penaltyTime` (`EngineStats.penalized`).
    case misbehaving
}

/// A neighbour that completed the handshake.
public struct Neighbour: Sendable, Hashable {
    public var nodeID: NodeID
    /// The endpoint it advertised in its HELLO.
    public var endpoint: String
    public var leaf: Bool
    /// Our outbound link to it.
    public var link: LinkID
    /// When it came up (engine time).
    public var since: UInt64
    public init(nodeID: NodeID, endpoint: String, leaf: Bool, link: LinkID, since: UInt64) {
        self.nodeID = nodeID; self.endpoint = endpoint; self.leaf = leaf; self.link = link; self.since = since
    }
}

/// What the engine asks its driver to do. Emitted in order; the driver must perform them in order.
public enum Action: Sendable {
    /// Open an outbound XPUB link that connects to `endpoint`. Report `linkReady` when the
    /// remote SUB's subscription arrives (again after each reconnection).
    case connect(LinkID, endpoint: String)
    /// Close the link.
    case disconnect(LinkID)
    /// Send the same frame on each of these links (encode once).
    case send([LinkID], OutFrame)
    /// A first-seen DATA frame addressed to a local topic.
    case deliver(topic: Topic, envelope: [UInt8], hops: UInt8, id: MessageID)
    /// Apply this prefix subscription on the bound SUB ([] = everything).
    case subscribe([UInt8])
    case unsubscribe([UInt8])
    case peerUp(Neighbour)
    case peerDown(Neighbour, reason: PeerDownReason)
}

/// Counters. All monotonically increasing.
public struct EngineStats: Sendable, Hashable {
    /// Messages published locally (accepted).
    public var published: UInt64 = 0
    /// `.deliver` actions emitted (local publishes to a local topic included).
    public var delivered: UInt64 = 0
    /// DATA frames sent onward for other nodes, counting each link.
    public var relayed: UInt64 = 0
    /// DATA frames whose id was already in the seen cache.
    public var duplicates: UInt64 = 0
    /// DATA frames that were not forwarded because their ttl ran out here.
    public var ttlExpired: UInt64 = 0
    /// Inbound DATA frames whose ttl exceeded `maxTTL`: dropped (and counted in `malformed` too).
    public var overTTL: UInt64 = 0
    /// Inbound frames that failed to decode or carried a ttl above `maxTTL`, plus refused
    /// publishes (zero topic, empty or oversized envelope).
    public var malformed: UInt64 = 0
    /// Inbound frames (decoded or not), counting each entry of a BATCH.
    public var framesIn: UInt64 = 0
    /// Inbound BATCH messages (their entries are in `framesIn`; a malformed one counts in
    /// `malformed` once).
    public var batchesIn: UInt64 = 0
    /// Frames sent, counting each link.
    public var framesOut: UInt64 = 0
    /// Largest hop count delivered.
    public var maxHops: UInt64 = 0
    /// Inbound frames dropped because their sender exceeded `rateLimit`.
    public var rateLimited: UInt64 = 0
    /// Inbound frames dropped because they claimed to come from a node other than the one
    /// bound to their connection (or from this node): impersonation attempts.
    public var forged: UInt64 = 0
    /// New DATA ids dropped because their source had used its share of `newIDRate`.
    public var overShare: UInt64 = 0
    /// New DATA ids admitted (recorded, delivered) but not forwarded, because their source had
    /// used its forwarding share.
    public var unforwarded: UInt64 = 0
    /// New ids (inbound or published) refused because the seen cache was full of ids younger
    /// than `seenHold`.
    public var seenFull: UInt64 = 0
    /// Dials to never-verified endpoints not made (yet) because `maxPendingDials` were in flight
    /// or the dial rate was used up.
    public var dialsDeferred: UInt64 = 0
    /// Endpoints not learned because the known table was full of entries it keeps (linked or
    /// verified).
    public var knownRefused: UInt64 = 0
    /// Neighbours disconnected for misbehaviour (`.misbehaving`), and frames ignored from their
    /// connections during the penalty.
    public var penalized: UInt64 = 0
    /// HELLOs from new nodes not taken in: too many peers without a link already, or the
    /// dial back was deferred.
    public var strangersRefused: UInt64 = 0
    public var penaltyDrops: UInt64 = 0
    /// Views: neighbours this node evicted to make room (DISCONNECT sent on their link).
    public var evicted: UInt64 = 0
    /// Views: inbound requests refused because the active view was full (DISCONNECT, or silence
    /// when the dial budget did not allow the answer).
    public var shed: UInt64 = 0
    /// Views: DISCONNECTs taken (this node was evicted or refused).
    public var disconnectsReceived: UInt64 = 0
    /// Views: FORWARD_JOIN frames sent (walks started or continued).
    public var forwardJoins: UInt64 = 0
    /// Views: dials to endpoints that failed before (`reconnectInterval`) and seed rejoins.
    public var reconnects: UInt64 = 0
    /// Routing (docs/PROTOCOL.md §9): ROUTED frames sent (published or forwarded, one link each).
    public var routed: UInt64 = 0
    /// Routed messages that fell back to the flood here (no record, no closer contact, a stale
    /// record, a key with several subscribers, a route at its hop limit, a ROUTED frame the
    /// driver could not send).
    public var routeFallbacks: UInt64 = 0
    /// ROUTED frames of this node the driver could not send (the next hop's queue was full, its
    /// link gone): each was flooded from here instead (and counted in `routeFallbacks`).
    public var routeRefused: UInt64 = 0
    /// Floods of a message this node had only routed, passed on here instead of dropped as
    /// duplicates (the nodes of a route do not stop the flood that takes over from it).
    public var routedFloods: UInt64 = 0
    /// ROUTED copies of a message this node had only routed, come back to it along their own
    /// route (the target changed on the way): each was flooded from here instead of dropped (and
    /// counted in `routeFallbacks`).
    public var routedLoops: UInt64 = 0
    /// Contact links dialled (`dialContact`; each dial, whether it comes up or not).
    public var contactDials: UInt64 = 0
    /// `routeFallbacks` by cause, beside `routeRefused` and `routedLoops`: a route toward a key's
    /// point that ended here (no closer routing peer) with no record of the key; a route toward a
    /// node with no closer routing peer (the subscriber out of reach); a record that named this
    /// node, which no longer subscribes the key; a key with several subscribers (a group); a
    /// route at its hop limit. With `routeRefused` and `routedLoops` they add up to
    /// `routeFallbacks`.
    public var fallbackNoRecord: UInt64 = 0
    public var fallbackNoCloserHop: UInt64 = 0
    public var fallbackStaleRecord: UInt64 = 0
    public var fallbackGroup: UInt64 = 0
    public var fallbackHopLimit: UInt64 = 0
    /// Publishes to a key this node does not subscribe that found no next hop (flooded from the
    /// publisher; not in `routeFallbacks`).
    public var publishesNotRouted: UInt64 = 0
    /// STORE frames received and NODES frames received.
    public var storesIn: UInt64 = 0
    public var nodesIn: UInt64 = 0
    public init() {}
}
