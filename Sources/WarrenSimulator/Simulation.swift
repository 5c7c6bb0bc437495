import WarrenEngine
import WarrenMeasure

/// The workload of `warren simulate`, run on a `Simulator`:
///
/// 1. **Formation.** Node i starts at i × `startSpacing` with 1–2 random earlier nodes as seeds
///    (node 1 seeds node 0); `targetDegree` makes each dial more through peer exchange. Every
///    node subscribes its own key (one topic per slot) and the community topic. The overlay has
///    formed when every node has min(degree, N − 1) neighbours up and no dial pending (checked
///    every 250 ms of virtual time).
/// 2. **Stream.** From then on, every `messageInterval` a random node publishes to a random
///    other node's key; in the middle of the stream one random node publishes to the community
///    topic. Churn, if any, kills a random node (no BYE) at a steady rate and starts a fresh
///    incarnation in its slot (new endpoint and node id, same keys) with one random live seed.
/// 3. **Drain**, then count. Only frames of the stream's messages enter RMR.
public enum Simulation {
    /// `threads` splits the nodes over that many threads; the report does not depend on it.
    public static func run(_ config: SimulationConfig, threads: Int = 1) -> SimulationReport {
        runMeasured(config, threads: threads).report
    }

    /// Where a run is, for progress lines (a 10,000-node run takes half a minute).
    public enum Progress: Sendable {
        /// Nodes started so far (formation), and nodes in all.
        case forming(started: Int, of: Int)
        /// Virtual time spent waiting for every node to reach its degree.
        case converging(virtualMilliseconds: UInt64)
        /// Messages of the stream published so far, and messages in all.
        case streaming(sent: Int, of: Int)
    }

    /// The report, and how many times the simulator fell back from threads to one thread because
    /// the threads were slower (`Simulator.demotions`; depends on the machine's load).
    /// `progress` is called often (every node start, every message): throttle it.
    public static func runMeasured(_ config: SimulationConfig, threads: Int,
                                   progress: ((Progress) -> Void)? = nil) -> (report: SimulationReport, demotions: Int) {
        var w = Workload(config, threads: threads)
        w.progress = progress
        w.form()
        w.stream()
        return (w.report(), w.sim.demotions)
    }
}

struct Workload {
    let config: SimulationConfig
    var sim: Simulator
    var slotNode: [Int] = []
    var nodeSlot: [Int32] = []
    var slotTopics: [Topic] = []
    let community: Topic
    var formationTime: UInt64 = 0
    var formed = false
    var streamStart: UInt64 = 0
    var controlAtStreamStart = 0
    var lostAtStreamStart = 0
    /// Per message: destination slot (−1 = community broadcast).
    var destination: [Int32] = []
    var replacements = 0
    var progress: ((Simulation.Progress) -> Void)?

    // Faults (`SimulationConfig.killFraction`, `partitionDuration`).
    /// Slots not killed, ascending: publishers, recipients and churn draw from them (all slots
    /// without a kill, so the draws are those of a run without faults).
    var liveSlots: [Int] = []
    var killed: [Bool] = []
    /// Virtual time the fault began and ended (the kill: both its moment; .max: no fault).
    var faultStart: UInt64 = .max
    var faultEnd: UInt64 = .max
    /// With a partition: each slot's half (0 or 1), while it lasts.
    var slotGroup: [Int32] = []
    var partitioned = false
    /// Components of the live overlay right after the kill / just before the partition heals.
    var componentsAtFault = Components()
    /// First sample at or after the fault's end at which the live overlay was one component.
    var connectedAt: UInt64?
    var lastConnectivitySample: UInt64 = 0

    init(_ config: SimulationConfig, threads: Int) {
        self.config = config
        sim = Simulator(seed: config.seed, latency: config.latency, loss: config.loss, threads: threads)
        var r = SeededGenerator(seed: config.seed ^ 0xC0FF_EE00_D15E_A5E5)
        func topic() -> Topic {
            var t = Topic.control
            while t.isControl { t = Topic(w0: r.next(), w1: r.next(), w2: r.next(), w3: r.next()) }
            return t
        }
        community = topic()
        slotTopics = (0..<config.nodes).map { _ in topic() }
        liveSlots = Array(0..<config.nodes)
        killed = [Bool](repeating: false, count: config.nodes)
    }

