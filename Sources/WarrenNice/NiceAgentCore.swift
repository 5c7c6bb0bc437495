import CNiceShim
import Logging
import Synchronization
import WarrenSession

/// The state of one libnice agent. Everything except `outbox` is confined to the factory's GLib
/// thread: the public `NiceAgent` methods only post closures there, and libnice calls back there.
// @unchecked: confined to the GLib thread (above); `outbox` is a Mutex.
final class NiceAgentCore: @unchecked Sendable {
    struct Settings: Sendable {
        var controlling = false
        var stunInitialTimeoutMs: UInt32
        var stunMaxRetransmissions: UInt32
        var consentFreshness: Bool
        var keepaliveConncheck: Bool
        var iceTCP: Bool
        var servers: NiceServers
        var localAddresses: [String]
        var gatherAttempts: Int
        var gatherRetryIntervalMs: UInt32
    }

    /// What other threads share with the GLib thread: datagrams waiting to be sent.
    private struct Outbox {
        var datagrams: [[UInt8]] = []
        var flushPosted = false
        /// A pair is selected and the component has not failed.
        var usable = false
        var closeRequested = false
    }

    /// libnice keeps at most this many remote candidates per component.
    static let maxRemoteCandidates = 25
    /// Datagrams queued for the GLib thread before `send` refuses more.
    static let maxQueuedDatagrams = 4096

    private let thread: NiceThread
    private let settings: Settings
    private let credentials: ICECredentials
    private var logger: Logger
    private let outbox = Mutex(Outbox())

    // GLib thread only.
    private enum Phase { case new, open, closing, closed }
    private var phase = Phase.new
    private var agent: OpaquePointer?
    /// This object, retained while libnice holds a pointer to it (open to closed).
    private var retainedSelf: Unmanaged<NiceAgentCore>?
    private var events: (@Sendable (ICEAgentEvent) -> Void)?
    private var gathering = false
    private var gatherAttempts = 0
    private var gatherTimer: UInt32?
    private var pendingRemote: [ICECandidate] = []
    private var remoteCount = 0

    init(thread: NiceThread, settings: Settings, credentials: ICECredentials, logger: Logger,
         events: @escaping @Sendable (ICEAgentEvent) -> Void) {
        self.thread = thread
        self.settings = settings
        self.credentials = credentials
        self.logger = logger
        self.events = events
        thread.post { [self] in open() }
    }

    // MARK: Calls from any thread

    func setRemoteCredentials(_ remote: ICECredentials) {
        thread.post { [self] in applyRemoteCredentials(remote) }
    }

    func startGathering() {
        thread.post { [self] in gather() }
    }

    func addRemoteCandidate(_ candidate: ICECandidate) {
        thread.post { [self] in addRemote(candidate) }
    }

    /// Datagrams go through the GLib thread like every other call: `nice_agent_send` itself is
    /// thread-safe, but it emits the signals queued while it held the agent lock on the calling
    /// thread, and the agent must only ever signal on its own thread. Datagrams queue in `outbox`
    /// and one posted flush sends every datagram queued until then, so a burst costs one wake-up.
    /// On the GLib thread itself (inside an event) with nothing queued, the datagram goes out at once.
    func send(_ datagram: [UInt8]) -> Bool {
        if thread.isCurrent {
            let direct = outbox.withLock { $0.usable && !$0.closeRequested && $0.datagrams.isEmpty }
            if direct, let agent {
                return datagram.withUnsafeBufferPointer { cns_agent_send(agent, $0.baseAddress, $0.count) } >= 0
            }
        }
        let post: Bool? = outbox.withLock { box in
            guard box.usable, !box.closeRequested, box.datagrams.count < Self.maxQueuedDatagrams else { return nil }
            box.datagrams.append(datagram)
            if box.flushPosted { return false }
            box.flushPosted = true
            return true
        }
        guard let post else { return false }
        if post { thread.post { [self] in flush() } }
        return true
    }

    func close() {
        let first = outbox.withLock { box in
            defer { box.closeRequested = true }
            box.datagrams.removeAll()
            return !box.closeRequested
        }
        if first { thread.post { [self] in shutDown() } }
    }

