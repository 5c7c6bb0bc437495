import CPrefetch
import WarrenEngine

/// The per-node state of a `Simulator`, seen through pointers so that shards on different
/// threads can drive their own nodes in place. Node i belongs to shard (i / 16) % shardCount
/// (`shard(of:)`); during a window a shard writes only its own nodes' entries and reads the
/// others' `alive`, `reach` and `prefixes`, which change only between windows (kills and
/// subscriptions are workload operations; the engine subscribes only in `start` and
/// `subscribeLocal`).
struct SimNodes {
    let engines: UnsafeMutablePointer<GossipEngine>
    let links: UnsafeMutablePointer<SimLinks>
    let alive: UnsafeMutablePointer<Bool>
    let reach: UnsafeMutablePointer<UInt16>
    let prefixes: UnsafeMutablePointer<[[UInt8]]>
    let tickAt: UnsafeMutablePointer<UInt64>
    let tickGeneration: UnsafeMutablePointer<UInt64>
    /// Each node's own generator: what a node draws does not depend on what others drew.
    let rngs: UnsafeMutablePointer<SeededGenerator>
    /// Each node's count of events it has scheduled: the tie-break of events at the same time.
    let seqs: UnsafeMutablePointer<UInt64>
    let byEndpoint: [String: Int32]
    let latency: LatencyDistribution
    let lossThreshold: UInt64
    let shardCount: Int
    /// `2 × shardCount × shardCount` mailboxes: [parity][from][to].
    let mail: UnsafeMutablePointer<SimMailbox>
    let stepBudget: Int
    /// Each node's incarnation: 1 from its first start, one more at each restart. A link is ready
    /// for, and a frame in flight is for, one incarnation of its target.
    let incarnation: UnsafeMutablePointer<UInt32>
    /// The network's options beyond latency and loss (`NetworkModel`).
    let model: NetworkModel
    /// What each node saw, when `model.recording` is on (tests); otherwise unused.
    let records: UnsafeMutablePointer<NodeRecord>

    /// Nodes go to shards in blocks of 2^blockShift consecutive indices: the per-node arrays
    /// (engines, generators, event counters, tick times) keep a cache line's neighbours in one
    /// shard, so two threads do not write the same lines (false sharing).
    static let blockShift = 4
    @inline(__always) func shard(of node: Int) -> Int { shardCount == 1 ? 0 : (node >> SimNodes.blockShift) % shardCount }
    @inline(__always) func mailbox(parity: Int, from: Int, to: Int) -> UnsafeMutablePointer<SimMailbox> {
        mail + ((parity * shardCount + from) * shardCount + to)
    }

    /// The node listening at `endpoint` (after the model's aliases), −1 if none ever did.
    @inline(__always) func resolve(_ endpoint: String) -> Int32 {
        byEndpoint[model.aliases.isEmpty ? endpoint : model.aliases[endpoint] ?? endpoint] ?? -1
    }
}

/// Frames sent from one shard to another's nodes during a window; they arrive one link latency
/// later, so never inside the window they were sent in. A frame's bytes are shared with the
/// other shard, not copied (an array is immutable once sent; its reference count is atomic).
struct SimMailbox {
    /// `frame`: index in `frames`.
    struct Entry { var event: SimEvent; var frame: Int32 }
    var events: [Entry] = []
    var frames: [SimFrame] = []

    mutating func add(_ f: SimFrame) -> Int32 {
        frames.append(f)
        return Int32(frames.count - 1)
    }

    func frame(_ k: Int) -> SimFrame { frames[k] }

    mutating func removeAll() {
        events.removeAll(keepingCapacity: true)
        frames.removeAll(keepingCapacity: true)
    }
}

