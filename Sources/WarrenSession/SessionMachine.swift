import WarrenCore

/// The session with one remote peer, as a sans-I/O state machine (docs/SESSION.md).
///
/// It owns no agent, socket, clock or global randomness: the driver (`SessionManager`, or a
/// test) passes every input with `now` (nanoseconds on a monotonic clock) and a random
/// generator, and performs the actions it appends. Agents are named by a generation number;
/// events of an agent that is no longer current are ignored, so a late event from a closed
/// agent can never disturb its successor.
public struct SessionMachine: Sendable {
    /// What happens to a session.
    public enum Input: Sendable, Equatable {
        /// Start (or re-open) the session: Unknown → Idle.
        case start
        /// A `credentials` message from the peer.
        case remoteCredentials(SignalingCredentials)
        /// A `candidate` message from the peer.
        case remoteCandidate(SignalingCandidate)
        /// An event of agent `generation`.
        case agent(generation: UInt64, ICEAgentEvent)
        /// Agent `generation` could not be created (`reason` says why).
        case agentUnavailable(generation: UInt64, reason: String)
        /// The deadline of the last `.scheduleTimer` passed.
        case timer
        /// Close the session for good (until the next `.start`).
        case close
    }

    /// What the driver must do.
    public enum Action: Sendable, Equatable {
        /// Publish this message to the peer.
        case send(SignalingMessage)
        /// Create agent `generation` with this role and these local credentials.
        case createAgent(generation: UInt64, controlling: Bool, credentials: ICECredentials)
        /// Close agent `generation` (asynchronously; its later events are ignored).
        case closeAgent(generation: UInt64)
        case setRemoteCredentials(generation: UInt64, ICECredentials)
        case addRemoteCandidate(generation: UInt64, ICECandidate)
        /// Start gathering local candidates (at once after `createAgent`, so that STUN and TURN
        /// run while the credentials travel).
        case startGathering(generation: UInt64)
        /// Call `handle(.timer)` at this time (replaces any earlier deadline); nil cancels it.
        case scheduleTimer(at: UInt64?)
        /// The session changed state.
        case report(StateChange)
        /// The selected pair changed while connected (no state change).
        case selectedPair(local: ICECandidate, remote: ICECandidate)
        /// A datagram arrived on the connection.
        case received([UInt8])
        /// Something from the peer was refused or dropped; the session goes on.
        case problem(String)
    }

    /// One state change.
    public struct StateChange: Sendable, Equatable {
        public var from: SessionState
        public var to: SessionState
        /// The agent it concerns (0 when none exists).
        public var generation: UInt64
        /// The selected pair, once one exists.
        public var local: ICECandidate?
        public var remote: ICECandidate?
        /// Nanoseconds since the current attempt's agent was created.
        public var elapsed: UInt64
        /// Why, for Failed, Disconnected and Closed.
        public var reason: String?
    }

    /// Counts kept per session (summed by the manager for metrics and status).
    public struct Counters: Sendable, Equatable {
        public var credentialsSent = 0
        public var credentialsReceived = 0
        public var credentialsRefused = 0
        public var candidatesSent = 0
        public var candidatesReceived = 0
        public var candidatesRefused = 0
        /// Remote candidates dropped because a bound was reached.
        public var candidatesDropped = 0
        /// New agents after the first.
        public var restarts = 0
        public init() {}
    }

    public let local: Key
    public let remote: Key
    public let config: SessionConfig
    /// The smaller public key (32 bytes as a big-endian integer) controls.
    public var controlling: Bool { Key.isBigEndianLess(local, remote) }

    public private(set) var state: SessionState = .unknown
    public private(set) var counters = Counters()
    /// The current agent (0: none).
    public private(set) var generation: UInt64 = 0
    public private(set) var localCredentials: ICECredentials?
    public private(set) var remoteCredentials: ICECredentials?
    public private(set) var selected: (local: ICECandidate, remote: ICECandidate)?
    /// Remote candidates waiting for an agent that can take them.
    public private(set) var held: [ICECandidate] = []
    /// When the driver must call `.timer` next.
    public private(set) var deadline: UInt64?

    private var superseded: [ICECredentials] = []
    private var added: Set<ICECandidate> = []
    private var pendingLocal: [ICECandidate] = []
    private var agentChecking = false
    private var attemptStart: UInt64 = 0
    private var resendCount = 0
    private var resendAt: UInt64?
    private var connectBy: UInt64?
    private var retryAt: UInt64?
    private var retryDelay: UInt64 = 0
    private var closedForGood = false

    public init(local: Key, remote: Key, config: SessionConfig = SessionConfig()) {
        precondition(local != remote, "a session needs two different keys")
        self.local = local
        self.remote = remote
        self.config = config
    }

