import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Warren
import WarrenTestSupport

/// The `warren` executable as a child process: key tools, seal/open, and `warren node`.
@Suite(.serialized, .timeLimit(.minutes(1)),
       .enabled(if: WarrenExecutable.url != nil,
                "warren executable not found next to the test bundle (build it: swift build --product warren)"))
struct NodeCommandTests {
    static var warren: URL? { WarrenExecutable.url }

    // MARK: Child processes

    /// A running `warren`: stdin is a pipe, stdout and stderr go to files (no pipe buffers to
    /// drain, readable at any time).
    final class Child: @unchecked Sendable {
        let process = ChildProcess()
        let input = Pipe()
        let outURL: URL
        let errURL: URL
        let name: String

        /// Runs `executable` (default: the built `warren`) with `arguments`. `stdout`: a
        /// `FileHandle` or `Pipe` instead of the file (`stdout`/`lines` then read nothing).
        init(_ arguments: [String], in dir: URL, name: String, executable: URL? = nil, stdout: Any? = nil,
             environment: [String: String]? = nil) throws {
            // Writing to a dead child's stdin must be an error, not a SIGPIPE for the test runner.
            signal(SIGPIPE, SIG_IGN)
            self.name = name
            let id = UUID().uuidString
            outURL = dir.appending(path: "\(name)-\(id).out")
            errURL = dir.appending(path: "\(name)-\(id).err")
            _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
            _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
            let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
            defer { try? out.close(); try? err.close() }
            process.executableURL = executable ?? NodeCommandTests.warren!
            process.arguments = arguments
            process.standardInput = input
            process.standardOutput = stdout ?? out
            process.standardError = err
            if let environment {
                process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
            }
            try process.run()
        }

        var stdout: String { (try? String(contentsOf: outURL, encoding: .utf8)) ?? "" }
        var stderr: String { (try? String(contentsOf: errURL, encoding: .utf8)) ?? "" }
        /// Complete stdout lines.
        var lines: [String] {
            let s = stdout
            var parts = s.components(separatedBy: "\n")
            parts.removeLast()  // after the last newline: empty or an incomplete line
            return parts
        }
        /// stdout lines that are JSON objects.
        var objects: [[String: Any]] {
            lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        }

        func write(_ text: String) throws {
            try input.fileHandleForWriting.write(contentsOf: Data(text.utf8))
        }
        func closeStdin() { try? input.fileHandleForWriting.close() }

        /// Waits for the exit; nil if it is still running after `timeout`.
        func waitExit(timeout: Duration) async -> Int32? {
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: timeout)
            while process.isRunning && clock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
            return process.isRunning ? nil : process.terminationStatus
        }

