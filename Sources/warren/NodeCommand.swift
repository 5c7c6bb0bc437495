import ArgumentParser
import Foundation
import Glibc
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import Warren
import WarrenCLI

struct Node: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one overlay node: JSON lines in (publish), JSON lines out (events, messages).",
        discussion: """
        The node subscribes to its own key from any sender (and to the community key \
        when --community or --community-file is given). stdout carries one JSON object \
        per line:
          {"event":"ready","endpoint":…,"node":…,"public_key":…}   listening
          {"event":"peer-up"|"peer-down","peer":…,"node":…}        a neighbour
          {"sender":B64,"recipient":B64,"message":{…}}              a message
          {"event":"dropped","count":N}         lost: stdout not read in time
        stdin takes one JSON object per line and publishes it:
          {"to":"<base64 public key>"|"community","message":{…}}
        A bad line gets an error on stderr with its line number and the node keeps \
        running; end of stdin does not stop it. SIGTERM or SIGINT stops it gracefully \
        (exit 0); SIGHUP re-reads the allow-list and the log level. Logs go to stderr.

        Three terminals on one machine (B relays between A and C):
          for n in a b c; do warren genkey --out $n.key; done
          warren node --key-file a.key --listen tcp://127.0.0.1:7001 --degree 0
          warren node --key-file b.key --listen tcp://127.0.0.1:7002 --degree 0 \\
                      --peer tcp://127.0.0.1:7001
          warren node --key-file c.key --listen tcp://127.0.0.1:7003 --degree 0 \\
                      --peer tcp://127.0.0.1:7002

        cunīcu's gRPC signaling API on loopback (cunīcu's backend:
        grpc://127.0.0.1:8080?insecure=true):
          warren node --key-file a.key --listen tcp://127.0.0.1:7001 \\
                      --grpc 127.0.0.1:8080

        A closed overlay: the members' public keys in a file, peers named with their key:
          warren node --key-file b.key --listen tcp://127.0.0.1:7002 \\
                      --allow members \\
                      --peer "$(warren pubkey < a.key)@tcp://127.0.0.1:7001"

        From a file (YAML; keys as the flags without --), checked without starting:
          warren node --config /etc/warren/warren.yaml --check
        """)

    @OptionGroup var options: NodeOptions
    @Flag(name: .long, help: "Check the settings (files, values) and exit: 0 if they are valid.") var check = false

    func run() async throws {
        // SIGHUP reloads (NodeService installs the handler); until then it must not kill.
        signal(SIGHUP, SIG_IGN)
        let plan = try options.resolve()
        if check { return Output.line(plan.summary) }
        NodeLogging.bootstrap(level: plan.logLevel)
        let logger = Logger(label: "warren.node")
        let registry = PrometheusCollectorRegistry()
        if plan.metrics != nil { MetricsSystem.bootstrap(HelpMetricsFactory(registry: registry)) }
        let out = StdoutQueue(bound: plan.outputBound)
        // Setup is synchronous on purpose: large values (the configuration, keys) then never
        // live in an async frame (this toolchain has mis-sized such frames in debug builds).
        let backend = try Self.startBackend(plan, out: out, logger: logger)
        let key = plan.key, communityKey = plan.community
        let printer = ClosureMessageHandler { pair, msg in
            if let line = try? jsonLine(sender: pair.theirs, recipient: pair.ours, message: msg) { out.delivery(line) }
        }
        // The bridge starts after the listeners are in place: no peer event can slip past them.
        var bridgeServer: SignalingServer?
        var bridgeTask: Task<Void, any Error>?
        var grpcAddress: String?
        if let bridge = plan.bridge {
            do {
                let server = try SignalingServer(backend: backend, configuration: bridge,
                                                 logger: Logger(label: "warren.grpc"))
                let task = Task { try await server.run() }
                bridgeServer = server; bridgeTask = task
                grpcAddress = try await server.listeningAddress()
            } catch {
                bridgeTask?.cancel()
                try? await backend.close()
                throw RuntimeError("--grpc \(bridge.host):\(bridge.port): cannot serve: \(bindFailure(host: bridge.host, port: bridge.port) ?? describe(error))")
            }
        }
        let publisher = Publisher(backend: backend, key: key, community: communityKey)
        var metricsAddress: String?
        if let metrics = plan.metrics {
            do {
                let server = try MetricsServer(bind: metrics, registry: registry) { [bridgeServer] in
                    jsonText(statusObject(await backend.stats(), backend: backend, key: key,
                                          bridge: bridgeServer?.bridge, dropped: out.dropped))
                }
                metricsAddress = server.address
            } catch {
                bridgeServer?.shutdown(); _ = await bridgeTask?.result; try? await backend.close()
                throw RuntimeError(describe(error))
            }
        }
        var controlPath: String?
        if let path = plan.control {
            do {
                let server = try ControlSocket(path: path, logger: logger) { [bridgeServer] request in
                    await ControlSocket.handle(request, backend: backend, key: key, publisher: publisher,
                                         bridge: bridgeServer?.bridge, dropped: out.dropped)
                }
                controlPath = server.path
            } catch {
                if plan.controlExplicit {
                    bridgeServer?.shutdown(); _ = await bridgeTask?.result; try? await backend.close()
                    throw RuntimeError(describe(error))
                }
                logger.notice("no control socket", metadata: ["reason": "\(describe(error))"])
            }
        }
        try await backend.subscribe(KeyPair(ours: key, theirs: .zero), printer)
        if let communityKey { try await backend.subscribe(KeyPair(ours: communityKey, theirs: .zero), printer) }
        let endpoint = shown(backend.endpoint, closed: backend.configuration.isClosed)
        var ready = "{\"event\":\"ready\",\"endpoint\":\(jsonString(endpoint)),\"node\":\"\(backend.node.nodeID)\",\"public_key\":\"\(key.publicKey.base64)\""
        if let communityKey { ready += ",\"community_key\":\"\(communityKey.publicKey.base64)\"" }
        if let metricsAddress { ready += ",\"metrics\":\"\(metricsAddress)\"" }
        if let grpcAddress { ready += ",\"grpc\":\"\(grpcAddress)\"" }
        if let controlPath { ready += ",\"control\":\(jsonString(controlPath))" }
        out.open(first: ready + "}")
        SystemdNotify.send("READY=1\nSTATUS=listening on \(endpoint)\nMAINPID=\(getpid())")

        let reloader = Reloader(plan: plan, backend: backend, logger: logger)
        let service = NodeService(backend: backend, publisher: publisher, bridge: bridgeServer,
                                  bridgeTask: bridgeTask, reloader: reloader, logger: logger)
        let group = ServiceGroup(configuration: .init(
            services: [.init(service: service)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger))
        try await group.run()
        if let controlPath { unlink(controlPath) }
    }

    /// Binds the node, registers the peer listener and only then starts the node's thread, so
    /// no neighbour event is missed.
    static func startBackend(_ plan: NodePlan, out: StdoutQueue, logger: Logger) throws -> GossipBackend {
        let backend: GossipBackend
        do { backend = try GossipBackend(plan.configuration, logger: logger, start: false) } catch let e as BacklinkBindError {
            throw RuntimeError("--backlink: cannot listen on \(e.endpoint): \(e.reason)")
        } catch {
            throw RuntimeError("cannot listen on \(plan.configuration.listen): \(plain(error))")
        }
        let closed = plan.configuration.isClosed
        backend.addPeerListener { n, up, reason in
            var s = "{\"event\":\"\(up ? "peer-up" : "peer-down")\",\"peer\":\(jsonString(shown(n.endpoint, closed: closed))),\"node\":\"\(n.nodeID)\""
            if let k = (try? PeerAddress(parsing: n.endpoint))?.key { s += ",\"public_key\":\"\(k.base64)\"" }
            if let reason { s += ",\"reason\":\"\(reason)\"" }
            out.event(s + "}")
        }
        backend.start()
        return backend
    }
}

