/// Timing and bounds of the session state machine. Times are nanoseconds.
public struct SessionConfig: Sendable, Equatable {
    /// The second credential send, after the first at once (cunīcu: 500 ms).
    public var resendInitial: UInt64 = 500_000_000
    /// Growth of the resend interval (×1.5).
    public var resendFactor: Double = 1.5
    /// Relative jitter of each resend interval (±50 %).
    public var resendJitter: Double = 0.5
    /// The longest resend interval (1 min). Resending never gives up.
    public var resendMax: UInt64 = 60_000_000_000
    /// Remote candidates held while no agent can take them (before the peer's credentials).
    public var heldCandidateLimit = 32
    /// Remote candidates added to one agent (libnice keeps at most 25 per component; more
    /// would be counted as added and silently dropped by the agent).
    public var remoteCandidateLimit = 25
    /// Local candidates gathered while Idle, held until the peer's credentials arrive.
    public var pendingLocalLimit = 32
    /// From the peer's credentials to Connected: past this the attempt counts as failed and
    /// starts over (libnice reports FAILED itself when checks run; this covers a peer whose
    /// candidates never arrive).
    public var connectTimeout: UInt64 = 30_000_000_000
    /// Superseded remote credentials remembered, so that a late copy of an old message does not
    /// look like another restart.
    public var supersededLimit = 4
    /// After an agent could not be created: the first retry delay, doubled up to `retryMax`.
    public var retryInitial: UInt64 = 1_000_000_000
    public var retryMax: UInt64 = 30_000_000_000

    public init() {}

    /// The delay before resend number `n` (n ≥ 1: the first resend follows the initial send),
    /// before jitter: `resendInitial · resendFactor^(n−1)`, at most `resendMax`.
    public func resendBase(_ n: Int) -> UInt64 {
        let base = Double(resendInitial) * pow(resendFactor, Double(max(0, n - 1)))
        return base >= Double(resendMax) ? resendMax : UInt64(base)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
