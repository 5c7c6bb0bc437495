import ArgumentParser
import Foundation
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Warren
import WarrenNice
import WarrenSession

struct Connect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open ICE sessions to peers, with the overlay as the only signaling channel.",
        discussion: """
        Runs a backend (an overlay node with gossip://…, or grpc://… to a node's bridge) and one \
        ICE session (libnice) to each --to peer: credentials and candidates travel as cunīcu \
        signaling messages, the smaller public key controls, and a failed or lost path starts \
        over by itself. stdout carries one JSON object per line:
          {"event":"ready","public_key":…,"forward":…}                       once it runs
          {"event":"state","peer":…,"from":…,"state":"Connected","local":"srflx 203.0.113.11:49152","remote":…,"ms":…}
          {"event":"pair","peer":…,"local":…,"remote":…}                     a new selected pair
          {"event":"problem","peer":…,"reason":…}                            something refused
        --forward relays UDP between a local socket and the ICE path: point WireGuard \
        (Endpoint = 127.0.0.1:PORT), `nc -u` or any UDP application at it. SIGTERM or SIGINT \
        closes the agents (TURN allocations are released) and exits 0.

        Two hosts behind NATs, one public node at 203.0.113.1:7000 and a STUN server:
          warren connect --key-file a.key --to "$(cat b.pub)" --ice-url stun:203.0.113.1:3478 \\
            --backend "gossip://0.0.0.0:7001?advertise=tcp://10.0.1.2:7001&peer=tcp://203.0.113.1:7000" \\
            --forward 127.0.0.1:51821
        """)

    @Option(name: .long, help: "File holding our private key (base64); our public key is the session's address.")
    var keyFile: String
    @Option(name: .long, help: ArgumentHelp("The signaling backend (repeatable: several make one multi-backend).", discussion: "gossip://HOST:PORT?peer=tcp://…&… runs an overlay node in this process; grpc://HOST:PORT?insecure=true uses a node's bridge; inprocess: is for tests.", valueName: "URL"))
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
    @Option(name: .long, help: ArgumentHelp("Serve Prometheus metrics at http://ADDR/metrics and the sessions at /status.", valueName: "HOST:PORT"))
    var metrics: String?
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "warning"

    func validate() throws {
        if backend.isEmpty { throw ValidationError("--backend URL is required (gossip://…, grpc://… or inprocess:)") }
        if to.isEmpty && !listenAny { throw ValidationError("give at least one --to PUBKEY, or --listen-any") }
        for t in to { _ = try parseKeyArgument(t, name: "--to") }
        if Set(to).count != to.count { throw ValidationError("--to: the same peer is given twice") }
        for u in iceUrl {
            do { _ = try ICEServer(url: u) } catch { throw ValidationError("--ice-url: \(error)") }
        }
        for a in iceAddress where IPLiteral.family(a) == nil {
            throw ValidationError("--ice-address \(a): not a numeric IP address")
        }
        guard (1...60_000).contains(stunTimeout) else { throw ValidationError("--stun-timeout must be 1–60000 ms") }
        guard (0...100).contains(stunRetransmissions) else { throw ValidationError("--stun-retransmissions must be 0–100") }
        if forward != nil && to.count != 1 { throw ValidationError("--forward relays for exactly one --to peer") }
        if forwardTo != nil && forward == nil { throw ValidationError("--forward-to needs --forward") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("--log-level: unknown level \"\(logLevel)\"") }
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .warning
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        let logger = Logger(label: "warren.connect")
        let registry = PrometheusCollectorRegistry()
        if metrics != nil { MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry)) }
        let key = PrivateKey(try readKeyFile(keyFile))
        let peers = try to.map { try parseKeyArgument($0, name: "--to") }
        if peers.contains(key.publicKey) { throw ValidationError("--to: that is our own public key") }
        let servers = try iceUrl.map { try ICEServer(url: $0) }
        let ice: NiceAgentFactory
        do {
            ice = try NiceAgentFactory(options: .init(
                servers: servers, stunInitialTimeoutMs: stunTimeout, stunMaxRetransmissions: stunRetransmissions,
                localAddresses: iceAddress.isEmpty ? nil : iceAddress), logger: Logger(label: "warren.ice"))
        } catch { throw ValidationError("ICE: \(error)") }
        let signaling: any Backend
        do { signaling = try await Backends.make(urls: backend, logger: Logger(label: "warren.backend")) } catch {
            throw ValidationError("--backend: \(error)")
        }
        let sessions = SessionManager(backend: signaling, privateKey: key, ice: ice, acceptsAny: listenAny,
                                      logger: Logger(label: "warren.session"))
        var forwarder: UDPForwarder?
        if let forward, let peer = peers.first {
            do {
                forwarder = try UDPForwarder(bind: forward, replyTo: forwardTo) { d in sessions.send(d, to: peer) }
            } catch {
                try? await signaling.close()
                throw ValidationError("\(error)")
            }
        }
        var metricsAddress: String?
        if let metrics {
            do {
                let server = try MetricsServer(bind: metrics, registry: registry) { sessionsJSON(sessions) }
                metricsAddress = server.address
            } catch { try? await signaling.close(); throw ValidationError("\(error)") }
        }
        try await sessions.start()
        var ready = "{\"event\":\"ready\",\"public_key\":\"\(key.publicKey.base64)\",\"controlling\":["
            + peers.map { Key.isBigEndianLess(key.publicKey, $0) ? "true" : "false" }.joined(separator: ",") + "]"
        if let f = forwarder { ready += ",\"forward\":\(jsonString(f.address))" }
        if let metricsAddress { ready += ",\"metrics\":\"\(metricsAddress)\"" }
        Output.line(ready + "}")
        for p in peers { try sessions.connect(to: p) }

        let service = ConnectService(sessions: sessions, backend: signaling, forwarder: forwarder, logger: logger)
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
                    Output.line(s + "}")
                case .selectedPair(let peer, let l, let r):
                    Output.line("{\"event\":\"pair\",\"peer\":\"\(peer.base64)\",\"local\":\(jsonString(l.description)),\"remote\":\(jsonString(r.description))}")
                case .data(_, let d):
                    forwarder?.deliver(d)
                case .problem(let peer, let why):
                    Output.line("{\"event\":\"problem\",\"peer\":\"\(peer.base64)\",\"reason\":\(jsonString(why))}")
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
