/// One outbound link: where it was dialled, and where it is in its lifecycle.
struct LinkState: Sendable {
    /// A link is dialled, then ready (the remote SUB's subscription arrived, HELLO sent). In
    /// either phase it may carry the node it reaches: pre-bound when dialled back, bound by a
    /// HELLO, unbound again when it is about to be closed as a duplicate.
    enum Phase: Sendable {
        /// Dialled at `since` (the dial timeout runs from there).
        case dialing(since: UInt64, node: NodeID?)
        /// Ready since `since`.
        case ready(since: UInt64, node: NodeID?)
    }

    let id: LinkID
    /// The endpoint it was dialled at (may be an alias of the advertised one).
    let endpoint: String
    /// Index into the engine's seeds if dialled as a seed.
    let seed: Int?
    /// What its HELLO asks of the node it reaches (views).
    let request: Frame.Request
    /// Changed only by `LinkTable`, which counts every change.
    fileprivate(set) var phase: Phase
    /// A routing contact link (docs/PROTOCOL.md §9): heartbeats and routing frames only; not
    /// flooded to, not counted toward the degree.
    fileprivate(set) var contact = false

    var ready: Bool {
        if case .ready = phase { return true }
        return false
    }

    /// Dial time while dialing, ready time once ready (the base of the dial timeout).
    var since: UInt64 {
        switch phase {
        case .dialing(let since, _), .ready(let since, _): since
        }
    }

    /// The node it is bound to (reaches).
    var node: NodeID? {
        switch phase {
        case .dialing(_, let node), .ready(_, let node): node
        }
    }
}

/// The outbound links, in dial order, and a generation that changes with every change to them
/// (a link dialled, closed, ready, bound or unbound): send-list caches and the cached deadline
/// compare it instead of being invalidated by hand.
struct LinkTable: Sendable, RandomAccessCollection {
    private var links = CountedArray<LinkState>()
    var generation: UInt64 { links.generation }

    var startIndex: Int { 0 }
    var endIndex: Int { links.count }
    subscript(i: Int) -> LinkState { _read { yield links[i] } }

    /// Bytes of the array, counted by element.
    var countedBytes: Int { links.count * MemoryLayout<LinkState>.stride }

    func index(of id: LinkID) -> Int? { links.firstIndex { $0.id == id } }
    func index(raw: UInt64) -> Int? { links.firstIndex { $0.id.raw == raw } }

    /// A new link, dialled at `now`; `node` pre-binds it.
    mutating func dial(_ id: LinkID, endpoint: String, seed: Int?, node: NodeID?, request: Frame.Request, now: UInt64) {
        links.append(LinkState(id: id, endpoint: endpoint, seed: seed, request: request, phase: .dialing(since: now, node: node)))
    }

    @discardableResult
    mutating func remove(at i: Int) -> LinkState { links.remove(at: i) }

    mutating func removeAll() { links.removeAll() }

    /// Makes link `i` a routing contact link, or a gossip link again (`contact` false).
    mutating func setContact(_ i: Int, _ contact: Bool) {
        guard links[i].contact != contact else { return }
        links[i].contact = contact
    }

    /// Link `i` became ready at `now`; false (and nothing changes) if it already was.
    mutating func markReady(_ i: Int, now: UInt64) -> Bool {
        guard case .dialing(_, let node) = links[i].phase else { return false }
        links[i].phase = .ready(since: now, node: node)
        return true
    }

    /// Binds link `i` to `node` (nil: unbinds it), in the phase it is in.
    mutating func bind(_ i: Int, to node: NodeID?) {
        switch links[i].phase {
        case .dialing(let since, _): links[i].phase = .dialing(since: since, node: node)
        case .ready(let since, _): links[i].phase = .ready(since: since, node: node)
        }
    }
}
