import Foundation
import Synchronization
import Testing
import WarrenCore
@testable import WarrenSession

/// `SessionManager` over a real backend (in-process: every message is sealed, serialized,
/// parsed and opened) with scripted agents that connect when both sides hold each other's
/// credentials and a candidate: the manager's wiring, glare and restarts, without libnice.
@Suite struct SessionManagerTests {
    /// Two managers over in-process backends, both started and connecting to each other at once.
    static func connectedPair() async throws
        -> (FakeICE, PrivateKey, PrivateKey, SessionManager, SessionManager, Recorder, Recorder) {
        let ice = FakeICE()
        let (a, b) = (PrivateKey.generate(), PrivateKey.generate())
        let ma = SessionManager(backend: InProcessBackend(), privateKey: a, ice: ice)
        let mb = SessionManager(backend: InProcessBackend(), privateKey: b, ice: ice)
        try await ma.start()
        try await mb.start()
        let ea = Recorder(ma.events), eb = Recorder(mb.events)
        try ma.connect(to: b.publicKey)
        try mb.connect(to: a.publicKey)
        return (ice, a, b, ma, mb, ea, eb)
    }

    @Test func bothSidesStartingAtOnceMakeOneSession() async throws {
        let (ice, a, b, ma, mb, ea, eb) = try await Self.connectedPair()
        #expect(await eventually { ea.reached(.completed) && eb.reached(.completed) },
                "a: \(ea.states) b: \(eb.states)")
        // One agent on each side: glare did not make a second session.
        #expect(ma.status().map(\.generation) == [1] && mb.status().map(\.generation) == [1])
        #expect(ma.status()[0].controlling == Key.isBigEndianLess(a.publicKey, b.publicKey))
        #expect(ma.status()[0].controlling != mb.status()[0].controlling)
        // Idle (resends while the other side's credentials travel, on a busy machine), then New:
        // no agent was closed on the way.
        #expect(ea.states.first == .idle && !ea.states.contains(.closed) && !eb.states.contains(.closed))
        // Data crosses both ways.
        #expect(ma.send([1, 2, 3], to: b.publicKey))
        #expect(mb.send([4], to: a.publicKey))
        #expect(await eventually { eb.data == [[1, 2, 3]] && ea.data == [[4]] })
        await ma.close()
        await mb.close()
        #expect(ice.open == 0, "every agent released")
    }

    @Test func onlyAcceptsStrangersWhenAskedTo() async throws {
        let ice = FakeICE()
        let (a, b, c) = (PrivateKey.generate(), PrivateKey.generate(), PrivateKey.generate())
        let ma = SessionManager(backend: InProcessBackend(), privateKey: a, ice: ice)  // strict
        let mb = SessionManager(backend: InProcessBackend(), privateKey: b, ice: ice, acceptsAny: true)
        let mc = SessionManager(backend: InProcessBackend(), privateKey: c, ice: ice)
        for m in [ma, mb, mc] { try await m.start() }
        let eb = Recorder(mb.events), ec = Recorder(mc.events)
        try mc.connect(to: b.publicKey)
        #expect(await eventually { eb.reached(.completed) && ec.reached(.completed) })
        try mc.connect(to: a.publicKey)
        #expect(await eventually { ma.ignoredMessages >= 2 })
        #expect(ma.status().isEmpty)
        #expect(throws: SessionError.ownKey) { try ma.connect(to: a.publicKey) }
        #expect(throws: SessionError.zeroKey) { try ma.connect(to: .zero) }
        for m in [ma, mb, mc] { await m.close() }
        #expect(throws: SessionError.closed) { try ma.connect(to: b.publicKey) }
    }

    /// A peer that restarts (a new manager with the same key, as after kill -9) comes back with
    /// new credentials: the other side closes its agent, opens a new one and reconnects.
    @Test func aRestartedPeerIsReconnected() async throws {
        let ice = FakeICE()
        let (a, b) = (PrivateKey.generate(), PrivateKey.generate())
        let ma = SessionManager(backend: InProcessBackend(), privateKey: a, ice: ice)
        var mb = SessionManager(backend: InProcessBackend(), privateKey: b, ice: ice)
        try await ma.start()
        try await mb.start()
        let ea = Recorder(ma.events)
        try ma.connect(to: b.publicKey)
        try mb.connect(to: a.publicKey)
        #expect(await eventually { ea.reached(.completed) })
        await mb.close()
        mb = SessionManager(backend: InProcessBackend(), privateKey: b, ice: ice)
        try await mb.start()
        let eb = Recorder(mb.events)
        try mb.connect(to: a.publicKey)
        #expect(await eventually { eb.reached(.completed) && ea.states.filter { $0 == .completed }.count == 2 },
                "a: \(ea.states) b: \(eb.states)")
        #expect(ma.status()[0].generation == 2 && ma.status()[0].counters.restarts == 1)
        #expect(ea.states.contains(.closed))
        #expect(ma.send([9], to: b.publicKey))
        #expect(await eventually { eb.data == [[9]] })
        await ma.close()
        await mb.close()
    }

    /// A lost path (the agent reports FAILED after READY) goes Disconnected → Closed → Idle and
    /// both sides connect again with new agents.
    @Test func aLostPathStartsOverOnBothSides() async throws {
        let (ice, _, _, ma, mb, ea, eb) = try await Self.connectedPair()
        #expect(await eventually { ea.reached(.completed) && eb.reached(.completed) })
        ice.cutAll()
        #expect(await eventually {
            ea.states.filter { $0 == .completed }.count == 2 && eb.states.filter { $0 == .completed }.count == 2
        }, "a: \(ea.states) b: \(eb.states)")
        let pa = ea.states.split(separator: .completed)[1]
        #expect(Array(pa.prefix(3)) == [.disconnected, .closed, .idle])
        await ma.close()
        await mb.close()
    }
}

