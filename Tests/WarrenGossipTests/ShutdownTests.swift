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

    /// A node that cannot start (its endpoint is taken, its back-link endpoint is taken, its
    /// context has no socket left) closes everything it had opened: its wake-up pipe, its sockets,
    /// its ZAP domain. Each failure here leaked two to three descriptors before.
    ///
    /// Other suites open and close descriptors and start nodes meanwhile (in one CI run, 694
    /// descriptors during these two seconds), so nothing here counts the whole process: sockets
    /// are made on contexts of the test's own, which terminate only once every socket made on them
    /// is closed; pipes and ZAP domains are checked by identity — those that appeared during the
    /// failures must go, as others' do once their tests end, and a leaked one never does.
    @Test func aFailedStartLeaksNothing() async throws {
        let a = try await GossipBackend.start(.local())
        let taken = a.endpoint
        var pinned = GossipConfiguration.local()
        pinned.backlink = a.node.backlinkEndpoint
        let pipesBefore = Self.pipes()
        let domainsBefore = GossipNode.registeredZAPDomains
        func node(_ c: GossipConfiguration, on context: ZMQContext) throws {
            _ = try GossipNode(configuration: c, context: context, callbacks: GossipNodeCallbacks(), logger: Logger(label: "test"))
        }
        // On the shared context, where nodes register with the ZAP handler.
        for _ in 0..<300 {
            #expect(throws: (any Error).self) { _ = try GossipBackend(.local(listen: taken)) }
        }
        for _ in 0..<100 {
            #expect { _ = try GossipBackend(pinned) } throws: { "\($0)".contains("back-link endpoint") }
        }
        // The same on a context of the test's own, and on one with no socket left, where the
        // node's first socket cannot even be made.
        let own = ZMQContext(handle: zmq_ctx_new())
        for _ in 0..<300 {
            #expect(throws: (any Error).self) { try node(.local(listen: taken), on: own) }
        }
        for _ in 0..<100 {
            #expect { try node(pinned, on: own) } throws: { "\($0)".contains("back-link endpoint") }
        }
        let full = ZMQContext(handle: zmq_ctx_new())
        zmq_ctx_set(full.handle, ZMQ_MAX_SOCKETS, 1)
        let filler = zmq_socket(full.handle, ZMQ_PUB)
        for _ in 0..<300 {
            #expect(throws: ZMQError.self) { try node(.local(), on: full) }
        }
        zmq_close(filler)
        #expect(await Self.terminates(own), "a socket of a node that failed to start is still open")
        #expect(await Self.terminates(full), "a socket of a node that failed to start is still open")
        try await a.close()
        // 1,100 failures: a leak would leave as many pipes (and 400 domains) that never go.
        var pipesLeft = 0, domainsLeft = 0
        let gone = await Conformance.eventually(timeout: .seconds(30)) {
            pipesLeft = Self.pipes().subtracting(pipesBefore).count
            domainsLeft = GossipNode.registeredZAPDomains.subtracting(domainsBefore).count
            return pipesLeft < 100 && domainsLeft < 100
        }
        #expect(gone, "still open after 30 s: \(pipesLeft) pipes, \(domainsLeft) ZAP domains that appeared during the failed starts")
    }

    /// The pipes this process has open (their inodes: both ends of one pipe name the same).
    static func pipes() -> Set<String> {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return Set(fds.compactMap { fd in
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + fd)).flatMap { $0.hasPrefix("pipe:") ? $0 : nil }
        })
    }

    /// Whether `context` terminates within 10 s: `zmq_ctx_term` returns only once every socket
    /// made on it is closed (a leaked socket would hold it, and its thread, forever).
    static func terminates(_ context: ZMQContext) async -> Bool {
        let done = DispatchSemaphore(value: 0)
        Thread { zmq_ctx_term(context.handle); done.signal() }.start()
        return await Conformance.eventually(timeout: .seconds(10)) { done.wait(timeout: .now()) == .success }
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
