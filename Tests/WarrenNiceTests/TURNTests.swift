import Foundation
import Testing
@testable import WarrenNice
import WarrenSession
import WarrenTestSupport

/// coturn (`turnserver`) on loopback: relay candidates, their protocol, data over the relays.
/// Skipped when coturn is not installed. Part of the serialized `NiceAgentTests` suite.
extension NiceAgentTests {
    static let turnserver = "/usr/bin/turnserver"
    static var installed: Bool { FileManager.default.isExecutableFile(atPath: turnserver) }

    /// coturn on 127.0.0.1 (UDP and TCP on one port) with one user, for the duration of `body`,
    /// which gets the port. The port is one that nothing holds now, taken below the kernel's
    /// ephemeral range (`ip_local_port_range`, 32768–60999 by default): a port in that range can
    /// be held by any other test's outgoing connection or UDP socket at the moment coturn binds
    /// it, and coturn then exits. A coturn that exits or does not listen is tried again on
    /// another port, up to three times; the failure names the port and coturn's last log lines.
    static func withCoturn(_ body: (Int) async throws -> Void) async throws {
        var failures: [String] = []
        for _ in 0..<3 {
            guard let port = freePort() else { failures.append("no free port below 32768"); continue }
            let log = NSTemporaryDirectory() + "warren-nice-turn-\(getpid())-\(port).log"
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            defer { try? FileManager.default.removeItem(atPath: log) }
            let p = ChildProcess()
            p.executableURL = URL(fileURLWithPath: turnserver)
            p.arguments = ["-n", "-L", "127.0.0.1", "-E", "127.0.0.1", "-p", "\(port)", "--lt-cred-mech",
                           "--user", "warren:secret", "--realm", "warren", "--no-cli", "--no-tls", "--no-dtls",
                           "--allow-loopback-peers", "--fingerprint", "--log-file", "stdout", "--simple-log",
                           "--pidfile", NSTemporaryDirectory() + "warren-nice-turn-\(port).pid"]
            p.standardOutput = FileHandle(forWritingAtPath: log) ?? FileHandle.nullDevice
            p.standardError = p.standardOutput
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
            for _ in 0..<750 where !listening && p.isRunning {
                listening = Self.acceptsTCP(port: port)
                if !listening { try await Task.sleep(for: .milliseconds(20)) }
            }
            if !listening {
                let exited = !p.isRunning
                await stop()
                let tail = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")
                    .split(separator: "\n").suffix(8).joined(separator: " | ")
                failures.append("port \(port): coturn \(exited ? "exited" : "did not listen within 15 s"): \(tail)")
                continue
            }
            do {
                try await body(port)
            } catch {
                await stop()
                throw error
            }
            await stop()
            return
        }
        Issue.record("coturn did not start on 127.0.0.1 in 3 tries: \(failures.joined(separator: "; "))")
    }

    /// A port in 20000–32767 on which no TCP or UDP socket is bound on 127.0.0.1 now.
    static func freePort() -> Int? {
        for _ in 0..<200 {
            let port = Int.random(in: 20_000..<32_768)
            if canBind(port: port, type: Int32(SOCK_STREAM.rawValue)) && canBind(port: port, type: Int32(SOCK_DGRAM.rawValue)) {
                return port
            }
        }
        return nil
    }

    static func canBind(port: Int, type: Int32) -> Bool {
        onLoopback(port: port, type: type) { fd, addr, len in bind(fd, addr, len) == 0 }
    }

    /// True if something accepts a TCP connection on 127.0.0.1:`port` now.
    static func acceptsTCP(port: Int) -> Bool {
        onLoopback(port: port, type: Int32(SOCK_STREAM.rawValue)) { fd, addr, len in connect(fd, addr, len) == 0 }
    }

    /// `op` on a new socket of `type` with the address 127.0.0.1:`port` (false if no socket).
    static func onLoopback(port: Int, type: Int32,
                           _ op: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Bool) -> Bool {
        let fd = socket(AF_INET, type, 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { op(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }

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
        try await Self.withCoturn { port in
            let udp = ICEServer(kind: .turn, host: "127.0.0.1", port: port, username: "warren", password: "secret")
            try await relayOnly(servers: [udp], expect: .udp, typePreference: 30)
        }
    }

    @Test(.enabled(if: installed)) func turnRelayOverTCP() async throws {
        try await Self.withCoturn { port in
            let tcp = ICEServer(kind: .turn, host: "127.0.0.1", port: port, username: "warren", password: "secret",
                                transport: .tcp)
            try await relayOnly(servers: [tcp], expect: .tcp, typePreference: 20)
        }
    }

    /// The relay protocol comes from the TURN server's index in the priority, not from the
    /// first or only server: a dead TCP server first, the working UDP one second.
    @Test(.enabled(if: installed)) func turnRelayProtocolOfTheSecondServer() async throws {
        try await Self.withCoturn { port in
            let deadPort = try #require(Self.freePort())
            let dead = ICEServer(kind: .turn, host: "127.0.0.1", port: deadPort, username: "warren",
                                 password: "secret", transport: .tcp)
            let udp = ICEServer(kind: .turn, host: "127.0.0.1", port: port, username: "warren", password: "secret")
            try await relayOnly(servers: [dead, udp], expect: .udp, typePreference: 30)
        }
    }
}