    mutating func startNode(slot s: Int, seeds: [Int]) {
        let h = sim.nodeCount
        let cfg = config.engineConfig(endpoint: SimulationConfig.endpoint(h),
                                      seeds: seeds.map { SimulationConfig.endpoint($0) })
        let i = sim.addNode(config: cfg)
        nodeSlot.append(Int32(s))
        if s < slotNode.count { slotNode[s] = i } else { slotNode.append(i) }
        sim.subscribe(i, slotTopics[s])
        sim.subscribe(i, community)
        // A node started during a partition is in its slot's half.
        if partitioned { sim.model.groups.append(slotGroup[s]) }
    }

    mutating func form() {
        let n = config.nodes
        for s in 0..<n {
            progress?(.forming(started: s, of: n))
            sim.run(until: UInt64(s) &* config.startSpacing)
            var seeds: [Int] = []
            if s == 1 { seeds = [0] }
            if s > 1 {
                seeds.append(sim.random(below: s))
                if sim.random(below: 2) == 1 {
                    let b = sim.random(below: s)
                    if b != seeds[0] { seeds.append(b) }
                }
            }
            startNode(slot: s, seeds: seeds.map { slotNode[$0] })
        }
        let want = min(config.degree, n - 1)
        let step: UInt64 = 250_000_000
        var streak = 0
        while sim.now < config.maxFormationTime {
            progress?(.converging(virtualMilliseconds: sim.now / 1_000_000))
            sim.run(for: step)
            if isFormed(want) { streak += 1 } else { streak = 0 }
            if streak >= 2 { formed = true; break }
        }
        formationTime = sim.now
        // Routing: the contacts settle and the records are stored before the stream.
        if config.routing { sim.run(for: config.routingSettle) }
    }

    func isFormed(_ want: Int) -> Bool {
        for i in slotNode {
            let d = sim.degree(i)
            if d.up < want || d.pending > 0 { return false }
        }
        return true
    }

    mutating func stream() {
        let n = config.nodes
        streamStart = sim.now
        controlAtStreamStart = sim.controlFramesSent
        lostAtStreamStart = sim.framesLost
        let m = config.messages
        let churnPerSecond = config.churnPercentPerMinute / 100 * Double(n) / 60
        let churnInterval: UInt64 = churnPerSecond > 0 ? UInt64(1e9 / churnPerSecond) : .max
        var nextChurn = churnInterval == .max ? UInt64.max : streamStart &+ churnInterval
        let streamEnd = streamStart &+ UInt64(m) &* config.messageInterval
        var buf = [UInt8](repeating: 0, count: max(1, config.envelopeSize))

        func envelope(_ sim: inout Simulator, _ buf: inout [UInt8]) -> [UInt8] {
            var k = 0
            while k < buf.count {
                var v = sim.random()
                for _ in 0..<8 where k < buf.count { buf[k] = UInt8(truncatingIfNeeded: v); v >>= 8; k += 1 }
            }
            return buf
        }

        let faultMessage = config.hasFault ? config.faultMessage : -1
        var healAt = UInt64.max
        for k in 0..<m {
            progress?(.streaming(sent: k, of: m))
            let t = streamStart &+ UInt64(k) &* config.messageInterval
            while nextChurn <= t && nextChurn < streamEnd || healAt <= t {
                if healAt <= t && healAt <= nextChurn {
                    sim.run(until: healAt)
                    heal()
                    healAt = .max
                    continue
                }
                sim.run(until: nextChurn)
                churn()
                nextChurn &+= churnInterval
            }
            sim.run(until: t)
            if k == faultMessage {
                if config.killFraction > 0 { kill() } else { partition(); healAt = faultEnd }
            }
            sampleConnectivity()
            let live = liveSlots.count
            if config.broadcast && k == m / 2 {
                let src = liveSlots[sim.random(below: live)]
                sim.publish(from: slotNode[src], topic: community, envelope: envelope(&sim, &buf))
                destination.append(-1)
            }
            guard live > 1 else { continue }
            let p = sim.random(below: live)
            var q = sim.random(below: live - 1)
            if q >= p { q += 1 }
            let (src, dst) = (liveSlots[p], liveSlots[q])
            sim.publish(from: slotNode[src], topic: slotTopics[dst], envelope: envelope(&sim, &buf))
            destination.append(Int32(dst))
        }
        if config.broadcast && m == 0 {
            let src = sim.random(below: n)
            sim.publish(from: slotNode[src], topic: community, envelope: envelope(&sim, &buf))
            destination.append(-1)
        }
        sim.run(until: max(streamEnd, sim.now) &+ config.drainTime)
        if faultEnd != .max && connectedAt == nil && components().count == 1 { connectedAt = sim.now }
    }

