import Foundation
import Logging
import Testing
import WarrenEngine
@testable import WarrenGossip

/// `ZMQTransport.wait` polls each socket's `ZMQ_FD`, which signals only a change and only until
/// the socket processes its mailbox: what is already queued, or a signal a send took with it,
/// must still be read. These drive two transports on loopback by hand, one pass at a time.
@Suite(.timeLimit(.minutes(1)))
struct ZMQTransportTests {
    struct NoDirectory: LinkDirectory {
        func link(toPeerWithToken token: UInt64) -> LinkID? { nil }
    }

    static func transport(_ id: UInt64) throws -> ZMQTransport {
        var c = GossipConfiguration.local()
        c.backlinkEnabled = false   // no subscription of its own: readiness comes only from the test
        return try ZMQTransport(configuration: c, context: .shared, nodeID: NodeID(raw: id), logger: Logger(label: "test"))
    }

    static func topic(_ b: UInt8) -> Topic { Topic(bytes: [UInt8](repeating: b, count: 32))! }

    /// Sends without pause on a link (each send may process the link's mailbox and take a
    /// signal with it) while the remote subscribes: the link is still reported ready.
    @Test func aLinkSentOnWithoutPauseStillSeesItsRemoteSubscribe() throws {
        var a = try Self.transport(1), b = try Self.transport(2)
        defer { a.shutdown(); b.shutdown() }
        let link = LinkID(raw: 7)
        try a.open(link, to: PeerAddress(parsing: b.advertised))
        var events: [LinkEvent] = []
        let start = monotonicNanos()
        var subscribed = false
        var readyAfter: UInt64?
        while monotonicNanos() - start < 3_000_000_000 {
            // A send at least a millisecond after the last one processes the link's mailbox (ZeroMQ
            // throttles that to about once a millisecond): a subscription that arrived in the
            // pause is taken in by the send, and its signal with it.
            Thread.sleep(forTimeInterval: 0.005)
            _ = a.send(link, topic: Self.topic(0x42), body: [0, 1, 2, 3])
            _ = a.wait(timeout: 0)
            a.linkEvents(NoDirectory(), into: &events)
            if !subscribed && monotonicNanos() - start > 200_000_000 {
                try b.subscribe([0x42])
                _ = b.wait(timeout: 0)
                subscribed = true
            } else if subscribed {
                _ = b.wait(timeout: 0)
                while b.receive() != nil {}
            }
            if events.contains(LinkEvent(link: link, direct: true)) {
                readyAfter = monotonicNanos() - start
                break
            }
        }
        #expect(subscribed)
        #expect(readyAfter != nil, "the link never reported the remote's subscription while it was sent on")
    }

