import ArgumentParser
import Foundation
import Logging
import Warren
import WarrenCLI
import Yams

/// Everything that configures a running node: `warren node`'s flags and its configuration file
/// (`--config FILE`, YAML, one key per flag, flags override it). Reusable by every command that
/// runs a node (`@OptionGroup var options: NodeOptions`).
struct NodeOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Read settings from this YAML file (keys as the flags without --); flags override it.", valueName: "FILE")) var config: String?
    @Option(name: .long, help: ArgumentHelp("File holding this node's private key (base64).", valueName: "FILE")) var keyFile: [String] = []
    @Option(name: .long, help: ArgumentHelp("Endpoint to listen on, tcp://HOST:PORT (HOST: address, [IPv6], name, or 0.0.0.0 for every interface; PORT * picks one).", valueName: "ENDPOINT")) var listen: [String] = []
    @Option(name: .long, help: ArgumentHelp("A peer's endpoint, tcp://HOST:PORT, or KEY@tcp://HOST:PORT in a closed overlay (repeatable).", valueName: "ENDPOINT")) var peer: [String] = []
    @Option(name: .long, help: ArgumentHelp("Closed overlay: file of node public keys (one base64 key per line) allowed to connect.", discussion: "Links then use CurveZMQ with this node's key (--key-file) as its node key; peers must be given as KEY@tcp://HOST:PORT. SIGHUP re-reads the file.", valueName: "FILE")) var allow: String?
    @Option(name: .long, help: ArgumentHelp("Join the community derived from this passphrase (visible in ps: prefer --community-file).", valueName: "PASSPHRASE")) var community: String?
    @Option(name: .long, help: ArgumentHelp("Join the community whose passphrase is the first line of this file.", valueName: "FILE")) var communityFile: String?
    @Option(name: .long, help: "Hop limit of published messages (1…16, the overlay's maximum; default 16).") var ttl: Int?
    @Option(name: .long, help: "Neighbours to keep beyond the given peers (0…64; default: the preset's, 3 local, 4 lan).") var degree: Int?
    @Flag(name: .long, inversion: .prefixedNo, help: "Leaf mode: receive only our own keys' topics and forward nothing.") var leaf: Bool?
    @Flag(name: .long, inversion: .prefixedNo, help: ArgumentHelp("Bounded views (the default): at most degree + 2 neighbours, seeds only to join and rejoin.", discussion: "--no-views keeps the membership of nodes built before views: seeds kept connected forever, every inbound neighbour accepted (docs/PROTOCOL.md §6).")) var views: Bool?
    @Option(name: .long, help: "Timer preset: local (one machine; the default) or lan.") var preset: String?
    @Option(name: .long, help: ArgumentHelp("Endpoint other nodes should dial, tcp://HOST:PORT (default: the listen endpoint; with 0.0.0.0, this host's first non-loopback address).", valueName: "ENDPOINT")) var advertise: String?
    @Option(name: .long, help: ArgumentHelp("Where nodes that cannot be dialled (behind a NAT) connect their back-links, tcp://HOST:PORT, or off (default: the listen host, a free port, announced to every node that dials this one).", discussion: "Name a port when a firewall or port forward in front of this node must let it through. A node behind a NAT needs nothing: it opens back-links by itself (docs/PROTOCOL.md §1).", valueName: "ENDPOINT")) var backlink: String?
    @Flag(name: .long, inversion: .prefixedNo, help: ArgumentHelp("LAN discovery: broadcast UDP beacons and dial the nodes heard (no seeds needed).", discussion: "Beacons reach the local IPv4 networks only (not loopback, routers or VPNs); --peer and peer exchange work alongside.")) var discover: Bool?
    @Option(name: .long, help: "UDP port of the discovery beacons (with --discover; default 5670).") var discoverPort: Int?
    @Flag(name: .long, inversion: .prefixedNo, help: ArgumentHelp("Send consecutive frames as BATCH messages (the default); --no-batch sends every frame alone.", discussion: "--no-batch is for an overlay that still has nodes older than BATCH messages. Receiving batches stays on.")) var batch: Bool?
    @Flag(name: .long, inversion: .prefixedNo, help: ArgumentHelp("Unicast routing: envelopes for one key travel a path found by a location service on the overlay, not the whole overlay (off by default; --no-routing: flood only).", discussion: "The flood stays the fallback; only neighbours that advertise routing get routing frames (docs/PROTOCOL.md §9).")) var routing: Bool?
    @Option(name: .long, help: "Log level: trace, debug, info (default), notice, warning, error, critical. SIGHUP re-reads it from --config.") var logLevel: String?
    @Option(name: .long, help: ArgumentHelp("Serve Prometheus metrics at http://ADDR/metrics and the neighbour table at /status.", valueName: "HOST:PORT")) var metrics: String?
    @Option(name: .long, help: ArgumentHelp("Serve cunīcu's gRPC signaling API (cunicu.signaling.Signaling) at HOST:PORT, so cunīcu daemons use the overlay with grpc://HOST:PORT?insecure=true.", discussion: "Plain text, so loopback only unless --grpc-tls is given.", valueName: "HOST:PORT")) var grpc: String?
    @Option(name: .long, parsing: .upToNextOption, help: ArgumentHelp("Serve the gRPC API over TLS with this PEM certificate chain and private key.", valueName: "CERT KEY")) var grpcTls: [String] = []
    @Option(name: .long, help: "Envelopes a gRPC subscriber stream may fall behind before it is closed with RESOURCE_EXHAUSTED (default 1024).") var grpcQueue: Int?
    @Option(name: .long, help: "Concurrent gRPC calls one client connection may have open (advertised to clients, which queue calls beyond it; default 4096).") var grpcMaxStreams: Int?
    @Flag(name: .long, help: "Allow a plain-text gRPC API on a non-loopback address (unsafe: anyone reaching it can read any key's ciphertext and publish).") var grpcAllowPlaintext = false
    @Option(name: .long, help: ArgumentHelp("Control socket for warren status/members/send (default: $XDG_RUNTIME_DIR/warren.sock, else /run/warren/warren.sock; none: no socket).", valueName: "PATH")) var control: String?
    @Option(name: .long, help: "Lines stdout may fall behind before deliveries are dropped and counted (default 4096).") var outputQueue: Int?
    @Option(name: .long, help: ArgumentHelp("Message ids the de-duplication cache holds (1024…4194304; default 524288, about 16 MiB).", discussion: "It also sets the rate of new ids the node admits, capacity ÷ 12 a second (R = C / (2 × the 6-s hold)), of which each neighbour may bring half: one neighbour's flood cannot crowd out the others' messages (docs/PROTOCOL.md §5, Admission). The default admits 43,690 new ids a second.", valueName: "N")) var seenCapacity: Int?
    @Option(name: .long, help: "Seconds a published message waits for a first neighbour before it is refused (default 5).") var publishTimeout: Double?

    /// Reads the configuration file (if any), the key, the allow-list and the passphrase, merges
    /// flags over the file and checks everything with `GossipConfiguration`'s one validator.
    /// Every refusal is one line (`RuntimeError`: exit status 1) naming the value and the rule.
    func resolve() throws -> NodePlan {
        if keyFile.count > 1 { throw RuntimeError("--key-file given \(keyFile.count) times; a node has one key") }
        if listen.count > 1 { throw RuntimeError("--listen given \(listen.count) times; a node listens on one endpoint") }
        if community != nil && communityFile != nil { throw RuntimeError("give --community or --community-file, not both") }
        let file = try config.map { try NodeFileSettings.read($0) } ?? NodeFileSettings()
        guard let keyPath = keyFile.first ?? file.keyFile else {
            throw RuntimeError("missing --key-file FILE (or key-file: in --config)")
        }
        guard let listenSpec = listen.first ?? file.listen else {
            throw RuntimeError("missing --listen tcp://HOST:PORT (or listen: in --config)")
        }
        let key = PrivateKey(try readKeyFile(keyPath))
        var s = GossipSettings(listen: listenSpec)
        s.peers = peer.isEmpty ? file.peer ?? [] : peer
        s.advertise = advertise ?? file.advertise
        s.backlink = backlink ?? file.backlink
        s.preset = preset ?? file.preset ?? "local"
        s.ttl = ttl ?? file.ttl
        s.degree = degree ?? file.degree
        s.leaf = leaf ?? file.leaf ?? false
        s.views = views ?? file.views ?? true
        s.discover = discover ?? file.discover ?? false
        s.discoveryPort = discoverPort ?? file.discoverPort
        s.batching = batch ?? file.batch ?? true
        s.routing = routing ?? file.routing ?? false
        s.publishTimeout = publishTimeout ?? file.publishTimeout
        s.seenCapacity = seenCapacity ?? file.seenCapacity
        let allowPath = allow ?? file.allow
        if let allowPath {
            do { s.allowedKeys = try GossipConfiguration.readAllowList(path: allowPath) } catch {
                throw RuntimeError("--allow: \(plain(error))")
            }
        }
        s.nodeKey = key
        let configuration: GossipConfiguration
        do { configuration = try GossipConfiguration(settings: s, naming: .flags) } catch {
            throw RuntimeError(plain(error))
        }

        var communityKey: PrivateKey?
        let communityPath = communityFile ?? (community == nil ? file.communityFile : nil)
        let passphrase = try community ?? (communityPath == nil ? file.community : nil) ?? communityPath.map { try readPassphraseFile($0) }
        if let passphrase {
            do { communityKey = try PrivateKey.community(passphrase: passphrase) } catch { throw RuntimeError("--community: \(error)") }
        }
        let levelName = logLevel ?? file.logLevel ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            throw RuntimeError("--log-level: unknown level \"\(levelName)\" (trace, debug, info, notice, warning, error, critical)")
        }
        let outputBound = outputQueue ?? file.outputQueue ?? StdoutQueue.defaultBound
        guard outputBound >= 1 else { throw RuntimeError("--output-queue must be at least 1, got \(outputBound)") }

        let tls = grpcTls.isEmpty ? file.grpcTls ?? [] : grpcTls
        let allowPlaintext = grpcAllowPlaintext || file.grpcAllowPlaintext == true
        let grpcAddress = grpc ?? file.grpc
        let queue = grpcQueue ?? file.grpcQueue ?? SignalingBridge.defaultQueueBound
        if grpcAddress == nil && (!tls.isEmpty || allowPlaintext) {
            throw RuntimeError("--grpc-tls and --grpc-allow-plaintext need --grpc HOST:PORT")
        }
        if !tls.isEmpty && tls.count != 2 { throw RuntimeError("--grpc-tls takes two files: CERT KEY") }
        if queue < 1 { throw RuntimeError("--grpc-queue must be at least 1, got \(queue)") }
        let maxStreams = grpcMaxStreams ?? file.grpcMaxStreams ?? GRPCBridgeConfiguration.defaultMaxConcurrentStreams
        if !(1...Int(Int32.max)).contains(maxStreams) {
            throw RuntimeError("--grpc-max-streams must be 1…\(Int32.max), got \(maxStreams)")
        }
        var bridge: GRPCBridgeConfiguration?
        if let grpcAddress {
            do {
                var c = try GRPCBridgeConfiguration(address: grpcAddress)
                if tls.count == 2 { c.tls = .init(certificateChain: tls[0], privateKey: tls[1]) }
                c.queueBound = queue
                c.maxConcurrentStreams = maxStreams
                c.allowPlaintextAnywhere = allowPlaintext
                try c.validate()
                bridge = c
            } catch {
                throw RuntimeError("--grpc \(grpcAddress): \(error)")
            }
        }
        let metricsAddress = metrics ?? file.metrics
        if let metricsAddress {
            do { _ = try MetricsServer.split(metricsAddress) } catch { throw RuntimeError("\(error)") }
        }
        let controlSetting = control ?? file.control
        let controlPath: String? = controlSetting == "none" ? nil : controlSetting ?? ControlSocket.defaultPath
        return NodePlan(configuration: configuration, key: key, community: communityKey, logLevel: level,
                        metrics: metricsAddress, bridge: bridge, control: controlPath,
                        controlExplicit: controlSetting != nil, outputBound: outputBound,
                        allowFile: allowPath, options: self)
    }

    /// What SIGHUP re-reads: the allow-list (from --allow or the file) and the log level (from
    /// the flag, else the file). Everything else needs a restart.
    func reloadable() throws -> (allowed: Set<Key>?, level: Logger.Level) {
        let file = try config.map { try NodeFileSettings.read($0) } ?? NodeFileSettings()
        var allowed: Set<Key>?
        if let path = allow ?? file.allow {
            do { allowed = try GossipConfiguration.readAllowList(path: path) } catch { throw RuntimeError("--allow: \(plain(error))") }
        }
        let name = logLevel ?? file.logLevel ?? "info"
        guard let level = Logger.Level(rawValue: name) else { throw RuntimeError("--log-level: unknown level \"\(name)\"") }
        return (allowed, level)
    }
}

