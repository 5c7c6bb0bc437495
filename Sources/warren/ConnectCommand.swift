import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Warren
import WarrenCLI
import WarrenNice
import WarrenSession

struct Connect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open ICE sessions to peers, with the overlay as the only signaling channel.",
        discussion: """
        Runs an overlay node in this process (the options of warren node) or uses a \
        backend URL (--backend), and opens one ICE session (libnice) to each --to peer: \
        credentials and candidates travel as cunīcu signaling messages, the smaller \
        public key controls, and a failed or lost path starts over by itself. stdout \
        carries one JSON object per line:
          {"event":"ready","public_key":…,"endpoint":…,"forward":…}     running
          {"event":"peer-up"|"peer-down",…}                  an overlay neighbour
          {"event":"state","peer":…,"from":"Checking","state":"Connected",
           "local":"srflx 203.0.113.11:49152","remote":"srflx …","ms":…}
          {"event":"pair","peer":…,"local":…,"remote":…}   a new selected pair
          {"event":"problem","peer":…,"reason":…}          something refused
        --forward relays UDP between a local socket and the ICE path: point \
        WireGuard (Endpoint = 127.0.0.1:PORT), nc -u or any UDP program at it. \
        SIGTERM or SIGINT closes the agents (TURN allocations are released) and \
        exits 0.

        Two hosts behind NATs, a public node (warren node --listen tcp://0.0.0.0:7000) \
        and a STUN server at 203.0.113.1. Each host runs the overlay node in this process; \
        nothing needs forwarding on the NATs (the node receives over a back-link it opens to \
        the public node itself):
          warren connect --key-file a.key --to "$(cat b.pub)" \\
                         --listen tcp://0.0.0.0:7001 --degree 0 \\
                         --peer tcp://203.0.113.1:7000 \\
                         --ice-url stun:203.0.113.1:3478 \\
                         --forward 127.0.0.1:51821 --forward-to 127.0.0.1:51820

        Or through a node's gRPC bridge instead of a node of its own:
          warren connect --key-file a.key --to "$(cat b.pub)" \\
                         --backend "grpc://203.0.113.1:8080?ca=ca.pem" \\
                         --ice-url stun:203.0.113.1:3478
        """)

    @OptionGroup(title: "Overlay node (as warren node; with --backend only --key-file, --log-level, --metrics apply)") var node: NodeOptions
    @Option(name: .long, help: ArgumentHelp("Instead of a node in this process: a backend URL (repeatable: several make one multi-backend).", discussion: "gossip://HOST:PORT?peer=tcp://…&… is a node too; grpc://HOST:PORT?insecure=true uses a node's bridge; inprocess: is for tests.", valueName: "URL"))
    var backend: [String] = []
    @Option(name: .long, help: ArgumentHelp("A peer's public key (base64) to open a session to (repeatable).", valueName: "PUBKEY"))
    var to: [String] = []
    @Flag(name: .long, help: "Also accept sessions that other peers start.")
    var listenAny = false
    @Option(name: .long, help: ArgumentHelp("A STUN or TURN server (repeatable): stun:HOST:PORT, turn:USER:PASS@HOST:PORT?transport=udp|tcp, turns:USER:PASS@HOST:PORT.", valueName: "URL"))
    var iceUrl: [String] = []
    @Option(name: .long, help: ArgumentHelp("Gather host candidates on these addresses only (repeatable; default: every running interface but loopback).", valueName: "ADDR"))
    var iceAddress: [String] = []
    @Option(name: .long, help: ArgumentHelp("The first STUN retransmission timeout, in ms.", valueName: "MS"))
    var stunTimeout: Int = 100
    @Option(name: .long, help: "STUN retransmissions before a check or binding request fails.")
    var stunRetransmissions: Int = 2
    @Option(name: .long, help: ArgumentHelp("Relay UDP between this local socket and the ICE path (one --to peer).", valueName: "HOST:PORT"))
    var forward: String?
    @Option(name: .long, help: ArgumentHelp("Send datagrams from the peer to this address (default: the last local sender).", valueName: "HOST:PORT"))
    var forwardTo: String?

    func validate() throws {
        if to.isEmpty && !listenAny { throw ValidationError("give at least one --to PUBKEY, or --listen-any") }
        for t in to { _ = try parseKeyArgument(t, name: "--to") }
        if Set(to).count != to.count { throw ValidationError("--to: the same peer is given twice") }
        for u in iceUrl {
            do { _ = try ICEServer(url: u) } catch { throw ValidationError("--ice-url: \(error)") }
        }
        for a in iceAddress where IPLiteral.family(a) == nil {
            throw ValidationError("--ice-address \(a): not a numeric IP address")
        }
        guard (1...60_000).contains(stunTimeout) else { throw ValidationError("--stun-timeout must be 1–60000 ms, got \(stunTimeout)") }
        guard (0...100).contains(stunRetransmissions) else {
            throw ValidationError("--stun-retransmissions must be 0–100, got \(stunRetransmissions)")
        }
        if forward != nil && to.count != 1 { throw ValidationError("--forward relays for exactly one --to peer") }
        if forwardTo != nil && forward == nil { throw ValidationError("--forward-to needs --forward") }
        if !backend.isEmpty {
            let nodeOnly: [(String, Bool)] = [
                ("--listen", !node.listen.isEmpty), ("--peer", !node.peer.isEmpty), ("--allow", node.allow != nil),
                ("--advertise", node.advertise != nil), ("--ttl", node.ttl != nil), ("--degree", node.degree != nil),
                ("--leaf", node.leaf != nil), ("--preset", node.preset != nil), ("--discover", node.discover != nil),
                ("--discover-port", node.discoverPort != nil), ("--batch", node.batch != nil),
                ("--config", node.config != nil), ("--publish-timeout", node.publishTimeout != nil),
            ]
            if let (flag, _) = nodeOnly.first(where: { $0.1 }) {
                throw ValidationError("\(flag) configures the node in this process; with --backend there is none (put it in the gossip:// URL, or drop --backend)")
            }
        }
        let unsupported: [(String, Bool)] = [
            ("--grpc", node.grpc != nil), ("--grpc-tls", !node.grpcTls.isEmpty), ("--grpc-queue", node.grpcQueue != nil),
            ("--grpc-max-streams", node.grpcMaxStreams != nil),
            ("--grpc-allow-plaintext", node.grpcAllowPlaintext), ("--community", node.community != nil),
            ("--community-file", node.communityFile != nil), ("--control", node.control != nil),
            ("--output-queue", node.outputQueue != nil),
        ]
        if let (flag, _) = unsupported.first(where: { $0.1 }) {
            throw ValidationError("\(flag) is served by warren node, not by warren connect (run a node beside it and use --backend)")
        }
    }

    func run() async throws {
        // Everything that can be refused is checked before anything starts.
        let plan: NodePlan? = backend.isEmpty ? try node.resolve() : nil
        guard let keyPath = node.keyFile.last else { throw RuntimeError("missing --key-file FILE") }
        if node.keyFile.count > 1 { throw RuntimeError("--key-file given \(node.keyFile.count) times; a peer has one key") }
        let key = try plan?.key ?? PrivateKey(readKeyFile(keyPath))
        let levelName = node.logLevel ?? "warning"
        guard let level = Logger.Level(rawValue: levelName) else {
            throw RuntimeError("--log-level: unknown level \"\(levelName)\" (trace, debug, info, notice, warning, error, critical)")
        }
        let peers = try to.map { try parseKeyArgument($0, name: "--to") }
        if peers.contains(key.publicKey) { throw RuntimeError("--to \(key.publicKey.base64) is our own public key") }
        let servers = try iceUrl.map { try ICEServer(url: $0) }
        if let metrics = node.metrics {
            do { _ = try MetricsServer.split(metrics) } catch { throw RuntimeError("\(error)") }
        }

        NodeLogging.bootstrap(level: level)
        let logger = Logger(label: "warren.connect")
        let registry = PrometheusCollectorRegistry()
        if node.metrics != nil { MetricsSystem.bootstrap(HelpMetricsFactory(registry: registry)) }
        let ice: NiceAgentFactory
        do {
            ice = try NiceAgentFactory(options: .init(
                servers: servers, stunInitialTimeoutMs: stunTimeout, stunMaxRetransmissions: stunRetransmissions,
                localAddresses: iceAddress.isEmpty ? nil : iceAddress), logger: Logger(label: "warren.ice"))
        } catch { throw RuntimeError("ICE: \(error)") }
        let out = StdoutQueue(bound: StdoutQueue.defaultBound)
        let signaling: any Backend
        var endpoint: String?
        if let plan {
            let b = try Node.startBackend(plan, out: out, logger: Logger(label: "warren.node"))
            endpoint = shown(b.endpoint, closed: b.configuration.isClosed)
            signaling = b
        } else {
            do { signaling = try await Backends.make(urls: backend, logger: Logger(label: "warren.backend")) } catch {
                throw RuntimeError("--backend: \(describe(error))")
            }
        }
        let sessions = SessionManager(backend: signaling, privateKey: key, ice: ice, acceptsAny: listenAny,
                                      logger: Logger(label: "warren.session"))
        var forwarder: UDPForwarder?
        if let forward, let peer = peers.first {
            do {
                forwarder = try UDPForwarder(bind: forward, replyTo: forwardTo) { d in sessions.send(d, to: peer) }
            } catch {
                try? await signaling.close()
                throw RuntimeError("\(error)")
            }
        }
        var metricsAddress: String?
        if let metrics = node.metrics {
            do {
                let server = try MetricsServer(bind: metrics, registry: registry) { sessionsJSON(sessions) }
                metricsAddress = server.address
            } catch { forwarder?.stop(); try? await signaling.close(); throw RuntimeError(describe(error)) }
        }
        try await sessions.start()
        var ready = "{\"event\":\"ready\",\"public_key\":\"\(key.publicKey.base64)\""
        if let endpoint { ready += ",\"endpoint\":\(jsonString(endpoint))" }
        if let f = forwarder { ready += ",\"forward\":\(jsonString(f.address))" }
        if let metricsAddress { ready += ",\"metrics\":\"\(metricsAddress)\"" }
        out.open(first: ready + "}")
        for p in peers { try sessions.connect(to: p) }

        let service = ConnectService(sessions: sessions, backend: signaling, forwarder: forwarder, out: out, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: service)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
    }
}

