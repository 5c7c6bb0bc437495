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
        lines.append("state per node: mean \(stateBytesMean) B, max \(stateBytesMax) B")
        lines.append("frames: \(dataFrames) DATA, \(controlFrames) control during the stream, \(framesLost) lost")
        return lines.joined(separator: "\n")
    }

    public static let csvHeader = "nodes,degree,messages,seed,loss,churn_pct_min,latency,formed,formation_ms,mean_degree,max_degree,"
        + "delivery_ratio,delivered,exactly_once_violations,max_hops,mean_hops,rmr,latency_p50_ms,latency_p99_ms,latency_max_ms,"
        + "bcast_ratio,bcast_last_hop,bcast_mean_hops,bcast_rmr,bcast_latency_max_ms,state_bytes_mean,state_bytes_max,"
        + "data_frames,control_frames,frames_lost,replacements,events"

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
        ]
        return fields.joined(separator: ",")
    }
}

extension SimulationReport {
    /// An RMR for the report: "n/a" when no frame was sent (nothing to be redundant about).
    public static func rmrText(_ v: Double) -> String { v.isNaN ? "n/a" : formatFixed(v, 3) }
}
