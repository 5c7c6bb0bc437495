import Foundation
import Logging
import Warren

/// N gossip nodes on loopback in this process, wired as a given topology: each edge is given to
/// one side only (as a `peer`), so every link also proves that links become bidirectional.
public final class GossipOverlay: Sendable {
    public let backends: [GossipBackend]
    /// Undirected edges (i, j): node i was started with node j's endpoint as a peer.
    public let edges: [(Int, Int)]

    public var endpoints: [String] { backends.map(\.endpoint) }

    /// A random connected graph where every node has degree ≥ `degree` (a random spanning tree,
    /// then random extra edges), reproducible from `seed`.
    public static func randomTopology(nodes n: Int, degree: Int, seed: UInt64) -> [(Int, Int)] {
        var rng = SeededGenerator(seed: seed)
        guard n > 1 else { return [] }
        var edges = Set<[Int]>()
        var order = Array(0..<n)
        order.shuffle(using: &rng)
        for k in 1..<n {
            let parent = order[Int.random(in: 0..<k, using: &rng)]
            edges.insert([min(order[k], parent), max(order[k], parent)])
        }
        var deg = [Int](repeating: 0, count: n)
        for e in edges { deg[e[0]] += 1; deg[e[1]] += 1 }
        let target = min(degree, n - 1)
        var guardCount = 0
        while let i = deg.indices.first(where: { deg[$0] < target }), guardCount < n * n {
            guardCount += 1
            let candidates = (0..<n).filter { $0 != i && !edges.contains([min(i, $0), max(i, $0)]) }
            guard !candidates.isEmpty else { break }
            // Prefer partners that are themselves short of edges.
            let short = candidates.filter { deg[$0] < target }
            let j = (short.isEmpty ? candidates : short).randomElement(using: &rng)!
            edges.insert([min(i, j), max(i, j)]); deg[i] += 1; deg[j] += 1
        }
        return edges.map { ($0[0], $0[1]) }.sorted { $0 < $1 }
    }

    /// Line 0 - 1 - … - (n−1).
    public static func line(_ n: Int) -> [(Int, Int)] { (0..<max(0, n - 1)).map { ($0, $0 + 1) } }
    /// Ring.
    public static func ring(_ n: Int) -> [(Int, Int)] { line(n) + (n > 2 ? [(0, n - 1)] : []) }
    /// Full mesh.
    public static func mesh(_ n: Int) -> [(Int, Int)] { (0..<n).flatMap { i in (i + 1..<n).map { (i, $0) } } }

    /// Starts `n` nodes wired as `edges` (targetDegree 0 unless `configure` changes it, so the
    /// topology stays exactly as given). Nodes start in index order; an edge (i, j) with i < j is
    /// given to node j, which dials node i.
    public static func start(nodes n: Int, edges: [(Int, Int)],
                             configure: (Int, inout GossipConfiguration) -> Void = { _, _ in },
                             logger: Logger = Logger(label: "warren.overlay")) async throws -> GossipOverlay {
        try startSync(nodes: n, edges: edges, configure: configure, logger: logger)
    }

    /// Synchronous, so no configuration value lives in an async frame.
    static func startSync(nodes n: Int, edges: [(Int, Int)],
                          configure: (Int, inout GossipConfiguration) -> Void,
                          logger: Logger) throws -> GossipOverlay {
        var backends: [GossipBackend] = []
        for i in 0..<n {
            var cfg = GossipConfiguration.local(listen: "tcp://127.0.0.1:*")
            cfg.peers = edges.filter { $0.1 == i }.map { backends[$0.0].endpoint }
            cfg.degree = 0
            configure(i, &cfg)
            backends.append(try GossipBackend(cfg, logger: logger))
        }
        return GossipOverlay(backends: backends, edges: edges)
    }

    init(backends: [GossipBackend], edges: [(Int, Int)]) {
        self.backends = backends
        self.edges = edges
    }

    /// Expected neighbour count of each node in the topology.
    public var expectedDegrees: [Int] {
        var d = [Int](repeating: 0, count: backends.count)
        for (i, j) in edges { d[i] += 1; d[j] += 1 }
        return d
    }

    /// Waits until every node has at least its topology's neighbours up.
    /// `progress(formedNodes, total)` is called as it goes.
    public func waitFormed(timeout: Duration = .seconds(20),
                           progress: (@Sendable (Int, Int) -> Void)? = nil) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        let want = expectedDegrees
        while true {
            // The check always runs once more after the deadline: a poller that was starved (its
            // executor busy with other work) must not report the overlay unformed unchecked.
            let late = clock.now >= deadline
            var formed = 0
            for (i, b) in backends.enumerated() where await b.stats().neighbours.count >= want[i] { formed += 1 }
            progress?(formed, backends.count)
            if formed == backends.count { return true }
            if late { return false }
            try? await Task.sleep(for: .milliseconds(25))
        }
    }

    public func close() async {
        for b in backends { try? await b.close() }
    }
}

extension GossipBackend: EnvelopeInjecting {
    /// Floods raw bytes from this node to the recipient named in them (or to our first
    /// subscribed key when the bytes do not parse), as a hostile or broken sender would.
    public func injectEnvelope(_ bytes: [UInt8]) async throws {
        let recipient = (try? EnvelopeCodec.shared.parse(bytes)).flatMap { try? Key(bytes: $0.recipient) }
        let topic = recipient ?? registry.recipients.first ?? Key.zero
        guard !topic.isZero else { return }
        try publish(envelope: bytes, to: topic)
    }
}
