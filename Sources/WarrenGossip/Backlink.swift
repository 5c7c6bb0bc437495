import CZeroMQ
import Foundation
import Glibc
import WarrenEngine

/// Back-links (docs/PROTOCOL.md §1, "Back-links"): how a node that cannot be dialled — behind a
/// NAT or a firewall that lets only outbound connections through — still receives from the
/// nodes it dials. Every link is an XPUB that connects to the remote SUB, so frames flow from
/// the dialer to the listener only; the listener normally dials back. When it cannot, the
/// dialer opens a second connection of its own: a DEALER to the listener's back-link ROUTER,
/// over which the listener sends what it would have sent on its own link.
///
/// - The listener announces its back-link port with one extra subscription on its SUB (which
///   ZeroMQ sends to every connected XPUB): `announcement(port:)`, 34 bytes, longer than any
///   topic, so it matches no frame. Nodes that know nothing of back-links take it for one more
///   subscription.
/// - The dialer, when that announcement arrives on its link L, connects a DEALER to the port on
///   the host it dialled, with routing id `routingID(token: L)`: 0xB1 and L's id, which it also
///   sent as the token of its HELLO. Only the two nodes know it, so nobody else can take the
///   route. ZeroMQ's probe (an empty message) tells the listener on every (re)connection.
/// - The listener finds its own link bound to the node with that token (`GossipEngine.link(
///   toPeerWithToken:)`) and, unless that link is already ready on its own, carries it on the
///   route: frames for it go to the ROUTER as `[routing id, topic, body]`, and the engine is told
///   the link is ready (HELLO). If its own link becomes ready later, frames go there again and
///   the route is closed (`close`): a dialer that can be dialled keeps its back-link only for the
///   moment its listener's dial takes.
/// - A leaf dialer's SUB filters; its back-link does the same with `subscribe`/`unsubscribe`
///   messages (one part: the kind, then the prefix). The control topic always passes.
enum Backlink {
    /// The first 32 bytes of the announcement.
    static let magic: [UInt8] = Array("warren/backlink/1".utf8) + [UInt8](repeating: 0, count: 15)

    /// The subscription that announces a back-link port: `magic`, then the port (big-endian).
    static func announcement(port: UInt16) -> [UInt8] { magic + [UInt8(port >> 8), UInt8(port & 0xFF)] }

    /// The port announced by a subscription message as an XPUB receives it (1, then the
    /// subscription), or nil if it is not an announcement.
    static func port(inSubscription m: UnsafeRawBufferPointer) -> UInt16? {
        guard m.count == 1 + magic.count + 2, m[0] == 1, magic.indices.allSatisfy({ m[1 + $0] == magic[$0] }) else { return nil }
        let port = UInt16(m[1 + magic.count]) << 8 | UInt16(m[2 + magic.count])
        return port == 0 ? nil : port
    }

    /// A dialer's routing id on the back-link of its link `token`.
    static func routingID(token: UInt64) -> [UInt8] {
        [0xB1] + (0..<8).map { UInt8(truncatingIfNeeded: token >> (56 - 8 * UInt64($0))) }
    }

    /// The token in a routing id made by `routingID(token:)`.
    static func token(inRoutingID r: [UInt8]) -> UInt64? {
        guard r.count == 9, r[0] == 0xB1 else { return nil }
        return r.dropFirst().reduce(0) { $0 << 8 | UInt64($1) }
    }

    /// Dialer → listener (one part, then the prefix): a leaf's subscriptions.
    static let subscribe: UInt8 = 1
    static let unsubscribe: UInt8 = 0
    /// Listener → dialer (one part, one byte): the link no longer needs this back-link.
    static let close: UInt8 = 0xC1

    /// Routes (dialers) one listener keeps, and prefixes per route.
    static let maxRoutes = 1_024
    static let maxPrefixes = 1_024
    /// A route whose token names none of our links yet is dropped after this long.
    static let pendingFor: UInt64 = 5_000_000_000
    /// How long the listener's own link keeps dialling once a back-link carries it.
    static let directFor: UInt64 = 10_000_000_000
}

