import Foundation
import Logging
import Synchronization
import WarrenCore
import WarrenEngine

/// What a node reports to its owner. Called on the node's driver thread: return quickly.
public struct GossipNodeCallbacks: Sendable {
    /// A first-seen envelope for a local topic.
    public var deliver: @Sendable (_ topic: Topic, _ envelope: [UInt8], _ hops: UInt8, _ id: MessageID) -> Void
    /// A neighbour came up (true) or went down (false).
    public var peer: @Sendable (_ neighbour: Neighbour, _ up: Bool, _ reason: PeerDownReason?) -> Void

    public init(deliver: @escaping @Sendable (Topic, [UInt8], UInt8, MessageID) -> Void = { _, _, _, _ in },
                peer: @escaping @Sendable (Neighbour, Bool, PeerDownReason?) -> Void = { _, _, _ in }) {
        self.deliver = deliver
        self.peer = peer
    }
}

/// Counters of the ZeroMQ driver, beside the engine's.
public struct NodeStats: Sendable {
    /// Frames refused by a link's send high-water mark (dropped, counted).
    public var hwmDrops: UInt64 = 0
    /// Inbound ZeroMQ messages that were not exactly 2 parts.
    public var badMultipart: UInt64 = 0
    /// Closed overlay: handshakes refused because the client key is not on the allow-list.
    public var refused: UInt64 = 0
    /// Inbound frames dropped because their neighbour exceeded its rate limit.
    public var rateLimited: UInt64 = 0
    public var engine = EngineStats()
    public var neighbours: [Neighbour] = []
    public var knownEndpoints: [String] = []
    public var seenEntries = 0
    public var links = 0
    /// BATCH messages sent (several frames for one link and topic in one ZeroMQ message), and
    /// the frames they carried.
    public var batchesSent: UInt64 = 0
    public var batchedFrames: UInt64 = 0
    /// Every known node (endpoint, node id, dial failures, BYE), and when each neighbour was
    /// last heard from (engine time, `monotonicNanos`).
    public var knownNodes: [KnownNode] = []
    public var lastHeard: [NodeID: UInt64] = [:]
    /// Closed overlay: frames dropped because their connection's key left the allow-list.
    public var unadmittedFrames: UInt64 = 0
    /// Back-links (docs/PROTOCOL.md §1): links of ours carried on a back-link another node opened
    /// (it cannot be dialled), back-links we have open to nodes we dial, and frames a back-link
    /// could not take (counted in `hwmDrops` too).
    public var backlinksCarried = 0
    public var backlinksOpen = 0
    public var backlinkDrops: UInt64 = 0
    /// Messages to the back-link socket that named no back-link, and routes dropped or refused
    /// because the route table was full.
    public var backlinksRefused: UInt64 = 0
    /// Publishes refused because `GossipConfiguration.publishQueueLimit` were waiting for the
    /// node's thread.
    public var queueFull: UInt64 = 0
    public init() {}
}

/// One overlay node: the sans-I/O `GossipEngine` and its transport (ZeroMQ: a bound SUB socket,
/// one XPUB link per neighbour), all owned by one driver thread that waits on the transport and
/// runs the engine (`DriverLoop`). The public API is thread-safe; commands are queued to the
/// driver thread.
public final class GossipNode: Sendable {
    enum Command {
        case publish(Topic, [UInt8], UInt8?)
        case subscribe(Topic, CheckedContinuation<Void, Never>?)
        case unsubscribe(Topic, CheckedContinuation<Void, Never>?)
        case stats(CheckedContinuation<NodeStats, Never>)
        case allowList(Set<Key>)
        case stop
    }

    /// Commands for the driver thread; `closed` once it has finished and closed its wake-up.
    /// `publishes` counts the queued publishes, at most `publishQueueLimit`.
    private let queue = Mutex<(commands: [Command], publishes: Int, closed: Bool)>(([], 0, false))
    private let publishQueueLimit: Int
    /// Publishes refused because `publishQueueLimit` were waiting for the driver thread.
    private let queueFull = Atomic<UInt64>(0)
    var queueFullCount: UInt64 { queueFull.load(ordering: .relaxed) }
    private let wakePending = Atomic<Bool>(false)
    /// Wakes the driver thread out of its transport's `wait` (ZeroMQ: a pipe it polls).
    private let wakeup: any DriverWakeup
    private let finished = Mutex<[CheckedContinuation<Void, Never>]>([])
    private let isFinished = Atomic<Bool>(false)
    private let stopped = Atomic<Bool>(false)
    /// The driver thread until `start()` runs it.
    private let thread = Mutex<Thread?>(nil)
    /// The endpoint the SUB socket is bound to (the port resolved when `*` was asked for).
    public let endpoint: String
    /// Where the back-link socket listens (docs/PROTOCOL.md §1), nil without one.
    public let backlinkEndpoint: String?
    public let nodeID: NodeID
    let logger: Logger
    let zapDomain: String?

