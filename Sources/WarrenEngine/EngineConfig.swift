/// Configuration of one gossip engine. Times are nanoseconds.
public struct EngineConfig: Sendable {
    /// Advertised listen endpoint (the bound SUB), e.g. "tcp://127.0.0.1:7001".
    public var endpoint: String
    /// Where this node joins (JOIN) and rejoins: dialled at start, and again (with back-off)
    /// whenever the active view is below `targetDegree` and the passive view cannot fill it.
    /// With `views` off (and on a leaf), seeds are always kept connected (re-dialled forever).
    public var seeds: [String]
    /// Dial random known endpoints beyond the seeds until #up non-leaf neighbours + #pending
    /// dials ≥ this. 0 = only seeds and inbound.
    public var targetDegree: Int
    /// Upper bound of a DATA frame's ttl, the same on every node of an overlay. A publish asking
    /// for more is clamped to it; an inbound frame with more is dropped (`overTTL`, `malformed`).
    public var maxTTL: UInt8
    /// ttl of published messages when the caller does not ask for one.
    public var defaultTTL: UInt8
    /// A HEARTBEAT is sent on every ready link each interval.
    public var heartbeatInterval: UInt64
    /// A neighbour with no frame for this long is dead.
    public var deadAfter: UInt64
    /// A link that is not up (ready, bound, HELLO received) this long after the dial is dropped.
    public var dialTimeout: UInt64
    /// Reconnect back-off: initial delay, doubled each failure up to `backoffMax`, ±25 % jitter.
    public var backoffInitial: UInt64
    public var backoffMax: UInt64
    /// Time between PEERS frames.
    public var peerExchangeInterval: UInt64
    /// Bound of the de-duplication cache (entries).
    public var seenCapacity: Int
    /// Time a message id is remembered (unless evicted earlier by `seenCapacity`).
    public var seenWindow: UInt64
    /// An admitted message id is never evicted by the bound before it is this old: a new id
    /// that would need such an eviction is refused (`seenFull`). With it, new ids are admitted
    /// at `newIDRate` in all (docs/PROTOCOL.md §5, "Admission"). It must exceed the time a copy
    /// of a frame can still be travelling through the overlay. 0 turns the hold and the
    /// admission shares off (the bound then evicts the oldest id whatever its age).
    public var seenHold: UInt64 = 6_000_000_000
    /// Leaf mode: receive own topics only, never forward DATA, not counted for degree.
    public var leaf: Bool
    /// Bound of the known-endpoint table.
    public var maxKnownEndpoints: Int
    /// Inbound frames per second accepted from one neighbour (a token bucket per neighbour,
    /// keyed by the connection the frame arrived on, or by its `from` when the driver cannot
    /// tell connections apart; everything else shares one bucket). Excess frames are dropped and
    /// counted in `rateLimited`. 0 = unlimited. It should exceed `newIDRate` (what an honest
    /// relay can forward) plus the control frames, so an honest relay is never limited.
    public var rateLimit: Double
    /// Bucket size: how many frames a neighbour may send in a burst above the rate.
    public var rateBurst: Double
    /// At most this many links to endpoints that have never been up (not seeds) are being
    /// dialled at a time; more wait (`dialsDeferred`).
    public var maxPendingDials: Int = 16
    /// Dials to endpoints that have never been up, per second (a token bucket), and its burst.
    public var dialRate: Double = 10
    public var dialBurst: Double = 16
    /// A neighbour whose bad frames (forged, malformed on its connection, over its rate limit or
    /// its share of new ids) reach this many within one `scoreInterval`, and outnumber its good
    /// frames, is disconnected (`.misbehaving`) and its connection ignored for `penaltyTime`.
    public var penaltyThreshold: UInt32 = 1_000
    public var scoreInterval: UInt64 = 1_000_000_000
    public var penaltyTime: UInt64 = 60_000_000_000
    /// Bounded views (HyParView, docs/PROTOCOL.md §6 "Views"): the active view (up non-leaf
    /// neighbours and links not yet up) is filled to `targetDegree` and never grows past
    /// `maxDegree`; inbound beyond it is refused (DISCONNECT) or makes room by evicting a random
    /// neighbour (a JOIN, or a node whose active view is empty); joins walk FORWARD_JOINs.
    /// Advertised in HELLO (flags bit 1); with a neighbour that does not advertise it, the rules
    /// before views apply to that neighbour. Off: the old rules (seeds kept forever, every inbound
    /// accepted) and no new frames (an engine with it off treats them as malformed, like an
    /// engine built before them). Leaves never use views.
    public var views: Bool = true
    /// The active view's hard bound; 0 = `targetDegree` + 2.
    public var maxDegree: Int = 0
    /// Length of a FORWARD_JOIN walk (HyParView's ARWL), and the step at which a walker records
    /// the newcomer in its passive view (the known table; PRWL).
    public var joinWalkLength: UInt8 = 6
    public var passiveWalkLength: UInt8 = 3
    /// Every interval, a node whose active view is below `maxDegree` dials one endpoint that
    /// failed before (a neighbour lost to a timeout, a seed that did not answer): how a partition
    /// heals once it ends. Also how long an endpoint that sent us DISCONNECT is not dialled.
    public var reconnectInterval: UInt64 = 5_000_000_000

