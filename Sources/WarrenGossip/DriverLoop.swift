import Logging
import WarrenCore
import WarrenEngine

/// The node thread's state and loop, over any `NodeTransport`: it waits on the transport, runs
/// the node's commands, feeds inbound messages and link events to the engine, performs the
/// engine's actions (coalescing frames into batches, counting refused sends) and runs its
/// timers. Everything here is touched by that thread only. A struct run in place by its thread,
/// so its hot paths carry no dynamic exclusivity checks; non-copyable, because it owns the
/// transport.
struct DriverLoop<Transport: NodeTransport & ~Copyable>: ~Copyable {
    var transport: Transport
    let clock: Transport.Clock
    var engine: GossipEngine
    var rng: SeededGenerator
    let callbacks: GossipNodeCallbacks
    let logger: Logger
    var actions: [Action] = []
    var linkEvents: [LinkEvent] = []
    /// Frames on their way out: consecutive frames for one link and topic leave as one BATCH.
    var outbox: FrameCoalescer
    var commands: [GossipNode.Command] = []
    var hwmDrops: UInt64 = 0
    var penaltiesLogged: UInt64 = 0
    var running = true
    /// The time up to which the transport's input has been read: when it was last found with
    /// nothing waiting (`GossipEngine.tick`'s `inputReadUpTo`).
    var inputReadUpTo: UInt64 = 0
    /// Each link's endpoint as the engine named it, and the links that became ready.
    var linkNames: [LinkID: (name: String, since: UInt64)] = [:]
    var readyLinks: Set<LinkID> = []
    /// Endpoints whose last dial got no answer (warned about once until one answers).
    var silentEndpoints: Set<String> = []
    /// `--log-level trace`: every frame in and out is logged (read once per pass of the loop).
    var traceOn = false
    /// This node's key and endpoint (another node with the same key is warned about).
    var ownKey: Key?
    var ownEndpoint = ""
    var sharedKeyWarned: Set<String> = []
    /// The configured seeds (as given), and endpoints not dialled for the allow-list (warned once).
    var seedNames: Set<String> = []
    var refusedDials: Set<String> = []
    /// Closed overlay, once its allow-list was changed: the keys that are dialled (nil before).
    var admitted: Set<String>?
    /// A closed overlay (CurveZMQ): peers are dialled only with their key.
    let closedOverlay: Bool
    var metrics: NodeMetrics
    var metricsAt: UInt64 = 0
    /// LAN discovery (nil unless configured): Discovery.swift.
    var discovery: DiscoverySocket?

    init(transport: consuming Transport, engine: GossipEngine, seed: UInt64, batching: Bool,
         callbacks: GossipNodeCallbacks, logger: Logger, closedOverlay: Bool) {
        self.clock = transport.clock
        self.transport = transport
        self.closedOverlay = closedOverlay
        // The label is the endpoint as operators know it: with its key in a closed overlay
        // (where peers are named so), plain in an open one.
        let e = engine.config.endpoint
        self.metrics = NodeMetrics(node: closedOverlay ? e : (try? PeerAddress(parsing: e))?.endpoint ?? e)
        self.engine = engine
        self.rng = SeededGenerator(seed: seed)
        // With batching off, the limit admits no second frame: every frame leaves alone.
        self.outbox = FrameCoalescer(from: engine.nodeID, limit: batching ? FrameBatch.targetBytes : 0)
        self.callbacks = callbacks
        self.logger = logger
        actions.reserveCapacity(64)
    }

    /// Inputs (received messages, publishes) whose actions are gathered before they are
    /// performed: their outgoing frames coalesce into batches, and a frame waits at most for
    /// the handling of this many inputs. When fewer are waiting, nothing waits.
    static var coalesceInputs: Int { 64 }
    /// Inbound messages read in one pass of the loop at most (then the loop polls again).
    static var receiveLimit: Int { 4096 }

