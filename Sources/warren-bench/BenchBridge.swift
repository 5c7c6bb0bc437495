import ArgumentParser
import Foundation
import GRPCCore
import GRPCNIOTransportHTTP2
import Synchronization
import Warren
import WarrenCLI
import WarrenConformance
import WarrenMeasure

struct BridgeBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bridge",
        abstract: "cunīcu's conformance procedure through 3 nodes' gRPC bridges vs one plain gRPC signaling server.",
        discussion: """
            n peers, each on its own grpc:// client connection, subscribe as cunīcu's backend test does \
            (two handlers per other peer, two for any sender); then every peer publishes to every other, \
            one call at a time. Peer i uses node i mod 3's bridge; the baseline is a minimal server of the \
            same service on the same grpc-swift stack (grpc-swift's default settings), routing by recipient, \
            which every peer uses. Rounds alternate between them in this run.
            """)
    @Option(help: "Peers.") var peers: Int = 10
    @Option(help: "Measured rounds (after one warm-up round each).") var rounds: Int = 20
    @Option(help: "Nodes of the overlay (a full mesh); peer i uses node i mod N.") var nodes: Int = 3
    @Option(help: "The bridges' flush coalescing delay in µs (default: none, the bridge's own default).") var bridgeFlushDelay: Int?

    func validate() throws {
        guard peers >= 2 else { throw ValidationError("--peers must be at least 2") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        guard nodes >= 1 else { throw ValidationError("--nodes must be at least 1") }
    }

    func run() async throws {
        let n = peers
        let keys = (0..<n).map { _ in PrivateKey.generate() }

        // Warren: N nodes, each serving the bridge.
        let overlay = try await GossipOverlay.start(nodes: nodes, edges: GossipOverlay.mesh(nodes))
        guard await overlay.waitFormed() else { throw ValidationError("the overlay did not form") }
        var bridgeConfig = GRPCBridgeConfiguration(host: "127.0.0.1", port: 0)
        bridgeConfig.maxFlushDelay = bridgeFlushDelay.map { .microseconds($0) }
        var servers: [SignalingServer] = [], serving: [Task<Void, any Error>] = [], addresses: [String] = []
        for b in overlay.backends {
            let s = try SignalingServer(backend: b, configuration: bridgeConfig)
            servers.append(s)
            serving.append(Task { try await s.run() })
            addresses.append(try await s.listeningAddress())
        }
        let warrenTimes = StageTimes(keys: keys)
        var taps: [(GossipBackend, GossipBackend.Tap)] = []
        for (i, k) in keys.enumerated() {
            let node = overlay.backends[i % nodes]
            taps.append((node, try await node.addTap(for: k.publicKey) { bytes in
                if let env = try? Envelope(serializedBytes: bytes) { warrenTimes.stamp(env) }
            }))
        }

        // The baseline, with grpc-swift's defaults, and the same server with the bridge's settings.
        let baselineTimes = StageTimes(keys: keys), tunedTimes = StageTimes(keys: keys)
        let baseline = try await BaselineServer.start(BaselineSignaling { baselineTimes.stamp($0) })
        let tuned = try await BaselineServer.start(BaselineSignaling { tunedTimes.stamp($0) },
                                                   config: SignalingServer.transportConfig(bridgeConfig))

        func clients(_ address: (Int) -> String) throws -> [GRPCBackend] {
            try (0..<n).map { try GRPCBackend(url: URL(string: "grpc://\(address($0))?insecure=true")!) }
        }
        let worlds = [
            try await TimedExchange(name: "baseline: one grpc-swift server, its defaults",
                                    clients: clients { _ in baseline.address }, keys: keys, times: baselineTimes, isBridge: false,
                                    placement: { _ in 0 }),
            try await TimedExchange(name: "baseline with the bridge's HTTP/2 settings",
                                    clients: clients { _ in tuned.address }, keys: keys, times: tunedTimes, isBridge: false,
                                    placement: { _ in 0 }),
            try await TimedExchange(name: nodes == 1 ? "Warren: one node's bridge" : "Warren: \(nodes) nodes' bridges",
                                    clients: clients { addresses[$0 % nodes] }, keys: keys, times: warrenTimes, isBridge: true,
                                    placement: { $0 % nodes }),
        ]
        for w in worlds { _ = try await w.round(0) }   // warm-up: connections, shared keys, code paths
        var results = [[RoundResult]](repeating: [], count: worlds.count)
        for r in 1...rounds {
            // Alternate the order, so neither side always runs right after the other.
            let order = r % 2 == 0 ? Array(worlds.indices) : Array(worlds.indices.reversed())
            for i in order { results[i].append(try await worlds[i].round(Int32(r))) }
        }

        for w in worlds { try await w.close() }
        for (node, tap) in taps { await node.removeTap(tap) }
        for s in servers { s.shutdown() }
        for t in serving { _ = await t.result }
        await baseline.stop(); await tuned.stop()
        await overlay.close()

        report(worlds: worlds, results: results)
    }

    func report(worlds: [TimedExchange], results: [[RoundResult]]) {
        let n = peers
        Output.line("warren-bench bridge — \(machineLine())")
        Output.line("  cunīcu's conformance procedure: \(n) peers on their own grpc:// connections, 4 handlers per ordered pair,")
        Output.line("  every peer publishes to every other one call at a time (\(n * (n - 1)) messages a round);")
        Output.line("  \(rounds) rounds each after a warm-up, the three alternating; peer i on node i mod \(nodes)")
        Output.line("  latency: Publish call starts → the recipient's 4th handler ran; µs over all rounds")
        func pct(_ v: [Double], _ q: Double) -> Double { percentile(v, q) }
        var summary: [(p50: Double, p99: Double, roundP99: Double, exchange: Double)] = []
        for (w, rs) in zip(worlds, results) {
            let all = rs.flatMap(\.latency), cross = rs.flatMap(\.crossLatency)
            let exchange = median(rs.map(\.exchange)) * 1000
            Output.line("  \(w.name)")
            Output.line(String(format: "    all messages     p50 %7.0f   p99 %7.0f   max %7.0f   exchange median %6.1f ms (%.1f … %.1f)",
                               pct(all, 0.5), pct(all, 0.99), all.max() ?? 0, exchange,
                               (rs.map(\.exchange).min() ?? 0) * 1000, (rs.map(\.exchange).max() ?? 0) * 1000))
            let measured = w.placementCount > 1 ? rs.map(\.crossLatency) : rs.map(\.latency)
            Output.line(String(format: "    per round (%@)  median p50 %7.0f   median p99 %7.0f",
                               w.placementCount > 1 ? "across nodes" : "all", median(measured.map { pct($0, 0.5) }),
                               median(measured.map { pct($0, 0.99) })))
            if cross.count != all.count && !cross.isEmpty {
                Output.line(String(format: "    across nodes     p50 %7.0f   p99 %7.0f   max %7.0f   (%d of %d messages)",
                                   pct(cross, 0.5), pct(cross, 0.99), cross.max() ?? 0, cross.count, all.count))
            }
            let rpc = rs.flatMap(\.publishReturned), stage = rs.flatMap(\.atServer)
            let place = w.isBridge ? "receiving node's thread" : "server's Publish handler"
            for (q, label) in [(0.5, "p50"), (0.99, "p99")] {
                Output.line(String(format: "    stages, %@: Publish returned %6.0f   routed (%@) %6.0f   handler %6.0f",
                                   label, pct(rpc, q), place, pct(stage, q), pct(all, q)))
            }
            let wrong = rs.map(\.wrong).reduce(0, +), missing = rs.map(\.missing).reduce(0, +),
                doubled = rs.map(\.doubled).reduce(0, +), late = rs.map(\.late).reduce(0, +)
            Output.line("    delivered \(rs.map(\.delivered).reduce(0, +)) / \(rs.count * 4 * n * (n - 1)) handler calls   missing \(missing)   doubled \(doubled)   wrong id \(wrong)   late \(late)")
            summary.append((pct(w.placementCount > 1 ? cross : all, 0.5), pct(w.placementCount > 1 ? cross : all, 0.99),
                            median(measured.map { pct($0, 0.99) }), exchange))
        }
        let base = summary[0], warren = summary[2]
        let p50Ratio = warren.p50 / base.p50, p99Ratio = warren.p99 / base.p99
        Output.line(String(format: "  Warren across nodes / baseline: p50 %.2f×, p99 %.2f× (per-round median p99 %.2f×), exchange %.2f×",
                           p50Ratio, p99Ratio, warren.roundP99 / base.roundP99, warren.exchange / base.exchange))
        Output.line("  target p50 ≤ 1×, p99 ≤ 2× → " + ((p50Ratio <= 1 && p99Ratio <= 2) ? "met" : "NOT met"))
    }
}

