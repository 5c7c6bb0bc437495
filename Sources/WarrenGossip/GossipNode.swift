import CZeroMQ
import Foundation
import Glibc
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

/// One overlay node: a bound SUB socket, one XPUB link per neighbour, and the sans-I/O
/// `GossipEngine`, all owned by one driver thread that polls the sockets and runs the engine.
/// The public API is thread-safe; commands are queued to the driver thread.
public final class GossipNode: Sendable {
    enum Command {
        case publish(Topic, [UInt8], UInt8?)
        case subscribe(Topic, CheckedContinuation<Void, Never>?)
        case unsubscribe(Topic, CheckedContinuation<Void, Never>?)
        case stats(CheckedContinuation<NodeStats, Never>)
        case allowList(Set<Key>)
        case stop
    }

    /// Commands for the driver thread; `closed` once it has finished and closed its pipe.
    /// `publishes` counts the queued publishes, at most `publishQueueLimit`.
    private let queue = Mutex<(commands: [Command], publishes: Int, closed: Bool)>(([], 0, false))
    private let publishQueueLimit: Int
    /// Publishes refused because `publishQueueLimit` were waiting for the driver thread.
    private let queueFull = Atomic<UInt64>(0)
    var queueFullCount: UInt64 { queueFull.load(ordering: .relaxed) }
    private let wakePending = Atomic<Bool>(false)
    private let wakeFD: Int32       // write end of the wake-up pipe
    private let wakeReadFD: Int32   // read end, polled by the driver thread
    private let finished = Mutex<[CheckedContinuation<Void, Never>]>([])
    private let isFinished = Atomic<Bool>(false)
    private let stopped = Atomic<Bool>(false)
    /// The driver thread until `start()` runs it.
    private let thread = Mutex<UnsafeSendable<Thread>?>(nil)
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
    public init(configuration: GossipConfiguration, context: ZMQContext = .shared,
                callbacks: GossipNodeCallbacks, logger: Logger, start: Bool = true) throws {
        self.logger = logger
        publishQueueLimit = max(1, configuration.publishQueueLimit)
        try configuration.validate()
        var seedRNG = SystemRandomNumberGenerator()
        nodeID = NodeID.random(using: &seedRNG)
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw ZMQError("pipe", code: errno) }
        // Everything opened from here on is closed again if `init` throws.
        var opened: (sockets: [ZMQSocket], zapDomain: String?) = ([], nil)
        var succeeded = false
        defer {
            if !succeeded {
                for s in opened.sockets.reversed() { s.close() }
                close(fds[0]); close(fds[1])
                if let d = opened.zapDomain { ZAPService.shared.unregister(domain: d) }
            }
        }
        for f in fds {
            _ = fcntl(f, F_SETFL, fcntl(f, F_GETFL) | O_NONBLOCK)
            _ = fcntl(f, F_SETFD, FD_CLOEXEC)
        }
        wakeFD = fds[1]
        wakeReadFD = fds[0]

        let zapDomain = "warren-" + String(nodeID.raw, radix: 16)
        self.zapDomain = configuration.isClosed ? zapDomain : nil
        // The ZAP handler authenticates a closed overlay's links and, in any overlay, numbers the
        // SUB's connections (so each frame is known to come from one connection). It serves the
        // shared context only: a node on another context runs without connection numbers.
        var zap = ZAPService.shared.serves(context)
        if zap || configuration.isClosed {
            do { try ZAPService.shared.start() } catch {
                if configuration.isClosed { throw error }
                logger.warning("no ZAP handler: frames cannot be told apart by connection", metadata: ["error": "\(error)"])
                zap = false
            }
        }

