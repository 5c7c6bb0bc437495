import ArgumentParser
import Foundation
import Glibc
import Logging
import Synchronization
import Warren
import WarrenCLI
import WarrenConformance

struct Demo: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run cunīcu's conformance exchange on a local overlay and print a summary.",
        discussion: """
        With no arguments: 16 gossip nodes on loopback in this process (random connected topology \
        of degree 3), every peer sends one message to every other, plus one community broadcast. \
        Exits 1 if any message is missing or delivered twice.
        """)

    enum BackendKind: String, ExpressibleByArgument, CaseIterable { case gossip, inprocess }

    @Option(name: .long, help: "Number of peers.") var nodes: Int = 16
    @Option(name: .long, help: "Minimum neighbours per node in the random topology.") var degree: Int = 3
    @Option(name: .long, help: "Backend: gossip or inprocess.") var backend: BackendKind = .gossip
    @Option(name: .long, help: "Topology seed (same seed, same topology).") var seed: UInt64 = 1
    @Flag(name: .long, help: "Gossip: unicast routing on every node (docs/PROTOCOL.md §9; the flood stays the fallback).") var routing = false
    @Option(name: .long, help: "Seconds to wait for the overlay to form, and again for all messages (1…3600).") var timeout: Int = 30
    @Option(name: .long, help: ArgumentHelp("Write the overlay's topology (its live neighbour links) as Graphviz to FILE.", valueName: "FILE")) var dot: String?

    func validate() throws {
        guard (2...256).contains(nodes) else { throw ValidationError("--nodes must be 2…256") }
        guard (1...16).contains(degree) else { throw ValidationError("--degree must be 1…16") }
        guard !routing || backend == .gossip else { throw ValidationError("--routing needs --backend gossip (the in-process backend has no overlay to route in)") }
        guard (1...3600).contains(timeout) else { throw ValidationError("--timeout must be 1…3600 seconds") }
    }

    func run() async throws {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label); h.logLevel = .warning; return h
        }
        // A --dot path that cannot be written fails now, not after the run.
        if let dot {
            let fd = open(dot, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw RuntimeError("cannot write \(dot): \(String(cString: strerror(errno)))") }
            close(fd)
        }
        let clock = ContinuousClock()
        let start = clock.now
        Output.line("warren demo: \(nodes) peers over the \(backend.rawValue) backend")
        var backends: [any Backend] = []
        var overlay: GossipOverlay?
        switch backend {
        case .inprocess:
            for _ in 0..<nodes { backends.append(try await Backends.make(url: "inprocess:")) }
        case .gossip:
            let edges = GossipOverlay.randomTopology(nodes: nodes, degree: degree, seed: seed)
            Output.line("  topology: \(edges.count) links, degree ≥ \(min(degree, nodes - 1)), seed \(seed)")
            let routing = self.routing
            let o = try await GossipOverlay.start(nodes: nodes, edges: edges) { _, c in c.routing = routing }
            if routing { Output.line("  routing: on (unicasts travel a path; the flood is the fallback)") }
            overlay = o
            backends = o.backends
            let formed = await o.waitFormed(timeout: .seconds(timeout)) { done, total in
                progressLine("  forming overlay: \(done)/\(total) nodes have all their neighbours")
            }
            endProgress()
            guard formed else {
                Output.line("FAIL: the overlay did not form within \(timeout) s")
                await o.close()
                throw ExitCode(1)
            }
        }
        let formedAt = clock.now

        let report = try await Conformance.referenceExchange(
            backends: backends, timeout: .seconds(timeout), settle: .milliseconds(300),
            progress: { done, total in progressLine("  exchanging: \(done)/\(total) handler deliveries") })
        endProgress()

        // One community broadcast: every member (the sender included) receives it exactly once.
        let community = try PrivateKey.community(passphrase: "warren-demo")
        let members = RecordingHandler(name: "community")
        for b in backends { try await b.subscribe(KeyPair(ours: community, theirs: .zero), members) }
        let sender = PrivateKey.generate()
        var msg = SignalingMessage()
        msg.peer.name = "demo-broadcast"
        try await backends[0].publish(KeyPair(ours: sender, theirs: community.publicKey), msg)
        let expectedBroadcast = backend == .inprocess ? 1 : backends.count
        _ = await Conformance.eventually(timeout: .seconds(timeout)) { members.count >= expectedBroadcast }
        try await Task.sleep(for: .milliseconds(300))
        let broadcastOK = members.count == expectedBroadcast

        var dupSuppressed: UInt64 = 0, maxHops: UInt64 = 0, relayed: UInt64 = 0, hwm: UInt64 = 0
        var routed: UInt64 = 0, fallbacks: UInt64 = 0, expired: UInt64 = 0, unforwarded: UInt64 = 0, refusedIDs: UInt64 = 0
        var refusedRoutes: UInt64 = 0, dropped: UInt64 = 0, passed: UInt64 = 0, loops: UInt64 = 0, contactDials: UInt64 = 0
        var causes = [UInt64](repeating: 0, count: 5), notRouted: UInt64 = 0
        if let overlay {
            for b in overlay.backends {
                let s = await b.stats()
                dupSuppressed += s.engine.duplicates; maxHops = max(maxHops, s.engine.maxHops)
                relayed += s.engine.relayed; hwm += s.hwmDrops
                routed += s.engine.routed; fallbacks += s.engine.routeFallbacks; expired += s.engine.ttlExpired
                unforwarded += s.engine.unforwarded; refusedIDs += s.engine.overShare + s.engine.seenFull
                refusedRoutes += s.engine.routeRefused
                passed += s.engine.routedFloods
                loops += s.engine.routedLoops
                contactDials += s.engine.contactDials
                causes[0] += s.engine.fallbackNoRecord; causes[1] += s.engine.fallbackNoCloserHop
                causes[2] += s.engine.fallbackStaleRecord; causes[3] += s.engine.fallbackGroup
                causes[4] += s.engine.fallbackHopLimit; notRouted += s.engine.publishesNotRouted
                dropped += s.engine.forged + s.engine.malformed + s.engine.rateLimited + s.engine.penaltyDrops
            }
        }
        if let dot, let overlay {
            var lines = ["graph warren {", "  layout=neato; overlap=false; node [shape=circle, fontsize=10];"]
            let index = Dictionary(uniqueKeysWithValues: overlay.backends.enumerated().map { ($0.element.node.nodeID, $0.offset) })
            var seen = Set<[Int]>()
            for (i, b) in overlay.backends.enumerated() {
                lines.append("  n\(i) [label=\"\(i)\", tooltip=\"\(b.endpoint)\"];")
                for n in await b.stats().neighbours {
                    guard let j = index[n.nodeID], seen.insert([min(i, j), max(i, j)]).inserted else { continue }
                    lines.append("  n\(min(i, j)) -- n\(max(i, j));")
                }
            }
            lines.append("}")
            do { try (lines.joined(separator: "\n") + "\n").write(toFile: dot, atomically: true, encoding: .utf8) } catch {
                await overlay.close()
                throw RuntimeError("cannot write \(dot): \(describe(error))")
            }
            Output.line("  topology written to \(dot) (\(seen.count) links; render: dot -Tpng -Kneato \(dot) -o overlay.png)")
        }
        let total = clock.now - start
        let ok = report.passed && broadcastOK
        Output.line("")
        Output.line(ok ? "PASS" : "FAIL")
        Output.line("  direct messages    delivered \(report.delivered) / \(report.expected) handler calls (\(report.peers)×\(report.peers - 1) messages × 4 handlers)")
        Output.line("  missing / doubled  \(report.missing) / \(report.duplicates)   wrong content: \(report.wrongContent)")
        Output.line("  community          delivered \(members.count) / \(expectedBroadcast) members")
        if overlay != nil {
            Output.line("  duplicates suppressed  \(dupSuppressed)   frames relayed \(relayed)   HWM drops \(hwm)")
            Output.line("  largest hop count      \(maxHops)")
            if routing {
                Output.line("  routed frames \(routed)   route fallbacks \(fallbacks) (\(refusedRoutes) refused sends)   floods passed on along routes \(passed)   routes come back \(loops)   contact dials \(contactDials)")
                Output.line("  fallbacks by cause: no record at the key's point \(causes[0]), no closer hop to the subscriber \(causes[1]), stale record \(causes[2]), group \(causes[3]), hop limit \(causes[4]); publishes with no next hop \(notRouted) (flooded at once)")
                Output.line("  ttl expired \(expired)   unforwarded \(unforwarded)   ids refused \(refusedIDs)   frames dropped (forged, malformed, rate, penalty) \(dropped)")
            }
        }
        if let p50 = report.latencyPercentile(50), let p99 = report.latencyPercentile(99) {
            Output.line(String(format: "  delivery latency   p50 %.2f ms   p99 %.2f ms", p50 * 1000, p99 * 1000))
        }
        Output.line(String(format: "  time               %.2f s total (overlay formed in %.2f s)",
                     seconds(total), seconds(formedAt - start)))
        for f in report.failures.prefix(10) { Output.line("  ! \(f)") }
        if !broadcastOK { Output.line("  ! community broadcast reached \(members.count) of \(expectedBroadcast)") }
        await overlay?.close()
        if !ok { throw ExitCode(1) }
    }
}
