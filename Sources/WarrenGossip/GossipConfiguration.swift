import Foundation
import WarrenCore
import WarrenEngine

/// Everything that configures one gossip node: where it listens, whom it knows, and the engine's
/// tuning. Two documented presets: `.local` (one machine, loopback; fast failure detection) and
/// `.lan` (a local network; calmer timers). A `gossip://` URL is the same thing as a string.
public struct GossipConfiguration: Sendable {
    /// Where the node's SUB socket binds, `tcp://HOST:PORT`. Port `*` or `0` picks a free port.
    public var listen: String
    /// The endpoint other nodes should dial (defaults to the bound endpoint).
    public var advertise: String?
    /// Seed endpoints (`tcp://HOST:PORT`), kept connected with back-off.
    public var peers: [String]
    /// Engine tuning (the endpoint and seeds in it are filled from `listen`/`advertise`/`peers`).
    public var engine: EngineConfig
    /// Per-link send high-water mark (messages). Sized for bursts: 100,000 envelopes of ~300 B
    /// is ~30 MB per link at most. When reached, the frame is refused, dropped and counted.
    public var sendHighWaterMark: Int32 = 100_000
    /// Publishes that may wait for the node's thread (each holds its envelope, ≤ 64 KiB; typical
    /// ones are a few hundred bytes). Beyond it `GossipNode.publish` returns false and
    /// `GossipBackend.publish` throws `GossipPublishError.queueFull`: a caller that publishes
    /// faster than the node sends learns it instead of growing the queue without bound.
    public var publishQueueLimit = 65_536
    /// Receive high-water mark of the bound SUB, per inbound connection; above it ZeroMQ stops
    /// reading that TCP stream, which pushes back to the sender's send HWM (counted there). With
    /// `ZMQ_MAXMSGSIZE` = 64 KiB (the largest legal body) it bounds what one neighbour can have
    /// queued here in bytes: 256 × 64 KiB = 16 MiB.
    public var receiveHighWaterMark: Int32 = 256
    /// Seed for the engine's random generator (peer choice, jitter); nil = random.
    public var randomSeed: UInt64?
    /// The node's own key pair (a Curve25519 key, like the signaling keys: `warren node` uses
    /// its signaling key). A node with a key advertises itself as `KEY@tcp://HOST:PORT`, in an
    /// open overlay too, so that other nodes learn its public key (shown with its neighbours and
    /// members, and used to notice two nodes with one key); in a closed overlay it is the
    /// CurveZMQ key. Required when `allowedKeys` is set.
    public var nodeKey: PrivateKey?
    /// A closed overlay: only nodes whose public key is listed may connect to this node. Every
    /// link is then encrypted and authenticated with CurveZMQ, and peers must be given as
    /// `KEY@tcp://HOST:PORT`. nil (the default) is an open overlay.
    public var allowedKeys: Set<Key>?

    /// LAN discovery: broadcast a beacon on this UDP port every `beaconInterval` and dial the
    /// nodes heard there (docs/PROTOCOL.md §8). nil (the default) is off. Seeds and peer exchange
    /// work either way; beacons do not cross routers, VPNs or most cloud networks.
    public var discoveryPort: UInt16?
    /// Time between beacons (1 s).
    public var beaconInterval: UInt64 = 1_000_000_000
    /// The default discovery port (`warren node --discover`).
    public static let defaultDiscoveryPort: UInt16 = 5670

    /// Send consecutive frames for the same neighbour and topic as one BATCH message
    /// (docs/PROTOCOL.md §2, "Batches"); on by default. Turn it off in an overlay that still
    /// has nodes older than BATCH (they would count each batch as one malformed frame).
    /// Receiving batches is always on.
    public var batching = true

    /// Back-links (docs/PROTOCOL.md §1): a node that cannot be dialled (behind a NAT, or a
    /// firewall that lets only outbound connections through) opens one to the nodes it dials,
    /// and they send to it over that connection. This is where this node's back-link socket
    /// binds, `tcp://HOST:PORT`; nil (the default) is the listen host at a free port, which the
    /// node announces to every node that dials it. Name a port when a firewall or port forward
    /// in front of this node must let it through.
    public var backlink: String?
    /// False: no back-link socket (nodes that cannot be dialled then never receive from this one).
    public var backlinkEnabled = true

    /// True when links use CurveZMQ with an allow-list.
    public var isClosed: Bool { allowedKeys != nil }

    public init(listen: String, peers: [String] = [], engine: EngineConfig) {
        self.listen = listen
        self.peers = peers
        self.engine = engine
    }

