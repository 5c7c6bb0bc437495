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
    /// Receive high-water mark of the bound SUB, per inbound connection; above it ZeroMQ stops
    /// reading that TCP stream, which pushes back to the sender's send HWM (counted there). With
    /// `ZMQ_MAXMSGSIZE` = 64 KiB (the largest legal body) it bounds what one neighbour can have
    /// queued here in bytes: 256 × 64 KiB = 16 MiB.
    public var receiveHighWaterMark: Int32 = 256
    /// Seed for the engine's random generator (peer choice, jitter); nil = random.
    public var randomSeed: UInt64?
    /// The node's own key pair for CurveZMQ (a Curve25519 key, like the signaling keys:
    /// `warren node` uses its signaling key). Required when `allowedKeys` is set.
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

    /// Parses `gossip://HOST:PORT?peer=tcp://…&peer=…&ttl=N&leaf=true&degree=N&preset=local|lan&advertise=tcp://…&discover=PORT&batch=false`.
    public init(url: URL) throws {
        guard url.scheme?.lowercased() == "gossip" else { throw GossipConfigurationError.invalid("scheme must be gossip://") }
        guard let comps = URLComponents(url: url, resolvingAgainstBaseURL: false),
              let host = comps.host, !host.isEmpty else {
            throw GossipConfigurationError.invalid("expected gossip://HOST:PORT, e.g. gossip://127.0.0.1:7001")
        }
        let port = comps.port.map(String.init) ?? "*"
        let h = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        let listen = "tcp://\(h):\(port)"
        var preset = "local"
        var peers: [String] = []
        var ttl: UInt8?, leaf = false, degree: Int?, advertise: String?
        var allowFile: String?, keyFile: String?, discover: UInt16?, batch = true
        for item in comps.queryItems ?? [] {
            let v = item.value ?? ""
            switch item.name {
            case "peer":
                _ = try PeerAddress(parsing: v)
                peers.append(v)
            case "ttl":
                guard let t = UInt8(v), t >= 1 else { throw GossipConfigurationError.invalid("ttl must be 1…16 (the overlay's maximum), got \"\(v)\"") }
                ttl = t
            case "leaf":
                guard let b = Bool(v) else { throw GossipConfigurationError.invalid("leaf must be true or false, got \"\(v)\"") }
                leaf = b
            case "degree":
                guard let d = Int(v), d >= 0, d <= 64 else { throw GossipConfigurationError.invalid("degree must be 0…64, got \"\(v)\"") }
                degree = d
            case "preset":
                guard v == "local" || v == "lan" else { throw GossipConfigurationError.invalid("preset must be local or lan, got \"\(v)\"") }
                preset = v
            case "advertise":
                try Self.checkEndpoint(v)
                advertise = v
            case "discover":
                guard let p = UInt16(v), p != 0 else { throw GossipConfigurationError.invalid("discover must be a UDP port 1…65535, got \"\(v)\"") }
                discover = p
            case "batch":
                guard let b = Bool(v) else { throw GossipConfigurationError.invalid("batch must be true or false, got \"\(v)\"") }
                batch = b
            case "allow":
                allowFile = v
            case "key":
                keyFile = v
            default:
                throw GossipConfigurationError.invalid("unknown option \"\(item.name)\" (known: peer, ttl, leaf, degree, preset, advertise, allow, key, discover, batch)")
            }
        }
        self = preset == "lan" ? .lan(listen: listen, peers: peers) : .local(listen: listen, peers: peers)
        self.advertise = advertise
        if let ttl {
            guard ttl <= engine.maxTTL else {
                throw GossipConfigurationError.invalid("ttl must be 1…\(engine.maxTTL) (the overlay's maximum), got \(ttl)")
            }
            self.ttl = ttl
        }
        if let degree { self.degree = degree }
        self.leaf = leaf
        self.discoveryPort = discover
        self.batching = batch
        if let allowFile { self.allowedKeys = try Self.readAllowList(path: allowFile) }
        if let keyFile {
            guard let text = try? String(contentsOfFile: keyFile, encoding: .utf8) else {
                throw GossipConfigurationError.invalid("cannot read key file \(keyFile)")
            }
            do { self.nodeKey = try PrivateKey(base64: text) } catch {
                throw GossipConfigurationError.invalid("key file \(keyFile): \(error)")
            }
        }
        try validate()
    }

    /// Checks that a closed overlay has a node key and keys for all its peers.
    public func validate() throws {
        for p in peers {
            let a = try PeerAddress(parsing: p)
            if isClosed && a.key == nil {
                throw GossipConfigurationError.invalid("a closed overlay (allow-list) needs each peer as KEY@tcp://HOST:PORT, got \"\(p)\"")
            }
        }
        if isClosed && nodeKey == nil {
            throw GossipConfigurationError.invalid("a closed overlay (allow-list) needs the node's key (key=FILE)")
        }
    }

    /// Reads an allow-list: one base64 public key per line; blank lines and `#` comments ignored.
    public static func readAllowList(path: String) throws -> Set<Key> {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw GossipConfigurationError.invalid("cannot read allow-list \(path)")
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
        return keys
    }

    /// A peer endpoint must be tcp://HOST:PORT with a numeric port.
    public static func checkEndpoint(_ e: String) throws {
        guard e.hasPrefix("tcp://"), let colon = e.lastIndex(of: ":"), colon > e.index(e.startIndex, offsetBy: 6),
              let port = Int(e[e.index(after: colon)...]), (1...65535).contains(port) else {
            throw GossipConfigurationError.invalid("peer endpoint must look like tcp://HOST:PORT, got \"\(e)\"")
        }
    }
}

public enum GossipConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalid(String)
    public var description: String { if case .invalid(let s) = self { return "invalid gossip configuration: \(s)" }; return "" }
}
