/// The engine's periodic timers (heartbeat, peer exchange, score interval, reconnect) and its cached next
/// deadline.
///
/// The deadline depends on these timers and on the link table, the peer table and the seeds;
/// each of them counts its own changes in a `generation` (here: a timer set, or a tick run).
/// The cached deadline is stored with the sum of the four generations it was computed from
/// (`stamp`; each only grows, so the sum changes whenever one does) and is valid only while
/// that sum is unchanged. What the generations do not count (a frame refreshing a neighbour's
/// `lastHeard`) only moves deadlines later, so a deadline cached before it is at worst early,
/// and an early tick is harmless.
struct Timers: Sendable {
    // What every read of the deadline touches first.
    private(set) var generation: UInt64 = 0
    private var deadline: UInt64 = 0
    private var deadlineStamp: UInt64 = .max
    private var heartbeatAt: UInt64 = 0
    private var exchangeAt: UInt64 = 0
    private var scoreAt: UInt64 = 0
    private var reconnectAt: UInt64 = .max

    /// When the next HEARTBEAT is sent.
    var heartbeat: UInt64 {
        get { heartbeatAt }
        set { heartbeatAt = newValue; generation &+= 1 }
    }

    /// When the next PEERS is sent.
    var exchange: UInt64 {
        get { exchangeAt }
        set { exchangeAt = newValue; generation &+= 1 }
    }

    /// When the current score interval ends.
    var score: UInt64 {
        get { scoreAt }
        set { scoreAt = newValue; generation &+= 1 }
    }

    /// When a node with views next dials an endpoint that failed (`EngineConfig.reconnectInterval`;
    /// `.max` without views).
    var reconnect: UInt64 {
        get { reconnectAt }
        set { reconnectAt = newValue; generation &+= 1 }
    }

    /// The earliest of the four.
    var earliest: UInt64 { min(heartbeatAt, exchangeAt, scoreAt, reconnectAt) }

    /// A tick ran: the cached deadline is spent, even if nothing it was computed from changed
    /// (what the generations do not count may have moved it later).
    mutating func fired() { generation &+= 1 }

    /// The cached deadline, if it was computed at `stamp`.
    func deadline(at stamp: UInt64) -> UInt64? { stamp == deadlineStamp ? deadline : nil }

    mutating func cache(deadline d: UInt64, at stamp: UInt64) {
        deadline = d
        deadlineStamp = stamp
    }
}