    // MARK: GLib thread

    private func emit(_ event: ICEAgentEvent) {
        if case .closed = event {} else if outbox.withLock({ $0.closeRequested }) { return }
        events?(event)
    }

    private func open() {
        guard phase == .new, !outbox.withLock({ $0.closeRequested }) else { return }
        let context = Unmanaged.passRetained(self)
        var config = cns_agent_config()
        config.controlling = settings.controlling ? 1 : 0
        config.stun_server_port = UInt32(settings.servers.stun?.port ?? 0)
        config.stun_initial_timeout_ms = settings.stunInitialTimeoutMs
        config.stun_max_retransmissions = settings.stunMaxRetransmissions
        config.consent_freshness = settings.consentFreshness ? 1 : 0
        config.keepalive_conncheck = settings.keepaliveConncheck ? 1 : 0
        config.ice_tcp = settings.iceTCP ? 1 : 0
        let stun = settings.servers.stun?.address
        let handle: OpaquePointer? = withOptionalCString(stun) { stunPointer in
            config.stun_server = stunPointer
            return cns_agent_new(thread.rawLoop, &config, credentials.ufrag, credentials.pwd,
                                 { context, kind, state, local, remote in
                                     guard let context else { return }
                                     Unmanaged<NiceAgentCore>.fromOpaque(context).takeUnretainedValue()
                                         .signal(kind: kind, state: state, local: local, remote: remote)
                                 },
                                 { context, bytes, length in
                                     guard let context else { return }
                                     let data = bytes.map { Array(UnsafeBufferPointer(start: $0, count: length)) } ?? []
                                     Unmanaged<NiceAgentCore>.fromOpaque(context).takeUnretainedValue().emit(.data(data))
                                 },
                                 context.toOpaque())
        }
        guard let handle else {
            context.release()
            // The phase stays `.new`: every later call is ignored and `close()` reports `.closed`.
            logger.error("libnice refused to create an agent")
            emit(.state(.failed))
            return
        }
        agent = handle
        retainedSelf = context
        phase = .open
        for address in settings.localAddresses where cns_agent_add_local_address(handle, address) == 0 {
            logger.warning("libnice refused local address \(address)")
        }
        for relay in settings.servers.relays
        where cns_agent_add_relay(handle, relay.address, UInt32(relay.port), relay.username, relay.password,
                                  relay.relayType) == 0 {
            logger.warning("libnice refused TURN server \(relay.address):\(relay.port)")
        }
    }

    private func applyRemoteCredentials(_ remote: ICECredentials) {
        guard phase == .open, let agent else { return }
        if let problem = remote.problem {
            logger.warning("ignoring remote credentials: \(problem)")
            return
        }
        if cns_agent_set_remote_credentials(agent, remote.ufrag, remote.pwd) == 0 {
            logger.warning("libnice refused the remote credentials")
        }
    }

    private func gather() {
        guard phase == .open, let agent, !gathering, gatherTimer == nil else { return }
        gatherAttempts += 1
        if cns_agent_gather(agent) != 0 {
            gathering = true
            let pending = pendingRemote
            pendingRemote = []
            for candidate in pending { addRemote(candidate) }
            return
        }
        guard gatherAttempts < settings.gatherAttempts else {
            logger.error("libnice could not gather candidates after \(gatherAttempts) attempts (no running interface?)")
            emit(.state(.failed))
            return
        }
        logger.debug("libnice could not gather candidates yet (attempt \(gatherAttempts)): retrying")
        gatherTimer = thread.timer(milliseconds: settings.gatherRetryIntervalMs) { [self] in
            gatherTimer = nil
            gather()
        }
    }

