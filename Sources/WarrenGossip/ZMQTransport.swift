import CZeroMQ
import Foundation
import Glibc
import Logging
import WarrenCore
import WarrenEngine

/// The product's `NodeTransport`: a bound SUB socket (the inbound side), one XPUB per link that
/// connects to the remote's SUB, and the back-links (Backlink.swift) — a ROUTER other nodes'
/// back-links connect to, and a DEALER per link whose listener cannot dial us back. One
/// `poll(2)` over the wake-up pipe and every socket's `ZMQ_FD` is `wait`. Non-copyable: exactly one owner
/// (the node's thread) holds its sockets, and `shutdown` closes them.
struct ZMQTransport: NodeTransport, ~Copyable {
    struct Clock: DriverClock {
        var now: UInt64 { monotonicNanos() }
    }
    var clock: Clock { Clock() }

    let sub: ZMQSocket
    let context: ZMQContext
    let wakeup: PipeWakeup
    let logger: Logger
    let sendHWM: Int32
    let receiveHWM: Int32
    let curve: CurveKeys?
    /// The domain this node registered with the ZAP handler (nil: none), unregistered at shutdown.
    let zapDomain: String?
    /// The endpoint others dial (with the node's key when it has one), and the back-link's.
    let advertised: String
    let backlinkEndpoint: String?

    var links: [LinkID: ZMQSocket] = [:]
    var linkOrder: [LinkID] = []
    /// Where each link dials (its back-link goes to the same host), until it is closed.
    var addresses: [LinkID: PeerAddress] = [:]
    /// Links whose remote SUB's subscription arrived on their own XPUB.
    var directReady: Set<LinkID> = []
    /// Back-links (Backlink.swift): the ROUTER other nodes' back-links connect to (nil: none),
    /// our back-links to the nodes we dial, and the SUB's prefixes they mirror.
    var backlinks: BacklinkListener?
    var backDialers: [LinkID: BacklinkDialer] = [:]
    /// Back-links of links closed here, still read until the time given (`retireBacklink`).
    var retiringBacklinks: [LinkID: UInt64] = [:]
    /// How long a closed link's back-link is read on: the engine's `deadAfter`.
    let backlinkGrace: UInt64
    var subscribedPrefixes: [[UInt8]] = []
    /// Closed overlay, once its allow-list was changed: the keys (base64, as ZAP names a
    /// connection's User-Id) whose frames are accepted. nil before (ZAP alone decides: every
    /// connection it admitted is listed, and the receive path pays nothing).
    var admitted: Set<String>?
    var badMultipart: UInt64 = 0
    var unadmittedFrames: UInt64 = 0

