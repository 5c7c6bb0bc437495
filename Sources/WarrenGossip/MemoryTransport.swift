import WarrenCore
import WarrenEngine

/// A `NodeTransport` on a `MemoryHub`: a node's inbound side bound at an endpoint name, and its
/// links to the others on the hub. No sockets and no threads of its own; `wait` blocks on the
/// hub. Connections carry no keys (`admit` changes nothing) and there are no back-links.
struct MemoryTransport: NodeTransport, ~Copyable {
    struct Clock: DriverClock {
        let hub: MemoryHub
        var now: UInt64 { hub.now }
    }

    let hub: MemoryHub
    let id: UInt64
    let endpoint: String
    var clock: Clock { Clock(hub: hub) }
    /// Links opened and not closed (`canSend`, `stats`).
    var links: Set<LinkID> = []
    /// The message `receive` returned last: its bytes, until the next call.
    var current: UnsafeMutableRawBufferPointer

    /// Binds `endpoint` on the hub (throws if a transport is bound there).
    init(hub: MemoryHub, endpoint: String, sendHighWaterMark: Int32, receiveHighWaterMark: Int32) throws {
        self.hub = hub
        self.endpoint = endpoint
        id = try hub.attach(endpoint: endpoint, sendHWM: sendHighWaterMark, receiveHWM: receiveHighWaterMark)
        current = .allocate(byteCount: 256, alignment: 8)
    }

    deinit { current.deallocate() }

    /// Wakes this transport's `wait` (the node's command queue).
    var wakeup: MemoryWakeup { MemoryWakeup(hub: hub, id: id) }

    mutating func open(_ link: LinkID, to address: PeerAddress) throws {
        links.insert(link)
        hub.open(id, link, to: address.endpoint)
    }

    mutating func close(_ link: LinkID) {
        guard links.remove(link) != nil else { return }
        hub.close(id, link)
    }

    func canSend(on link: LinkID) -> Bool { links.contains(link) }

    mutating func send(_ link: LinkID, topic: Topic, body: [UInt8]) -> SendOutcome {
        hub.send(id, link, topic: topic.bytes, body: body)
    }

    mutating func subscribe(_ prefix: [UInt8]) throws { hub.subscribe(id, prefix, on: true) }
    mutating func unsubscribe(_ prefix: [UInt8]) throws { hub.subscribe(id, prefix, on: false) }
    mutating func admit(_ keys: Set<Key>) {}

    mutating func wait(timeout: UInt64?) -> Readiness { hub.wait(id, timeout: timeout) }

    mutating func receive() -> InboundMessage? {
        guard let m = hub.receive(id) else { return nil }
        let n = m.topic.count + m.body.count
        if n > current.count {
            current.deallocate()
            current = .allocate(byteCount: max(n, 2 * current.count), alignment: 8)
        }
        m.topic.withUnsafeBytes { current.copyMemory(from: $0) }
        m.body.withUnsafeBytes { UnsafeMutableRawBufferPointer(rebasing: current[m.topic.count...]).copyMemory(from: $0) }
        let bytes = UnsafeBufferPointer(start: current.baseAddress!.assumingMemoryBound(to: UInt8.self), count: n)
        return InboundMessage(topic: UnsafeBufferPointer(rebasing: bytes[..<m.topic.count]),
                              body: UnsafeBufferPointer(rebasing: bytes[m.topic.count...]),
                              connection: ConnectionID(raw: m.connection))
    }

    mutating func linkEvents(_ directory: borrowing some LinkDirectory, into events: inout [LinkEvent]) {
        for link in hub.takeEvents(id) where links.contains(link) { events.append(LinkEvent(link: link, direct: true)) }
    }

    var stats: TransportStats {
        var s = TransportStats()
        s.links = links.count
        return s
    }

    mutating func shutdown() {
        links.removeAll()
        hub.detach(id)
    }
}

/// Wakes a `MemoryTransport`'s `wait`.
struct MemoryWakeup: DriverWakeup {
    let hub: MemoryHub
    let id: UInt64
    func wake() { hub.wake(id) }
    func close() {}
}