/// The listener's side: the bound ROUTER and the routes dialers opened to it.
struct BacklinkListener {
    struct Route {
        var token: UInt64
        /// Prefixes the dialer subscribed (a leaf's filter); the control topic always passes, and
        /// everything does until the first prefix arrives (it may come after the route carries
        /// its link: a frame is never filtered by a filter not known yet).
        var prefixes: Set<[UInt8]> = []
        var filtering = false
        /// The link it carries, once found.
        var link: LinkID?
        /// When it was opened, then when it started carrying its link.
        var since: UInt64
    }

    let router: ZMQSocket
    let port: UInt16
    var routes: [[UInt8]: Route] = [:]
    /// Links carried on a route, by link.
    var carried: [LinkID: [UInt8]] = [:]
    /// Links carried whose own (dialling) socket was closed.
    var withoutDirect: Set<LinkID> = []
    /// Messages from routing ids that are not back-links, and routes dropped or refused because
    /// `maxRoutes` were open.
    var refused: UInt64 = 0
    /// Frames for a carried link that the ROUTER refused (peer gone, high-water mark).
    var drops: UInt64 = 0
}

/// The dialer's side: a DEALER per link whose listener announced a back-link.
struct BacklinkDialer {
    let socket: ZMQSocket
    /// The connection frames on it are reported on (numbered like the ZAP handler's).
    let connection: ConnectionID
    let endpoint: String
}

extension ZMQTransport {
    // MARK: Listener

    /// Reads what dialers sent to the ROUTER: probes (a new connection) and a leaf's prefixes.
    /// The routes are attached to their links by `attachBacklinkRoutes` (`linkEvents`).
    mutating func receiveBacklinkRoutes() {
        guard var l = backlinks else { return }
        var rid = zmq_msg_t(), part = zmq_msg_t()
        let now = monotonicNanos()
        var drained = false
        defer { routerBacklog = !drained }
        for _ in 0..<4096 {
            zmq_msg_init(&rid)
            if zmq_msg_recv(&rid, l.router.handle, ZMQ_DONTWAIT) < 0 { zmq_msg_close(&rid); drained = true; break }
            let id = [UInt8](UnsafeRawBufferPointer(start: zmq_msg_data(&rid), count: zmq_msg_size(&rid)))
            zmq_msg_close(&rid)
            var payload: [UInt8]?
            var parts = 0
            repeat {
                zmq_msg_init(&part)
                _ = zmq_msg_recv(&part, l.router.handle, ZMQ_DONTWAIT)
                parts += 1
                if parts == 1 { payload = [UInt8](UnsafeRawBufferPointer(start: zmq_msg_data(&part), count: zmq_msg_size(&part))) }
                let more = zmq_msg_more(&part) != 0
                zmq_msg_close(&part)
                if !more { break }
            } while true
            guard parts == 1, let payload, let token = Backlink.token(inRoutingID: id) else { l.refused &+= 1; continue }
            if l.routes[id] == nil {
                if l.routes.count >= Backlink.maxRoutes {
                    // Full: the oldest route that carries nothing yet makes room (one that carries a
                    // link has proved its token and stays); with none, the new one is refused.
                    guard let oldest = l.routes.filter({ $0.value.link == nil }).min(by: { $0.value.since < $1.value.since })?.key else {
                        l.refused &+= 1
                        continue
                    }
                    l.routes[oldest] = nil
                    l.refused &+= 1
                }
                l.routes[id] = .init(token: token, since: now)
                logger.debug("back-link opened", metadata: ["token": "\(String(token, radix: 16))"])
            }
            if let kind = payload.first, kind == Backlink.subscribe || kind == Backlink.unsubscribe {
                let prefix = Array(payload.dropFirst())
                l.routes[id]?.filtering = true
                if kind == Backlink.unsubscribe { l.routes[id]?.prefixes.remove(prefix) }
                else if l.routes[id]!.prefixes.count < Backlink.maxPrefixes { l.routes[id]?.prefixes.insert(prefix) }
            }
        }
        backlinks = l
    }

