import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Synchronization
import Warren

struct Node: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one overlay node: JSON lines in (publish), JSON lines out (events, messages).",
        discussion: """
        The node subscribes to its own key from any sender (and to the community key when \
        --community is given). stdout carries one JSON object per line:
          {"event":"ready","endpoint":…,"public_key":…}           once it listens
          {"event":"peer-up"|"peer-down","peer":…,"node":…}       as neighbours come and go
          {"sender":B64,"recipient":B64,"message":{…}}             each delivered message, once
        stdin takes one JSON object per line and publishes it:
          {"to":"<base64 public key>"|"community","message":{…canonical JSON…}}
        A bad line gets an error on stderr and the node keeps running; end of stdin does not stop \
        it. SIGTERM or SIGINT stops it gracefully (exit 0). Logs go to stderr.

        Three terminals on one machine:
          warren genkey > a.key; warren genkey > b.key; warren genkey > c.key
          warren node --key-file a.key --listen tcp://127.0.0.1:7001
          warren node --key-file b.key --listen tcp://127.0.0.1:7002 --peer tcp://127.0.0.1:7001
          warren node --key-file c.key --listen tcp://127.0.0.1:7003 --peer tcp://127.0.0.1:7002

        Serve cunīcu's gRPC signaling API on loopback (cunīcu: grpc://127.0.0.1:8080?insecure=true):
          warren node --key-file a.key --listen tcp://127.0.0.1:7001 --grpc 127.0.0.1:8080

        A closed overlay: list the members' public keys in a file and name peers with their key:
          warren node --key-file b.key --listen tcp://127.0.0.1:7002 --allow members.txt \\
                      --peer "$(warren pubkey < a.key)@tcp://127.0.0.1:7001"
        """)

    @Option(name: .long, help: "File holding this node's private key (base64).") var keyFile: String
    @Option(name: .long, help: "Endpoint to listen on, tcp://HOST:PORT.") var listen: String
    @Option(name: .long, help: "A peer's endpoint, tcp://HOST:PORT, or KEY@tcp://HOST:PORT in a closed overlay (repeatable).") var peer: [String] = []
    @Option(name: .long, help: ArgumentHelp("Closed overlay: file of node public keys (one base64 key per line) allowed to connect.", discussion: "Links then use CurveZMQ with this node's key (--key-file) as its node key; peers must be given as KEY@tcp://HOST:PORT.")) var allow: String?
    @Option(name: .long, help: "Join the community derived from this passphrase.") var community: String?
    @Option(name: .long, help: "Hop limit of published messages (1…16, the overlay's maximum).") var ttl: UInt8?
    @Option(name: .long, help: "Neighbours to keep beyond the given peers (default: preset's).") var degree: Int?
    @Flag(name: .long, help: "Leaf mode: receive only our own keys' topics and forward nothing.") var leaf = false
    @Option(name: .long, help: "Timer preset: local (one machine) or lan.") var preset: String = "local"
    @Option(name: .long, help: "Endpoint other nodes should dial, if not the listen endpoint.") var advertise: String?
    @Flag(name: .long, help: ArgumentHelp("LAN discovery: broadcast UDP beacons and dial the nodes heard (no seeds needed).", discussion: "Beacons reach the local IPv4 networks only (not loopback, routers or VPNs); --peer and peer exchange work alongside.")) var discover = false
    @Option(name: .long, help: "UDP port of the discovery beacons (with --discover).") var discoverPort: UInt16 = GossipConfiguration.defaultDiscoveryPort
    @Flag(name: .long, help: ArgumentHelp("Send every frame in its own ZeroMQ message (no BATCH).", discussion: "For an overlay that still has nodes older than BATCH messages. Receiving batches stays on.")) var noBatch = false
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.") var logLevel: String = "info"
    @Option(name: .long, help: ArgumentHelp("Serve Prometheus metrics at http://ADDR/metrics and the neighbour table at /status.", valueName: "HOST:PORT")) var metrics: String?
    @Option(name: .long, help: ArgumentHelp("Serve cunīcu's gRPC signaling API (cunicu.signaling.Signaling) at HOST:PORT, so cunīcu daemons use the overlay with grpc://HOST:PORT?insecure=true.", discussion: "Plain text, so loopback only unless --grpc-tls is given.", valueName: "HOST:PORT")) var grpc: String?
    @Option(name: .long, parsing: .upToNextOption, help: ArgumentHelp("Serve the gRPC API over TLS with this PEM certificate chain and private key.", valueName: "CERT KEY")) var grpcTls: [String] = []
    @Option(name: .long, help: "Envelopes a gRPC subscriber stream may fall behind before it is closed with RESOURCE_EXHAUSTED.") var grpcQueue: Int = SignalingBridge.defaultQueueBound
    @Option(name: .long, help: "Concurrent gRPC calls one client connection may have open (advertised to clients, which queue calls beyond it).") var grpcMaxStreams: Int = GRPCBridgeConfiguration.defaultMaxConcurrentStreams
    @Flag(name: .long, help: "Allow a plain-text gRPC API on a non-loopback address (unsafe: anyone reaching it can read any key's ciphertext and publish).") var grpcAllowPlaintext = false

    func validate() throws {
        guard listen.hasPrefix("tcp://") else { throw ValidationError("--listen must be tcp://HOST:PORT, got \"\(listen)\"") }
        for p in peer {
            let a: PeerAddress
            do { a = try PeerAddress(parsing: p) } catch { throw ValidationError("--peer: \(error)") }
            if allow != nil && a.key == nil {
                throw ValidationError("--peer \(p): with --allow every peer must be given as KEY@tcp://HOST:PORT")
            }
        }
        if let ttl, ttl == 0 || ttl > EngineConfig.local(endpoint: listen, seeds: []).maxTTL {
            throw ValidationError("--ttl must be 1…16 (the overlay's maximum; neighbours drop frames above it)")
        }
        if discoverPort == 0 { throw ValidationError("--discover-port must be 1…65535") }
        guard preset == "local" || preset == "lan" else { throw ValidationError("--preset must be local or lan") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level: unknown level \"\(logLevel)\"") }
        if !grpcTls.isEmpty && grpcTls.count != 2 { throw ValidationError("--grpc-tls takes two files: CERT KEY") }
        if grpc == nil && (!grpcTls.isEmpty || grpcAllowPlaintext) { throw ValidationError("--grpc-tls and --grpc-allow-plaintext need --grpc HOST:PORT") }
        if grpcQueue < 1 { throw ValidationError("--grpc-queue must be at least 1") }
        if !(1...Int(Int32.max)).contains(grpcMaxStreams) { throw ValidationError("--grpc-max-streams must be 1…\(Int32.max)") }
        if grpc != nil { _ = try bridgeConfiguration() }
    }

    /// The gRPC bridge's configuration from the flags (validated: address, TLS files, plain text).
    func bridgeConfiguration() throws -> GRPCBridgeConfiguration? {
        guard let grpc else { return nil }
        do {
            var c = try GRPCBridgeConfiguration(address: grpc)
            if grpcTls.count == 2 { c.tls = .init(certificateChain: grpcTls[0], privateKey: grpcTls[1]) }
            c.queueBound = grpcQueue
            c.maxConcurrentStreams = grpcMaxStreams
            c.allowPlaintextAnywhere = grpcAllowPlaintext
            try c.validate()
            return c
        } catch {
            throw ValidationError("--grpc: \(error)")
        }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "warren.node")
        let registry = PrometheusCollectorRegistry()
        if metrics != nil { MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry)) }
        // Setup is synchronous on purpose: large values (the configuration, keys) then never
        // live in an async frame (this toolchain has mis-sized such frames in debug builds).
        let setup = try makeBackend(logger: logger)
        let backend = setup.backend, key = setup.key, communityKey = setup.community
        // Events can happen while we subscribe; hold them until the ready line is out.
        let gate = StdoutGate()
        backend.addPeerListener { n, up, reason in
            var s = "{\"event\":\"\(up ? "peer-up" : "peer-down")\",\"peer\":\(jsonString(n.endpoint)),\"node\":\"\(n.nodeID)\""
            if let reason { s += ",\"reason\":\"\(reason)\"" }
            gate.line(s + "}")
        }
        let printer = ClosureMessageHandler { pair, msg in
            if let line = try? jsonLine(sender: pair.theirs, recipient: pair.ours, message: msg) { gate.line(line) }
        }
        // The bridge starts after the listeners are in place: no peer event can slip past them.
        var bridgeServer: SignalingServer?
        var bridgeTask: Task<Void, any Error>?
        var grpcAddress: String?
        if let bridge = try bridgeConfiguration() {
            do {
                let server = try SignalingServer(backend: backend, configuration: bridge,
                                                 logger: Logger(label: "warren.grpc"))
                let task = Task { try await server.run() }
                bridgeServer = server; bridgeTask = task
                grpcAddress = try await server.listeningAddress()
            } catch {
                bridgeTask?.cancel()
                try? await backend.close()
                throw ValidationError("--grpc \(grpc ?? ""): cannot serve: \(error)")
            }
        }
        var metricsAddress: String?
        if let metrics {
            do {
                let server = try MetricsServer(bind: metrics, registry: registry) { [bridgeServer] in
                    statusJSON(backend, bridge: bridgeServer?.bridge)
                }
                metricsAddress = server.address
            } catch { bridgeServer?.shutdown(); _ = await bridgeTask?.result; try? await backend.close(); throw ValidationError("\(error)") }
        }
        try await backend.subscribe(KeyPair(ours: key, theirs: .zero), printer)
        if let communityKey { try await backend.subscribe(KeyPair(ours: communityKey, theirs: .zero), printer) }
        var ready = "{\"event\":\"ready\",\"endpoint\":\(jsonString(backend.endpoint)),\"public_key\":\"\(key.publicKey.base64)\""
        if let communityKey { ready += ",\"community_key\":\"\(communityKey.publicKey.base64)\"" }
        if let metricsAddress { ready += ",\"metrics\":\"\(metricsAddress)\"" }
        if let grpcAddress { ready += ",\"grpc\":\"\(grpcAddress)\"" }
        gate.open(first: ready + "}")

        let service = NodeService(backend: backend, key: key, community: communityKey,
                                  bridge: bridgeServer, bridgeTask: bridgeTask, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: service)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
    }
}

