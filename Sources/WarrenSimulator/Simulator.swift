import WarrenEngine

/// A discrete-event driver for thousands of `GossipEngine`s: the same engine the ZeroMQ
/// driver runs, with virtual time and seeded generators, so a run is reproducible from its
/// seed. It emulates the socket model of docs/PROTOCOL.md §1, and the rest of `NetworkModel`
/// (jitter, duplication, inbound connections, aliases, recording) when asked. It is the one
/// network model of the project: `InMemoryNetwork`, the tests' network, is this simulator on
/// one shard with the whole model on. It is built for scale:
///
/// - a node runs in *incarnations*: `start` after `kill` or `stop` gives it a new `NodeID` at
///   the same endpoint, and the links that point there become ready again one latency later
///   (ZeroMQ reconnects); until then, frames sent on them are dropped (`droppedNotReady`), and
///   frames in flight to an earlier incarnation are lost. (`warren simulate` replaces a churned
///   node by a new node at a new endpoint instead.) A link dialled before anybody listened at
///   its endpoint becomes ready when a node starts there;
/// - each sent frame's bytes (one array) are shared by all its receivers, in any shard, which
///   get them through `GossipEngine.receive(topic:body:)` like any driver's; a relayed DATA frame
///   carries the message id of the frame that caused it (its envelope checked byte for byte
///   with `DataFrameView`), given to the engine with the bytes, so BLAKE2b runs once per publish;
/// - events live in binary heaps ordered by (time, key), compact and allocation-free; the key
///   is (node that scheduled the event, that node's count), so the order of events at the same
///   time does not depend on how the run is split;
/// - engines live in one array and are driven in place;
/// - every node draws from its own generator (seeded from the run's seed and its index); the
///   workload (`random()`, node ids) draws from the simulator's;
/// - with `threads` > 1 the nodes are split into that many shards (node i in shard
///   (i / 16) % threads: blocks of 16, `SimNodes.blockShift`) that run on their own threads
///   in windows of virtual time no longer than the shortest link latency so far, and at most
///   twice the shortest a new link can draw
///   (`LatencyDistribution.minimum`; see `runWindows`): a frame sent to another shard's node
///   arrives after the window it was sent in, so shards only exchange frames between windows.
///   Every node sees the same events in the same order with any number of threads, so the
///   results are the same (tests check this).
///
/// Per-link latency is drawn once per link (directional) from `latency`; loss is per frame.
/// Every DATA frame belongs to a message index assigned at `publish`; deliveries and
/// link-sends are recorded per message.
public struct Simulator {
    /// One first-seen delivery of a DATA frame to a local topic.
    public struct Delivery: Sendable, Hashable {
        public var node: Int32
        public var message: Int32
        public var hops: UInt8
        public var time: UInt64
    }

    /// Per-message bookkeeping.
    public struct MessageRecord: Sendable {
        public var publisher: Int32
        public var topic: Topic
        public var publishedAt: UInt64
        /// DATA link-sends of this message (every node, every link; lost frames included).
        public var frames: Int = 0
    }

    public var latency: LatencyDistribution
    /// Probability that a frame is lost on a link.
    public var loss: Double {
        didSet { lossThreshold = Self.threshold(loss) }
    }
    /// Maximum events processed per shard (a protocol that never quiesces fails instead of hanging).
    public var stepBudget: Int = .max
    /// Jitter, duplication, connection ids, aliases, recording (`NetworkModel`); set before
    /// adding nodes.
    public var model = NetworkModel()
    /// Shards, and the threads that run them (see the type's documentation).
    public let threads: Int
    /// Times the threads were found slower than one thread would be, and the simulator fell
    /// back to one thread. The measure: the wall time that passed against the CPU time the
    /// threads spent on their shards (not spinning at the barrier), which is about what one
    /// thread would need. Within a run, a block of 256 windows above `blockDemoteRatio` × that
    /// hands every shard to the first thread for the rest of the run; runs that took 20 ms of
    /// wall time together are weighed against `demoteRatio` × that. After a fallback, runs use
    /// one thread for a while (`demoteHold`: 250 ms, doubling while fallbacks follow each
    /// other, up to 4 s). This happens on a machine whose other work leaves fewer free cores
    /// than threads, or in stretches with few events per window. Results do not change.
    public private(set) var demotions = 0
    var demoteRatio = 1.0
    var blockDemoteRatio = 1.5
    var parallelRetryAt: UInt64 = 0
    var parallelWall: UInt64 = 0
    var parallelWork: UInt64 = 0