    /// The poll set: the wake-up pipe, then every ZeroMQ socket by its `ZMQ_FD` as a plain
    /// descriptor (the SUB, the ROUTER if any, back-links, links), polled with `poll(2)`.
    /// `zmq_poll` would ask each socket's `ZMQ_EVENTS` before and after it sleeps, one system
    /// call per socket per pass of the loop, on every node, for sockets that are idle on most
    /// passes. `ZMQ_FD` signals only a change (a command in the socket's mailbox: a pipe that
    /// was empty got a message, a new connection), and only until the socket processes its
    /// mailbox. So a socket whose descriptor signals is read, and every read goes on until
    /// ZeroMQ says `EAGAIN` (which processes the mailbox: what arrives later signals again) or
    /// the socket is `unsettled`: read again on the next pass without waiting. Those are also
    /// the sockets not read to the end, and every socket when the set is rebuilt. A send or an
    /// option can process the mailbox too and take a signal with it: links and the ROUTER,
    /// which read only control traffic (subscriptions, back-link routes), are then read at most
    /// every `settleInterval` (`sentOn`), not after every send; the SUB after an option, and
    /// back-links (which carry frames), at once.
    var pollFDs: [pollfd] = []
    var pollSources: [PollSource] = []
    var unsettled: [Bool] = []
    /// Links and the ROUTER sent on since they were last read, and when that was.
    var sentOn: [Bool] = []
    var anySent = false
    var settledAt: UInt64 = 0
    static var settleInterval: UInt64 { 10_000_000 }
    /// Scratch: entries found readable in this `wait` (each is listed once).
    var pollFound: [Bool] = []
    /// The poll entry of each link and back-link, and of the ROUTER (until the set is rebuilt).
    var linkEntry: [LinkID: Int] = [:]
    var dialerEntry: [LinkID: Int] = [:]
    var routerEntry: Int?
    var subEntry: Int?
    var pollDirty = true
    /// What the last `wait` found readable and `receive`/`linkEvents` have not drained yet:
    /// the input sources (nil: the SUB; a link: its back-link), read in turns of `turn`
    /// messages so that a flood on one does not starve the others. The turns go on across
    /// passes: the driver often ends a pass after one turn (a timer is due), and a pass that
    /// began again with the SUB, which `wait` lists first, would never reach a back-link while
    /// the SUB stays busy (its frames, routed ones too, sat unread until the flood ended).
    var readableInputs: [LinkID?] = []
    var inputCursor = 0
    var takenInTurn = 0
    /// The sources the last pass left unread, in the order their turns come (`wait`).
    var unreadInputs: [LinkID?] = []
    static var turn: Int { 64 }
    var routerReadable = false
    /// The ROUTER was not read to the end (it is asked again on the next pass).
    var routerBacklog = false
    var readableLinks: [LinkID] = []
    /// Input arrived since the back-link routes were last attached (a HELLO may name a token),
    /// and when they were attached last (they are re-checked every second).
    var inputSinceAttach = false
    var attachedAt: UInt64 = 0

    /// The message `receive` returned last (topic, body), open until the next call.
    let current: UnsafeMutablePointer<zmq_msg_t>
    var holding = false