    /// Kills `config.killCount` slots chosen by the seed, for good.
    mutating func kill() {
        let n = config.nodes
        var order = Array(0..<n)
        for j in 0..<config.killCount {
            order.swapAt(j, j + sim.random(below: n - j))
            killed[order[j]] = true
            sim.kill(slotNode[order[j]])
        }
        liveSlots = (0..<n).filter { !killed[$0] }
        faultStart = sim.now
        faultEnd = sim.now
        componentsAtFault = components()
        if componentsAtFault.count == 1 { connectedAt = sim.now }
        lastConnectivitySample = sim.now
    }

    /// Cuts the overlay into two halves chosen by the seed (every frame between them is lost).
    mutating func partition() {
        let n = config.nodes
        var order = Array(0..<n)
        slotGroup = [Int32](repeating: 0, count: n)
        for j in 0..<n / 2 {
            order.swapAt(j, j + sim.random(below: n - j))
            slotGroup[order[j]] = 1
        }
        sim.model.groups = nodeSlot.map { slotGroup[Int($0)] }
        partitioned = true
        faultStart = sim.now
        faultEnd = sim.now &+ config.partitionDuration
    }

    /// Ends the partition.
    mutating func heal() {
        componentsAtFault = components()
        sim.model.groups = []
        partitioned = false
        lastConnectivitySample = sim.now
    }

    /// After the fault's end, until the live overlay is one component: a sample at most every
    /// 100 ms of virtual time (at message times).
    mutating func sampleConnectivity() {
        guard faultEnd != .max, !partitioned, connectedAt == nil,
              sim.now >= faultEnd, sim.now >= lastConnectivitySample &+ 100_000_000 else { return }
        lastConnectivitySample = sim.now
        if components().count == 1 { connectedAt = sim.now }
    }

    /// Connected components of the live overlay: live nodes, up gossip links between them
    /// (either end's view; routing contacts are not gossip links).
    struct Components: Sendable, Equatable {
        var count = 0
        var largest = 0
        var live = 0
    }

    func components() -> Components {
        var index: [NodeID: Int32] = [:]
        var nodes: [Int] = []
        for s in liveSlots where sim.alive[slotNode[s]] {
            index[sim.engines[slotNode[s]].nodeID] = Int32(nodes.count)
            nodes.append(slotNode[s])
        }
        var parent = Array(0..<nodes.count)
        func root(_ x: Int) -> Int {
            var x = x
            while parent[x] != x { parent[x] = parent[parent[x]]; x = parent[x] }
            return x
        }
        for (p, i) in nodes.enumerated() {
            for nb in sim.engines[i].neighbours {
                guard let q = index[nb.nodeID] else { continue }
                let a = root(p), b = root(Int(q))
                if a != b { parent[a] = b }
            }
        }
        var size = [Int](repeating: 0, count: nodes.count)
        var c = Components(live: nodes.count)
        for p in nodes.indices {
            let r = root(p)
            if size[r] == 0 { c.count += 1 }
            size[r] += 1
            c.largest = max(c.largest, size[r])
        }
        return c
    }

    /// Kills a random node and starts a fresh incarnation in its slot with one live seed.
    mutating func churn() {
        let n = config.nodes
        guard n > 1 else { return }
        let live = liveSlots.count
        guard live > 1 else { return }
        let p = sim.random(below: live)
        let s = liveSlots[p]
        sim.kill(slotNode[s])
        var q = sim.random(below: live - 1)
        if q >= p { q += 1 }
        startNode(slot: s, seeds: [slotNode[liveSlots[q]]])
        replacements += 1
    }