/// One shard of a `Simulator`: its nodes' pending events (a binary heap on (time, key)), the
/// frames in flight they reference, and what its nodes sent and delivered.
struct SimShard {
    let index: Int
    var now: UInt64 = 0
    var heap: [SimEvent] = []
    var actions: [Action] = []
    // Frames in flight, their bytes shared by their receivers in this shard.
    var pool: [SimFrame] = []
    var poolRefs: [Int32] = []
    /// The bytes of the DATA frames in `pool`, one buffer per message.
    var envelopes = SimEnvelopes()
    /// Per pool slot: a DATA frame, and its message id (read by `prefetchNext` without copying the frame).
    var poolIsData: [Bool] = []
    var poolIDs: [MessageID] = []
    /// Per pool slot: where its bytes were when it was filled, for prefetch hints only (reading
    /// them through `pool` would retain the array, which costs the cache miss the hint avoids).
    var poolBytes: [UnsafeRawPointer?] = []
    var freeSlots: [Int32] = []
    // The DATA frame (pool slot) or publish being handled: relayed frames reuse its message id
    // (their envelope is its envelope), deliveries and link-sends are booked to its message.
    var contextSlot = -1
    var contextMessage: Int32 = -1
    var publishEnvelope: [UInt8] = []
    var publishID = MessageID(hi: 0, lo: 0)
    var contextValid = false
    /// Parity of the mailboxes that sends go to, and the earliest time sent to another shard.
    var mailParity = 0
    var earliestMailed: UInt64 = .max
    /// The shortest latency of a link its nodes have dialled.
    var shortestLink: UInt64 = .max
    /// Per shard: the index of the frame being sent in this shard's mailbox to it.
    var mailSlots: [Int32] = []
    static let notMailed = Int32.min

    // Results, folded into the simulator's totals.
    var deliveries: [Simulator.Delivery] = []
    var messageFrames: [Int] = []
    var controlFramesSent = 0
    var dataFramesSent = 0
    var framesLost = 0
    var droppedNotReady = 0
    var filteredAtSender = 0
    var peerUps = 0
    var peerDowns = 0
    var steps = 0
    var budgetExceeded = false

    /// Sends must arrive at or after this time (the end of the window being run; 0 outside runs).
    var windowEnd: UInt64 = 0

    /// `model.connectionIDs`: the inbound connection at its target of each (sender and its
    /// incarnation, link index, target and its incarnation) that carried a frame — what a ZeroMQ SUB sees as one TCP connection.
    var connections: [ConnectionKey: ConnectionID] = [:]
    struct ConnectionKey: Hashable {
        var node: Int32, nodeIncarnation: UInt32, link: Int32, target: Int32, targetIncarnation: UInt32
    }
    /// Links its nodes dialled to an endpoint nobody listened at yet: they become ready when a
    /// node starts there (`Simulator.start`), as ZeroMQ keeps reconnecting.
    /// (Each with the dialling node's incarnation: a restart gives it a new link table.)
    var unresolved: [(endpoint: String, node: Int32, incarnation: UInt32, link: Int32)] = []

    init(index: Int, shardCount: Int) {
        self.index = index
        mailSlots = [Int32](repeating: SimShard.notMailed, count: shardCount)
        actions.reserveCapacity(64)
    }

    var nextTime: UInt64 { heap.isEmpty ? .max : heap[0].time }

    // MARK: - Events

    /// Handles this shard's events with time < `end` in (time, key) order.
    mutating func runWindow(end: UInt64, _ n: SimNodes) {
        while !heap.isEmpty && heap[0].time < end {
            if steps >= n.stepBudget { budgetExceeded = true; return }
            steps += 1
            let ev = popEvent()
            if ev.time > now { now = ev.time }
            prefetchNext(n)
            dispatch(ev, n)
        }
    }