    /// Creates, configures and binds the SUB (and the back-link ROUTER), registers the node with
    /// the ZAP handler, and makes the wake-up pipe. Everything is closed again if it throws.
    init(configuration: GossipConfiguration, context: ZMQContext, nodeID: NodeID, logger: Logger) throws {
        let wakeup = try PipeWakeup()
        // Everything opened from here on is closed again if `init` throws.
        var opened: (sockets: [ZMQSocket], zapDomain: String?) = ([], nil)
        var succeeded = false
        defer {
            if !succeeded {
                for s in opened.sockets.reversed() { s.close() }
                wakeup.close()
                if let d = opened.zapDomain { ZAPService.shared.unregister(domain: d) }
            }
        }

        let zapDomain = "warren-" + String(nodeID.raw, radix: 16)
        // The ZAP handler authenticates a closed overlay's links and, in any overlay, numbers the
        // SUB's connections (so each frame is known to come from one connection). It serves the
        // shared context only: a node on another context runs without connection numbers.
        var zap = ZAPService.shared.serves(context)
        if zap || configuration.isClosed {
            do { try ZAPService.shared.start() } catch {
                if configuration.isClosed { throw error }
                logger.warning("no ZAP handler: frames cannot be told apart by connection", metadata: ["error": "\(error)"])
                zap = false
            }
        }

        let sub = try ZMQSocket(context, type: ZMQ_SUB)
        opened.sockets.append(sub)
        try sub.set(ZMQ_RCVHWM, configuration.receiveHighWaterMark)
        // ZeroMQ drops a connection that sends a message part larger than the largest legal
        // body (a BATCH of 64 KiB), before anything is buffered: with the receive high-water mark
        // this bounds what one connection can queue in bytes.
        try sub.set(ZMQ_MAXMSGSIZE, int64: Int64(Frame.maxBodyBytes))
        try sub.set(ZMQ_LINGER, 0)
        try sub.set(ZMQ_HEARTBEAT_IVL, 1000)
        try sub.set(ZMQ_HEARTBEAT_TIMEOUT, 3000)
        var curve: CurveKeys?
        if configuration.isClosed, let nodeKey = configuration.nodeKey {
            // CurveZMQ server: every inbound link is encrypted, and the ZAP handler admits only
            // the allow-listed client keys (per this node's ZAP domain).
            ZAPService.shared.register(domain: zapDomain, allowed: configuration.allowedKeys ?? [], logger: logger)
            opened.zapDomain = zapDomain
            try sub.set(ZMQ_CURVE_SERVER, 1)
            try sub.set(ZMQ_CURVE_SECRETKEY, bytes: nodeKey.key.bytes)
            try sub.set(ZMQ_ZAP_DOMAIN, bytes: Array(zapDomain.utf8))
            curve = CurveKeys(secret: nodeKey.key.bytes, public: nodeKey.publicKey.bytes)
        } else if zap {
            ZAPService.shared.register(domain: zapDomain, allowed: nil, logger: logger)
            opened.zapDomain = zapDomain
            try sub.set(ZMQ_ZAP_DOMAIN, bytes: Array(zapDomain.utf8))
        }
        let registered = configuration.isClosed || zap
        var backlinks: BacklinkListener?
        // Names are resolved here (ZeroMQ would take "localhost" for an interface name).
        let listen = try TCPEndpoint(parsing: configuration.listen, for: .listen).resolved()
        if listen.isIPv6 { try sub.set(ZMQ_IPV6, 1) }
        try sub.bind(listen.description)
        var advertised = try configuration.advertise ?? Self.advertisable(sub.lastEndpoint)
        if configuration.backlinkEnabled {
            backlinks = try Self.bindBacklinks(configuration, context: context, listenHost: listen.host, curve: curve,
                                               zapDomain: registered ? zapDomain : nil, logger: logger)
            if let b = backlinks {
                opened.sockets.append(b.router)
                try sub.set(ZMQ_SUBSCRIBE, bytes: Backlink.announcement(port: b.port))
            }
        }
        // The key travels with the endpoint (HELLO, PEERS, beacons): in a closed overlay it
        // authenticates the server; in an open one it only tells others whose node this is.
        if let k = configuration.nodeKey, !advertised.contains("@") {
            advertised = k.publicKey.base64 + "@" + advertised
        }
        succeeded = true

        self.sub = sub
        self.context = context
        self.wakeup = wakeup
        self.logger = logger
        self.sendHWM = configuration.sendHighWaterMark
        self.backlinkGrace = configuration.engine.deadAfter
        self.receiveHWM = configuration.receiveHighWaterMark
        self.curve = curve
        self.zapDomain = registered ? zapDomain : nil
        self.advertised = advertised
        self.backlinkEndpoint = backlinks.map { TCPEndpoint(host: listen.host, port: $0.port).description }
        self.backlinks = backlinks
        current = .allocate(capacity: 2)
    }

    deinit {
        if holding { zmq_msg_close(current); zmq_msg_close(current + 1) }
        current.deallocate()
    }

    /// Binds the back-link ROUTER (Backlink.swift) where the configuration says, or on the listen
    /// host at any free port. An explicit endpoint that cannot be bound is an error; the default
    /// one only a warning (the node then runs without, as a node before back-links did).
    static func bindBacklinks(_ c: GossipConfiguration, context: ZMQContext, listenHost: String, curve: CurveKeys?, zapDomain: String?,
                              logger: Logger) throws -> BacklinkListener? {
        let r = try ZMQSocket(context, type: ZMQ_ROUTER)
        do { try configureBacklinks(r, c, curve: curve, zapDomain: zapDomain) } catch { r.close(); throw error }
        let endpoint: TCPEndpoint
        do {
            endpoint = try (c.backlink.map { try TCPEndpoint(parsing: $0, for: .listen) } ?? TCPEndpoint(host: listenHost, port: nil)).resolved()
            if endpoint.isIPv6 { try r.set(ZMQ_IPV6, 1) }
            try r.bind(endpoint.description)
        } catch {
            r.close()
            if let pinned = c.backlink { throw BacklinkBindError(endpoint: pinned, reason: "\(error)") }
            logger.warning("no back-link: nodes that cannot be dialled will not receive from this node", metadata: ["error": "\(error)"])
            return nil
        }
        guard let port = (try? TCPEndpoint(parsing: r.lastEndpoint, for: .listen))?.port else { r.close(); return nil }
        return BacklinkListener(router: r, port: port)
    }