    /// Handles one input at `now`, appending what must be done to `actions`.
    public mutating func handle<G: RandomNumberGenerator>(_ input: Input, now: UInt64, rng: inout G,
                                                          actions: inout [Action]) {
        var run = Run(now: now, actions: actions)
        switch input {
        case .start:
            closedForGood = false
            if state == .unknown || state == .closed { newAgent(&run, rng: &rng, freshCredentials: true) }
        case .close:
            guard !closedForGood else { break }
            closedForGood = true
            closeAgent(&run, reason: "closed locally")
            held.removeAll()
        case .remoteCredentials(let c):
            onCredentials(c, &run, rng: &rng)
        case .remoteCandidate(let c):
            onCandidate(c, &run)
        case .agent(let g, let event):
            guard g == generation, g != 0, !closedForGood else { break }
            onAgent(event, &run, rng: &rng)
        case .agentUnavailable(let g, let reason):
            guard g == generation, g != 0, !closedForGood else { break }
            closeAgent(&run, reason: "agent unavailable: \(reason)")
            retryDelay = retryDelay == 0 ? config.retryInitial : min(config.retryMax, retryDelay * 2)
            retryAt = now + retryDelay
        case .timer:
            onTimer(&run, rng: &rng)
        }
        reschedule(&run)
        actions = run.actions
    }

    // MARK: - Inputs

    private mutating func onCredentials<G: RandomNumberGenerator>(_ m: SignalingCredentials, _ run: inout Run,
                                                                  rng: inout G) {
        guard !closedForGood else { return }
        counters.credentialsReceived += 1
        let c = ICECredentials(ufrag: m.ufrag, pwd: m.pwd)
        if let why = c.problem {
            counters.credentialsRefused += 1
            run.actions.append(.problem("credentials refused: \(why)"))
            return
        }
        if superseded.contains(c) { return }  // a late copy of the peer's previous agent
        if state == .unknown || retryAt != nil { newAgent(&run, rng: &rng, freshCredentials: true) }
        if let old = remoteCredentials {
            if old == c {
                if m.needCreds { sendCredentials(&run, needCreds: false) }
                return
            }
            // The peer has a new agent: ours must follow. It keeps our credentials, so that
            // the peer (whose new agent knows none of ours yet) does not see a change of its
            // own and restart in turn.
            superseded.append(old)
            if superseded.count > config.supersededLimit { superseded.removeFirst() }
            closeAgent(&run, reason: "the peer restarted (new credentials)")
            newAgent(&run, rng: &rng, freshCredentials: false)
        }
        remoteCredentials = c
        run.actions.append(.setRemoteCredentials(generation: generation, c))
        resendAt = nil
        connectBy = run.now + config.connectTimeout
        move(to: .new, &run)
        if m.needCreds { sendCredentials(&run, needCreds: false) }
        let gathered = pendingLocal
        pendingLocal.removeAll()
        for l in gathered { sendCandidate(l, &run) }
        let waiting = held
        held.removeAll()
        for h in waiting { add(h, &run) }
    }

    private mutating func onCandidate(_ m: SignalingCandidate, _ run: inout Run) {
        guard !closedForGood else { return }
        counters.candidatesReceived += 1
        let c: ICECandidate
        do { c = try ICECandidate(message: m) } catch {
            counters.candidatesRefused += 1
            run.actions.append(.problem("candidate refused: \(error)"))
            return
        }
        if remoteCredentials == nil {
            if held.contains(c) { return }
            if held.count >= config.heldCandidateLimit {
                held.removeFirst()
                counters.candidatesDropped += 1
                run.actions.append(.problem("candidate dropped: \(config.heldCandidateLimit) are already waiting for the peer's credentials"))
            }
            held.append(c)
            return
        }
        add(c, &run)
    }

    private mutating func onAgent<G: RandomNumberGenerator>(_ e: ICEAgentEvent, _ run: inout Run, rng: inout G) {
        switch e {
        case .localCandidate(let c):
            // Peer-reflexive candidates are learned by checks; they are never signalled. Nor are
            // IPv6 link-local ones: without their interface's scope they mean nothing to the peer.
            guard c.kind != .prflx, !c.isLinkLocal else { return }
            if remoteCredentials == nil {
                // Gathered early (the agent gathers from its creation, so STUN and TURN run while
                // the peer's credentials travel); sent once the peer has an agent to take them.
                if pendingLocal.count < config.pendingLocalLimit { pendingLocal.append(c) }
                return
            }
            sendCandidate(c, &run)
        case .gatheringDone, .closed:
            break
        case .state(let s):
            switch s {
            case .gathering:
                break
            case .connecting:
                agentChecking = true
                if state == .connecting { move(to: .checking, &run) }
            case .connected:
                advance(to: .connected, &run)
            case .ready:
                advance(to: .completed, &run)
            case .failed:
                fail(state.isConnected ? .disconnected : .failed,
                     reason: state.isConnected ? "the path was lost (consent expired)" : "connectivity checks failed",
                     &run, rng: &rng)
            }
        case .selectedPair(let l, let r):
            let changed = selected.map { $0.local != l || $0.remote != r } ?? true
            selected = (l, r)
            if changed && state.isConnected { run.actions.append(.selectedPair(local: l, remote: r)) }
        case .data(let d):
            run.actions.append(.received(d))
        }
    }