extension Node {
    final class Setup: Sendable {
        let backend: GossipBackend
        let key: PrivateKey
        let community: PrivateKey?
        init(backend: GossipBackend, key: PrivateKey, community: PrivateKey?) {
            self.backend = backend; self.key = key; self.community = community
        }
    }

    /// Reads the keys, builds the configuration and starts the node.
    func makeBackend(logger: Logger) throws -> Setup {
        let key = PrivateKey(try readKeyFile(keyFile))
        var communityKey: PrivateKey?
        if let community {
            do { communityKey = try PrivateKey.community(passphrase: community) } catch { throw ValidationError("--community: \(error)") }
        }
        var cfg = preset == "lan" ? GossipConfiguration.lan(listen: listen, peers: peer)
                                  : GossipConfiguration.local(listen: listen, peers: peer)
        if let ttl { cfg.ttl = ttl }
        if let degree { cfg.degree = degree }
        cfg.leaf = leaf
        cfg.advertise = advertise
        if discover { cfg.discoveryPort = discoverPort }
        if noBatch { cfg.batching = false }
        if let allow {
            do { cfg.allowedKeys = try GossipConfiguration.readAllowList(path: allow) } catch { throw ValidationError("--allow: \(error)") }
            cfg.nodeKey = key
        }
        do {
            return Setup(backend: try GossipBackend(cfg, logger: logger), key: key, community: communityKey)
        } catch {
            throw ValidationError("cannot listen on \(listen): \(error)")
        }
    }
}