    static func configureBacklinks(_ r: ZMQSocket, _ c: GossipConfiguration, curve: CurveKeys?, zapDomain: String?) throws {
        try r.set(ZMQ_ROUTER_MANDATORY, 1)
        try r.set(ZMQ_ROUTER_HANDOVER, 1)
        try r.set(ZMQ_LINGER, 0)
        try r.set(ZMQ_SNDHWM, c.sendHighWaterMark)
        try r.set(ZMQ_RCVHWM, c.receiveHighWaterMark)
        // Dialers send only probes and prefixes (a topic at most); the limit also bounds the
        // handshake's commands (a CurveZMQ INITIATE is a few hundred bytes).
        try r.set(ZMQ_MAXMSGSIZE, int64: Int64(4096))
        try r.set(ZMQ_HEARTBEAT_IVL, 1000)
        try r.set(ZMQ_HEARTBEAT_TIMEOUT, 3000)
        if let curve {
            try r.set(ZMQ_CURVE_SERVER, 1)
            try r.set(ZMQ_CURVE_SECRETKEY, bytes: curve.secret)
        }
        if let zapDomain { try r.set(ZMQ_ZAP_DOMAIN, bytes: Array(zapDomain.utf8)) }
    }

    /// `tcp://0.0.0.0:7001` is where we listen, not where others can dial: advertise the first
    /// address of an interface that is up and not loopback (IPv6 for `[::]`).
    static func advertisable(_ bound: String) throws -> String {
        guard let e = try? TCPEndpoint(parsing: bound, for: .listen), e.isUnspecified else { return bound }
        guard let address = TCPEndpoint.interfaceAddress(ipv6: e.isIPv6) else {
            throw GossipConfigurationError.invalid("\(bound) listens on every interface, but no interface has an address others could dial: give advertise=tcp://HOST:PORT (warren node: --advertise)")
        }
        return TCPEndpoint(host: address, port: e.port).description
    }

    // MARK: Links

    mutating func open(_ link: LinkID, to address: PeerAddress) throws {
        let s = try dial(ZMQ_XPUB, address.endpoint, serverKey: address.key) { [sendHWM] s in
            try s.set(ZMQ_SNDHWM, sendHWM)
            try s.set(ZMQ_XPUB_NODROP, 1)
            try s.set(ZMQ_XPUB_VERBOSE, 1)
        }
        links[link] = s
        linkOrder.append(link)
        addresses[link] = address
        pollDirty = true
    }

    mutating func close(_ link: LinkID) {
        if let s = links.removeValue(forKey: link) {
            s.close()
            linkOrder.removeAll { $0 == link }
            pollDirty = true
        }
        closeBacklinkRoute(of: link)
        retireBacklink(of: link)
        directReady.remove(link)
        addresses[link] = nil
    }

    func canSend(on link: LinkID) -> Bool { links[link] != nil || backlinks?.carried[link] != nil }

    mutating func send(_ link: LinkID, topic: Topic, body: [UInt8]) -> SendOutcome {
        if backlinks?.carried.isEmpty == false, let route = backlinks?.carried[link] {
            return sendCarried(link, route: route, topic: topic, body: body) ? .sent : .refused
        }
        guard let s = links[link] else { return .noLink }
        markSent(linkEntry[link])
        // The topic's 32 bytes on the stack (big-endian words), no buffer to fill.
        var topicWords = topic.bigEndianWords
        let sent = withUnsafeBytes(of: &topicWords) { t in
            body.withUnsafeBytes { b in s.send(topic: t, body: b) }
        }
        return sent ? .sent : .refused
    }

