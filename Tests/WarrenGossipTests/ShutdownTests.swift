import CZeroMQ
import Foundation
import Logging
import Testing
import Warren
import WarrenConformance

/// Closing backends leaves no thread, socket or file descriptor behind.
@Suite(.serialized) struct ShutdownTests {
    /// A /proc file's text (they report size 0, so it is read to its end rather than by size).
    static func read(_ path: String) -> String {
        guard let h = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? h.close() }
        return String(decoding: (try? h.readToEnd()) ?? Data(), as: UTF8.self)
    }

    /// Listening TCP sockets in this network namespace (IPv4 and IPv6): port → socket inodes.
    static func listeningSockets() -> [Int: Set<String>] {
        var sockets: [Int: Set<String>] = [:]
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = Self.read(table)
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ")
                guard f.count > 9, f[3] == "0A", let colon = f[1].lastIndex(of: ":"),
                      let port = Int(f[1][f[1].index(after: colon)...], radix: 16) else { continue }
                sockets[port, default: []].insert(String(f[9]))
            }
        }
        return sockets
    }

    /// TCP ports something in this network namespace listens on.
    static func listeningPorts() -> Set<Int> { Set(listeningSockets().keys) }

    /// The sockets (inodes) listening on `ports` now. A port the kernel gives to another suite's
    /// listener after ours closed has a new inode: checking inodes, not port numbers, tells our
    /// sockets from a reuse of their ports by the suites running beside this one.
    static func inodes(on ports: Set<Int>) -> Set<String> {
        listeningSockets().filter { ports.contains($0.key) }.values.reduce(into: Set<String>()) { $0.formUnion($1) }
    }

    /// Other suites in this process open and close descriptors and threads at the same time, so
    /// process-wide counts cannot tell this test's from theirs: what is checked is this test's
    /// own — its nodes' threads (each node reports when its thread has ended) and the ports
    /// its nodes listened on.
    @Test func closeReleasesEverything() async throws {
        var ports = Set<Int>(), ours = Set<String>()
        for round in 0..<3 {
            let o = try await GossipOverlay.start(nodes: 6, edges: GossipOverlay.ring(6))
            let mine = Set(o.backends.flatMap { b in
                [b.endpoint, b.node.backlinkEndpoint ?? ""].compactMap { Int($0.split(separator: ":").last ?? "") }
            })
            #expect(mine.count == 12 && mine.isSubset(of: Self.listeningPorts()), "nodes listen while running: \(mine.sorted()) in \(Self.listeningPorts().sorted()); \(o.backends.map(\.endpoint))")
            for b in o.backends { #expect(b.node.isRunning) }
            ports.formUnion(mine)
            ours.formUnion(Self.inodes(on: mine))
            #expect(await o.waitFormed(), "round \(round)")
            await o.close()
            for b in o.backends { #expect(!b.node.isRunning) }
        }
        // ZeroMQ's reaper closes sockets asynchronously: give it a moment.
        let settled = await Conformance.eventually(timeout: .seconds(5)) {
            Self.inodes(on: ports).isDisjoint(with: ours)
        }
        #expect(settled, "still listening: \(ports.filter { !Self.inodes(on: [$0]).isDisjoint(with: ours) }.sorted())")
    }

    /// A node that cannot start (its endpoint is taken) closes everything it had opened: its
    /// wake-up pipe, its sockets, its ZAP domain. Each failure here leaked two to three descriptors before.
    @Test func aFailedStartLeaksNothing() async throws {
        let a = try await GossipBackend.start(.local())
        let taken = a.endpoint
        func descriptors() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count) ?? 0 }
        let before = descriptors()
        for _ in 0..<300 {
            #expect(throws: (any Error).self) { _ = try GossipBackend(.local(listen: taken)) }
        }
        var pinned = GossipConfiguration.local()
        pinned.backlink = a.node.backlinkEndpoint
        for _ in 0..<100 {
            #expect { _ = try GossipBackend(pinned) } throws: { "\($0)".contains("back-link endpoint") }
        }
        // A context with no socket left: the node's first socket cannot even be made.
        let full = ZMQContext(handle: zmq_ctx_new())
        zmq_ctx_set(full.handle, ZMQ_MAX_SOCKETS, 1)
        let filler = zmq_socket(full.handle, ZMQ_PUB)
        for _ in 0..<300 {
            #expect(throws: ZMQError.self) {
                _ = try GossipNode(configuration: .local(), context: full, callbacks: GossipNodeCallbacks(), logger: Logger(label: "test"))
            }
        }
        zmq_close(filler)
        zmq_ctx_term(full.handle)
        let after = descriptors()
        // Other suites open and close descriptors meanwhile: allow for their noise, not for a leak.
        #expect(after - before < 500, "descriptors \(before) → \(after)")
        try await a.close()
    }

    /// A backend dropped without `close()` stops its node's thread and frees its ports.
    @Test func aDroppedBackendStopsItsNode() async throws {
        func start() throws -> (GossipNode, Set<Int>, Set<String>) {
            let b = try GossipBackend(.local())
            let ports = Set([b.endpoint, b.node.backlinkEndpoint ?? ""].compactMap { Int($0.split(separator: ":").last ?? "") })
            return (b.node, ports, Self.inodes(on: ports))
        }
        let (node, ports, ours) = try start()   // the backend is gone once `start` returns
        #expect(ports.count == 2)
        let ended = await Conformance.eventually(timeout: .seconds(5)) { !node.isRunning }
        #expect(ended, "the node's thread still runs")
        #expect(ours.count == 2, "its two listeners: \(ours)")
        let freed = await Conformance.eventually(timeout: .seconds(5)) { Self.inodes(on: ports).isDisjoint(with: ours) }
        #expect(freed, "still listening: \(ports.filter { !Self.inodes(on: [$0]).isDisjoint(with: ours) }.sorted())")
    }

    @Test func closedBackendRefusesAndCloseIsIdempotent() async throws {
        let b = try await GossipBackend.start(.local())
        try await b.close()
        try await b.close()
        await #expect(throws: BackendError.closed) {
            try await b.publish(KeyPair(ours: .generate(), theirs: PrivateKey.generate().publicKey), SignalingMessage())
        }
        #expect(await b.stats().neighbours.isEmpty)
    }
}
