import CPrefetch

/// A discrete-event driver for thousands of `GossipEngine`s: the same engine the ZeroMQ
/// driver runs, with virtual time and one seeded generator, so a run is reproducible from its
/// seed. It emulates the socket model of docs/PROTOCOL.md §1 like `InMemoryNetwork`, but is
/// built for scale:
///
/// - every node is one *incarnation*: a killed node never comes back; a replacement is a new
///   node (new index, new endpoint, new `NodeID`). Links to a dead node never become ready and
///   frames sent on them are dropped (`droppedNotReady`);
/// - each sent frame is decoded once and the decoded `Frame` is shared by all its receivers
///   (`GossipEngine.receive(_ frame:)`); a relayed DATA frame reuses the envelope and message id
///   of the frame that caused it (checked byte for byte), so BLAKE2b runs once per publish;
/// - events live in one binary heap ordered by (time, sequence), compact and allocation-free;
/// - engines live in one array and are driven in place.
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
        didSet { lossThreshold = loss <= 0 ? 0 : (loss >= 1 ? .max : UInt64(loss * 18_446_744_073_709_551_616.0)) }
    }
    /// Maximum events processed (a protocol that never quiesces fails instead of hanging).
    public var stepBudget: Int = .max

    public private(set) var now: UInt64 = 0
    public private(set) var steps = 0
    public private(set) var budgetExceeded = false

    // Per node (index = incarnation).
    public private(set) var engines: [GossipEngine] = []
    public private(set) var alive: [Bool] = []
    public private(set) var endpoints: [String] = []
    /// Links of node i, indexed by LinkID − the engine's first LinkID (engines number their links
    /// consecutively from a node-id-derived base), so a lookup is O(1) even for hubs.
    var links: [[SimLink]] = []
    var linkBase: [UInt64] = []
    var subscribesAll: [Bool] = []
    var prefixes: [[[UInt8]]] = []
    var tickAt: [UInt64] = []
    var tickGeneration: [UInt64] = []
    var byEndpoint: [String: Int32] = [:]

    // Messages and results.
    public private(set) var messages: [MessageRecord] = []
    public private(set) var deliveries: [Delivery] = []
    /// Link-sends of control frames (HELLO, HEARTBEAT, PEERS, BYE) / of DATA frames.
    public private(set) var controlFramesSent = 0
    public private(set) var dataFramesSent = 0
    public private(set) var framesLost = 0
    public private(set) var droppedNotReady = 0
    public private(set) var filteredAtSender = 0
    public private(set) var peerUps = 0
    public private(set) var peerDowns = 0

    var rng: SeededGenerator
    var lossThreshold: UInt64 = 0
    var heap: [SimEvent] = []
    var seq: UInt64 = 0
    var actions: [Action] = []
    // Decoded frames in flight, shared by their receivers.
    var pool: [SimFrame] = []
    var poolRefs: [Int32] = []
    /// Per pool slot: a DATA frame, and its message id (read by `prefetchNext` without copying the frame).
    var poolIsData: [Bool] = []
    var poolIDs: [MessageID] = []
    var freeSlots: [Int32] = []
    // The DATA frame (pool slot) or publish being handled: relayed frames reuse its envelope
    // and id, deliveries and link-sends are booked to its message.
    var contextSlot = -1
    var contextMessage: Int32 = -1
    var publishEnvelope: [UInt8] = []
    var publishID = MessageID(hi: 0, lo: 0)
    var contextValid = false

    public init(seed: UInt64, latency: LatencyDistribution = .fixed(1_000_000), loss: Double = 0) {
        self.rng = SeededGenerator(seed: seed)
        self.latency = latency
        self.loss = loss
        self.lossThreshold = loss <= 0 ? 0 : (loss >= 1 ? .max : UInt64(loss * 18_446_744_073_709_551_616.0))
        actions.reserveCapacity(64)
    }

    public var nodeCount: Int { engines.count }

    /// Draws from the simulator's generator (for workloads that must stay reproducible).
    public mutating func random() -> UInt64 { rng.next() }
    public mutating func random(below n: Int) -> Int { Int(rng.next(upperBound: UInt64(n))) }

    // MARK: - Nodes

    /// Adds and starts a node now. Returns its index. A fresh `NodeID` is drawn from the seed.
    @discardableResult
    public mutating func addNode(config: EngineConfig) -> Int {
        let i = engines.count
        let id = NodeID.random(using: &rng)
        engines.append(GossipEngine(config: config, nodeID: id))
        alive.append(true)
        endpoints.append(config.endpoint)
        links.append([])
        linkBase.append(mix64(id.raw))
        subscribesAll.append(false)
        prefixes.append([])
        tickAt.append(.max)
        tickGeneration.append(0)
        byEndpoint[config.endpoint] = Int32(i)
        contextValid = false
        engines[i].start(now: now, rng: &rng, into: &actions)
        perform(i)
        return i
    }

    /// Kills node `i` without BYE; frames in flight to it are lost; it never returns.
    public mutating func kill(_ i: Int) {
        guard alive[i] else { return }
        alive[i] = false
        links[i] = []
        prefixes[i] = []
        subscribesAll[i] = false
        tickGeneration[i] &+= 1
        // Free the engine's state.
        engines[i] = GossipEngine(config: EngineConfig(endpoint: "-", seenCapacity: 1), nodeID: engines[i].nodeID)
    }

    /// Stops node `i` gracefully (BYE to its neighbours), then kills it.
    public mutating func stop(_ i: Int) {
        guard alive[i] else { return }
        contextValid = false
        engines[i].stop(now: now, into: &actions)
        perform(i)
        kill(i)
    }

    public mutating func subscribe(_ i: Int, _ topic: Topic) {
        guard alive[i] else { return }
        engines[i].subscribeLocal(topic, into: &actions)
        perform(i)
    }

    /// Publishes `envelope` from node `i`; returns the message index.
    @discardableResult
    public mutating func publish(from i: Int, topic: Topic, envelope: [UInt8], ttl: UInt8? = nil) -> Int {
        let m = messages.count
        messages.append(MessageRecord(publisher: Int32(i), topic: topic, publishedAt: now))
        guard alive[i] else { return m }
        contextMessage = Int32(m)
        contextSlot = -1
        publishEnvelope = envelope
        publishID = MessageID(envelope: envelope)
        contextValid = true
        engines[i].publish(topic: topic, envelope: envelope, ttl: ttl, now: now, rng: &rng, into: &actions)
        perform(i)
        publishEnvelope = []
        return m
    }

    /// Up (handshake complete) neighbours of node `i`, and links not yet up.
    public func degree(_ i: Int) -> (up: Int, pending: Int) {
        guard alive[i] else { return (0, 0) }
        let e = engines[i]
        var up = 0, pending = 0
        for li in e.links.indices { if e.linkIsUp(li) { up += 1 } else { pending += 1 } }
        return (up, pending)
    }

    // MARK: - Running

    /// Processes every event up to and including `time`, then sets the clock to `time`.
    /// Returns false if the step budget ran out.
    @discardableResult
    public mutating func run(until time: UInt64) -> Bool {
        while !heap.isEmpty && heap[0].time <= time {
            if steps >= stepBudget { budgetExceeded = true; return false }
            steps += 1
            let ev = popEvent()
            if ev.time > now { now = ev.time }
            prefetchNext()
            dispatch(ev)
        }
        if time > now { now = time }
        return true
    }

    @discardableResult
    public mutating func run(for duration: UInt64) -> Bool { run(until: now &+ duration) }

    // MARK: - Internals

    mutating func dispatch(_ ev: SimEvent) {
        let i = ev.node
        switch ev.kind {
        case .frame:
            let slot = Int(ev.arg)
            if alive[i] {
                contextSlot = slot
                contextMessage = pool[slot].message
                contextValid = contextMessage >= 0
                engines[i].receive(pool[slot].frame, now: now, rng: &rng, into: &actions)
                if !actions.isEmpty { perform(i) } else { scheduleTick(i) }
                contextSlot = -1
            }
            release(slot)
        case .ready:
            let li = Int(ev.arg)
            guard alive[i], li < links[i].count else { return }
            let t = Int(links[i][li].target)
            guard t >= 0, alive[t], !links[i][li].ready else { return }
            links[i][li].ready = true
            contextValid = false
            engines[i].linkReady(LinkID(raw: linkBase[i] &+ UInt64(li) &+ 1), now: now, rng: &rng, into: &actions)
            perform(i)
        case .tick:
            guard alive[i], tickGeneration[i] & SimEvent.argMask == ev.arg else { return }
            tickAt[i] = .max
            contextValid = false
            engines[i].tick(now: now, rng: &rng, into: &actions)
            perform(i)
        }
    }

    /// Memory latency hiding: at 10,000 nodes every event touches a cold engine. While this event
    /// is handled, start loading what the next ones will read: the engines of the two events
    /// after next (their hot fields), and, for the next event (its engine loaded one step ago),
    /// the peer table and seen-cache bucket its frame will hit. Hints only: no state changes.
    @inline(__always)
    mutating func prefetchNext() {
        let n = heap.count
        guard n > 0 else { return }
        engines.withUnsafeBufferPointer { es in
            guard let base = es.baseAddress else { return }
            let stride = MemoryLayout<GossipEngine>.stride
            for k in 1...2 where k < n {
                let p = UnsafeRawPointer(base) + heap[k].node * stride
                var off = 0
                while off < min(stride, 320) { warren_prefetch(p + off); off += 64 }
            }
        }
        let next = heap[0]
        if next.kind == .frame {
            let slot = Int(next.arg)
            if poolIsData[slot] { engines[next.node].prefetchData(id: poolIDs[slot]) }
        }
    }

    /// Index of link `raw` of node i in `links[i]` (nil if never opened or closed).
    @inline(__always)
    func linkIndex(_ i: Int, _ raw: UInt64) -> Int? {
        let k = raw &- linkBase[i] &- 1
        guard k < UInt64(links[i].count), links[i][Int(k)].target != SimLink.closed else { return nil }
        return Int(k)
    }

    mutating func scheduleTick(_ i: Int) {
        guard alive[i], let d = engines[i].nextDeadline else { return }
        let t = max(d, now)
        if tickAt[i] <= t { return }
        tickGeneration[i] &+= 1
        tickAt[i] = t
        push(SimEvent(time: t, node: i, kind: .tick, arg: tickGeneration[i] & SimEvent.argMask))
    }

    /// Performs the actions node `i` emitted, then reschedules its tick.
    mutating func perform(_ i: Int) {
        var k = 0
        while k < actions.count {
            switch actions[k] {
            case .send(let targets, let out):
                send(from: i, targets: targets, out)
            case .connect(let l, let endpoint):
                let lat = latency.draw(&rng)
                let t = byEndpoint[endpoint] ?? -1
                let k = l.raw &- linkBase[i] &- 1
                precondition(k < 1 << 30, "engine link ids are consecutive")
                while UInt64(links[i].count) <= k { links[i].append(SimLink(target: SimLink.closed, latency: 0, ready: false)) }
                links[i][Int(k)] = SimLink(target: t, latency: lat, ready: false)
                if t >= 0 && alive[Int(t)] {
                    push(SimEvent(time: now &+ lat, node: i, kind: .ready, arg: k))
                }
            case .disconnect(let l):
                if let li = linkIndex(i, l.raw) { links[i][li] = SimLink(target: SimLink.closed, latency: 0, ready: false) }
            case .deliver(_, _, let hops, _):
                deliveries.append(Delivery(node: Int32(i), message: contextMessage, hops: hops, time: now))
            case .subscribe(let prefix):
                if prefix.isEmpty { subscribesAll[i] = true } else { prefixes[i].append(prefix) }
            case .unsubscribe(let prefix):
                if prefix.isEmpty { subscribesAll[i] = false }
                else if let p = prefixes[i].firstIndex(of: prefix) { prefixes[i].remove(at: p) }
            case .peerUp:
                peerUps += 1
            case .peerDown:
                peerDowns += 1
            }
            k += 1
        }
        actions.removeAll(keepingCapacity: true)
        scheduleTick(i)
    }

    /// Decodes `out` once and schedules its arrival on each ready link.
    mutating func send(from i: Int, targets: [LinkID], _ out: OutFrame) {
        let isData = !out.topic.isControl
        var message: Int32 = -1
        let frame: Frame
        if isData, contextValid, let f = relayedData(out) {
            frame = f
            message = contextMessage
        } else {
            do { frame = try Frame.decode(topic: out.topic.bytes, body: out.body) } catch { return }
            if isData { message = contextMessage }
        }
        if isData {
            dataFramesSent += targets.count
            if message >= 0 { messages[Int(message)].frames += targets.count }
        } else {
            controlFramesSent += targets.count
        }
        var slot = -1
        for l in targets {
            guard let li = linkIndex(i, l.raw) else { droppedNotReady += 1; continue }
            let link = links[i][li]
            let t = Int(link.target)
            guard link.ready, t >= 0, alive[t] else { droppedNotReady += 1; continue }
            if !subscribesAll[t] && !prefixes[t].contains(where: { out.topic.hasPrefix($0) }) {
                filteredAtSender += 1
                continue
            }
            if lossThreshold != 0 && rng.next() < lossThreshold {
                framesLost += 1
                continue
            }
            if slot < 0 { slot = allocate(SimFrame(frame: frame, message: message)) }
            poolRefs[slot] += 1
            push(SimEvent(time: now &+ link.latency, node: t, kind: .frame, arg: UInt64(slot)))
        }
    }

    /// The decoded form of a relayed DATA frame whose envelope equals the one being handled
    /// (validated exactly as `Frame.decode` would), without copying or hashing the envelope.
    func relayedData(_ out: OutFrame) -> Frame? {
        let contextEnvelope: [UInt8], contextID: MessageID
        if contextSlot >= 0 {
            guard case .data(_, let env, let id) = pool[contextSlot].frame.kind else { return nil }
            contextEnvelope = env; contextID = id
        } else {
            contextEnvelope = publishEnvelope; contextID = publishID
        }
        let body = out.body
        let h = Frame.headerSize
        guard body.count == h + contextEnvelope.count, contextEnvelope.count > 0,
              body[0] == Frame.version, body[1] == Frame.TypeCode.data.rawValue, body[2] != 0 else { return nil }
        var from: UInt64 = 0
        for k in 4..<12 { from = from << 8 | UInt64(body[k]) }
        guard from != 0 else { return nil }
        let same = body.withUnsafeBufferPointer { b in
            contextEnvelope.withUnsafeBufferPointer { e in
                memcmpEqual(UnsafeRawPointer(b.baseAddress! + h), UnsafeRawPointer(e.baseAddress!), e.count)
            }
        }
        guard same else { return nil }
        return Frame(kind: .data(topic: out.topic, envelope: contextEnvelope, id: contextID),
                     ttl: body[2], hops: body[3], from: NodeID(raw: from))
    }

    mutating func allocate(_ f: SimFrame) -> Int {
        var isData = false, id = MessageID(hi: 0, lo: 0)
        if case .data(_, _, let d) = f.frame.kind { isData = true; id = d }
        if let s = freeSlots.popLast() {
            pool[Int(s)] = f
            poolIsData[Int(s)] = isData
            poolIDs[Int(s)] = id
            return Int(s)
        }
        pool.append(f)
        poolRefs.append(0)
        poolIsData.append(isData)
        poolIDs.append(id)
        return pool.count - 1
    }

    @inline(__always)
    mutating func release(_ slot: Int) {
        poolRefs[slot] -= 1
        if poolRefs[slot] == 0 { freeSlots.append(Int32(slot)) }
    }

    // MARK: Heap (binary, on (time, seq))

    @inline(__always)
    mutating func push(_ e: SimEvent) {
        var e = e
        seq &+= 1
        e.seq = seq
        heap.append(e)
        var c = heap.count - 1
        heap.withUnsafeMutableBufferPointer { h in
            while c > 0 {
                let p = (c - 1) >> 1
                guard e.before(h[p]) else { break }
                h[c] = h[p]
                c = p
            }
            h[c] = e
        }
    }

    @inline(__always)
    mutating func popEvent() -> SimEvent {
        let top = heap[0]
        let last = heap.removeLast()
        let n = heap.count
        if n > 0 {
            heap.withUnsafeMutableBufferPointer { h in
                var p = 0
                while true {
                    let l = 2 * p + 1
                    if l >= n { break }
                    var m = l
                    if l + 1 < n && h[l + 1].before(h[l]) { m = l + 1 }
                    guard h[m].before(last) else { break }
                    h[p] = h[m]
                    p = m
                }
                h[p] = last
            }
        }
        return top
    }
}