    /// A socket of `type` connected to `endpoint`, as every socket this node dials is: CurveZMQ
    /// client of `serverKey` in a closed overlay, no linger, reconnects every 0.1 … 2 s, ZeroMQ
    /// heartbeats, IPv6 when the endpoint may need it; `configure` sets the rest. Closed again if
    /// anything fails.
    func dial(_ type: Int32, _ endpoint: String, serverKey: Key?, configure: (ZMQSocket) throws -> Void) throws -> ZMQSocket {
        let s = try ZMQSocket(context, type: type)
        do {
            if let curve, let serverKey {
                try s.set(ZMQ_CURVE_SERVERKEY, bytes: serverKey.bytes)
                try s.set(ZMQ_CURVE_PUBLICKEY, bytes: curve.public)
                try s.set(ZMQ_CURVE_SECRETKEY, bytes: curve.secret)
            }
            try configure(s)
            try s.set(ZMQ_LINGER, 0)
            try s.set(ZMQ_RECONNECT_IVL, 100)
            try s.set(ZMQ_RECONNECT_IVL_MAX, 2000)
            try s.set(ZMQ_HEARTBEAT_IVL, 1000)
            try s.set(ZMQ_HEARTBEAT_TIMEOUT, 3000)
            // IPv6 addresses, and names that may resolve to one, need ZMQ_IPV6.
            if let e = try? TCPEndpoint(parsing: endpoint, for: .dial), !e.isIPv4 { try s.set(ZMQ_IPV6, 1) }
            try s.connect(endpoint)
        } catch { s.close(); throw error }
        return s
    }

    // MARK: Subscriptions

    mutating func subscribe(_ prefix: [UInt8]) throws {
        // Back-links mirror the prefix even if the SUB refused it (they filter on their own).
        defer { noteSubscription(prefix, subscribe: true) }
        markUnsettled(subEntry)
        try sub.set(ZMQ_SUBSCRIBE, bytes: prefix)
    }

    mutating func unsubscribe(_ prefix: [UInt8]) throws {
        defer { noteSubscription(prefix, subscribe: false) }
        markUnsettled(subEntry)
        try sub.set(ZMQ_UNSUBSCRIBE, bytes: prefix)
    }

    mutating func admit(_ keys: Set<Key>) { admitted = Set(keys.map(\.base64)) }

    // MARK: Readiness