    /// Binds and starts the node (with `start: false`, `start()` starts it). Throws if the
    /// endpoint cannot be bound, or if it listens on every interface and none has an address
    /// to advertise.
    public convenience init(configuration: GossipConfiguration, context: ZMQContext = .shared,
                            callbacks: GossipNodeCallbacks, logger: Logger, start: Bool = true) throws {
        try configuration.validate()
        var seedRNG = SystemRandomNumberGenerator()
        let nodeID = NodeID.random(using: &seedRNG)
        // The sockets are created and bound here, then handed to the driver thread with the
        // rest of the loop, which is the only one to touch them afterwards (a hand-off, not
        // sharing).
        let transport = try ZMQTransport(configuration: configuration, context: context, nodeID: nodeID, logger: logger)
        let endpoint = transport.advertised, backlinkEndpoint = transport.backlinkEndpoint, wakeup = transport.wakeup
        let zapDomain = configuration.isClosed ? transport.zapDomain : nil
        try self.init(transport: transport, wakeup: wakeup, nodeID: nodeID, endpoint: endpoint, backlinkEndpoint: backlinkEndpoint,
                      zapDomain: zapDomain,
                      configuration: configuration, callbacks: callbacks, logger: logger, start: start)
    }

    /// A node on `transport` (bound already, at `endpoint`): its engine, its driver loop and the
    /// thread that runs it. The transport is shut down again if this throws.
    init<T: NodeTransport & ~Copyable>(transport: consuming sending T, wakeup: any DriverWakeup, nodeID: NodeID,
                                       endpoint advertised: String, backlinkEndpoint: String?, zapDomain: String?,
                                       configuration: GossipConfiguration, callbacks: GossipNodeCallbacks, logger: Logger,
                                       start: Bool) throws {
        self.logger = logger
        publishQueueLimit = max(1, configuration.publishQueueLimit)
        self.wakeup = wakeup
        self.nodeID = nodeID
        self.endpoint = advertised
        self.backlinkEndpoint = backlinkEndpoint
        self.zapDomain = zapDomain

        var engineConfig = configuration.engine
        engineConfig.endpoint = advertised
        let ownEndpoint = (try? PeerAddress(parsing: advertised))?.endpoint ?? advertised
        engineConfig.seeds = configuration.peers.filter { p in
            let e = (try? PeerAddress(parsing: p))?.endpoint ?? p
            if e == ownEndpoint { logger.warning("a peer is this node's own endpoint: ignored", metadata: ["peer": "\(p)"]) }
            return e != ownEndpoint
        }
        for p in engineConfig.seeds {
            guard let e = try? TCPEndpoint(parsing: (try? PeerAddress(parsing: p))?.endpoint ?? p, for: .dial), !e.isLiteral else { continue }
            do { _ = try TCPEndpoint.resolve(e.host) } catch {
                logger.warning("peer cannot be resolved now; dialling it anyway, with back-off",
                               metadata: ["peer": "\(p)", "reason": "\(GossipConfiguration.reason(error))"])
            }
        }
        var driver = DriverLoop(transport: transport, engine: GossipEngine(config: engineConfig, nodeID: nodeID),
                                seed: configuration.randomSeed ?? UInt64.random(in: 1...UInt64.max),
                                batching: configuration.batching, callbacks: callbacks, logger: logger,
                                closedOverlay: configuration.isClosed && configuration.nodeKey != nil)
        driver.ownKey = configuration.nodeKey?.publicKey
        driver.ownEndpoint = ownEndpoint
        driver.seedNames = Set(engineConfig.seeds)

        if let port = configuration.discoveryPort {
            do {
                driver.discovery = try DiscoverySocket(port: port, beacon: Beacon(nodeID: nodeID, endpoint: advertised),
                                                       interval: configuration.beaconInterval, allowed: configuration.allowedKeys)
            } catch {
                driver.transport.shutdown()
                wakeup.close()
                throw error
            }
        }
        // The loop, its transport and sockets go to the thread as one region: nothing here keeps
        // a reference into it.
        let loop = Handover(driver)
        thread.withLock { slot in
            let t = Thread { [self] in
                guard var l = loop.take() else { return }
                l.run(node: self)
            }
            t.name = "warren-node"
            t.stackSize = 1 << 20
            slot = t
        }
        if start { self.start() }
    }

    /// Starts the driver thread (for `init(start: false)`); later calls do nothing.
    public func start() {
        thread.withLock { $0.take() }?.start()
    }

    // MARK: Commands (any thread)

    /// Queues a command for the driver thread. False for a publish refused because
    /// `publishQueueLimit` publishes are waiting (counted); other commands are never refused.
    @discardableResult
    func enqueue(_ c: Command) -> Bool {
        // The wake-up byte is written under the lock, so that nothing writes to the pipe once the
        // finished driver has closed it (the descriptor number may already belong to another
        // socket of the process); a command that comes too late is answered here.
        var full = false
        let accepted = queue.withLock { q -> Bool in
            guard !q.closed else { return false }
            if case .publish = c {
                guard q.publishes < publishQueueLimit else { full = true; return false }
                q.publishes += 1
            }
            q.commands.append(c)
            if !wakePending.exchange(true, ordering: .acquiring) { wakeup.wake() }
            return true
        }
        if full {
            queueFull.add(1, ordering: .relaxed)
            return false
        }
        if !accepted { Self.answerLate(c) }
        return true
    }

