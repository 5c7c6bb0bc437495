/// The ICE connection states of the design note, with its names (docs/SESSION.md has the
/// diagram). One session per remote peer moves through them.
public enum SessionState: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// No agent exists.
    case unknown = "Unknown"
    /// An agent exists; our credentials are being sent (with back-off) until the peer's arrive.
    case idle = "Idle"
    /// The peer's credentials are set; gathering local candidates.
    case new = "New"
    /// The first remote candidate was added.
    case connecting = "Connecting"
    /// Connectivity checks are running.
    case checking = "Checking"
    /// A pair works.
    case connected = "Connected"
    /// Nomination finished: the selected pair is final.
    case completed = "Completed"
    /// A path that worked was lost (consent freshness).
    case disconnected = "Disconnected"
    /// Checks failed before any pair worked.
    case failed = "Failed"
    /// The agent was closed (a new one follows unless the session was closed for good).
    case closed = "Closed"

    public var description: String { rawValue }

    /// True while a path is usable (`send` works).
    public var isConnected: Bool { self == .connected || self == .completed }
}

/// The transitions of the design note's diagram, as the state machine implements them.
/// Tests check that every one is reached; docs/SESSION.md draws the same list.
public enum SessionTransitions {
    public static let all: Set<Pair> = [
        Pair(.unknown, .idle), Pair(.idle, .idle), Pair(.idle, .new), Pair(.new, .connecting),
        Pair(.connecting, .checking), Pair(.checking, .connected), Pair(.checking, .failed),
        Pair(.connected, .completed), Pair(.connected, .disconnected), Pair(.completed, .disconnected),
        Pair(.completed, .closed), Pair(.disconnected, .closed), Pair(.failed, .closed), Pair(.closed, .idle),
    ]

    public struct Pair: Hashable, Sendable, CustomStringConvertible {
        public var from: SessionState
        public var to: SessionState
        public init(_ from: SessionState, _ to: SessionState) { self.from = from; self.to = to }
        public var description: String { "\(from) → \(to)" }
    }
}
