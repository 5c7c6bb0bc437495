/// A remote node that sent us a HELLO (this incarnation).
struct PeerState: Sendable {
    var id: NodeID
    var endpoint: String
    var leaf: Bool
    /// Its HELLO advertised views (flags bit 1): it understands DISCONNECT and FORWARD_JOIN.
    var views = false
    /// Its token (its LinkID of its link to us), from its last HELLO.
    var token: UInt64 = 0
    /// Our link bound to it.
    var link: LinkID?
    var up = false
    var since: UInt64 = 0
    /// Its HELLO set flag bit 2: it takes routing frames (docs/PROTOCOL.md §9).
    var routing = false
    /// Ready links not bound to it (its frames are forwarded there), as of the link table's
    /// generation `sendCacheGeneration`.
    var sendCache: [LinkID] = []
    var sendCacheGeneration: UInt64 = .max

    init(id: NodeID, endpoint: String, leaf: Bool) {
        self.id = id; self.endpoint = endpoint; self.leaf = leaf
    }
}

/// The per-frame part of a peer: its node id and when any frame from it last arrived.
struct PeerKey: Sendable {
    var id: UInt64
    /// Beside the id: the lookup reads the id, and every admitted frame takes from the bucket.
    var bucket = TokenBucket()
    var lastHeard: UInt64
    /// The inbound connection bound to it (0 = none yet, or the driver cannot tell), and the one
    /// it was bound to before (frames still arriving there are late, not forged).
    var conn: UInt64 = 0
    var left: UInt64 = 0
    /// Its shares of `newIDRate`: new ids admitted, and forwarded.
    var share = TokenBucket()
    var forward = TokenBucket()
    /// Frames this `scoreInterval`: good (admitted) and bad (forged, malformed, over the rate or
    /// share), and the bad ones by kind.
    var good: UInt32 = 0
    var bad: UInt32 = 0
    var badKinds = Penalty.Counts()

    mutating func noteBad(_ kind: Penalty.Kind) {
        bad &+= 1
        switch kind {
        case .forged: badKinds.forged &+= 1
        case .malformed: badKinds.malformed &+= 1
        case .overRate: badKinds.overRate &+= 1
        case .overShare: badKinds.overShare &+= 1
        }
    }
}

/// The peer table: `PeerState`s, and beside them, at the same indices, their compact `PeerKey`s,
/// the part every inbound frame reads and writes (kept apart so that the per-frame lookup scans
/// few cache lines). Peers are added and removed only here, so the two arrays stay in step.
///
/// `generation` counts changes that can move the engine's deadline earlier (a peer added,
/// removed, or its state written); writing a key (`lastHeard`, buckets, scores) or a send list
/// does not count: the first only moves deadlines later, the second is not read by them.
struct PeerTable: Sendable, RandomAccessCollection {
    private var keys: [PeerKey] = []
    /// Their states, whose changes are the table's generation.
    private var states = CountedArray<PeerState>()
    var generation: UInt64 { states.generation }

    var startIndex: Int { 0 }
    var endIndex: Int { states.count }

    subscript(i: Int) -> PeerState {
        _read { yield states[i] }
        _modify { yield &states[i] }
    }

    /// The per-frame part of peer `i`.
    subscript(key i: Int) -> PeerKey {
        @inline(__always) _read { yield keys[i] }
        @inline(__always) _modify { yield &keys[i] }
    }

    /// Index of the peer with node id `id`.
    @inline(__always)
    func index(of id: NodeID) -> Int? {
        let raw = id.raw
        return keys.withUnsafeBufferPointer { b in
            for k in b.indices where b[k].id == raw { return k }
            return nil
        }
    }

    /// Index of the peer bound to inbound connection `conn`.
    @inline(__always)
    func index(conn: UInt64) -> Int? {
        keys.withUnsafeBufferPointer { b in
            for k in b.indices where b[k].conn == conn { return k }
            return nil
        }
    }

    /// Stores peer `i`'s send list, built at link-table generation `generation` (not a change
    /// the deadline depends on: not counted).
    mutating func cacheSendList(_ i: Int, _ targets: [LinkID], generation: UInt64) {
        states.withoutCounting(i) { s in
            s.sendCache = targets
            s.sendCacheGeneration = generation
        }
    }

    mutating func append(_ p: PeerState, lastHeard: UInt64) {
        states.append(p)
        keys.append(PeerKey(id: p.id.raw, lastHeard: lastHeard))
    }

    @discardableResult
    mutating func remove(at i: Int) -> PeerState {
        keys.remove(at: i)
        return states.remove(at: i)
    }

    mutating func removeAll() {
        states.removeAll()
        keys.removeAll()
    }

    /// Calls `body` with the keys' storage (for prefetching what a lookup reads).
    func withKeys<R>(_ body: (UnsafeBufferPointer<PeerKey>) -> R) -> R { keys.withUnsafeBufferPointer(body) }

    /// Bytes of both arrays and what the states hold, counted by element.
    var countedBytes: Int {
        var n = states.count * MemoryLayout<PeerState>.stride + keys.count * MemoryLayout<PeerKey>.stride
        for p in states { n += p.endpoint.utf8.count + p.sendCache.count * MemoryLayout<LinkID>.stride }
        return n
    }
}
