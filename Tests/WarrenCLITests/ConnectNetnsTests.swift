import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing

/// `warren connect` end to end: real ICE sessions (libnice) whose only signaling channel is the
/// overlay, between hosts in network namespaces behind real (iptables) NATs. The networks are
/// described on `ConnectLab`. Every failure message carries each process's stdout and stderr
/// and the lab's packet counters.
///
/// Needs root, `ip`, `iptables`, coturn's `turnserver` and python3; skipped with the reason
/// otherwise.
@Suite(.serialized, .timeLimit(.minutes(3)),
       .enabled(if: ConnectNetnsEnv.canRun, "\(ConnectNetnsEnv.whyNot)"))
struct ConnectNetnsTests {
    // MARK: 1. Two cone NATs, STUN

    /// Both sides select srflx–srflx (the NATs' public addresses); datagrams cross both ways
    /// through `--forward`, straight from NAT to NAT: the public host (coturn and the public
    /// node) receives no UDP other than STUN.
    @Test func twoConeNATsSelectSrflxAndDataGoesDirect() async throws {
        let lab = try ConnectLab(.cone, test: "cone")
        defer { lab.tearDown() }
        let (h1, h2) = try await lab.startPair()
        try await expectDirectSrflxSessionWithData(lab, h1, h2, what: "gossip backend")
    }

    // MARK: 2. Shared LAN

