import WarrenEngine

/// The tests' network of `GossipEngine`s: a `Simulator` run on one shard on the caller's
/// thread, with the whole `NetworkModel` on — every link its own inbound connection (`via`),
/// everything each node saw recorded — and per-frame jitter, loss and duplication as options.
/// The socket model is the simulator's (docs/PROTOCOL.md §1):
///
/// - each node has one bound SUB (at its endpoint) with prefix subscriptions; a frame whose
///   topic matches none of them is dropped *at the sender* (counted in `filteredAtSender`);
/// - `.connect` opens a link to an endpoint; if a live node is there, `linkReady` follows
///   after one link latency; if not, nothing happens until a node starts at that endpoint
///   (then every link pointing there becomes ready, like ZeroMQ's reconnect);
/// - a frame sent on a link reaches the node only if the link is ready for that node's
///   current incarnation (an XPUB without the subscription drops);
/// - per-link latency (drawn once per link from the node's seeded generator), per-frame jitter
///   (reordering), loss, duplication;
/// - kill (no BYE), graceful stop (BYE), restart (new `NodeID`, same endpoint);
/// - a step budget: a protocol that never quiesces fails (`budgetExceeded`) instead of hanging.
public struct InMemoryNetwork {
    public struct Options: Sendable {
        /// Latency of a link, drawn once per link (a single value = fixed latency).
        public var latency: ClosedRange<UInt64> = 1_000_000...1_000_000
        /// Extra per-frame delay, uniform in 0...jitter (reorders frames on a link).
        public var jitter: UInt64 = 0
        /// Probability a frame is lost.
        public var loss: Double = 0
        /// Probability a frame is delivered twice (the copy with its own extra delay).
        public var duplication: Double = 0
        /// Maximum events processed over the network's life.
        public var stepBudget: Int = 5_000_000
        public init() {}
    }

    /// One delivery recorded at a node.
    public struct Delivery: Sendable, Hashable {
        public var topic: Topic
        public var id: MessageID
        public var hops: UInt8
        public var time: UInt64
        public var envelope: [UInt8]
    }

    /// A membership event recorded at a node.
    public enum PeerEvent: Sendable, Hashable {
        case up(NodeID, time: UInt64)
        case down(NodeID, PeerDownReason, time: UInt64)
    }

    /// One node as the network sees it.
    public struct Node {
        public let endpoint: String
        public let config: EngineConfig
        /// Its engine while it runs.
        public let engine: GossipEngine?
        /// 1 from its first start, one more at each restart (0: never started).
        public let incarnation: UInt32
        /// What it saw.
        public let record: NodeRecord
        /// Its SUB's subscriptions ("" for everything).
        public let subscriptions: [[UInt8]]

        public var alive: Bool { engine != nil }
        public var nodeID: NodeID? { engine?.nodeID }
        public var deliveries: [Delivery] { record.deliveries }
        public var peerEvents: [PeerEvent] { record.peerEvents }
        public var connects: [(time: UInt64, endpoint: String)] { record.connects }
        public var framesReceived: Int { record.framesReceived }
        public var dataFramesReceived: Int { record.dataFramesReceived }
        public var framesSent: Int { record.framesSent }
        public var dataFramesSent: Int { record.dataFramesSent }
    }

    public let options: Options
    var sim: Simulator

    public init(seed: UInt64, options: Options = Options()) {
        self.options = options
        let lo = options.latency.lowerBound, hi = max(options.latency.upperBound, lo)
        sim = Simulator(seed: seed, latency: hi > lo ? .uniform(lo...hi) : .fixed(lo), loss: options.loss, threads: 1)
        sim.stepBudget = options.stepBudget
        sim.model.jitter = options.jitter
        sim.model.duplication = options.duplication
        sim.model.connectionIDs = true
        sim.model.recording = true
    }

    public var now: UInt64 { sim.now }
    public var steps: Int { sim.steps }
    public var budgetExceeded: Bool { sim.budgetExceeded }
    /// Link-sends attempted / lost / filtered at the sender / dropped because the link was not
    /// ready.
    public var framesSent: Int { sim.controlFramesSent + sim.dataFramesSent }
    public var framesLost: Int { sim.framesLost }
    public var filteredAtSender: Int { sim.filteredAtSender }
    public var droppedNotReady: Int { sim.droppedNotReady }