        // The SUB socket is created and bound here, then handed to the driver thread, which is
        // the only one to touch it afterwards (a hand-off, not sharing).
        let sub = try ZMQSocket(context, type: ZMQ_SUB)
        opened.sockets.append(sub)
        try sub.set(ZMQ_RCVHWM, configuration.receiveHighWaterMark)
        // ZeroMQ drops a connection that sends a message part larger than the largest legal
        // body (a BATCH of 64 KiB), before anything is buffered: with the receive high-water mark
        // this bounds what one connection can queue in bytes.
        try sub.set(ZMQ_MAXMSGSIZE, int64: Int64(Frame.maxBodyBytes))
        try sub.set(ZMQ_LINGER, 0)
        try sub.set(ZMQ_HEARTBEAT_IVL, 1000)
        try sub.set(ZMQ_HEARTBEAT_TIMEOUT, 3000)
        var curve: CurveKeys?
        if configuration.isClosed, let nodeKey = configuration.nodeKey {
            // CurveZMQ server: every inbound link is encrypted, and the ZAP handler admits only
            // the allow-listed client keys (per this node's ZAP domain).
            ZAPService.shared.register(domain: zapDomain, allowed: configuration.allowedKeys ?? [], logger: logger)
            opened.zapDomain = zapDomain
            try sub.set(ZMQ_CURVE_SERVER, 1)
            try sub.set(ZMQ_CURVE_SECRETKEY, bytes: nodeKey.key.bytes)
            try sub.set(ZMQ_ZAP_DOMAIN, bytes: Array(zapDomain.utf8))
            curve = CurveKeys(secret: nodeKey.key.bytes, public: nodeKey.publicKey.bytes)
        } else if zap {
            ZAPService.shared.register(domain: zapDomain, allowed: nil, logger: logger)
            opened.zapDomain = zapDomain
            try sub.set(ZMQ_ZAP_DOMAIN, bytes: Array(zapDomain.utf8))
        }
        let registered = configuration.isClosed || zap
        var backlinks: BacklinkListener?
        // Names are resolved here (ZeroMQ would take "localhost" for an interface name).
        let listen = try TCPEndpoint(parsing: configuration.listen, for: .listen).resolved()
        if listen.isIPv6 { try sub.set(ZMQ_IPV6, 1) }
        try sub.bind(listen.description)
        var advertised = try configuration.advertise ?? Self.advertisable(sub.lastEndpoint)
        if configuration.backlinkEnabled {
            backlinks = try Self.bindBacklinks(configuration, context: context, listenHost: listen.host, curve: curve,
                                               zapDomain: registered ? zapDomain : nil, logger: logger)
            if let b = backlinks {
                opened.sockets.append(b.router)
                try sub.set(ZMQ_SUBSCRIBE, bytes: Backlink.announcement(port: b.port))
            }
        }
        backlinkEndpoint = backlinks.map { TCPEndpoint(host: listen.host, port: $0.port).description }
        // The key travels with the endpoint (HELLO, PEERS, beacons): in a closed overlay it
        // authenticates the server; in an open one it only tells others whose node this is.
        if let k = configuration.nodeKey, !advertised.contains("@") {
            advertised = k.publicKey.base64 + "@" + advertised
        }
        endpoint = advertised

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
        var driver = DriverLoop(sub: UnsafeSendable(sub), context: context, engine: GossipEngine(config: engineConfig, nodeID: nodeID),
                                seed: configuration.randomSeed ?? UInt64.random(in: 1...UInt64.max),
                                sendHWM: configuration.sendHighWaterMark, batching: configuration.batching,
                                callbacks: callbacks, logger: logger,
                                curve: curve, zapDomain: registered ? zapDomain : nil)
        driver.backlinks = backlinks
        driver.receiveHWM = configuration.receiveHighWaterMark
        driver.ownKey = configuration.nodeKey?.publicKey
        driver.ownEndpoint = ownEndpoint
        driver.seedNames = Set(engineConfig.seeds)