    mutating func wait(timeout: UInt64?) -> Readiness {
        // Sources left unread (a turn or the limit ended the reading) are read again: their
        // descriptors do not signal what is already queued.
        for source in readableInputs {
            if let link = source { markUnsettled(dialerEntry[link]) } else { markUnsettled(subEntry) }
        }
        if routerBacklog { routerBacklog = false; markUnsettled(routerEntry) }
        // What is still readable shows up again: the lists start afresh, and `orderInputs`
        // puts the sources left unread first, the one whose turn it was at their head.
        // (A cursor past the end follows a turn that ended: `takenInTurn` is 0 then.)
        let c = inputCursor < readableInputs.count ? inputCursor : 0
        unreadInputs.removeAll(keepingCapacity: true)
        unreadInputs.append(contentsOf: readableInputs[c...])
        unreadInputs.append(contentsOf: readableInputs[..<c])
        readableInputs.removeAll(keepingCapacity: true)
        inputCursor = 0
        defer { orderInputs() }
        readableLinks.removeAll(keepingCapacity: true)
        rebuildPollSet()
        var ready = Readiness()
        var found = false
        for i in 1..<pollFDs.count {
            pollFound[i] = false
            if unsettled[i] { unsettled[i] = false; take(i, into: &ready); found = true }
        }
        var timeout = timeout
        if anySent {
            let now = monotonicNanos(), due = settledAt &+ Self.settleInterval
            if now >= due {
                for i in 1..<pollFDs.count where sentOn[i] {
                    sentOn[i] = false
                    if !pollFound[i] { take(i, into: &ready); found = true }
                }
                anySent = false
                settledAt = now
            } else {
                timeout = min(timeout ?? .max, due - now)
            }
        }
        // Something to read already: look at the descriptors without sleeping.
        let timeoutMs = found ? 0 : timeout.map { Int32(min(($0 + 999_999) / 1_000_000, 60_000)) } ?? -1
        let rc = pollFDs.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeoutMs) }
        if rc < 0 {
            let e = errno
            if e == EINTR { return ready }
            logger.error("poll failed", metadata: ["error": "\(String(cString: strerror(e)))"])
            return .failed
        }
        guard rc > 0 else { return ready }
        if pollFDs[0].revents != 0 {
            wakeup.consume()
            ready.insert(.commands)
        }
        for i in 1..<pollFDs.count where pollFDs[i].revents != 0 && !pollFound[i] { take(i, into: &ready) }
        return ready
    }

    /// Puts the sources the last pass left unread (`unreadInputs`) before those found readable
    /// just now, in their turn order; the source whose turn was cut short goes on with it.
    mutating func orderInputs() {
        // A turn goes on only if its source still comes first (not gone, not drained).
        defer { if readableInputs.first != unreadInputs.first { takenInTurn = 0 } }
        // Already in order (the usual case: the SUB alone), nothing to move.
        guard !unreadInputs.isEmpty, !readableInputs.starts(with: unreadInputs) else { return }
        let fresh = readableInputs.filter { !unreadInputs.contains($0) }
        readableInputs = unreadInputs.filter { readableInputs.contains($0) } + fresh
    }

    /// Lists entry `i` to be read by `receive` or `linkEvents`.
    mutating func take(_ i: Int, into ready: inout Readiness) {
        pollFound[i] = true
        switch pollSources[i] {
        case .commands: break
        case .sub: readableInputs.append(nil); ready.insert(.input)
        case .dialer(let link): readableInputs.append(link); ready.insert(.input)
        case .router: routerReadable = true; ready.insert(.links)
        case .link(let link): readableLinks.append(link); ready.insert(.links)
        }
    }

    /// Marks a poll entry to be read on the next pass without waiting for its descriptor.
    mutating func markUnsettled(_ entry: Int?) {
        if let entry, entry < unsettled.count { unsettled[entry] = true }
    }

    /// A link or the ROUTER was sent on: read it within `settleInterval`.
    mutating func markSent(_ entry: Int?) {
        if let entry, entry < sentOn.count, !sentOn[entry] {
            sentOn[entry] = true
            if !anySent { anySent = true; settledAt = monotonicNanos() }
        }
    }

    mutating func rebuildPollSet() {
        guard pollDirty else { return }
        pollFDs.removeAll(keepingCapacity: true)
        pollSources.removeAll(keepingCapacity: true)
        linkEntry.removeAll(keepingCapacity: true)
        dialerEntry.removeAll(keepingCapacity: true)
        pollFDs.append(pollfd(fd: wakeup.readDescriptor, events: Int16(POLLIN), revents: 0))
        pollSources.append(.commands)
        subEntry = addToPollSet(.sub, sub)
        routerEntry = backlinks.flatMap { addToPollSet(.router, $0.router) }
        for (id, d) in backDialers { dialerEntry[id] = addToPollSet(.dialer(id), d.socket) }
        for id in linkOrder { linkEntry[id] = addToPollSet(.link(id), links[id]!) }
        // Every socket is asked once: what arrived before it was polled is not signalled again.
        unsettled = Array(repeating: true, count: pollFDs.count)
        sentOn = Array(repeating: false, count: pollFDs.count)
        anySent = false
        pollFound = Array(repeating: false, count: pollFDs.count)
        pollDirty = false
    }

    /// Adds a socket by its descriptor; returns its entry (nil: ZeroMQ gave it none).
    mutating func addToPollSet(_ source: PollSource, _ s: ZMQSocket) -> Int? {
        guard let fd = s.get(ZMQ_FD) else { return nil }
        pollFDs.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
        pollSources.append(source)
        return pollFDs.count - 1
    }

    // MARK: Receiving

    mutating func receive() -> InboundMessage? {
        if holding { zmq_msg_close(current); zmq_msg_close(current + 1); holding = false }
        while !readableInputs.isEmpty {
            if inputCursor >= readableInputs.count { inputCursor = 0 }
            let m: InboundMessage?
            if let link = readableInputs[inputCursor] { m = receiveBacklink(link) } else { m = receiveData() }
            guard let m else {
                // Drained (or gone): the next source's turn.
                readableInputs.remove(at: inputCursor)
                takenInTurn = 0
                continue
            }
            takenInTurn += 1
            if takenInTurn == Self.turn { takenInTurn = 0; inputCursor += 1 }
            return m
        }
        return nil
    }

    /// The next 2-part message on the SUB (nil: drained). Others are dropped and counted.
    mutating func receiveData() -> InboundMessage? {
        let topic = current, body = current + 1
        while true {
            zmq_msg_init(topic)
            if zmq_msg_recv(topic, sub.handle, ZMQ_DONTWAIT) < 0 { zmq_msg_close(topic); return nil }
            guard zmq_msg_more(topic) != 0 else {
                badMultipart &+= 1
                zmq_msg_close(topic)
                continue
            }
            zmq_msg_init(body)
            _ = zmq_msg_recv(body, sub.handle, ZMQ_DONTWAIT)
            if zmq_msg_more(body) != 0 {
                // More than two parts: drop the whole message.
                badMultipart &+= 1
                dropRest(of: sub)
                zmq_msg_close(topic); zmq_msg_close(body)
                continue
            }
            if let admitted, let uid = zmq_msg_gets(body, "User-Id"),
               !admitted.contains(String(String(cString: uid).prefix { $0 != "#" })) {
                // A connection authenticated before its key left the allow-list (its user id
                // is KEY#N: the key, then the connection's number).
                unadmittedFrames &+= 1
                zmq_msg_close(topic); zmq_msg_close(body)
                continue
            }
            inputSinceAttach = true
            return hold(connection: Self.connection(of: body))
        }
    }

    /// The message in `current` as views (typed buffers: the decoder reads them in place).
    mutating func hold(connection: ConnectionID?) -> InboundMessage {
        holding = true
        let topic = current, body = current + 1
        return InboundMessage(topic: UnsafeBufferPointer(start: zmq_msg_data(topic).assumingMemoryBound(to: UInt8.self), count: zmq_msg_size(topic)),
                              body: UnsafeBufferPointer(start: zmq_msg_data(body).assumingMemoryBound(to: UInt8.self), count: zmq_msg_size(body)),
                              connection: connection)
    }

    /// Reads and drops the remaining parts of a message.
    func dropRest(of s: ZMQSocket) {
        var extra = zmq_msg_t()
        repeat {
            zmq_msg_close(&extra); zmq_msg_init(&extra)
            _ = zmq_msg_recv(&extra, s.handle, ZMQ_DONTWAIT)
        } while zmq_msg_more(&extra) != 0
        zmq_msg_close(&extra)
    }

    /// The connection a message arrived on: the number after the last `#` of the user id the ZAP
    /// handler gave the connection (nil without one).
    static func connection(of msg: UnsafeMutablePointer<zmq_msg_t>) -> ConnectionID? {
        guard let p = zmq_msg_gets(msg, "User-Id") else { return nil }
        var q = p, digits: UnsafePointer<CChar>? = nil
        while q.pointee != 0 {
            if q.pointee == 35 { digits = q + 1 }   // "#"
            q += 1
        }
        guard var d = digits else { return nil }
        var n: UInt64 = 0
        while d.pointee >= 48 && d.pointee <= 57 { n = n &* 10 &+ UInt64(d.pointee - 48); d += 1 }
        return n == 0 ? nil : ConnectionID(raw: n)
    }

    // MARK: Link events

    mutating func linkEvents(_ directory: borrowing some LinkDirectory, into events: inout [LinkEvent]) {
        var attach = false
        if routerReadable {
            routerReadable = false
            receiveBacklinkRoutes()
            attach = true
        }
        if !readableLinks.isEmpty {
            for id in readableLinks { receiveSubscriptions(id, into: &events) }
            readableLinks.removeAll(keepingCapacity: true)
        }
        if !retiringBacklinks.isEmpty { closeRetiredBacklinks(now: monotonicNanos()) }
        // (Read in place: this runs on every pass of the loop.)
        if let routes = backlinks?.routes.count, routes > 0 {
            let now = monotonicNanos()
            // A back-link can arrive before the HELLO that names its token; routes are also
            // re-checked every second (pending ones expire, carried ones stop dialling).
            if inputSinceAttach && routes > backlinks?.carried.count ?? 0 { attach = true }
            if now &- attachedAt >= 1_000_000_000 { attach = true }
            if attach { attachBacklinkRoutes(directory, into: &events) }
        }
        inputSinceAttach = false
    }

    /// An XPUB link receives the remote SUB's (un)subscriptions. A subscription means the remote
    /// listens on this link: the engine may (re)send its HELLO.
    mutating func receiveSubscriptions(_ id: LinkID, into events: inout [LinkEvent]) {
        guard let s = links[id] else { return }
        var ready = false
        var backlinkPort: UInt16?
        var msg = zmq_msg_t()
        while true {
            zmq_msg_init(&msg)
            if zmq_msg_recv(&msg, s.handle, ZMQ_DONTWAIT) < 0 { zmq_msg_close(&msg); break }
            if zmq_msg_size(&msg) >= 1, zmq_msg_data(&msg).load(as: UInt8.self) == 1 { ready = true }
            if let p = Backlink.port(inSubscription: UnsafeRawBufferPointer(start: zmq_msg_data(&msg), count: zmq_msg_size(&msg))) {
                backlinkPort = p
            }
            zmq_msg_close(&msg)
        }
        // The remote can be reached through a back-link of ours if it cannot dial us; it closes
        // the back-link once its own link to us is ready.
        if let backlinkPort { openBacklink(for: id, port: backlinkPort) }
        if ready {
            directLinkReady(id)
            directReady.insert(id)
            events.append(LinkEvent(link: id, direct: true))
        }
    }

    // MARK: Counters and shutdown

    var stats: TransportStats {
        var s = TransportStats()
        s.badMultipart = badMultipart
        s.unadmittedFrames = unadmittedFrames
        if let zapDomain { s.refused = ZAPService.shared.refusals(domain: zapDomain) }
        s.links = links.count + (backlinks?.withoutDirect.count ?? 0)
        s.backlinksCarried = backlinks?.carried.count ?? 0
        s.backlinksOpen = backDialers.count
        s.backlinkDrops = backlinks?.drops ?? 0
        s.backlinksRefused = backlinks?.refused ?? 0
        return s
    }

    /// Closes every socket this transport opened and leaves the ZAP handler (the wake-up pipe is
    /// the node's to close, once nothing can write to it).
    mutating func shutdown() {
        if holding { zmq_msg_close(current); zmq_msg_close(current + 1); holding = false }
        for (_, s) in links { s.close() }
        links.removeAll()
        linkOrder.removeAll()
        for (_, d) in backDialers { d.socket.close() }
        backDialers.removeAll()
        backlinks?.router.close()
        backlinks = nil
        sub.close()
        if let zapDomain { ZAPService.shared.unregister(domain: zapDomain) }
    }
}