    /// One machine: heartbeat 250 ms, dead after 1.5 s, back-off 100 ms … 2 s, degree 3, TTL 16.
    public static func local(listen: String = "tcp://127.0.0.1:*", peers: [String] = []) -> GossipConfiguration {
        GossipConfiguration(listen: listen, peers: peers, engine: .local(endpoint: listen, seeds: peers))
    }

    /// A LAN: heartbeat 1 s, dead after 5 s, back-off 500 ms … 30 s, degree 4, TTL 16.
    public static func lan(listen: String, peers: [String] = []) -> GossipConfiguration {
        GossipConfiguration(listen: listen, peers: peers, engine: .lan(endpoint: listen, seeds: peers))
    }

    /// ttl of published messages. Publishes are clamped to `engine.maxTTL` (16 in both presets),
    /// which is an overlay-wide limit: neighbours drop frames above their own maximum, so a node
    /// must not raise it alone. The URL and `warren node --ttl` refuse values above it.
    public var ttl: UInt8 {
        get { engine.defaultTTL }
        set { engine.defaultTTL = newValue }
    }
    public var leaf: Bool { get { engine.leaf } set { engine.leaf = newValue } }
    public var degree: Int { get { engine.targetDegree } set { engine.targetDegree = newValue } }
    /// Bounded views (`EngineConfig.views`, docs/PROTOCOL.md §6 "Views"; the default). Off: the
    /// membership rules before them (seeds kept forever, every inbound accepted).
    public var views: Bool { get { engine.views } set { engine.views = newValue } }

    /// How long `GossipBackend.publish` waits for a first neighbour before it gives up with
    /// `GossipPublishError.noNeighbour` (default 5 s; 0: do not wait).
    public var publishTimeout: Duration = .seconds(5)

    /// Sizes `seen-capacity` may take: below 1,024 ids an overlay's own copies of one burst
    /// would evict each other; above 4 Mi the cache alone takes about 128 MiB (≈ 32 bytes an id).
    public static let seenCapacityRange = 1_024...4_194_304

    /// Unicast routing (docs/PROTOCOL.md §9): unicast envelopes travel a path found by a location
    /// service on the overlay instead of being flooded; the flood stays the fallback. Off by default.
    public var routing: Bool { get { engine.routing } set { engine.routing = newValue } }

    /// Parses `gossip://HOST:PORT?peer=tcp://…&peer=…&ttl=N&leaf=true&degree=N&views=false&preset=local|lan&advertise=tcp://…&discover=PORT&batch=false&backlink=tcp://…|off&routing=true|false&seen=N`.
    public init(url: URL) throws {
        guard url.scheme?.lowercased() == "gossip" else { throw GossipConfigurationError.invalid("scheme must be gossip://") }
        guard let comps = URLComponents(url: url, resolvingAgainstBaseURL: false),
              let host = comps.host, !host.isEmpty else {
            throw GossipConfigurationError.invalid("expected gossip://HOST:PORT, e.g. gossip://127.0.0.1:7001")
        }
        let port = comps.port.map(String.init) ?? "*"
        let h = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        var s = GossipSettings(listen: "tcp://\(h):\(port)")
        var keyFile: String?
        for item in comps.queryItems ?? [] {
            let v = item.value ?? ""
            switch item.name {
            case "peer": s.peers.append(v)
            case "ttl": s.ttl = try Self.integer(v, "ttl")
            case "leaf": s.leaf = try Self.boolean(v, "leaf")
            case "degree": s.degree = try Self.integer(v, "degree")
            case "views": s.views = try Self.boolean(v, "views")
            case "preset": s.preset = v
            case "advertise": s.advertise = v
            case "discover": s.discover = true; s.discoveryPort = try Self.integer(v, "discover")
            case "batch": s.batching = try Self.boolean(v, "batch")
            case "routing": s.routing = try Self.boolean(v, "routing")
            case "seen": s.seenCapacity = try Self.integer(v, "seen")
            case "backlink": s.backlink = v
            case "allow": s.allowedKeys = try Self.readAllowList(path: v)
            case "key": keyFile = v
            default:
                throw GossipConfigurationError.invalid("unknown option \"\(item.name)\" (known: peer, ttl, leaf, degree, views, preset, advertise, allow, key, discover, batch, backlink, routing)")
            }
        }
        if let keyFile {
            guard let text = try? String(contentsOfFile: keyFile, encoding: .utf8) else {
                throw GossipConfigurationError.invalid("cannot read key file \(keyFile)")
            }
            do { s.nodeKey = try PrivateKey(base64: text) } catch {
                throw GossipConfigurationError.invalid("key file \(keyFile): \(error)")
            }
        }
        try self.init(settings: s, naming: .url)
    }

