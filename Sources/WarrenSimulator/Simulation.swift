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

        for k in 0..<m {
            progress?(.streaming(sent: k, of: m))
            let t = streamStart &+ UInt64(k) &* config.messageInterval
            while nextChurn <= t && nextChurn < streamEnd {
                sim.run(until: nextChurn)
                churn()
                nextChurn &+= churnInterval
            }
            sim.run(until: t)
            if config.broadcast && k == m / 2 {
                let src = sim.random(below: n)
                sim.publish(from: slotNode[src], topic: community, envelope: envelope(&sim, &buf))
                destination.append(-1)
            }
            guard n > 1 else { continue }
            let src = sim.random(below: n)
            var dst = sim.random(below: n - 1)
            if dst >= src { dst += 1 }
            sim.publish(from: slotNode[src], topic: slotTopics[dst], envelope: envelope(&sim, &buf))
            destination.append(Int32(dst))
        }
        if config.broadcast && m == 0 {
            let src = sim.random(below: n)
            sim.publish(from: slotNode[src], topic: community, envelope: envelope(&sim, &buf))
            destination.append(-1)
        }
        sim.run(until: max(streamEnd, sim.now) &+ config.drainTime)
    }

    /// Kills a random node and starts a fresh incarnation in its slot with one live seed.
    mutating func churn() {
        let n = config.nodes
        guard n > 1 else { return }
        let s = sim.random(below: n)
        sim.kill(slotNode[s])
        var seedSlot = sim.random(below: n - 1)
        if seedSlot >= s { seedSlot += 1 }
        startNode(slot: s, seeds: [slotNode[seedSlot]])
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
        var p2pDelivered = 0
        var latencies: [UInt64] = []
        var hopsSum = 0, hopsMax = 0
        var bLatencies: [UInt64] = []
        var bSlots = [Bool](repeating: false, count: n)
        var bHopsMax = 0, bHopsSum = 0, bCount = 0
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
                bCount += 1
                bLatencies.append(lat)
                bHopsMax = max(bHopsMax, Int(d.hops)); bHopsSum += Int(d.hops)
            } else if Int(destination[m]) == slot, !p2pGot[m] {
                p2pGot[m] = true
                p2pDelivered += 1
                latencies.append(lat)
                hopsMax = max(hopsMax, Int(d.hops)); hopsSum += Int(d.hops)
            }
        }
        let p2pCount = destination.filter { $0 >= 0 }.count
        r.messages = p2pCount
        r.delivered = p2pDelivered
        r.deliveryRatio = p2pCount > 0 ? Double(p2pDelivered) / Double(p2pCount) : 1
        r.maxHops = hopsMax
        r.meanHops = p2pDelivered > 0 ? Double(hopsSum) / Double(p2pDelivered) : 0
        latencies.sort()
        r.latencyP50 = percentile(latencies, 0.50)
        r.latencyP99 = percentile(latencies, 0.99)
        r.latencyMax = latencies.last ?? 0

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
            let v = Double(sim.messages[m].frames) / Double(n - 1) - 1
            if dst < 0 { r.broadcastRMR = v } else { rmrSum += v; rmrCount += 1 }
        }
        r.rmr = rmrCount > 0 ? rmrSum / Double(rmrCount) : .nan
        r.framesPerUnicast = p2pDelivered > 0 ? Double(unicastFrames) / Double(p2pDelivered) : 0

        if destination.contains(-1) {
            r.broadcastExpected = n - 1
            r.broadcastDelivered = bCount
            r.broadcastRatio = n > 1 ? Double(bCount) / Double(n - 1) : 1
            r.broadcastLastHop = bHopsMax
            r.broadcastMeanHops = bCount > 0 ? Double(bHopsSum) / Double(bCount) : 0
            bLatencies.sort()
            r.broadcastLatencyP50 = percentile(bLatencies, 0.50)
            r.broadcastLatencyP99 = percentile(bLatencies, 0.99)
            r.broadcastLatencyMax = bLatencies.last ?? 0
        }

        var bytes = 0, bytesMax = 0, deg = 0, degMax = 0
        var contacts = 0, records = 0, fallbacks = 0
        for i in slotNode where config.routing && sim.alive[i] {
            contacts += sim.engines[i].contactLinkCounts.up
            records += sim.engines[i].locationRecordCount
            fallbacks += Int(sim.engines[i].stats.routeFallbacks)
        }
        r.contactLinksMean = n > 0 ? Double(contacts) / Double(n) : 0
        r.recordsMean = n > 0 ? Double(records) / Double(n) : 0
        r.routeFallbacks = fallbacks
        for i in slotNode {
            let b = sim.engines[i].countedStateBytes
            bytes += b; bytesMax = max(bytesMax, b)
            let d = sim.degree(i).up
            deg += d; degMax = max(degMax, d)
        }
        r.stateBytesMean = n > 0 ? bytes / n : 0
        r.stateBytesMax = bytesMax
        r.meanDegree = n > 0 ? Double(deg) / Double(n) : 0
        r.maxDegree = degMax
        r.controlFrames = sim.controlFramesSent - controlAtStreamStart
        r.framesLost = sim.framesLost - lostAtStreamStart
        return r
    }
}

func percentile(_ sorted: [UInt64], _ q: Double) -> UInt64 { Percentile.of(sorted: sorted, q) ?? 0 }