/// When each message of the current round reached the server side (the bridge's node thread or
/// the baseline's Publish handler), by (recipient, sender).
final class StageTimes: Sendable {
    let index: [Data: Int]
    let n: Int
    private let times: Mutex<[UInt64]>

    init(keys: [PrivateKey]) {
        n = keys.count
        index = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1.publicKey.data, $0) })
        times = Mutex([UInt64](repeating: 0, count: keys.count * keys.count))
    }

    func stamp(_ env: Envelope) {
        let t = monotonicNanos()
        guard let s = index[env.sender], let r = index[env.recipient] else { return }
        times.withLock { if $0[r * n + s] == 0 { $0[r * n + s] = t } }
    }

    func reset() { times.withLock { for i in $0.indices { $0[i] = 0 } } }
    var snapshot: [UInt64] { times.withLock { $0 } }
}

struct RoundResult: Sendable {
    var latency: [Double] = [], crossLatency: [Double] = [], publishReturned: [Double] = [], atServer: [Double] = []
    var exchange: Double = 0
    var delivered = 0, missing = 0, doubled = 0, wrong = 0, late = 0
}

/// n peers on their own grpc:// backends, subscribed as in cunīcu's conformance test, with
/// handlers that time each delivery.
final class TimedExchange: Sendable {
    let name: String
    let clients: [GRPCBackend]
    let keys: [PrivateKey]
    let times: StageTimes
    let node: [Int]
    let placementCount: Int
    /// Peers use bridges of overlay nodes (not a single server).
    let isBridge: Bool
    private let handlers: [TimedHandler]
    private let state: Mutex<Slots>
    private let total = Atomic<Int>(0)