/// The node's status as JSON (called on the metrics server's own thread, which may block).
func statusJSON(_ backend: GossipBackend, bridge: SignalingBridge? = nil) -> String {
    let box = StatsBox()
    let done = DispatchSemaphore(value: 0)
    Task { box.set(await backend.stats()); done.signal() }
    guard done.wait(timeout: .now() + 2) == .success, let s = box.get() else { return "{\"error\":\"node not responding\"}" }
    let uptimeBase = monotonicNanos()   // the clock the engine runs on
    var obj: [String: Any] = [
        "endpoint": backend.endpoint,
        "node": "\(backend.node.nodeID)",
        "known_endpoints": s.knownEndpoints,
        "dedup_entries": s.seenEntries,
        "links": s.links,
    ]
    obj["neighbours"] = s.neighbours.map { n -> [String: Any] in
        ["node": "\(n.nodeID)", "endpoint": n.endpoint, "leaf": n.leaf,
         "up_seconds": Double(uptimeBase &- min(uptimeBase, n.since)) / 1e9]
    }
    let e = s.engine
    obj["counters"] = ["published": e.published, "delivered": e.delivered, "relayed": e.relayed,
                       "duplicates": e.duplicates, "ttl_expired": e.ttlExpired, "over_ttl": e.overTTL,
                       "malformed": e.malformed &+ s.badMultipart, "refused": s.refused,
                       "rate_limited": s.rateLimited, "hwm_drops": s.hwmDrops, "max_hops": e.maxHops,
                       "batches_sent": s.batchesSent, "batched_frames": s.batchedFrames, "batches_in": e.batchesIn]
    if let bridge {
        let g = bridge.counters
        obj["grpc"] = ["published": g.published, "rejected": g.rejected, "streamed": g.streamed,
                       "overflows": g.overflows, "open_streams": g.openStreams, "queue_bound": bridge.queueBound,
                       "connection_errors": g.connectionErrors]
    }
    let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
}

