import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Warren
import WarrenTestSupport

/// A node run as a service: its configuration file, its control socket (status, members,
/// send), SIGHUP (allow-list and log level), a shared key, --version.
@Suite(.serialized, .timeLimit(.minutes(2)),
       .enabled(if: WarrenExecutable.url != nil,
                "warren executable not found next to the test bundle (build it: swift build --product warren)"))
struct NodeServiceTests {
    typealias T = NodeCommandTests
    typealias Child = NodeCommandTests.Child

    static func pub(_ k: PrivateKey) -> String { k.publicKey.base64 }

    static func write(_ text: String, _ name: String, in dir: URL) throws -> String {
        let path = dir.appending(path: name).path
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// `warren args…` with extra environment, to completion.
    static func run(_ args: [String], env: [String: String] = [:], in dir: URL) async throws -> T.Result {
        let c = try Child(args, in: dir, name: args.first ?? "warren", environment: env)
        defer { c.forceKill() }
        c.closeStdin()
        let status = await c.waitExit(timeout: .seconds(20))
        return T.Result(status: status, stdout: c.stdout, stderr: c.stderr)
    }

    @Test func configurationFileAndCheck() async throws {
        try await T.withTempDir { dir in
            let k = PrivateKey.generate()
            let f = try T.writeKey(k, "k.key", in: dir)
            let config = try Self.write("""
                # warren node settings
                key-file: \(f)
                listen: tcp://127.0.0.1:*
                ttl: 3
                degree: 0
                preset: lan
                control: none
                log-level: warning
                seen-capacity: 49152
                peer:
                  - tcp://127.0.0.1:9
                """, "warren.yaml", in: dir)
            let check = try await T.run(["node", "--config", config, "--check"], in: dir)
            #expect(check.status == 0, "\(check.stderr)")
            #expect(check.stdout.contains("configuration is valid") && check.stdout.contains("ttl 3"), "\(check.stdout)")
            #expect(check.stdout.contains(Self.pub(k)) && !check.stdout.contains(k.base64), "\(check.stdout)")
            #expect(check.stdout.contains("seen cache 49152 ids, admits 4096 new ids/s (2048 from one neighbour)"), "\(check.stdout)")
            // Flags override the file.
            let over = try await T.run(["node", "--config", config, "--ttl", "5", "--seen-capacity", "1024", "--check"], in: dir)
            #expect(over.status == 0 && over.stdout.contains("ttl 5") && over.stdout.contains("seen cache 1024 ids"), "\(over.stdout) \(over.stderr)")
            // What is wrong in the file is named, status 1.
            for (text, needle) in [("listen: tcp://127.0.0.1:99999\nkey-file: \(f)\n", "--listen"),
                                   ("bogus: 1\n", "unknown setting \"bogus\""),
                                   ("ttl: many\n", "ttl must be a whole number"),
                                   ("key-file: \(f)\nlisten: tcp://127.0.0.1:*\nseen-capacity: 10\n", "--seen-capacity must be 1024…4194304"),
                                   ("listen: [\n", "not valid YAML")] {
                let bad = try Self.write(text, "bad.yaml", in: dir)
                let r = try await T.run(["node", "--config", bad, "--check"], in: dir)
                #expect(r.status == 1 && r.stderr.contains(needle), "\(text): \(r.stderr)")
            }
            // The file alone runs a node.
            let c = try Child(["node", "--config", config], in: dir, name: "N")
            defer { c.forceKill() }
            #expect(await T.eventually(timeout: .seconds(10)) { c.objects.first?["event"] as? String == "ready" }, "\(c.stderr)")
        }
    }

    @Test func controlSocketServesStatusMembersAndSend() async throws {
        try await T.withTempDir { dir in
            let ka = PrivateKey.generate(), kb = PrivateKey.generate()
            let fa = try T.writeKey(ka, "a.key", in: dir), fb = try T.writeKey(kb, "b.key", in: dir)
            let sockA = dir.appending(path: "a.sock").path, sockB = dir.appending(path: "b.sock").path
            let (a, readyA, _) = try await T.startNode("A", key: fa, peers: [], extra: ["--control", sockA], in: dir)
            defer { a.forceKill() }
            #expect(readyA["control"] as? String == sockA)
            let endA = try #require(readyA["endpoint"] as? String)
            let (b, _, _) = try await T.startNode("B", key: fb, peers: [endA], extra: ["--control", sockB], in: dir)
            defer { b.forceKill() }
            #expect(await T.eventually(timeout: .seconds(10)) { T.peerUps(a) >= 1 && T.peerUps(b) >= 1 })
            // No flags: the socket comes from the environment, as a service's default would.
            let env = ["WARREN_CONTROL": sockA]
            let status = try await Self.run(["status"], env: env, in: dir)
            #expect(status.status == 0, "\(status.stderr)")
            #expect(status.stdout.contains("node \(endA)") && status.stdout.contains(Self.pub(ka)) && status.stdout.contains("1 neighbours"), "\(status.stdout)")
            let members = try await Self.run(["members"], env: env, in: dir)
            #expect(members.status == 0, "\(members.stderr)")
            let rows = members.stdout.split(separator: "\n")
            #expect(rows.first?.contains("KEY") == true && rows.contains { $0.contains("self") && $0.contains(Self.pub(ka)) }
                    && rows.contains { $0.contains("alive") }, "\(members.stdout)")
            let json = try await Self.run(["members", "--json"], env: env, in: dir)
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
            #expect((obj["members"] as? [[String: Any]])?.count == 2, "\(json.stdout)")
            // send: from A's key, through A, to B.
            let sent = try await Self.run(["send", "--to", Self.pub(kb), #"{"credentials":{"ufrag":"ctl"}}"#], env: env, in: dir)
            #expect(sent.status == 0, "\(sent.stderr)")
            #expect(await T.eventually { T.messages(b, sender: Self.pub(ka)).count == 1 }, "B: \(b.stdout)")
            let bad = try await Self.run(["send", "--to", "nope", "{}"], env: env, in: dir)
            #expect(bad.status == 1 && bad.stderr.contains("\"to\""), "\(bad.stderr)")
            let nobody = try await Self.run(["status"], env: ["WARREN_CONTROL": dir.appending(path: "none.sock").path], in: dir)
            #expect(nobody.status == 1 && nobody.stderr.contains("cannot reach a node"), "\(nobody.stderr)")
            // A second node on a live socket refuses to take it (given explicitly).
            let (taken, _) = (try? await T.startNode("C", key: fb, peers: [], extra: ["--control", sockA], in: dir)).map { ($0.child, $0.ready) } ?? (nil, nil)
            taken?.forceKill()
            #expect(taken == nil, "a second node took a live control socket")
        }
    }

    /// SIGHUP: a removed member is cut off, an added one joins, messages between the others keep
    /// arriving, and the log level changes; the node does not die.
    @Test func sighupReloadsTheAllowListAndTheLogLevel() async throws {
        try await T.withTempDir { dir in
            let ka = PrivateKey.generate(), kb = PrivateKey.generate(), kc = PrivateKey.generate(), kd = PrivateKey.generate()
            let fa = try T.writeKey(ka, "a.key", in: dir), fb = try T.writeKey(kb, "b.key", in: dir)
            let fc = try T.writeKey(kc, "c.key", in: dir), fd = try T.writeKey(kd, "d.key", in: dir)
            let all = [ka, kb, kc, kd].map(Self.pub).joined(separator: "\n") + "\n"
            let membersA = try Self.write([ka, kb, kc].map(Self.pub).joined(separator: "\n") + "\n", "members-a", in: dir)
            let membersAll = try Self.write(all, "members-all", in: dir)
            let configA = try Self.write("log-level: warning\nallow: \(membersA)\n", "a.yaml", in: dir)
            var children: [Child] = []
            defer { for c in children { c.forceKill() } }
            let a = try Child(["node", "--config", configA, "--key-file", fa, "--listen", "tcp://127.0.0.1:*", "--degree", "0",
                               "--control", "none"], in: dir, name: "A")
            children.append(a)
            #expect(await T.eventually(timeout: .seconds(10)) { a.objects.first?["event"] as? String == "ready" }, "\(a.stderr)")
            let endA = try #require(a.objects.first?["endpoint"] as? String)
            #expect(endA.hasPrefix(Self.pub(ka) + "@"))
            var nodes: [String: Child] = [:]
            for (n, f) in [("B", fb), ("C", fc)] {
                let (c, _, _) = try await T.startNode(n, key: f, peers: [endA], extra: ["--allow", membersAll, "--control", "none"], in: dir)
                children.append(c); nodes[n] = c
            }
            let b = nodes["B"]!, c = nodes["C"]!
            #expect(await T.eventually(timeout: .seconds(20)) { T.peerUps(a) >= 2 && T.peerUps(b) >= 1 && T.peerUps(c) >= 1 }, "A: \(a.stdout)")
            try c.write(#"{"to":"\#(Self.pub(ka))","message":{"candidate":{"port":1}}}"# + "\n")
            #expect(await T.eventually { T.messages(a, sender: Self.pub(kc)).count == 1 })

            // Remove C, add D; raise the log level; SIGHUP while B sends.
            try ([ka, kb, kd].map(Self.pub).joined(separator: "\n") + "\n").write(toFile: membersA, atomically: true, encoding: .utf8)
            try "log-level: debug\nallow: \(membersA)\n".write(toFile: configA, atomically: true, encoding: .utf8)
            for i in 0..<10 { try b.write(#"{"to":"\#(Self.pub(ka))","message":{"candidate":{"port":\#(100 + i)}}}"# + "\n") }
            kill(a.process.processIdentifier, SIGHUP)
            for i in 10..<20 { try b.write(#"{"to":"\#(Self.pub(ka))","message":{"candidate":{"port":\#(100 + i)}}}"# + "\n") }
            #expect(await T.eventually(timeout: .seconds(10)) {
                a.objects.contains { $0["event"] as? String == "peer-down" && $0["reason"] as? String == "removed" }
            }, "A: \(a.stdout) \(a.stderr)")
            #expect(a.process.isRunning, "SIGHUP stopped the node")
            #expect(await T.eventually { a.stderr.contains("reloaded") && a.stderr.contains("debug") }, "\(a.stderr)")
            #expect(await T.eventually { T.messages(a, sender: Self.pub(kb)).count == 20 }, "B → A: \(T.messages(a, sender: Self.pub(kb)).count) of 20")
            // C is cut off: its next message does not reach A.
            try c.write(#"{"to":"\#(Self.pub(ka))","message":{"candidate":{"port":2}}}"# + "\n")
            try await Task.sleep(for: .seconds(2))
            #expect(T.messages(a, sender: Self.pub(kc)).count == 1, "a removed member still reached A")
            // D, newly listed, joins.
            let (d, _, _) = try await T.startNode("D", key: fd, peers: [endA], extra: ["--allow", membersAll, "--control", "none"], in: dir)
            children.append(d)
            #expect(await T.eventually(timeout: .seconds(20)) { T.peerUps(d) >= 1 }, "D: \(d.stdout) \(d.stderr)")
            try d.write(#"{"to":"\#(Self.pub(ka))","message":{"candidate":{"port":4}}}"# + "\n")
            #expect(await T.eventually(timeout: .seconds(10)) { T.messages(a, sender: Self.pub(kd)).count == 1 }, "A: \(a.stdout)")
        }
    }

    @Test(arguments: [false, true]) func twoNodesWithOneKeyAreBothWarned(closed: Bool) async throws {
        try await T.withTempDir { dir in
            let k = PrivateKey.generate()
            let f = try T.writeKey(k, "k.key", in: dir)
            let members = try Self.write(Self.pub(k) + "\n", "members", in: dir)
            let allow = closed ? ["--allow", members] : []
            let (a, readyA, _) = try await T.startNode("A", key: f, peers: [], extra: allow + ["--control", "none"], in: dir)
            defer { a.forceKill() }
            let endA = try #require(readyA["endpoint"] as? String)
            #expect(endA.contains("@") == closed, "\(endA)")
            let (b, _, _) = try await T.startNode("B", key: f, peers: [endA], extra: allow + ["--control", "none"], in: dir)
            defer { b.forceKill() }
            for (n, x) in [("A", a), ("B", b)] {
                #expect(await T.eventually(timeout: .seconds(15)) { x.stderr.contains("another node uses this node's key") }, "\(n): \(x.stderr)")
            }
        }
    }

    /// Open overlays learn keys too: peer-up lines and members carry them.
    @Test func publicKeysComeWithNeighbours() async throws {
        try await T.withTempDir { dir in
            let ka = PrivateKey.generate(), kb = PrivateKey.generate()
            let fa = try T.writeKey(ka, "a.key", in: dir), fb = try T.writeKey(kb, "b.key", in: dir)
            let sock = dir.appending(path: "a.sock").path
            let (a, readyA, _) = try await T.startNode("A", key: fa, peers: [], extra: ["--control", sock], in: dir)
            defer { a.forceKill() }
            let endA = try #require(readyA["endpoint"] as? String)
            #expect(!endA.contains("@"), "an open overlay's ready line: \(endA)")
            let (b, _, _) = try await T.startNode("B", key: fb, peers: [endA], extra: ["--control", "none"], in: dir)
            defer { b.forceKill() }
            #expect(await T.eventually(timeout: .seconds(10)) {
                a.objects.contains { $0["event"] as? String == "peer-up" && $0["public_key"] as? String == Self.pub(kb) }
                    && b.objects.contains { $0["event"] as? String == "peer-up" && $0["public_key"] as? String == Self.pub(ka)
                        && $0["peer"] as? String == endA }
            }, "A: \(a.stdout) B: \(b.stdout)")
            let members = try await Self.run(["members", "--control", sock], in: dir)
            #expect(members.stdout.split(separator: "\n").contains { $0.contains("alive") && $0.contains(Self.pub(kb)) }, "\(members.stdout)")
        }
    }

    /// A datagram socket standing in for systemd's `$NOTIFY_SOCKET`.
    final class NotifySocket: @unchecked Sendable {
        let path: String
        let fd: Int32
        init(path: String) {
            self.path = path
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
            var addr = sockaddr_un()
            addr.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &addr.sun_path) { raw in
                let b = Array(path.utf8)
                raw.copyBytes(from: b)
                raw[b.count] = 0
            }
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            var tv = timeval(tv_sec: 0, tv_usec: 200_000)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        /// The next datagram within `timeout` (read off the cooperative pool).
        func next(timeout: Duration = .seconds(10)) async -> String? {
            await T.blocking { self.receive(timeout: timeout) }
        }

        func receive(timeout: Duration) -> String? {
            let clock = ContinuousClock(), deadline = clock.now.advanced(by: timeout)
            var buf = [UInt8](repeating: 0, count: 4096)
            while clock.now < deadline {
                let n = recv(fd, &buf, buf.count, 0)
                if n > 0 { return String(decoding: buf[0..<n], as: UTF8.self) }
            }
            return nil
        }
        deinit { close(fd); unlink(path) }
    }

    /// contrib/warren.service, run as systemd would: its ExecStart and Environment (paths
    /// moved into a temporary directory), readiness on $NOTIFY_SOCKET, ExecReload's SIGHUP,
    /// the control socket; and contrib/warren.yaml passes --check.
    @Test func theServiceUnitRunsANode() async throws {
        try await T.withTempDir { dir in
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let unit = try String(contentsOf: root.appending(path: "contrib/warren.service"), encoding: .utf8)
            let example = try String(contentsOf: root.appending(path: "contrib/warren.yaml"), encoding: .utf8)
            let etc = dir.appending(path: "etc").path, run = dir.appending(path: "run").path
            try FileManager.default.createDirectory(atPath: etc, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
            func moved(_ s: String) -> String {
                s.replacingOccurrences(of: "/usr/local/bin/warren", with: WarrenExecutable.url!.path)
                 .replacingOccurrences(of: "/etc/warren/", with: etc + "/").replacingOccurrences(of: "/run/warren/", with: run + "/")
            }
            func setting(_ key: String) -> [String] {
                unit.split(separator: "\n").filter { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
            }
            let execStart = try #require(setting("ExecStart").first)
            #expect(setting("Type") == ["notify"] && setting("Restart") == ["on-failure"] && setting("User") == ["warren"])
            #expect(setting("ExecReload").first?.contains("-HUP $MAINPID") == true)
            var env: [String: String] = [:]
            for e in setting("Environment") {
                let kv = e.split(separator: "=", maxSplits: 1)
                env[String(kv[0])] = moved(String(kv[1]))
            }
            let key = PrivateKey.generate(), peerKey = PrivateKey.generate()
            _ = try T.writeKey(key, "etc/node.key", in: dir)
            // The example configuration is valid as shipped (its files in place).
            try moved(example).write(toFile: etc + "/warren.yaml", atomically: true, encoding: .utf8)
            let check = try await Self.run(["node", "--config", etc + "/warren.yaml", "--check"], in: dir)
            #expect(check.status == 0, "contrib/warren.yaml: \(check.stderr)")
            // The node the unit starts: its configuration on this machine's loopback.
            try """
                key-file: \(etc)/node.key
                listen: tcp://127.0.0.1:*
                degree: 0
                control: \(run)/warren.sock
                log-level: info
                """.write(toFile: etc + "/warren.yaml", atomically: true, encoding: .utf8)
            let notify = NotifySocket(path: dir.appending(path: "notify").path)
            env["NOTIFY_SOCKET"] = notify.path
            let words = moved(execStart).split(separator: " ").map(String.init)
            let node = try Child(Array(words.dropFirst()), in: dir, name: "service", executable: URL(fileURLWithPath: words[0]), environment: env)
            defer { node.forceKill() }
            let ready = await notify.next()
            #expect(ready?.contains("READY=1") == true, "no READY=1: \(String(describing: ready)); stderr \(node.stderr)")
            // A neighbour, then status / members / send with no flags: WARREN_CONTROL from the unit.
            let status = try await Self.run(["status", "--json"], env: env, in: dir)
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any], "\(status.stderr)")
            let endpoint = try #require(obj["endpoint"] as? String)
            let f = try T.writeKey(peerKey, "peer.key", in: dir)
            let (peer, _, _) = try await T.startNode("P", key: f, peers: [endpoint], extra: ["--control", "none"], in: dir)
            defer { peer.forceKill() }
            #expect(await T.eventually(timeout: .seconds(10)) { T.peerUps(peer) >= 1 })
            var members = ""
            for _ in 0..<40 where !members.contains("alive") {
                members = try await Self.run(["members"], env: env, in: dir).stdout
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(members.contains("alive") && members.contains(Self.pub(key)), "\(members)")
            let sent = try await Self.run(["send", "--to", Self.pub(peerKey), #"{"candidate":{"port":9}}"#], env: env, in: dir)
            #expect(sent.status == 0, "\(sent.stderr)")
            #expect(await T.eventually { T.messages(peer, sender: Self.pub(key)).count == 1 }, "\(peer.stdout)")
            // ExecReload.
            kill(node.process.processIdentifier, SIGHUP)
            #expect(await notify.next()?.contains("RELOADING=1") == true)
            #expect(await notify.next()?.contains("READY=1") == true)
            #expect(node.process.isRunning)
            // systemctl stop: SIGTERM, STOPPING=1, exit 0.
            node.process.terminate()
            #expect(await notify.next()?.contains("STOPPING=1") == true)
            #expect(await node.waitExit(timeout: .seconds(10)) == 0, "\(node.stderr)")
            #expect(!FileManager.default.fileExists(atPath: run + "/warren.sock"), "the control socket was left behind")
        }
    }

    @Test func versionIsPrinted() async throws {
        try await T.withTempDir { dir in
            let r = try await T.run(["--version"], in: dir)
            #expect(r.status == 0 && T.trimmed(r.stdout) == WarrenVersion.string, "\(r.stdout) \(r.stderr)")
        }
    }
}
