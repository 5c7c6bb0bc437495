import Foundation
import Testing
@testable import WarrenNice
import WarrenSession

extension NiceAgentTests {
    /// ICE-TCP on loopback with only TCP candidates signalled: active candidates carry port 9
    /// (libnice holds 0), passive and simultaneous-open ones a real port, and the pair connects.
    @Test func iceTCPOnlyConnects() async throws {
        let factory = try loopbackFactory(.init(iceTCP: true))
        let pair = try Pair(factory, forward: { $0.transport == .tcp && $0.kind == .host })
        pair.start()
        #expect(await pair.a.wait(for: .ready, 15))
        #expect(await pair.b.wait(for: .ready, 15))
        for log in [pair.a, pair.b] {
            let tcp = log.localCandidates.filter { $0.transport == .tcp && $0.kind == .host }
            #expect(Set(tcp.compactMap(\.tcpType)).isSuperset(of: [.active, .passive]))
            for c in tcp {
                #expect(c.tcpType != nil)
                if c.tcpType == .active { #expect(c.port == 9) } else { #expect(c.port > 0 && c.port != 9) }
            }
            #expect(log.localCandidates.contains { $0.transport == .udp })
        }
        let selected = pair.a.all.compactMap { e -> ICECandidate? in
            if case .selectedPair(let l, _) = e { l } else { nil }
        }
        #expect(selected.last?.transport == .tcp)
        #expect(pair.controlling.send(Array("over tcp".utf8)))
        #expect(await pair.b.wait { $0.contains(.data(Array("over tcp".utf8))) })
        #expect(await pair.close())
    }
}
