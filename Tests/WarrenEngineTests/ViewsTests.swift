import Testing
import WarrenTestSupport
import WarrenEngine
import WarrenSimulator

/// Bounded views (docs/PROTOCOL.md §6, "Views"): every node's degree stays within the bound
/// whatever the join order, the overlay survives half of it dying and heals after a partition,
/// and a neighbour without views still interoperates.
@Suite(.computeLane) struct ViewsTests {
    /// A node with views and a degree to keep.
    static func viewsCfg(_ i: Int, seeds: [Int], degree: Int = 4, views: Bool = true) -> EngineConfig {
        var c = cfg(i, seeds: seeds, degree: degree)
        c.views = views
        return c
    }

    /// Up non-leaf neighbours of every live node.
    static func degrees(_ net: InMemoryNetwork) -> [Int] {
        (0..<net.nodes.count).compactMap { i in net.engine(i).map { $0.neighbours.filter { !$0.leaf }.count } }
    }

    /// True if the up-neighbour graph of the live nodes is connected.
    static func connected(_ net: InMemoryNetwork) -> Bool {
        let live = (0..<net.nodes.count).filter { net.engine($0) != nil }
        guard let first = live.first else { return true }
        var index: [NodeID: Int] = [:]
        for i in live { index[net.engine(i)!.nodeID] = i }
        var seen: Set<Int> = [first], stack = [first]
        while let i = stack.popLast() {
            for id in net.neighbourIDs(i) {
                if let j = index[id], seen.insert(j).inserted { stack.append(j) }
            }
        }
        return seen.count == live.count
    }

    /// Runs `duration` in steps of 100 ms, recording the largest degree seen at any node.
    static func run(_ net: inout InMemoryNetwork, for duration: UInt64, maxSeen: inout Int) {
        let end = net.now + duration
        while net.now < end {
            net.run(for: 100 * msNS)
            maxSeen = max(maxSeen, degrees(net).max() ?? 0)
        }
    }

    /// Every live node gets one publish exactly once.
    static func floods(_ net: inout InMemoryNetwork, from: Int, topic t: Topic, envelope: [UInt8]) -> Bool {
        let id = net.publish(from: from, topic: t, envelope: envelope)
        net.run(for: 2 * second)
        return (0..<net.nodes.count).allSatisfy { i in net.engine(i) == nil || net.deliveries(i, id).count == 1 }
    }

    enum JoinOrder: String, CaseIterable, CustomTestStringConvertible {
        /// Everyone joins through node 0, one after another.
        case oneSeedSequential
        /// Everyone joins through node 0 at the same moment (a star).
        case star
        /// Node i joins through node i − 1, one after another (a chain).
        case chain
        /// Everyone starts at once, each through a random earlier node.
        case allAtOnce
        var testDescription: String { rawValue }
    }

