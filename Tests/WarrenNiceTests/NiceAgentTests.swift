import CNiceShim
import Foundation
import Testing
@testable import WarrenNice
import WarrenSession

/// Real libnice agents on loopback in this process. Serialized: the machine is small, and the
/// thread test wants no other factory of its name alive.
@Suite(.serialized) struct NiceAgentTests {
    @Test func loopbackPairReachesReadyAndExchangesDatagrams() async throws {
        let factory = try loopbackFactory()
        let pair = try Pair(factory)
        pair.start()
        #expect(await pair.a.wait(for: .ready))
        #expect(await pair.b.wait(for: .ready))

        for log in [pair.a, pair.b] {
            // GATHERING comes first (remote candidates wait for gathering), then the checks.
            let states = log.states
            #expect(states.first == .gathering)
            #expect(states.firstIndex(of: .connecting).map { $0 < states.firstIndex(of: .ready)! } == true)
            #expect(!states.contains(.failed))
            #expect(log.all.contains(.gatheringDone))
            let hosts = log.localCandidates.filter { $0.kind == .host }
            #expect(!hosts.isEmpty)
            for c in hosts {
                #expect(c.address == "127.0.0.1")
                #expect(c.transport == .udp && c.tcpType == nil)
                #expect(c.component == 1 && c.relatedAddress == nil && c.relatedPort == nil)
                #expect((1...65535).contains(c.port) && !c.foundation.isEmpty && c.priority > 0)
            }
            let pairs = log.all.compactMap { e -> (ICECandidate, ICECandidate)? in
                if case .selectedPair(let l, let r) = e { (l, r) } else { nil }
            }
            #expect(pairs.count >= 1)
            #expect(pairs.last?.0.address == "127.0.0.1" && pairs.last?.1.address == "127.0.0.1")
        }

        #expect(pair.controlling.send(Array("ping".utf8)))
        #expect(pair.controlled.send(Array("pong".utf8)))
        #expect(await pair.b.wait { $0.contains(.data(Array("ping".utf8))) })
        #expect(await pair.a.wait { $0.contains(.data(Array("pong".utf8))) })

        // A burst from this thread arrives complete and in order (loopback does not drop).
        let burst = (0..<200).map { i in [UInt8(i & 0xFF), UInt8(i >> 8)] + [UInt8](repeating: 7, count: 100) }
        for d in burst { #expect(pair.controlling.send(d)) }
        #expect(await pair.b.wait { events in events.filter { if case .data(let d) = $0 { d.count == 102 } else { false } }.count == 200 })
        #expect(pair.b.data.filter { $0.count == 102 } == burst)

        #expect(await pair.close())
        for log in [pair.a, pair.b] {
            #expect(log.all.last == .closed)
            #expect(log.all.filter { $0 == .closed }.count == 1)
            #expect(log.threads.withLock { $0.count } == 1)
            #expect(!log.threads.withLock { $0 }.contains(UInt(pthread_self())))
        }
        #expect(pair.a.threads.withLock { $0 } == pair.b.threads.withLock { $0 })
        #expect(!pair.controlling.send([1]))
    }

    @Test func remoteCandidatesBeforeGatheringWait() async throws {
        // The controlled agent learns the controlling agent's candidates before it gathers.
        let factory = try loopbackFactory()
        let pair = try Pair(factory)
        pair.controlling.startGathering()
        #expect(await pair.a.wait { $0.contains(.gatheringDone) })
        try await Task.sleep(for: .milliseconds(50))
        #expect(pair.b.states.isEmpty)
        pair.controlled.startGathering()
        #expect(await pair.a.wait(for: .ready))
        #expect(await pair.b.wait(for: .ready))
        #expect(pair.b.states.first == .gathering)
        #expect(await pair.close())
    }

    @Test func invalidRemoteCandidatesAreIgnored() async throws {
        let factory = try loopbackFactory()
        let pair = try Pair(factory)
        let good = ICECandidate(kind: .host, foundation: "1", priority: 2_015_363_327, address: "127.0.0.1", port: 9999)
        var bad: [ICECandidate] = []
        var c = good; c.address = "localhost"; bad.append(c)
        c = good; c.address = "peer.local"; bad.append(c)
        c = good; c.port = 70000; bad.append(c)
        c = good; c.port = -1; bad.append(c)
        c = good; c.foundation = String(repeating: "f", count: 33); bad.append(c)
        c = good; c.foundation = ""; bad.append(c)
        c = good; c.component = 2; bad.append(c)
        c = good; c.transport = .tcp; bad.append(c)
        c = good; c.kind = .srflx; c.relatedAddress = "not-an-ip"; c.relatedPort = 1; bad.append(c)
        for b in bad {
            #expect(b.niceProblem != nil, "\(b)")
            pair.controlling.addRemoteCandidate(b)
            pair.controlled.addRemoteCandidate(b)
        }
        #expect(good.niceProblem == nil)
        pair.controlling.addRemoteCandidate(good)  // valid but dead: its checks just fail
        pair.start()
        // Invalid ones before and during gathering: neither stops the real exchange.
        for b in bad { pair.controlled.addRemoteCandidate(b) }
        #expect(await pair.a.wait(for: .ready))
        #expect(await pair.b.wait(for: .ready))
        #expect(!pair.a.states.contains(.failed) && !pair.b.states.contains(.failed))
        #expect(await pair.close())
    }

    @Test func candidateConversion() {
        var c = cns_candidate_for_test(type: 3, transport: 0, address: "198.51.100.9", port: 50000,
                                       base: ("10.0.0.2", 40000), priority: (20 << 24) | (1 << 14) | 255)
        let servers = NiceServers(stun: nil, relays: [
            .init(address: "203.0.113.1", port: 3478, username: "u", password: "p", relayType: 0, relayProtocol: .udp),
            .init(address: "203.0.113.1", port: 3478, username: "u", password: "p", relayType: 1, relayProtocol: .tcp),
        ])
        let relay = ICECandidate(nice: c, servers: servers)
        #expect(relay == ICECandidate(kind: .relay, foundation: "f1", priority: (20 << 24) | (1 << 14) | 255,
                                      address: "198.51.100.9", port: 50000, relatedAddress: "10.0.0.2",
                                      relatedPort: 40000, relayProtocol: .tcp))
        // Round trip, and a TCP-active candidate's port 0 is signalled as 9.
        c = cns_candidate_for_test(type: 0, transport: 1, address: "2001:db8::1", port: 0, base: nil, priority: 5)
        let active = ICECandidate(nice: c, servers: NiceServers())
        #expect(active?.transport == .tcp && active?.tcpType == .active && active?.port == 9)
        #expect(active?.nice.port == 0 && active?.nice.transport == 1)
        let back = active.flatMap { ICECandidate(nice: $0.nice, servers: NiceServers()) }
        #expect(back == active)
        #expect(ICECandidate(nice: cns_candidate_for_test(type: 9, transport: 0, address: "1.2.3.4", port: 1,
                                                          base: nil, priority: 1), servers: NiceServers()) == nil)
    }

    @Test func relayProtocolFromPriority() {
        let udp = NiceServers.Relay(address: "203.0.113.1", port: 3478, username: "u", password: "p", relayType: 0, relayProtocol: .udp)
        var tls = udp; tls.relayType = 2; tls.relayProtocol = .tls
        let two = NiceServers(stun: nil, relays: [udp, tls])
        #expect(two.relayProtocol(priority: (30 << 24) | (0 << 14) | 255) == .udp)
        #expect(two.relayProtocol(priority: (20 << 24) | (1 << 14) | 255) == .tls)
        #expect(two.relayProtocol(priority: (20 << 24) | (5 << 14) | 255) == nil)
        #expect(NiceServers(stun: nil, relays: [tls, tls]).relayProtocol(priority: 7 << 14) == .tls)
        #expect(NiceServers().relayProtocol(priority: 0) == nil)
    }

    @Test func serverConfiguration() throws {
        let stun = ICEServer(kind: .stun, host: "203.0.113.1", port: 3478)
        let turn = ICEServer(kind: .turn, host: "203.0.113.2", port: 3478, username: "u", password: "p")
        var s = try NiceServers.resolve([stun, ICEServer(kind: .stun, host: "203.0.113.9", port: 19302), turn])
        #expect(s.stun == .init(address: "203.0.113.1", port: 3478))
        #expect(s.relays.map(\.relayType) == [0] && s.relays.first?.relayProtocol == .udp)

        var tcp = turn; tcp.transport = .tcp
        var tlsByTransport = turn; tlsByTransport.transport = .tls
        let turns = ICEServer(kind: .turns, host: "2001:db8::5", port: 5349, username: "u", password: "p")
        s = try NiceServers.resolve([tcp, tlsByTransport, turns])
        #expect(s.stun == nil)
        #expect(s.relays.map(\.relayType) == [1, 2, 2])
        #expect(s.relays.map(\.relayProtocol) == [.tcp, .tls, .tls])
        #expect(s.relays.last?.address == "2001:db8::5")

        // Names resolve once, here (localhost is in /etc/hosts); the resolver can be replaced.
        s = try NiceServers.resolve([ICEServer(kind: .stun, host: "localhost", port: 3478)])
        #expect(s.stun?.address == "127.0.0.1")
        s = try NiceServers.resolve([ICEServer(kind: .turn, host: "turn.example", port: 3478, username: "u", password: "p")],
                                    resolver: { host, family in family == AF_INET6 && host == "turn.example" ? "2001:db8::7" : nil })
        #expect(s.relays.first?.address == "2001:db8::7")

        func refused(_ servers: [ICEServer]) -> NiceAgentError? {
            do {
                _ = try NiceServers.resolve(servers, resolver: { _, _ in nil })
                return nil
            } catch { return error }
        }
        #expect(refused([ICEServer(kind: .stun, host: "unresolvable.invalid", port: 3478)]) == .unresolvableHost("unresolvable.invalid"))
        if case .invalidServer(_, let reason)? = refused([ICEServer(kind: .stun, host: "2001:db8::1", port: 3478)]) {
            #expect(reason.contains("IPv4"))
        } else { Issue.record("an IPv6 STUN server must be refused") }
        var noPass = turn; noPass.password = nil
        var emptyUser = turn; emptyUser.username = ""
        var dtls = turn; dtls.transport = .dtls
        var port0 = stun; port0.port = 0
        var bigPort = turn; bigPort.port = 65536
        var emptyHost = stun; emptyHost.host = ""
        for bad in [noPass, emptyUser, dtls, port0, bigPort, emptyHost] {
            guard case .invalidServer(let shown, _)? = refused([bad]) else {
                Issue.record("\(bad) must be refused")
                continue
            }
            #expect(!shown.contains(":p@"))
        }
        if case .invalidServer(_, let reason)? = refused(Array(repeating: turn, count: 9)) {
            #expect(reason.contains("8"))
        } else { Issue.record("a ninth TURN server must be refused") }

        // The factory reports the same errors, and its own options.
        #expect(throws: NiceAgentError.self) { try NiceAgentFactory(options: .init(servers: [dtls])) }
        #expect(throws: NiceAgentError.invalidLocalAddress("eth0")) { try NiceAgentFactory(options: .init(localAddresses: ["eth0"])) }
        #expect(throws: NiceAgentError.self) { try NiceAgentFactory(options: .init(stunInitialTimeoutMs: 0)) }
        #expect(throws: NiceAgentError.self) { try NiceAgentFactory(options: .init(stunMaxRetransmissions: -1)) }
        #expect(throws: NiceAgentError.self) { try NiceAgentFactory(options: .init(gatherAttempts: 0)) }
        let factory = try NiceAgentFactory(options: .init(servers: [stun, turn]))
        #expect(factory.servers.stun?.address == "203.0.113.1")
        #expect(throws: NiceAgentError.self) {
            try factory.makeAgent(controlling: true, credentials: ICECredentials(ufrag: "ab", pwd: "short")) { _ in }
        }
    }

    @Test func defaultGatheringSkipsLoopback() async throws {
        let factory = try NiceAgentFactory()
        let log = EventLog()
        let agent = try factory.agent(controlling: true, credentials: ICECredentials(ufrag: "ufragCCC", pwd: "passwordpasswordCCCCCCCC")) { log.record($0) }
        agent.startGathering()
        #expect(await log.wait { $0.contains(.gatheringDone) || $0.contains(.state(.failed)) })
        #expect(!log.localCandidates.contains { $0.address == "127.0.0.1" || $0.address == "::1" })
        agent.close()
        #expect(await log.waitClosed())
    }

    @Test func gatheringFailureIsReportedAfterRetries() async throws {
        // An address on no interface: nice_agent_gather_candidates returns FALSE every time.
        let factory = try NiceAgentFactory(options: .init(localAddresses: ["198.51.100.7"], gatherAttempts: 3,
                                                          gatherRetryIntervalMs: 20))
        let log = EventLog()
        let agent = try factory.agent(controlling: false, credentials: ICECredentials(ufrag: "ufragDDD", pwd: "passwordpasswordDDDDDDDD")) { log.record($0) }
        let start = ContinuousClock.now
        agent.startGathering()
        #expect(await log.wait(for: .failed, 5))
        #expect(ContinuousClock.now - start >= .milliseconds(40))
        #expect(log.localCandidates.isEmpty)
        #expect(!agent.send([1]))
        agent.close()
        agent.close()
        #expect(await log.waitClosed())
        #expect(log.all.filter { $0 == .closed }.count == 1)
    }

    @Test func closeBeforeAnythingAndTwice() async throws {
        let factory = try loopbackFactory()
        let log = EventLog()
        let agent = try factory.agent(controlling: true, credentials: ICECredentials(ufrag: "ufragEEE", pwd: "passwordpasswordEEEEEEEE")) { log.record($0) }
        #expect(!agent.send([1, 2, 3]))
        agent.close()
        agent.close()
        agent.startGathering()
        agent.addRemoteCandidate(ICECandidate(kind: .host, foundation: "1", priority: 1, address: "127.0.0.1", port: 1))
        #expect(await log.waitClosed())
        try await Task.sleep(for: .milliseconds(100))
        #expect(log.all == [.closed])
    }

    @Test func droppingTheAgentClosesIt() async throws {
        let factory = try loopbackFactory()
        let log = EventLog()
        do {
            let agent = try factory.agent(controlling: true, credentials: ICECredentials(ufrag: "ufragFFF", pwd: "passwordpasswordFFFFFFFF")) { log.record($0) }
            agent.startGathering()
            _ = await log.wait { $0.contains(.gatheringDone) }
        }
        #expect(await log.waitClosed())
    }

    @Test func createCloseCyclesDoNotLeakThreads() async throws {
        // Counted by name, so that suites running in parallel in this process do not matter.
        let name = "nice-leak-test"
        #expect(threadCount(named: name) == 0)
        // Many factories (one thread each), each with an agent closed mid-gathering or later.
        for i in 0..<25 {
            let factory = try loopbackFactory(threadName: name)
            if i == 0 {
                // The thread names itself once it runs.
                var started = threadCount(named: name)
                for _ in 0..<100 where started == 0 {
                    try await Task.sleep(for: .milliseconds(10))
                    started = threadCount(named: name)
                }
                #expect(started == 1)
            }
            let log = EventLog()
            let agent = try factory.agent(controlling: i % 2 == 0, credentials: .init(ufrag: "ufrag\(i)xx", pwd: "passwordpasswordGGGGGGGG")) { log.record($0) }
            agent.startGathering()
            if i % 3 == 0 { _ = await log.wait { $0.contains(.gatheringDone) } }
            agent.close()
            #expect(await log.waitClosed())
        }
        // Many agents and pairs on one factory.
        do {
            let factory = try loopbackFactory(threadName: name)
            for _ in 0..<10 {
                let pair = try Pair(factory)
                pair.start()
                #expect(await pair.a.wait(for: .ready))
                #expect(await pair.close())
            }
            var logs: [EventLog] = []
            var agents: [NiceAgent] = []
            for i in 0..<30 {
                let log = EventLog()
                agents.append(try factory.agent(controlling: true, credentials: .init(ufrag: "many\(i)xx", pwd: "passwordpasswordHHHHHHHH")) { log.record($0) })
                logs.append(log)
            }
            agents.forEach { $0.startGathering() }
            agents.forEach { $0.close() }
            for log in logs { #expect(await log.waitClosed()) }
        }
        // Every factory and agent is gone: so are their threads (the last one may end a moment
        // after `.closed`, when the agent's final reference goes on its own thread).
        var left = threadCount(named: name)
        let deadline = ContinuousClock.now + .seconds(5)
        while left > 0 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
            left = threadCount(named: name)
        }
        #expect(left == 0, "\(left) threads named \(name) left")
    }
}

/// A shim candidate with the given fields (foundation "f1", component 1).
func cns_candidate_for_test(type: Int32, transport: Int32, address: String, port: UInt32,
                            base: (String, UInt32)?, priority: UInt32) -> cns_candidate {
    var c = ICECandidate(kind: .host, foundation: "f1", priority: priority, address: address, port: Int(port)).nice
    c.type = type
    c.transport = transport
    c.port = port
    if let base {
        let withBase = ICECandidate(kind: .host, foundation: "f1", priority: priority, address: address,
                                    port: Int(port), relatedAddress: base.0, relatedPort: Int(base.1)).nice
        c.has_base = 1
        c.base_address = withBase.base_address
        c.base_port = base.1
    }
    return c
}