    mutating func dispatch(_ ev: SimEvent, _ n: SimNodes) {
        let i = ev.node
        switch ev.kind {
        case .frame:
            let slot = Int(ev.arg & SimEvent.slotMask)
            // Alive, and the incarnation the frame was sent to: both in the node's reach.
            if SimReach.receives(n.reach[i], incarnationBits: ev.arg >> SimEvent.frameIncarnationShift) {
                contextSlot = slot
                contextMessage = pool[slot].message
                contextValid = contextMessage >= 0
                // The bytes as sent, read in place; a DATA frame's message id hashed once per publish.
                // (The actions are moved out for the call, so that it touches nothing else of the shard.)
                let topic = pool[slot].topic, now = self.now
                let id: MessageID? = poolIsData[slot] ? poolIDs[slot] : nil
                let via = pool[slot].via == 0 ? nil : ConnectionID(raw: pool[slot].via)
                if n.model.recording {
                    n.records[i].framesReceived += 1
                    if poolIsData[slot] { n.records[i].dataFramesReceived += 1 }
                }
                var out: [Action] = []
                swap(&out, &actions)
                let env = pool[slot].env
                if env >= 0 {
                    envelopes.withFrame(env, header: pool[slot].header) { body in
                        topic.withBytes { t in
                            n.engines[i].receive(topic: t, body: body, via: via, messageID: id, now: now, rng: &n.rngs[i], into: &out)
                        }
                    }
                } else {
                    pool[slot].body.withUnsafeBufferPointer { body in
                        topic.withBytes { t in
                            n.engines[i].receive(topic: t, body: body, via: via, messageID: id, now: now, rng: &n.rngs[i], into: &out)
                        }
                    }
                }
                swap(&out, &actions)
                if !actions.isEmpty { perform(i, n) } else { scheduleTick(i, n) }
                contextSlot = -1
            }
            release(slot)
        case .ready:
            let li = Int(ev.arg & SimEvent.linkMask)
            guard n.alive[i], SimEvent.incarnationMatches(ev.arg >> SimEvent.ownIncarnationShift, n.incarnation[i]),
                  li < n.links[i].slots.count else { return }
            let link = n.links[i][slot: li]
            let t = Int(link.target)
            guard t >= 0, n.alive[t], SimEvent.incarnationMatches(ev.arg >> SimEvent.targetIncarnationShift, n.incarnation[t]),
                  link.readyFor != n.incarnation[t] else { return }
            n.links[i][slot: li].readyFor = n.incarnation[t]
            contextValid = false
            n.engines[i].linkReady(link.id, now: now, rng: &n.rngs[i], into: &actions)
            perform(i, n)
        case .tick:
            guard n.alive[i], n.tickGeneration[i] & SimEvent.argMask == ev.arg else { return }
            n.tickAt[i] = .max
            contextValid = false
            n.engines[i].tick(now: now, rng: &n.rngs[i], into: &actions)
            perform(i, n)
        }
    }

    /// Memory latency hiding: at 10,000 nodes every event touches a cold engine. While this event
    /// is handled, start loading what the next ones will read: the engines of the two events
    /// after next (their hot fields and link tables), and, for the next event (its engine loaded
    /// one step ago), the links it may send on, its frame's bytes, and the peer table and
    /// seen-cache bucket they will hit. Hints only: no state changes.
    @inline(__always)
    mutating func prefetchNext(_ n: SimNodes) {
        let count = heap.count
        guard count > 0 else { return }
        let stride = MemoryLayout<GossipEngine>.stride
        for k in 1...2 where k < count {
            let node = heap[k].node
            let p = UnsafeRawPointer(n.engines + node)
            var off = 0
            while off < min(stride, 384) { warren_prefetch(p + off); off += 64 }
            warren_prefetch(UnsafeRawPointer(n.links + node))
            warren_prefetch(UnsafeRawPointer(n.reach + node))
        }
        let next = heap[0]
        // The links it will send on (their table, loaded a step ago, says where they are).
        if let l = n.links[next.node].storage { warren_prefetch(l - 32); warren_prefetch(l + 32) }
        if next.kind == .frame {
            let slot = Int(next.arg & SimEvent.slotMask)
            // Its bytes (the header is read first), then what the engine reads.
            hint(poolBytes[slot])
            let data = poolIsData[slot]
            let m = data ? n.engines[next.node].dataReceiveMemory(id: poolIDs[slot]) : n.engines[next.node].receiveMemory()
            // The sender lookup scans the keys' ids, one cache line each: the header and the
            // first six (a node has about `degree` neighbours; the count is not read here, it
            // would stall — prefetching past the end is harmless).
            if let k = m.keys {
                warren_prefetch(k - 32)
                for i in 0..<6 { warren_prefetch(k + i &* GossipEngine.ReceiveMemory.keyStride) }
            }
            if data { hint(m.addresses.0); hint(m.addresses.1); hint(m.addresses.2) }
        }
    }

    mutating func scheduleTick(_ i: Int, _ n: SimNodes) {
        guard n.alive[i], let d = n.engines[i].nextDeadline else { return }
        let t = max(d, now)
        if n.tickAt[i] <= t { return }
        n.tickGeneration[i] &+= 1
        n.tickAt[i] = t
        push(SimEvent(time: t, node: i, kind: .tick, arg: n.tickGeneration[i] & SimEvent.argMask), by: i, n)
    }

