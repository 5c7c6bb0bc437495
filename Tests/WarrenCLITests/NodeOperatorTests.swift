import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Warren
import WarrenTestSupport

/// `warren` as an operator runs it: write errors, one validation for every value, no secrets
/// in errors, visible failures, a bounded stdout, publishes that wait for a neighbour, the
/// configuration file, the control socket, SIGHUP.
@Suite(.serialized, .timeLimit(.minutes(2)),
       .enabled(if: WarrenExecutable.url != nil,
                "warren executable not found next to the test bundle (build it: swift build --product warren)"))
struct NodeOperatorTests {
    typealias T = NodeCommandTests
    typealias Child = NodeCommandTests.Child

    /// Runs `warren args` with stdout on `stdout` (a FileHandle or Pipe) to completion.
    static func run(_ args: [String], input: String = "", stdout: Any, in dir: URL,
                    timeout: Duration = .seconds(30)) async throws -> T.Result {
        let c = try Child(args, in: dir, name: args.first ?? "warren", stdout: stdout)
        defer { c.forceKill() }
        if !input.isEmpty { try? c.write(input) }
        c.closeStdin()
        let status = await c.waitExit(timeout: timeout)
        if status == nil { Issue.record("warren \(args.joined(separator: " ")) did not exit within \(timeout)") }
        return T.Result(status: status, stdout: "", stderr: c.stderr)
    }

    static func pub(_ k: PrivateKey) -> String { k.publicKey.base64 }

    // MARK: Write errors

