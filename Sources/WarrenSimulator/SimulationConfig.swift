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

    // Faults at one moment of the stream (docs/SIMULATION.md, "Faults"); one at a time.

    /// Fraction of the nodes (chosen by the seed) killed at once at `faultAt` of the stream: no
    /// BYE, never replaced (churn then replaces only live nodes). 0: no kill.
    public var killFraction: Double = 0
    /// A cut between two halves of the overlay (chosen by the seed; every frame between them is
    /// lost) from `faultAt` of the stream for this long; then it heals. 0: no partition.
    public var partitionDuration: UInt64 = 0
    /// Where in the stream the kill or the partition begins, as a fraction of the stream: before
    /// message ⌊messages × faultAt⌋ is published.
    public var faultAt: Double = 1.0 / 3
    /// Width of the buckets of `SimulationReport.timeline` (messages by publish time).
    public var timelineBucket: UInt64 = 5_000_000_000

    public enum Preset: String, Sendable, Hashable, CaseIterable { case lan, local }

    public init() {}

    /// Virtual time from the first message of the stream to the last one's publish + one interval.
    public var streamDuration: UInt64 { UInt64(messages) &* messageInterval }

    /// The kill or the partition.
    public var hasFault: Bool { killFraction > 0 || partitionDuration > 0 }

    /// The message before which the fault begins.
    public var faultMessage: Int { min(messages, Int(Double(messages) * faultAt)) }

    /// Nodes the kill kills.
    public var killCount: Int { Int((Double(nodes) * killFraction).rounded()) }

    /// What is wrong with the fault options (kill, partition, fault point), in words that name
    /// the command's options; nil if nothing.
    public var faultProblem: String? {
        guard killFraction.isFinite, killFraction >= 0, killFraction < 1 else {
            return "--kill must be at least 0 and below 1 (the fraction of the nodes killed at once)"
        }
        guard faultAt.isFinite, faultAt > 0, faultAt < 1 else {
            return "--fault-at must be above 0 and below 1 (the fraction of the stream before the fault)"
        }
        guard hasFault else { return nil }
        if killFraction > 0 && partitionDuration > 0 {
            return "--kill and --partition are one fault each: give one of them (the time to recover is measured from one fault)"
        }
        guard messages > 0, nodes >= 2 else {
            return "--kill and --partition happen during the stream: they need --messages > 0 and --nodes ≥ 2"
        }
        if killFraction > 0 {
            if killCount < 1 { return "--kill \(killFraction) of \(nodes) nodes kills no node" }
            if nodes - killCount < 2 { return "--kill \(killFraction) of \(nodes) nodes leaves fewer than 2 nodes for the stream" }
        }
        if partitionDuration > 0 {
            let start = UInt64(faultMessage) &* messageInterval
            if start &+ partitionDuration >= streamDuration {
                let s = Double(streamDuration) / 1e9, p = Double(partitionDuration) / 1e9
                return "--partition \(p) s from message \(faultMessage) does not end before the stream does (\(messages) messages × \(Double(messageInterval) / 1e6) ms = \(s) s): give more --messages or a larger --interval-ms"
            }
        }
        return nil
    }

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
