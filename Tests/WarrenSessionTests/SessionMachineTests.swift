import Testing
import WarrenCore
import WarrenEngine
@testable import WarrenSession

@Suite struct SessionMachineTests {
    @Test func smallerKeyControls() {
        #expect(SessionMachine(local: low, remote: high).controlling)
        #expect(!SessionMachine(local: high, remote: low).controlling)
        // Big-endian: the first byte decides, not the last.
        let a = try! Key(bytes: [0x02] + [UInt8](repeating: 0, count: 30) + [0xFF])
        let b = try! Key(bytes: [0x03] + [UInt8](repeating: 0, count: 30) + [0x00])
        #expect(SessionMachine(local: a, remote: b).controlling)
        var d = Driven(local: high, remote: low)
        let created = d.feed(.start).created
        #expect(created.count == 1 && created[0].1 == false)
    }

    @Test func startCreatesAnAgentAndSendsCredentialsAtOnce() {
        var d = Driven()
        let a = d.feed(.start)
        #expect(d.m.state == .idle)
        #expect(a.states == [.idle])
        let c = a.created
        #expect(c.count == 1 && c[0].0 == 1 && c[0].1 == true)
        #expect(a.contains(.startGathering(generation: 1)))
        #expect(c[0].2.problem == nil && c[0].2.ufrag.count >= 4 && c[0].2.pwd.count >= 22)
        let sent = a.sentCredentials
        #expect(sent.count == 1 && sent[0].needCreds && sent[0].ufrag == c[0].2.ufrag && sent[0].pwd == c[0].2.pwd)
    }

    /// At once, then ≈ 500 ms × 1.5ⁿ within ±50 % jitter, capped at 60 s, forever.
    @Test func resendBackOff() {
        var d = Driven()
        d.feed(.start)
        var previous = d.now
        var intervals: [UInt64] = []
        for n in 1...60 {
            let a = d.fire()
            let creds = a.sentCredentials
            #expect(creds.count == 1 && creds[0].needCreds, "resend \(n)")
            #expect(a.states == [.idle], "Idle → Idle on resend \(n)")
            intervals.append(d.now - previous)
            previous = d.now
        }
        let cfg = SessionConfig()
        for (i, iv) in intervals.enumerated() {
            let base = Double(cfg.resendBase(i + 1))
            #expect(Double(iv) >= 0.5 * base - 1 && Double(iv) <= min(1.5 * base, 60e9) + 1, "interval \(i + 1): \(iv)")
            #expect(iv <= 60 * second)
        }
        #expect(cfg.resendBase(1) == 500 * ms)
        #expect(cfg.resendBase(2) == 750 * ms)
        #expect(cfg.resendBase(30) == 60 * second)
        // The jitter is real: not every interval equals its base.
        #expect(intervals.enumerated().contains { Double($0.element) != Double(cfg.resendBase($0.offset + 1)) })
        // Still Idle, one agent, nothing accumulated.
        #expect(d.m.state == .idle && d.m.generation == 1 && d.m.held.isEmpty)
    }

    @Test func needCredsIsAnsweredOnceWithOurs() {
        var d = Driven()
        d.feed(.start)
        let ours = d.m.localCredentials!
        let a = d.feed(.remoteCredentials(credentials(need: true)))
        let answers = a.sentCredentials
        #expect(answers.count == 1)
        #expect(answers.first.map { !$0.needCreds && $0.ufrag == ours.ufrag && $0.pwd == ours.pwd } == true)
        #expect(a.states == [.new])
        #expect(a.contains(.setRemoteCredentials(generation: 1, ICECredentials(ufrag: "peerUFRG", pwd: "peerPasswordPeerPassword"))))
        #expect(!a.contains(.startGathering(generation: 1)))  // gathering began with the agent
        // An answer (need_creds false) is not answered.
        var e = Driven()
        e.feed(.start)
        #expect(e.feed(.remoteCredentials(credentials(need: false))).sentCredentials.isEmpty)
        // New stops the resends: only the connect timeout (30 s) remains.
        #expect(d.m.deadline == d.now + 30 * second)
        d.now += 10 * second
        #expect(d.feed(.timer).sentCredentials.isEmpty)
    }

    @Test func duplicateCredentialsAreIgnored() {
        var d = Driven()
        d.feed(.start)
        d.feed(.remoteCredentials(credentials()))
        let again = d.feed(.remoteCredentials(credentials()))
        #expect(again.filter { if case .scheduleTimer = $0 { false } else { true } }.isEmpty)
        // A repeated request is still answered, once per request, without any other change.
        let asked = d.feed(.remoteCredentials(credentials(need: true)))
        #expect(asked.sentCredentials.count == 1 && asked.states.isEmpty && asked.created.isEmpty)
    }

