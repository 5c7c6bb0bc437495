import Foundation
import Testing
@testable import WarrenNice
import WarrenSession

/// coturn (`turnserver`) on loopback: relay candidates, their protocol, data over the relays.
/// Skipped when coturn is not installed. Part of the serialized `NiceAgentTests` suite.
extension NiceAgentTests {
    static let turnserver = "/usr/bin/turnserver"
    static var installed: Bool { FileManager.default.isExecutableFile(atPath: turnserver) }

    /// coturn on 127.0.0.1:`port` (UDP and TCP) with one user, for the duration of `body`.
    static func withCoturn(port: Int, _ body: () async throws -> Void) async throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: turnserver)
        p.arguments = ["-n", "-L", "127.0.0.1", "-E", "127.0.0.1", "-p", "\(port)", "--lt-cred-mech",
                       "--user", "warren:secret", "--realm", "warren", "--no-cli", "--no-tls", "--no-dtls",
                       "--allow-loopback-peers", "--fingerprint", "--log-file", "stdout", "--simple-log",
                       "--pidfile", NSTemporaryDirectory() + "warren-nice-turn-\(port).pid"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // coturn can take seconds over SIGTERM: SIGKILL, and poll rather than waitUntilExit
        // (which spins a run loop on Linux).
        func stop() async {
            kill(p.processIdentifier, SIGKILL)
            for _ in 0..<200 where p.isRunning { try? await Task.sleep(for: .milliseconds(10)) }
        }
        // Ready when it accepts TCP on its port (it opens its UDP and TCP listeners together);
        // a fixed pause was too short on a loaded machine, and the agents' allocations then
        // failed before coturn listened.
        var listening = false
        for _ in 0..<500 where !listening {
            listening = Self.acceptsTCP(port: port)
            if !listening { try await Task.sleep(for: .milliseconds(20)) }
        }
        if !listening {
            await stop()
            Issue.record("coturn did not listen on 127.0.0.1:\(port) within 10 s")
            return
        }
        do {
            try await body()
        } catch {
            await stop()
            throw error
        }
        await stop()
    }

    /// True if something accepts a TCP connection on 127.0.0.1:`port` now.
    static func acceptsTCP(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    static func port(_ offset: Int) -> Int { 30_000 + Int(getpid() % 10_000) * 2 + offset }

    /// Two agents that signal only relay candidates reach READY through coturn and exchange data.
    func relayOnly(servers: [ICEServer], expect proto: ICECandidate.RelayProtocol, typePreference: UInt32) async throws {
        let factory = try loopbackFactory(.init(servers: servers))
        let pair = try Pair(factory, forward: { $0.kind == .relay })
        pair.start()
        #expect(await pair.a.wait(for: .ready, 15))
        #expect(await pair.b.wait(for: .ready, 15))
        for log in [pair.a, pair.b] {
            let relays = log.localCandidates.filter { $0.kind == .relay }
            #expect(relays.count == 1)
            for r in relays {
                #expect(r.address == "127.0.0.1" && r.port > 0 && r.transport == .udp)
                #expect(r.relatedAddress == "127.0.0.1" && r.relatedPort != nil)
                #expect(r.relayProtocol == proto, "\(r) priority \(r.priority)")
                #expect(r.priority >> 24 == typePreference)
            }
        }
        #expect(pair.controlling.send(Array("via relay".utf8)))
        #expect(await pair.b.wait { $0.contains(.data(Array("via relay".utf8))) })
        #expect(pair.controlled.send(Array("back".utf8)))
        #expect(await pair.a.wait { $0.contains(.data(Array("back".utf8))) })
        // close_async releases the allocations before `.closed`.
        #expect(await pair.close())
    }

    @Test(.enabled(if: installed)) func turnRelayOverUDP() async throws {
        let port = Self.port(0)
        try await Self.withCoturn(port: port) {
            let udp = ICEServer(kind: .turn, host: "127.0.0.1", port: port, username: "warren", password: "secret")
            try await relayOnly(servers: [udp], expect: .udp, typePreference: 30)
        }
    }

    @Test(.enabled(if: installed)) func turnRelayOverTCP() async throws {
        let port = Self.port(0)
        try await Self.withCoturn(port: port) {
            let tcp = ICEServer(kind: .turn, host: "127.0.0.1", port: port, username: "warren", password: "secret",
                                transport: .tcp)
            try await relayOnly(servers: [tcp], expect: .tcp, typePreference: 20)
        }
    }

    /// The relay protocol comes from the TURN server's index in the priority, not from the
    /// first or only server: a dead TCP server first, the working UDP one second.
    @Test(.enabled(if: installed)) func turnRelayProtocolOfTheSecondServer() async throws {
        let port = Self.port(0)
        try await Self.withCoturn(port: port) {
            let dead = ICEServer(kind: .turn, host: "127.0.0.1", port: Self.port(1), username: "warren",
                                 password: "secret", transport: .tcp)
            let udp = ICEServer(kind: .turn, host: "127.0.0.1", port: port, username: "warren", password: "secret")
            try await relayOnly(servers: [dead, udp], expect: .udp, typePreference: 30)
        }
    }
}