    /// Attaches routes to the links they carry (a route can arrive before its HELLO; `directory`
    /// names the link bound to a token's peer), drops the ones that found none in time, and
    /// closes the dialling sockets of links carried long enough. A link a route now carries is
    /// reported ready (not `direct`).
    mutating func attachBacklinkRoutes(_ directory: borrowing some LinkDirectory, into events: inout [LinkEvent]) {
        guard var l = backlinks else { return }
        let now = monotonicNanos()
        attachedAt = now
        var ready: [LinkID] = []
        for (id, r) in l.routes where r.link == nil {
            guard let link = directory.link(toPeerWithToken: r.token) else {
                if now &- r.since >= Backlink.pendingFor { l.routes[id] = nil; sendClose(id, on: l.router) }
                continue
            }
            if directReady.contains(link) && l.carried[link] == nil {
                // Our own link reaches it: no back-link needed.
                l.routes[id] = nil
                sendClose(id, on: l.router)
                continue
            }
            if let old = l.carried[link], old != id { l.routes[old] = nil; sendClose(old, on: l.router) }
            l.routes[id]?.link = link
            l.routes[id]?.since = now
            l.carried[link] = id
            ready.append(link)
            logger.debug("link carried on the remote's back-link (it cannot be dialled)",
                         metadata: ["endpoint": "\(addresses[link]?.description ?? "-")", "link": "\(link)"])
        }
        // A link still carried has not become ready on its own (that ends the carrying).
        for (link, id) in l.carried where !l.withoutDirect.contains(link) {
            guard let r = l.routes[id], now &- r.since >= Backlink.directFor, let s = links.removeValue(forKey: link) else { continue }
            s.close()
            linkOrder.removeAll { $0 == link }
            pollDirty = true
            l.withoutDirect.insert(link)
            logger.debug("stopped dialling a neighbour that only its back-link reaches",
                         metadata: ["endpoint": "\(addresses[link]?.description ?? "-")", "link": "\(link)"])
        }
        backlinks = l
        for link in ready { events.append(LinkEvent(link: link, direct: false)) }
    }

    /// Our own link became ready: it no longer needs the route that carried it.
    mutating func directLinkReady(_ link: LinkID) {
        guard let id = backlinks?.carried.removeValue(forKey: link) else { return }
        backlinks?.routes[id] = nil
        if let r = backlinks?.router { sendClose(id, on: r) }
    }

    /// The node closed a link: its route goes too.
    mutating func closeBacklinkRoute(of link: LinkID) {
        backlinks?.withoutDirect.remove(link)
        guard let id = backlinks?.carried.removeValue(forKey: link) else { return }
        backlinks?.routes[id] = nil
        if let r = backlinks?.router { sendClose(id, on: r) }
    }