    /// Link `link` of node `i` becomes ready at `time` for the current incarnation of node
    /// `target` (unless either has restarted by then).
    mutating func scheduleReady(_ i: Int, link: Int, target: Int, at time: UInt64, _ n: SimNodes) {
        let arg = UInt64(link) | UInt64(n.incarnation[i] & 0xFF) << SimEvent.ownIncarnationShift
            | UInt64(n.incarnation[target] & 0xFF) << SimEvent.targetIncarnationShift
        push(SimEvent(time: time, node: i, kind: .ready, arg: arg), by: i, n)
    }

    /// Performs the actions node `i` emitted, then reschedules its tick.
    mutating func perform(_ i: Int, _ n: SimNodes) {
        var k = 0
        while k < actions.count {
            switch actions[k] {
            case .send(let targets, let out):
                send(from: i, targets: targets, out, n)
            case .connect(let l, let endpoint):
                let lat = n.latency.draw(&n.rngs[i])
                if lat < shortestLink { shortestLink = lat }
                let t = n.resolve(endpoint)
                let k = n.links[i].open(SimLink(id: l, latency: lat, target: t))
                precondition(UInt64(k) <= SimEvent.linkMask, "more than 2^20 links of one node")
                if n.model.recording { n.records[i].connects.append((now, endpoint)) }
                if t >= 0 && n.alive[Int(t)] {
                    scheduleReady(i, link: k, target: Int(t), at: now &+ lat, n)
                } else if t < 0 || n.incarnation[Int(t)] == 0 {
                    // Nobody listens there yet; a node that was alive and died is found by
                    // `Simulator.reconnect` if it restarts.
                    unresolved.append((endpoint, Int32(i), n.incarnation[i], Int32(k)))
                }
            case .disconnect(let l):
                n.links[i].close(l)
            case .deliver(let topic, let envelope, let hops, let id):
                deliveries.append(Simulator.Delivery(node: Int32(i), message: contextMessage, hops: hops, time: now))
                if n.model.recording {
                    n.records[i].deliveries.append(InMemoryNetwork.Delivery(topic: topic, id: id, hops: hops, time: now, envelope: envelope))
                }
            case .subscribe(let prefix):
                if prefix.isEmpty { n.reach[i] |= SimReach.all } else { n.prefixes[i].append(prefix) }
            case .unsubscribe(let prefix):
                if prefix.isEmpty { n.reach[i] &= ~SimReach.all }
                else if let p = n.prefixes[i].firstIndex(of: prefix) { n.prefixes[i].remove(at: p) }
            case .peerUp(let p):
                peerUps += 1
                if n.model.recording { n.records[i].peerEvents.append(.up(p.nodeID, time: now)) }
            case .peerDown(let p, let reason):
                peerDowns += 1
                if n.model.recording { n.records[i].peerEvents.append(.down(p.nodeID, reason, time: now)) }
            }
            k += 1
        }
        actions.removeAll(keepingCapacity: true)
        scheduleTick(i, n)
    }

