import WarrenEngine

/// A simulated overlay and workload (`warren simulate`). Times are nanoseconds of virtual time.
public struct SimulationConfig: Sendable, Hashable {
    /// Number of nodes (slots; churn replaces the node of a slot).
    public var nodes: Int = 1_000
    /// `EngineConfig.targetDegree` of every node.
    public var degree: Int = 4
    /// Point-to-point messages (random source → random other destination).
    public var messages: Int = 1_000
    /// Also one community broadcast (every node subscribes one topic), in the middle of the stream.
    public var broadcast: Bool = true
    /// Seed of everything random: topology, latencies, node ids, workload, loss, churn.
    public var seed: UInt64 = 1
    public var latency: LatencyDistribution = .logNormal(median: 1_000_000, sigma: 0.5)
    /// Per-frame loss probability on every link.
    public var loss: Double = 0
    /// Percent of nodes replaced per simulated minute, during the message stream.
    public var churnPercentPerMinute: Double = 0
    /// Time between two messages of the stream.
    public var messageInterval: UInt64 = 20_000_000
    /// Node i starts at i × startSpacing, with 1–2 random earlier nodes as seeds.
    public var startSpacing: UInt64 = 100_000
    /// Formation ends when every node has min(degree, N − 1) neighbours up and no dial pending,
    /// or after this much virtual time.
    public var maxFormationTime: UInt64 = 120_000_000_000
    /// Virtual time after the last message before counting (stragglers arrive).
    public var drainTime: UInt64 = 2_000_000_000
    /// Envelope bytes per message (random, so every message has its own id).
    public var envelopeSize: Int = 200
    /// TTL (default and max) of every engine.
    public var ttl: UInt8 = 16
    /// Seen-cache capacity of each engine (the cache grows on demand up to this).
    public var seenCapacity: Int = 4_096
    /// Engine timers: `lan` (heartbeat 1 s, peer exchange 5 s) or `local` (250 ms, 1 s).
    public var preset: Preset = .lan
    /// Unicast routing on every node (`EngineConfig.routing`, docs/PROTOCOL.md §9).
    public var routing: Bool = false
    /// With routing: virtual time run after formation and before the stream, for the contacts to
    /// settle and the records to be stored (at 1, 2, 4, 8 … s after each subscription).
    public var routingSettle: UInt64 = 10_000_000_000
    /// With routing: the routing layer's parameters of every node.
    public var routingParameters = RoutingParameters()

    /// Bounded views (`EngineConfig.views`); off: the membership rules before them (seeds kept
    /// forever, every inbound accepted).
    public var views: Bool = true

    public enum Preset: String, Sendable, Hashable, CaseIterable { case lan, local }

    public init() {}

    /// The engine configuration of a simulated node.
    public func engineConfig(endpoint: String, seeds: [String]) -> EngineConfig {
        var c = preset == .lan ? EngineConfig.lan(endpoint: endpoint, seeds: seeds)
                               : EngineConfig.local(endpoint: endpoint, seeds: seeds)
        c.targetDegree = degree
        c.views = views
        c.maxTTL = ttl
        c.defaultTTL = ttl
        c.seenCapacity = seenCapacity
        // No hostile neighbour is simulated: the defences against one (the admission hold and
        // shares, the dial budget for unverified endpoints) are off, so what is measured is the
        // protocol's own dynamics.
        c.seenHold = 0
        c.maxPendingDials = .max
        c.dialRate = 0
        c.routing = routing
        c.routingParameters = routingParameters
        return c
    }

    /// A simulated node's endpoint: `tcp://10.a.b.c:7000` for incarnation `h` (realistic size).
    public static func endpoint(_ h: Int) -> String {
        "tcp://10.\((h >> 16) & 255).\((h >> 8) & 255).\(h & 255):\(7000 + (h >> 24))"
    }
}