        /// SIGKILL if still running (for cleanup paths).
        func forceKill() {
            if process.isRunning { sendSignal(process.processIdentifier, SIGKILL) }
            closeStdin()
        }
    }

    /// A free TCP port on loopback (bound to port 0, then released: another process may take it).
    static func freePort() -> UInt16? {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) } }
        guard rc == 0 else { return nil }
        var len = size
        let rc2 = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc2 == 0 else { return nil }
        return UInt16(bigEndian: addr.sin_port)
    }

    struct Result { var status: Int32?; var stdout: String; var stderr: String }

    /// Runs `warren arguments…` with `input` on stdin to completion (killed after `timeout`).
    static func run(_ arguments: [String], input: String = "", in dir: URL,
                    timeout: Duration = .seconds(20)) async throws -> Result {
        let c = try Child(arguments, in: dir, name: arguments.first ?? "warren")
        defer { c.forceKill() }
        if !input.isEmpty { try? c.write(input) }
        c.closeStdin()
        let status = await c.waitExit(timeout: timeout)
        if status == nil { Issue.record("warren \(arguments.joined(separator: " ")) did not exit within \(timeout)") }
        return Result(status: status, stdout: c.stdout, stderr: c.stderr)
    }

    /// Runs blocking work (poll, read, recv) on a thread of its own (`onOwnThread`).
    static func blocking<R: Sendable>(_ body: @escaping @Sendable () -> R) async -> R { await onOwnThread(body) }

    static func eventually(timeout: Duration = .seconds(5), _ condition: () -> Bool) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(25))
        }
        return condition()
    }

    /// Runs `body` in a fresh temporary directory, removed afterwards. (Not generic on purpose:
    /// see the note in OverlayBehaviourTests.withOverlay.)
    static func withTempDir(_ body: (URL) async throws -> Void) async throws {
        let dir = FileManager.default.temporaryDirectory.appending(path: "warren-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        do { try await body(dir) } catch {
            try? FileManager.default.removeItem(at: dir)
            throw error
        }
        try? FileManager.default.removeItem(at: dir)
    }

    static func writeKey(_ key: PrivateKey, _ name: String, in dir: URL, mode: Int = 0o600) throws -> String {
        let path = dir.appending(path: name).path
        #expect(FileManager.default.createFile(atPath: path, contents: Data((key.base64 + "\n").utf8),
                                               attributes: [.posixPermissions: mode]))
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: path)
        return path
    }

    /// JSON text with sorted keys, for comparing objects.
    static func canonical(_ object: Any) -> String {
        guard let d = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return "<invalid>" }
        return String(decoding: d, as: UTF8.self)
    }

    // Typed-throwing initializers (`throws(KeyError)`) are called through these synchronous
    // wrappers: see "Toolchain note" at the end of this file.
    static func privateKey(_ s: String) -> PrivateKey? { try? PrivateKey(base64: s) }
    static func communityPublicKey(_ passphrase: String) -> String? {
        (try? PrivateKey.community(passphrase: passphrase))?.publicKey.base64
    }

    static func trimmed(_ s: String) -> String { s.trimmingCharacters(in: .whitespacesAndNewlines) }

    // MARK: 1. Keys

    @Test func keyTools() async throws {
        try await Self.withTempDir { dir in
            let gen = try await Self.run(["genkey"], in: dir)
            #expect(gen.status == 0, "\(gen.stderr)")
            let priv = Self.trimmed(gen.stdout)
            #expect(priv.count == 44, "genkey printed \(priv)")
            let key = try #require(Self.privateKey(priv), "genkey printed no key")
            #expect(key.base64 == priv, "genkey must print a clamped key")

            let pub = try await Self.run(["pubkey"], input: gen.stdout, in: dir)
            #expect(pub.status == 0, "\(pub.stderr)")
            #expect(Self.trimmed(pub.stdout) == key.publicKey.base64)

            let bad = try await Self.run(["pubkey"], input: "not a key\n", in: dir)
            #expect(bad.status != 0 && bad.status != nil)
            #expect(bad.stderr.contains("stdin"), "\(bad.stderr)")

            let community = try await Self.run(["community-key", "hallo"], in: dir)
            #expect(community.status == 0, "\(community.stderr)")
            #expect(Self.trimmed(community.stdout) == "EOUvCX2JaJ/1FOIA5T4B2MZzHRNzE7IdIHHg3zLCF1c=")
            let communityPub = try await Self.run(["community-key", "--public", "hallo"], in: dir)
            #expect(communityPub.status == 0, "\(communityPub.stderr)")
            let expected = try #require(Self.privateKey("EOUvCX2JaJ/1FOIA5T4B2MZzHRNzE7IdIHHg3zLCF1c=")).publicKey.base64
            #expect(Self.trimmed(communityPub.stdout) == expected)
        }
    }

    // MARK: 2. seal | open

    @Test func sealAndOpenReportBadLinesAndContinue() async throws {
        try await Self.withTempDir { dir in
            let a = PrivateKey.generate(), b = PrivateKey.generate()
            let aFile = try Self.writeKey(a, "a.key", in: dir)
            let bFile = try Self.writeKey(b, "b.key", in: dir)
            let m1 = #"{"credentials":{"ufrag":"a","pwd":"b","needCreds":true}}"#
            let m3 = #"{"candidate":{"port":4242,"address":"10.0.0.1"}}"#
            let sealed = try await Self.run(["seal", "--key-file", aFile, "--to", b.publicKey.base64],
                                            input: "\(m1)\n{\"credentials\": nope}\n\(m3)\n", in: dir)
            #expect(sealed.status == 1, "seal must fail when a line fails: \(sealed.stderr)")
            #expect(sealed.stderr.contains("line 2"), "\(sealed.stderr)")
            #expect(!sealed.stderr.contains("line 1") && !sealed.stderr.contains("line 3"), "\(sealed.stderr)")
            #expect(!sealed.stderr.contains("world accessible"), "0600 key file: \(sealed.stderr)")
            let envelopes = sealed.stdout.split(separator: "\n").map(String.init)
            #expect(envelopes.count == 2)

            let opened = try await Self.run(["open", "--key-file", bFile], input: sealed.stdout, in: dir)
            #expect(opened.status == 0, "\(opened.stderr)")
            let out = opened.stdout.split(separator: "\n").compactMap {
                try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
            }
            #expect(out.count == 2, "open printed: \(opened.stdout)")
            for (o, m) in zip(out, [m1, m3]) {
                #expect(o["sender"] as? String == a.publicKey.base64)
                #expect(o["recipient"] as? String == b.publicKey.base64)
                let want = try JSONSerialization.jsonObject(with: Data(m.utf8))
                #expect(Self.canonical(o["message"] ?? NSNull()) == Self.canonical(want))
            }

            // A garbage line (and a non-envelope) in the middle: named, the rest still printed.
            guard envelopes.count == 2 else { return }
            let mixed = "\(envelopes[0])\n!!! not base64 !!!\n\(Data("hello".utf8).base64EncodedString())\n\(envelopes[1])\n"
            let opened2 = try await Self.run(["open", "--key-file", bFile], input: mixed, in: dir)
            #expect(opened2.status == 1)
            #expect(opened2.stderr.contains("line 2"), "\(opened2.stderr)")
            #expect(opened2.stderr.contains("line 3"), "\(opened2.stderr)")
            #expect(!opened2.stderr.contains("line 1") && !opened2.stderr.contains("line 4"), "\(opened2.stderr)")
            #expect(opened2.stdout.split(separator: "\n").count == 2, "\(opened2.stdout)")

            // Opening with the wrong key fails for each line.
            let wrong = try await Self.run(["open", "--key-file", aFile], input: sealed.stdout, in: dir)
            #expect(wrong.status == 1)
            #expect(wrong.stdout.isEmpty, "\(wrong.stdout)")

            // A private key file others can read: warned about, still used.
            let loose = try Self.writeKey(b, "loose.key", in: dir, mode: 0o644)
            let opened3 = try await Self.run(["open", "--key-file", loose], input: sealed.stdout, in: dir)
            #expect(opened3.status == 0, "\(opened3.stderr)")
            #expect(opened3.stderr.contains("world accessible"), "\(opened3.stderr)")
            #expect(opened3.stdout.split(separator: "\n").count == 2)
        }
    }

    // MARK: 3. warren node

    /// Starts `warren node` and waits for its ready line. The ready line must be the first line
    /// (`readyFirst`); the caller checks that, so that a misordering does not hide the rest.
    /// `listen` nil: a free port chosen by ZeroMQ (`tcp://127.0.0.1:*`).
    static func startNode(_ name: String, key: String, listen: String? = nil, peers: [String], extra: [String] = [],
                          in dir: URL) async throws -> (child: Child, ready: [String: Any], readyFirst: Bool) {
        var args = ["node", "--key-file", key, "--listen", listen ?? "tcp://127.0.0.1:*", "--degree", "0", "--log-level", "warning"]
        for p in peers { args += ["--peer", p] }
        // No control socket unless asked for: tests never touch the machine's default one.
        if !extra.contains("--control") { args += ["--control", "none"] }
        let c = try Child(args + extra, in: dir, name: name)
        func ready() -> [String: Any]? { c.objects.first { $0["event"] as? String == "ready" } }
        _ = await eventually(timeout: .seconds(10)) { ready() != nil || !c.process.isRunning }
        guard let r = ready() else {
            let out = c.stdout, err = c.stderr
            c.forceKill()
            throw NodeTestError("\(name) printed no ready line; stdout: \(out) stderr: \(err)")
        }
        return (c, r, c.objects.first?["event"] as? String == "ready")
    }

    struct NodeTestError: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    static func messages(_ c: Child, sender: String? = nil, recipient: String? = nil) -> [[String: Any]] {
        c.objects.filter {
            $0["message"] != nil && (sender == nil || $0["sender"] as? String == sender)
                && (recipient == nil || $0["recipient"] as? String == recipient)
        }
    }

    static func peerUps(_ c: Child) -> Int { c.objects.filter { $0["event"] as? String == "peer-up" }.count }

    @Test func nodesInALineExchangeMessages() async throws {
        try await Self.withTempDir { dir in
            let ka = PrivateKey.generate(), kb = PrivateKey.generate(), kc = PrivateKey.generate()
            let community = try #require(Self.communityPublicKey("pass"))
            let fa = try Self.writeKey(ka, "a.key", in: dir)
            let fb = try Self.writeKey(kb, "b.key", in: dir)
            let fc = try Self.writeKey(kc, "c.key", in: dir)
            var children: [Child] = []
            defer { for c in children { c.forceKill() } }

            let (a, readyA, firstA) = try await Self.startNode("A", key: fa, peers: [], extra: ["--community", "pass"], in: dir)
            children.append(a)
            let endA = try #require(readyA["endpoint"] as? String)
            #expect(readyA["public_key"] as? String == ka.publicKey.base64)
            #expect(readyA["community_key"] as? String == community)
            // B on an explicit port (picked free; retried if someone takes it meanwhile).
            var started: (child: Child, ready: [String: Any], readyFirst: Bool)?
            var port: UInt16 = 0
            for _ in 0..<3 where started == nil {
                port = try #require(Self.freePort())
                started = try? await Self.startNode("B", key: fb, listen: "tcp://127.0.0.1:\(port)", peers: [endA],
                                                    extra: ["--community", "pass"], in: dir)
            }
            let (b, readyB, firstB) = try #require(started, "B could not listen on a free port")
            children.append(b)
            let endB = try #require(readyB["endpoint"] as? String)
            #expect(endB == "tcp://127.0.0.1:\(port)")
            let (c, readyC, firstC) = try await Self.startNode("C", key: fc, peers: [endB], extra: ["--community", "pass"], in: dir)
            children.append(c)
            // The ready line comes first: before any peer-up (or message) line.
            for (n, x, first) in [("A", a, firstA), ("B", b, firstB), ("C", c, firstC)] {
                #expect(first, "\(n)'s first stdout line is not the ready event: \(x.lines.first ?? "")")
            }
            #expect(readyC["public_key"] as? String == kc.publicKey.base64)

            #expect(await Self.eventually(timeout: .seconds(10)) {
                Self.peerUps(a) >= 1 && Self.peerUps(b) >= 2 && Self.peerUps(c) >= 1
            }, "peer-up events: A \(Self.peerUps(a)), B \(Self.peerUps(b)), C \(Self.peerUps(c))")
            let upB = b.objects.filter { $0["event"] as? String == "peer-up" }.compactMap { $0["peer"] as? String }
            #expect(Set(upB).isSuperset(of: [endA]), "B's peer-up events: \(upB)")

            // A → C across B.
            let pa = ka.publicKey.base64, pc = kc.publicKey.base64, pb = kb.publicKey.base64
            try a.write(#"{"to":"\#(pc)","message":{"credentials":{"ufrag":"a","pwd":"b"}}}"# + "\n")
            #expect(await Self.eventually { !Self.messages(c, sender: pa).isEmpty }, "C got nothing; A stderr: \(a.stderr)")
            try await Task.sleep(for: .milliseconds(300))
            let got = Self.messages(c, sender: pa)
            #expect(got.count == 1, "C's lines: \(c.lines)")
            if let m = got.first {
                #expect(m["recipient"] as? String == pc)
                #expect(Self.canonical(m["message"] ?? NSNull()) == #"{"credentials":{"pwd":"b","ufrag":"a"}}"#)
            }

            // A bad line: an error on stderr, and A keeps working.
            try a.write("not json\n")
            #expect(await Self.eventually { a.stderr.contains("stdin line 2") }, "A stderr: \(a.stderr)")
            try a.write(#"{"to":"\#(pc)","message":{"credentials":{"ufrag":"second","pwd":"b"}}}"# + "\n")
            #expect(await Self.eventually { Self.messages(c, sender: pa).count >= 2 }, "second message lost; A stderr: \(a.stderr)")

            // End of A's stdin does not stop A: it still receives.
            a.closeStdin()
            try await Task.sleep(for: .milliseconds(500))
            #expect(a.process.isRunning, "A stopped when its stdin closed")
            try c.write(#"{"to":"\#(pa)","message":{"candidate":{"port":7}}}"# + "\n")
            #expect(await Self.eventually { Self.messages(a, sender: pc).count == 1 }, "A got nothing from C")

            // Community: B to everyone; A and C (and B itself) receive it once.
            try b.write(#"{"to":"community","message":{"credentials":{"ufrag":"all"}}}"# + "\n")
            #expect(await Self.eventually {
                [a, b, c].allSatisfy { !Self.messages($0, sender: pb, recipient: community).isEmpty }
            }, "community message: A \(Self.messages(a, recipient: community).count), B \(Self.messages(b, recipient: community).count), C \(Self.messages(c, recipient: community).count)")
            try await Task.sleep(for: .milliseconds(300))
            for (n, x) in [("A", a), ("B", b), ("C", c)] {
                #expect(Self.messages(x, sender: pb, recipient: community).count == 1, "\(n): \(x.lines)")
            }
            // Nothing else reached C from A meanwhile (still exactly the two messages).
            #expect(Self.messages(c, sender: pa).count == 2)

            // SIGTERM: graceful, exit 0.
            for (n, x) in [("A", a), ("B", b), ("C", c)] {
                x.process.terminate()
                let status = await x.waitExit(timeout: .seconds(5))
                #expect(status == 0, "\(n) exit status \(status.map(String.init) ?? "none (still running)"); stderr: \(x.stderr)")
                #expect(x.process.terminationReason == .exit || status == nil)
            }
        }
    }

    @Test func communityNeedsTheFlag() async throws {
        try await Self.withTempDir { dir in
            let k = PrivateKey.generate()
            let f = try Self.writeKey(k, "k.key", in: dir)
            let (n, _, first) = try await Self.startNode("N", key: f, peers: [], in: dir)
            #expect(first)
            defer { n.forceKill() }
            try n.write(#"{"to":"community","message":{}}"# + "\n")
            try n.write(#"{"to":"nope","message":{}}"# + "\n")
            try n.write(#"{"message":{}}"# + "\n")
            try n.write(#"{"to":"\#(k.publicKey.base64)","message":{"credentials":{"bogusField":1}}}"# + "\n")
            #expect(await Self.eventually { n.stderr.contains("stdin line 4") }, "stderr: \(n.stderr)")
            let err = n.stderr
            #expect(err.contains("stdin line 1") && err.contains("--community"), "\(err)")
            #expect(err.contains("stdin line 2") && err.contains("\"to\""), "\(err)")
            #expect(err.contains("stdin line 3") && err.contains("missing \"to\""), "\(err)")
            // A message to itself is delivered locally.
            try n.write(#"{"to":"\#(k.publicKey.base64)","message":{"candidate":{"port":1}}}"# + "\n")
            #expect(await Self.eventually { Self.messages(n).count == 1 }, "stdout: \(n.stdout)")
            n.process.terminate()
            #expect(await n.waitExit(timeout: .seconds(5)) == 0)
        }
    }

    // MARK: 4. Bad arguments

    @Test func badArgumentsAreClearErrors() async throws {
        try await Self.withTempDir { dir in
            let f = try Self.writeKey(.generate(), "k.key", in: dir)
            let cases: [([String], String)] = [
                (["node", "--key-file", f, "--listen", "udp://x"], "it must be tcp://HOST:PORT"),
                (["node", "--key-file", f, "--listen", "tcp://127.0.0.1:*", "--peer", "nonsense"], "tcp://HOST:PORT"),
                (["node", "--key-file", f, "--listen", "tcp://127.0.0.1:*", "--ttl", "0"], "--ttl"),
                (["node", "--key-file", f, "--listen", "tcp://127.0.0.1:*", "--ttl", "17"], "--ttl must be 1…16"),
                (["node", "--key-file", f, "--listen", "tcp://127.0.0.1:*", "--discover", "--discover-port", "0"], "--discover-port"),
                (["node", "--key-file", f, "--listen", "tcp://127.0.0.1:*", "--seen-capacity", "1023"], "--seen-capacity must be 1024…4194304"),
                (["node", "--key-file", f, "--listen", "tcp://127.0.0.1:*", "--seen-capacity", "4194305"], "--seen-capacity must be 1024…4194304"),
                (["node", "--key-file", f, "--listen", "tcp://127.0.0.1:*", "--seen-capacity", "-1"], "--seen-capacity"),
                (["node", "--key-file", dir.appending(path: "missing.key").path, "--listen", "tcp://127.0.0.1:*"], "No such file or directory"),
                (["seal", "--key-file", f, "--to", "notakey"], "--to"),
            ]
            for (args, needle) in cases {
                let r = try await Self.run(args, in: dir, timeout: .seconds(10))
                #expect(r.status != nil && r.status != 0, "\(args): status \(String(describing: r.status))")
                #expect(r.stderr.contains(needle), "\(args): stderr \(r.stderr)")
                #expect(!r.stdout.contains("\"ready\""), "\(args) started a node")
            }
        }
    }
}

private func sendSignal(_ pid: Int32, _ sig: Int32) { _ = kill(pid, sig) }

// Toolchain note (Swift 6.3.1, Linux): in these async test bodies, a chained call on the result
// of a typed-throwing initializer, e.g. `try PrivateKey(base64: "…").publicKey.base64` or
// `try PrivateKey.community(passphrase:).publicKey.base64`, made the test process abort in the
// concurrency runtime's task allocator ("corrupted size vs. prev_size" / "double free or
// corruption" in AsyncTask::PrivateStorage::destroy, or "freed pointer was not the last
// allocation") in 4 of 6 runs; through a synchronous wrapper, 0 of 6. Keep such calls in
// synchronous helpers.
