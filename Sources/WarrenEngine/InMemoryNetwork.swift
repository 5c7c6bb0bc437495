/// A deterministic in-memory network of `GossipEngine`s with virtual time, for tests and
/// simulations. It emulates the ZeroMQ socket model the engine assumes:
///
/// - each node has one bound SUB (at its endpoint) with prefix subscriptions; a frame whose
///   topic matches none of them is dropped *at the sender* (counted in `filteredAtSender`);
/// - `.connect` opens a link to an endpoint; if a live node is there, `linkReady` follows
///   after one link latency; if not, nothing happens until a node starts at that endpoint
///   (then every link pointing there becomes ready, like ZeroMQ's reconnect);
/// - a frame sent on a link reaches the node only if the link is ready for that node's
///   current incarnation (an XPUB without the subscription drops);
/// - per-link latency (fixed or drawn per link from the seeded generator), per-frame jitter
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

    public struct Node {
        public let endpoint: String
        public var config: EngineConfig
        public internal(set) var engine: GossipEngine?
        public internal(set) var incarnation = 0
        public internal(set) var deliveries: [Delivery] = []
        public internal(set) var peerEvents: [PeerEvent] = []
        /// (time, endpoint) of every `.connect`.
        public internal(set) var connects: [(time: UInt64, endpoint: String)] = []
        /// Frames that arrived at this node's SUB / DATA frames among them.
        public internal(set) var framesReceived = 0
        public internal(set) var dataFramesReceived = 0
        /// Link-sends by this node / DATA link-sends.
        public internal(set) var framesSent = 0
        public internal(set) var dataFramesSent = 0
        public internal(set) var subscriptions: [[UInt8]] = []
        var links: [LinkID: OutLink] = [:]
        var tickAt: UInt64?
        var tickGeneration: UInt64 = 0
        public var alive: Bool { engine != nil }
        public var nodeID: NodeID? { engine?.nodeID }
    }

    struct OutLink {
        var target: String
        var latency: UInt64
        var readyIncarnation: Int?
    }

    enum EventKind {
        case tick(node: Int, generation: UInt64)
        case ready(node: Int, incarnation: Int, link: LinkID, targetIncarnation: Int)
        case frame(node: Int, incarnation: Int, topic: [UInt8], body: [UInt8], via: ConnectionID?)
    }

    struct Event {
        var time: UInt64
        var seq: UInt64
        var kind: EventKind
        func before(_ o: Event) -> Bool { time != o.time ? time < o.time : seq < o.seq }
    }

    public var options: Options
    public private(set) var now: UInt64 = 0
    public private(set) var nodes: [Node] = []
    public private(set) var steps = 0
    public private(set) var budgetExceeded = false
    /// Link-sends attempted / delivered into the event queue / lost / filtered at the sender /
    /// dropped because the link was not ready.
    public private(set) var framesSent = 0
    public private(set) var framesLost = 0
    public private(set) var filteredAtSender = 0
    public private(set) var droppedNotReady = 0

    var rng: SeededGenerator
    var heap: [Event] = []
    var seq: UInt64 = 0
    var byEndpoint: [String: Int] = [:]
    var aliases: [String: String] = [:]
    var scratch: [Action] = []
    /// The inbound connection of each (sender, its incarnation, link, target incarnation): what
    /// a ZeroMQ SUB would see as one TCP connection. Ids start at 1.
    var connections: [ConnectionKey: ConnectionID] = [:]
    struct ConnectionKey: Hashable { var node: Int; var incarnation: Int; var link: LinkID; var target: Int }

    public init(seed: UInt64, options: Options = Options()) {
        self.rng = SeededGenerator(seed: seed)
        self.options = options
    }

    // MARK: - Topology

    /// Adds a node (started at once unless `start` is false). Returns its index.
    @discardableResult
    public mutating func addNode(config: EngineConfig, start: Bool = true) -> Int {
        let i = nodes.count
        nodes.append(Node(endpoint: config.endpoint, config: config))
        byEndpoint[config.endpoint] = i
        if start { self.start(i) }
        return i
    }

    /// Makes `alias` resolve to the node listening at `endpoint` (like "localhost" vs "127.0.0.1").
    public mutating func alias(_ alias: String, to endpoint: String) { aliases[alias] = endpoint }

    /// Starts (or restarts, after kill/stop) node `i` with a new NodeID at the same endpoint.
    public mutating func start(_ i: Int) {
        guard nodes[i].engine == nil else { return }
        nodes[i].incarnation += 1
        nodes[i].links = [:]
        nodes[i].subscriptions = []
        nodes[i].tickAt = nil
        nodes[i].tickGeneration &+= 1
        let id = NodeID.random(using: &rng)
        nodes[i].engine = GossipEngine(config: nodes[i].config, nodeID: id)
        let inc = nodes[i].incarnation
        // Every link pointing at this endpoint reconnects (ZeroMQ keeps retrying).
        for j in nodes.indices where j != i && nodes[j].alive {
            for (l, link) in nodes[j].links where link.target == nodes[i].endpoint {
                push(now &+ link.latency, .ready(node: j, incarnation: nodes[j].incarnation, link: l, targetIncarnation: inc))
            }
        }
        // Self-links too.
        for (l, link) in nodes[i].links where link.target == nodes[i].endpoint {
            push(now &+ link.latency, .ready(node: i, incarnation: inc, link: l, targetIncarnation: inc))
        }
        drive(i) { e, now, rng, a in e.start(now: now, rng: &rng, into: &a) }
    }

    /// Restart = kill (if alive) + start.
    public mutating func restart(_ i: Int) {
        kill(i)
        start(i)
    }

    /// Kills node `i` without BYE; its in-flight frames are lost.
    public mutating func kill(_ i: Int) {
        guard nodes[i].alive else { return }
        nodes[i].engine = nil
        nodes[i].links = [:]
        nodes[i].subscriptions = []
        nodes[i].incarnation += 1
    }

    /// Stops node `i` gracefully (BYE), then kills it.
    public mutating func stop(_ i: Int) {
        drive(i) { e, now, _, a in e.stop(now: now, into: &a) }
        kill(i)
    }

    public func engine(_ i: Int) -> GossipEngine? { nodes[i].engine }

    // MARK: - Application calls

    @discardableResult
    public mutating func publish(from i: Int, topic: Topic, envelope: [UInt8], ttl: UInt8? = nil) -> MessageID {
        drive(i) { e, now, rng, a in e.publish(topic: topic, envelope: envelope, ttl: ttl, now: now, rng: &rng, into: &a) }
        return MessageID(envelope: envelope)
    }

    public mutating func subscribe(_ i: Int, _ topic: Topic) {
        drive(i) { e, _, _, a in e.subscribeLocal(topic, into: &a) }
    }

    public mutating func unsubscribe(_ i: Int, _ topic: Topic) {
        drive(i) { e, _, _, a in e.unsubscribeLocal(topic, into: &a) }
    }

    /// Hands a raw 2-part message to node `i` now (bypassing links). `via` names the inbound
    /// connection it arrives on (an outsider's own connection, say); nil: the engine cannot tell.
    public mutating func inject(to i: Int, topic: [UInt8], body: [UInt8], via: ConnectionID? = nil) {
        drive(i) { e, now, rng, a in e.receive(topic: topic, body: body, via: via, now: now, rng: &rng, into: &a) }
    }

    /// The inbound connection at node `to` of `from`'s link `link` (nil if it never carried a frame).
    public func connection(from: Int, link: LinkID, to: Int) -> ConnectionID? {
        connections[ConnectionKey(node: from, incarnation: nodes[from].incarnation, link: link, target: nodes[to].incarnation)]
    }

    /// Node `i` hears a LAN discovery beacon now (as if broadcast on its network).
    public mutating func discover(to i: Int, _ beacon: Beacon) {
        drive(i) { e, now, rng, a in e.discovered(endpoint: beacon.endpoint, node: beacon.nodeID, now: now, rng: &rng, into: &a) }
    }

    // MARK: - Running

    /// Processes events up to and including `time`. Returns false if the step budget ran out.
    @discardableResult
    public mutating func run(until time: UInt64) -> Bool {
        while let top = heap.first, top.time <= time {
            if steps >= options.stepBudget {
                budgetExceeded = true
                return false
            }
            steps += 1
            let ev = popEvent()
            now = max(now, ev.time)
            dispatch(ev.kind)
        }
        now = max(now, time)
        return true
    }

    @discardableResult
    public mutating func run(for duration: UInt64) -> Bool { run(until: now &+ duration) }

    /// Indices of nodes whose neighbour set contains node `j`.
    public func neighbourIDs(_ i: Int) -> Set<NodeID> {
        Set(nodes[i].engine?.neighbours.map(\.nodeID) ?? [])
    }

    // MARK: - Internals

    mutating func dispatch(_ kind: EventKind) {
        switch kind {
        case .tick(let i, let g):
            guard nodes[i].alive, nodes[i].tickGeneration == g else { return }
            nodes[i].tickAt = nil
            drive(i) { e, now, rng, a in e.tick(now: now, rng: &rng, into: &a) }
        case .ready(let i, let inc, let l, let tinc):
            guard nodes[i].alive, nodes[i].incarnation == inc, let link = nodes[i].links[l],
                  let t = resolve(link.target), nodes[t].alive, nodes[t].incarnation == tinc,
                  link.readyIncarnation != tinc else { return }
            nodes[i].links[l]?.readyIncarnation = tinc
            drive(i) { e, now, rng, a in e.linkReady(l, now: now, rng: &rng, into: &a) }
        case .frame(let i, let inc, let topic, let body, let via):
            guard nodes[i].alive, nodes[i].incarnation == inc else { return }
            nodes[i].framesReceived += 1
            if body.count > 1 && body[1] == Frame.TypeCode.data.rawValue { nodes[i].dataFramesReceived += 1 }
            drive(i) { e, now, rng, a in e.receive(topic: topic, body: body, via: via, now: now, rng: &rng, into: &a) }
        }
    }

    func resolve(_ endpoint: String) -> Int? { byEndpoint[aliases[endpoint] ?? endpoint] }

    /// Runs one engine input and performs its actions.
    mutating func drive(_ i: Int, _ body: (inout GossipEngine, UInt64, inout SeededGenerator, inout [Action]) -> Void) {
        guard var engine = nodes[i].engine else { return }
        nodes[i].engine = nil  // keep the engine's storage uniquely referenced
        var actions = scratch
        scratch = []
        actions.removeAll(keepingCapacity: true)
        var r = rng
        body(&engine, now, &r, &actions)
        rng = r
        nodes[i].engine = engine
        for a in actions { perform(a, at: i) }
        scratch = actions
        scheduleTick(i)
    }

    mutating func scheduleTick(_ i: Int) {
        guard let d = nodes[i].engine?.nextDeadline else { return }
        let t = max(d, now)
        if let at = nodes[i].tickAt, at <= t { return }
        nodes[i].tickGeneration &+= 1
        nodes[i].tickAt = t
        push(t, .tick(node: i, generation: nodes[i].tickGeneration))
    }

    mutating func perform(_ action: Action, at i: Int) {
        switch action {
        case .connect(let l, let endpoint):
            let lo = options.latency.lowerBound, hi = max(options.latency.upperBound, lo)
            let latency = hi > lo ? lo + rng.next(upperBound: hi - lo + 1) : lo
            let target = aliases[endpoint] ?? endpoint
            nodes[i].links[l] = OutLink(target: target, latency: latency, readyIncarnation: nil)
            nodes[i].connects.append((now, endpoint))
            if let t = byEndpoint[target], nodes[t].alive {
                push(now &+ latency, .ready(node: i, incarnation: nodes[i].incarnation, link: l,
                                            targetIncarnation: nodes[t].incarnation))
            }
        case .disconnect(let l):
            nodes[i].links[l] = nil
        case .send(let ls, let frame):
            let topic = frame.topic.bytes
            let isData = !frame.topic.isControl
            for l in ls {
                framesSent += 1
                nodes[i].framesSent += 1
                if isData { nodes[i].dataFramesSent += 1 }
                guard let link = nodes[i].links[l], let t = byEndpoint[link.target], nodes[t].alive,
                      link.readyIncarnation == nodes[t].incarnation else {
                    droppedNotReady += 1
                    continue
                }
                guard nodes[t].subscriptions.contains(where: { frame.topic.hasPrefix($0) }) else {
                    filteredAtSender += 1
                    continue
                }
                if options.loss > 0 && Double.random(in: 0..<1, using: &rng) < options.loss {
                    framesLost += 1
                    continue
                }
                let inc = nodes[t].incarnation
                let key = ConnectionKey(node: i, incarnation: nodes[i].incarnation, link: l, target: inc)
                let via: ConnectionID
                if let c = connections[key] { via = c } else {
                    via = ConnectionID(raw: UInt64(connections.count + 1))
                    connections[key] = via
                }
                let extra = options.jitter > 0 ? rng.next(upperBound: options.jitter + 1) : 0
                push(now &+ link.latency &+ extra, .frame(node: t, incarnation: inc, topic: topic, body: frame.body, via: via))
                if options.duplication > 0 && Double.random(in: 0..<1, using: &rng) < options.duplication {
                    let extra2 = rng.next(upperBound: max(options.jitter, link.latency) + 1)
                    push(now &+ link.latency &+ extra2, .frame(node: t, incarnation: inc, topic: topic, body: frame.body, via: via))
                }
            }
        case .deliver(let topic, let envelope, let hops, let id):
            nodes[i].deliveries.append(Delivery(topic: topic, id: id, hops: hops, time: now, envelope: envelope))
        case .subscribe(let prefix):
            nodes[i].subscriptions.append(prefix)
        case .unsubscribe(let prefix):
            if let k = nodes[i].subscriptions.firstIndex(of: prefix) { nodes[i].subscriptions.remove(at: k) }
        case .peerUp(let n):
            nodes[i].peerEvents.append(.up(n.nodeID, time: now))
        case .peerDown(let n, let reason):
            nodes[i].peerEvents.append(.down(n.nodeID, reason, time: now))
        }
    }

    // Binary min-heap on (time, seq).
    mutating func push(_ time: UInt64, _ kind: EventKind) {
        seq &+= 1
        heap.append(Event(time: time, seq: seq, kind: kind))
        var c = heap.count - 1
        while c > 0 {
            let p = (c - 1) / 2
            guard heap[c].before(heap[p]) else { break }
            heap.swapAt(c, p)
            c = p
        }
    }

    mutating func popEvent() -> Event {
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var p = 0
            while true {
                let l = 2 * p + 1, r = l + 1
                var m = p
                if l < heap.count && heap[l].before(heap[m]) { m = l }
                if r < heap.count && heap[r].before(heap[m]) { m = r }
                if m == p { break }
                heap.swapAt(p, m)
                p = m
            }
        }
        return top
    }
}