    func report() -> SimulationReport {
        let n = config.nodes
        var r = SimulationReport()
        r.config = config
        r.formed = formed
        r.formationTime = formationTime
        r.streamTime = sim.now - streamStart
        r.replacements = replacements
        r.events = sim.steps

        // First delivery per (message, slot); extra deliveries per (message, node) are violations.
        var ds = sim.deliveries
        ds.sort { ($0.message, $0.node, $0.time, $0.hops) < ($1.message, $1.node, $1.time, $1.hops) }
        var p2p = DeliveryTally()
        var bSlots = [Bool](repeating: false, count: n)
        var bcast = DeliveryTally()
        var p2pGot = [Bool](repeating: false, count: destination.count)
        var k = 0
        while k < ds.count {
            let d = ds[k]
            var j = k + 1
            while j < ds.count && ds[j].message == d.message && ds[j].node == d.node { j += 1 }
            r.exactlyOnceViolations += j - k - 1
            k = j
            let m = Int(d.message)
            guard m >= 0, m < destination.count else { continue }
            let slot = Int(nodeSlot[Int(d.node)])
            let lat = d.time - sim.messages[m].publishedAt
            if destination[m] < 0 {
                if Int(sim.messages[m].publisher) == Int(d.node) { continue }   // local delivery
                if bSlots[slot] { continue }
                bSlots[slot] = true
                bcast.add(latency: lat, hops: Int(d.hops))
            } else if Int(destination[m]) == slot, !p2pGot[m] {
                p2pGot[m] = true
                p2p.add(latency: lat, hops: Int(d.hops))
            }
        }
        // A message counts unless its recipient was killed before it got it (its sender was
        // alive: publishers are drawn from the live slots).
        let counted = destination.indices.map { m in destination[m] >= 0 && (p2pGot[m] || !killed[Int(destination[m])]) }
        r.uncounted = destination.indices.filter { destination[$0] >= 0 && !counted[$0] }.count
        faultFigures(&r, counted: counted, got: p2pGot)
        if bcast.count > 0 {
            // Broadcast recipients killed afterwards are not expected (nor counted).
            for s in 0..<n where bSlots[s] && killed[s] { bcast.count -= 1 }
        }
        let p2pCount = counted.filter { $0 }.count
        r.messages = p2pCount
        r.delivered = p2p.count
        r.deliveryRatio = p2pCount > 0 ? Double(p2p.count) / Double(p2pCount) : 1
        r.maxHops = p2p.hopsMax
        r.meanHops = p2p.meanHops
        (r.latencyP50, r.latencyP99, r.latencyMax) = p2p.latencies()

        // RMR per message: frames / (N − 1) − 1. A message that sent no frame at all (nobody
        // was reachable) has none: it is left out, and with no such message the RMR is NaN
        // ("n/a" in the report), not −1.
        var rmrSum = 0.0, rmrCount = 0
        var unicastFrames = 0
        r.broadcastRMR = .nan
        for (m, dst) in destination.enumerated() where n > 1 {
            r.dataFrames += sim.messages[m].frames
            if dst >= 0 { unicastFrames += sim.messages[m].frames }
            guard sim.messages[m].frames > 0 else { continue }
            // After a kill, the overlay the message floods is the live nodes.
            let overlay = sim.messages[m].publishedAt >= faultStart && config.killFraction > 0 ? liveSlots.count : n
            guard overlay > 1 else { continue }
            let v = Double(sim.messages[m].frames) / Double(overlay - 1) - 1
            if dst < 0 { r.broadcastRMR = v } else { rmrSum += v; rmrCount += 1 }
        }
        r.rmr = rmrCount > 0 ? rmrSum / Double(rmrCount) : .nan
        r.framesPerUnicast = p2p.count > 0 ? Double(unicastFrames) / Double(p2p.count) : 0

        if let b = destination.firstIndex(of: -1) {
            // Every live slot but the publisher's.
            let publisherSlot = Int(nodeSlot[Int(sim.messages[b].publisher)])
            let expected = liveSlots.count - (killed[publisherSlot] ? 0 : 1)
            r.broadcastExpected = expected
            r.broadcastDelivered = bcast.count
            r.broadcastRatio = expected > 0 ? Double(bcast.count) / Double(expected) : 1
            r.broadcastLastHop = bcast.hopsMax
            r.broadcastMeanHops = bcast.meanHops
            (r.broadcastLatencyP50, r.broadcastLatencyP99, r.broadcastLatencyMax) = bcast.latencies()
        }

        // The nodes of the live slots (all of them without a kill).
        let liveNodes = liveSlots.map { slotNode[$0] }, live = liveNodes.count
        var bytes = 0, bytesMax = 0, deg = 0, degMax = 0
        var contacts = 0, records = 0, fallbacks = 0
        for i in liveNodes where config.routing && sim.alive[i] {
            contacts += sim.engines[i].contactLinkCounts.up
            records += sim.engines[i].locationRecordCount
            fallbacks += Int(sim.engines[i].stats.routeFallbacks)
        }
        r.contactLinksMean = live > 0 ? Double(contacts) / Double(live) : 0
        r.recordsMean = live > 0 ? Double(records) / Double(live) : 0
        r.routeFallbacks = fallbacks
        for i in liveNodes {
            let b = sim.engines[i].countedStateBytes
            bytes += b; bytesMax = max(bytesMax, b)
            let d = sim.degree(i).up
            deg += d; degMax = max(degMax, d)
        }
        r.stateBytesMean = live > 0 ? bytes / live : 0
        r.stateBytesMax = bytesMax
        r.meanDegree = live > 0 ? Double(deg) / Double(live) : 0
        r.maxDegree = degMax
        r.controlFrames = sim.controlFramesSent - controlAtStreamStart
        r.framesLost = sim.framesLost - lostAtStreamStart
        let end = components()
        r.components = end.count
        r.largestComponent = end.largest
        r.liveNodes = end.live
        return r
    }

