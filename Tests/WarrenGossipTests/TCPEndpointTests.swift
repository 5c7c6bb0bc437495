import Testing
import Warren

/// The one endpoint parser: every rule, for listening and for dialling.
@Suite struct TCPEndpointTests {
    @Test func parsesWhatNodesUse() throws {
        let v4 = try TCPEndpoint(parsing: "tcp://127.0.0.1:7001", for: .dial)
        #expect(v4.host == "127.0.0.1" && v4.port == 7001 && v4.isIPv4 && v4.description == "tcp://127.0.0.1:7001")
        let v6 = try TCPEndpoint(parsing: "tcp://[::1]:7010", for: .dial)
        #expect(v6.host == "::1" && v6.isIPv6 && v6.description == "tcp://[::1]:7010")
        let name = try TCPEndpoint(parsing: "tcp://localhost:7010", for: .dial)
        #expect(!name.isLiteral)
        #expect(try name.resolved().isLiteral)
        let any = try TCPEndpoint(parsing: "tcp://*:*", for: .listen)
        #expect(any.isUnspecified && any.port == nil && any.description == "tcp://0.0.0.0:*")
        #expect(try TCPEndpoint(parsing: "tcp://[::]:0", for: .listen).isUnspecified)
        #expect(try TCPEndpoint(parsing: "tcp://127.0.0.1:65535", for: .dial).port == 65535)
    }

    @Test func refusesWithTheRule() {
        let cases: [(String, TCPEndpoint.Use, String)] = [
            ("tcp://127.0.0.1:99999", .listen, "1…65535"), ("tcp://127.0.0.1:0", .dial, "1…65535"),
            ("tcp://127.0.0.1:*", .dial, "1…65535"), ("tcp://127.0.0.1", .dial, "no :PORT"),
            ("udp://127.0.0.1:1", .dial, "tcp://"), ("foo", .dial, "tcp://"), ("tcp://:7001", .listen, "no host"),
            ("tcp://::1:7001", .dial, "brackets"), ("tcp://[::1:7001", .dial, "closing"), ("tcp://[nope]:1", .dial, "not an IPv6"),
            ("tcp://0.0.0.0:7001", .dial, "every interface"), ("tcp://[::]:7001", .dial, "every interface"),
            ("tcp://*:7001", .dial, "'*'"), ("tcp://127.0.0.1:+80", .dial, "1…65535"), ("tcp://a b:1", .dial, "space"),
        ]
        for (text, use, needle) in cases {
            do { _ = try TCPEndpoint(parsing: text, for: use); Issue.record("accepted \(text)") } catch {
                #expect("\(error)".contains(needle) && "\(error)".contains("\"\(text)\""), "\(text): \(error)")
            }
        }
        #expect(throws: GossipConfigurationError.self) { try TCPEndpoint.resolve("no-such-host.invalid") }
    }

    @Test func configurationRefusesWhatCannotWork() throws {
        let k = PrivateKey.generate()
        var s = GossipSettings(listen: "tcp://127.0.0.1:*")
        s.peers = ["\(k.publicKey.base64)@tcp://127.0.0.1:1"]
        #expect(throws: GossipConfigurationError.self) { try GossipConfiguration(settings: s) }
        s.allowedKeys = []
        s.nodeKey = k
        #expect(throws: GossipConfigurationError.self) { try GossipConfiguration(settings: s) }
        s.allowedKeys = [k.publicKey]
        #expect(try GossipConfiguration(settings: s).isClosed)
        var d = GossipSettings(listen: "tcp://127.0.0.1:*")
        d.discoveryPort = 7000
        #expect(throws: GossipConfigurationError.self) { try GossipConfiguration(settings: d) }
        d.discover = true
        #expect(try GossipConfiguration(settings: d).discoveryPort == 7000)
    }
}