    private mutating func onTimer<G: RandomNumberGenerator>(_ run: inout Run, rng: inout G) {
        guard !closedForGood else { return }
        let now = run.now
        if let at = retryAt, at <= now {
            retryAt = nil
            newAgent(&run, rng: &rng, freshCredentials: true)
            return
        }
        if let at = connectBy, at <= now, [.new, .connecting, .checking].contains(state) {
            fail(.failed, reason: "not connected within \(config.connectTimeout / 1_000_000_000) s", &run, rng: &rng)
            return
        }
        if let at = resendAt, at <= now, state == .idle {
            sendCredentials(&run, needCreds: true)
            move(to: .idle, &run)
            resendCount += 1
            resendAt = now + jittered(config.resendBase(resendCount), rng: &rng)
        }
    }

    // MARK: - Steps

    /// A new agent, Idle, our credentials sent at once with `need_creds` (Unknown/Closed → Idle).
    private mutating func newAgent<G: RandomNumberGenerator>(_ run: inout Run, rng: inout G, freshCredentials: Bool) {
        if generation != 0 { counters.restarts += 1 }
        generation += 1
        if freshCredentials || localCredentials == nil { localCredentials = .random(using: &rng) }
        remoteCredentials = nil
        added.removeAll()
        agentChecking = false
        selected = nil
        connectBy = nil
        retryAt = nil
        attemptStart = run.now
        pendingLocal.removeAll()
        run.actions.append(.createAgent(generation: generation, controlling: controlling, credentials: localCredentials!))
        run.actions.append(.startGathering(generation: generation))
        move(to: .idle, &run)
        sendCredentials(&run, needCreds: true)
        resendCount = 1
        resendAt = run.now + jittered(config.resendBase(1), rng: &rng)
    }

    private mutating func closeAgent(_ run: inout Run, reason: String) {
        if generation != 0 && state != .closed && state != .unknown {
            run.actions.append(.closeAgent(generation: generation))
        }
        resendAt = nil
        connectBy = nil
        if state != .closed && generation != 0 { move(to: .closed, &run, reason: reason) }
    }

    /// Failed or Disconnected → Closed → Idle with a new agent and new credentials.
    private mutating func fail<G: RandomNumberGenerator>(_ to: SessionState, reason: String, _ run: inout Run,
                                                         rng: inout G) {
        move(to: to, &run, reason: reason)
        closeAgent(&run, reason: reason)
        newAgent(&run, rng: &rng, freshCredentials: true)
    }

    private mutating func add(_ c: ICECandidate, _ run: inout Run) {
        if added.contains(c) { return }
        guard added.count < config.remoteCandidateLimit else {
            counters.candidatesDropped += 1
            run.actions.append(.problem("candidate dropped: this agent already has \(config.remoteCandidateLimit)"))
            return
        }
        added.insert(c)
        run.actions.append(.addRemoteCandidate(generation: generation, c))
        if state == .new {
            move(to: .connecting, &run)
            if agentChecking { move(to: .checking, &run) }
        }
    }

    /// Moves forward along New → Connecting → Checking → Connected → Completed, reporting each
    /// step (an agent may report a later state before an earlier one is visible here).
    private mutating func advance(to target: SessionState, _ run: inout Run) {
        let order: [SessionState] = [.new, .connecting, .checking, .connected, .completed]
        guard let from = order.firstIndex(of: state), let to = order.firstIndex(of: target), from < to else { return }
        for s in order[(from + 1)...to] { move(to: s, &run) }
        if state.isConnected {
            connectBy = nil
            retryDelay = 0
        }
    }

    private mutating func move(to s: SessionState, _ run: inout Run, reason: String? = nil) {
        let change = StateChange(from: state, to: s, generation: generation,
                                 local: s.isConnected ? selected?.local : nil,
                                 remote: s.isConnected ? selected?.remote : nil,
                                 elapsed: run.now >= attemptStart ? run.now - attemptStart : 0, reason: reason)
        state = s
        run.actions.append(.report(change))
    }

    private mutating func sendCandidate(_ c: ICECandidate, _ run: inout Run) {
        var m = SignalingMessage()
        m.candidate = c.message
        counters.candidatesSent += 1
        run.actions.append(.send(m))
    }

    private mutating func sendCredentials(_ run: inout Run, needCreds: Bool) {
        guard let l = localCredentials else { return }
        var m = SignalingMessage()
        m.credentials.ufrag = l.ufrag
        m.credentials.pwd = l.pwd
        m.credentials.needCreds = needCreds
        counters.credentialsSent += 1
        run.actions.append(.send(m))
    }

    private func jittered<G: RandomNumberGenerator>(_ base: UInt64, rng: inout G) -> UInt64 {
        let u = Double(rng.next() >> 11) / Double(1 << 53)  // [0, 1)
        let v = Double(base) * (1 + config.resendJitter * (2 * u - 1))
        return min(config.resendMax, UInt64(max(1, v)))
    }

    private mutating func reschedule(_ run: inout Run) {
        let next = [resendAt, connectBy, retryAt].compactMap { $0 }.min()
        let wanted = closedForGood ? nil : next
        if wanted != deadline {
            deadline = wanted
            run.actions.append(.scheduleTimer(at: wanted))
        }
    }

    private struct Run {
        let now: UInt64
        var actions: [Action]
    }
}