    mutating func sendClose(_ id: [UInt8], on router: ZMQSocket) {
        markSent(routerEntry)
        var close = Backlink.close
        id.withUnsafeBytes { r in
            if zmq_send(router.handle, r.baseAddress, r.count, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0 {
                _ = zmq_send(router.handle, &close, 1, ZMQ_DONTWAIT)
            }
        }
    }

    /// Sends a message of a carried link on its route; false if the ROUTER refused it or the
    /// route's filter does not pass the topic (leaf).
    mutating func sendCarried(_ link: LinkID, route id: [UInt8], topic: Topic, body: [UInt8]) -> Bool {
        guard let l = backlinks, let r = l.routes[id] else { return false }
        let t = topic.bytes
        guard !r.filtering || topic.isControl || r.prefixes.contains([]) || r.prefixes.contains(t) else { return true }
        markSent(routerEntry)
        let sent = id.withUnsafeBytes { rp in
            t.withUnsafeBytes { tp in
                body.withUnsafeBytes { bp in
                    // ROUTER_MANDATORY: a routing id that is not connected is an error, not a silent drop.
                    zmq_send(l.router.handle, rp.baseAddress, rp.count, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0
                        && zmq_send(l.router.handle, tp.baseAddress, tp.count, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0
                        && zmq_send(l.router.handle, bp.baseAddress, bp.count, ZMQ_DONTWAIT) >= 0
                }
            }
        }
        if !sent { backlinks?.drops &+= 1 }
        return sent
    }

    // MARK: Dialer

    /// The listener of `link` announced a back-link on `port`: (re)open ours to it.
    mutating func openBacklink(for link: LinkID, port: UInt16) {
        closeBacklink(of: link)
        guard let address = addresses[link], let dialled = try? TCPEndpoint(parsing: address.endpoint, for: .dial) else { return }
        let endpoint = TCPEndpoint(host: dialled.host, port: port).description
        do {
            let s = try dial(ZMQ_DEALER, endpoint, serverKey: address.key) { [receiveHWM] s in
                try s.set(ZMQ_ROUTING_ID, bytes: Backlink.routingID(token: link.raw))
                try s.set(ZMQ_PROBE_ROUTER, 1)
                try s.set(ZMQ_RCVHWM, receiveHWM)
                try s.set(ZMQ_MAXMSGSIZE, int64: Int64(Frame.maxBodyBytes))
            }
            for p in subscribedPrefixes { sendPrefix(p, kind: Backlink.subscribe, on: s) }
            backDialers[link] = BacklinkDialer(socket: s, connection: .backlink(ZAPService.shared.nextConnectionNumber()),
                                               endpoint: endpoint)
            pollDirty = true
            logger.debug("opening a back-link", metadata: ["endpoint": "\(endpoint)", "link": "\(link)"])
        } catch {
            logger.warning("cannot open a back-link", metadata: ["endpoint": "\(endpoint)", "error": "\(error)"])
        }
    }

    /// Our link `link` was closed: its back-link is still read for `backlinkGrace` (the
    /// engine's `deadAfter`), then closed. Until the listener notices that this node has gone
    /// quiet on that link, it may go on sending on the back-link it carries the link on, and a
    /// routed frame among what it sends is its message's only copy: closing at once lost those
    /// (`warren demo --nodes 64 --routing`, where nodes close contact links they no longer want).
    mutating func retireBacklink(of link: LinkID) {
        guard backDialers[link] != nil, retiringBacklinks[link] == nil else { return }
        retiringBacklinks[link] = monotonicNanos() &+ backlinkGrace
    }

    /// Closes the retired back-links whose time is up.
    mutating func closeRetiredBacklinks(now: UInt64) {
        for (link, until) in retiringBacklinks where now >= until { closeBacklink(of: link) }
    }

    mutating func closeBacklink(of link: LinkID) {
        retiringBacklinks[link] = nil
        guard let d = backDialers.removeValue(forKey: link) else { return }
        d.socket.close()
        pollDirty = true
    }

    func sendPrefix(_ prefix: [UInt8], kind: UInt8, on s: ZMQSocket) {
        let m = [kind] + prefix
        m.withUnsafeBytes { _ = zmq_send(s.handle, $0.baseAddress, $0.count, ZMQ_DONTWAIT) }
    }

    /// A subscription change of the SUB, mirrored on every back-link.
    mutating func noteSubscription(_ prefix: [UInt8], subscribe: Bool) {
        if subscribe { subscribedPrefixes.append(prefix) }
        else if let i = subscribedPrefixes.firstIndex(of: prefix) { subscribedPrefixes.remove(at: i) }
        for (id, d) in backDialers {
            sendPrefix(prefix, kind: subscribe ? Backlink.subscribe : Backlink.unsubscribe, on: d.socket)
            markUnsettled(dialerEntry[id])
        }
    }

    /// The next frame the listener sent on our back-link of `link` (nil: drained, or the listener
    /// closed it with `close`, or the back-link is gone).
    mutating func receiveBacklink(_ link: LinkID) -> InboundMessage? {
        guard let d = backDialers[link] else { return nil }
        let topic = current, body = current + 1
        while true {
            zmq_msg_init(topic)
            if zmq_msg_recv(topic, d.socket.handle, ZMQ_DONTWAIT) < 0 { zmq_msg_close(topic); return nil }
            guard zmq_msg_more(topic) != 0 else {
                let isClose = zmq_msg_size(topic) == 1 && zmq_msg_data(topic).load(as: UInt8.self) == Backlink.close
                zmq_msg_close(topic)
                if isClose {
                    logger.debug("back-link closed by the remote (it dials this node)", metadata: ["endpoint": "\(d.endpoint)"])
                    closeBacklink(of: link)
                    return nil
                }
                badMultipart &+= 1
                continue
            }
            zmq_msg_init(body)
            _ = zmq_msg_recv(body, d.socket.handle, ZMQ_DONTWAIT)
            if zmq_msg_more(body) != 0 {
                badMultipart &+= 1
                dropRest(of: d.socket)
                zmq_msg_close(topic); zmq_msg_close(body)
                continue
            }
            inputSinceAttach = true
            return hold(connection: d.connection)
        }
    }
}