    /// Both hosts on one bridge, no NAT: the host–host pair.
    @Test func sharedLANSelectsHostPair() async throws {
        let lab = try ConnectLab(.lan, test: "lan")
        defer { lab.tearDown() }
        let (h1, h2) = try await lab.startPair()
        guard await waitConnected(lab, [h1, h2], timeout: .seconds(20), "on a shared LAN") else { return }
        for (h, mine, theirs) in [(h1, 1, 2), (h2, 2, 1)] {
            let p = h.pair
            let l = p.map { ConnectPeer.split($0.local) }, r = p.map { ConnectPeer.split($0.remote) }
            #expect(l?.kind == "host" && l?.address == lab.hostAddress(mine)
                        && r?.kind == "host" && r?.address == lab.hostAddress(theirs),
                    "\(h.name): selected \(String(describing: p)), expected host \(lab.hostAddress(mine)) – host \(lab.hostAddress(theirs)); \(lab.diagnostics())")
        }
        let echo = try await lab.startEcho()
        let x = try await lab.sendAndCollectEchoes(tag: "lan", count: 20)
        #expect(x.echoed == 20, "LAN: \(x.output); echo app: \(echo.stdout.suffix(800)); \(lab.diagnostics())")
        #expect(lab.counter(lab.wan, "udp-not-3478") == 0, "the public host received UDP other than STUN: \(lab.counters())")
        print("netns connect LAN: \(h1.summary) [\(connectedMs(h1))]; \(h2.summary) [\(connectedMs(h2))]; "
            + "pair \(h1.pair.map { "\($0.local) ↔ \($0.remote)" } ?? "?"); \(x.echoed)/20 echoed (\(x.sent) sent)")
    }

    // MARK: 3. Two symmetric NATs, TURN

    /// MASQUERADE --random on both routers: srflx–srflx cannot work, the session goes through
    /// coturn's relay, and so does the data. SIGTERM then closes the agents: exit 0, and coturn
    /// saw every allocation deleted.
    @Test func twoSymmetricNATsSelectRelay() async throws {
        let lab = try ConnectLab(.symmetric, test: "symmetric")
        defer { lab.tearDown() }
        let (h1, h2) = try await lab.startPair(turn: true)
        guard await waitConnected(lab, [h1, h2], timeout: .seconds(30), "behind two symmetric NATs with TURN") else { return }
        for h in [h1, h2] {
            let p = h.pair
            let kinds = p.map { [ConnectPeer.split($0.local).kind, ConnectPeer.split($0.remote).kind] } ?? []
            #expect(kinds.contains("relay"), "\(h.name): selected \(String(describing: p)), expected a relay candidate; \(lab.diagnostics())")
        }
        let relayedBefore = lab.counter(lab.wan, "udp-not-3478")
        let echo = try await lab.startEcho()
        let x = try await lab.sendAndCollectEchoes(tag: "sym", count: 20)
        #expect(x.echoed == 20, "symmetric/TURN: \(x.output); echo app: \(echo.stdout.suffix(800)); \(lab.diagnostics())")
        let relayed = lab.counter(lab.wan, "udp-not-3478") - relayedBefore
        // Relay–relay: both directions enter a relay port; relay–prflx (one side's symmetric
        // mapping reaches the other's relay directly): one direction does.
        #expect(relayed >= x.echoed, "the relay ports got \(relayed) datagrams for \(x.echoed) echoed: \(lab.counters())")
        // SIGTERM: each side closes its agent (releasing its TURN allocation) and exits 0.
        for h in [h1, h2] { kill(h.process.process.processIdentifier, SIGTERM) }
        // Foundation must have reaped both (terminationStatus traps before it has): a zombie
        // is not enough, hence isRunning rather than `running`.
        let exited = await netnsEventually(timeout: .seconds(10)) { !h1.process.process.isRunning && !h2.process.process.isRunning }
        #expect(exited, "warren connect still running 5 s after SIGTERM; \(lab.diagnostics())")
        let statuses = exited ? [h1, h2].map { $0.process.process.terminationStatus } : []
        #expect(statuses == [0, 0], "exit statuses after SIGTERM \(statuses); \(lab.diagnostics())")
        try await Task.sleep(for: .milliseconds(300))
        // coturn -v logs "session ID: new, …" per allocation and "session ID: refreshed, …,
        // lifetime=0" when the client deletes it.
        let turnLog = (lab.processes.first { $0.name == "coturn" }?.process.stdout ?? "").split(separator: "\n")
        func sessions(_ marker: String) -> Set<String> {
            Set(turnLog.filter { $0.contains(marker) }.compactMap { l in
                l.range(of: "session ").map { String(l[$0.upperBound...].prefix { $0 != ":" }) }
            })
        }
        let allocated = sessions(": new, "), released = sessions("lifetime=0")
        #expect(!allocated.isEmpty && released == allocated,
                "TURN allocations \(allocated.sorted()), released \(released.sorted()); coturn: \(turnLog.suffix(30))")
        print("netns connect symmetric+TURN: \(h1.summary) [\(connectedMs(h1))]; \(h2.summary) [\(connectedMs(h2))]; "
            + "pairs \(h1.pair.map { "\($0.local) ↔ \($0.remote)" } ?? "?") / \(h2.pair.map { "\($0.local) ↔ \($0.remote)" } ?? "?"); "
            + "\(x.echoed)/20 echoed; relay ports got \(relayed) datagrams meanwhile; SIGTERM exit statuses \(statuses); "
            + "TURN allocations released \(released.count) of \(allocated.count)")
    }

    // MARK: 4. kill -9 and restart

    /// kill -9 h2. h1's path is lost (consent freshness): Disconnected → Closed → Idle with a new
    /// agent. h2 restarts with the same key: both Connected within 20 s, data flows again. Then
    /// a restart at once (before consent expires): h1 sees new credentials (Closed, "the peer
    /// restarted") and both are Connected again within 20 s.
    @Test func killNineAndRestartReconnects() async throws {
        let lab = try ConnectLab(.cone, test: "kill")
        defer { lab.tearDown() }
        let (h1, h2) = try await lab.startPair()
        guard await waitConnected(lab, [h1, h2], timeout: .seconds(20), "before the kill") else { return }
        let echo = try await lab.startEcho()
        let x0 = try await lab.sendAndCollectEchoes(tag: "pre", count: 10)
        #expect(x0.echoed == 10, "before the kill: \(x0.output); echo: \(echo.stdout.suffix(500)); \(lab.diagnostics())")

        // Slow restart: wait until h1 has noticed by itself.
        let mark = h1.states.count
        let killedAt = ContinuousClock.now
        h2.process.kill9()
        let noticed = await netnsEventually(timeout: .seconds(15)) {
            h1.first("Idle", from: mark) != nil
        }
        let noticedAfter = ContinuousClock.now - killedAt
        let after = Array(h1.stateNames[min(mark, h1.stateNames.count)...])
        #expect(noticed, "h1 did not start over within 15 s of kill -9 h2: \(after); \(lab.diagnostics())")
        guard noticed else { return }
        #expect(Self.inOrder(after, ["Disconnected", "Closed", "Idle"]) || Self.inOrder(after, ["Failed", "Closed", "Idle"]),
                "h1 after kill -9 h2: \(after), expected Disconnected (or Failed) → Closed → Idle; \(lab.diagnostics())")

        let markRestart = h1.states.count
        let restartedAt = ContinuousClock.now
        try await lab.restart(h2)
        let again = await netnsEventually(timeout: .seconds(20)) {
            h1.first("Connected", from: markRestart) != nil && h2.isConnected
        }
        let reconnect = ContinuousClock.now - restartedAt
        #expect(again, "not both Connected within 20 s of the restart: \(h1.summary); \(h2.summary); \(lab.diagnostics())")
        guard again else { return }
        let x1 = try await lab.sendAndCollectEchoes(tag: "reborn", count: 10)
        #expect(x1.echoed == 10, "after the restart: \(x1.output); \(lab.diagnostics())")

        // Fast restart: kill -9 and start again at once.
        let markFast = h1.states.count
        h2.process.kill9()
        let fastAt = ContinuousClock.now
        try await lab.restart(h2)
        let fastAgain = await netnsEventually(timeout: .seconds(20)) {
            h1.first("Idle", from: markFast) != nil && h1.first("Connected", from: markFast) != nil && h2.isConnected
        }
        let fast = ContinuousClock.now - fastAt
        let afterFast = Array(h1.stateNames[min(markFast, h1.stateNames.count)...])
        #expect(fastAgain, "fast restart: not both Connected within 20 s: h1 \(afterFast); \(h2.summary); \(lab.diagnostics())")
        guard fastAgain else { return }
        let x2 = try await lab.sendAndCollectEchoes(tag: "fast", count: 10)
        #expect(x2.echoed == 10, "after the fast restart: \(x2.output); \(lab.diagnostics())")
        print("netns connect kill -9: h1 started over after \(noticedAfter.ms) ms (\(after.prefix(4).joined(separator: "→"))); "
            + "both Connected \(reconnect.ms) ms after the restart; fast restart: both Connected after \(fast.ms) ms "
            + "(h1: \(afterFast.prefix(4).joined(separator: "→")), \(h1.states.last(where: { $0["state"] as? String == "Closed" })?["reason"] ?? "?")); "
            + "echoes \(x0.echoed)/\(x1.echoed)/\(x2.echoed) of 10")
    }

    // MARK: 5. Path cut

    /// UDP between the two NATs is dropped (the overlay's TCP still flows): both sessions leave
    /// Connected/Completed within 15 s; the first to notice reports Disconnected (consent
    /// expired) and starts over, which the other sees as the peer's new credentials (Closed)
    /// unless its own consent expired first (Disconnected). Restored, they connect again.
    @Test func cutPathIsNoticedAndHeals() async throws {
        let lab = try ConnectLab(.cone, test: "cut")
        defer { lab.tearDown() }
        // Here each host's node is configured with warren node's flags instead of a gossip:// URL.
        let (h1, h2) = try await lab.startPair(signaling: .nodeFlags)
        guard await waitConnected(lab, [h1, h2], timeout: .seconds(20), "before the cut") else { return }
        let m1 = h1.states.count, m2 = h2.states.count
        let rules = [(1, "-s", 2), (1, "-d", 2), (2, "-s", 1), (2, "-d", 1)].map { n, dir, o in
            (lab.nat(n), ["FORWARD", "-p", "udp", dir, lab.publicAddress(o), "-j", "DROP"])
        }
        for (ns, r) in rules { try lab.iptables(ns, ["-I"] + r) }
        let cutAt = ContinuousClock.now
        var lost: [String: Int] = [:]
        let noticed = await netnsEventually(timeout: .seconds(15)) {
            for (h, m) in [(h1, m1), (h2, m2)] where lost[h.name] == nil {
                if h.first("Disconnected", from: m) != nil || h.first("Closed", from: m) != nil {
                    lost[h.name] = (ContinuousClock.now - cutAt).ms
                }
            }
            return lost.count == 2
        }
        let after1 = Array(h1.stateNames[min(m1, h1.stateNames.count)...]), after2 = Array(h2.stateNames[min(m2, h2.stateNames.count)...])
        #expect(noticed, "not both noticed the cut within 15 s (noticed: \(lost)): h1 \(after1); h2 \(after2); \(lab.diagnostics())")
        #expect(after1.contains("Disconnected") || after2.contains("Disconnected"),
                "neither side reported Disconnected: h1 \(after1); h2 \(after2); \(lab.diagnostics())")
        guard noticed else { return }
        // While cut, no new session can connect (srflx–srflx is blocked, there is no relay).
        try await Task.sleep(for: .seconds(2))
        #expect(!h1.isConnected && !h2.isConnected, "connected across the cut: \(h1.summary); \(h2.summary)")

        let h1Mark = h1.states.count, h2Mark = h2.states.count
        for (ns, r) in rules { try lab.iptables(ns, ["-D"] + r) }
        let healAt = ContinuousClock.now
        let healed = await netnsEventually(timeout: .seconds(40)) {
            h1.first("Connected", from: h1Mark) != nil && h2.first("Connected", from: h2Mark) != nil && h1.isConnected && h2.isConnected
        }
        let heal = ContinuousClock.now - healAt
        #expect(healed, "not both Connected within 40 s of restoring the path: \(h1.summary); \(h2.summary); \(lab.diagnostics())")
        print("netns connect cut: noticed after \(lost) ms (h1 \(after1.prefix(3).joined(separator: "→")); "
            + "h2 \(after2.prefix(3).joined(separator: "→"))); Connected again \(heal.ms) ms after the path came back")
    }

    // MARK: 6. The same as 1 over gRPC

    /// The hosts' backend is the public node's gRPC bridge (plain text, `--grpc-allow-plaintext`),
    /// one outbound TCP connection each; otherwise as test 1.
    @Test func twoConeNATsOverGRPCBackend() async throws {
        let lab = try ConnectLab(.cone, test: "grpc")
        defer { lab.tearDown() }
        let (h1, h2) = try await lab.startPair(signaling: .grpc)
        try await expectDirectSrflxSessionWithData(lab, h1, h2, what: "gRPC backend")
    }

    // MARK: - Helpers

    /// Tests 1 and 6.
    private func expectDirectSrflxSessionWithData(_ lab: ConnectLab, _ h1: ConnectPeer, _ h2: ConnectPeer,
                                                  what: String) async throws {
        guard await waitConnected(lab, [h1, h2], timeout: .seconds(20), "behind two cone NATs (\(what))") else { return }
        for (h, mine, theirs) in [(h1, 1, 2), (h2, 2, 1)] {
            let p = h.pair
            let l = p.map { ConnectPeer.split($0.local) }, r = p.map { ConnectPeer.split($0.remote) }
            #expect(l?.kind == "srflx" && l?.address == lab.publicAddress(mine)
                        && r?.kind == "srflx" && r?.address == lab.publicAddress(theirs),
                    "\(h.name) (\(what)): selected \(String(describing: p)), expected srflx \(lab.publicAddress(mine)) – srflx \(lab.publicAddress(theirs)); \(lab.diagnostics())")
        }
        let echo = try await lab.startEcho()
        let before = (lab.counter(lab.nat(1), "udp-to-peer"), lab.counter(lab.nat(2), "udp-to-peer"))
        let signalingBefore = lab.counter(lab.wan, "signaling")
        let count = 50
        let x = try await lab.sendAndCollectEchoes(tag: "cone", count: count)
        let after = (lab.counter(lab.nat(1), "udp-to-peer"), lab.counter(lab.nat(2), "udp-to-peer"))
        let signalingDuring = lab.counter(lab.wan, "signaling") - signalingBefore
        let received = echo.stdout.split(separator: "\n").filter { $0.hasPrefix("got cone-") }.count
        #expect(x.echoed == count, "\(what): \(x.output); the echo app in h2 got \(received); \(lab.diagnostics())")
        #expect(received >= count, "\(what): the echo app in h2 got \(received) of \(count) datagrams")
        // Each datagram went NAT to NAT: h1→h2 through nat1's FORWARD to 203.0.113.12, the echo
        // through nat2's to 203.0.113.11 …
        #expect(after.0 - before.0 >= count && after.1 - before.1 >= count,
                "\(what): datagrams NAT→NAT during the exchange: nat1 \(after.0 - before.0), nat2 \(after.1 - before.1), expected ≥ \(count) each; \(lab.counters())")
        // … and the public host got no UDP but STUN (its TCP carried the signaling).
        #expect(lab.counter(lab.wan, "udp-not-3478") == 0, "\(what): the public host received UDP other than STUN: \(lab.counters())")
        #expect(lab.counter(lab.wan, "udp-3478") > 0, "\(what): no STUN request reached coturn: \(lab.counters())")
        #expect(lab.counter(lab.wan, "signaling") > 0, "\(what): no signaling reached the public node: \(lab.counters())")
        // Nomination finishes too (READY).
        let completed = await netnsEventually(timeout: .seconds(5)) { h1.lastState == "Completed" && h2.lastState == "Completed" }
        #expect(completed, "\(what): not both Completed: \(h1.summary); \(h2.summary); \(lab.diagnostics())")
        print("netns connect cone (\(what)): \(h1.summary) [\(connectedMs(h1))]; \(h2.summary) [\(connectedMs(h2))]; "
            + "pair \(h1.pair.map { "\($0.local) ↔ \($0.remote)" } ?? "?"); \(x.echoed)/\(count) echoed (\(x.sent) sent); "
            + "NAT→NAT datagrams nat1 +\(after.0 - before.0), nat2 +\(after.1 - before.1), signaling packets to the public host "
            + "meanwhile +\(signalingDuring); \(lab.counters())")
    }

    /// Waits until every peer is Connected or Completed (or one exits); records an expectation
    /// with all diagnostics when not.
    private func waitConnected(_ lab: ConnectLab, _ peers: [ConnectPeer], timeout: Duration, _ what: String,
                               sourceLocation: SourceLocation = #_sourceLocation) async -> Bool {
        _ = await netnsEventually(timeout: timeout) {
            peers.allSatisfy(\.isConnected) || peers.contains { !$0.process.running }
        }
        let ok = peers.allSatisfy(\.isConnected)
        #expect(ok, "not Connected within \(timeout) \(what): \(peers.map(\.summary)); \(lab.diagnostics())",
                sourceLocation: sourceLocation)
        return ok
    }

    /// "Connected at … ms, Completed at … ms" (since the attempt's agent was created).
    private func connectedMs(_ h: ConnectPeer) -> String {
        let c = h.first("Connected")?["ms"] as? Double, d = h.first("Completed")?["ms"] as? Double
        return "Connected \(c.map { String(format: "%.0f", $0) } ?? "–") ms, Completed \(d.map { String(format: "%.0f", $0) } ?? "–") ms"
    }

    /// `sequence` occurs in `states` in this order (not necessarily adjacent).
    static func inOrder(_ states: [String], _ sequence: [String]) -> Bool {
        var i = 0
        for s in states where i < sequence.count && s == sequence[i] { i += 1 }
        return i == sequence.count
    }
}
