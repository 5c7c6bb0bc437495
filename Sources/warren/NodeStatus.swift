import Foundation
import Warren
import WarrenCLI

/// The public key in a `KEY@tcp://…` endpoint (closed overlays advertise their node key).
func endpointKey(_ endpoint: String) -> String? { (try? PeerAddress(parsing: endpoint))?.key?.base64 }

/// An endpoint as the operator sees it: `KEY@tcp://…` in a closed overlay (what `--peer`
/// takes there), plain `tcp://…` in an open one (the key is shown on its own).
func shown(_ endpoint: String, closed: Bool) -> String {
    closed ? endpoint : (try? PeerAddress(parsing: endpoint))?.endpoint ?? endpoint
}

/// The node's status as JSON: `/status` of the metrics server and the control socket's `status`.
func statusObject(_ s: NodeStats, backend: GossipBackend, key: PrivateKey, bridge: SignalingBridge?, dropped: UInt64) -> [String: Any] {
    let now = monotonicNanos()   // the clock the engine runs on
    let closed = backend.configuration.isClosed
    var obj: [String: Any] = [
        "endpoint": shown(backend.endpoint, closed: closed),
        "node": "\(backend.node.nodeID)",
        "public_key": key.publicKey.base64,
        "known_endpoints": s.knownEndpoints.map { shown($0, closed: closed) },
        "dedup_entries": s.seenEntries,
        "links": s.links,
        "backlinks": ["carried": s.backlinksCarried, "open": s.backlinksOpen, "drops": s.backlinkDrops,
                      "refused": s.backlinksRefused],
    ]
    obj["neighbours"] = s.neighbours.map { n -> [String: Any] in
        var o: [String: Any] = ["node": "\(n.nodeID)", "endpoint": shown(n.endpoint, closed: closed), "leaf": n.leaf,
                                "up_seconds": Double(now &- min(now, n.since)) / 1e9]
        if let k = endpointKey(n.endpoint) { o["public_key"] = k }
        return o
    }
    let e = s.engine
    obj["counters"] = ["published": e.published, "delivered": e.delivered, "relayed": e.relayed,
                       "duplicates": e.duplicates, "ttl_expired": e.ttlExpired, "over_ttl": e.overTTL,
                       "malformed": e.malformed &+ s.badMultipart, "refused": s.refused,
                       "rate_limited": s.rateLimited, "hwm_drops": s.hwmDrops, "max_hops": e.maxHops,
                       "batches_sent": s.batchesSent, "batched_frames": s.batchedFrames, "batches_in": e.batchesIn,
                       "forged": e.forged, "over_share": e.overShare, "unforwarded": e.unforwarded, "seen_full": e.seenFull,
                       "dials_deferred": e.dialsDeferred, "strangers_refused": e.strangersRefused,
                       "known_refused": e.knownRefused, "penalized": e.penalized, "penalty_drops": e.penaltyDrops,
                       "queue_full": s.queueFull, "output_dropped": dropped,
                       "evicted": e.evicted, "shed": e.shed, "disconnects_received": e.disconnectsReceived,
                       "forward_joins": e.forwardJoins, "reconnects": e.reconnects]
    if let bridge {
        let g = bridge.counters
        obj["grpc"] = ["published": g.published, "rejected": g.rejected, "streamed": g.streamed,
                       "overflows": g.overflows, "open_streams": g.openStreams, "queue_bound": bridge.queueBound,
                       "connection_errors": g.connectionErrors]
    }
    return obj
}

/// Every node this one knows: itself, its neighbours (alive, one hop) and the endpoints peer
/// exchange taught it (suspect after failed dials, gone after a BYE, known otherwise).
func members(_ s: NodeStats, backend: GossipBackend, key: PrivateKey) -> [[String: Any]] {
    let now = monotonicNanos()
    let closed = backend.configuration.isClosed
    var out: [[String: Any]] = [["endpoint": shown(backend.endpoint, closed: closed), "node": "\(backend.node.nodeID)",
                                 "public_key": key.publicKey.base64, "state": "self", "hops": 0]]
    var listed: Set<String> = [backend.endpoint]
    var listedNodes: Set<NodeID> = [backend.node.nodeID]
    for n in s.neighbours {
        var o: [String: Any] = ["endpoint": shown(n.endpoint, closed: closed), "node": "\(n.nodeID)", "state": "alive", "hops": 1, "leaf": n.leaf]
        if let k = endpointKey(n.endpoint) { o["public_key"] = k }
        if let t = s.lastHeard[n.nodeID] { o["last_heard_seconds"] = Double(now &- min(now, t)) / 1e9 }
        out.append(o)
        listed.insert(n.endpoint)
        listedNodes.insert(n.nodeID)
    }
    for k in s.knownNodes where !listed.contains(k.endpoint) {
        if let id = k.nodeID, listedNodes.contains(id) { continue }
        var o: [String: Any] = ["endpoint": shown(k.endpoint, closed: closed), "state": k.gone ? "gone" : k.failures > 0 ? "suspect" : "known"]
        if let id = k.nodeID { o["node"] = "\(id)" }
        if let key = endpointKey(k.endpoint) { o["public_key"] = key }
        if k.failures > 0 { o["failed_dials"] = Int(k.failures) }
        out.append(o)
        listed.insert(k.endpoint)
    }
    return out
}
