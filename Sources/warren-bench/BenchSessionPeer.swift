import ArgumentParser
import Foundation
import Synchronization
import WarrenCLI
import WarrenConformance
import WarrenNice
import WarrenSession

/// One libnice agent whose credentials and candidates travel as JSON lines on stdin/stdout:
/// the floor of `warren-bench session` (ICE alone, with a pipe for signaling).
struct BenchSessionPeer: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session-peer",
        abstract: "One ICE agent of `warren-bench session`'s floor, signaling over stdin/stdout.",
        discussion: """
        Prints its credentials at once ({"creds":…}); on the other agent's credentials (a line \
        {"creds":…} on stdin) it sets them and gathers, printing each local candidate \
        ({"cand":…}, peer-reflexive ones left out, as the session layer does); candidate lines \
        on stdin are added as they come. Events: {"event":"state","state":…,"ms":…} and \
        {"event":"pair","local":…,"remote":…,"ms":…}, ms since the process started. Closes the \
        agent and exits when stdin ends.
        """,
        shouldDisplay: false)

    @Flag(name: .long, help: "The controlling agent.") var controlling = false
    @Option(name: .long, help: ArgumentHelp("A STUN or TURN server URL (repeatable).", valueName: "URL")) var iceUrl: [String] = []
    @Option(name: .long, help: ArgumentHelp("The first STUN retransmission timeout, in ms.", valueName: "MS")) var stunTimeout: Int = 100
    @Option(name: .long, help: "STUN retransmissions before a check or binding request fails.") var stunRetransmissions: Int = 2

    func run() throws {
        let start = ContinuousClock.now
        let ms: @Sendable () -> String = { String(format: "%.1f", seconds(ContinuousClock.now - start) * 1000) }
        let servers = try iceUrl.map { try ICEServer(url: $0) }
        let factory: NiceAgentFactory
        do {
            factory = try NiceAgentFactory(options: .init(servers: servers, stunInitialTimeoutMs: stunTimeout,
                                                          stunMaxRetransmissions: stunRetransmissions))
        } catch { throw ValidationError("ICE: \(error)") }
        var rng = SystemRandomNumberGenerator()
        let credentials = ICECredentials.random(using: &rng)
        let closed = DispatchSemaphore(value: 0)
        let agent = try factory.makeAgent(controlling: controlling, credentials: credentials) { e in
            switch e {
            case .localCandidate(let c):
                guard c.kind != .prflx else { return }
                Output.line("{\"cand\":\(SessionPeerJSON.encode(c))}")
            case .gatheringDone:
                Output.line("{\"event\":\"gathered\",\"ms\":\(ms())}")
            case .state(let s):
                Output.line("{\"event\":\"state\",\"state\":\"\(s.rawValue)\",\"ms\":\(ms())}")
            case .selectedPair(let l, let r):
                Output.line("{\"event\":\"pair\",\"local\":\"\(l.description)\",\"remote\":\"\(r.description)\",\"ms\":\(ms())}")
            case .data:
                break
            case .closed:
                closed.signal()
            }
        }
        Output.line("{\"creds\":{\"ufrag\":\"\(credentials.ufrag)\",\"pwd\":\"\(credentials.pwd)\"}}")
        var remoteSet = false
        var held: [ICECandidate] = []
        while let line = readLine() {
            guard let o = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any] else { continue }
            if let c = o["creds"] as? [String: Any], !remoteSet,
               let u = c["ufrag"] as? String, let p = c["pwd"] as? String {
                let remote = ICECredentials(ufrag: u, pwd: p)
                if let why = remote.problem { Output.error("session-peer: credentials refused: \(why)"); continue }
                agent.setRemoteCredentials(remote)
                agent.startGathering()
                remoteSet = true
                for h in held { agent.addRemoteCandidate(h) }
                held = []
            } else if let c = o["cand"] as? [String: Any] {
                guard let cand = SessionPeerJSON.decode(c) else { Output.error("session-peer: bad candidate \(line)"); continue }
                if remoteSet { agent.addRemoteCandidate(cand) } else { held.append(cand) }
            }
        }
        agent.close()
        _ = closed.wait(timeout: .now() + 2)
    }
}

/// `ICECandidate` ↔ a JSON object, for the floor's pipe.
enum SessionPeerJSON {
    static func encode(_ c: ICECandidate) -> String {
        var o: [String: Any] = ["kind": c.kind.rawValue, "transport": c.transport.rawValue, "foundation": c.foundation,
                                "component": c.component, "priority": Int(c.priority), "address": c.address, "port": c.port]
        if let t = c.tcpType { o["tcptype"] = t.rawValue }
        if let a = c.relatedAddress { o["raddr"] = a }
        if let p = c.relatedPort { o["rport"] = p }
        if let r = c.relayProtocol { o["relay"] = r.rawValue }
        let d = (try? JSONSerialization.data(withJSONObject: o, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: d, as: UTF8.self)
    }

    static func decode(_ o: [String: Any]) -> ICECandidate? {
        guard let kind = (o["kind"] as? String).flatMap(ICECandidate.Kind.init(rawValue:)),
              let transport = (o["transport"] as? String).flatMap(ICECandidate.Transport.init(rawValue:)),
              let foundation = o["foundation"] as? String, let component = o["component"] as? Int,
              let priority = o["priority"] as? Int, let p = UInt32(exactly: priority),
              let address = o["address"] as? String, let port = o["port"] as? Int else { return nil }
        return ICECandidate(kind: kind, transport: transport,
                            tcpType: (o["tcptype"] as? String).flatMap(ICECandidate.TCPType.init(rawValue:)),
                            foundation: foundation, component: component, priority: p, address: address, port: port,
                            relatedAddress: o["raddr"] as? String, relatedPort: o["rport"] as? Int,
                            relayProtocol: (o["relay"] as? String).flatMap(ICECandidate.RelayProtocol.init(rawValue:)))
    }
}