/// Prints the sessions' events until graceful shutdown, then closes the agents and the backend.
struct ConnectService: Service {
    let sessions: SessionManager
    let backend: any Backend
    let forwarder: UDPForwarder?
    let out: StdoutQueue
    let logger: Logger

    func run() async throws {
        await withGracefulShutdownHandler {
            for await e in sessions.events.cancelOnGracefulShutdown() {
                switch e {
                case .state(let peer, let c):
                    var s = "{\"event\":\"state\",\"peer\":\"\(peer.base64)\",\"from\":\"\(c.from)\",\"state\":\"\(c.to)\""
                    if let l = c.local { s += ",\"local\":\(jsonString(l.description))" }
                    if let r = c.remote { s += ",\"remote\":\(jsonString(r.description))" }
                    s += ",\"ms\":\(String(format: "%.1f", Double(c.elapsed) / 1e6))"
                    if let why = c.reason { s += ",\"reason\":\(jsonString(why))" }
                    out.event(s + "}")
                case .selectedPair(let peer, let l, let r):
                    out.event("{\"event\":\"pair\",\"peer\":\"\(peer.base64)\",\"local\":\(jsonString(l.description)),\"remote\":\(jsonString(r.description))}")
                case .data(_, let d):
                    forwarder?.deliver(d)
                case .problem(let peer, let why):
                    out.event("{\"event\":\"problem\",\"peer\":\"\(peer.base64)\",\"reason\":\(jsonString(why))}")
                }
            }
        } onGracefulShutdown: {
            logger.info("shutting down")
        }
        forwarder?.stop()
        await sessions.close()
        try? await backend.close()
    }
}

/// The sessions as JSON, for `--metrics`' /status.
func sessionsJSON(_ sessions: SessionManager) -> String {
    let list: [[String: Any]] = sessions.status().map { s in
        var o: [String: Any] = ["peer": s.peer.base64, "state": s.state.rawValue, "controlling": s.controlling,
                                "agent": s.generation, "restarts": s.counters.restarts,
                                "candidates_sent": s.counters.candidatesSent,
                                "candidates_received": s.counters.candidatesReceived,
                                "refused": s.counters.credentialsRefused + s.counters.candidatesRefused]
        if let l = s.local { o["local"] = l.description }
        if let r = s.remote { o["remote"] = r.description }
        return o
    }
    let data = (try? JSONSerialization.data(withJSONObject: ["sessions": list], options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
}