    /// The fault's part of the report, and the timeline: point-to-point messages counted
    /// (`counted`) and delivered (`got`) by publish time.
    func faultFigures(_ r: inout SimulationReport, counted: [Bool], got: [Bool]) {
        let bucket = max(1, config.timelineBucket)
        for m in destination.indices where counted[m] {
            let t = sim.messages[m].publishedAt - streamStart
            let b = Int(t / bucket)
            if b >= r.timeline.count { r.timeline.append(contentsOf: repeatElement(SimulationReport.Tally(), count: b + 1 - r.timeline.count)) }
            r.timeline[b].add(got[m])
        }
        guard faultEnd != .max else { return }
        r.killed = config.killFraction > 0 ? config.killCount : 0
        r.faultStart = faultStart - streamStart
        r.faultEnd = faultEnd - streamStart
        var lastMiss: Int?
        for m in destination.indices where counted[m] {
            let t = sim.messages[m].publishedAt
            if t < faultStart { r.before.add(got[m]) } else if t < faultEnd { r.during.add(got[m]) } else {
                r.after.add(got[m])
                if !got[m] { lastMiss = m }
            }
        }
        // Delivered from this message on: the first counted one after the last miss at or after
        // the fault's end (none missed: the fault's end itself).
        if let miss = lastMiss {
            if let next = destination.indices.first(where: { $0 > miss && counted[$0] }) {
                r.deliveryRecovery = sim.messages[next].publishedAt - faultEnd
            }
        } else {
            r.deliveryRecovery = 0
        }
        r.connectivityRecovery = connectedAt.map { $0 - faultEnd }
        r.componentsAtFault = componentsAtFault.count
        r.largestAtFault = componentsAtFault.largest
        r.liveAtFault = componentsAtFault.live
    }
}

func percentile(_ sorted: [UInt64], _ q: Double) -> UInt64 { Percentile.of(sorted: sorted, q) ?? 0 }

/// First deliveries of one kind (unicast to its recipient, or the broadcast to each node): how
/// many, their hops and their latencies. `count` may be lowered afterwards (recipients that do
/// not count); the mean is over the count then.
struct DeliveryTally {
    var count = 0
    var hopsMax = 0
    var hopsSum = 0
    private var latencyList: [UInt64] = []

    mutating func add(latency: UInt64, hops: Int) {
        count += 1
        latencyList.append(latency)
        hopsMax = max(hopsMax, hops)
        hopsSum += hops
    }

    var meanHops: Double { count > 0 ? Double(hopsSum) / Double(count) : 0 }

    /// p50, p99 and the maximum of the latencies (0 when there are none).
    func latencies() -> (UInt64, UInt64, UInt64) {
        let s = latencyList.sorted()
        return (percentile(s, 0.50), percentile(s, 0.99), s.last ?? 0)
    }
}