    /// Schedules the arrival of `out`'s bytes (one array, shared) on each ready link.
    mutating func send(from i: Int, targets: [LinkID], _ out: OutFrame, _ n: SimNodes) {
        let isData = !out.topic.isControl
        var message: Int32 = -1
        var id = MessageID(hi: 0, lo: 0)
        var header = FrameHeader(type: 0, from: NodeID(raw: 0))
        var env: Int32 = -1
        defer { if env >= 0 { envelopes.dropIfUnused(env) } }
        if isData {
            guard let d = dataFrame(out) else { return }
            (id, header, env) = d
            message = contextMessage
            dataFramesSent += targets.count
            if message >= 0 {
                let m = Int(message)
                if m >= messageFrames.count { messageFrames.append(contentsOf: repeatElement(0, count: m + 1 - messageFrames.count)) }
                messageFrames[m] += targets.count
            }
        } else {
            controlFramesSent += targets.count
        }
        if n.model.recording {
            n.records[i].framesSent += targets.count
            if isData { n.records[i].dataFramesSent += targets.count }
        }
        var slot = -1
        // Per other shard: this frame's index in that mailbox (−1: not copied there yet).
        if n.shardCount > 1 { for s in 0..<n.shardCount { mailSlots[s] = SimShard.notMailed } }
        for l in targets {
            guard let li = n.links[i].slot(of: l) else { droppedNotReady += 1; continue }
            let link = n.links[i][slot: li]
            let t = Int(link.target)
            // Ready for the target's current incarnation (a restart makes its links unready
            // until they are ready again, `Simulator.reconnect`): its incarnation is not read.
            guard t >= 0, link.readyFor != 0 else { droppedNotReady += 1; continue }
            let reach = n.reach[t]
            guard reach & SimReach.alive != 0 else { droppedNotReady += 1; continue }
            if reach & SimReach.all == 0 && !n.prefixes[t].contains(where: { out.topic.hasPrefix($0) }) {
                filteredAtSender += 1
                continue
            }
            if n.lossThreshold != 0 && n.rngs[i].next() < n.lossThreshold {
                framesLost += 1
                continue
            }
            if n.model.cut(i, t) {
                framesLost += 1
                continue
            }
            let incarnation = UInt64(link.readyFor & 0xFF) << SimEvent.frameIncarnationShift
            var at = now &+ link.latency
            if n.model.jitter > 0 { at &+= n.rngs[i].next(upperBound: n.model.jitter &+ 1) }
            // A connection of its own per link and target incarnation: each receiver then gets
            // its own copy of the frame (with its `via`).
            var via: UInt64 = 0
            if n.model.connectionIDs {
                via = connection(from: i, link: li, to: t, n).raw
                slot = -1
                if n.shardCount > 1 { mailSlots[n.shard(of: t)] = SimShard.notMailed }
            }
            let s = n.shard(of: t)
            schedule(SimEvent(time: at, node: t, kind: .frame, arg: incarnation), to: s, by: i, &slot,
                     SimFrame(topic: out.topic, body: out.body, header: header, env: env, id: id, message: message, via: via), n)
            if n.model.duplicationThreshold != 0 && n.rngs[i].next() < n.model.duplicationThreshold {
                let again = now &+ link.latency &+ n.rngs[i].next(upperBound: max(n.model.jitter, link.latency) &+ 1)
                schedule(SimEvent(time: again, node: t, kind: .frame, arg: incarnation), to: s, by: i, &slot,
                         SimFrame(topic: out.topic, body: out.body, header: header, env: env, id: id, message: message, via: via), n)
            }
        }
    }

    /// Schedules `event` (a frame's arrival) in this shard, with the frame in pool slot `slot`
    /// (allocated from `frame` on first use), or mails it to shard `s`.
    @inline(__always)
    mutating func schedule(_ event: SimEvent, to s: Int, by i: Int, _ slot: inout Int,
                           _ frame: @autoclosure () -> SimFrame, _ n: SimNodes) {
        if s == index {
            if slot < 0 { slot = allocate(frame()) }
            poolRefs[slot] += 1
            var e = event
            e.packed |= UInt64(slot)
            push(e, by: i, n)
        } else {
            let box = n.mailbox(parity: mailParity, from: index, to: s)
            if mailSlots[s] == SimShard.notMailed {
                // The other shard gets the bytes as sent (a buffer index means nothing there).
                var f = frame()
                f.env = -1
                mailSlots[s] = box.pointee.add(f)
            }
            var e = event
            e.seq = key(by: i, n)
            precondition(e.time >= windowEnd, "a frame to another shard arrives inside the window")
            box.pointee.events.append(SimMailbox.Entry(event: e, frame: mailSlots[s]))
            if e.time < earliestMailed { earliestMailed = e.time }
        }
    }

    /// The inbound connection at node `t` of node `i`'s link `li` (for both nodes' current
    /// incarnations), made when the link first carries a frame there. Ids are unique across
    /// shards (the shard's index in the top bits) and count from 1 in each.
    mutating func connection(from i: Int, link li: Int, to t: Int, _ n: SimNodes) -> ConnectionID {
        let key = ConnectionKey(node: Int32(i), nodeIncarnation: n.incarnation[i], link: Int32(li), target: Int32(t),
                                targetIncarnation: n.incarnation[t])
        if let c = connections[key] { return c }
        let c = ConnectionID(raw: UInt64(index) << 48 | UInt64(connections.count + 1))
        connections[key] = c
        return c
    }