// MARK: - Support

/// Polls until `condition` holds (at most 20 s: the whole suite runs in parallel on 2 cores).
func eventually(_ condition: () -> Bool) async -> Bool {
    for _ in 0..<2000 {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return condition()
}

/// Collects a manager's events.
final class Recorder: Sendable {
    private let box = Mutex<(states: [SessionState], data: [[UInt8]])>(([], []))
    init(_ events: AsyncStream<SessionEvent>) {
        Task { [weak self] in
            for await e in events {
                switch e {
                case .state(_, let c): self?.box.withLock { $0.states.append(c.to) }
                case .data(_, let d): self?.box.withLock { $0.data.append(d) }
                default: break
                }
            }
        }
    }
    var states: [SessionState] { box.withLock { $0.states } }
    var data: [[UInt8]] { box.withLock { $0.data } }
    func reached(_ s: SessionState) -> Bool { states.contains(s) }
}

/// Scripted agents: an agent connects once it holds the remote credentials of a live agent
/// that holds its own, and one remote candidate of that agent. Data goes to that agent.
final class FakeICE: ICEAgentFactory, Sendable {
    private let agents = Mutex<[FakeAgent]>([])
    private let ports = Atomic<Int>(40_000)

    var open: Int { agents.withLock { $0.count } }

    func makeAgent(controlling: Bool, credentials: ICECredentials,
                   events: @escaping @Sendable (ICEAgentEvent) -> Void) throws -> any ICEAgent {
        let port = ports.add(1, ordering: .relaxed).newValue
        let a = FakeAgent(factory: self, credentials: credentials, port: port, events: events)
        agents.withLock { $0.append(a) }
        return a
    }

    func remove(_ a: FakeAgent) { agents.withLock { $0.removeAll { $0 === a } } }

    func peer(of a: FakeAgent) -> FakeAgent? {
        agents.withLock { list in list.first { $0 !== a && $0.credentials == a.remote && $0.remote == a.credentials } }
    }

    /// Every connected agent reports FAILED (consent lost).
    func cutAll() { for a in agents.withLock({ $0 }) { a.fail() } }

    /// Re-checks every agent (a peer's state may have changed).
    func poke() { for a in agents.withLock({ $0 }) { a.check() } }
}

final class FakeAgent: ICEAgent, Sendable {
    let credentials: ICECredentials
    private let factory: FakeICE
    private let port: Int
    private let events: @Sendable (ICEAgentEvent) -> Void
    private let state = Mutex<(remote: ICECredentials?, candidates: [ICECandidate], ready: Bool, closed: Bool)>((nil, [], false, false))

    init(factory: FakeICE, credentials: ICECredentials, port: Int, events: @escaping @Sendable (ICEAgentEvent) -> Void) {
        self.factory = factory
        self.credentials = credentials
        self.port = port
        self.events = events
    }

    var remote: ICECredentials? { state.withLock { $0.remote } }
    var local: ICECandidate { ICECandidate(kind: .host, foundation: "1", priority: 100, address: "10.9.0.1", port: port) }

    func setRemoteCredentials(_ c: ICECredentials) {
        state.withLock { $0.remote = c }
        factory.poke()
    }
    func startGathering() {
        events(.state(.gathering))
        events(.localCandidate(local))
        events(.gatheringDone)
    }
    func addRemoteCandidate(_ c: ICECandidate) {
        state.withLock { $0.candidates.append(c) }
        factory.poke()
    }
    func send(_ d: [UInt8]) -> Bool {
        guard state.withLock({ $0.ready && !$0.closed }), let p = factory.peer(of: self) else { return false }
        p.events(.data(d))
        return true
    }
    func close() {
        let first = state.withLock { s -> Bool in
            defer { s.closed = true }
            return !s.closed
        }
        guard first else { return }
        factory.remove(self)
        events(.closed)
    }

    func check() {
        guard let p = factory.peer(of: self) else { return }
        let go = state.withLock { s -> Bool in
            guard !s.ready, !s.closed, s.candidates.contains(where: { $0.port == p.port }) else { return false }
            s.ready = true
            return true
        }
        guard go else { return }
        events(.state(.connecting))
        events(.selectedPair(local: local, remote: p.local))
        events(.state(.connected))
        events(.state(.ready))
    }

    func fail() {
        let was = state.withLock { s -> Bool in
            defer { s.ready = false }
            return s.ready && !s.closed
        }
        if was { events(.state(.failed)) }
    }
}