    /// Every node, each built when read (`nodes[i]` builds node i only).
    public var nodes: Nodes { Nodes(net: self) }

    public struct Nodes: RandomAccessCollection {
        let net: InMemoryNetwork
        public var startIndex: Int { 0 }
        public var endIndex: Int { net.sim.nodeCount }
        public subscript(i: Int) -> Node { net.node(i) }
    }

    public func node(_ i: Int) -> Node {
        Node(endpoint: sim.endpoints[i], config: sim.configs[i], engine: engine(i), incarnation: sim.incarnation[i],
             record: sim.records[i], subscriptions: (sim.reach[i] & SimReach.all != 0 ? [[]] : []) + sim.prefixes[i])
    }

    // MARK: - Topology

    /// Adds a node (started at once unless `start` is false). Returns its index.
    @discardableResult
    public mutating func addNode(config: EngineConfig, start: Bool = true) -> Int {
        sim.addNode(config: config, start: start)
    }

    /// Makes `alias` resolve to the node listening at `endpoint` (like "localhost" vs "127.0.0.1").
    public mutating func alias(_ alias: String, to endpoint: String) { sim.model.aliases[alias] = endpoint }

    /// Starts (or restarts, after kill/stop) node `i` with a new NodeID at the same endpoint.
    public mutating func start(_ i: Int) { sim.start(i) }

    /// Restart = kill (if alive) + start.
    public mutating func restart(_ i: Int) { sim.restart(i) }

    /// Kills node `i` without BYE; its in-flight frames are lost.
    public mutating func kill(_ i: Int) { sim.kill(i) }

    /// Stops node `i` gracefully (BYE), then kills it.
    public mutating func stop(_ i: Int) { sim.stop(i) }

    public func engine(_ i: Int) -> GossipEngine? { sim.alive[i] ? sim.engines[i] : nil }

    // MARK: - Application calls

    @discardableResult
    public mutating func publish(from i: Int, topic: Topic, envelope: [UInt8], ttl: UInt8? = nil) -> MessageID {
        sim.publish(from: i, topic: topic, envelope: envelope, ttl: ttl)
        return MessageID(envelope: envelope)
    }

    public mutating func subscribe(_ i: Int, _ topic: Topic) { sim.subscribe(i, topic) }

    public mutating func unsubscribe(_ i: Int, _ topic: Topic) { sim.unsubscribe(i, topic) }

    /// Hands a raw 2-part message to node `i` now (bypassing links). `via` names the inbound
    /// connection it arrives on (an outsider's own connection, say); nil: the engine cannot tell.
    public mutating func inject(to i: Int, topic: [UInt8], body: [UInt8], via: ConnectionID? = nil) {
        sim.inject(to: i, topic: topic, body: body, via: via)
    }

    /// The inbound connection at node `to` of `from`'s link `link` (nil if it never carried a frame).
    public func connection(from: Int, link: LinkID, to: Int) -> ConnectionID? {
        sim.connection(from: from, link: link, to: to)
    }

    /// Cuts the network: node i is in group `groups[i]` (nodes past the end in group 0), and
    /// frames between groups are lost until `heal()`.
    public mutating func partition(_ groups: [Int32]) { sim.model.groups = groups }

    /// Ends a partition.
    public mutating func heal() { sim.model.groups = [] }

    /// Node `i` hears a LAN discovery beacon now (as if broadcast on its network).
    public mutating func discover(to i: Int, _ beacon: Beacon) {
        sim.discover(to: i, endpoint: beacon.endpoint, node: beacon.nodeID)
    }

    // MARK: - Running

    /// Processes events up to and including `time`. Returns false if the step budget ran out.
    @discardableResult
    public mutating func run(until time: UInt64) -> Bool { sim.run(until: time) }

    @discardableResult
    public mutating func run(for duration: UInt64) -> Bool { run(until: now &+ duration) }

    /// The node ids of node `i`'s neighbours (empty if it is not running).
    public func neighbourIDs(_ i: Int) -> Set<NodeID> {
        Set(engine(i)?.neighbours.map(\.nodeID) ?? [])
    }
}