    private static func integer(_ v: String, _ name: String) throws -> Int {
        guard let n = Int(v) else { throw GossipConfigurationError.invalid("\(name) must be a number, got \"\(v)\"") }
        return n
    }

    private static func boolean(_ v: String, _ name: String) throws -> Bool {
        guard let b = Bool(v) else { throw GossipConfigurationError.invalid("\(name) must be true or false, got \"\(v)\"") }
        return b
    }

    /// Builds and checks a configuration from settings: the one place where a `gossip://` URL,
    /// `warren node`'s flags and its configuration file are validated. Errors name the setting
    /// as `naming` spells it (`ttl` in a URL, `--ttl` for flags).
    public init(settings s: GossipSettings, naming: GossipSettings.Naming = .url) throws {
        func name(_ n: String) -> String { naming.name(n) }
        func fail(_ n: String, _ rule: String) -> GossipConfigurationError { .invalid("\(name(n)) \(rule)") }
        guard s.preset == "local" || s.preset == "lan" else { throw fail("preset", "must be local or lan, got \"\(s.preset)\"") }
        let listen: TCPEndpoint
        do { listen = try TCPEndpoint(parsing: s.listen, for: .listen) } catch { throw fail("listen", "\(Self.reason(error))") }
        for p in s.peers {
            do { _ = try PeerAddress(parsing: p) } catch { throw fail("peer", "\(Self.reason(error))") }
        }
        self = s.preset == "lan" ? .lan(listen: listen.description, peers: s.peers) : .local(listen: listen.description, peers: s.peers)
        if let a = s.advertise {
            let e: TCPEndpoint
            do { e = try TCPEndpoint(parsing: a, for: .dial) } catch { throw fail("advertise", "\(Self.reason(error))") }
            if !e.isLiteral {
                do { _ = try TCPEndpoint.resolve(e.host) } catch { throw fail("advertise", "\(Self.reason(error))") }
            }
            advertise = e.description
        } else if listen.isUnspecified && TCPEndpoint.interfaceAddress(ipv6: listen.isIPv6) == nil {
            throw fail("listen", "\(s.listen) listens on every interface, but no interface has an address others could dial: give \(name("advertise")) tcp://HOST:PORT")
        }
        if let ttl = s.ttl {
            guard ttl >= 1 && ttl <= Int(engine.maxTTL) else {
                throw fail("ttl", "must be 1…\(engine.maxTTL) (the overlay's maximum; neighbours drop frames above it), got \(ttl)")
            }
            self.ttl = UInt8(ttl)
        }
        if let d = s.degree {
            guard d >= 0 && d <= 64 else { throw fail("degree", "must be 0…64, got \(d)") }
            degree = d
        }
        leaf = s.leaf
        views = s.views
        if let p = s.discoveryPort {
            guard s.discover else { throw fail("discover-port", "needs \(name("discover"))") }
            guard p >= 1 && p <= 65535 else { throw fail("discover-port", "must be a UDP port 1…65535, got \(p)") }
        }
        if s.discover { discoveryPort = UInt16(s.discoveryPort ?? Int(Self.defaultDiscoveryPort)) }
        batching = s.batching
        routing = s.routing
        if let b = s.backlink {
            if b == "off" {
                backlinkEnabled = false
            } else {
                let e: TCPEndpoint
                do {
                    e = try TCPEndpoint(parsing: b, for: .listen)
                    if !e.isLiteral { _ = try TCPEndpoint.resolve(e.host) }
                } catch {
                    throw fail("backlink", "must be tcp://HOST:PORT or off: \(Self.reason(error))")
                }
                backlink = e.description
            }
        }
        if let n = s.seenCapacity {
            guard Self.seenCapacityRange.contains(n) else {
                throw fail("seen-capacity", "must be \(Self.seenCapacityRange.lowerBound)…\(Self.seenCapacityRange.upperBound) message ids, got \(n)")
            }
            engine.seenCapacity = n
        }
        if let t = s.publishTimeout {
            guard t >= 0 && t <= 3600 else { throw fail("publish-timeout", "must be 0…3600 seconds, got \(t)") }
            publishTimeout = .milliseconds(Int64((t * 1000).rounded()))
        }
        if let keys = s.allowedKeys {
            guard !keys.isEmpty else {
                throw fail("allow", "lists no keys: a closed overlay with an empty allow-list would refuse every node")
            }
            allowedKeys = keys
        }
        nodeKey = s.nodeKey
        try validate(naming: naming)
    }