/// A node's resolved settings (a class: large values then never live in an async frame, which
/// this toolchain has mis-sized in debug builds).
final class NodePlan: Sendable {
    let configuration: GossipConfiguration
    let key: PrivateKey
    let community: PrivateKey?
    let logLevel: Logger.Level
    let metrics: String?
    let bridge: GRPCBridgeConfiguration?
    /// The control socket's path (nil: none); explicit when given by flag or file.
    let control: String?
    let controlExplicit: Bool
    let outputBound: Int
    let allowFile: String?
    let options: NodeOptions

    init(configuration: GossipConfiguration, key: PrivateKey, community: PrivateKey?, logLevel: Logger.Level,
         metrics: String?, bridge: GRPCBridgeConfiguration?, control: String?, controlExplicit: Bool,
         outputBound: Int, allowFile: String?, options: NodeOptions) {
        self.configuration = configuration; self.key = key; self.community = community
        self.logLevel = logLevel; self.metrics = metrics; self.bridge = bridge
        self.control = control; self.controlExplicit = controlExplicit
        self.outputBound = outputBound; self.allowFile = allowFile; self.options = options
    }
}

/// The configuration file: YAML, the flags' names without `--` as keys (`key-file`, `listen`,
/// `peer` as a list, …). Unknown keys are refused.
struct NodeFileSettings: Decodable {
    var keyFile: String?
    var listen: String?
    var peer: [String]?
    var allow: String?
    var community: String?
    var communityFile: String?
    var ttl: Int?
    var degree: Int?
    var leaf: Bool?
    var views: Bool?
    var preset: String?
    var advertise: String?
    var backlink: String?
    var discover: Bool?
    var discoverPort: Int?
    var batch: Bool?
    var routing: Bool?
    var logLevel: String?
    var metrics: String?
    var grpc: String?
    var grpcTls: [String]?
    var grpcQueue: Int?
    var grpcMaxStreams: Int?
    var grpcAllowPlaintext: Bool?
    var control: String?
    var outputQueue: Int?
    var publishTimeout: Double?
    var seenCapacity: Int?