    enum ParallelOutcome { case sequential, demoted, measured(wall: UInt64, work: UInt64) }

    /// How long the next fallback keeps runs on one thread: 250 ms after threads last kept up,
    /// doubled by each fallback that follows (at most `maxDemoteHold`). A moment of other work on
    /// the cores costs a quarter of a second on one thread, not seconds; a machine that stays
    /// busy is not made to try threads again and again.
    var demoteHold: UInt64 = Simulator.minDemoteHold
    static let minDemoteHold: UInt64 = 250_000_000
    static let maxDemoteHold: UInt64 = 4_000_000_000

    mutating func demote() {
        demotions += 1
        parallelRetryAt = simMonotonicNanoseconds() &+ demoteHold
        demoteHold = min(demoteHold &* 2, Simulator.maxDemoteHold)
        parallelWall = 0
        parallelWork = 0
    }

    public private(set) var now: UInt64 = 0
    public private(set) var budgetExceeded = false
    /// Events processed.
    public var steps: Int { shards.reduce(0) { $0 + $1.steps } }

    // Per node (index = incarnation).
    public private(set) var engines: [GossipEngine] = []
    public private(set) var alive: [Bool] = []
    public private(set) var endpoints: [String] = []
    /// Links of node i, by the ids its engine gave them (O(1) even for hubs).
    var links: [SimLinks] = []
    /// What a sender reads of its target, and a frame's receiver of itself, in one word
    /// (`SimReach`): alive (as `alive`), subscribed to every topic, its incarnation's low 8 bits.
    var reach: [UInt16] = []
    var prefixes: [[[UInt8]]] = []
    var tickAt: [UInt64] = []
    var tickGeneration: [UInt64] = []
    var rngs: [SeededGenerator] = []
    var seqs: [UInt64] = []
    var byEndpoint: [String: Int32] = [:]
    /// Each node's incarnation (0: never started).
    public private(set) var incarnation: [UInt32] = []
    /// What each node saw, with `model.recording`.
    public private(set) var records: [NodeRecord] = []
    var configs: [EngineConfig] = []

    // Messages and results.
    public private(set) var messages: [MessageRecord] = []
    /// Deliveries in (time, node, message, hops) order, whatever the number of threads.
    public private(set) var deliveries: [Delivery] = []
    /// Link-sends of control frames (HELLO, HEARTBEAT, PEERS, BYE) / of DATA frames.
    public var controlFramesSent: Int { shards.reduce(0) { $0 + $1.controlFramesSent } }
    public var dataFramesSent: Int { shards.reduce(0) { $0 + $1.dataFramesSent } }
    public var framesLost: Int { shards.reduce(0) { $0 + $1.framesLost } }
    public var droppedNotReady: Int { shards.reduce(0) { $0 + $1.droppedNotReady } }
    public var filteredAtSender: Int { shards.reduce(0) { $0 + $1.filteredAtSender } }
    public var peerUps: Int { shards.reduce(0) { $0 + $1.peerUps } }
    public var peerDowns: Int { shards.reduce(0) { $0 + $1.peerDowns } }

    let seed: UInt64
    var rng: SeededGenerator
    var lossThreshold: UInt64 = 0
    var shards: [SimShard]
    let mailboxes: SimMailboxes