    struct Slots {
        var round: Int32 = -1
        var count: [Int]
        var last: [UInt64]
        var wrong = 0, late = 0
    }

    init(name: String, clients: [GRPCBackend], keys: [PrivateKey], times: StageTimes, isBridge: Bool,
         placement: (Int) -> Int) async throws {
        let n = keys.count
        self.name = name
        self.isBridge = isBridge
        self.clients = clients
        self.keys = keys
        self.times = times
        node = (0..<n).map(placement)
        placementCount = Set(node).count
        state = Mutex(Slots(count: [Int](repeating: 0, count: n * n), last: [UInt64](repeating: 0, count: n * n)))
        var hs: [TimedHandler] = []
        let sink = RecordSink()
        for i in 0..<n {
            for j in 0..<n where j != i {
                for _ in 0..<2 {
                    let h = TimedHandler(sink: sink)
                    try await clients[i].subscribe(KeyPair(ours: keys[i], theirs: keys[j].publicKey), h)
                    hs.append(h)
                }
            }
            for _ in 0..<2 {
                let h = TimedHandler(sink: sink)
                try await clients[i].subscribe(KeyPair(ours: keys[i], theirs: .zero), h)
                hs.append(h)
            }
        }
        handlers = hs
        sink.exchange.withLock { $0 = self }
    }

    func record(_ pair: PublicKeyPair, _ message: SignalingMessage) {
        let t = monotonicNanos()
        let n = keys.count
        guard let r = times.index[pair.ours.data], let s = times.index[pair.theirs.data] else { return }
        state.withLock { st in
            guard message.candidate.priority == st.round else { st.late += 1; return }
            let slot = r * n + s
            st.count[slot] += 1
            if message.candidate.port != Int32(100 + s) { st.wrong += 1 }
            st.last[slot] = max(st.last[slot], t)
        }
        total.add(1, ordering: .relaxed)
    }

    /// One exchange: every peer publishes to every other, one call at a time.
    func round(_ r: Int32) async throws -> RoundResult {
        let n = keys.count
        state.withLock { st in
            st.round = r
            for i in st.count.indices { st.count[i] = 0; st.last[i] = 0 }
            st.wrong = 0; st.late = 0
        }
        times.reset()
        total.store(0, ordering: .relaxed)
        var sent = [UInt64](repeating: 0, count: n * n), returned = sent
        let start = monotonicNanos()
        for s in 0..<n {
            for q in 0..<n where q != s {
                var m = SignalingMessage()
                m.candidate.port = Int32(100 + s)
                m.candidate.priority = r
                sent[q * n + s] = monotonicNanos()
                try await clients[s].publish(KeyPair(ours: keys[s], theirs: keys[q].publicKey), m)
                returned[q * n + s] = monotonicNanos()
            }
        }
        let want = 4 * n * (n - 1)
        let deadline = monotonicNanos() + 10_000_000_000
        while total.load(ordering: .relaxed) < want && monotonicNanos() < deadline {
            try await Task.sleep(for: .microseconds(200))
        }
        let st = state.withLock { $0 }
        let stage = times.snapshot
        var out = RoundResult()
        var lastArrival = start
        for s in 0..<n {
            for q in 0..<n where q != s {
                let slot = q * n + s
                out.delivered += min(st.count[slot], 4)
                out.missing += max(0, 4 - st.count[slot])
                out.doubled += max(0, st.count[slot] - 4)
                out.publishReturned.append(Double(returned[slot] &- sent[slot]) / 1000)
                if stage[slot] != 0 { out.atServer.append(Double(stage[slot] &- sent[slot]) / 1000) }
                guard st.count[slot] >= 4 else { continue }
                let l = Double(st.last[slot] &- sent[slot]) / 1000
                out.latency.append(l)
                if node[s] != node[q] { out.crossLatency.append(l) }
                lastArrival = max(lastArrival, st.last[slot])
            }
        }
        out.wrong = st.wrong
        out.late = st.late
        out.exchange = Double(lastArrival - start) / 1e9
        return out
    }

    func close() async throws { for c in clients { try await c.close() } }
}

/// Lets handlers made before their exchange reach it.
final class RecordSink: Sendable {
    let exchange = Mutex<TimedExchange?>(nil)
}

final class TimedHandler: MessageHandler {
    let sink: RecordSink
    init(sink: RecordSink) { self.sink = sink }
    func onSignalingMessage(_ pair: PublicKeyPair, _ message: SignalingMessage) {
        sink.exchange.withLock { $0 }?.record(pair, message)
    }
}