    /// A source read only in part is read again on the next pass, though its descriptor does
    /// not signal again: nothing queued is left behind.
    @Test func aSocketReadInPartIsReadAgainWithoutANewSignal() throws {
        var a = try Self.transport(1), b = try Self.transport(2)
        defer { a.shutdown(); b.shutdown() }
        let link = LinkID(raw: 7)
        try b.subscribe([])
        try a.open(link, to: PeerAddress(parsing: b.advertised))
        var events: [LinkEvent] = []
        let start = monotonicNanos()
        while !events.contains(LinkEvent(link: link, direct: true)) && monotonicNanos() - start < 3_000_000_000 {
            _ = a.wait(timeout: 10_000_000)
            a.linkEvents(NoDirectory(), into: &events)
            // The SUB attaches the connection (and subscribes on it) when it runs.
            _ = b.wait(timeout: 0)
            while b.receive() != nil {}
        }
        #expect(events.contains(LinkEvent(link: link, direct: true)))
        for i in 0..<3 { #expect(a.send(link, topic: Self.topic(0x42), body: [0, UInt8(i)]) == .sent) }
        // Wait until the first message is there, then take one message only.
        var ready = Readiness()
        while !ready.contains(.input) && monotonicNanos() - start < 3_000_000_000 { ready = b.wait(timeout: 10_000_000) }
        #expect(ready.contains(.input))
        // All three may not have arrived yet: give them the time, without reading.
        Thread.sleep(forTimeInterval: 0.1)
        #expect(b.receive().map { Array($0.body) } == [0, 0])
        // Not read to the end: the next pass reports it without waiting for the descriptor
        // (which signalled once, for the first message), and the rest is read.
        let before = monotonicNanos()
        let again = b.wait(timeout: 2_000_000_000)
        #expect(again.contains(.input))
        #expect(monotonicNanos() - before < 1_000_000_000, "the pass waited for a signal that does not come")
        var rest: [[UInt8]] = []
        while let m = b.receive() { rest.append(Array(m.body)) }
        // (On a busy machine the last ones may still be on their way: they signal when they come.)
        while rest.count < 2 && monotonicNanos() - start < 5_000_000_000 {
            if b.wait(timeout: 10_000_000).contains(.input) { while let m = b.receive() { rest.append(Array(m.body)) } }
        }
        #expect(rest == [[0, 1], [0, 2]])
    }

    // MARK: Back-links

    /// Names link `link` as the one bound to the peer with HELLO token `token` (what the engine
    /// does once that peer's HELLO arrived).
    struct OneLink: LinkDirectory {
        let token: UInt64, link: LinkID
        func link(toPeerWithToken t: UInt64) -> LinkID? { t == token ? link : nil }
    }

    /// A transport that announces a back-link (the default of a node).
    static func listener(_ id: UInt64) throws -> ZMQTransport {
        try ZMQTransport(configuration: .local(), context: .shared, nodeID: NodeID(raw: id), logger: Logger(label: "test"))
    }

    /// A dials B (link `dialled`); B, which has not dialled A, carries its link `carried` to A on
    /// A's back-link. Returns once B can send on it.
    static func carriedBacklink(_ a: inout ZMQTransport, _ b: inout ZMQTransport, dialled: LinkID, carried: LinkID) throws -> Bool {
        try a.subscribe([])
        try b.subscribe([])
        try a.open(dialled, to: PeerAddress(parsing: b.advertised))
        var events: [LinkEvent] = []
        let start = monotonicNanos()
        while !b.canSend(on: carried) && monotonicNanos() - start < 5_000_000_000 {
            _ = a.wait(timeout: 5_000_000)
            while a.receive() != nil {}
            a.linkEvents(NoDirectory(), into: &events)
            _ = b.wait(timeout: 5_000_000)
            while b.receive() != nil {}
            b.linkEvents(OneLink(token: dialled.raw, link: carried), into: &events)
        }
        return b.canSend(on: carried)
    }

    /// A busy SUB does not starve a back-link: the driver ends most passes after one turn of
    /// messages (a timer is due), and each pass used to begin with the SUB again, so a frame
    /// on a back-link waited until the SUB ran dry — under a flood, for as long as it lasted.
    @Test func aBusySubDoesNotStarveABacklink() throws {
        var a = try Self.transport(1), b = try Self.listener(2), c = try Self.transport(3)
        defer { a.shutdown(); b.shutdown(); c.shutdown() }
        let carried = LinkID(raw: 99)
        #expect(try Self.carriedBacklink(&a, &b, dialled: LinkID(raw: 7), carried: carried))
        // C fills A's SUB.
        let flood = LinkID(raw: 8)
        try c.open(flood, to: PeerAddress(parsing: a.advertised))
        var events: [LinkEvent] = []
        let start = monotonicNanos()
        while !events.contains(LinkEvent(link: flood, direct: true)) && monotonicNanos() - start < 3_000_000_000 {
            _ = c.wait(timeout: 5_000_000)
            c.linkEvents(NoDirectory(), into: &events)
            _ = a.wait(timeout: 0)
            while a.receive() != nil {}
        }
        for i in 0..<2_000 { _ = c.send(flood, topic: Self.topic(0x42), body: [0, UInt8(i & 0xff)]) }
        #expect(b.send(carried, topic: Self.topic(0x43), body: [1, 1]) == .sent)
        Thread.sleep(forTimeInterval: 0.3)
        // Passes of one turn each, as the driver makes them when a timer is due after each turn.
        var fromSub = 0, backlinkAfter: Int?
        while backlinkAfter == nil && monotonicNanos() - start < 5_000_000_000 {
            _ = a.wait(timeout: 1_000_000)
            for _ in 0..<ZMQTransport.turn {
                guard let m = a.receive() else { break }
                if m.connection?.isBacklink == true { backlinkAfter = fromSub; break }
                fromSub += 1
            }
        }
        #expect(backlinkAfter != nil, "the back-link's frame never arrived")
        #expect((backlinkAfter ?? .max) <= 2 * ZMQTransport.turn,
                "read \(backlinkAfter ?? fromSub) SUB messages before the back-link's one")
    }

    /// A link closed here keeps its back-link readable for the engine's `deadAfter`: what the
    /// listener still sends on it before it notices (a routed frame: its message's only copy)
    /// arrives; then the back-link closes.
    @Test func aClosedLinksBacklinkIsReadUntilItsGraceEnds() throws {
        var a = try Self.transport(1), b = try Self.listener(2)
        defer { a.shutdown(); b.shutdown() }
        let dialled = LinkID(raw: 7), carried = LinkID(raw: 99)
        #expect(try Self.carriedBacklink(&a, &b, dialled: dialled, carried: carried))
        a.close(dialled)
        #expect(b.send(carried, topic: Self.topic(0x43), body: [1, 2]) == .sent)
        var got: [UInt8]?
        var events: [LinkEvent] = []
        let start = monotonicNanos()
        while got == nil && monotonicNanos() - start < 1_000_000_000 {
            _ = a.wait(timeout: 5_000_000)
            while let m = a.receive() { if m.connection?.isBacklink == true { got = Array(m.body) } }
            a.linkEvents(NoDirectory(), into: &events)
        }
        #expect(got == [1, 2], "the frame sent after the link closed here was lost")
        #expect(a.backDialers.count == 1)
        // After the grace (1.5 s in the local preset) the back-link is closed.
        while !a.backDialers.isEmpty && monotonicNanos() - start < 4_000_000_000 {
            _ = a.wait(timeout: 50_000_000)
            a.linkEvents(NoDirectory(), into: &events)
        }
        #expect(a.backDialers.isEmpty, "the back-link of a closed link stayed open")
        #expect(monotonicNanos() - start >= GossipConfiguration.local().engine.deadAfter)
    }
}
