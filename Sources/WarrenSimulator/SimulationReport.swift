/// What one simulation measured. Deterministic: the same configuration (seed included) gives an
/// equal report. Times are nanoseconds of virtual time.
public struct SimulationReport: Sendable, Equatable {
    public var config = SimulationConfig()
    /// The overlay formed (every node had min(degree, N − 1) neighbours up) before the stream.
    public var formed = false
    public var formationTime: UInt64 = 0
    /// Stream + drain.
    public var streamTime: UInt64 = 0
    /// Nodes replaced by churn during the stream.
    public var replacements = 0
    /// Events the simulator processed (frames, link-ready, ticks).
    public var events = 0

    // Point-to-point stream.
    public var messages = 0
    /// Messages delivered (first delivery) at a node of the destination slot.
    public var delivered = 0
    public var deliveryRatio = 0.0
    /// Deliveries beyond the first of the same message at the same node (must be 0).
    public var exactlyOnceViolations = 0
    /// Hops at delivery: max (last-delivery hop) and mean.
    public var maxHops = 0
    public var meanHops = 0.0
    /// Relative message redundancy of a point-to-point message, flooded to all N nodes:
    /// DATA link-sends for the message / (N − 1) − 1, averaged over the messages that sent any
    /// (NaN if none did).
    public var rmr = 0.0
    public var latencyP50: UInt64 = 0
    public var latencyP99: UInt64 = 0
    public var latencyMax: UInt64 = 0

    // Community broadcast.
    public var broadcastExpected = 0
    public var broadcastDelivered = 0
    public var broadcastRatio = 0.0
    public var broadcastLastHop = 0
    public var broadcastMeanHops = 0.0
    public var broadcastRMR = 0.0
    public var broadcastLatencyP50: UInt64 = 0
    public var broadcastLatencyP99: UInt64 = 0
    public var broadcastLatencyMax: UInt64 = 0

    // Overlay and cost.
    public var meanDegree = 0.0
    public var maxDegree = 0
    /// `GossipEngine.countedStateBytes` over the nodes alive at the end: arrays counted by their
    /// elements rather than their (malloc-dependent) capacity, so it is reproducible.
    public var stateBytesMean = 0
    public var stateBytesMax = 0
    /// DATA link-sends of the stream's messages; control link-sends during stream + drain.
    public var dataFrames = 0
    public var controlFrames = 0
    /// Frames lost during stream + drain.
    public var framesLost = 0

    // Routing (config.routing; docs/PROTOCOL.md §9).
    /// DATA and ROUTED link-sends of the point-to-point messages / messages delivered.
    public var framesPerUnicast = 0.0
    /// Up routing contact links per node, location records (keys) per node, at the end.
    public var contactLinksMean = 0.0
    public var recordsMean = 0.0
    /// Times a routed message fell back to the flood (over all nodes alive at the end).
    public var routeFallbacks = 0

    // Faults (config.killFraction, config.partitionDuration; docs/SIMULATION.md, "Faults").
    /// Point-to-point messages counted and delivered.
    public struct Tally: Sendable, Equatable {
        public var sent = 0
        public var delivered = 0
        /// delivered / sent (1 if none was sent).
        public var ratio: Double { sent > 0 ? Double(delivered) / Double(sent) : 1 }
        public init() {}
        mutating func add(_ got: Bool) { sent += 1; if got { delivered += 1 } }
    }
    /// Nodes the kill killed.
    public var killed = 0
    /// Point-to-point messages left out of every figure: their recipient was killed before it
    /// got them.
    public var uncounted = 0
    /// When the fault began and ended, from the stream's start (the kill: both its moment).
    public var faultStart: UInt64 = 0
    public var faultEnd: UInt64 = 0
    /// Messages published before the fault, during it (a partition), and from its end on.
    public var before = Tally()
    public var during = Tally()
    public var after = Tally()
    /// Time to recover, delivery: from the fault's end to the publish time of the first message
    /// from which on every counted message of the stream was delivered (0: none published after
    /// the end was lost; nil: the last one was lost).
    public var deliveryRecovery: UInt64?
    /// Time to recover, connectivity: from the fault's end to the first sample (at message times,
    /// at most every 100 ms, and once after the drain) at which the live overlay was one
    /// component; nil: never.
    public var connectivityRecovery: UInt64?
    /// Components of the live overlay right after the kill / just before the partition healed,
    /// the largest one's nodes, and the live nodes.
    public var componentsAtFault = 0
    public var largestAtFault = 0
    public var liveAtFault = 0
    /// Components of the live overlay (live nodes, up gossip links) at the end, the largest
    /// one's nodes, and the live nodes (every run).
    public var components = 0
    public var largestComponent = 0
    public var liveNodes = 0
    /// Counted point-to-point messages by publish time, in buckets of `config.timelineBucket`
    /// from the stream's start.
    public var timeline: [Tally] = []

