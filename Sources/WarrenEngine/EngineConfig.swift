/// Configuration of one gossip engine. Times are nanoseconds.
public struct EngineConfig: Sendable {
    /// Advertised listen endpoint (the bound SUB), e.g. "tcp://127.0.0.1:7001".
    public var endpoint: String
    /// Endpoints that are always kept connected (re-dialled with back-off, forever).
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
    /// Leaf mode: receive own topics only, never forward DATA, not counted for degree.
    public var leaf: Bool
    /// Bound of the known-endpoint table.
    public var maxKnownEndpoints: Int
    /// Inbound frames per second accepted from one neighbour (a token bucket per neighbour,
    /// keyed by the frame's `from`; frames from node ids that are not neighbours share one
    /// bucket). Excess frames are dropped and counted in `rateLimited`. 0 = unlimited.
    public var rateLimit: Double = 200_000
    /// Bucket size: how many frames a neighbour may send in a burst above the rate.
    public var rateBurst: Double = 400_000

    public init(
        endpoint: String, seeds: [String] = [], targetDegree: Int = 3,
        maxTTL: UInt8 = 16, defaultTTL: UInt8 = 16,
        heartbeatInterval: UInt64 = 250_000_000, deadAfter: UInt64 = 1_500_000_000,
        dialTimeout: UInt64 = 2_000_000_000, backoffInitial: UInt64 = 100_000_000,
        backoffMax: UInt64 = 2_000_000_000, peerExchangeInterval: UInt64 = 1_000_000_000,
        seenCapacity: Int = 65_536, seenWindow: UInt64 = 120_000_000_000,
        leaf: Bool = false, maxKnownEndpoints: Int = 1024
    ) {
        self.endpoint = endpoint; self.seeds = seeds; self.targetDegree = targetDegree
        self.maxTTL = maxTTL; self.defaultTTL = defaultTTL
        self.heartbeatInterval = heartbeatInterval; self.deadAfter = deadAfter
        self.dialTimeout = dialTimeout; self.backoffInitial = backoffInitial
        self.backoffMax = backoffMax; self.peerExchangeInterval = peerExchangeInterval
        self.seenCapacity = seenCapacity; self.seenWindow = seenWindow
        self.leaf = leaf; self.maxKnownEndpoints = maxKnownEndpoints
    }

    /// One machine (loopback): heartbeat 250 ms, dead after 1.5 s, dial timeout 2 s,
    /// back-off 100 ms … 2 s, peer exchange 1 s, degree 3, TTL 16/16, seen 65,536 / 120 s.
    public static func local(endpoint: String, seeds: [String]) -> EngineConfig {
        EngineConfig(endpoint: endpoint, seeds: seeds)
    }

    /// LAN: heartbeat 1 s, dead after 5 s, dial timeout 5 s, back-off 500 ms … 30 s,
    /// peer exchange 5 s, degree 4, TTL 16/16, seen 65,536 / 120 s.
    public static func lan(endpoint: String, seeds: [String]) -> EngineConfig {
        EngineConfig(
            endpoint: endpoint, seeds: seeds, targetDegree: 4,
            heartbeatInterval: 1_000_000_000, deadAfter: 5_000_000_000, dialTimeout: 5_000_000_000,
            backoffInitial: 500_000_000, backoffMax: 30_000_000_000, peerExchangeInterval: 5_000_000_000)
    }
}