    /// Moves the frames other shards sent to this one (in the mailboxes of `parity`) into its heap.
    mutating func receiveMail(parity: Int, _ n: SimNodes) {
        for from in 0..<n.shardCount where from != index {
            let box = n.mailbox(parity: parity, from: from, to: index)
            if box.pointee.events.isEmpty { continue }
            var slots = [Int](repeating: -1, count: box.pointee.frames.count)
            for entry in box.pointee.events {
                let f = Int(entry.frame)
                if slots[f] < 0 {
                    var frame = box.pointee.frame(f)
                    if !frame.topic.isControl && frame.body.count >= 2 && frame.body[1] == Frame.TypeCode.data.rawValue {
                        // A DATA frame's bytes join this shard's buffer of its message.
                        frame.env = frame.body.withUnsafeBufferPointer { envelopes.intern(frame.id, body: $0) }
                    }
                    slots[f] = allocate(frame)
                }
                let slot = slots[f]
                poolRefs[slot] += 1
                var e = entry.event
                e.packed |= UInt64(slot)
                insert(e)
            }
            box.pointee.removeAll()
        }
    }

    /// The message id, header and bytes buffer (`envelopes`) of the DATA or ROUTED frame `out`
    /// (docs/PROTOCOL.md §9: the same envelope after a longer prefix), nil if it is not a valid
    /// one. A relayed frame carries the envelope of the frame being handled, a published one the
    /// publish's: then (checked byte for byte) it is theirs, so BLAKE2b runs once per publish.
    /// A DATA frame shares its message's buffer (buffer −1: a ROUTED frame keeps its own bytes,
    /// it travels a path, not a flood).
    mutating func dataFrame(_ out: OutFrame) -> (MessageID, FrameHeader, Int32)? {
        out.body.withUnsafeBufferPointer { b -> (MessageID, FrameHeader, Int32)? in
            let envelope: UnsafeBufferPointer<UInt8>
            var header: FrameHeader?
            if b.count >= 2 && b[1] == RoutingTypeCode.routed {
                guard let v = RoutedFrameView(topic: out.topic, body: b) else { return nil }
                envelope = v.envelope
            } else {
                guard let v = DataFrameView(topic: out.topic, body: b) else { return nil }
                envelope = v.envelope
                header = v.header
            }
            var id: MessageID?
            if contextValid && contextSlot >= 0 {
                let env = pool[contextSlot].env
                let same = env >= 0
                    ? envelopes.withEnvelope(env) { sameBytes($0, envelope) }
                    : pool[contextSlot].body.withUnsafeBufferPointer { sameBytes(SimShard.envelope(of: $0), envelope) }
                if same {
                    id = poolIDs[contextSlot]
                    if let header, env >= 0 { return (poolIDs[contextSlot], header, env) }
                }
            } else if contextValid && publishEnvelope.withUnsafeBufferPointer({ sameBytes($0, envelope) }) {
                id = publishID
            }
            let mid = id ?? MessageID(envelope: envelope)
            guard let header else { return (mid, FrameHeader(type: b[1], from: NodeID(raw: 0)), -1) }
            return (mid, header, envelopes.intern(mid, body: b))
        }
    }

    /// The envelope of a DATA or ROUTED body already checked.
    static func envelope(of body: UnsafeBufferPointer<UInt8>) -> UnsafeBufferPointer<UInt8> {
        let start = body.count >= 2 && body[1] == RoutingTypeCode.routed ? RoutedFrameView.prefixSize : FrameHeader.size
        return UnsafeBufferPointer(rebasing: body[min(start, body.count)...])
    }

    mutating func allocate(_ f: SimFrame) -> Int {
        precondition(pool.count < 1 << 28 || !freeSlots.isEmpty, "more than 2^28 frames in flight in one shard")
        let isData = !f.topic.isControl
        var f = f
        let bytes: UnsafeRawPointer?
        if f.env >= 0 {
            // The shared buffer holds the bytes: the sent array is not kept.
            f.body = []
            envelopes.retain(f.env)
            bytes = envelopes.address(f.env)
        } else {
            bytes = f.body.withUnsafeBytes { $0.baseAddress }
        }
        if let s = freeSlots.popLast() {
            pool[Int(s)] = f
            poolIsData[Int(s)] = isData
            poolIDs[Int(s)] = f.id
            poolBytes[Int(s)] = bytes
            return Int(s)
        }
        pool.append(f)
        poolRefs.append(0)
        poolIsData.append(isData)
        poolIDs.append(f.id)
        poolBytes.append(bytes)
        return pool.count - 1
    }

    @inline(__always)
    mutating func release(_ slot: Int) {
        poolRefs[slot] -= 1
        if poolRefs[slot] == 0 {
            freeSlots.append(Int32(slot))
            if pool[slot].env >= 0 { envelopes.release(pool[slot].env); pool[slot].env = -1 }
        }
    }

    // MARK: Heap (binary, on (time, key))