    /// `threads` (≥ 1) shards the nodes; the results do not depend on it.
    public init(seed: UInt64, latency: LatencyDistribution = .fixed(1_000_000), loss: Double = 0, threads: Int = 1) {
        self.seed = seed
        self.rng = SeededGenerator(seed: seed)
        self.latency = latency
        self.loss = loss
        self.threads = max(1, min(threads, 64))
        self.lossThreshold = Self.threshold(loss)
        shards = (0..<self.threads).map { [count = self.threads] in SimShard(index: $0, shardCount: count) }
        mailboxes = SimMailboxes(shards: self.threads)
    }

    static func threshold(_ loss: Double) -> UInt64 {
        loss <= 0 ? 0 : (loss >= 1 ? .max : UInt64(loss * 18_446_744_073_709_551_616.0))
    }

    public var nodeCount: Int { engines.count }

    /// Draws from the simulator's generator (for workloads that must stay reproducible).
    public mutating func random() -> UInt64 { rng.next() }
    public mutating func random(below n: Int) -> Int { Int(rng.next(upperBound: UInt64(n))) }

    // MARK: - Nodes

    /// Adds a node and starts it now unless `start` is false. Returns its index. A fresh
    /// `NodeID` is drawn from the seed at each start.
    @discardableResult
    public mutating func addNode(config: EngineConfig, start: Bool = true) -> Int {
        let i = engines.count
        engines.append(GossipEngine(config: EngineConfig(endpoint: "-", seenCapacity: 1), nodeID: NodeID(raw: 1)))
        configs.append(config)
        alive.append(false)
        endpoints.append(config.endpoint)
        links.append(SimLinks())
        reach.append(0)
        prefixes.append([])
        tickAt.append(.max)
        tickGeneration.append(0)
        rngs.append(SeededGenerator(seed: mix64(seed ^ mix64(UInt64(i) &+ 0x51D0_DE5E_ED00_0000))))
        seqs.append(0)
        incarnation.append(0)
        records.append(NodeRecord())
        byEndpoint[config.endpoint] = Int32(i)
        if start { self.start(i) }
        return i
    }

    /// Starts node `i` (after `addNode(start: false)`, `kill` or `stop`) with a new `NodeID` at
    /// its endpoint. Every link that points there becomes ready one link latency later, as
    /// ZeroMQ keeps reconnecting: links dialled before anybody listened, and links to an earlier
    /// incarnation of the node.
    public mutating func start(_ i: Int) {
        guard !alive[i] else { return }
        let id = NodeID.random(using: &rng)
        // The key of its link ids comes from its node id (drawn from the run's seed), not from
        // its own generator: no outsider is simulated, and the node draws only what the protocol does.
        engines[i] = GossipEngine(config: configs[i], nodeID: id, linkKey: (mix64(id.raw), mix64(id.raw ^ 0x6C69_6E6B_6B65_7973)))
        alive[i] = true
        incarnation[i] &+= 1
        links[i] = SimLinks()
        prefixes[i] = []
        reach[i] = SimReach.of(alive: true, incarnation: incarnation[i])
        tickAt[i] = .max
        tickGeneration[i] &+= 1
        byEndpoint[endpoints[i]] = Int32(i)
        reconnect(to: i)
        operate(on: i) { n, shard in
            shard.contextValid = false
            n.engines[i].start(now: shard.now, rng: &n.rngs[i], into: &shard.actions)
            shard.perform(i, n)
        }
    }

    /// Restart = kill (if alive) + start.
    public mutating func restart(_ i: Int) {
        kill(i)
        start(i)
    }

