import Foundation
import Synchronization
import Logging
import Metrics
import WarrenCore

/// What a `SessionManager` reports.
public enum SessionEvent: Sendable {
    /// A session changed state.
    case state(peer: Key, SessionMachine.StateChange)
    /// The selected pair of a connected session changed.
    case selectedPair(peer: Key, local: ICECandidate, remote: ICECandidate)
    /// A datagram arrived from the peer.
    case data(peer: Key, [UInt8])
    /// Something from the peer was refused; the session goes on.
    case problem(peer: Key, String)
}

/// A snapshot of one session (for status and metrics).
public struct SessionStatus: Sendable {
    public var peer: Key
    public var state: SessionState
    public var controlling: Bool
    public var generation: UInt64
    public var local: ICECandidate?
    public var remote: ICECandidate?
    public var counters: SessionMachine.Counters
}

public enum SessionError: Error, Equatable, Sendable, CustomStringConvertible {
    case ownKey
    case zeroKey
    case closed
    case notStarted

    public var description: String {
        switch self {
        case .ownKey: return "cannot open a session to our own public key"
        case .zeroKey: return "cannot open a session to the all-zero key (it means \"any peer\")"
        case .closed: return "the session manager is closed"
        case .notStarted: return "the session manager is not started (call start() first)"
        }
    }
}

/// Drives one `SessionMachine` per remote peer over any `Backend`, with real agents from an
/// `ICEAgentFactory` (docs/SESSION.md).
///
/// Everything that touches the machines runs on one serial queue: backend deliveries, agent
/// events and timers are hopped onto it, so the machines see one input at a time in order.
/// Outgoing signaling goes through one task, so a peer receives our messages in the order
/// the machine sent them.
// @unchecked: mutable state is touched on `queue` only (above); `connected` is a Mutex.
public final class SessionManager: @unchecked Sendable {
    public let backend: any Backend
    public let privateKey: PrivateKey
    public let config: SessionConfig
    /// Sessions that a peer starts (its credentials arrive first) are accepted from anyone.
    public let acceptsAny: Bool
    /// Everything the sessions report, in order per peer.
    public let events: AsyncStream<SessionEvent>

    private let ice: any ICEAgentFactory
    private let logger: Logger
    private let queue = DispatchQueue(label: "warren.session")
    private let eventSink: AsyncStream<SessionEvent>.Continuation
    private let outbox: AsyncStream<(Key, SignalingMessage)>.Continuation
    private let outboxStream: AsyncStream<(Key, SignalingMessage)>

    // Queue-confined state.
    private var sessions: [Key: Entry] = [:]
    private var rng = SystemRandomNumberGenerator()
    private var handler: ClosureMessageHandler?
    private var sender: Task<Void, Never>?
    private var isClosed = false
    private var ignored = 0

    /// Agents whose session is connected, for `send` without a queue hop.
    private let connected = Mutex<[Key: any ICEAgent]>([:])

    private let sessionsGauge: [SessionState: Gauge]
    private let restartsCounter = Counter(label: "warren_session_restarts_total")
    private let refusedCounter = Counter(label: "warren_session_refused_total")
    private let connectTimer = Metrics.Timer(label: "warren_session_time_to_connected_seconds")

    private final class Entry {
        var machine: SessionMachine
        /// Agents by generation: the current one and those still closing.
        var agents: [UInt64: any ICEAgent] = [:]
        var timer: DispatchSourceTimer?
        var countedRestarts = 0
        init(_ machine: SessionMachine) { self.machine = machine }
    }

    public init(backend: any Backend, privateKey: PrivateKey, ice: any ICEAgentFactory,
                config: SessionConfig = SessionConfig(), acceptsAny: Bool = false,
                logger: Logger = Logger(label: "warren.session")) {
        self.backend = backend
        self.privateKey = privateKey
        self.ice = ice
        self.config = config
        self.acceptsAny = acceptsAny
        self.logger = logger
        (events, eventSink) = AsyncStream.makeStream(of: SessionEvent.self)
        (outboxStream, outbox) = AsyncStream.makeStream(of: (Key, SignalingMessage).self)
        var g: [SessionState: Gauge] = [:]
        for s in SessionState.allCases {
            g[s] = Gauge(label: "warren_sessions", dimensions: [("state", s.rawValue)])
        }
        sessionsGauge = g
    }

