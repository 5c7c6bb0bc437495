import Testing
import WarrenTestSupport
import WarrenEngine

/// `HostPort`: the one HOST:PORT grammar (endpoints, beacons, the bridge's, metrics' and
/// forwarders' addresses) and the one meaning of "loopback".
@Suite(.computeLane) struct HostPortTests {
    @Test func parsesWhatEveryAddressUses() throws {
        let v4 = try HostPort(parsing: "127.0.0.1:7001", for: .dial)
        #expect(v4.host == "127.0.0.1" && v4.port == 7001 && v4.isIPv4 && v4.description == "127.0.0.1:7001")
        let v6 = try HostPort(parsing: "[::1]:8080", for: .dial)
        #expect(v6.host == "::1" && v6.isIPv6 && v6.description == "[::1]:8080")
        let name = try HostPort(parsing: "localhost:9100", for: .dial)
        #expect(!name.isLiteral && name.port == 9100)
        let any = try HostPort(parsing: "*:*", for: .listen)
        #expect(any.isUnspecified && any.port == nil && any.description == "0.0.0.0:*")
        #expect(try HostPort(parsing: "0.0.0.0:0", for: .listen).port == nil)
    }

    @Test func refusesWithTheRule() {
        let cases: [(String, HostPort.Use, String)] = [
            ("127.0.0.1", .dial, "no :PORT"), (":7001", .listen, "no host"), ("::1:7001", .dial, "brackets"),
            ("[::1:7001", .dial, "closing"), ("[nope]:1", .dial, "not an IPv6"), ("127.0.0.1:0", .dial, "1…65535"),
            ("127.0.0.1:*", .dial, "1…65535"), ("127.0.0.1:65536", .listen, "(or * for any)"), ("*:7001", .dial, "'*'"),
            ("0.0.0.0:7001", .dial, "every interface"), ("[::]:7001", .dial, "every interface"), ("a b:1", .dial, "space"),
            ("127.0.0.1:+1", .dial, "1…65535"), ("127.0.0.1:٣", .dial, "1…65535"),
        ]
        for (text, use, needle) in cases {
            do { _ = try HostPort(parsing: text, for: use); Issue.record("accepted \(text)") } catch {
                #expect(error.rule.contains(needle), "\(text): \(error.rule)")
            }
        }
    }

    @Test func loopbackMeansThisHostOnly() throws {
        for h in ["127.0.0.1", "127.1.2.3", "::1", "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1", "localhost", "LOCALHOST"] {
            #expect(HostPort(host: h, port: nil).isLoopback, "\(h)")
        }
        for h in ["0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "fe80::1", "localhost.example", "192.0.2.1"] {
            #expect(!HostPort(host: h, port: nil).isLoopback, "\(h)")
        }
    }
}