    /// The links that point at node `i`'s endpoint become ready for its new incarnation.
    mutating func reconnect(to i: Int) {
        let endpoint = endpoints[i], aliases = model.aliases
        let restarted = incarnation[i] > 1, count = engines.count
        withState { n, shards in
            var found: [(node: Int, link: Int)] = []
            for s in shards.indices where !shards[s].unresolved.isEmpty {
                shards[s].unresolved.removeAll { u in
                    guard (aliases[u.endpoint] ?? u.endpoint) == endpoint else { return false }
                    let j = Int(u.node), li = Int(u.link)
                    if n.alive[j] && n.incarnation[j] == u.incarnation && li < n.links[j].slots.count
                        && (n.links[j][slot: li].target == -1 || n.links[j][slot: li].target == Int32(i)) {
                        n.links[j][slot: li].target = Int32(i)
                        found.append((j, li))
                    }
                    return true
                }
            }
            // Only a restart can find links to the node itself (scanning every node's links at
            // each first start would cost N² in a large simulation).
            if restarted {
                for j in 0..<count where n.alive[j] {
                    for li in n.links[j].slots.indices where n.links[j][slot: li].target == Int32(i) {
                        // Not ready for the new incarnation until its ready event.
                        n.links[j][slot: li].readyFor = 0
                        found.append((j, li))
                    }
                }
            }
            for (j, li) in found {
                let shard = n.shard(of: j)
                shards[shard].scheduleReady(j, link: li, target: i, at: shards[shard].now &+ n.links[j][slot: li].latency, n)
            }
        }
    }

    /// Node `i` takes in a raw 2-part message now (not over a link). `via` names the inbound
    /// connection it arrives on (an outsider's own, say); nil: the engine cannot tell.
    public mutating func inject(to i: Int, topic: [UInt8], body: [UInt8], via: ConnectionID? = nil) {
        guard alive[i] else { return }
        operate(on: i) { n, shard in
            shard.contextValid = false
            n.engines[i].receive(topic: topic, body: body, via: via, now: shard.now, rng: &n.rngs[i], into: &shard.actions)
            shard.perform(i, n)
        }
    }

    /// Node `i` hears a LAN discovery beacon now.
    public mutating func discover(to i: Int, endpoint: String, node: NodeID) {
        guard alive[i] else { return }
        operate(on: i) { n, shard in
            shard.contextValid = false
            n.engines[i].discovered(endpoint: endpoint, node: node, now: shard.now, rng: &n.rngs[i], into: &shard.actions)
            shard.perform(i, n)
        }
    }

    public mutating func unsubscribe(_ i: Int, _ topic: Topic) {
        guard alive[i] else { return }
        operate(on: i) { n, shard in
            n.engines[i].unsubscribeLocal(topic, into: &shard.actions)
            shard.perform(i, n)
        }
    }

    /// With `model.connectionIDs`: the inbound connection at node `to` of node `from`'s link
    /// `link`, for both nodes' current incarnations (nil if it never carried a frame there).
    public func connection(from: Int, link: LinkID, to: Int) -> ConnectionID? {
        guard let li = links[from].slot(of: link) else { return nil }
        let key = SimShard.ConnectionKey(node: Int32(from), nodeIncarnation: incarnation[from], link: Int32(li), target: Int32(to),
                                         targetIncarnation: incarnation[to])
        for s in shards { if let c = s.connections[key] { return c } }
        return nil
    }

    /// Kills node `i` without BYE; frames in flight to it are lost. `start` brings it back as a
    /// new incarnation.
    public mutating func kill(_ i: Int) {
        guard alive[i] else { return }
        alive[i] = false
        links[i] = SimLinks()
        prefixes[i] = []
        reach[i] = 0
        tickGeneration[i] &+= 1
        // Free the engine's state.
        engines[i] = GossipEngine(config: EngineConfig(endpoint: "-", seenCapacity: 1), nodeID: engines[i].nodeID)
    }

    /// Stops node `i` gracefully (BYE to its neighbours), then kills it.
    public mutating func stop(_ i: Int) {
        guard alive[i] else { return }
        operate(on: i) { n, shard in
            shard.contextValid = false
            n.engines[i].stop(now: shard.now, into: &shard.actions)
            shard.perform(i, n)
        }
        kill(i)
    }

    public mutating func subscribe(_ i: Int, _ topic: Topic) {
        guard alive[i] else { return }
        operate(on: i) { n, shard in
            n.engines[i].subscribeLocal(topic, into: &shard.actions)
            shard.perform(i, n)
        }
    }

