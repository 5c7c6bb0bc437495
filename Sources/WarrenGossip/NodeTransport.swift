import WarrenCore
import WarrenEngine

/// The network under a node's driver loop (`DriverLoop`): the seam between the driver's logic
/// (batching, back-pressure, liveness while input is pending, stop) and the sockets. Two
/// implementations: `ZMQTransport` (the product: a bound SUB, an XPUB per link, back-links) and
/// `MemoryTransport` (tests: transports on one `MemoryHub`, no sockets). Modelled on
/// memberlist's `Transport` (transport.go) and its `MockNetwork`.
///
/// What every implementation guarantees the loop:
/// - **One thread.** The loop that owns a transport is the only one that touches it (it is not
///   `Sendable`; it is handed to the node's thread once, `Handover`). `wait` is the only call
///   that blocks.
/// - **Links.** `open` starts an outbound link to a node's inbound side; it connects (and
///   reconnects) by itself. A link is reported ready by `linkEvents` when the remote's inbound
///   side listens on it (its subscriptions arrived), and again after each reconnection; before
///   that the remote may not get what is sent. `close` ends the link at once; what was queued
///   for it may be lost.
/// - **Send.** `send` never blocks and never queues without bound: a message the link cannot take
///   now (its queue is full) is `.refused`, and the caller counts it. A message reaches the
///   remote only if its topic starts with one of the remote's subscribed prefixes; messages on
///   one link arrive in order and at most once.
/// - **Receive.** Every inbound message has two parts (topic, body) and names the connection it
///   arrived on (nil if the transport cannot tell). `receive` never blocks.
/// - **Readiness.** `wait` returns when input or a link event may be pending, when the node's
///   `DriverWakeup` was woken (a command is queued), or when the timeout has passed.
/// - **Time.** `clock` is the node's engine time (monotonic nanoseconds).
protocol NodeTransport: ~Copyable, SendableMetatype {
    associatedtype Clock: DriverClock
    var clock: Clock { get }

    /// Opens link `link` to `address` (the remote's inbound side). Throws if the link cannot be
    /// made at all (a bad endpoint); an unreachable remote is no error (no link event follows).
    mutating func open(_ link: LinkID, to address: PeerAddress) throws
    /// Closes a link (and whatever else carries it). Unknown links are ignored.
    mutating func close(_ link: LinkID)
    /// Whether `send` on this link goes anywhere (it is open, or carried another way).
    func canSend(on link: LinkID) -> Bool
    /// Sends a 2-part message on a link without blocking.
    mutating func send(_ link: LinkID, topic: Topic, body: [UInt8]) -> SendOutcome

    /// Accepts inbound messages whose topic starts with `prefix` (`[]`: all). Counted: two
    /// subscriptions of one prefix need two unsubscriptions.
    mutating func subscribe(_ prefix: [UInt8]) throws
    mutating func unsubscribe(_ prefix: [UInt8]) throws
    /// A closed overlay's allow-list changed: inbound messages on connections authenticated with
    /// other keys are dropped from now on (`TransportStats.unadmittedFrames`).
    mutating func admit(_ keys: Set<Key>)

    /// Blocks until something may be pending or `timeout` nanoseconds have passed (nil: no
    /// limit). Consumes a wake-up.
    mutating func wait(timeout: UInt64?) -> Readiness
    /// The next inbound message, nil when none is waiting. Its views stay valid until the next
    /// call to the transport.
    mutating func receive() -> InboundMessage?
    /// Links that became ready since the last call. `directory` tells which of the node's links
    /// reaches the peer whose HELLO carried a token (ZeroMQ's back-links need it).
    mutating func linkEvents(_ directory: borrowing some LinkDirectory, into events: inout [LinkEvent])

    var stats: TransportStats { get }
    /// Closes everything the transport opened. Nothing may be called after it.
    mutating func shutdown()
}

/// The clock of a transport: engine time in nanoseconds, never going back.
protocol DriverClock {
    var now: UInt64 { get }
}

/// Wakes the node's thread out of `NodeTransport.wait`: a command was queued. Called by any
/// thread, under the node's queue lock; `close` once the node has finished (no wake after it).
protocol DriverWakeup: Sendable {
    func wake()
    func close()
}

/// Which of the node's links reaches a peer, by the token of its HELLO (`GossipEngine`).
protocol LinkDirectory: ~Copyable {
    func link(toPeerWithToken token: UInt64) -> LinkID?
}

extension GossipEngine: LinkDirectory {}

/// What `NodeTransport.wait` found (an input source may still turn out to be empty).
struct Readiness: OptionSet {
    let rawValue: UInt8
    /// A command is queued (the wake-up fired).
    static let commands = Readiness(rawValue: 1)
    /// Inbound messages (`receive`).
    static let input = Readiness(rawValue: 2)
    /// Link events (`linkEvents`).
    static let links = Readiness(rawValue: 4)
    /// Waiting failed: the loop cannot go on.
    static let failed = Readiness(rawValue: 8)
}

/// One inbound message: views into the transport's buffers, valid until the next call to it.
struct InboundMessage {
    var topic: UnsafeBufferPointer<UInt8>
    var body: UnsafeBufferPointer<UInt8>
    var connection: ConnectionID?
}

enum SendOutcome {
    case sent
    /// The link's queue is full (or its carrier refused it): dropped, for the caller to count.
    case refused
    /// No such link: nothing was sent and nothing is counted.
    case noLink
}

/// A link became ready: its remote listens on it (`direct`), or another way to the remote
/// carries it (a back-link the remote opened).
struct LinkEvent: Equatable {
    var link: LinkID
    var direct: Bool
}

/// A transport's counters and gauges, for `NodeStats`.
struct TransportStats {
    /// Inbound messages that did not have exactly 2 parts.
    var badMultipart: UInt64 = 0
    /// Inbound frames dropped because their connection's key left the allow-list.
    var unadmittedFrames: UInt64 = 0
    /// Handshakes refused (closed overlay).
    var refused: UInt64 = 0
    /// Open links (with those only a back-link carries).
    var links = 0
    var backlinksCarried = 0
    var backlinksOpen = 0
    var backlinkDrops: UInt64 = 0
    var backlinksRefused: UInt64 = 0
}