    mutating func run(node: GossipNode) {
        inputReadUpTo = clock.now
        engine.start(now: clock.now, rng: &rng, into: &actions)
        perform()
        while running {
            traceOn = logger.logLevel == .trace
            var timeout: UInt64?
            if let d = engine.nextDeadline {
                let now = clock.now
                timeout = d <= now ? 0 : d - now
            }
            let ready = transport.wait(timeout: timeout)
            if ready.contains(.failed) { break }
            // Nothing was waiting to be read when the transport looked: caught up to now.
            if !ready.contains(.input) { inputReadUpTo = clock.now }
            if ready.contains(.commands) {
                node.drain(into: &commands)
                var published = 0
                for c in commands {
                    handle(c)
                    // Publishes are performed in groups, so their frames leave in batches; between
                    // groups the timers run when due, so a burst that takes this thread seconds
                    // (65,536 queued publishes on a starved CPU) does not silence the node's
                    // heartbeats to its other neighbours.
                    if case .publish = c {
                        published += 1
                        if published % Self.coalesceInputs == 0 {
                            perform()
                            if running && timerDue() { runTimers() }
                        }
                    }
                }
                perform()
                commands.removeAll(keepingCapacity: true)
            }
            if running && ready.contains(.input) && receiveInput(node) { inputReadUpTo = clock.now }
            if running { takeLinkEvents() }
            if running && timerDue() { runTimers() }
            if running && discovery != nil { serviceDiscovery() }
            let now = clock.now
            if now &- metricsAt >= 1_000_000_000 {
                metricsAt = now
                var snap = snapshot()
                snap.queueFull = node.queueFullCount
                metrics.report(snap)
            }
        }
        metrics.report(snapshot())
        // Shut down: everything this thread opened is closed here.
        transport.shutdown()
        discovery?.close()
        // Commands that raced with stop: answer them so no caller waits forever.
        for c in node.drain() {
            switch c {
            case .subscribe(_, let k), .unsubscribe(_, let k): k?.resume()
            case .stats(let k): k.resume(returning: snapshot())
            case .publish, .stop, .allowList: break
            }
        }
        node.didFinish()
    }

    mutating func handle(_ c: GossipNode.Command) {
        let now = clock.now
        switch c {
        case .publish(let topic, let env, let ttl):
            // Performed by the caller (`run`), after a group of publishes.
            engine.publish(topic: topic, envelope: env, ttl: ttl, now: now, rng: &rng, into: &actions)
        case .subscribe(let t, let k):
            engine.subscribeLocal(t, into: &actions)
            perform()
            k?.resume()
        case .unsubscribe(let t, let k):
            engine.unsubscribeLocal(t, into: &actions)
            perform()
            k?.resume()
        case .stats(let k):
            k.resume(returning: snapshot())
        case .allowList(let keys):
            admitted = Set(keys.map(\.base64))
            transport.admit(keys)
            engine.closeLinks(where: { e in
                guard let k = (try? PeerAddress(parsing: e))?.key else { return false }
                return !keys.contains(k)
            }, now: now, rng: &rng, into: &actions)
            perform()
        case .stop:
            // Links still dialling are closed by us, not silent peers: no warnings from here on.
            linkNames.removeAll()
            engine.stop(now: now, into: &actions)
            perform()
            running = false
        }
    }

    func snapshot() -> NodeStats {
        var s = NodeStats()
        let t = transport.stats
        s.hwmDrops = hwmDrops
        s.badMultipart = t.badMultipart
        s.engine = engine.stats
        s.neighbours = engine.neighbours
        s.knownEndpoints = engine.knownEndpoints
        s.seenEntries = engine.seenCount
        s.links = t.links
        s.backlinksCarried = t.backlinksCarried
        s.backlinksOpen = t.backlinksOpen
        s.backlinkDrops = t.backlinkDrops
        s.backlinksRefused = t.backlinksRefused
        s.batchesSent = outbox.batches
        s.batchedFrames = outbox.batchedFrames
        s.rateLimited = engine.stats.rateLimited
        s.knownNodes = engine.knownNodes
        for n in s.neighbours { s.lastHeard[n.nodeID] = engine.lastHeard(n.nodeID) }
        s.unadmittedFrames = t.unadmittedFrames
        s.refused = t.refused
        return s
    }

    /// Feeds waiting inbound messages to the engine, at most `receiveLimit` (to stay fair to
    /// commands and timers); true when the transport is drained (false: more wait). Actions are
    /// performed every `coalesceInputs` messages and at the end; at those points the loop also
    /// breaks off when a timer is due (a heartbeat, say) or the node is stopping, and goes on
    /// with the rest after it: a burst that takes this thread seconds to work through (a slow
    /// handler, a starved CPU) must not silence the node to its neighbours, nor hold up `stop`.
    mutating func receiveInput(_ node: GossipNode) -> Bool {
        defer { if !actions.isEmpty { perform() } }
        for n in 1...Self.receiveLimit {
            guard let m = transport.receive() else { return true }
            if traceOn {
                let t = m.topic, b = m.body
                logger.trace("frame in", metadata: ["bytes": "\(b.count)", "type": "\(b.count > 1 ? b[1] : 0)",
                                                    "topic": "\(t.prefix(8).map { String($0, radix: 16) }.joined())"])
            }
            engine.receive(topic: m.topic, body: m.body, via: m.connection, now: clock.now, rng: &rng, into: &actions)
            if n % Self.coalesceInputs == 0 {
                if !actions.isEmpty { perform() }
                if timerDue() || node.stopRequested { return false }
            }
        }
        return false
    }