    @Test func writeErrorsAreReportedNotCrashes() async throws {
        try await T.withTempDir { dir in
            let k = PrivateKey.generate()
            let f = try T.writeKey(k, "k.key", in: dir)
            let cases: [([String], String)] = [
                (["genkey"], ""), (["pubkey"], k.base64 + "\n"), (["community-key", "hallo"], ""),
                (["seal", "--key-file", f, "--to", Self.pub(k)], #"{"credentials":{"ufrag":"a"}}"# + "\n"),
                (["demo", "--nodes", "3"], ""),
                (["node", "--key-file", f, "--listen", "tcp://127.0.0.1:*", "--control", "none"], ""),
            ]
            for (args, input) in cases {
                let full = try FileHandle(forWritingTo: URL(fileURLWithPath: "/dev/full"))
                let r = try await Self.run(args, input: input, stdout: full, in: dir)
                #expect(r.status == 1, "\(args) > /dev/full: status \(String(describing: r.status)); stderr \(r.stderr)")
                #expect(r.stderr.contains("warren: cannot write stdout: No space left on device"), "\(args): \(r.stderr)")
                #expect(!r.stderr.contains("Fatal error"), "\(args): \(r.stderr)")
                // A closed pipe: EPIPE, not a silent SIGPIPE death.
                let pipe = Pipe()
                try pipe.fileHandleForReading.close()
                let r2 = try await Self.run(args, input: input, stdout: pipe, in: dir)
                #expect(r2.status == 1, "\(args) | closed: status \(String(describing: r2.status)); stderr \(r2.stderr)")
                #expect(r2.stderr.contains("warren: cannot write stdout: Broken pipe"), "\(args): \(r2.stderr)")
            }
        }
    }

    // MARK: One validation for flags and URLs

    @Test func badValuesAreOneLineRefusals() async throws {
        try await T.withTempDir { dir in
            let k = PrivateKey.generate(), other = PrivateKey.generate()
            let f = try T.writeKey(k, "k.key", in: dir)
            let empty = dir.appending(path: "empty").path
            #expect(FileManager.default.createFile(atPath: empty, contents: Data("# nobody\n".utf8)))
            let node = ["node", "--key-file", f, "--control", "none"]
            let cases: [([String], String)] = [
                (node + ["--listen", "tcp://127.0.0.1:99999"], "\"tcp://127.0.0.1:99999\""),
                (node + ["--listen", "tcp://127.0.0.1:-1"], "1…65535"),
                (node + ["--listen", "tcp://::1:7000"], "brackets"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--advertise", "foo"], "--advertise \"foo\""),
                (node + ["--listen", "tcp://127.0.0.1:*", "--advertise", "tcp://0.0.0.0:7001"], "--advertise"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--advertise", "tcp://127.0.0.1:*"], "--advertise"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--advertise", "tcp://no-such-host.invalid:7001"], "cannot resolve"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--peer", "tcp://127.0.0.1:0"], "--peer"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--peer", "\(Self.pub(other))@tcp://127.0.0.1:7001"], "--allow"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--allow", empty, "--peer", "\(Self.pub(other))@tcp://127.0.0.1:7001"], "lists no keys"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--discover-port", "7000"], "--discover-port needs --discover"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--discover", "--discover-port", "70000"], "--discover-port"),
                (node + ["--key-file", f, "--listen", "tcp://127.0.0.1:*"], "--key-file given 2 times"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--degree", "65"], "--degree"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--preset", "wan"], "--preset"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--backlink", "tcp://127.0.0.1:x"], "--backlink must be tcp://HOST:PORT or off"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--backlink", ""], "--backlink"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--backlink", "tcp://no-such-host.invalid:7002"], "cannot resolve"),
                (node + ["--listen", "tcp://127.0.0.1:*", "--backlink", "tcp://192.0.2.254:7002"], "--backlink: cannot listen on tcp://192.0.2.254:7002"),
            ]
            for (args, needle) in cases {
                let r = try await T.run(args, in: dir, timeout: .seconds(10))
                #expect(r.status == 1, "\(args): status \(String(describing: r.status)) stderr \(r.stderr)")
                #expect(r.stderr.contains(needle), "\(args): stderr \(r.stderr)")
                #expect(!r.stderr.contains("Usage:"), "\(args): a runtime refusal with usage text: \(r.stderr)")
                #expect(r.stderr.split(separator: "\n").count == 1, "\(args): not one line: \(r.stderr)")
                #expect(!r.stdout.contains("\"ready\""), "\(args) started a node")
            }
            // The URL goes through the same validator.
            for url in ["gossip://127.0.0.1:7001?advertise=foo", "gossip://127.0.0.1:7001?peer=tcp://x:99999",
                        "gossip://127.0.0.1:7001?discover=0", "gossip://127.0.0.1:7001?peer=\(Self.pub(other))@tcp://127.0.0.1:1",
                        "gossip://127.0.0.1:7001?backlink=yes"] {
                #expect(throws: GossipConfigurationError.self, "\(url)") { try GossipConfiguration(url: URL(string: url)!) }
            }
        }
    }

    @Test func listenEndpointsResolveAndAdvertiseDialableAddresses() async throws {
        try await T.withTempDir { dir in
            let ka = PrivateKey.generate(), kb = PrivateKey.generate()
            let fa = try T.writeKey(ka, "a.key", in: dir), fb = try T.writeKey(kb, "b.key", in: dir)
            var children: [Child] = []
            defer { for c in children { c.forceKill() } }
            // 0.0.0.0: an interface's address (or a refusal asking for --advertise), never loopback.
            if let (c, ready, _) = try? await T.startNode("ANY", key: fa, listen: "tcp://0.0.0.0:*", peers: [], extra: ["--control", "none"], in: dir) {
                children.append(c)
                let e = try #require(ready["endpoint"] as? String)
                #expect(!e.hasPrefix("tcp://127.") && !e.hasPrefix("tcp://0.0.0.0"), "advertised \(e)")
                if let address = TCPEndpoint.interfaceAddress(ipv6: false) { #expect(e.hasPrefix("tcp://\(address):")) }
            } else {
                #expect(TCPEndpoint.interfaceAddress(ipv6: false) == nil, "0.0.0.0 refused although an interface has an address")
            }
            // A name is resolved (ZeroMQ alone takes it for an interface: "No such device").
            let (l, readyL, _) = try await T.startNode("LOCAL", key: fb, listen: "tcp://localhost:*", peers: [], extra: ["--control", "none"], in: dir)
            children.append(l)
            #expect((readyL["endpoint"] as? String)?.hasPrefix("tcp://127.0.0.1:") == true, "\(readyL)")
            l.forceKill()
            // IPv6 loopback: listen, dial, deliver.
            let (a, readyA, _) = try await T.startNode("A6", key: fa, listen: "tcp://[::1]:*", peers: [], extra: ["--control", "none"], in: dir)
            children.append(a)
            let endA = try #require(readyA["endpoint"] as? String)
            #expect(endA.hasPrefix("tcp://[::1]:"), "\(endA)")
            let (b, _, _) = try await T.startNode("B6", key: fb, listen: "tcp://[::1]:*", peers: [endA], extra: ["--control", "none"], in: dir)
            children.append(b)
            #expect(await T.eventually(timeout: .seconds(10)) { T.peerUps(a) >= 1 && T.peerUps(b) >= 1 }, "A: \(a.stdout) B: \(b.stderr)")
            try b.write(#"{"to":"\#(Self.pub(ka))","message":{"candidate":{"port":6}}}"# + "\n")
            #expect(await T.eventually { T.messages(a, sender: Self.pub(kb)).count == 1 }, "A: \(a.stdout)")
        }
    }

    @Test func stdinLinesAreCheckedStrictly() async throws {
        try await T.withTempDir { dir in
            let k = PrivateKey.generate()
            let f = try T.writeKey(k, "k.key", in: dir)
            let (n, ready, first) = try await T.startNode("N", key: f, peers: [], extra: ["--control", "none"], in: dir)
            defer { n.forceKill() }
            #expect(first)
            #expect(ready["node"] as? String != nil && ready["public_key"] as? String == Self.pub(k), "\(ready)")
            let me = Self.pub(k)
            try n.write(#"{"to":"\#(me)","message":{"candidate":{"port":1}},"ttl":3}"# + "\n")
            try n.write(#"{"to":"\#(me)","message":[1,2]}"# + "\n")
            try n.write(#"{"to":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=","message":{}}"# + "\n")
            try n.input.fileHandleForWriting.write(contentsOf: Data(#"{"to":"\#(me)","message":{"credentials":{"ufrag":"\#u{00e9}"#.utf8) + [0xFF, 0xFE] + Data("\"}}}\n".utf8))
            try n.write(#"{"to":"\#(me)","message":{"credentials":{"bogus":1}}}"# + "\n")
            #expect(await T.eventually { n.stderr.contains("stdin line 5") }, "stderr: \(n.stderr)")
            let err = n.stderr
            #expect(err.contains("stdin line 1: unknown field \"ttl\""), "\(err)")
            #expect(err.contains("stdin line 2: \"message\" must be a JSON object") && err.contains("an array"), "\(err)")
            #expect(err.contains("stdin line 3") && err.contains("all-zero key"), "\(err)")
            #expect(err.contains("stdin line 4: not valid UTF-8"), "\(err)")
            #expect(err.contains("stdin line 5") && err.contains("unknown field \"bogus\"") && !err.contains("unknownField"), "\(err)")
            #expect(T.messages(n).isEmpty, "delivered: \(n.stdout)")
        }
    }

    /// A line with no end (stdin from /dev/zero, a binary file) is skipped up to its newline
    /// and reported: memory stays bounded and the next line is read.
    @Test func anEndlessLineIsSkippedNotBuffered() async throws {
        try await T.withTempDir { dir in
            let k = PrivateKey.generate()
            let f = try T.writeKey(k, "k.key", in: dir)
            let (n, _, _) = try await T.startNode("N", key: f, peers: [], extra: ["--control", "none"], in: dir)
            defer { n.forceKill() }
            let me = Self.pub(k)
            let chunk = Data(repeating: 0x61, count: 1 << 20)
            for _ in 0..<3 { try n.input.fileHandleForWriting.write(contentsOf: chunk) }
            try n.write("\n" + #"{"to":"\#(me)","message":{"credentials":{"bogus":1}}}"# + "\n")
            #expect(await T.eventually { n.stderr.contains("stdin line 2") }, "stderr: \(n.stderr)")
            #expect(n.stderr.contains("stdin line 1: longer than 1048576 bytes; skipped"), "\(n.stderr)")
            #expect(n.stderr.contains("stdin line 2") && n.stderr.contains("unknown field \"bogus\""), "\(n.stderr)")
        }
    }

    // MARK: Secrets

    @Test func secretsAreNeverPrinted() async throws {
        try await T.withTempDir { dir in
            let k = PrivateKey.generate()
            // A URL-safe key file: the error explains, without the key.
            let urlSafe = k.base64.replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_") + "-_"
            let path = dir.appending(path: "u.key").path
            #expect(FileManager.default.createFile(atPath: path, contents: Data(urlSafe.utf8), attributes: [.posixPermissions: 0o600]))
            let r = try await T.run(["seal", "--key-file", path, "--to", Self.pub(k)], in: dir)
            #expect(r.status == 1)
            #expect(r.stderr.contains("URL-safe"), "\(r.stderr)")
            #expect(!r.stderr.contains(String(urlSafe.prefix(20))), "the key was printed: \(r.stderr)")
            // Two keys on pubkey's stdin: refused without echoing either.
            let other = PrivateKey.generate()
            let two = try await T.run(["pubkey"], input: "\(k.base64)\n\(other.base64)\n", in: dir)
            #expect(two.status == 1)
            #expect(!two.stderr.contains(String(k.base64.prefix(20))) && !two.stderr.contains(String(other.base64.prefix(20))), "\(two.stderr)")
            #expect(!two.stdout.contains(String(k.base64.prefix(20))), "\(two.stdout)")
            // The passphrase from stdin or a file, not the command line.
            let known = "EOUvCX2JaJ/1FOIA5T4B2MZzHRNzE7IdIHHg3zLCF1c="
            let fromStdin = try await T.run(["community-key", "-"], input: "hallo\n", in: dir)
            #expect(T.trimmed(fromStdin.stdout) == known, "\(fromStdin.stderr)")
            let passFile = dir.appending(path: "pass").path
            #expect(FileManager.default.createFile(atPath: passFile, contents: Data("hallo\n".utf8), attributes: [.posixPermissions: 0o600]))
            let fromFile = try await T.run(["community-key", "--file", passFile], in: dir)
            #expect(T.trimmed(fromFile.stdout) == known, "\(fromFile.stderr)")
            let f = try T.writeKey(k, "k.key", in: dir)
            let (n, ready, _) = try await T.startNode("N", key: f, peers: [], extra: ["--community-file", passFile, "--control", "none"], in: dir)
            n.forceKill()
            #expect(ready["community_key"] as? String == T.communityPublicKey("hallo"), "\(ready)")
            // Group-readable is said as such.
            let g = try T.writeKey(k, "g.key", in: dir, mode: 0o640)
            let sealed = try await T.run(["seal", "--key-file", g, "--to", Self.pub(k)], input: "{}\n", in: dir)
            #expect(sealed.stderr.contains("group accessible") && !sealed.stderr.contains("world"), "\(sealed.stderr)")
            // genkey --out: 0600 from the start, and never over an existing file.
            let out = dir.appending(path: "new.key").path
            let gen = try await T.run(["genkey", "--out", out], in: dir)
            #expect(gen.status == 0 && gen.stdout.isEmpty, "\(gen.stderr)")
            let mode = (try FileManager.default.attributesOfItem(atPath: out)[.posixPermissions] as? NSNumber)?.intValue
            #expect(mode == 0o600, "mode \(String(describing: mode))")
            #expect(T.privateKey(T.trimmed(try String(contentsOfFile: out, encoding: .utf8))) != nil)
            let again = try await T.run(["genkey", "--out", out], in: dir)
            #expect(again.status == 1 && again.stderr.contains("File exists"), "\(again.stderr)")
        }
    }

    // MARK: Visible failures

    @Test func failuresAreVisible() async throws {
        try await T.withTempDir { dir in
            let k = PrivateKey.generate()
            let f = try T.writeKey(k, "k.key", in: dir)
            let closed = try #require(T.freePort())
            let c = try Child(["node", "--key-file", f, "--listen", "tcp://127.0.0.1:*", "--peer", "tcp://127.0.0.1:\(closed)",
                               "--log-level", "debug", "--control", "none"], in: dir, name: "N")
            defer { c.forceKill() }
            #expect(await T.eventually(timeout: .seconds(10)) { c.stderr.contains("no answer from a peer") }, "stderr: \(c.stderr)")
            let err = c.stderr
            #expect(err.contains("dialling") && err.contains("tcp://127.0.0.1:\(closed)"), "\(err)")
            #expect(!err.contains("Logger.Storage") && !err.contains("NodeService("), "a struct dump: \(err)")
            c.forceKill()
            // Itself as a peer, and a name that does not resolve: both said.
            let port = try #require(T.freePort())
            let me = "tcp://127.0.0.1:\(port)"
            let selfish = try Child(["node", "--key-file", f, "--listen", me, "--peer", me, "--peer", "tcp://no-such-host.invalid:7001",
                                     "--log-level", "warning", "--control", "none"], in: dir, name: "S")
            defer { selfish.forceKill() }
            #expect(await T.eventually(timeout: .seconds(10)) {
                selfish.stderr.contains("own endpoint") && selfish.stderr.contains("cannot be resolved")
            }, "\(selfish.stderr)")
            selfish.forceKill()
            // A closed overlay dialled with the wrong KEY@: the dialler is told.
            let members = dir.appending(path: "members").path
            try (Self.pub(k) + "\n").write(toFile: members, atomically: true, encoding: .utf8)
            let (closedNode, readyClosed, _) = try await T.startNode("CL", key: f, peers: [], extra: ["--allow", members, "--control", "none"], in: dir)
            defer { closedNode.forceKill() }
            let closedEnd = try #require((readyClosed["endpoint"] as? String)?.split(separator: "@").last.map(String.init))
            let dialling = PrivateKey.generate(), wrong = PrivateKey.generate()
            let diallingFile = try T.writeKey(dialling, "w.key", in: dir)
            let diallerMembers = dir.appending(path: "members-w").path
            try ([k, dialling, wrong].map(Self.pub).joined(separator: "\n") + "\n").write(toFile: diallerMembers, atomically: true, encoding: .utf8)
            let dialler = try Child(["node", "--key-file", diallingFile, "--listen", "tcp://127.0.0.1:*", "--allow", diallerMembers,
                                     "--peer", "\(Self.pub(wrong))@\(closedEnd)", "--log-level", "warning", "--control", "none"], in: dir, name: "W")
            defer { dialler.forceKill() }
            #expect(await T.eventually(timeout: .seconds(15)) { dialler.stderr.contains("no answer from a peer") }, "\(dialler.stderr)")
            #expect(dialler.stderr.contains("not the key given before '@'"), "\(dialler.stderr)")
            dialler.forceKill(); closedNode.forceKill()
            // demo --dot to a path that cannot be written: an error and status 1, no "written".
            let demo = try await T.run(["demo", "--nodes", "3", "--dot", "/nonexistent/x.dot"], in: dir)
            #expect(demo.status == 1, "\(demo.stderr)")
            #expect(demo.stderr.contains("/nonexistent/x.dot") && !demo.stdout.contains("topology written"), "\(demo.stdout + demo.stderr)")
            // demo --timeout 0 cannot pass: refused as a usage error, not run to a certain FAIL.
            let instant = try await T.run(["demo", "--nodes", "3", "--timeout", "0"], in: dir)
            #expect(instant.status == 64 && instant.stderr.contains("--timeout must be"), "\(instant.stdout + instant.stderr)")
            // --routing means nothing without an overlay: refused, not ignored.
            let routedInProcess = try await T.run(["demo", "--backend", "inprocess", "--routing"], in: dir)
            #expect(routedInProcess.status == 64 && routedInProcess.stderr.contains("--routing needs --backend gossip"),
                    "\(routedInProcess.stdout + routedInProcess.stderr)")
            // A runtime error (a port in use) is one sentence, status 1, no usage.
            let (a, ready, _) = try await T.startNode("A", key: f, peers: [], extra: ["--control", "none"], in: dir)
            defer { a.forceKill() }
            let busy = try #require(ready["endpoint"] as? String)
            let r = try await T.run(["node", "--key-file", f, "--listen", busy, "--control", "none"], in: dir)
            #expect(r.status == 1 && r.stderr.contains("Address already in use") && !r.stderr.contains("Usage"), "\(r.stderr)")
            let grpcPort = try #require(T.freePort())
            let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(listener) }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET); addr.sin_port = grpcPort.bigEndian; addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            listen(listener, 1)
            let g = try await T.run(["node", "--key-file", f, "--listen", "tcp://127.0.0.1:*", "--grpc", "127.0.0.1:\(grpcPort)", "--control", "none"], in: dir)
            #expect(g.status == 1 && g.stderr.contains("Address already in use") && !g.stderr.contains("serverIsStopped"), "\(g.stderr)")
        }
    }

    // MARK: Output that is not read

    /// B in a line A–B–C whose stdout nobody reads: it drops and counts its own deliveries and
    /// keeps relaying; nothing times out.
    @Test func anUnreadStdoutNeverStallsTheNode() async throws {
        try await T.withTempDir { dir in
            let ka = PrivateKey.generate(), kb = PrivateKey.generate(), kc = PrivateKey.generate()
            let fa = try T.writeKey(ka, "a.key", in: dir), fb = try T.writeKey(kb, "b.key", in: dir), fc = try T.writeKey(kc, "c.key", in: dir)
            var children: [Child] = []
            defer { for c in children { c.forceKill() } }
            // A and C listen; B dials both, so its own endpoint is never needed.
            let (a, readyA, _) = try await T.startNode("A", key: fa, peers: [], extra: ["--control", "none"], in: dir)
            children.append(a)
            let endA = try #require(readyA["endpoint"] as? String)
            let (c, readyC, _) = try await T.startNode("C", key: fc, peers: [], extra: ["--control", "none"], in: dir)
            children.append(c)
            let endC = try #require(readyC["endpoint"] as? String)
            let bOut = Pipe()
            let b = try Child(["node", "--key-file", fb, "--listen", "tcp://127.0.0.1:*", "--degree", "0", "--log-level", "warning",
                               "--peer", endA, "--peer", endC, "--output-queue", "64", "--control", "none"], in: dir, name: "B", stdout: bOut)
            children.append(b)
            #expect(await T.eventually(timeout: .seconds(20)) { T.peerUps(a) >= 1 && T.peerUps(c) >= 1 }, "A: \(a.stdout) C: \(c.stdout) B: \(b.stderr)")
            // 3,000 messages for B (about 700 KB of output: far beyond a pipe's 64 KiB).
            var burst = ""
            for i in 0..<3000 { burst += #"{"to":"\#(Self.pub(kb))","message":{"candidate":{"port":\#(i)}}}"# + "\n" }
            try a.write(burst)
            #expect(await T.eventually(timeout: .seconds(30)) { b.stderr.contains("stdout is not read fast enough") }, "B: \(b.stderr)")
            try await Task.sleep(for: .seconds(4))   // longer than the local preset's 1.5 s dead-after
            try a.write(#"{"to":"\#(Self.pub(kc))","message":{"credentials":{"ufrag":"across"}}}"# + "\n")
            #expect(await T.eventually(timeout: .seconds(10)) { T.messages(c, sender: Self.pub(ka)).count == 1 }, "C: \(c.stdout)")
            for (n, x) in [("A", a), ("C", c)] {
                #expect(!x.objects.contains { $0["event"] as? String == "peer-down" }, "\(n) lost B: \(x.stdout)")
            }
            // The reader catches up: what was dropped is counted in lines; with what was
            // delivered, that is every message.
            let fd = bOut.fileHandleForReading.fileDescriptor
            let text = await T.blocking { () -> String in
                var text = ""
                var buf = [UInt8](repeating: 0, count: 65536)
                let clock = ContinuousClock(), deadline = clock.now.advanced(by: .seconds(20))
                while Self.tally(text).delivered + Self.tally(text).dropped < 3000 && clock.now < deadline {
                    var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                    guard poll(&p, 1, 500) > 0 else { continue }
                    let n = read(fd, &buf, buf.count)
                    if n <= 0 { break }
                    text += String(decoding: buf[0..<n], as: UTF8.self)
                }
                return text
            }
            let (delivered, count) = Self.tally(text)
            #expect(count > 0, "no dropped line in B's output")
            #expect(delivered + count == 3000, "delivered \(delivered) + dropped \(count)")
        }
    }

    /// Delivered lines and dropped counts in complete lines of `text`.
    static func tally(_ text: String) -> (delivered: Int, dropped: Int) {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        return (objects.filter { $0["sender"] != nil }.count,
                objects.filter { $0["event"] as? String == "dropped" }.compactMap { $0["count"] as? Int }.reduce(0, +))
    }

    // MARK: Publishing before the first neighbour

    @Test func aMessageReadBeforeTheFirstNeighbourWaitsForIt() async throws {
        try await T.withTempDir { dir in
            let ka = PrivateKey.generate(), kb = PrivateKey.generate()
            let fa = try T.writeKey(ka, "a.key", in: dir), fb = try T.writeKey(kb, "b.key", in: dir)
            var children: [Child] = []
            defer { for c in children { c.forceKill() } }
            let port = try #require(T.freePort())
            let endB = "tcp://127.0.0.1:\(port)"
            let (a, _, _) = try await T.startNode("A", key: fa, peers: [endB], extra: ["--control", "none", "--publish-timeout", "10"], in: dir)
            children.append(a)
            try a.write(#"{"to":"\#(Self.pub(kb))","message":{"candidate":{"port":1}}}"# + "\n")
            try await Task.sleep(for: .seconds(1.5))
            let (b, _, _) = try await T.startNode("B", key: fb, listen: endB, peers: [], extra: ["--control", "none"], in: dir)
            children.append(b)
            #expect(await T.eventually(timeout: .seconds(10)) { T.messages(b, sender: Self.pub(ka)).count == 1 }, "B: \(b.stdout) A: \(a.stderr)")
            // Nobody ever comes: a named error with the line number.
            let closed = try #require(T.freePort())
            let (lone, _, _) = try await T.startNode("L", key: fa, peers: ["tcp://127.0.0.1:\(closed)"], extra: ["--control", "none", "--publish-timeout", "0.5"], in: dir)
            children.append(lone)
            try lone.write("\n" + #"{"to":"\#(Self.pub(kb))","message":{"candidate":{"port":2}}}"# + "\n")
            #expect(await T.eventually(timeout: .seconds(10)) { lone.stderr.contains("stdin line 2: not sent: no neighbour came up within 0.5 s") }, "\(lone.stderr)")
        }
    }

    @Test func backendPublishWaitsThenThrowsANamedError() async throws {
        var cfg = GossipConfiguration.local(listen: "tcp://127.0.0.1:*", peers: ["tcp://127.0.0.1:9"])
        cfg.publishTimeout = .milliseconds(300)
        let backend = try GossipBackend(cfg)
        let me = PrivateKey.generate(), them = PrivateKey.generate().publicKey
        do {
            try await backend.publish(KeyPair(ours: me, theirs: them), SignalingMessage())
            Issue.record("published with no neighbour")
        } catch let e as GossipPublishError {
            #expect(e == .noNeighbour(waited: .milliseconds(300)))
            #expect("\(e)".contains("no neighbour"))
        }
        await #expect(throws: GossipPublishError.zeroRecipient) {
            try await backend.publish(KeyPair(ours: me, theirs: .zero), SignalingMessage())
        }
        // Cancelling the task ends the wait.
        var slow = GossipConfiguration.local(listen: "tcp://127.0.0.1:*", peers: ["tcp://127.0.0.1:9"])
        slow.publishTimeout = .seconds(60)
        let b2 = try GossipBackend(slow)
        let task = Task { try await b2.publish(KeyPair(ours: me, theirs: them), SignalingMessage()) }
        try await Task.sleep(for: .milliseconds(100))
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
        try await backend.close()
        try await b2.close()
    }

    /// A listener registered between `init(start: false)` and `start()` sees the first peer-up,
    /// however fast the neighbour answers.
    @Test func aPeerListenerMissesNoEvent() async throws {
        let a = try GossipBackend(.local())
        for _ in 0..<5 {
            let b = try GossipBackend(.local(peers: [a.endpoint]), start: false)
            let ups = Tally()
            b.addPeerListener { _, up, _ in if up { ups.add() } }
            b.start()
            #expect(await b.waitForNeighbours(1))
            try await Task.sleep(for: .milliseconds(50))
            #expect(ups.value == 1)
            try await b.close()
        }
        try await a.close()
    }
}

final class Tally: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func add() { lock.lock(); n += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return n }
}
