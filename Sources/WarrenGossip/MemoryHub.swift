import Dispatch
import Synchronization
import WarrenEngine

/// An in-memory network for nodes' drivers, without sockets: every `MemoryTransport` binds an
/// endpoint name on one hub, and the hub moves their messages the way ZeroMQ moves them from
/// an XPUB link to a bound SUB (ARCHITECTURE.md, "Sockets and options"):
///
/// - a link connects to the transport bound at its endpoint, now or whenever one binds there
///   (ZeroMQ reconnects); it is reported ready each time the remote subscribes a prefix while
///   connected (`XPUB_VERBOSE`), so a node that binds again is greeted again;
/// - a message reaches the remote only if its topic starts with one of the remote's prefixes
///   (counted, like the SUB's); one that does not, or that is sent before the link connected,
///   is dropped silently, as an XPUB drops it;
/// - each connection holds at most the dialer's send high-water mark plus the listener's
///   receive high-water mark messages (what ZeroMQ's two queues would hold; 0 in either: no
///   limit); a send beyond that is refused (`XPUB_NODROP`);
/// - every connection has a number of its own, which each of its messages carries.
///
/// The hub's clock is the monotonic clock plus what tests added with `advance(by:)`. Tests can
/// also stop a node's thread where it waits (`freeze`), to let input or commands pile up, and
/// record every message accepted (`recording`).
package final class MemoryHub: Sendable {
    struct Message {
        var topic: [UInt8]
        var body: [UInt8]
        var connection: UInt64
    }

    /// A message the hub accepted, for tests (`recording`).
    package struct Sent: Sendable {
        package var time: UInt64
        package var from: String
        package var to: String
        package var topic: [UInt8]
        package var body: [UInt8]
    }

    struct OutLink {
        var target: String
        /// The connection's number while connected.
        var connection: UInt64?
    }

    /// One transport's side of the hub.
    struct Node {
        var endpoint: String
        var sendHWM: Int
        var receiveHWM: Int
        var prefixes: [[UInt8]] = []
        var inbox: [Message] = []
        var inboxHead = 0
        /// Messages queued per inbound connection.
        var queued: [UInt64: Int] = [:]
        var links: [LinkID: OutLink] = [:]
        /// Links of this node that became ready, not yet taken.
        var events: [LinkID] = []
        var woken = false
        var frozen = false
        /// Its thread is blocked in `wait` because it is frozen.
        var parked = false
        /// The semaphore was signalled since the node last looked.
        var signalled = false
        let semaphore: DispatchSemaphore

        var pending: Int { inbox.count - inboxHead }
    }

    struct State {
        var nodes: [UInt64: Node] = [:]
        var byEndpoint: [String: UInt64] = [:]
        var nextNode: UInt64 = 0
        var nextConnection: UInt64 = 0
        var recording = false
        var log: [Sent] = []
    }

    private let state = Mutex(State())
    private let offset = Atomic<UInt64>(0)

    package init() {}

    // MARK: Clock

    /// The hub's time (nanoseconds): monotonic, plus every `advance`.
    package var now: UInt64 { monotonicNanos() &+ offset.load(ordering: .relaxed) }

    /// Moves the hub's clock forward: every node on the hub sees the time jump, and waiting
    /// nodes look at their timers again.
    package func advance(by nanos: UInt64) {
        offset.add(nanos, ordering: .relaxed)
        state.withLock { s in for id in s.nodes.keys { Self.signal(id, &s) } }
    }

    // MARK: Tests' controls

    /// Stops the node bound at `endpoint` where it waits: it takes no input, commands or timers
    /// until `thaw` (what is sent to it meanwhile queues up, within the limits above).
    package func freeze(_ endpoint: String) { setFrozen(endpoint, true) }
    package func thaw(_ endpoint: String) { setFrozen(endpoint, false) }

    private func setFrozen(_ endpoint: String, _ frozen: Bool) {
        state.withLock { s in
            guard let id = s.byEndpoint[endpoint] else { return }
            s.nodes[id]?.frozen = frozen
            Self.signal(id, &s)
        }
    }

    /// Whether the node at `endpoint` is frozen and its thread parked in its wait.
    package func isParked(_ endpoint: String) -> Bool {
        state.withLock { s in s.byEndpoint[endpoint].flatMap { s.nodes[$0]?.parked } ?? false }
    }

    /// Messages waiting for the node at `endpoint`.
    package func pending(_ endpoint: String) -> Int {
        state.withLock { s in s.byEndpoint[endpoint].flatMap { s.nodes[$0]?.pending } ?? 0 }
    }

    /// Whether a transport is bound at `endpoint`, and how many links it has open.
    package func isBound(_ endpoint: String) -> Bool { state.withLock { $0.byEndpoint[endpoint] != nil } }
    package func openLinks(_ endpoint: String) -> Int {
        state.withLock { s in s.byEndpoint[endpoint].flatMap { s.nodes[$0]?.links.count } ?? 0 }
    }

    /// Keeps every accepted message from now on (`sent`).
    package var recording: Bool {
        get { state.withLock { $0.recording } }
        set { state.withLock { $0.recording = newValue } }
    }

    /// The accepted messages recorded, in order.
    package var sent: [Sent] { state.withLock { $0.log } }

    // MARK: Transports

    /// Binds `endpoint`; links that were dialling it connect.
    func attach(endpoint: String, sendHWM: Int32, receiveHWM: Int32) throws -> UInt64 {
        try state.withLock { s throws(MemoryHubError) -> UInt64 in
            guard s.byEndpoint[endpoint] == nil else { throw MemoryHubError.inUse(endpoint) }
            s.nextNode += 1
            let id = s.nextNode
            s.nodes[id] = Node(endpoint: endpoint, sendHWM: Int(sendHWM), receiveHWM: Int(receiveHWM),
                               semaphore: DispatchSemaphore(value: 0))
            s.byEndpoint[endpoint] = id
            for (other, n) in s.nodes where other != id {
                for (link, l) in n.links where l.target == endpoint && l.connection == nil {
                    Self.connect(other, link, to: id, &s)
                }
            }
            return id
        }
    }

    /// Unbinds a transport: its links close, and links to it wait for the next node to bind.
    func detach(_ id: UInt64) {
        state.withLock { s in
            guard let n = s.nodes.removeValue(forKey: id) else { return }
            s.byEndpoint[n.endpoint] = nil
            for (other, o) in s.nodes {
                for (link, l) in o.links where l.target == n.endpoint { s.nodes[other]?.links[link]?.connection = nil }
            }
        }
    }

    func open(_ id: UInt64, _ link: LinkID, to endpoint: String) {
        state.withLock { s in
            s.nodes[id]?.links[link] = OutLink(target: endpoint)
            if let target = s.byEndpoint[endpoint] { Self.connect(id, link, to: target, &s) }
        }
    }

    func close(_ id: UInt64, _ link: LinkID) {
        state.withLock { s in _ = s.nodes[id]?.links.removeValue(forKey: link) }
    }

    func hasLink(_ id: UInt64, _ link: LinkID) -> Bool {
        state.withLock { $0.nodes[id]?.links[link] != nil }
    }

    private static func connect(_ dialer: UInt64, _ link: LinkID, to target: UInt64, _ s: inout State) {
        s.nextConnection += 1
        s.nodes[dialer]?.links[link]?.connection = s.nextConnection
        // The remote SUB's subscriptions arrive at once: the link is ready.
        if s.nodes[target]?.prefixes.isEmpty == false { event(dialer, link, &s) }
    }

    /// A link is ready; reported once however often it became ready before the node looked
    /// (as an XPUB's subscriptions are read together).
    private static func event(_ id: UInt64, _ link: LinkID, _ s: inout State) {
        guard s.nodes[id]?.events.contains(link) == false else { return }
        s.nodes[id]?.events.append(link)
        signal(id, &s)
    }

    private static func signal(_ id: UInt64, _ s: inout State) {
        guard let n = s.nodes[id], !n.signalled else { return }
        s.nodes[id]?.signalled = true
        n.semaphore.signal()
    }

    func subscribe(_ id: UInt64, _ prefix: [UInt8], on: Bool) {
        state.withLock { s in
            guard let n = s.nodes[id] else { return }
            if on {
                s.nodes[id]?.prefixes.append(prefix)
                // Every connected link to this node sees the subscription.
                for (other, o) in s.nodes {
                    for (link, l) in o.links where l.target == n.endpoint && l.connection != nil { Self.event(other, link, &s) }
                }
            } else if let i = n.prefixes.firstIndex(of: prefix) {
                s.nodes[id]?.prefixes.remove(at: i)
            }
        }
    }

    func send(_ id: UInt64, _ link: LinkID, topic: [UInt8], body: [UInt8]) -> SendOutcome {
        state.withLock { s -> SendOutcome in
            guard let sender = s.nodes[id], let l = sender.links[link] else { return .noLink }
            // The remote is moved out while it changes (its inbox is not copied on write).
            guard let c = l.connection, let t = s.byEndpoint[l.target], var remote = s.nodes.removeValue(forKey: t) else { return .sent }
            defer { s.nodes[t] = remote }
            guard remote.prefixes.contains(where: { topic.starts(with: $0) }) else { return .sent }
            let q = remote.queued[c] ?? 0
            if sender.sendHWM > 0 && remote.receiveHWM > 0 && q >= sender.sendHWM + remote.receiveHWM { return .refused }
            remote.queued[c] = q + 1
            remote.inbox.append(Message(topic: topic, body: body, connection: c))
            if s.recording {
                s.log.append(Sent(time: now, from: sender.endpoint, to: remote.endpoint, topic: topic, body: body))
            }
            if !remote.signalled {
                remote.signalled = true
                remote.semaphore.signal()
            }
            return .sent
        }
    }

    func receive(_ id: UInt64) -> Message? {
        state.withLock { s -> Message? in
            guard var n = s.nodes.removeValue(forKey: id) else { return nil }
            defer { s.nodes[id] = n }
            guard !n.frozen, n.inboxHead < n.inbox.count else { return nil }
            let m = n.inbox[n.inboxHead]
            n.inboxHead += 1
            if n.inboxHead == n.inbox.count { n.inbox.removeAll(keepingCapacity: true); n.inboxHead = 0 }
            else if n.inboxHead >= 4096 { n.inbox.removeFirst(n.inboxHead); n.inboxHead = 0 }
            n.queued[m.connection]? -= 1
            return m
        }
    }

    func takeEvents(_ id: UInt64) -> [LinkID] {
        state.withLock { s -> [LinkID] in
            guard let e = s.nodes[id]?.events, !e.isEmpty else { return [] }
            s.nodes[id]?.events.removeAll()
            return e
        }
    }

    func wake(_ id: UInt64) {
        state.withLock { s in
            s.nodes[id]?.woken = true
            Self.signal(id, &s)
        }
    }

    /// Blocks until the node has input, link events or a wake-up (and is not frozen), or the
    /// hub's clock passed `timeout` from now.
    func wait(_ id: UInt64, timeout: UInt64?) -> Readiness {
        let deadline = timeout.map { now &+ $0 }
        while true {
            let (ready, semaphore) = state.withLock { s -> (Readiness?, DispatchSemaphore?) in
                guard let n = s.nodes[id] else { return (.failed, nil) }
                s.nodes[id]?.signalled = false
                s.nodes[id]?.parked = n.frozen
                guard !n.frozen else { return (nil, n.semaphore) }
                var r = Readiness()
                if n.woken { r.insert(.commands); s.nodes[id]?.woken = false }
                if n.pending > 0 { r.insert(.input) }
                if !n.events.isEmpty { r.insert(.links) }
                return (r.isEmpty ? nil : r, n.semaphore)
            }
            if let ready { return ready }
            guard let semaphore else { return .failed }
            let frozen = state.withLock { $0.nodes[id]?.frozen ?? false }
            if !frozen, let deadline {
                let t = now
                if t >= deadline { return [] }
                _ = semaphore.wait(timeout: .now() + .nanoseconds(Int(min(deadline - t, 60_000_000_000))))
            } else {
                semaphore.wait()
            }
        }
    }
}

enum MemoryHubError: Error, CustomStringConvertible {
    case inUse(String)
    var description: String {
        switch self { case .inUse(let e): "\(e) is bound already on this hub" }
    }
}
