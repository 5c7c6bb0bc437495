import CoreMetrics
import Dispatch
import Foundation
import Glibc
import Logging
import Prometheus
import Synchronization
import Warren
import WarrenCLI

/// The node's logging: stderr, with one process-wide level that SIGHUP can change.
enum NodeLogging {
    static let level = Mutex<Logger.Level>(.info)

    static func bootstrap(level: Logger.Level) {
        self.level.withLock { $0 = level }
        LoggingSystem.bootstrap { label in ReloadableLogHandler(label: label) }
    }
}

/// A stderr handler whose level is `NodeLogging.level` (read on every check).
struct ReloadableLogHandler: LogHandler {
    private var inner: StreamLogHandler

    init(label: String) {
        inner = StreamLogHandler.standardError(label: label)
        inner.logLevel = .trace   // the level is decided here, before the event reaches it
    }

    var logLevel: Logger.Level {
        get { NodeLogging.level.withLock { $0 } }
        set { NodeLogging.level.withLock { $0 = newValue } }
    }
    var metadata: Logger.Metadata {
        get { inner.metadata }
        set { inner.metadata = newValue }
    }
    var metadataProvider: Logger.MetadataProvider? {
        get { inner.metadataProvider }
        set { inner.metadataProvider = newValue }
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { inner[metadataKey: key] }
        set { inner[metadataKey: key] = newValue }
    }
    func log(event: LogEvent) { inner.log(event: event) }
}

/// Prometheus metrics with a `# HELP` line for every series Warren exports.
struct HelpMetricsFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    let inner: PrometheusMetricsFactory

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
        inner = PrometheusMetricsFactory(registry: registry)
    }

    static let help: [String: String] = [
        "warren_published_total": "Envelopes this node published into the overlay.",
        "warren_delivered_total": "Envelopes delivered to this node's subscribers (first copies only).",
        "warren_relayed_total": "Frames forwarded to neighbours.",
        "warren_duplicates_total": "Frames dropped because their message id was already seen.",
        "warren_ttl_expired_total": "Frames not forwarded because their hop limit was spent.",
        "warren_over_ttl_total": "Frames dropped because their TTL is above the overlay's maximum.",
        "warren_malformed_total": "Frames or messages that could not be decoded.",
        "warren_refused_total": "Closed overlay: handshakes refused because the key is not on the allow-list.",
        "warren_rate_limited_total": "Frames dropped because their neighbour exceeded its rate limit.",
        "warren_hwm_drops_total": "Frames dropped because a link's send queue (high-water mark) was full.",
        "warren_batches_sent_total": "BATCH messages sent (several frames in one ZeroMQ message).",
        "warren_batched_frames_total": "Frames sent inside BATCH messages.",
        "warren_forged_total": "Frames dropped because they claimed another node than the one bound to their connection.",
        "warren_over_share_total": "New message ids dropped because their source had used its share of the admission rate.",
        "warren_unforwarded_total": "New message ids delivered but not forwarded because their source had used its forwarding share.",
        "warren_seen_full_total": "New message ids dropped because the de-duplication cache held only ids younger than the hold time.",
        "warren_dials_deferred_total": "Dials to endpoints never verified that waited for or were refused by the dial budget.",
        "warren_strangers_refused_total": "HELLOs from unknown nodes not taken in (too many nodes without a link, or no dial budget).",
        "warren_known_refused_total": "Endpoints not learned because the known-endpoint table was full of verified entries.",
        "warren_penalized_total": "Neighbours or connections disconnected and ignored for sending mostly bad frames.",
        "warren_penalty_drops_total": "Frames ignored because their connection is serving a penalty.",
        "warren_backlink_drops_total": "Frames for a link carried on a back-link that the back-link socket could not take.",
        "warren_backlinks_refused_total": "Messages to the back-link socket that named no back-link, and routes dropped because the route table was full.",
        "warren_queue_full_total": "Publishes refused because the node's queue of messages waiting to be sent was full.",
        "warren_evicted_total": "Bounded views: neighbours evicted (DISCONNECT) to make room for a JOIN or an urgent request.",
        "warren_shed_total": "Bounded views: requests refused because the active view was full.",
        "warren_disconnects_received_total": "Bounded views: DISCONNECTs received (this node was evicted or refused).",
        "warren_forward_joins_total": "Bounded views: FORWARD_JOIN frames sent (random walks for newcomers).",
        "warren_reconnects_total": "Bounded views: dials to endpoints that failed before, and rejoins through a seed.",
        "warren_backlinks_carried": "Links of this node carried on back-links of nodes that cannot be dialled.",
        "warren_backlinks_open": "Back-links this node has open to the nodes it dials.",
        "warren_neighbours": "Neighbours up now.",
        "warren_dedup_entries": "Message ids in the de-duplication cache.",
        "warren_output_dropped_total": "Delivered messages dropped because stdout was not read fast enough.",
        "warren_grpc_published_total": "Envelopes published through the gRPC bridge.",
        "warren_grpc_rejected_total": "Envelopes the gRPC bridge refused.",
        "warren_grpc_stream_overflows_total": "gRPC subscriber streams closed because they fell behind.",
        "warren_grpc_streams": "Open gRPC subscriber streams.",
    ]

    static func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: help[label] ?? "")
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: Self.descriptor(label), labels: dimensions)
    }
    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        inner.makeFloatingPointCounter(label: label, dimensions: dimensions)
    }
    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        aggregate ? inner.makeRecorder(label: label, dimensions: dimensions, aggregate: true)
                  : registry.makeGauge(descriptor: Self.descriptor(label), labels: dimensions)
    }
    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: Self.descriptor(label), labels: dimensions)
    }
    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        inner.makeTimer(label: label, dimensions: dimensions)
    }
    func destroyCounter(_ handler: any CounterHandler) { inner.destroyCounter(handler) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { inner.destroyFloatingPointCounter(handler) }
    func destroyRecorder(_ handler: any RecorderHandler) { inner.destroyRecorder(handler) }
    func destroyMeter(_ handler: any MeterHandler) { inner.destroyMeter(handler) }
    func destroyTimer(_ handler: any TimerHandler) { inner.destroyTimer(handler) }
}

