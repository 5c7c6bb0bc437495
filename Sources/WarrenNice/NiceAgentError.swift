import WarrenSession

/// Why a `NiceAgentFactory` or an agent could not be set up.
public enum NiceAgentError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A STUN or TURN server entry cannot be used (the server is shown without its password).
    case invalidServer(String, reason: String)
    /// A server's host name did not resolve to an address of a usable family.
    case unresolvableHost(String)
    /// A local address in `Options.localAddresses` is not a numeric IPv4 or IPv6 address.
    case invalidLocalAddress(String)
    /// A timing option is out of range.
    case invalidOption(String)
    /// The local credentials given to `makeAgent` are invalid.
    case invalidCredentials(String)
    /// The GLib thread could not be started.
    case threadFailed

    public var description: String {
        switch self {
        case .invalidServer(let server, let reason): return "ICE server \(server): \(reason)"
        case .unresolvableHost(let host): return "cannot resolve \(String(reflecting: host))"
        case .invalidLocalAddress(let a): return "local address \(String(reflecting: a)) is not a numeric IP address"
        case .invalidOption(let what): return "invalid option: \(what)"
        case .invalidCredentials(let problem): return "invalid local credentials: \(problem)"
        case .threadFailed: return "cannot start the libnice thread"
        }
    }
}