final class StatsBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: DriverStats?
    func set(_ v: DriverStats) { lock.lock(); value = v; lock.unlock() }
    func get() -> DriverStats? { lock.lock(); defer { lock.unlock() }; return value }
}

/// Holds stdout lines back until `open` prints the first line, then passes them through in order.
final class StdoutGate: Sendable {
    private let pending = Mutex<[String]?>([])
    func line(_ s: String) {
        pending.withLock { q in if q == nil { Output.line(s) } else { q!.append(s) } }
    }
    func open(first: String) {
        pending.withLock { q in
            Output.line(first)
            for s in q ?? [] { Output.line(s) }
            q = nil
        }
    }
}

func jsonString(_ s: String) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed, .withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
    let arr = String(decoding: data, as: UTF8.self)
    return String(arr.dropFirst().dropLast())
}

/// Reads stdin lines on a dedicated thread (blocking reads stay off the cooperative pool).
func stdinLines() -> AsyncStream<String> {
    AsyncStream { continuation in
        let t = Thread {
            while let l = readLine() { continuation.yield(l) }
            continuation.finish()
        }
        t.name = "warren-stdin"
        t.start()
    }
}

/// Publishes stdin lines until graceful shutdown, then closes the backend.
struct NodeService: Service {
    let backend: GossipBackend
    let key: PrivateKey
    let community: PrivateKey?
    let bridge: SignalingServer?
    let bridgeTask: Task<Void, any Error>?
    let logger: Logger

    func run() async throws {
        await withGracefulShutdownHandler {
            var n = 0
            for await line in stdinLines().cancelOnGracefulShutdown() {
                n += 1
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                do { try await publish(line) } catch { Output.error("stdin line \(n): \(error)") }
            }
            // End of stdin: keep running until asked to stop.
            try? await gracefulShutdown()
        } onGracefulShutdown: {
            logger.info("shutting down")
        }
        // The gRPC bridge first (it ends its streams), then the overlay node.
        bridge?.shutdown()
        _ = await bridgeTask?.result
        try? await backend.close()
    }

    func publish(_ line: String) async throws {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw ValidationError("not a JSON object")
        }
        guard let to = obj["to"] as? String else { throw ValidationError("missing \"to\" (a base64 public key or \"community\")") }
        guard let m = obj["message"], JSONSerialization.isValidJSONObject(m) else {
            throw ValidationError("missing \"message\" object")
        }
        let recipient: Key
        if to == "community" {
            guard let community else { throw ValidationError("\"to\":\"community\" needs --community") }
            recipient = community.publicKey
        } else {
            do { recipient = try Key(base64: to) } catch { throw ValidationError("\"to\": \(error)") }
        }
        let msgData = try JSONSerialization.data(withJSONObject: m)
        let msg: SignalingMessage
        do { msg = try SignalingMessage(jsonUTF8Data: msgData) } catch { throw ValidationError("\"message\": \(error)") }
        try await backend.publish(KeyPair(ours: key, theirs: recipient), msg)
    }
}