    public init() {}

    /// A human-readable summary (deterministic; no wall-clock time).
    public var text: String {
        let c = config
        func ms(_ ns: UInt64) -> String { formatFixed(Double(ns) / 1e6, 3) + " ms" }
        var lines: [String] = []
        lines.append("nodes \(c.nodes), degree \(c.degree), messages \(c.messages) + \(c.broadcast ? 1 : 0) broadcast, seed \(c.seed)\(c.views ? "" : ", no views")")
        lines.append("latency \(c.latency), loss \(formatFixed(c.loss * 100, 2)) %, churn \(formatFixed(c.churnPercentPerMinute, 2)) %/min, preset \(c.preset.rawValue), ttl \(c.ttl), seen capacity \(c.seenCapacity)")
        lines.append("formation: \(formed ? "formed" : "NOT formed") after \(ms(formationTime)); degree mean \(formatFixed(meanDegree, 2)), max \(maxDegree)")
        lines.append("stream: \(ms(streamTime)) virtual, \(events) events, \(replacements) nodes replaced")
        lines.append("point-to-point: delivered \(delivered)/\(messages), ratio \(formatFixed(deliveryRatio, 4)), exactly-once violations \(exactlyOnceViolations)")
        lines.append("  hops max \(maxHops), mean \(formatFixed(meanHops, 2)); RMR \(Self.rmrText(rmr)) (flooded: frames / (N − 1) − 1)")
        lines.append("  latency p50 \(ms(latencyP50)), p99 \(ms(latencyP99)), max \(ms(latencyMax))")
        if broadcastExpected > 0 {
            lines.append("broadcast: delivered \(broadcastDelivered)/\(broadcastExpected), ratio \(formatFixed(broadcastRatio, 4)), last-delivery hop \(broadcastLastHop), mean \(formatFixed(broadcastMeanHops, 2)), RMR \(Self.rmrText(broadcastRMR))")
            lines.append("  latency p50 \(ms(broadcastLatencyP50)), p99 \(ms(broadcastLatencyP99)), max \(ms(broadcastLatencyMax))")
        }
        if c.routing {
            lines.append("routing: on, \(ms(c.routingSettle)) settle before the stream; contact links per node \(formatFixed(contactLinksMean, 2)), records per node \(formatFixed(recordsMean, 2))")
            lines.append("  frames per delivered unicast \(formatFixed(framesPerUnicast, 2)), mean hops \(formatFixed(meanHops, 2)), \(routeFallbacks) fallbacks to the flood")
        }
        if c.killFraction > 0 {
            lines.append("fault: kill \(killed) of \(c.nodes) nodes at once at \(ms(faultStart)) of the stream (before message \(c.faultMessage)), for good; \(uncounted) messages to killed nodes not counted")
        } else if c.partitionDuration > 0 {
            lines.append("fault: partition into two halves from \(ms(faultStart)) to \(ms(faultEnd)) of the stream, then healed")
        }
        if c.hasFault {
            func tally(_ t: Tally) -> String { "\(formatFixed(t.ratio, 4)) (\(t.delivered)/\(t.sent))" }
            lines.append("  delivery before \(tally(before))\(c.partitionDuration > 0 ? ", during \(tally(during))" : ""), after \(tally(after))")
            let d = deliveryRecovery.map { "every message delivered from \(ms($0)) after the fault's end on" } ?? "NOT recovered (the last message after the fault was lost)"
            let k = connectivityRecovery.map { "one component \(ms($0)) after it" } ?? "NOT one component by the end"
            lines.append("  recovery: \(d); \(k)")
            lines.append("  components \(c.killFraction > 0 ? "right after the kill" : "just before the heal"): \(componentsAtFault), largest \(largestAtFault) of \(liveAtFault) live nodes")
        }
        lines.append("overlay at the end: \(components) component\(components == 1 ? "" : "s") of the live overlay, largest \(largestComponent) of \(liveNodes) live nodes")
        lines.append("state per node: mean \(stateBytesMean) B, max \(stateBytesMax) B")
        lines.append("frames: \(dataFrames) DATA, \(controlFrames) control during the stream, \(framesLost) lost")
        return lines.joined(separator: "\n")
    }