    /// Subscribes to messages for our key and starts sending. Call once, before `connect`.
    public func start() async throws {
        let h = ClosureMessageHandler { [weak self] pair, message in
            guard let self else { return }
            self.queue.async { self.received(from: pair.theirs, message) }
        }
        try await backend.subscribe(KeyPair(ours: privateKey, theirs: .zero), h)
        let stream = outboxStream
        let backend = self.backend
        let ours = privateKey
        let logger = self.logger
        let task = Task {
            for await (peer, message) in stream {
                do { try await backend.publish(KeyPair(ours: ours, theirs: peer), message) } catch {
                    logger.warning("signaling message to \(peer.base64): \(error)")
                }
            }
        }
        queue.sync {
            handler = h
            sender = task
        }
    }

    /// Opens a session to `peer` (or re-opens a closed one). Either side may start, or both.
    public func connect(to peer: Key) throws {
        guard peer != privateKey.publicKey else { throw SessionError.ownKey }
        guard !peer.isZero else { throw SessionError.zeroKey }
        try queue.sync {
            guard !isClosed else { throw SessionError.closed }
            guard handler != nil else { throw SessionError.notStarted }
            input(peer, .start, create: true)
        }
    }

    /// Sends one datagram to a connected peer; false when no path to it is up.
    @discardableResult
    public func send(_ datagram: [UInt8], to peer: Key) -> Bool {
        let agent = connected.withLock { $0[peer] }
        return agent?.send(datagram) ?? false
    }

    /// Closes the session to `peer` (its agent is closed; the peer's messages are ignored
    /// until `connect(to:)` again).
    public func close(_ peer: Key) {
        queue.async { self.input(peer, .close, create: false) }
    }