    /// Checks that a closed overlay has a node key and keys for all its peers, and that an open
    /// one names no peer keys.
    public func validate(naming: GossipSettings.Naming = .url) throws {
        for p in peers {
            let a: PeerAddress
            do { a = try PeerAddress(parsing: p) } catch { throw GossipConfigurationError.invalid("\(naming.name("peer")) \(Self.reason(error))") }
            if isClosed && a.key == nil {
                throw GossipConfigurationError.invalid("a closed overlay (\(naming.name("allow"))) needs each peer as KEY@tcp://HOST:PORT, got \"\(p)\"")
            }
            if !isClosed && a.key != nil {
                throw GossipConfigurationError.invalid("\(naming.name("peer")) \"\(p)\" names a node key, which only a closed overlay checks: give \(naming.name("allow")) FILE, or the peer without KEY@")
            }
        }
        if isClosed && nodeKey == nil {
            throw GossipConfigurationError.invalid("a closed overlay (allow-list) needs the node's key (key=FILE)")
        }
    }

    /// The text of a configuration error without its "invalid gossip configuration" prefix.
    static func reason(_ error: any Error) -> String {
        if case .invalid(let s)? = error as? GossipConfigurationError { return s }
        return "\(error)"
    }

    /// Reads an allow-list: one base64 public key per line; blank lines and `#` comments ignored.
    /// A list with no key is refused (it would shut every node out).
    public static func readAllowList(path: String) throws -> Set<Key> {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            let fm = FileManager.default
            let why = !fm.fileExists(atPath: path) ? "no such file" : !fm.isReadableFile(atPath: path) ? "permission denied" : "not UTF-8 text"
            throw GossipConfigurationError.invalid("cannot read allow-list \(path): \(why)")
        }
        var keys = Set<Key>()
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)?
                .trimmingCharacters(in: .whitespaces) ?? ""
            if line.isEmpty { continue }
            do { keys.insert(try Key(base64: line)) } catch {
                throw GossipConfigurationError.invalid("allow-list \(path) line \(n + 1): \(error)")
            }
        }
        guard !keys.isEmpty else {
            throw GossipConfigurationError.invalid("allow-list \(path) lists no keys: a closed overlay with an empty allow-list would refuse every node")
        }
        return keys
    }

    /// A peer endpoint must be tcp://HOST:PORT with a port 1…65535 (`TCPEndpoint`).
    public static func checkEndpoint(_ e: String) throws {
        _ = try TCPEndpoint(parsing: e, for: .dial)
    }
}

/// The settings of one node as a `gossip://` URL, `warren node`'s flags or its configuration
/// file give them, unchecked: `GossipConfiguration(settings:naming:)` checks and builds.
public struct GossipSettings: Sendable {
    public var listen: String
    public var advertise: String?
    public var peers: [String] = []
    /// `local` or `lan`.
    public var preset = "local"
    public var ttl: Int?
    public var degree: Int?
    /// `GossipConfiguration.views`.
    public var views = true
    public var leaf = false
    public var discover = false
    /// With `discover` only; nil: the default port.
    public var discoveryPort: Int?
    public var batching = true
    /// `GossipConfiguration.routing` (off by default).
    public var routing = false
    /// `tcp://HOST:PORT`, or `off` (`GossipConfiguration.backlink`); nil: the default.
    public var backlink: String?
    /// Seconds (`GossipConfiguration.publishTimeout`).
    public var publishTimeout: Double?
    /// Message ids the de-duplication cache holds (`EngineConfig.seenCapacity`); nil: the preset's.
    public var seenCapacity: Int?
    public var allowedKeys: Set<Key>?
    public var nodeKey: PrivateKey?

    public init(listen: String) { self.listen = listen }

    /// How errors name a setting.
    public enum Naming: Sendable {
        /// `ttl`, `peer` (a `gossip://` URL's query).
        case url
        /// `--ttl`, `--peer` (command-line flags and the configuration file's keys).
        case flags

        public func name(_ setting: String) -> String {
            switch self {
            case .url:
                switch setting {
                case "listen": return "the URL's HOST:PORT"
                case "discover-port": return "discover"
                case "seen-capacity": return "seen"
                default: return setting
                }
            case .flags: return "--" + setting
            }
        }
    }
}

public enum GossipConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalid(String)
    public var description: String { if case .invalid(let s) = self { return "invalid gossip configuration: \(s)" }; return "" }
}