    /// Answers a command the finished driver will never see, so no caller waits forever.
    static func answerLate(_ c: Command) {
        switch c {
        case .subscribe(_, let k), .unsubscribe(_, let k): k?.resume()
        case .stats(let k): k.resume(returning: NodeStats())
        case .publish, .allowList, .stop: break
        }
    }

    /// Swaps the queued commands into `buffer` (emptied first; its capacity goes back to the
    /// queue, so a burst of publishes does not regrow the queue from nothing every time).
    func drain(into buffer: inout [Command]) {
        wakePending.store(false, ordering: .releasing)
        buffer.removeAll(keepingCapacity: true)
        queue.withLock { q in
            swap(&q.commands, &buffer)
            q.publishes = 0
        }
    }

    func drain() -> [Command] {
        var drained: [Command] = []
        drain(into: &drained)
        return drained
    }

    /// Whether `stop` was asked for (the driver breaks off a long burst of input for it).
    var stopRequested: Bool { stopped.load(ordering: .relaxed) }

    /// Floods an envelope (already sealed and serialized) to `topic` = the recipient's public key.
    /// Returns false, and counts it (`NodeStats.queueFull`), if `publishQueueLimit` publishes
    /// are already waiting for the node's thread: the caller is publishing faster than the node
    /// sends. A stopped node drops the publish (and returns true: nothing is waiting).
    @discardableResult
    public func publish(topic: Topic, envelope: [UInt8], ttl: UInt8? = nil) -> Bool {
        guard !stopped.load(ordering: .relaxed) else { return true }
        return enqueue(.publish(topic, envelope, ttl))
    }

    /// Starts delivering `topic` locally; returns once the engine has it.
    public func subscribe(_ topic: Topic) async {
        guard !stopped.load(ordering: .relaxed) else { return }
        await withCheckedContinuation { enqueue(.subscribe(topic, $0)) }
    }

    public func unsubscribe(_ topic: Topic) async {
        guard !stopped.load(ordering: .relaxed) else { return }
        await withCheckedContinuation { enqueue(.unsubscribe(topic, $0)) }
    }

    /// Queues a (un)subscription without waiting: `done` is resumed once the engine has it (or
    /// at once if the node has stopped). Lets a caller order it with its own bookkeeping.
    func requestSubscription(_ topic: Topic, subscribe: Bool, done: CheckedContinuation<Void, Never>) {
        guard !stopped.load(ordering: .relaxed) else { return done.resume() }
        enqueue(subscribe ? .subscribe(topic, done) : .unsubscribe(topic, done))
    }

    /// A closed overlay's new allow-list: handshakes from now on admit only these keys, frames
    /// from connections of removed keys are dropped, and links to them are closed (their
    /// neighbours go down with `.removed`). Returns how many keys were added and removed.
    @discardableResult
    public func updateAllowList(_ keys: Set<Key>) -> (added: Int, removed: Int) {
        guard let zapDomain, !stopped.load(ordering: .relaxed) else { return (0, 0) }
        let old = ZAPService.shared.update(domain: zapDomain, allowed: keys)
        enqueue(.allowList(keys))
        return (keys.subtracting(old).count, old.subtracting(keys).count)
    }

    /// A snapshot of counters, neighbours and known endpoints.
    public func stats() async -> NodeStats {
        var s = isFinished.load(ordering: .acquiring) ? NodeStats() : await withCheckedContinuation { enqueue(.stats($0)) }
        s.queueFull = queueFull.load(ordering: .relaxed)
        return s
    }

    /// Asks the driver thread to stop (BYE, sockets closed, thread ended) without waiting for it.
    /// Idempotent; `stop()` waits.
    public func requestStop() {
        if !stopped.exchange(true, ordering: .relaxed) { enqueue(.stop) }
        start()   // a node that never started still has to close its sockets
    }

    /// Says BYE to the neighbours, closes every socket and ends the driver thread. Idempotent.
    public func stop() async {
        requestStop()
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = finished.withLock { list -> Bool in
                if isFinished.load(ordering: .acquiring) { return true }
                list.append(c)
                return false
            }
            if resumeNow { c.resume() }
        }
    }

    func didFinish() {
        let waiters = finished.withLock { list -> [CheckedContinuation<Void, Never>] in
            isFinished.store(true, ordering: .releasing)
            defer { list.removeAll() }
            return list
        }
        let late = queue.withLock { q -> [Command] in
            q.closed = true
            defer { q.commands.removeAll() }
            return q.commands
        }
        wakeup.close()
        for c in late { Self.answerLate(c) }
        for w in waiters { w.resume() }
    }

    public var isRunning: Bool { !isFinished.load(ordering: .acquiring) }
}


/// The back-link endpoint the configuration names cannot be bound (in use, not an address of
/// this host).
public struct BacklinkBindError: Error, CustomStringConvertible, Sendable {
    public var endpoint: String
    public var reason: String
    public var description: String { "cannot bind the back-link endpoint \(endpoint): \(reason)" }
}

