import Dispatch
import Testing
import WarrenEngine
@testable import WarrenGossip

/// `MemoryTransport` keeps `NodeTransport`'s guarantees the way ZeroMQ's XPUB→SUB links do:
/// readiness when the remote subscribes, filtering by the remote's prefixes, bounded queues,
/// connection numbers, reconnection to whoever binds the endpoint next.
@Suite struct MemoryTransportTests {
    struct NoDirectory: LinkDirectory {
        func link(toPeerWithToken token: UInt64) -> LinkID? { nil }
    }

    static func topic(_ b: UInt8) -> Topic { Topic(bytes: [UInt8](repeating: b, count: 32))! }

    static func events(_ t: inout MemoryTransport) -> [LinkEvent] {
        var e: [LinkEvent] = []
        t.linkEvents(NoDirectory(), into: &e)
        return e
    }

    /// Drains what waits for `t`: (topic's first byte, body, connection).
    static func drain(_ t: inout MemoryTransport) -> [(UInt8, [UInt8], ConnectionID?)] {
        var got: [(UInt8, [UInt8], ConnectionID?)] = []
        while let m = t.receive() { got.append((m.topic[0], Array(m.body), m.connection)) }
        return got
    }

    @Test func messagesHonourTheReceiversSubscriptions() throws {
        let hub = MemoryHub()
        var listener = try MemoryTransport(hub: hub, endpoint: "tcp://10.0.0.1:1", sendHighWaterMark: 0, receiveHighWaterMark: 0)
        var a = try MemoryTransport(hub: hub, endpoint: "tcp://10.0.0.2:1", sendHighWaterMark: 0, receiveHighWaterMark: 0)
        var b = try MemoryTransport(hub: hub, endpoint: "tcp://10.0.0.3:1", sendHighWaterMark: 0, receiveHighWaterMark: 0)
        let la = LinkID(raw: 1), lb = LinkID(raw: 2)
        try a.open(la, to: PeerAddress(parsing: "tcp://10.0.0.1:1"))
        try b.open(lb, to: PeerAddress(parsing: "tcp://10.0.0.1:1"))
        // Connected, but nothing is subscribed: not ready, and what is sent goes nowhere.
        #expect(Self.events(&a).isEmpty)
        #expect(a.send(la, topic: Self.topic(0x42), body: [1]) == .sent)
        #expect(listener.wait(timeout: 0) == [])

        try listener.subscribe([0x42])
        #expect(Self.events(&a) == [LinkEvent(link: la, direct: true)])
        #expect(Self.events(&b) == [LinkEvent(link: lb, direct: true)])
        #expect(a.send(la, topic: Self.topic(0x42), body: [2]) == .sent)
        #expect(a.send(la, topic: Self.topic(0x43), body: [3]) == .sent)   // filtered at the receiver
        #expect(b.send(lb, topic: Self.topic(0x42), body: [4]) == .sent)
        #expect(a.send(LinkID(raw: 99), topic: Self.topic(0x42), body: [5]) == .noLink)
        #expect(listener.wait(timeout: 0).contains(.input))
        let got = Self.drain(&listener)
        #expect(got.map(\.0) == [0x42, 0x42] && got.map(\.1) == [[2], [4]])
        // Each link is a connection of its own.
        #expect(got[0].2 != nil && got[1].2 != nil && got[0].2 != got[1].2)

        // Unsubscribed: filtered again; everything subscribed (`[]`): everything passes.
        try listener.unsubscribe([0x42])
        #expect(a.send(la, topic: Self.topic(0x42), body: [6]) == .sent)
        #expect(Self.drain(&listener).isEmpty)
        try listener.subscribe([])
        #expect(a.send(la, topic: Self.topic(0x43), body: [7]) == .sent)
        #expect(Self.drain(&listener).map(\.1) == [[7]])
        listener.shutdown(); a.shutdown(); b.shutdown()
    }

    @Test func aFullConnectionRefusesAndALinkReconnectsToTheNextBinder() throws {
        let hub = MemoryHub()
        var a = try MemoryTransport(hub: hub, endpoint: "tcp://10.0.0.2:1", sendHighWaterMark: 2, receiveHighWaterMark: 3)
        let link = LinkID(raw: 7)
        // Dialled before anyone listens: connects when a transport binds there.
        try a.open(link, to: PeerAddress(parsing: "tcp://10.0.0.1:1"))
        var first = try MemoryTransport(hub: hub, endpoint: "tcp://10.0.0.1:1", sendHighWaterMark: 2, receiveHighWaterMark: 3)
        #expect(throws: MemoryHubError.self) {
            _ = try MemoryTransport(hub: hub, endpoint: "tcp://10.0.0.1:1", sendHighWaterMark: 0, receiveHighWaterMark: 0)
        }
        try first.subscribe([])
        #expect(Self.events(&a).map(\.link) == [link])
        // The dialer's send queue (2) and the listener's receive queue (3): 5, then refusals.
        let outcomes = (0..<8).map { a.send(link, topic: Self.topic(1), body: [UInt8($0)]) }
        #expect(outcomes == Array(repeating: .sent, count: 5) + Array(repeating: .refused, count: 3))
        #expect(hub.pending("tcp://10.0.0.1:1") == 5)
        #expect(Self.drain(&first).count == 5)
        #expect(a.send(link, topic: Self.topic(1), body: [9]) == .sent)
        first.shutdown()
        #expect(!hub.isBound("tcp://10.0.0.1:1"))

        // A new node at the endpoint: the link connects again and is ready once it subscribes.
        var second = try MemoryTransport(hub: hub, endpoint: "tcp://10.0.0.1:1", sendHighWaterMark: 2, receiveHighWaterMark: 3)
        #expect(Self.events(&a).isEmpty)
        try second.subscribe([])
        #expect(Self.events(&a).map(\.link) == [link])
        #expect(a.send(link, topic: Self.topic(1), body: [10]) == .sent)
        #expect(Self.drain(&second).map(\.1) == [[10]])
        a.close(link)
        #expect(!a.canSend(on: link) && a.send(link, topic: Self.topic(1), body: [11]) == .noLink)
        a.shutdown(); second.shutdown()
    }

    @Test func waitReturnsForAWakeUpAndAfterItsTimeout() throws {
        let hub = MemoryHub()
        var t = try MemoryTransport(hub: hub, endpoint: "tcp://10.0.0.1:1", sendHighWaterMark: 0, receiveHighWaterMark: 0)
        let start = hub.now
        #expect(t.wait(timeout: 20_000_000) == [])
        #expect(hub.now - start >= 20_000_000)
        t.wakeup.wake()
        #expect(t.wait(timeout: nil) == .commands)
        // Moving the hub's clock (from another thread) ends a long wait: its deadline passed.
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(50)) { hub.advance(by: 120_000_000_000) }
        let clock = ContinuousClock(), t0 = clock.now
        #expect(t.wait(timeout: 60_000_000_000) == [])
        #expect(clock.now - t0 < .seconds(30))
        t.shutdown()
    }
}