    /// Runs the engine's timers. Silence is judged as of `inputReadUpTo`: frames still waiting in
    /// the transport (this thread fell behind) are not a neighbour's silence.
    mutating func runTimers() {
        engine.tick(now: clock.now, rng: &rng, into: &actions, inputReadUpTo: inputReadUpTo)
        perform()
    }

    /// Whether the engine's next deadline has passed.
    mutating func timerDue() -> Bool {
        guard let d = engine.nextDeadline else { return false }
        return d <= clock.now
    }

    /// Links that became ready (the remote listens, or a back-link carries them): the engine may
    /// (re)send its HELLO.
    mutating func takeLinkEvents() {
        transport.linkEvents(engine, into: &linkEvents)
        guard !linkEvents.isEmpty else { return }
        for e in linkEvents {
            if readyLinks.insert(e.link).inserted && e.direct, let name = linkNames[e.link]?.name {
                silentEndpoints.remove(name)
                logger.debug("link ready: the remote accepted the connection (handshake done)",
                             metadata: ["endpoint": "\(name)", "link": "\(e.link)"])
            }
            engine.linkReady(e.link, now: clock.now, rng: &rng, into: &actions)
        }
        linkEvents.removeAll(keepingCapacity: true)
        perform()
    }

    mutating func perform() {
        logPenalties()
        var i = 0
        while i < actions.count {
            let a = actions[i]
            i += 1
            switch a {
            case .send(let ids, let frame):
                for id in ids {
                    if transport.canSend(on: id) {
                        outbox.add(link: id, topic: frame.topic, body: frame.body)
                    } else {
                        // A routed frame's only copy: the engine floods it instead.
                        engine.sendFailed(link: id, topic: frame.topic, body: frame.body, now: clock.now, into: &actions)
                    }
                }
            case .deliver(let topic, let env, let hops, let id):
                callbacks.deliver(topic, env, hops, id)
            case .connect(let id, let name):
                do {
                    // Endpoints of a closed overlay are "KEY@tcp://…": the key authenticates the server.
                    let address = try PeerAddress(parsing: name)
                    if closedOverlay && address.key == nil {
                        logger.warning("closed overlay: cannot dial a peer without its key", metadata: ["endpoint": "\(name)"])
                        continue
                    }
                    // A seed's key is what the operator claims; what other nodes advertise is news.
                    if let k = address.key, !seedNames.contains(name) { checkSharedKey(k, endpoint: name) }
                    if let admitted, let k = address.key, !admitted.contains(k.base64) {
                        if refusedDials.insert(name).inserted {
                            logger.warning("not dialling a peer whose key is not on this node's allow-list", metadata: ["endpoint": "\(name)"])
                        } else {
                            logger.debug("not dialling a peer whose key is not on this node's allow-list", metadata: ["endpoint": "\(name)"])
                        }
                        continue
                    }
                    try transport.open(id, to: address)
                    logger.debug("dialling", metadata: ["endpoint": "\(name)", "link": "\(id)", "curve": "\(closedOverlay)"])
                    linkNames[id] = (name, clock.now)
                } catch {
                    // The engine's dial timeout will back off and retry.
                    logger.warning("cannot open link", metadata: ["endpoint": "\(name)", "error": "\(error)"])
                }
            case .disconnect(let id):
                if let (name, since) = linkNames.removeValue(forKey: id) {
                    // A link closed at once was a duplicate the engine dropped, not a silent peer.
                    if readyLinks.remove(id) == nil && clock.now &- since >= 500_000_000 { reportSilentDial(name) }
                    else { logger.debug("closing link", metadata: ["endpoint": "\(name)", "link": "\(id)"]) }
                }
                readyLinks.remove(id)
                // What was queued for the link goes first (as it would have without batching).
                outbox.flush(link: id)
                sendReady()
                transport.close(id)
            case .subscribe(let prefix), .unsubscribe(let prefix):
                let on: Bool
                if case .subscribe = a { on = true } else { on = false }
                do {
                    if on { try transport.subscribe(prefix) } else { try transport.unsubscribe(prefix) }
                } catch {
                    logger.error("cannot change a subscription of the node's socket", metadata: ["error": "\(error)", "prefix bytes": "\(prefix.count)"])
                }
            case .peerUp(let n):
                logger.debug("peer up", metadata: ["peer": "\(n.endpoint)", "node": "\(n.nodeID)"])
                if let k = (try? PeerAddress(parsing: n.endpoint))?.key { checkSharedKey(k, endpoint: n.endpoint) }
                callbacks.peer(n, true, nil)
            case .peerDown(let n, let reason):
                logger.debug("peer down", metadata: ["peer": "\(n.endpoint)", "reason": "\(reason)"])
                callbacks.peer(n, false, reason)
            }
        }
        actions.removeAll(keepingCapacity: true)
        outbox.flush()
        sendReady()
        // Routed frames refused just now come back as floods (whose refusals end there).
        if !actions.isEmpty { perform() }
    }