extension NodePlan {
    /// What `--check` prints: the settings as they will be used (no secrets).
    var summary: String {
        let c = configuration
        var lines = ["configuration is valid",
                     "  listen     \(c.listen)" + (c.advertise.map { " (advertised as \($0))" } ?? ""),
                     "  backlink   \(c.backlinkEnabled ? c.backlink ?? "the listen host, a free port (announced)" : "off")",
                     "  public key \(key.publicKey.base64)",
                     "  peers      \(c.peers.isEmpty ? "none" : c.peers.joined(separator: ", "))",
                     "  overlay    \(c.isClosed ? "closed, \(c.allowedKeys?.count ?? 0) allowed keys" : "open")" +
                         ", ttl \(c.ttl), degree \(c.degree)\(c.leaf ? ", leaf" : "")" +
                         (c.discoveryPort.map { ", discovery on UDP port \($0)" } ?? "")]
        lines.append("  seen cache \(c.engine.seenCapacity) ids, admits \(Int(c.engine.newIDRate)) new ids/s (\(Int(c.engine.newIDRate / 2)) from one neighbour)")
        if let community { lines.append("  community  \(community.publicKey.base64)") }
        if let metrics { lines.append("  metrics    \(metrics)") }
        if let bridge { lines.append("  grpc       \(bridge.host):\(bridge.port)\(bridge.tls != nil ? " (TLS)" : "")") }
        lines.append("  control    \(control ?? "none")")
        return lines.joined(separator: "\n")
    }
}

/// Why binding `host:port` fails, as the system says it ("Address already in use"), or nil
/// if it can be bound (then the original error is the reason).
func bindFailure(host: String, port: Int) -> String? {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_flags = AI_NUMERICSERV
    var res: UnsafeMutablePointer<addrinfo>?
    guard getaddrinfo(host, String(port), &hints, &res) == 0, let a = res else { return nil }
    defer { freeaddrinfo(a) }
    let s = socket(a.pointee.ai_family, a.pointee.ai_socktype, 0)
    guard s >= 0 else { return nil }
    defer { close(s) }
    var one: Int32 = 1
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
    return bind(s, a.pointee.ai_addr, a.pointee.ai_addrlen) == 0 ? nil : String(cString: strerror(errno))
}