    /// Publishes `envelope` from node `i`; returns the message index.
    @discardableResult
    public mutating func publish(from i: Int, topic: Topic, envelope: [UInt8], ttl: UInt8? = nil) -> Int {
        let m = messages.count
        messages.append(MessageRecord(publisher: Int32(i), topic: topic, publishedAt: now))
        guard alive[i] else { return m }
        operate(on: i) { n, shard in
            shard.contextMessage = Int32(m)
            shard.contextSlot = -1
            shard.publishEnvelope = envelope
            shard.publishID = MessageID(envelope: envelope)
            shard.contextValid = true
            n.engines[i].publish(topic: topic, envelope: envelope, ttl: ttl, now: shard.now, rng: &n.rngs[i], into: &shard.actions)
            shard.perform(i, n)
            shard.publishEnvelope = []
        }
        return m
    }

    /// Up (handshake complete) neighbours of node `i`, and links not yet up.
    public func degree(_ i: Int) -> (up: Int, pending: Int) {
        guard alive[i] else { return (0, 0) }
        return engines[i].linkCounts
    }

    // MARK: - Running

    /// Processes every event up to and including `time`, then sets the clock to `time`.
    /// Returns false if the step budget ran out.
    @discardableResult
    public mutating func run(until time: UInt64) -> Bool {
        guard !engines.isEmpty else {
            if time > now { now = time }
            return true
        }
        let count = threads
        // Short runs (a few windows) are not worth starting threads for; the shards then take
        // turns on this thread, with the same windows and the same results.
        // After threads turned out slower than one (below), runs stay on one thread for a while.
        let span = time > now ? time - now : 0
        let parallel = count > 1 && span / max(latency.minimum, 1) >= 16 && simMonotonicNanoseconds() >= parallelRetryAt
        let blockRatio = blockDemoteRatio
        let outcome = withState { n, shards -> ParallelOutcome in
            if count == 1 {
                shards[0].runWindow(end: time == .max ? .max : time + 1, n)
                return .sequential
            }
            let base = shards.baseAddress!
            if parallel {
                let sync = SimSync(threads: count, shards: count)
                sync.blockDemoteRatio = blockRatio
                // The workers touch disjoint shards and nodes between barriers.
                let ctx = UnsafeSendable((n, base))
                if simRunThreads(count, { t in
                    Simulator.runWindows(thread: t, threads: count, ctx.value.1, ctx.value.0, until: time, sync)
                }) {
                    if sync.demoted { return .demoted }
                    return .measured(wall: sync.totalWall, work: (0..<count).reduce(0) { $0 &+ sync.work[$1] })
                }
            }
            Simulator.runWindows(thread: 0, threads: 1, base, n, until: time, SimSync(threads: 1, shards: count))
            return .sequential
        }
        switch outcome {
        case .demoted:
            demote()
        case .measured(let wall, let work):
            // Short runs (a stream's message every 20 ms of virtual time) add up: decide once
            // they have taken 20 ms of wall time together.
            parallelWall &+= wall
            parallelWork &+= work
            if parallelWall >= 20_000_000 {
                if Double(parallelWall) > demoteRatio * Double(parallelWork) { demote() } else { demoteHold = Simulator.minDemoteHold }
                parallelWall = 0
                parallelWork = 0
            }
        case .sequential:
            break
        }
        let exceeded = shards.contains { $0.budgetExceeded }
        if exceeded { budgetExceeded = true }
        var t = shards.reduce(now) { max($0, $1.now) }
        if !exceeded { t = max(t, time) }
        now = t
        for k in shards.indices { shards[k].now = t }
        collect()
        return !exceeded
    }

    @discardableResult
    public mutating func run(for duration: UInt64) -> Bool { run(until: now &+ duration) }

    // MARK: - Internals

