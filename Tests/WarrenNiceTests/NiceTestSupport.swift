import Foundation
import Logging
import Synchronization
import Testing
@testable import WarrenNice
import WarrenSession

/// Everything one agent reported, in order.
final class EventLog: Sendable {
    private let events = Mutex<[ICEAgentEvent]>([])
    /// The agent that receives this agent's local candidates (set once both exist).
    let peer = Mutex<NiceAgent?>(nil)
    /// The threads the events arrived on (one: the factory's GLib thread).
    let threads = Mutex<Set<UInt>>([])
    /// Which local candidates go to the peer (the session layer never signals prflx ones).
    let forward: @Sendable (ICECandidate) -> Bool

    init(forward: @escaping @Sendable (ICECandidate) -> Bool = { $0.kind != .prflx }) {
        self.forward = forward
    }

    func record(_ event: ICEAgentEvent) {
        threads.withLock { _ = $0.insert(UInt(pthread_self())) }
        events.withLock { $0.append(event) }
        if case .localCandidate(let c) = event, forward(c) {
            peer.withLock { $0 }?.addRemoteCandidate(c)
        }
    }

    var all: [ICEAgentEvent] { events.withLock { $0 } }

    var states: [ICEAgentState] {
        all.compactMap { if case .state(let s) = $0 { s } else { nil } }
    }

    var localCandidates: [ICECandidate] {
        all.compactMap { if case .localCandidate(let c) = $0 { c } else { nil } }
    }

    var data: [[UInt8]] {
        all.compactMap { if case .data(let d) = $0 { d } else { nil } }
    }

    var closed: Bool { all.contains(.closed) }

    /// Polls until `condition` holds for the events, or `seconds` pass.
    func wait(_ seconds: Double = 10, until condition: ([ICEAgentEvent]) -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if condition(all) { return true }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return condition(all)
    }

    func wait(for state: ICEAgentState, _ seconds: Double = 10) async -> Bool {
        await wait(seconds) { $0.contains(.state(state)) }
    }

    func waitClosed(_ seconds: Double = 10) async -> Bool {
        await wait(seconds) { $0.contains(.closed) }
    }
}

/// Two agents of one factory wired to each other through the ICEAgent protocol only.
struct Pair {
    let controlling: NiceAgent
    let controlled: NiceAgent
    let a: EventLog
    let b: EventLog

    init(_ factory: NiceAgentFactory, link: Bool = true,
         forward: @escaping @Sendable (ICECandidate) -> Bool = { $0.kind != .prflx }) throws {
        let logA = EventLog(forward: forward), logB = EventLog(forward: forward)
        let ca = ICECredentials(ufrag: "ufragAAA", pwd: "passwordpasswordAAAAAAAA")
        let cb = ICECredentials(ufrag: "ufragBBB", pwd: "passwordpasswordBBBBBBBB")
        let agentA = try factory.agent(controlling: true, credentials: ca) { logA.record($0) }
        let agentB = try factory.agent(controlling: false, credentials: cb) { logB.record($0) }
        if link {
            logA.peer.withLock { $0 = agentB }
            logB.peer.withLock { $0 = agentA }
        }
        agentA.setRemoteCredentials(cb)
        agentB.setRemoteCredentials(ca)
        controlling = agentA
        controlled = agentB
        a = logA
        b = logB
    }

    func start() {
        controlling.startGathering()
        controlled.startGathering()
    }

    /// Closes both and waits for `.closed`; breaks the peer references.
    func close() async -> Bool {
        controlling.close()
        controlled.close()
        let ok = await a.waitClosed()
        let okB = await b.waitClosed()
        a.peer.withLock { $0 = nil }
        b.peer.withLock { $0 = nil }
        return ok && okB
    }
}

/// The threads of this process named `name` (all threads when nil).
func threadCount(named name: String? = nil) -> Int {
    guard let tasks = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task") else { return -1 }
    guard let name else { return tasks.count }
    return tasks.filter { task in
        let comm = try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)
        return comm?.trimmingCharacters(in: .whitespacesAndNewlines) == name
    }.count
}

/// A factory gathering on loopback only (libnice skips loopback unless it is listed).
func loopbackFactory(_ options: NiceAgentFactory.Options = .init(), threadName: String = "warren-nice") throws -> NiceAgentFactory {
    var o = options
    o.localAddresses = ["127.0.0.1"]
    return try NiceAgentFactory(options: o, logger: Logger(label: "warren.nice"), threadName: threadName)
}