struct SimLink {
    static let closed: Int32 = -2
    /// Node index at the dialled endpoint (−1: nobody ever listened there; −2: closed).
    var target: Int32
    var latency: UInt64
    var ready: Bool
}

struct SimFrame {
    var frame: Frame
    var message: Int32
}

/// 24 bytes: time, FIFO sequence, and (node 26 bits | kind 2 bits | argument 36 bits).
struct SimEvent {
    enum Kind: UInt64 { case frame = 0, ready = 1, tick = 2 }
    static let argMask: UInt64 = (1 << 36) - 1
    var time: UInt64
    var seq: UInt64 = 0
    var packed: UInt64

    init(time: UInt64, node: Int, kind: Kind, arg: UInt64) {
        precondition(node < 1 << 26 && arg <= SimEvent.argMask)
        self.time = time
        packed = UInt64(node) << 38 | kind.rawValue << 36 | arg
    }

    var node: Int { Int(packed >> 38) }
    var kind: Kind { Kind(rawValue: (packed >> 36) & 3)! }
    /// frame: pool slot; ready: link index; tick: generation (low 36 bits).
    var arg: UInt64 { packed & SimEvent.argMask }

    @inline(__always)
    func before(_ o: SimEvent) -> Bool { time != o.time ? time < o.time : seq < o.seq }
}

@inline(__always)
func memcmpEqual(_ a: UnsafeRawPointer, _ b: UnsafeRawPointer, _ n: Int) -> Bool {
    var k = 0
    while k + 8 <= n {
        if a.loadUnaligned(fromByteOffset: k, as: UInt64.self) != b.loadUnaligned(fromByteOffset: k, as: UInt64.self) { return false }
        k += 8
    }
    while k < n {
        if a.load(fromByteOffset: k, as: UInt8.self) != b.load(fromByteOffset: k, as: UInt8.self) { return false }
        k += 1
    }
    return true
}