    @Test func changedCredentialsRestartOurAgent() {
        var d = Driven()
        d.feed(.start)
        d.feed(.remoteCredentials(credentials()))
        _ = d.agent(.state(.connecting))
        d.feed(.remoteCandidate(candidate().message))
        let a = d.feed(.remoteCredentials(credentials("newUfrag", "newPasswordNewPassword12", need: true)))
        #expect(a.closedAgents == [1])
        #expect(a.created.map(\.0) == [2])
        #expect(a.states == [.closed, .idle, .new])
        #expect(a.contains(.setRemoteCredentials(generation: 2, ICECredentials(ufrag: "newUfrag", pwd: "newPasswordNewPassword12"))))
        #expect(d.m.counters.restarts == 1)
        // Our credentials stay: the restarted peer must not see a change and restart in turn.
        #expect(a.created[0].2 == d.m.localCredentials)
        // A late copy of the old credentials is not another restart.
        let late = d.feed(.remoteCredentials(credentials()))
        #expect(late.created.isEmpty && late.closedAgents.isEmpty && d.m.generation == 2)
    }

    @Test func invalidCredentialsAreRefused() {
        for (u, p) in [("", ""), ("abc", "peerPasswordPeerPassword"), ("peerUFRG", "short"),
                       ("peer UFRG", "peerPasswordPeerPassword"), ("peerUFRG", "peerPasswordPeerPassword=="),
                       ("üüüü", "peerPasswordPeerPassword"), (String(repeating: "a", count: 257), "peerPasswordPeerPassword")] {
            var d = Driven()
            d.feed(.start)
            let a = d.feed(.remoteCredentials(credentials(u, p, need: true)))
            #expect(a.problems.count == 1, "\(u)/\(p)")
            #expect(a.sentCredentials.isEmpty && d.m.state == .idle && d.m.remoteCredentials == nil)
            #expect(d.m.counters.credentialsRefused == 1)
        }
    }

    @Test func candidatesBeforeCredentialsAreHeldBounded() {
        var d = Driven()
        for i in 0..<40 { d.feed(.remoteCandidate(candidate(port: 40_000 + i).message)) }
        #expect(d.m.state == .unknown && d.m.held.count == 32)
        #expect(d.m.counters.candidatesDropped == 8)
        // The same candidate twice is held once.
        d.feed(.remoteCandidate(candidate(port: 40_039).message))
        #expect(d.m.held.count == 32)
        d.feed(.start)
        let a = d.feed(.remoteCredentials(credentials()))
        // The oldest 8 were dropped while held; an agent takes 25 (libnice's limit).
        #expect(a.addedCandidates.count == 25)
        #expect(a.addedCandidates.first?.port == 40_008)
        #expect(d.m.counters.candidatesDropped == 8 + 7)
        #expect(a.states == [.new, .connecting])
        #expect(d.m.held.isEmpty)
    }

    @Test func theFirstCredentialsFromAPeerStartTheSession() {
        var d = Driven()
        let a = d.feed(.remoteCredentials(credentials(need: true)))
        #expect(a.states == [.idle, .new])
        #expect(a.created.count == 1)
        // Ours with need_creds (from Idle), then the answer.
        #expect(a.sentCredentials.map(\.needCreds) == [true, false])
    }