/// What one entry of a ZeroMQ transport's poll set is: the wake-up pipe or one of its sockets.
enum PollSource { case commands, sub, router, dialer(LinkID), link(LinkID) }

/// The wake-up pipe of a node on ZeroMQ: a command writes one byte, and the read end is the
/// first descriptor of the transport's `poll`.
final class PipeWakeup: DriverWakeup {
    let readDescriptor: Int32
    let writeDescriptor: Int32

    init() throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw ZMQError("pipe", code: errno) }
        for f in fds {
            _ = fcntl(f, F_SETFL, fcntl(f, F_GETFL) | O_NONBLOCK)
            _ = fcntl(f, F_SETFD, FD_CLOEXEC)
        }
        readDescriptor = fds[0]
        writeDescriptor = fds[1]
    }

    func wake() {
        var one: UInt8 = 1
        _ = write(writeDescriptor, &one, 1)
    }

    /// Empties the pipe (the node's thread, once `poll` saw it readable).
    func consume() {
        var buf = (UInt64(0), UInt64(0))
        _ = withUnsafeMutableBytes(of: &buf) { read(readDescriptor, $0.baseAddress, 16) }
    }

    func close() {
        Glibc.close(writeDescriptor)
        Glibc.close(readDescriptor)
    }
}

/// This node's CurveZMQ key pair (binary, 32 bytes each).
struct CurveKeys { var secret: [UInt8]; var `public`: [UInt8] }
