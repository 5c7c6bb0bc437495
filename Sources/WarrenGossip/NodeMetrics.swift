import Metrics
import WarrenEngine

/// A node's counters and gauges through swift-metrics (labelled `node=<endpoint>`). The library
/// only reports; the application chooses the backend (e.g. Prometheus) by bootstrapping
/// `MetricsSystem`. Reported from the node's thread about once a second, as deltas of the
/// engine's and driver's own counters.
struct NodeMetrics {
    let published, delivered, relayed, duplicates, ttlExpired, overTTL, malformed, refused, rateLimited, hwmDrops, batchesSent, batchedFrames: Counter
    let forged, overShare, unforwarded, seenFull, dialsDeferred, strangersRefused, knownRefused, penalized, penaltyDrops: Counter
    let backlinkDrops, backlinksRefused, queueFull: Counter
    let evicted, shed, disconnectsReceived, forwardJoins, reconnects: Counter
    let neighbours, dedupEntries, backlinksCarried, backlinksOpen: Gauge
    var last = NodeStats()

    init(node: String) {
        let d = [("node", node)]
        published = Counter(label: "warren_published_total", dimensions: d)
        delivered = Counter(label: "warren_delivered_total", dimensions: d)
        relayed = Counter(label: "warren_relayed_total", dimensions: d)
        duplicates = Counter(label: "warren_duplicates_total", dimensions: d)
        ttlExpired = Counter(label: "warren_ttl_expired_total", dimensions: d)
        overTTL = Counter(label: "warren_over_ttl_total", dimensions: d)
        malformed = Counter(label: "warren_malformed_total", dimensions: d)
        refused = Counter(label: "warren_refused_total", dimensions: d)
        rateLimited = Counter(label: "warren_rate_limited_total", dimensions: d)
        hwmDrops = Counter(label: "warren_hwm_drops_total", dimensions: d)
        batchesSent = Counter(label: "warren_batches_sent_total", dimensions: d)
        batchedFrames = Counter(label: "warren_batched_frames_total", dimensions: d)
        forged = Counter(label: "warren_forged_total", dimensions: d)
        overShare = Counter(label: "warren_over_share_total", dimensions: d)
        unforwarded = Counter(label: "warren_unforwarded_total", dimensions: d)
        seenFull = Counter(label: "warren_seen_full_total", dimensions: d)
        dialsDeferred = Counter(label: "warren_dials_deferred_total", dimensions: d)
        strangersRefused = Counter(label: "warren_strangers_refused_total", dimensions: d)
        knownRefused = Counter(label: "warren_known_refused_total", dimensions: d)
        penalized = Counter(label: "warren_penalized_total", dimensions: d)
        penaltyDrops = Counter(label: "warren_penalty_drops_total", dimensions: d)
        backlinkDrops = Counter(label: "warren_backlink_drops_total", dimensions: d)
        backlinksRefused = Counter(label: "warren_backlinks_refused_total", dimensions: d)
        queueFull = Counter(label: "warren_queue_full_total", dimensions: d)
        evicted = Counter(label: "warren_evicted_total", dimensions: d)
        shed = Counter(label: "warren_shed_total", dimensions: d)
        disconnectsReceived = Counter(label: "warren_disconnects_received_total", dimensions: d)
        forwardJoins = Counter(label: "warren_forward_joins_total", dimensions: d)
        reconnects = Counter(label: "warren_reconnects_total", dimensions: d)
        backlinksCarried = Gauge(label: "warren_backlinks_carried", dimensions: d)
        backlinksOpen = Gauge(label: "warren_backlinks_open", dimensions: d)
        neighbours = Gauge(label: "warren_neighbours", dimensions: d)
        dedupEntries = Gauge(label: "warren_dedup_entries", dimensions: d)
    }

    mutating func report(_ s: NodeStats) {
        func add(_ c: Counter, _ now: UInt64, _ before: UInt64) {
            if now > before { c.increment(by: Int64(clamping: now - before)) }
        }
        add(published, s.engine.published, last.engine.published)
        add(delivered, s.engine.delivered, last.engine.delivered)
        add(relayed, s.engine.relayed, last.engine.relayed)
        add(duplicates, s.engine.duplicates, last.engine.duplicates)
        add(ttlExpired, s.engine.ttlExpired, last.engine.ttlExpired)
        add(overTTL, s.engine.overTTL, last.engine.overTTL)
        add(malformed, s.engine.malformed &+ s.badMultipart, last.engine.malformed &+ last.badMultipart)
        add(refused, s.refused, last.refused)
        add(rateLimited, s.rateLimited, last.rateLimited)
        add(hwmDrops, s.hwmDrops, last.hwmDrops)
        add(batchesSent, s.batchesSent, last.batchesSent)
        add(batchedFrames, s.batchedFrames, last.batchedFrames)
        add(forged, s.engine.forged, last.engine.forged)
        add(overShare, s.engine.overShare, last.engine.overShare)
        add(unforwarded, s.engine.unforwarded, last.engine.unforwarded)
        add(seenFull, s.engine.seenFull, last.engine.seenFull)
        add(dialsDeferred, s.engine.dialsDeferred, last.engine.dialsDeferred)
        add(strangersRefused, s.engine.strangersRefused, last.engine.strangersRefused)
        add(knownRefused, s.engine.knownRefused, last.engine.knownRefused)
        add(penalized, s.engine.penalized, last.engine.penalized)
        add(penaltyDrops, s.engine.penaltyDrops, last.engine.penaltyDrops)
        add(backlinkDrops, s.backlinkDrops, last.backlinkDrops)
        add(backlinksRefused, s.backlinksRefused, last.backlinksRefused)
        add(queueFull, s.queueFull, last.queueFull)
        add(evicted, s.engine.evicted, last.engine.evicted)
        add(shed, s.engine.shed, last.engine.shed)
        add(disconnectsReceived, s.engine.disconnectsReceived, last.engine.disconnectsReceived)
        add(forwardJoins, s.engine.forwardJoins, last.engine.forwardJoins)
        add(reconnects, s.engine.reconnects, last.engine.reconnects)
        backlinksCarried.record(Double(s.backlinksCarried))
        backlinksOpen.record(Double(s.backlinksOpen))
        neighbours.record(Double(s.neighbours.count))
        dedupEntries.record(Double(s.seenEntries))
        last = s
    }
}