    /// `maxDegree`, or its default.
    public var effectiveMaxDegree: Int { maxDegree > 0 ? max(maxDegree, targetDegree) : targetDegree + 2 }
    /// Unicast routing (docs/PROTOCOL.md §9): a location service on the overlay (XOR routing on
    /// node ids, location records at the nodes closest to a key's hash) and routed DATA frames
    /// that travel a path instead of the whole overlay, with the flood as the fallback. Off:
    /// today's flooding, bit for bit (no routing frame is sent, HELLO flag bit 2 stays 0).
    public var routing: Bool = false
    /// The routing layer's parameters (used only with `routing`).
    public var routingParameters = RoutingParameters()

    /// New message ids per second the seen cache holds for `seenHold`, derived from it:
    /// `seenCapacity / (2 × seenHold)` (0 = unlimited, when `seenHold` is 0). Each source (every
    /// peer, and one for everything else) may have half of it admitted and a quarter of it
    /// forwarded, each with a burst of one second's worth, so one flooding neighbour cannot
    /// crowd the others out, and what a relay forwards from it stays well inside what the
    /// relay's own neighbours admit from the relay (docs/PROTOCOL.md §5, "Admission").
    public var newIDRate: Double {
        seenHold == 0 ? 0 : Double(seenCapacity) * 1e9 / (2 * Double(seenHold))
    }

    public init(
        endpoint: String, seeds: [String] = [], targetDegree: Int = 3,
        maxTTL: UInt8 = 16, defaultTTL: UInt8 = 16,
        heartbeatInterval: UInt64 = 250_000_000, deadAfter: UInt64 = 1_500_000_000,
        dialTimeout: UInt64 = 2_000_000_000, backoffInitial: UInt64 = 100_000_000,
        backoffMax: UInt64 = 2_000_000_000, peerExchangeInterval: UInt64 = 1_000_000_000,
        seenCapacity: Int = 524_288, seenWindow: UInt64 = 120_000_000_000,
        leaf: Bool = false, maxKnownEndpoints: Int = 1024,
        rateLimit: Double = 200_000, rateBurst: Double = 400_000
    ) {
        self.endpoint = endpoint; self.seeds = seeds; self.targetDegree = targetDegree
        self.maxTTL = maxTTL; self.defaultTTL = defaultTTL
        self.heartbeatInterval = heartbeatInterval; self.deadAfter = deadAfter
        self.dialTimeout = dialTimeout; self.backoffInitial = backoffInitial
        self.backoffMax = backoffMax; self.peerExchangeInterval = peerExchangeInterval
        self.seenCapacity = seenCapacity; self.seenWindow = seenWindow
        self.leaf = leaf; self.maxKnownEndpoints = maxKnownEndpoints
        self.rateLimit = rateLimit; self.rateBurst = rateBurst
    }

    /// One machine (loopback): heartbeat 250 ms, dead after 1.5 s, dial timeout 2 s,
    /// back-off 100 ms … 2 s, peer exchange 1 s, degree 3 (views, at most 5), reconnect 5 s, TTL 16/16,
    /// seen 524,288 / 120 s, hold 6 s,
    /// rate limit 200,000 frames/s per neighbour, burst 400,000.
    public static func local(endpoint: String, seeds: [String]) -> EngineConfig {
        EngineConfig(endpoint: endpoint, seeds: seeds)
    }

    /// LAN: heartbeat 1 s, dead after 5 s, dial timeout 5 s, back-off 500 ms … 30 s,
    /// peer exchange 5 s, degree 4 (views, at most 6), reconnect 10 s, TTL 16/16, seen 524,288 / 120 s, hold 6 s,
    /// rate limit 200,000 frames/s per neighbour, burst 400,000.
    public static func lan(endpoint: String, seeds: [String]) -> EngineConfig {
        EngineConfig(
            endpoint: endpoint, seeds: seeds, targetDegree: 4,
            heartbeatInterval: 1_000_000_000, deadAfter: 5_000_000_000, dialTimeout: 5_000_000_000,
            backoffInitial: 500_000_000, backoffMax: 30_000_000_000, peerExchangeInterval: 5_000_000_000)
        .with { $0.reconnectInterval = 10_000_000_000 }
    }

    func with(_ change: (inout EngineConfig) -> Void) -> EngineConfig {
        var c = self
        change(&c)
        return c
    }
}


/// Parameters of unicast routing (docs/PROTOCOL.md §9). Times are nanoseconds.
public struct RoutingParameters: Sendable, Hashable {
    /// Contacts kept per XOR distance bucket (Kademlia's k).
    public var bucketSize: Int = 2
    /// The XOR-closest nodes kept beside the buckets.
    public var closest: Int = 4
    /// Location records are stored at this many nodes closest to the key's hash (r).
    public var replicas: Int = 3
    /// A subscriber stores its records again after 1, 2, 4 … s, then every `recordRefresh`;
    /// a record expires `3 × recordRefresh` after it was stored.
    public var recordRefresh: UInt64 = 30_000_000_000
    /// At most this many keys' records held; the soonest to expire makes room.
    public var maxRecords: Int = 4_096
    /// Contact links being dialled at a time.
    public var maxPendingContacts: Int = 16
    /// A contact dropped after three dials that did not come up is not taken back (from NODES,
    /// STORE, peer lists, records) for this long.
    public var contactHoldDown: UInt64 = 30_000_000_000
    /// Subscribers of held records that get a contact link of their own (the last hop of a
    /// routed frame is then one hop).
    public var maxPinned: Int = 32
    /// A routing contact is a next hop only if some frame of it arrived within this time
    /// (0: twice the heartbeat interval).
    public var freshness: UInt64 = 0
    public init() {}
}
