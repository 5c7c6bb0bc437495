import ArgumentParser
import Foundation
import Glibc
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
        do { backend = try GossipBackend(plan.configuration, logger: logger, start: false) } catch {
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
                     "  public key \(key.publicKey.base64)",
                     "  peers      \(c.peers.isEmpty ? "none" : c.peers.joined(separator: ", "))",
                     "  overlay    \(c.isClosed ? "closed, \(c.allowedKeys?.count ?? 0) allowed keys" : "open")" +
                         ", ttl \(c.ttl), degree \(c.degree)\(c.leaf ? ", leaf" : "")" +
                         (c.discoveryPort.map { ", discovery on UDP port \($0)" } ?? "")]
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

/// Publishes the node's stdin lines and the control socket's `send` requests.
final class Publisher: Sendable {
    let backend: GossipBackend
    let key: PrivateKey
    let community: PrivateKey?

    init(backend: GossipBackend, key: PrivateKey, community: PrivateKey?) {
        self.backend = backend; self.key = key; self.community = community
    }

    /// One `{"to":…,"message":{…}}` line.
    func publish(line: String) async throws {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw RuntimeError("not a JSON object")
        }
        try await publish(object: obj)
    }

    func publish(object obj: [String: Any], allowed: Set<String> = ["to", "message"]) async throws {
        if let unknown = obj.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw RuntimeError("unknown field \"\(unknown)\" (known: \(allowed.sorted().joined(separator: ", ")))")
        }
        guard let to = obj["to"] as? String else { throw RuntimeError("missing \"to\" (a base64 public key or \"community\")") }
        guard let m = obj["message"] else { throw RuntimeError("missing \"message\" object") }
        guard let fields = m as? [String: Any] else {
            throw RuntimeError("\"message\" must be a JSON object (a cunicu.signaling.Message), got \(jsonKind(m))")
        }
        let recipient = try self.recipient(to)
        let msgData = try JSONSerialization.data(withJSONObject: fields)
        let msg: SignalingMessage
        do { msg = try SignalingMessage(jsonUTF8Data: msgData) } catch { throw RuntimeError("\"message\": \(describe(error))") }
        try await backend.publish(KeyPair(ours: key, theirs: recipient), msg)
    }

    func recipient(_ to: String) throws -> Key {
        if to == "community" {
            guard let community else { throw RuntimeError("\"to\":\"community\" needs --community or --community-file") }
            return community.publicKey
        }
        let k: Key
        do { k = try Key(base64: to) } catch { throw RuntimeError("\"to\": \(error)") }
        if k.isZero { throw RuntimeError("\"to\": \(GossipPublishError.zeroRecipient)") }
        return k
    }
}

func jsonKind(_ v: Any) -> String {
    switch v {
    case is [Any]: return "an array"
    case is String: return "a string"
    case is NSNull: return "null"
    default: return "a number or boolean"
    }
}

func jsonString(_ s: String) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: [s], options: [.fragmentsAllowed, .withoutEscapingSlashes])) ?? Data("[\"\"]".utf8)
    let arr = String(decoding: data, as: UTF8.self)
    return String(arr.dropFirst().dropLast())
}

/// One stdin line: text, or bytes that are not UTF-8.
enum InputLine: Sendable {
    case text(String)
    case invalidUTF8
}

/// Reads stdin lines on a dedicated thread (blocking reads stay off the cooperative pool).
/// Bytes are split at newlines and checked: a line that is not UTF-8 is reported, not patched.
func stdinLines() -> AsyncStream<InputLine> {
    AsyncStream { continuation in
        let t = Thread {
            var pending: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            func emit(_ bytes: ArraySlice<UInt8>) {
                var b = bytes
                if b.last == 0x0D { b.removeLast() }
                if let s = String(validating: b, as: UTF8.self) { continuation.yield(.text(s)) } else { continuation.yield(.invalidUTF8) }
            }
            while true {
                let n = read(0, &buf, buf.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                pending.append(contentsOf: buf[0..<n])
                var start = 0
                while let nl = pending[start...].firstIndex(of: 0x0A) {
                    emit(pending[start..<nl])
                    start = nl + 1
                }
                pending.removeFirst(start)
            }
            if !pending.isEmpty { emit(pending[...]) }
            continuation.finish()
        }
        t.name = "warren-stdin"
        t.start()
    }
}

/// Publishes stdin lines until graceful shutdown, then closes the backend.
struct NodeService: Service, CustomStringConvertible {
    let backend: GossipBackend
    let publisher: Publisher
    let bridge: SignalingServer?
    let bridgeTask: Task<Void, any Error>?
    let reloader: Reloader
    let logger: Logger

    var description: String { "warren node" }

    func run() async throws {
        reloader.install()
        await withGracefulShutdownHandler {
            var n = 0
            for await line in stdinLines().cancelOnGracefulShutdown() {
                n += 1
                switch line {
                case .invalidUTF8:
                    Output.error("stdin line \(n): not valid UTF-8")
                case .text(let text):
                    if text.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                    do { try await publisher.publish(line: text) } catch { Output.error("stdin line \(n): \(describe(error))") }
                }
            }
            // End of stdin: keep running until asked to stop.
            try? await gracefulShutdown()
        } onGracefulShutdown: {
            SystemdNotify.send("STOPPING=1")
            logger.info("shutting down")
        }
        // The gRPC bridge first (it ends its streams), then the overlay node.
        bridge?.shutdown()
        _ = await bridgeTask?.result
        try? await backend.close()
    }
}