    @Test(arguments: JoinOrder.allCases)
    func degreeStaysBounded(_ order: JoinOrder) {
        let n = 48, degree = 4
        var net = InMemoryNetwork(seed: 31)
        var rng = SeededGenerator(seed: 5)
        var maxSeen = 0
        for i in 0..<n {
            let seeds: [Int]
            switch order {
            case .oneSeedSequential, .star: seeds = i == 0 ? [] : [0]
            case .chain: seeds = i == 0 ? [] : [i - 1]
            case .allAtOnce: seeds = i == 0 ? [] : [Int(rng.next(upperBound: UInt64(i)))]
            }
            net.addNode(config: Self.viewsCfg(i, seeds: seeds, degree: degree))
            if order == .oneSeedSequential || order == .chain { Self.run(&net, for: 100 * msNS, maxSeen: &maxSeen) }
        }
        Self.run(&net, for: 20 * second, maxSeen: &maxSeen)
        #expect(!net.budgetExceeded)
        let bound = net.engine(0)!.config.effectiveMaxDegree
        let d = Self.degrees(net)
        #expect(maxSeen <= bound, "a node had \(maxSeen) neighbours (bound \(bound))")
        #expect(d.min()! >= 2, "degrees \(d)")
        let mean = Double(d.reduce(0, +)) / Double(d.count)
        #expect(Double(d.max()!) <= 2 * mean, "max \(d.max()!) vs mean \(mean)")
        do { let connected = Self.connected(net); #expect(connected) }
        for i in 0..<n { net.subscribe(i, topic(9)) }
        do { let ok = Self.floods(&net, from: n - 1, topic: topic(9), envelope: [9, 1]); #expect(ok) }
    }

    /// Half of the nodes die at once: the survivors stay (or become again) one overlay within
    /// seconds, every one of them with neighbours, and a flood reaches them all.
    @Test func survivesHalfKilled() {
        let n = 64
        var net = InMemoryNetwork(seed: 32)
        var rng = SeededGenerator(seed: 6)
        for i in 0..<n { net.addNode(config: Self.viewsCfg(i, seeds: i == 0 ? [] : [Int(rng.next(upperBound: UInt64(i)))])) }
        var maxSeen = 0
        Self.run(&net, for: 15 * second, maxSeen: &maxSeen)
        do { let connected = Self.connected(net); #expect(connected) }
        var victims = Array(0..<n)
        for k in stride(from: victims.count - 1, to: 0, by: -1) { victims.swapAt(k, Int(rng.next(upperBound: UInt64(k + 1)))) }
        for v in victims.prefix(n / 2) { net.kill(v) }
        let t0 = net.now
        var healedAt: UInt64? = nil
        while net.now - t0 < 20 * second {
            net.run(for: 250 * msNS)
            maxSeen = max(maxSeen, Self.degrees(net).max() ?? 0)
            if healedAt == nil && Self.connected(net) && Self.degrees(net).allSatisfy({ $0 >= 2 }) { healedAt = net.now - t0 }
        }
        #expect(!net.budgetExceeded)
        #expect(healedAt != nil && healedAt! <= 10 * second, "healed after \(healedAt.map { "\($0 / msNS) ms" } ?? "never")")
        do { let connected = Self.connected(net); #expect(connected) }
        #expect(maxSeen <= net.engine(victims[n - 1])!.config.effectiveMaxDegree)
        for i in 0..<n { net.subscribe(i, topic(10)) }
        do { let ok = Self.floods(&net, from: victims[n - 1], topic: topic(10), envelope: [10, 1]); #expect(ok) }
    }

    /// A 2-minute cut between two halves (every frame across it lost): each half lives on by
    /// itself; once the cut ends, the halves find each other again without help.
    @Test func partitionHeals() {
        let n = 40
        var net = InMemoryNetwork(seed: 33)
        var rng = SeededGenerator(seed: 7)
        for i in 0..<n { net.addNode(config: Self.viewsCfg(i, seeds: i == 0 ? [] : [Int(rng.next(upperBound: UInt64(i)))])) }
        var maxSeen = 0
        Self.run(&net, for: 15 * second, maxSeen: &maxSeen)
        do { let connected = Self.connected(net); #expect(connected) }
        let groups = (0..<n).map { Int32($0 % 2) }
        net.partition(groups)
        Self.run(&net, for: 120 * second, maxSeen: &maxSeen)
        // No neighbour across the cut is left.
        do { let connected = Self.connected(net); #expect(!connected) }
        net.heal()
        let t0 = net.now
        var healedAt: UInt64? = nil
        while net.now - t0 < 60 * second {
            net.run(for: 250 * msNS)
            maxSeen = max(maxSeen, Self.degrees(net).max() ?? 0)
            if Self.connected(net) { healedAt = net.now - t0; break }
        }
        #expect(!net.budgetExceeded)
        #expect(healedAt != nil && healedAt! <= 30 * second, "healed after \(healedAt.map { "\($0 / msNS) ms" } ?? "never")")
        #expect(maxSeen <= net.engine(0)!.config.effectiveMaxDegree)
        net.run(for: 5 * second)
        for i in 0..<n { net.subscribe(i, topic(11)) }
        do { let ok = Self.floods(&net, from: 1, topic: topic(11), envelope: [11, 1]); #expect(ok) }
    }

    /// Nodes without views (as built before them: they take DISCONNECT and FORWARD_JOIN for
    /// malformed frames) in an overlay of nodes with views: nobody sends them a frame they do not
    /// know, they stay connected, and floods reach everyone.
    @Test func oldNeighboursInteroperate() {
        let n = 32
        var net = InMemoryNetwork(seed: 34)
        var rng = SeededGenerator(seed: 8)
        let old: Set<Int> = [0, 3, 7, 12, 20, 27]
        for i in 0..<n {
            net.addNode(config: Self.viewsCfg(i, seeds: i == 0 ? [] : [Int(rng.next(upperBound: UInt64(i)))], views: !old.contains(i)))
            net.run(for: 100 * msNS)
        }
        var maxSeen = 0
        Self.run(&net, for: 20 * second, maxSeen: &maxSeen)
        #expect(!net.budgetExceeded)
        for i in 0..<n {
            #expect(net.engine(i)!.stats.malformed == 0, "node \(i)")
            #expect(net.engine(i)!.stats.penalized == 0, "node \(i)")
        }
        // Nodes with views did evict, refuse and walk (the overlay is not all old rules).
        let viewsStats = (0..<n).filter { !old.contains($0) }.map { net.engine($0)!.stats }
        #expect(viewsStats.reduce(0) { $0 + $1.forwardJoins } > 0)
        do { let connected = Self.connected(net); #expect(connected) }
        for i in old { #expect(!net.neighbourIDs(i).isEmpty, "old node \(i)") }
        for i in 0..<n { net.subscribe(i, topic(12)) }
        do { let ok = Self.floods(&net, from: 0, topic: topic(12), envelope: [12, 1]); #expect(ok) }
        do { let ok = Self.floods(&net, from: 5, topic: topic(12), envelope: [12, 2]); #expect(ok) }
    }

    /// Seeds are how a node joins and rejoins: a node whose seed was not up at its start, and
    /// that knows no other endpoint, JOINs it once it is up (with the seed back-off); a node
    /// whose neighbours all die and whose passive view holds only the dead rejoins through its
    /// seed.
    @Test func rejoinsThroughSeeds() {
        var net = InMemoryNetwork(seed: 36)
        let seed = net.addNode(config: Self.viewsCfg(0, seeds: [], degree: 2), start: false)
        let a = net.addNode(config: Self.viewsCfg(1, seeds: [0], degree: 2))
        net.run(for: 5 * second)
        #expect(net.engine(a)!.neighbours.isEmpty)
        net.start(seed)
        net.run(for: 5 * second)
        do { let up = net.isUp(a, seed); #expect(up) }
        // Two more nodes join through node 1 only, then node 0 restarts (new id, same endpoint)
        // and both of them die: node 1 knows only dead endpoints and a seed it must JOIN again.
        let b = net.addNode(config: Self.viewsCfg(2, seeds: [1], degree: 2))
        let c = net.addNode(config: Self.viewsCfg(3, seeds: [1], degree: 2))
        net.run(for: 5 * second)
        net.kill(b)
        net.kill(c)
        net.restart(seed)
        net.run(for: 15 * second)
        #expect(!net.budgetExceeded)
        do { let up = net.isUp(a, seed); #expect(up) }
        #expect(net.engine(a)!.stats.reconnects > 0)
    }

    /// A full node refuses a low-priority request with DISCONNECT (the requester's link closes
    /// at once, not after its dial timeout) and the requester does not dial it again before
    /// `reconnectInterval`.
    @Test func fullNodeRefusesPolitely() {
        var net = InMemoryNetwork(seed: 35)
        // Node 0 with room for two; nodes 1, 2 take it (JOIN); node 3 asks too.
        var c0 = Self.viewsCfg(0, seeds: [], degree: 1)
        c0.maxDegree = 2
        net.addNode(config: c0)
        for i in 1...2 { net.addNode(config: Self.viewsCfg(i, seeds: [0], degree: 1)) }
        net.run(for: 3 * second)
        #expect(net.engine(0)!.neighbours.count == 2)
        // Node 3 joins node 4, then learns node 0 from a peer list: a low-priority NEIGHBOR.
        var c3 = Self.viewsCfg(3, seeds: [4], degree: 2)
        c3.reconnectInterval = 60 * second
        let three = net.addNode(config: c3)
        net.addNode(config: Self.viewsCfg(4, seeds: [], degree: 1))
        net.run(for: 2 * second)
        #expect(net.engine(three)!.neighbours.count == 1)
        let list = Frame(kind: .peers([Frame.PeerEntry(nodeID: net.engine(0)!.nodeID, endpoint: endpoint(0))]),
                         from: net.engine(4)!.nodeID).encode()
        net.inject(to: three, topic: list.topic.bytes, body: list.body)
        net.run(for: 5 * second)
        #expect(net.engine(0)!.neighbours.count == 2)
        #expect(net.engine(0)!.stats.shed >= 1)
        #expect(net.engine(3)!.stats.disconnectsReceived >= 1)
        let dials = net.nodes[3].connects.filter { $0.endpoint == endpoint(0) }.count
        #expect(dials == 1, "dialled node 0 \(dials) times")
    }
}