    /// The window loop of thread `t` of `threads`, which runs shards t, t + threads, …
    ///
    /// Window k runs every event with time < end = min(T + lookahead, until + 1), where T is the
    /// earliest pending event of any shard, and the lookahead is the shortest latency of any
    /// link so far, but at most twice the shortest latency a new link can draw (a link dialled
    /// in the window becomes ready one latency later, and its first frame arrives one more
    /// latency after that). So frames a shard sends to another shard's nodes arrive ≥ end: they
    /// wait in mailboxes (parity k % 2) and are taken in at the start of window k + 1. At the
    /// end of a window each shard publishes the time of its next event (its heap's, or the
    /// earliest frame it mailed) and its shortest link, and the threads meet at the barrier.
    static func runWindows(thread t: Int, threads: Int, _ shards: UnsafeMutablePointer<SimShard>, _ n: SimNodes,
                           until: UInt64, _ sync: SimSync) {
        let count = n.shardCount
        var threads = threads
        var mine = stride(from: t, to: count, by: threads)
        let floor = max(n.latency.minimum, 1)
        let newLinks = floor > UInt64.max / 2 ? floor : 2 * floor
        for s in mine {
            sync.next[s] = shards[s].nextTime
            sync.shortest[s] = shards[s].shortestLink
            sync.aborted[s] = false
        }
        // Every `block` windows each thread publishes the CPU time it spent on its shards, and the
        // first one the wall time that passed; all then take the same decision from the same
        // figures. A block clearly slower than one thread (blockDemoteRatio) ends the threads'
        // part of this run; the totals of the run go to the simulator, which weighs them
        // together with those of its other runs (`demoteRatio`).
        let block = 256
        let startWall = threads > 1 && t == 0 ? simMonotonicNanoseconds() : 0
        let startCPU = threads > 1 ? simThreadCPUNanoseconds() : 0
        var blockWall = startWall, blockCPU = startCPU, spinsTotal = 0.0
        var blockSpins = 0.0
        let spinCost = threads > 1 ? SimBarrier.spinNanoseconds : 0
        if threads > 1 { _ = sync.barrier.wait() }
        let last = until == .max ? UInt64.max : until + 1
        var k = 0
        while true {
            let p = k & 1
            if threads > 1 && k > 0 && k % block == 0 {
                var cpu: UInt64 = 0
                for u in 0..<threads { cpu &+= sync.cpu[p * threads + u] }
                if Double(sync.wall[p]) > sync.blockDemoteRatio * Double(cpu) {
                    // Slower than one thread: thread 0 takes every shard from here on.
                    if t != 0 { return }
                    sync.demoted = true
                    threads = 1
                    mine = stride(from: 0, to: count, by: 1)
                }
            }
            var start = UInt64.max, lookahead = newLinks, abort = false
            for s in 0..<count {
                start = min(start, sync.next[p * count + s])
                lookahead = min(lookahead, sync.shortest[p * count + s])
                abort = abort || sync.aborted[p * count + s]
            }
            if abort || start > until { break }
            let (sum, overflow) = start.addingReportingOverflow(lookahead)
            let end = overflow ? last : min(sum, last)
            for s in mine {
                if k > 0 { shards[s].receiveMail(parity: (k - 1) & 1, n) }
                shards[s].mailParity = p
                shards[s].earliestMailed = .max
                shards[s].windowEnd = end
                shards[s].runWindow(end: end, n)
            }
            let q = (k + 1) & 1
            for s in mine {
                sync.next[q * count + s] = min(shards[s].nextTime, shards[s].earliestMailed)
                sync.shortest[q * count + s] = shards[s].shortestLink
                sync.aborted[q * count + s] = shards[s].budgetExceeded
            }
            if threads > 1 && (k + 1) % block == 0 {
                let cpu = simThreadCPUNanoseconds()
                let spun = UInt64(min(blockSpins * spinCost, Double(cpu &- blockCPU)))
                sync.cpu[q * threads + t] = cpu &- blockCPU &- spun
                blockCPU = cpu
                spinsTotal += blockSpins
                blockSpins = 0
                if t == 0 {
                    let wall = simMonotonicNanoseconds()
                    sync.wall[q] = wall &- blockWall
                    blockWall = wall
                }
            }
            if threads > 1 { blockSpins += Double(sync.barrier.wait()) }
            k += 1
        }
        if threads > 1 {
            // This thread's part of the run (it ran on its own to the end: not demoted).
            let cpu = simThreadCPUNanoseconds() &- startCPU
            sync.work[t] = cpu &- UInt64(min((spinsTotal + blockSpins) * spinCost, Double(cpu)))
            if t == 0 { sync.totalWall = simMonotonicNanoseconds() &- startWall }
        }
        for s in mine {
            if k > 0 { shards[s].receiveMail(parity: (k - 1) & 1, n) }
            shards[s].mailParity = 0
            shards[s].windowEnd = 0
        }
    }

