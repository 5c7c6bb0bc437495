import Logging
import WarrenSession

/// Creates libnice agents that all live on one dedicated GLib thread (a private GMainContext):
/// every call to an agent is marshalled there and every libnice signal arrives there.
///
/// The thread ends once the factory and every agent it made are gone (agents end with `.closed`).
public final class NiceAgentFactory: ICEAgentFactory {
    public struct Options: Sendable {
        /// STUN and TURN servers. The first `stun:` entry is libnice's STUN server (later ones
        /// are ignored); each TURN entry adds a relay (at most 8). Host names are resolved once,
        /// when the factory is made.
        public var servers: [ICEServer]
        /// The first STUN retransmission timeout (libnice `stun-initial-timeout`), in ms.
        public var stunInitialTimeoutMs: Int
        /// STUN retransmissions before a check or a binding request fails (`stun-max-retransmissions`).
        public var stunMaxRetransmissions: Int
        /// RFC 7675 consent freshness: a path lost after READY is reported as FAILED in ≈ 6–10 s.
        public var consentFreshness: Bool
        /// Connectivity checks as keepalives (`keepalive-conncheck`): without consent freshness,
        /// a lost path is then reported after ≈ 46–50 s.
        public var keepaliveConncheck: Bool
        /// ICE-TCP candidates (libnice `ice-tcp`); this forces regular nomination (≈ +2 s).
        public var iceTCP: Bool
        /// Numeric local addresses to gather on (`nice_agent_add_local_address`). Nil: every
        /// running interface except loopback, which libnice skips; list `127.0.0.1` to use it.
        public var localAddresses: [String]?
        /// Attempts at `nice_agent_gather_candidates`, which fails while no interface is running,
        /// before the agent reports `.state(.failed)`.
        public var gatherAttempts: Int
        /// The pause between two gathering attempts, in ms.
        public var gatherRetryIntervalMs: Int

        public init(servers: [ICEServer] = [], stunInitialTimeoutMs: Int = 100, stunMaxRetransmissions: Int = 2,
                    consentFreshness: Bool = true, keepaliveConncheck: Bool = false, iceTCP: Bool = false,
                    localAddresses: [String]? = nil, gatherAttempts: Int = 10, gatherRetryIntervalMs: Int = 300) {
            self.servers = servers
            self.stunInitialTimeoutMs = stunInitialTimeoutMs
            self.stunMaxRetransmissions = stunMaxRetransmissions
            self.consentFreshness = consentFreshness
            self.keepaliveConncheck = keepaliveConncheck
            self.iceTCP = iceTCP
            self.localAddresses = localAddresses
            self.gatherAttempts = gatherAttempts
            self.gatherRetryIntervalMs = gatherRetryIntervalMs
        }
    }

    public let options: Options
    let servers: NiceServers
    private let settings: NiceAgentCore.Settings
    private let thread: NiceThread
    private let logger: Logger

    /// Checks the options, resolves the servers' host names and starts the GLib thread.
    public convenience init(options: Options = Options(), logger: Logger = Logger(label: "warren.nice")) throws(NiceAgentError) {
        try self.init(options: options, logger: logger, threadName: "warren-nice")
    }

    /// `threadName` (at most 15 bytes show in /proc) tells this factory's thread apart in tests.
    init(options: Options, logger: Logger, threadName: String) throws(NiceAgentError) {
        guard (1...60_000).contains(options.stunInitialTimeoutMs) else {
            throw .invalidOption("stunInitialTimeoutMs \(options.stunInitialTimeoutMs) is not 1–60000")
        }
        guard (0...100).contains(options.stunMaxRetransmissions) else {
            throw .invalidOption("stunMaxRetransmissions \(options.stunMaxRetransmissions) is not 0–100")
        }
        guard (1...1000).contains(options.gatherAttempts) else {
            throw .invalidOption("gatherAttempts \(options.gatherAttempts) is not 1–1000")
        }
        guard (1...60_000).contains(options.gatherRetryIntervalMs) else {
            throw .invalidOption("gatherRetryIntervalMs \(options.gatherRetryIntervalMs) is not 1–60000")
        }
        var locals: [String] = []
        for address in options.localAddresses ?? [] {
            guard let normalized = IPAddress.normalized(address) else { throw .invalidLocalAddress(address) }
            locals.append(normalized)
        }
        let servers = try NiceServers.resolve(options.servers, logger: logger)
        self.options = options
        self.servers = servers
        self.settings = NiceAgentCore.Settings(stunInitialTimeoutMs: UInt32(options.stunInitialTimeoutMs),
                                               stunMaxRetransmissions: UInt32(options.stunMaxRetransmissions),
                                               consentFreshness: options.consentFreshness,
                                               keepaliveConncheck: options.keepaliveConncheck,
                                               iceTCP: options.iceTCP, servers: servers, localAddresses: locals,
                                               gatherAttempts: options.gatherAttempts,
                                               gatherRetryIntervalMs: UInt32(options.gatherRetryIntervalMs))
        self.logger = logger
        self.thread = try NiceThread(name: threadName)
    }

    /// A new agent; libnice creates it on the GLib thread right after this returns. Throws
    /// `NiceAgentError.invalidCredentials` for credentials libnice would take but peers refuse.
    public func makeAgent(controlling: Bool, credentials: ICECredentials,
                          events: @escaping @Sendable (ICEAgentEvent) -> Void) throws -> any ICEAgent {
        try agent(controlling: controlling, credentials: credentials, events: events)
    }

    /// `makeAgent` with the concrete type.
    public func agent(controlling: Bool, credentials: ICECredentials,
                      events: @escaping @Sendable (ICEAgentEvent) -> Void) throws(NiceAgentError) -> NiceAgent {
        if let problem = credentials.problem { throw .invalidCredentials(problem) }
        var settings = self.settings
        settings.controlling = controlling
        var agentLogger = logger
        agentLogger[metadataKey: "ice-ufrag"] = "\(credentials.ufrag)"
        let core = NiceAgentCore(thread: thread, settings: settings, credentials: credentials,
                                 logger: agentLogger, events: events)
        return NiceAgent(core: core)
    }
}