/// SIGHUP: re-reads the allow-list and the log level and applies them to the running node.
// @unchecked: `source` is written once by `install` before the signal source can fire, then only read.
final class Reloader: @unchecked Sendable {
    let plan: NodePlan
    let backend: GossipBackend
    let logger: Logger
    /// Set once by `install` (kept alive for the node's life).
    private var source: DispatchSourceSignal?

    init(plan: NodePlan, backend: GossipBackend, logger: Logger) {
        self.plan = plan; self.backend = backend; self.logger = logger
    }

    func install() {
        signal(SIGHUP, SIG_IGN)
        let s = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        s.setEventHandler { [self] in reload() }
        s.resume()
        source = s
    }

    func reload() {
        SystemdNotify.send("RELOADING=1\nMONOTONIC_USEC=\(SystemdNotify.monotonicMicros)")
        defer { SystemdNotify.send("READY=1") }
        do {
            let (allowed, level) = try plan.options.reloadable()
            NodeLogging.level.withLock { $0 = level }
            var what = "log level \(level)"
            if let allowed {
                if backend.configuration.isClosed {
                    let change = backend.updateAllowList(allowed)
                    what += ", allow-list \(allowed.count) keys (\(change.added) added, \(change.removed) removed)"
                } else {
                    logger.warning("SIGHUP: an allow-list cannot close a running open overlay; restart the node to close it")
                }
            }
            logger.notice("SIGHUP: reloaded", metadata: ["settings": "\(what)"])
        } catch {
            logger.error("SIGHUP: reload failed; the previous settings stay", metadata: ["reason": "\(describe(error))"])
        }
    }
}