    /// Runs a workload operation on node `i`'s shard, then delivers what it sent to other shards.
    mutating func operate(on i: Int, _ body: (SimNodes, inout SimShard) -> Void) {
        withState { n, shards in
            body(n, &shards[n.shard(of: i)])
            if n.shardCount > 1 {
                for s in shards.indices {
                    shards[s].receiveMail(parity: 0, n)
                    shards[s].receiveMail(parity: 1, n)
                }
            }
        }
        collect()
    }

    /// Folds the shards' deliveries and per-message frame counts into the totals.
    mutating func collect() {
        var fresh: [Delivery] = []
        for s in shards.indices {
            if !shards[s].deliveries.isEmpty {
                fresh.append(contentsOf: shards[s].deliveries)
                shards[s].deliveries.removeAll(keepingCapacity: true)
            }
            if !shards[s].messageFrames.isEmpty {
                for (m, f) in shards[s].messageFrames.enumerated() where f != 0 { messages[m].frames += f }
                shards[s].messageFrames.removeAll(keepingCapacity: true)
            }
        }
        if !fresh.isEmpty {
            fresh.sort { ($0.time, $0.node, $0.message, $0.hops) < ($1.time, $1.node, $1.message, $1.hops) }
            deliveries.append(contentsOf: fresh)
        }
    }

    /// The per-node arrays seen through pointers, and the shards.
    mutating func withState<R>(_ body: (SimNodes, UnsafeMutableBufferPointer<SimShard>) -> R) -> R {
        let byEndpoint = self.byEndpoint, latency = self.latency, loss = lossThreshold
        let budget = stepBudget, mail = mailboxes.base, count = threads, model = self.model
        return engines.withUnsafeMutableBufferPointer { e in
            links.withUnsafeMutableBufferPointer { l in
                alive.withUnsafeMutableBufferPointer { a in
                    reach.withUnsafeMutableBufferPointer { sa in
                        prefixes.withUnsafeMutableBufferPointer { pf in
                            tickAt.withUnsafeMutableBufferPointer { ta in
                                tickGeneration.withUnsafeMutableBufferPointer { tg in
                                    rngs.withUnsafeMutableBufferPointer { r in
                                        seqs.withUnsafeMutableBufferPointer { sq in
                                            incarnation.withUnsafeMutableBufferPointer { inc in
                                                records.withUnsafeMutableBufferPointer { rec in
                                                    shards.withUnsafeMutableBufferPointer { sh in
                                                        body(SimNodes(
                                                            engines: e.baseAddress!, links: l.baseAddress!,
                                                            alive: a.baseAddress!, reach: sa.baseAddress!, prefixes: pf.baseAddress!,
                                                            tickAt: ta.baseAddress!, tickGeneration: tg.baseAddress!, rngs: r.baseAddress!,
                                                            seqs: sq.baseAddress!, byEndpoint: byEndpoint, latency: latency,
                                                            lossThreshold: loss, shardCount: count, mail: mail, stepBudget: budget,
                                                            incarnation: inc.baseAddress!, model: model, records: rec.baseAddress!), sh)
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The mailboxes between shards (`SimNodes.mailbox`), allocated once per simulator.
// @unchecked: each shard writes only its own outgoing boxes and reads its incoming ones, between barriers.
final class SimMailboxes: @unchecked Sendable {
    let base: UnsafeMutablePointer<SimMailbox>
    let count: Int

    init(shards: Int) {
        count = 2 * shards * shards
        base = .allocate(capacity: count)
        base.initialize(repeating: SimMailbox(), count: count)
    }

    deinit {
        base.deinitialize(count: count)
        base.deallocate()
    }
}

