import WarrenEngine

/// The network a `Simulator` emulates beyond each link's latency and each frame's loss: the
/// socket model of docs/PROTOCOL.md §1 with what tests need to provoke (reordering,
/// duplication) and to observe (which connection a frame came in on, what each node saw).
/// The defaults are what `warren simulate` runs: nothing extra, nothing recorded.
///
/// One model, two ways to run it: one shard on the caller's thread (`InMemoryNetwork`, the
/// tests' network) or shards on threads (`warren simulate`); `SimShard.perform` carries out
/// every engine's actions in both.
public struct NetworkModel: Sendable {
    /// Extra delay of each frame, uniform in 0...jitter ns: frames on one link overtake each other.
    public var jitter: UInt64 = 0
    /// Probability that a frame arrives twice (the copy with a delay of its own).
    public var duplication: Double = 0 {
        didSet { duplicationThreshold = Simulator.threshold(duplication) }
    }
    /// Every link carries its frames on an inbound connection of its own at the target (a new
    /// one when the target restarts), given to the engine as `via`, as the ZeroMQ driver does.
    /// Off: the engine cannot tell where a frame came from and trusts its `from`.
    public var connectionIDs = false
    /// Record what each node saw (`Simulator.record(_:)`): deliveries with their envelopes,
    /// membership events, dials, frame counts.
    public var recording = false
    /// Endpoints that name another one (like "localhost" for "127.0.0.1").
    public var aliases: [String: String] = [:]

    /// A partition: node i is in group `groups[i]` (nodes past the end are in group 0); a frame
    /// between nodes of different groups is lost (counted in `framesLost`), as on a network cut.
    /// Empty: no partition. May change between runs.
    public var groups: [Int32] = []

    var duplicationThreshold: UInt64 = 0

    /// True if a frame from node `i` to node `t` crosses the partition.
    @inline(__always) func cut(_ i: Int, _ t: Int) -> Bool {
        guard !groups.isEmpty else { return false }
        return (i < groups.count ? groups[i] : 0) != (t < groups.count ? groups[t] : 0)
    }

    public init() {}
}

/// What one node saw (`NetworkModel.recording`).
public struct NodeRecord: Sendable {
    public internal(set) var deliveries: [InMemoryNetwork.Delivery] = []
    public internal(set) var peerEvents: [InMemoryNetwork.PeerEvent] = []
    /// (time, endpoint) of every dial.
    public internal(set) var connects: [(time: UInt64, endpoint: String)] = []
    /// Frames that arrived / DATA frames among them.
    public internal(set) var framesReceived = 0
    public internal(set) var dataFramesReceived = 0
    /// Link-sends by this node / DATA link-sends.
    public internal(set) var framesSent = 0
    public internal(set) var dataFramesSent = 0
}