    enum CodingKeys: String, CodingKey, CaseIterable {
        case keyFile = "key-file", listen, peer, allow, community, communityFile = "community-file", ttl, degree, leaf, views
        case preset, advertise, backlink, discover, discoverPort = "discover-port", batch, routing, logLevel = "log-level", metrics, grpc
        case grpcTls = "grpc-tls", grpcQueue = "grpc-queue", grpcMaxStreams = "grpc-max-streams", grpcAllowPlaintext = "grpc-allow-plaintext", control
        case outputQueue = "output-queue", publishTimeout = "publish-timeout", seenCapacity = "seen-capacity"
    }

    static func read(_ path: String) throws -> NodeFileSettings {
        let data = try readFile(path, what: "configuration file")
        guard let text = String(data: data, encoding: .utf8) else { throw RuntimeError("configuration file \(path) is not UTF-8 text") }
        if text.allSatisfy(\.isWhitespace) { return NodeFileSettings() }
        let top: Any?
        do { top = try Yams.load(yaml: text) } catch { throw RuntimeError("configuration file \(path): \(yamlReason(error))") }
        guard let map = top as? [String: Any] else {
            throw RuntimeError("configuration file \(path): expected a mapping of settings (key: value lines)")
        }
        let known = Set(CodingKeys.allCases.map(\.rawValue))
        if let unknown = map.keys.sorted().first(where: { !known.contains($0) }) {
            throw RuntimeError("configuration file \(path): unknown setting \"\(unknown)\" (known: \(CodingKeys.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        do { return try YAMLDecoder().decode(NodeFileSettings.self, from: text) } catch let e as DecodingError {
            throw RuntimeError("configuration file \(path): \(decodingReason(e))")
        } catch {
            throw RuntimeError("configuration file \(path): \(yamlReason(error))")
        }
    }

    private static func decodingReason(_ e: DecodingError) -> String {
        func path(_ c: [any CodingKey]) -> String { c.map(\.stringValue).joined(separator: ".") }
        switch e {
        case .typeMismatch(let t, let c): return "\(path(c.codingPath)) must be \(typeName(t))"
        case .valueNotFound(let t, let c): return "\(path(c.codingPath)) must be \(typeName(t))"
        case .keyNotFound(let k, _): return "\(k.stringValue) is missing"
        case .dataCorrupted(let c): return "\(path(c.codingPath)): \(c.debugDescription)"
        @unknown default: return "\(e)"
        }
    }

    private static func typeName(_ t: Any.Type) -> String {
        switch t {
        case is Int.Type: return "a whole number"
        case is Double.Type: return "a number"
        case is Bool.Type: return "true or false"
        case is String.Type: return "a string"
        case is [String].Type: return "a list of strings"
        default: return "\(t)"
        }
    }

    private static func yamlReason(_ error: any Error) -> String {
        if let y = error as? YamlError { return "not valid YAML: \(y)".replacingOccurrences(of: "\n", with: " ") }
        return describe(error)
    }
}