    /// Closes every session, waits (at most `timeout`) until the agents are released (TURN
    /// allocations included), unsubscribes and ends `events`.
    public func close(timeout: Duration = .seconds(3)) async {
        let h: ClosureMessageHandler? = queue.sync {
            guard !isClosed else { return nil }
            isClosed = true
            for peer in Array(sessions.keys) { input(peer, .close, create: false) }
            return handler
        }
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            let open = queue.sync { sessions.values.reduce(0) { $0 + $1.agents.count } }
            if open == 0 { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        if let h { _ = try? await backend.unsubscribe(KeyPair(ours: privateKey, theirs: .zero), h) }
        outbox.finish()
        await sender?.value
        queue.sync {
            for e in sessions.values { e.timer?.cancel() }
        }
        eventSink.finish()
    }

    /// Every session, by peer.
    public func status() -> [SessionStatus] {
        queue.sync {
            sessions.values.map { e in
                SessionStatus(peer: e.machine.remote, state: e.machine.state, controlling: e.machine.controlling,
                              generation: e.machine.generation, local: e.machine.selected?.local,
                              remote: e.machine.selected?.remote, counters: e.machine.counters)
            }.sorted { $0.peer.base64 < $1.peer.base64 }
        }
    }

    /// Messages from peers without a session that were not accepted (`acceptsAny` off).
    public var ignoredMessages: Int { queue.sync { ignored } }

    // MARK: - Queue

    private func received(from peer: Key, _ message: SignalingMessage) {
        guard !isClosed, peer != privateKey.publicKey, !peer.isZero else { return }
        // A message may carry both (credentials first: they decide where a candidate goes).
        var inputs: [SessionMachine.Input] = []
        if message.hasCredentials { inputs.append(.remoteCredentials(message.credentials)) }
        if message.hasCandidate { inputs.append(.remoteCandidate(message.candidate)) }
        guard !inputs.isEmpty else { return }  // peer descriptions and PSK exchange are not ours
        if sessions[peer] == nil && !acceptsAny {
            ignored += 1
            logger.debug("message from \(peer.base64) ignored: no session to it (accept any peer to take it)")
            return
        }
        for i in inputs { input(peer, i, create: true) }
    }

    private func input(_ peer: Key, _ input: SessionMachine.Input, create: Bool) {
        let entry: Entry
        if let e = sessions[peer] {
            entry = e
        } else {
            guard create else { return }
            entry = Entry(SessionMachine(local: privateKey.publicKey, remote: peer, config: config))
            sessions[peer] = entry
        }
        if case .agent(let g, .closed) = input { entry.agents[g] = nil }
        var actions: [SessionMachine.Action] = []
        let before = entry.machine.state
        entry.machine.handle(input, now: Self.now(), rng: &rng, actions: &actions)
        for a in actions { perform(a, peer: peer, entry: entry) }
        if entry.machine.counters.restarts != entry.countedRestarts {
            restartsCounter.increment(by: Int64(entry.machine.counters.restarts - entry.countedRestarts))
            entry.countedRestarts = entry.machine.counters.restarts
        }
        if before != entry.machine.state { updateGauges() }
    }

    private func perform(_ action: SessionMachine.Action, peer: Key, entry: Entry) {
        switch action {
        case .send(let m):
            outbox.yield((peer, m))
        case .createAgent(let g, let controlling, let credentials):
            let sink = eventSink
            do {
                let agent = try ice.makeAgent(controlling: controlling, credentials: credentials) { [weak self] e in
                    if case .data(let d) = e {
                        sink.yield(.data(peer: peer, d))  // the data path skips the queue
                        return
                    }
                    guard let self else { return }
                    self.queue.async { self.input(peer, .agent(generation: g, e), create: false) }
                }
                entry.agents[g] = agent
            } catch {
                logger.warning("ICE agent for \(peer.base64) not created: \(error)")
                queue.async { self.input(peer, .agentUnavailable(generation: g, reason: "\(error)"), create: false) }
            }
        case .closeAgent(let g):
            setPath(peer, nil)
            entry.agents[g]?.close()
        case .setRemoteCredentials(let g, let c):
            entry.agents[g]?.setRemoteCredentials(c)
        case .addRemoteCandidate(let g, let c):
            entry.agents[g]?.addRemoteCandidate(c)
        case .startGathering(let g):
            entry.agents[g]?.startGathering()
        case .scheduleTimer(let at):
            entry.timer?.cancel()
            entry.timer = nil
            guard let at else { return }
            let t = DispatchSource.makeTimerSource(queue: queue)
            let now = Self.now()
            t.schedule(deadline: .now() + .nanoseconds(Int(min(at > now ? at - now : 0, UInt64(Int.max)))))
            t.setEventHandler { [weak self] in self?.input(peer, .timer, create: false) }
            t.resume()
            entry.timer = t
        case .report(let change):
            if change.to.isConnected {
                setPath(peer, entry.agents[change.generation])
            } else if change.from.isConnected {
                setPath(peer, nil)
            }
            if change.to == .connected {
                connectTimer.recordNanoseconds(Int64(change.elapsed))
            }
            if change.to == .completed, let l = change.local, let r = change.remote {
                Counter(label: "warren_session_selected_total",
                        dimensions: [("local", l.kind.rawValue), ("remote", r.kind.rawValue)]).increment()
            }
            logger.info("session \(peer.base64): \(change.from) → \(change.to)\(change.reason.map { " (\($0))" } ?? "")")
            eventSink.yield(.state(peer: peer, change))
        case .selectedPair(let l, let r):
            eventSink.yield(.selectedPair(peer: peer, local: l, remote: r))
        case .received(let d):
            eventSink.yield(.data(peer: peer, d))
        case .problem(let why):
            refusedCounter.increment()
            logger.warning("session \(peer.base64): \(why)")
            eventSink.yield(.problem(peer: peer, why))
        }
    }

    private func setPath(_ peer: Key, _ agent: (any ICEAgent)?) {
        connected.withLock { $0[peer] = agent }
    }

    private func updateGauges() {
        var counts: [SessionState: Int] = [:]
        for e in sessions.values { counts[e.machine.state, default: 0] += 1 }
        for (s, g) in sessionsGauge { g.record(counts[s] ?? 0) }
    }

    static func now() -> UInt64 { DispatchTime.now().uptimeNanoseconds }
}