    public static let csvHeader = "nodes,degree,messages,seed,loss,churn_pct_min,latency,formed,formation_ms,mean_degree,max_degree,"
        + "delivery_ratio,delivered,exactly_once_violations,max_hops,mean_hops,rmr,latency_p50_ms,latency_p99_ms,latency_max_ms,"
        + "bcast_ratio,bcast_last_hop,bcast_mean_hops,bcast_rmr,bcast_latency_max_ms,state_bytes_mean,state_bytes_max,"
        + "data_frames,control_frames,frames_lost,replacements,events,"
        + "views,routing,kill_fraction,partition_s,killed,uncounted,fault_start_ms,fault_end_ms,"
        + "ratio_before,ratio_during,ratio_after,sent_after,delivered_after,recovery_delivery_ms,recovery_connected_ms,"
        + "components_at_fault,largest_at_fault,components_end,largest_component_end,live_nodes"

    public var csvRow: String {
        let c = config
        func ms(_ ns: UInt64) -> String { formatFixed(Double(ns) / 1e6, 3) }
        let fields: [String] = [
            "\(c.nodes)", "\(c.degree)", "\(c.messages)", "\(c.seed)", formatFixed(c.loss, 4),
            formatFixed(c.churnPercentPerMinute, 2), c.latency.csvField, formed ? "1" : "0", ms(formationTime),
            formatFixed(meanDegree, 3), "\(maxDegree)",
            formatFixed(deliveryRatio, 5), "\(delivered)", "\(exactlyOnceViolations)", "\(maxHops)",
            formatFixed(meanHops, 3), rmr.isNaN ? "" : formatFixed(rmr, 4), ms(latencyP50), ms(latencyP99), ms(latencyMax),
            formatFixed(broadcastRatio, 5), "\(broadcastLastHop)", formatFixed(broadcastMeanHops, 3),
            broadcastRMR.isNaN ? "" : formatFixed(broadcastRMR, 4), ms(broadcastLatencyMax), "\(stateBytesMean)", "\(stateBytesMax)",
            "\(dataFrames)", "\(controlFrames)", "\(framesLost)", "\(replacements)", "\(events)",
            c.views ? "1" : "0", c.routing ? "1" : "0", formatFixed(c.killFraction, 4), formatFixed(Double(c.partitionDuration) / 1e9, 3),
            "\(killed)", "\(uncounted)",
            c.hasFault ? ms(faultStart) : "", c.hasFault ? ms(faultEnd) : "",
            c.hasFault ? formatFixed(before.ratio, 5) : "", c.partitionDuration > 0 ? formatFixed(during.ratio, 5) : "",
            c.hasFault ? formatFixed(after.ratio, 5) : "", c.hasFault ? "\(after.sent)" : "", c.hasFault ? "\(after.delivered)" : "",
            c.hasFault ? deliveryRecovery.map(ms) ?? "never" : "", c.hasFault ? connectivityRecovery.map(ms) ?? "never" : "",
            c.hasFault ? "\(componentsAtFault)" : "", c.hasFault ? "\(largestAtFault)" : "",
            "\(components)", "\(largestComponent)", "\(liveNodes)",
        ]
        return fields.joined(separator: ",")
    }
}

extension SimulationReport {
    /// An RMR for the report: "n/a" when no frame was sent (nothing to be redundant about).
    public static func rmrText(_ v: Double) -> String { v.isNaN ? "n/a" : formatFixed(v, 3) }
}