    private func addRemote(_ candidate: ICECandidate) {
        guard phase == .open || phase == .new, !outbox.withLock({ $0.closeRequested }) else { return }
        if let problem = candidate.niceProblem {
            logger.warning("ignoring remote candidate \(candidate): \(problem)")
            return
        }
        // Remote candidates wait for gathering: libnice would otherwise start checking (and report
        // CONNECTING) before it has any local candidate or reports GATHERING.
        guard gathering, let agent else {
            pendingRemote.append(candidate)
            return
        }
        var c = candidate.nice
        switch cns_agent_add_remote_candidate(agent, &c) {
        case 1:
            remoteCount += 1
            if remoteCount > Self.maxRemoteCandidates {
                logger.warning("remote candidate \(remoteCount) (\(candidate)): libnice keeps at most \(Self.maxRemoteCandidates) per component")
            }
        case 0:
            logger.warning("libnice did not take remote candidate \(candidate)")
        default:
            logger.warning("ignoring remote candidate \(candidate): libnice cannot parse it")
        }
    }

    private func flush() {
        let datagrams = outbox.withLock { box in
            box.flushPosted = false
            defer { box.datagrams.removeAll(keepingCapacity: true) }
            return box.datagrams
        }
        guard phase == .open, let agent else { return }
        for datagram in datagrams {
            let sent = datagram.withUnsafeBufferPointer { cns_agent_send(agent, $0.baseAddress, $0.count) }
            if sent < 0 { logger.debug("libnice could not send a datagram of \(datagram.count) bytes") }
        }
    }

    private func shutDown() {
        if let gatherTimer {
            thread.cancel(timer: gatherTimer)
            self.gatherTimer = nil
        }
        pendingRemote = []
        switch phase {
        case .closing, .closed:
            return
        case .new:
            phase = .closed
            finish()
        case .open:
            guard let agent, let retainedSelf else { return }
            phase = .closing
            self.agent = nil
            cns_agent_close(agent, { context in
                guard let context else { return }
                let core = Unmanaged<NiceAgentCore>.fromOpaque(context).takeUnretainedValue()
                core.phase = .closed
                core.finish()
            }, retainedSelf.toOpaque())
        }
    }

    /// Reports `.closed`, then lets go of the events closure and of the reference libnice held.
    private func finish() {
        outbox.withLock { $0.usable = false }
        emit(.closed)
        events = nil
        let retained = retainedSelf
        retainedSelf = nil
        retained?.release()
    }

    private func signal(kind: Int32, state: Int32, local: UnsafePointer<cns_candidate>?,
                        remote: UnsafePointer<cns_candidate>?) {
        switch Int(kind) {
        case Int(CNS_EVENT_STATE):
            guard let mapped = Self.state(state) else { return }
            switch mapped {
            case .connected, .ready: outbox.withLock { $0.usable = true }
            case .failed: outbox.withLock { $0.usable = false }
            default: break
            }
            emit(.state(mapped))
        case Int(CNS_EVENT_LOCAL_CANDIDATE):
            guard let local else { return }
            guard let candidate = ICECandidate(nice: local.pointee, servers: settings.servers) else {
                logger.debug("ignoring a local candidate of an unknown type")
                return
            }
            emit(.localCandidate(candidate))
        case Int(CNS_EVENT_GATHERING_DONE):
            emit(.gatheringDone)
        case Int(CNS_EVENT_SELECTED_PAIR):
            guard let local, let remote,
                  let l = ICECandidate(nice: local.pointee, servers: settings.servers),
                  let r = ICECandidate(nice: remote.pointee, servers: NiceServers()) else { return }
            outbox.withLock { $0.usable = true }
            emit(.selectedPair(local: l, remote: r))
        default:
            break
        }
    }

    /// libnice's component state as an `ICEAgentState`; nil for DISCONNECTED (the initial state).
    static func state(_ nice: Int32) -> ICEAgentState? {
        switch Int(nice) {
        case Int(CNS_STATE_GATHERING): return .gathering
        case Int(CNS_STATE_CONNECTING): return .connecting
        case Int(CNS_STATE_CONNECTED): return .connected
        case Int(CNS_STATE_READY): return .ready
        case Int(CNS_STATE_FAILED): return .failed
        default: return nil
        }
    }
}

/// Calls `body` with a C string for `text`, or with nil.
private func withOptionalCString<R>(_ text: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let text else { return body(nil) }
    return text.withCString { body($0) }
}