    @Test func badCandidatesAreCountedNeverFatal() {
        var d = Driven()
        d.feed(.start)
        d.feed(.remoteCredentials(credentials()))
        var bad: [SignalingCandidate] = []
        var c = candidate().message; c.address = "peer.local"; bad.append(c)
        c = candidate().message; c.address = "300.1.1.1"; bad.append(c)
        c = candidate().message; c.port = 70_000; bad.append(c)
        c = candidate().message; c.port = 0; bad.append(c)
        c = candidate().message; c.type = .unspecifiedCandidateType; bad.append(c)
        c = candidate().message; c.networkType = .udp6; bad.append(c)
        c = candidate().message; c.foundation = String(repeating: "f", count: 33); bad.append(c)
        c = candidate().message; c.foundation = ""; bad.append(c)
        c = candidate().message; c.priority = 0; bad.append(c)
        c = candidate().message; c.component = 0; bad.append(c)
        c = candidate().message; c.tcpType = .active; bad.append(c)
        c = candidate().message; c.networkType = .tcp4; bad.append(c)
        for b in bad { #expect(d.feed(.remoteCandidate(b)).problems.count == 1, "\(b)") }
        #expect(d.m.counters.candidatesRefused == bad.count)
        #expect(d.m.state == .new)
        // A good one still works, and a priority above Int32.max survives the int32 field.
        let high = candidate(priority: 0xFE00_00FF)
        #expect(try! ICECandidate(message: high.message) == high)
        #expect(d.feed(.remoteCandidate(high.message)).addedCandidates == [high])
        #expect(d.m.state == .connecting)
    }

    /// The agent gathers from its creation; what it finds while Idle goes out once the peer's
    /// credentials arrive (after our answer to them), then each new candidate at once.
    @Test func candidatesGatheredWhileIdleWaitForThePeer() {
        var d = Driven()
        d.feed(.start)
        #expect(d.agent(.localCandidate(candidate(.host, "10.0.1.2"))).sentCandidates.isEmpty)
        #expect(d.agent(.localCandidate(candidate(.srflx, "203.0.113.11"))).sentCandidates.isEmpty)
        let a = d.feed(.remoteCredentials(credentials(need: true)))
        #expect(a.sent.map(\.hasCredentials) == [true, false, false])
        #expect(a.sentCandidates.map(\.address) == ["10.0.1.2", "203.0.113.11"])
        #expect(d.agent(.localCandidate(candidate(.relay, "203.0.113.1"))).sentCandidates.count == 1)
        // A restart forgets what the old agent gathered.
        var e = Driven()
        e.feed(.start)
        _ = e.agent(.localCandidate(candidate(.host, "10.0.1.2")))
        e.feed(.remoteCredentials(credentials()))
        e.now += 31 * second
        e.feed(.timer)  // connect timeout: agent 2
        #expect(e.m.generation == 2)
        #expect(e.feed(.remoteCredentials(credentials("otherUfrag", "otherPasswordOtherPasswd"))).sentCandidates.isEmpty)
    }

    @Test func localCandidatesTrickleExceptPeerReflexive() {
        var d = Driven()
        d.feed(.start)
        d.feed(.remoteCredentials(credentials()))
        #expect(d.agent(.localCandidate(candidate(.host, "10.0.1.2"))).sentCandidates.count == 1)
        let srflx = candidate(.srflx, "203.0.113.11", port: 49_152)
        let out = d.agent(.localCandidate(srflx)).sentCandidates
        #expect(out.count == 1 && out[0].type == .serverReflexive && out[0].address == "203.0.113.11")
        #expect(out[0].relatedAddress.address == "10.0.1.2")
        #expect(d.agent(.localCandidate(candidate(.prflx, "10.0.9.9"))).sentCandidates.isEmpty)
        #expect(d.agent(.localCandidate(candidate(.host, "fe80::fc:ff:fe00:1"))).sentCandidates.isEmpty)
        #expect(d.agent(.localCandidate(candidate(.host, "febf::1"))).sentCandidates.isEmpty)
        #expect(d.agent(.localCandidate(candidate(.host, "fd00::2"))).sentCandidates.count == 1)
        #expect(d.agent(.gatheringDone).sent.isEmpty)  // end of gathering is not signalled
        #expect(d.m.counters.candidatesSent == 3)
    }

    @Test func eventsOfAnOldAgentAreIgnored() {
        var d = Driven()
        d.feed(.start)
        d.feed(.remoteCredentials(credentials()))
        d.feed(.remoteCandidate(candidate().message))
        _ = d.agent(.state(.failed))  // → Closed → Idle with agent 2
        #expect(d.m.generation == 2)
        #expect(d.feed(.agent(generation: 1, .state(.ready))).isEmpty)
        #expect(d.feed(.agent(generation: 1, .localCandidate(candidate()))).isEmpty)
        #expect(d.m.state == .idle)
    }

    @Test func aPeerThatNeverAnswersIsRetriedWithinBoundedMemory() {
        var d = Driven()
        d.feed(.start)
        for i in 0..<10_000 {
            d.feed(.remoteCandidate(candidate(port: 1 + i % 60_000).message))
            if i % 100 == 0 { d.fire() }
        }
        #expect(d.m.state == .idle && d.m.generation == 1)
        #expect(d.m.held.count <= 32)
        #expect(d.m.counters.credentialsSent == 101)
    }

    @Test func connectTimeoutStartsOver() {
        var d = Driven()
        d.feed(.start)
        d.feed(.remoteCredentials(credentials()))
        #expect(d.m.state == .new)
        let first = d.m.localCredentials
        d.now += 31 * second
        let a = d.feed(.timer)
        #expect(a.states == [.failed, .closed, .idle])
        #expect(a.closedAgents == [1] && a.created.map(\.0) == [2])
        // A spontaneous restart draws new credentials.
        #expect(a.created[0].2 != first)
    }

    @Test func agentThatCannotBeCreatedIsRetriedWithBackOff() {
        var d = Driven()
        d.feed(.start)
        let a = d.feed(.agentUnavailable(generation: 1, reason: "no interface"))
        #expect(a.states == [.closed])
        #expect(d.m.deadline == d.now + second)
        let b = d.fire()
        #expect(b.created.map(\.0) == [2] && b.states == [.idle])
        d.feed(.agentUnavailable(generation: 2, reason: "no interface"))
        #expect(d.m.deadline == d.now + 2 * second)
    }

    @Test func closeIsFinalUntilStart() {
        var d = Driven()
        d.feed(.start)
        let a = d.feed(.close)
        #expect(a.closedAgents == [1] && a.states == [.closed])
        #expect(a.contains(.scheduleTimer(at: nil)))
        #expect(d.feed(.remoteCredentials(credentials(need: true))).isEmpty)
        #expect(d.feed(.timer).isEmpty)
        let b = d.feed(.start)
        #expect(b.states == [.idle] && b.created.map(\.0) == [2])
    }

    /// Every transition of the design note's diagram, driven through its inputs.
    @Test func everyTransitionOfTheDiagramIsReached() {
        var seen = Set<SessionTransitions.Pair>()
        // Success, then a lost path after Completed (Completed → Disconnected → Closed → Idle).
        var d = Driven()
        d.feed(.start)
        d.fire()  // Idle → Idle
        d.feed(.remoteCredentials(credentials()))
        d.feed(.remoteCandidate(candidate().message))
        _ = d.agent(.state(.connecting))
        _ = d.agent(.selectedPair(local: candidate(.srflx, "203.0.113.11"), remote: candidate(.srflx, "203.0.113.12")))
        _ = d.agent(.state(.connected))
        let ready = d.agent(.state(.ready))
        if case .report(let c)? = ready.first(where: { if case .report = $0 { true } else { false } }) {
            #expect(c.local?.address == "203.0.113.11" && c.remote?.address == "203.0.113.12")
        }
        _ = d.agent(.state(.failed))
        #expect(d.m.state == .idle)
        seen.formUnion(d.transitions)
        // Lost before nomination finished: Connected → Disconnected.
        d = Driven.connecting()
        _ = d.agent(.state(.connecting))
        _ = d.agent(.state(.connected))
        _ = d.agent(.state(.failed))
        seen.formUnion(d.transitions)
        // Checks fail: Checking → Failed → Closed → Idle.
        d = Driven.connecting()
        _ = d.agent(.state(.connecting))
        _ = d.agent(.state(.failed))
        seen.formUnion(d.transitions)
        // Closed from Completed.
        d = Driven.connecting()
        _ = d.agent(.state(.ready))
        d.feed(.close)
        seen.formUnion(d.transitions)
        let missing = SessionTransitions.all.subtracting(seen)
        #expect(missing.isEmpty, "not reached: \(missing)")
    }

    @Test func aLaterAgentStateStepsThroughTheEarlierOnes() {
        var d = Driven()
        d.feed(.start)
        d.feed(.remoteCredentials(credentials()))
        // Checks from the peer can succeed before any of its candidates arrived.
        #expect(d.agent(.state(.ready)).states == [.connecting, .checking, .connected, .completed])
    }

    /// Both peers start at once and their first messages cross: each takes the other's
    /// credentials, answers once, and there is one agent per side, with opposite roles.
    @Test func glareResolvesToOneSession() {
        var a = Driven(local: low, remote: high)
        var b = Driven(local: high, remote: low)
        var toB = a.feed(.start).sent
        var toA = b.feed(.start).sent
        for _ in 0..<4 {
            let nextB = toA.flatMap { m in m.hasCredentials ? a.feed(.remoteCredentials(m.credentials)).sent : [] }
            let nextA = toB.flatMap { m in m.hasCredentials ? b.feed(.remoteCredentials(m.credentials)).sent : [] }
            (toB, toA) = (nextB, nextA)
        }
        #expect(a.m.state == .new && b.m.state == .new)
        #expect(a.m.generation == 1 && b.m.generation == 1)
        #expect(a.m.remoteCredentials == b.m.localCredentials && b.m.remoteCredentials == a.m.localCredentials)
        #expect(a.m.controlling && !b.m.controlling)
        #expect(a.m.counters.credentialsSent == 2 && b.m.counters.credentialsSent == 2)  // ours, one answer
    }
}