    /// The order key of the next event node `i` schedules: (node, node's own count). Events at
    /// the same time are taken in this order, whichever shard or thread made them.
    @inline(__always)
    func key(by i: Int, _ n: SimNodes) -> UInt64 {
        n.seqs[i] &+= 1
        return UInt64(i) << SimEvent.keyCountBits | (n.seqs[i] & SimEvent.keyCountMask)
    }

    @inline(__always)
    mutating func push(_ e: SimEvent, by i: Int, _ n: SimNodes) {
        var e = e
        e.seq = key(by: i, n)
        insert(e)
    }

    @inline(__always)
    mutating func insert(_ e: SimEvent) {
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
        let count = heap.count
        if count > 0 {
            heap.withUnsafeMutableBufferPointer { h in
                var p = 0
                while true {
                    let l = 2 * p + 1
                    if l >= count { break }
                    var m = l
                    if l + 1 < count && h[l + 1].before(h[l]) { m = l + 1 }
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

/// A frame in flight: its bytes as the engine sent them (or, for DATA in a shard's pool, its
/// header and its message's buffer in `SimShard.envelopes`), and for DATA the message id of its
/// envelope and the message it belongs to (−1: control).
struct SimFrame {
    var topic: Topic
    /// The bytes as sent; empty when `env` holds them.
    var body: [UInt8]
    /// DATA with `env` ≥ 0: this frame's header (its bytes are `env`'s buffer under this header).
    var header: FrameHeader
    /// The shard's buffer of this frame's message (`SimEnvelopes`), −1: the bytes are `body`.
    var env: Int32 = -1
    var id: MessageID
    var message: Int32
    /// The inbound connection it arrives on (`model.connectionIDs`), 0 for none.
    var via: UInt64 = 0
}

/// 24 bytes: time, order key (scheduling node 26 bits | that node's count 38 bits), and
/// (node 26 bits | kind 2 bits | argument 36 bits).
struct SimEvent {
    enum Kind: UInt64 { case frame = 0, ready = 1, tick = 2 }
    static let argMask: UInt64 = (1 << 36) - 1
    static let keyCountBits: UInt64 = 38
    static let keyCountMask: UInt64 = (1 << 38) - 1
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
    /// frame: pool slot | target incarnation; ready: link index | own incarnation | target
    /// incarnation; tick: generation (low 36 bits). Incarnations by their low 8 bits.
    var arg: UInt64 { packed & SimEvent.argMask }
    static let slotMask: UInt64 = (1 << 28) - 1
    static let frameIncarnationShift: UInt64 = 28
    static let linkMask: UInt64 = (1 << 20) - 1
    static let ownIncarnationShift: UInt64 = 20
    static let targetIncarnationShift: UInt64 = 28

    /// The low 8 bits of an incarnation (in an event's argument, shifted down) match `current`.
    @inline(__always) static func incarnationMatches(_ bits: UInt64, _ current: UInt32) -> Bool {
        bits & 0xFF == UInt64(current & 0xFF)
    }

    @inline(__always)
    func before(_ o: SimEvent) -> Bool { time != o.time ? time < o.time : seq < o.seq }
}

/// The bits of `Simulator.reach`.
enum SimReach {
    static let alive: UInt16 = 1
    /// Subscribed to every topic (the empty prefix).
    static let all: UInt16 = 2
    /// The high byte: the low 8 bits of the node's incarnation.
    static func of(alive: Bool, incarnation: UInt32) -> UInt16 {
        alive ? SimReach.alive | UInt16(incarnation & 0xFF) << 8 : 0
    }
    /// A node with reach `r` is alive in the incarnation whose low 8 bits are `incarnationBits`.
    @inline(__always) static func receives(_ r: UInt16, incarnationBits: UInt64) -> Bool {
        r & alive != 0 && UInt64(r >> 8) == incarnationBits & 0xFF
    }
}

/// A prefetch hint for `p`, if there is one.
@inline(__always)
func hint(_ p: UnsafeRawPointer?) {
    if let p { warren_prefetch(p) }
}

/// True if `a` and `b` hold the same bytes.
@inline(__always)
func sameBytes(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Bool {
    guard a.count == b.count else { return false }
    guard let pa = a.baseAddress, let pb = b.baseAddress else { return true }
    return memcmpEqual(UnsafeRawPointer(pa), UnsafeRawPointer(pb), a.count)
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