    /// Another node (another endpoint) with this node's key: both would receive that key's
    /// traffic. Warned about once per endpoint.
    mutating func checkSharedKey(_ key: Key, endpoint: String) {
        guard let ownKey, key == ownKey else { return }
        let e = (try? PeerAddress(parsing: endpoint))?.endpoint ?? endpoint
        guard e != ownEndpoint, sharedKeyWarned.insert(e).inserted else { return }
        logger.warning("another node uses this node's key: both receive every message for it; give each node its own key (warren genkey)",
                       metadata: ["other node": "\(e)", "key": "\(key.base64)"])
    }

    /// A link closed before its handshake completed: the remote is down, unreachable, not a
    /// Warren node, or (closed overlay) refused our key or has another key than the KEY@ given.
    mutating func reportSilentDial(_ name: String) {
        let why = closedOverlay
            ? "unreachable, not a Warren node, not running a closed overlay, refusing this node's key (allow-list), or not the key given before '@'"
            : "unreachable, not a Warren node, or running a closed overlay (--allow)"
        if silentEndpoints.insert(name).inserted {
            logger.warning("no answer from a peer; retrying with back-off", metadata: ["endpoint": "\(name)", "possible causes": "\(why)"])
        } else {
            logger.debug("no answer from a peer again; retrying with back-off", metadata: ["endpoint": "\(name)"])
        }
    }

    /// Logs the engine's penalties since the last call (a warning each, with what was sent).
    mutating func logPenalties() {
        let n = engine.stats.penalized
        guard n != penaltiesLogged else { return }
        let fresh = Int(min(n &- penaltiesLogged, UInt64(engine.recentPenalties.count)))
        penaltiesLogged = n
        for p in engine.recentPenalties.suffix(fresh) { log(p) }
    }

    func log(_ p: Penalty) {
        logger.warning("disconnected a misbehaving neighbour: most of its frames were bad; ignored for the penalty time",
                       metadata: ["peer": "\(p.endpoint ?? "-")", "node": "\(p.node.map { "\($0)" } ?? "-")",
                                  "connection": "\(p.connection)", "reason": "\(p.reason)",
                                  "forged": "\(p.counts.forged)", "malformed": "\(p.counts.malformed)",
                                  "over_rate": "\(p.counts.overRate)", "over_share": "\(p.counts.overShare)",
                                  "good": "\(p.good)"])
    }

    /// Sends the coalesced messages (a refused one counts each of its frames as an HWM drop,
    /// and goes back to the engine: a routed frame in it is flooded instead).
    mutating func sendReady() {
        guard !outbox.ready.isEmpty else { return }
        for m in outbox.ready {
            let outcome = transport.send(m.link, topic: m.topic, body: m.body)
            if outcome != .sent {
                if outcome == .refused { hwmDrops &+= UInt64(m.frames) }
                engine.sendFailed(link: m.link, topic: m.topic, body: m.body, now: clock.now, into: &actions)
            }
            if traceOn && outcome != .noLink {
                logger.trace("frames out", metadata: ["link": "\(m.link)", "frames": "\(m.frames)",
                                                     "bytes": "\(m.body.count)", "sent": "\(outcome == .sent)"])
            }
        }
        outbox.ready.removeAll(keepingCapacity: true)
    }
}
