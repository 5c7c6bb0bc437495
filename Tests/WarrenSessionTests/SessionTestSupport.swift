import WarrenCore
import WarrenEngine
@testable import WarrenSession

let ms: UInt64 = 1_000_000
let second: UInt64 = 1_000_000_000

/// Two keys with a known order: `low` < `high` as big-endian integers.
let low = try! Key(bytes: [0x01] + [UInt8](repeating: 7, count: 31))
let high = try! Key(bytes: [0xF0] + [UInt8](repeating: 7, count: 31))

/// One machine with its clock, generator and the actions of the last input.
struct Driven {
    var m: SessionMachine
    var now: UInt64 = 1_000 * second
    var rng = SeededGenerator(seed: 7)
    var last: [SessionMachine.Action] = []
    var transitions: [SessionTransitions.Pair] = []

    init(local: Key = low, remote: Key = high, config: SessionConfig = SessionConfig()) {
        m = SessionMachine(local: local, remote: remote, config: config)
    }

    /// Started, with the peer's credentials and one of its candidates: Connecting.
    static func connecting() -> Driven {
        var d = Driven()
        d.feed(.start)
        d.feed(.remoteCredentials(credentials()))
        d.feed(.remoteCandidate(candidate().message))
        return d
    }

    @discardableResult
    mutating func feed(_ input: SessionMachine.Input) -> [SessionMachine.Action] {
        var a: [SessionMachine.Action] = []
        m.handle(input, now: now, rng: &rng, actions: &a)
        for case .report(let c) in a { transitions.append(.init(c.from, c.to)) }
        last = a
        return a
    }

    /// Advances to the machine's deadline and fires the timer.
    @discardableResult
    mutating func fire() -> [SessionMachine.Action] {
        guard let d = m.deadline else { return [] }
        now = max(now, d)
        return feed(.timer)
    }

    mutating func agent(_ e: ICEAgentEvent) -> [SessionMachine.Action] {
        feed(.agent(generation: m.generation, e))
    }
}

extension [SessionMachine.Action] {
    var sent: [SignalingMessage] { compactMap { if case .send(let m) = $0 { return m } else { return nil } } }
    var sentCredentials: [SignalingCredentials] { sent.filter(\.hasCredentials).map(\.credentials) }
    var sentCandidates: [SignalingCandidate] { sent.filter(\.hasCandidate).map(\.candidate) }
    var states: [SessionState] { compactMap { if case .report(let c) = $0 { return c.to } else { return nil } } }
    var created: [(UInt64, Bool, ICECredentials)] {
        compactMap { if case .createAgent(let g, let c, let cr) = $0 { return (g, c, cr) } else { return nil } }
    }
    var closedAgents: [UInt64] { compactMap { if case .closeAgent(let g) = $0 { return g } else { return nil } } }
    var addedCandidates: [ICECandidate] {
        compactMap { if case .addRemoteCandidate(_, let c) = $0 { return c } else { return nil } }
    }
    var problems: [String] { compactMap { if case .problem(let p) = $0 { return p } else { return nil } } }
}

func credentials(_ ufrag: String = "peerUFRG", _ pwd: String = "peerPasswordPeerPassword", need: Bool = false) -> SignalingCredentials {
    var c = SignalingCredentials()
    c.ufrag = ufrag
    c.pwd = pwd
    c.needCreds = need
    return c
}

func candidate(_ kind: ICECandidate.Kind = .host, _ address: String = "10.0.1.2", port: Int = 40_000,
               priority: UInt32 = 2_130_706_431) -> ICECandidate {
    ICECandidate(kind: kind, foundation: "1", priority: priority, address: address, port: port,
                 relatedAddress: kind == .host ? nil : "10.0.1.2", relatedPort: kind == .host ? nil : 40_000)
}