        if let port = configuration.discoveryPort {
            driver.discovery = try DiscoverySocket(port: port, beacon: Beacon(nodeID: nodeID, endpoint: advertised),
                                                   interval: configuration.beaconInterval, allowed: configuration.allowedKeys)
        }
        succeeded = true
        let loop = UnsafeSendable(driver)
        let t = Thread { [self] in
            var l = loop.value
            l.run(node: self)
        }
        t.name = "warren-node"
        t.stackSize = 1 << 20
        let pending = UnsafeSendable(t)
        thread.withLock { $0 = pending }
        if start { self.start() }
    }

    /// Starts the driver thread (for `init(start: false)`); later calls do nothing.
    public func start() {
        let t = thread.withLock { t -> UnsafeSendable<Thread>? in defer { t = nil }; return t }
        t?.value.start()
    }

    /// Binds the back-link ROUTER (Backlink.swift) where the configuration says, or on the listen
    /// host at any free port. An explicit endpoint that cannot be bound is an error; the default
    /// one only a warning (the node then runs without, as a node before back-links did).
    static func bindBacklinks(_ c: GossipConfiguration, context: ZMQContext, listenHost: String, curve: CurveKeys?, zapDomain: String?,
                              logger: Logger) throws -> BacklinkListener? {
        let r = try ZMQSocket(context, type: ZMQ_ROUTER)
        do { try configureBacklinks(r, c, curve: curve, zapDomain: zapDomain) } catch { r.close(); throw error }
        let endpoint: TCPEndpoint
        do {
            endpoint = try (c.backlink.map { try TCPEndpoint(parsing: $0, for: .listen) } ?? TCPEndpoint(host: listenHost, port: nil)).resolved()
            if endpoint.isIPv6 { try r.set(ZMQ_IPV6, 1) }
            try r.bind(endpoint.description)
        } catch {
            r.close()
            if let pinned = c.backlink { throw BacklinkBindError(endpoint: pinned, reason: "\(error)") }
            logger.warning("no back-link: nodes that cannot be dialled will not receive from this node", metadata: ["error": "\(error)"])
            return nil
        }
        guard let port = (try? TCPEndpoint(parsing: r.lastEndpoint, for: .listen))?.port else { r.close(); return nil }
        return BacklinkListener(router: r, port: port)
    }

    static func configureBacklinks(_ r: ZMQSocket, _ c: GossipConfiguration, curve: CurveKeys?, zapDomain: String?) throws {
        try r.set(ZMQ_ROUTER_MANDATORY, 1)
        try r.set(ZMQ_ROUTER_HANDOVER, 1)
        try r.set(ZMQ_LINGER, 0)
        try r.set(ZMQ_SNDHWM, c.sendHighWaterMark)
        try r.set(ZMQ_RCVHWM, c.receiveHighWaterMark)
        // Dialers send only probes and prefixes (a topic at most); the limit also bounds the
        // handshake's commands (a CurveZMQ INITIATE is a few hundred bytes).
        try r.set(ZMQ_MAXMSGSIZE, int64: Int64(4096))
        try r.set(ZMQ_HEARTBEAT_IVL, 1000)
        try r.set(ZMQ_HEARTBEAT_TIMEOUT, 3000)
        if let curve {
            try r.set(ZMQ_CURVE_SERVER, 1)
            try r.set(ZMQ_CURVE_SECRETKEY, bytes: curve.secret)
        }
        if let zapDomain { try r.set(ZMQ_ZAP_DOMAIN, bytes: Array(zapDomain.utf8)) }
    }

    /// `tcp://0.0.0.0:7001` is where we listen, not where others can dial: advertise the first
    /// address of an interface that is up and not loopback (IPv6 for `[::]`).
    static func advertisable(_ bound: String) throws -> String {
        guard let e = try? TCPEndpoint(parsing: bound, for: .listen), e.isUnspecified else { return bound }
        guard let address = TCPEndpoint.interfaceAddress(ipv6: e.isIPv6) else {
            throw GossipConfigurationError.invalid("\(bound) listens on every interface, but no interface has an address others could dial: give advertise=tcp://HOST:PORT (warren node: --advertise)")
        }
        return TCPEndpoint(host: address, port: e.port).description
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
            if !wakePending.exchange(true, ordering: .acquiring) {
                var one: UInt8 = 1
                _ = write(wakeFD, &one, 1)
            }
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

    var wakeDescriptor: Int32 { wakeReadFD }

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
        close(wakeFD)
        close(wakeReadFD)
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

/// This node's CurveZMQ key pair (binary, 32 bytes each).
struct CurveKeys { var secret: [UInt8]; var `public`: [UInt8] }

/// The driver thread's state. Everything here is touched by that thread only. A struct run
/// in place by its thread, so its hot paths carry no dynamic exclusivity checks.
struct DriverLoop {
    let sub: ZMQSocket
    let context: ZMQContext
    var engine: GossipEngine
    var rng: SeededGenerator
    let sendHWM: Int32
    let callbacks: GossipNodeCallbacks
    let logger: Logger
    var links: [LinkID: ZMQSocket] = [:]
    var linkOrder: [LinkID] = []
    var actions: [Action] = []
    /// Frames on their way out: consecutive frames for one link and topic leave as one BATCH.
    var outbox: FrameCoalescer
    var commands: [GossipNode.Command] = []
    var hwmDrops: UInt64 = 0
    var badMultipart: UInt64 = 0
    var penaltiesLogged: UInt64 = 0
    var running = true
    var pollItems: [zmq_pollitem_t] = []
    var pollDirty = true
    /// Each link's endpoint as the engine named it, and the links whose handshake completed.
    var linkNames: [LinkID: (name: String, since: UInt64)] = [:]
    var readyLinks: Set<LinkID> = []
    /// Endpoints whose last dial got no answer (warned about once until one answers).
    var silentEndpoints: Set<String> = []
    /// `--log-level trace`: every frame in and out is logged (read once per pass of the loop).
    var traceOn = false
    /// This node's key and endpoint (another node with the same key is warned about).
    var ownKey: Key?
    var ownEndpoint = ""
    var sharedKeyWarned: Set<String> = []
    /// The configured seeds (as given), and endpoints not dialled for the allow-list (warned once).
    var seedNames: Set<String> = []
    var refusedDials: Set<String> = []
    /// Closed overlay, once its allow-list was changed: the keys (base64, as ZAP names a
    /// connection's User-Id) whose frames are accepted and who are dialled. nil before (ZAP
    /// alone decides: every connection it admitted is listed, and the receive path pays nothing).
    var admitted: Set<String>?
    /// Frames dropped because their connection's key was removed from the allow-list.
    var unadmittedFrames: UInt64 = 0
    /// Back-links (Backlink.swift): the ROUTER other nodes' back-links connect to (nil: none),
    /// our back-links to the nodes we dial, and the SUB's prefixes they mirror.
    var backlinks: BacklinkListener?
    var backDialers: [LinkID: BacklinkDialer] = [:]
    var subscribedPrefixes: [[UInt8]] = []
    var receiveHWM: Int32 = 256
    /// Poll items after the wake pipe and the SUB: the ROUTER (if any), back-links, then links.
    var polledDialers: [LinkID] = []

    let curve: CurveKeys?
    let zapDomain: String?
    var metrics: NodeMetrics
    var metricsAt: UInt64 = 0
    /// LAN discovery (nil unless configured): Discovery.swift.
    var discovery: DiscoverySocket?

    init(sub: UnsafeSendable<ZMQSocket>, context: ZMQContext, engine: GossipEngine, seed: UInt64,
         sendHWM: Int32, batching: Bool, callbacks: GossipNodeCallbacks, logger: Logger, curve: CurveKeys?, zapDomain: String?) {
        self.curve = curve
        self.zapDomain = zapDomain
        // The label is the endpoint as operators know it: with its key in a closed overlay
        // (where peers are named so), plain in an open one.
        let e = engine.config.endpoint
        self.metrics = NodeMetrics(node: curve != nil ? e : (try? PeerAddress(parsing: e))?.endpoint ?? e)
        self.sub = sub.value
        self.context = context
        self.engine = engine
        self.rng = SeededGenerator(seed: seed)
        // With batching off, the limit admits no second frame: every frame leaves alone.
        self.outbox = FrameCoalescer(from: engine.nodeID, limit: batching ? FrameBatch.targetBytes : 0)
        self.sendHWM = sendHWM
        self.callbacks = callbacks
        self.logger = logger
        actions.reserveCapacity(64)
    }

    mutating func run(node: GossipNode) {
        engine.start(now: monotonicNanos(), rng: &rng, into: &actions)
        perform()
        while running {
            traceOn = logger.logLevel == .trace
            rebuildPollItems(node)
            var timeoutMs: Int = -1
            if let d = engine.nextDeadline {
                let now = monotonicNanos()
                timeoutMs = d <= now ? 0 : Int(min((d - now + 999_999) / 1_000_000, 60_000))
            }
            let rc = pollItems.withUnsafeMutableBufferPointer { zmq_poll($0.baseAddress, Int32($0.count), timeoutMs) }
            if rc < 0 && zmq_errno() != EINTR {
                logger.error("zmq_poll failed", metadata: ["error": "\(ZMQError("zmq_poll"))"])
                break
            }
            if pollItems[0].revents != 0 {
                var buf = (UInt64(0), UInt64(0))
                _ = withUnsafeMutableBytes(of: &buf) { read(node.wakeDescriptor, $0.baseAddress, 16) }
                node.drain(into: &commands)
                var published = 0
                for c in commands {
                    handle(c)
                    // Publishes are performed in groups, so their frames leave in batches.
                    if case .publish = c {
                        published += 1
                        if published % Self.coalesceInputs == 0 { perform() }
                    }
                }
                perform()
                commands.removeAll(keepingCapacity: true)
            }
            var inputPending = false
            if running && pollItems[1].revents & Int16(ZMQ_POLLIN) != 0 {
                inputPending = !receiveData()
                // A back-link can arrive before the HELLO that names its token.
                if let b = backlinks, b.routes.count > b.carried.count { attachBacklinkRoutes() }
            }
            var i = 2
            if running && backlinks != nil {
                if pollItems[i].revents & Int16(ZMQ_POLLIN) != 0 { receiveBacklinkRoutes() }
                i += 1
            }
            let dialersAt = i, linksAt = i + polledDialers.count
            if running {
                for i in dialersAt..<linksAt where pollItems[i].revents & Int16(ZMQ_POLLIN) != 0 {
                    if !receiveBacklink(polledDialers[i - dialersAt]) { inputPending = true }
                }
                for i in linksAt..<pollItems.count where pollItems[i].revents & Int16(ZMQ_POLLIN) != 0 {
                    receiveSubscriptions(linkOrder[i - linksAt])
                }
            }
            if running, let d = engine.nextDeadline, d <= monotonicNanos() {
                engine.tick(now: monotonicNanos(), rng: &rng, into: &actions, inputPending: inputPending)
                perform()
            }
            if running && discovery != nil { serviceDiscovery() }
            let now = monotonicNanos()
            if now &- metricsAt >= 1_000_000_000 {
                metricsAt = now
                var snap = snapshot()
                snap.queueFull = node.queueFullCount
                metrics.report(snap)
                if running && backlinks.map({ !$0.routes.isEmpty }) == true { attachBacklinkRoutes() }
            }
        }
        metrics.report(snapshot())
        // Shut down: everything this thread opened is closed here.
        for (_, s) in links { s.close() }
        links.removeAll()
        for (_, d) in backDialers { d.socket.close() }
        backDialers.removeAll()
        backlinks?.router.close()
        sub.close()
        discovery?.close()
        if let zapDomain { ZAPService.shared.unregister(domain: zapDomain) }
        // Commands that raced with stop: answer them so no caller waits forever.
        for c in node.drain() {
            switch c {
            case .subscribe(_, let k), .unsubscribe(_, let k): k?.resume()
            case .stats(let k): k.resume(returning: snapshot())
            case .publish, .stop, .allowList: break
            }
        }
        node.didFinish()
    }

    mutating func rebuildPollItems(_ node: GossipNode) {
        guard pollDirty else { return }
        pollItems.removeAll(keepingCapacity: true)
        pollItems.append(zmq_pollitem_t(socket: nil, fd: node.wakeDescriptor, events: Int16(ZMQ_POLLIN), revents: 0))
        pollItems.append(zmq_pollitem_t(socket: sub.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0))
        if let l = backlinks { pollItems.append(zmq_pollitem_t(socket: l.router.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)) }
        polledDialers = Array(backDialers.keys)
        for id in polledDialers {
            pollItems.append(zmq_pollitem_t(socket: backDialers[id]!.socket.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0))
        }
        for id in linkOrder {
            pollItems.append(zmq_pollitem_t(socket: links[id]!.handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0))
        }
        pollDirty = false
    }

    mutating func handle(_ c: GossipNode.Command) {
        let now = monotonicNanos()
        switch c {
        case .publish(let topic, let env, let ttl):
            // Performed by the caller (`run`), after a group of publishes.
            engine.publish(topic: topic, envelope: env, ttl: ttl, now: now, rng: &rng, into: &actions)
        case .subscribe(let t, let k):
            engine.subscribeLocal(t, into: &actions)
            perform()
            k?.resume()
        case .unsubscribe(let t, let k):
            engine.unsubscribeLocal(t, into: &actions)
            perform()
            k?.resume()
        case .stats(let k):
            k.resume(returning: snapshot())
        case .allowList(let keys):
            admitted = Set(keys.map(\.base64))
            engine.closeLinks(where: { e in
                guard let k = (try? PeerAddress(parsing: e))?.key else { return false }
                return !keys.contains(k)
            }, now: now, rng: &rng, into: &actions)
            perform()
        case .stop:
            // Links still dialling are closed by us, not silent peers: no warnings from here on.
            linkNames.removeAll()
            engine.stop(now: now, into: &actions)
            perform()
            running = false
        }
    }

    func snapshot() -> NodeStats {
        var s = NodeStats()
        s.hwmDrops = hwmDrops
        s.badMultipart = badMultipart
        s.engine = engine.stats
        s.neighbours = engine.neighbours
        s.knownEndpoints = engine.knownEndpoints
        s.seenEntries = engine.seenCount
        s.links = links.count + (backlinks?.withoutDirect.count ?? 0)
        s.backlinksCarried = backlinks?.carried.count ?? 0
        s.backlinksOpen = backDialers.count
        s.backlinkDrops = backlinks?.drops ?? 0
        s.backlinksRefused = backlinks?.refused ?? 0
        s.batchesSent = outbox.batches
        s.batchedFrames = outbox.batchedFrames
        s.rateLimited = engine.stats.rateLimited
        s.knownNodes = engine.knownNodes
        for n in s.neighbours { s.lastHeard[n.nodeID] = engine.lastHeard(n.nodeID) }
        s.unadmittedFrames = unadmittedFrames
        if let zapDomain { s.refused = ZAPService.shared.refusals(domain: zapDomain) }
        return s
    }

    /// Inputs (received messages, publishes) whose actions are gathered before they are
    /// performed: their outgoing frames coalesce into batches, and a frame waits at most for
    /// the handling of this many inputs. When fewer are waiting, nothing waits.
    static let coalesceInputs = 64

    /// Reads every waiting message from the SUB socket (bounded per wake-up to stay fair).
    /// Reads up to 4,096 messages; returns true when the socket is drained (false: more wait).
    /// Actions are performed every `coalesceInputs` messages and when the socket is drained.
    mutating func receiveData() -> Bool {
        var topic = zmq_msg_t(), body = zmq_msg_t()
        defer { if !actions.isEmpty { perform() } }
        for n in 1...4096 {
            zmq_msg_init(&topic)
            if zmq_msg_recv(&topic, sub.handle, ZMQ_DONTWAIT) < 0 { zmq_msg_close(&topic); return true }
            guard zmq_msg_more(&topic) != 0 else {
                badMultipart &+= 1
                zmq_msg_close(&topic)
                continue
            }
            zmq_msg_init(&body)
            _ = zmq_msg_recv(&body, sub.handle, ZMQ_DONTWAIT)
            if zmq_msg_more(&body) != 0 {
                // More than two parts: drop the whole message.
                badMultipart &+= 1
                var extra = zmq_msg_t()
                repeat {
                    zmq_msg_close(&extra); zmq_msg_init(&extra)
                    _ = zmq_msg_recv(&extra, sub.handle, ZMQ_DONTWAIT)
                } while zmq_msg_more(&extra) != 0
                zmq_msg_close(&extra)
            } else {
                // Typed buffers: the decoder reads them in place (raw buffers would be copied first).
                let t = UnsafeBufferPointer(start: zmq_msg_data(&topic).assumingMemoryBound(to: UInt8.self), count: zmq_msg_size(&topic))
                let b = UnsafeBufferPointer(start: zmq_msg_data(&body).assumingMemoryBound(to: UInt8.self), count: zmq_msg_size(&body))
                if let admitted, let uid = zmq_msg_gets(&body, "User-Id"),
                   !admitted.contains(String(String(cString: uid).prefix { $0 != "#" })) {
                    // A connection authenticated before its key left the allow-list (its user id
                    // is KEY#N: the key, then the connection's number).
                    unadmittedFrames &+= 1
                    zmq_msg_close(&topic)
                    zmq_msg_close(&body)
                    continue
                }
                if traceOn {
                    logger.trace("frame in", metadata: ["bytes": "\(b.count)", "type": "\(b.count > 1 ? b[1] : 0)",
                                                        "topic": "\(t.prefix(8).map { String($0, radix: 16) }.joined())"])
                }
                engine.receive(topic: t, body: b, via: Self.connection(of: &body), now: monotonicNanos(), rng: &rng, into: &actions)
            }
            zmq_msg_close(&topic)
            zmq_msg_close(&body)
            if n % Self.coalesceInputs == 0 {
                if !actions.isEmpty { perform() }
                // A timer is due (a heartbeat, say): stop here so that it runs, and go on with
                // the rest after it. A burst that takes this thread seconds to work through
                // (a slow handler, a starved CPU) must not silence the node to its neighbours.
                if timerDue() { return false }
            }
        }
        return false
    }

    /// Whether the engine's next deadline has passed.
    mutating func timerDue() -> Bool {
        guard let d = engine.nextDeadline else { return false }
        return d <= monotonicNanos()
    }

    /// The connection a message arrived on: the number after the last `#` of the user id the ZAP
    /// handler gave the connection (nil without one).
    static func connection(of msg: inout zmq_msg_t) -> ConnectionID? {
        guard let p = zmq_msg_gets(&msg, "User-Id") else { return nil }
        var q = p, digits: UnsafePointer<CChar>? = nil
        while q.pointee != 0 {
            if q.pointee == 35 { digits = q + 1 }   // "#"
            q += 1
        }
        guard var d = digits else { return nil }
        var n: UInt64 = 0
        while d.pointee >= 48 && d.pointee <= 57 { n = n &* 10 &+ UInt64(d.pointee - 48); d += 1 }
        return n == 0 ? nil : ConnectionID(raw: n)
    }

    /// An XPUB link receives the remote SUB's (un)subscriptions. A subscription means the remote
    /// listens on this link: the engine may (re)send its HELLO.
    mutating func receiveSubscriptions(_ id: LinkID) {
        guard let s = links[id] else { return }
        var ready = false
        var backlinkPort: UInt16?
        var msg = zmq_msg_t()
        while true {
            zmq_msg_init(&msg)
            if zmq_msg_recv(&msg, s.handle, ZMQ_DONTWAIT) < 0 { zmq_msg_close(&msg); break }
            if zmq_msg_size(&msg) >= 1, zmq_msg_data(&msg).load(as: UInt8.self) == 1 { ready = true }
            if let p = Backlink.port(inSubscription: UnsafeRawBufferPointer(start: zmq_msg_data(&msg), count: zmq_msg_size(&msg))) {
                backlinkPort = p
            }
            zmq_msg_close(&msg)
        }
        // The remote can be reached through a back-link of ours if it cannot dial us; it closes
        // the back-link once its own link to us is ready.
        if let backlinkPort { openBacklink(for: id, port: backlinkPort) }
        if ready {
            directLinkReady(id)
            if readyLinks.insert(id).inserted, let name = linkNames[id]?.name {
                silentEndpoints.remove(name)
                logger.debug("link ready: the remote accepted the connection (handshake done)",
                             metadata: ["endpoint": "\(name)", "link": "\(id)"])
            }
            engine.linkReady(id, now: monotonicNanos(), rng: &rng, into: &actions)
            perform()
        }
    }

    mutating func perform() {
        logPenalties()
        var i = 0
        while i < actions.count {
            let a = actions[i]
            i += 1
            switch a {
            case .send(let ids, let frame):
                for id in ids where links[id] != nil || backlinks?.carried[id] != nil {
                    outbox.add(link: id, topic: frame.topic, body: frame.body)
                }
            case .deliver(let topic, let env, let hops, let id):
                callbacks.deliver(topic, env, hops, id)
            case .connect(let id, let name):
                do {
                    // Endpoints of a closed overlay are "KEY@tcp://…": the key authenticates the server.
                    let address = try PeerAddress(parsing: name)
                    let endpoint = address.endpoint
                    if curve != nil && address.key == nil {
                        logger.warning("closed overlay: cannot dial a peer without its key", metadata: ["endpoint": "\(name)"])
                        continue
                    }
                    // A seed's key is what the operator claims; what other nodes advertise is news.
                    if let k = address.key, !seedNames.contains(name) { checkSharedKey(k, endpoint: name) }
                    if let admitted, let k = address.key, !admitted.contains(k.base64) {
                        if refusedDials.insert(name).inserted {
                            logger.warning("not dialling a peer whose key is not on this node's allow-list", metadata: ["endpoint": "\(name)"])
                        } else {
                            logger.debug("not dialling a peer whose key is not on this node's allow-list", metadata: ["endpoint": "\(name)"])
                        }
                        continue
                    }
                    let s = try dial(ZMQ_XPUB, endpoint, serverKey: address.key) { s in
                        try s.set(ZMQ_SNDHWM, sendHWM)
                        try s.set(ZMQ_XPUB_NODROP, 1)
                        try s.set(ZMQ_XPUB_VERBOSE, 1)
                    }
                    logger.debug("dialling", metadata: ["endpoint": "\(name)", "link": "\(id)", "curve": "\(curve != nil)"])
                    linkNames[id] = (name, monotonicNanos())
                    links[id] = s
                    linkOrder.append(id)
                    pollDirty = true
                } catch {
                    // The engine's dial timeout will back off and retry.
                    logger.warning("cannot open link", metadata: ["endpoint": "\(name)", "error": "\(error)"])
                }
            case .disconnect(let id):
                if let (name, since) = linkNames.removeValue(forKey: id) {
                    // A link closed at once was a duplicate the engine dropped, not a silent peer.
                    if readyLinks.remove(id) == nil && monotonicNanos() &- since >= 500_000_000 { reportSilentDial(name) }
                    else { logger.debug("closing link", metadata: ["endpoint": "\(name)", "link": "\(id)"]) }
                }
                // What was queued for the link goes first (as it would have without batching).
                outbox.flush(link: id)
                sendReady()
                if let s = links.removeValue(forKey: id) {
                    s.close()
                    linkOrder.removeAll { $0 == id }
                    pollDirty = true
                }
                closeBacklinkRoute(of: id)
                closeBacklink(of: id)
            case .subscribe(let prefix), .unsubscribe(let prefix):
                let on: Bool
                if case .subscribe = a { on = true } else { on = false }
                do { try sub.set(on ? ZMQ_SUBSCRIBE : ZMQ_UNSUBSCRIBE, bytes: prefix) } catch {
                    logger.error("cannot change a subscription of the node's socket", metadata: ["error": "\(error)", "prefix bytes": "\(prefix.count)"])
                }
                noteSubscription(prefix, subscribe: on)
            case .peerUp(let n):
                logger.debug("peer up", metadata: ["peer": "\(n.endpoint)", "node": "\(n.nodeID)"])
                if let k = (try? PeerAddress(parsing: n.endpoint))?.key { checkSharedKey(k, endpoint: n.endpoint) }
                callbacks.peer(n, true, nil)
            case .peerDown(let n, let reason):
                logger.debug("peer down", metadata: ["peer": "\(n.endpoint)", "reason": "\(reason)"])
                callbacks.peer(n, false, reason)
            }
        }
        actions.removeAll(keepingCapacity: true)
        outbox.flush()
        sendReady()
    }

    /// A socket of `type` connected to `endpoint`, as every socket this node dials is: CurveZMQ
    /// client of `serverKey` in a closed overlay, no linger, reconnects every 0.1 … 2 s, ZeroMQ
    /// heartbeats, IPv6 when the endpoint may need it; `configure` sets the rest. Closed again if
    /// anything fails.
    func dial(_ type: Int32, _ endpoint: String, serverKey: Key?, configure: (ZMQSocket) throws -> Void) throws -> ZMQSocket {
        let s = try ZMQSocket(context, type: type)
        do {
            if let curve, let serverKey {
                try s.set(ZMQ_CURVE_SERVERKEY, bytes: serverKey.bytes)
                try s.set(ZMQ_CURVE_PUBLICKEY, bytes: curve.public)
                try s.set(ZMQ_CURVE_SECRETKEY, bytes: curve.secret)
            }
            try configure(s)
            try s.set(ZMQ_LINGER, 0)
            try s.set(ZMQ_RECONNECT_IVL, 100)
            try s.set(ZMQ_RECONNECT_IVL_MAX, 2000)
            try s.set(ZMQ_HEARTBEAT_IVL, 1000)
            try s.set(ZMQ_HEARTBEAT_TIMEOUT, 3000)
            // IPv6 addresses, and names that may resolve to one, need ZMQ_IPV6.
            if let e = try? TCPEndpoint(parsing: endpoint, for: .dial), !e.isIPv4 { try s.set(ZMQ_IPV6, 1) }
            try s.connect(endpoint)
        } catch { s.close(); throw error }
        return s
    }

    /// Another node (another endpoint) with this node's key: both would receive that key's
    /// traffic. Warned about once per endpoint.
    mutating func checkSharedKey(_ key: Key, endpoint: String) {
        guard let ownKey, key == ownKey else { return }
        let e = (try? PeerAddress(parsing: endpoint))?.endpoint ?? endpoint
        guard e != ownEndpoint, sharedKeyWarned.insert(e).inserted else { return }
        logger.warning("another node uses this node's key: both receive every message for it; give each node its own key (warren genkey)",
                       metadata: ["other node": "\(e)", "key": "\(key.base64)"])
    }

    /// A link closed before its handshake completed: the remote is down, unreachable, not a
    /// Warren node, or (closed overlay) refused our key or has another key than the KEY@ given.
    mutating func reportSilentDial(_ name: String) {
        let why = curve != nil
            ? "unreachable, not a Warren node, not running a closed overlay, refusing this node's key (allow-list), or not the key given before '@'"
            : "unreachable, not a Warren node, or running a closed overlay (--allow)"
        if silentEndpoints.insert(name).inserted {
            logger.warning("no answer from a peer; retrying with back-off", metadata: ["endpoint": "\(name)", "possible causes": "\(why)"])
        } else {
            logger.debug("no answer from a peer again; retrying with back-off", metadata: ["endpoint": "\(name)"])
        }
    }

    /// Logs the engine's penalties since the last call (a warning each, with what was sent).
    mutating func logPenalties() {
        let n = engine.stats.penalized
        guard n != penaltiesLogged else { return }
        let fresh = Int(min(n &- penaltiesLogged, UInt64(engine.recentPenalties.count)))
        penaltiesLogged = n
        for p in engine.recentPenalties.suffix(fresh) { log(p) }
    }

    func log(_ p: Penalty) {
        logger.warning("disconnected a misbehaving neighbour: most of its frames were bad; ignored for the penalty time",
                       metadata: ["peer": "\(p.endpoint ?? "-")", "node": "\(p.node.map { "\($0)" } ?? "-")",
                                  "connection": "\(p.connection)", "reason": "\(p.reason)",
                                  "forged": "\(p.counts.forged)", "malformed": "\(p.counts.malformed)",
                                  "over_rate": "\(p.counts.overRate)", "over_share": "\(p.counts.overShare)",
                                  "good": "\(p.good)"])
    }

    /// Sends the coalesced messages (a refused one counts each of its frames as an HWM drop).
    mutating func sendReady() {
        guard !outbox.ready.isEmpty else { return }
        let carrying = !(backlinks?.carried.isEmpty ?? true)
        for m in outbox.ready {
            if carrying, let route = backlinks?.carried[m.link] {
                if !sendCarried(m.link, route: route, topic: m.topic, body: m.body) { hwmDrops &+= UInt64(m.frames) }
                continue
            }
            guard let s = links[m.link] else { continue }
            // The topic's 32 bytes on the stack (big-endian words), no buffer to fill.
            var topicWords = m.topic.bigEndianWords
            let sent = withUnsafeBytes(of: &topicWords) { t in
                m.body.withUnsafeBytes { b in s.send(topic: t, body: b) }
            }
            if !sent { hwmDrops &+= UInt64(m.frames) }
            if traceOn {
                logger.trace("frames out", metadata: ["link": "\(m.link)", "frames": "\(m.frames)",
                                                     "bytes": "\(m.body.count)", "sent": "\(sent)"])
            }
        }
        outbox.ready.removeAll(keepingCapacity: true)
    }
}
