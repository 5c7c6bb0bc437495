import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Warren
import WarrenCLI
import WarrenMeasure

/// Time to a working ICE path with the overlay as the signaling channel, against libnice alone
/// with its candidates swapped over a pipe, on namespaced networks built for the run.
struct SessionBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "session",
        abstract: "ICE session set-up through the overlay (warren connect) against libnice alone, in network namespaces.",
        discussion: """
        Needs root (network namespaces), ip, iptables and coturn's turnserver. Builds each \
        network (a shared LAN; two cone NATs), starts coturn (STUN) there, and runs --rounds \
        rounds, each with one attempt of both, alternating which goes first:
          Warren: a fresh public overlay node, then two `warren connect` in the two hosts, each \
        with an overlay node of its own peered with the public one. Times from each process's \
        launch to its first selected pair (Connected) and to Completed (libnice READY).
          floor: two `warren-bench session-peer` (one libnice agent each) in the same hosts, \
        whose credentials and candidates this process copies from one's stdout to the other's \
        stdin. The same times, from each process's launch.
        Medians (min … max) over both sides of every round; the overhead is Warren's median over \
        the floor's.
        """)

    enum Network: String, ExpressibleByArgument, CaseIterable, Sendable { case lan, cone }

    @Option(help: "Rounds per network (each: one Warren attempt and one floor attempt).") var rounds: Int = 5
    @Option(name: .long, help: ArgumentHelp("Networks to measure (repeatable): lan, cone.", valueName: "NAME")) var network: [Network] = [.lan, .cone]
    @Option(help: "Seconds an attempt may take before it counts as failed.") var timeout: Double = 20
    @Option(name: .long, help: "The first STUN retransmission timeout, in ms (both sides, both systems).") var stunTimeout: Int = 100
    @Option(name: .long, help: "STUN retransmissions (both sides, both systems).") var stunRetransmissions: Int = 2
    @Option(help: ArgumentHelp("The `warren` whose node and connect are measured (default: the one beside warren-bench, else in PATH).", valueName: "PATH")) var warren: String?
    @Flag(help: "Keep the children's logs (stderr) in the temporary directory.") var keepLogs = false

    func validate() throws {
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    func run() throws {
        guard getuid() == 0 else {
            throw ValidationError("warren-bench session builds network namespaces and NAT rules: run it as root")
        }
        var tools: [String: String] = [:]
        for t in ["ip", "iptables", "sysctl", "turnserver", "ss"] {
            guard let p = findExecutable(t) else {
                throw ValidationError("warren-bench session needs `\(t)` (\(t == "turnserver" ? "Debian package coturn" : t == "iptables" ? "iptables" : "iproute2/procps")): not found")
            }
            tools[t] = p
        }
        let warrenPath = try warrenExecutable(warren)
        let ip = tools["ip"]!
        SessionBenchNetwork.removeLeftovers(ip: ip)
        // SIGINT/SIGTERM: the children stop, the namespaces go, exit 128 + signal.
        ChildRegistry.installSignalHandlers(command: "session", stopping: "stopping the children and deleting the namespaces") {
            SessionBenchNetwork.remove(Array(SessionBenchNetwork.live.withLock { $0 }), ip: ip)
            if let d = SessionBenchNetwork.logDirectory.withLock({ $0 }) { try? FileManager.default.removeItem(atPath: d) }
        }
        let dir = FileManager.default.temporaryDirectory.appending(path: "warren-bench-session-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        SessionBenchNetwork.logDirectory.withLock { $0 = keepLogs ? nil : dir.path }
        defer {
            if keepLogs { Output.line("logs kept in \(dir.path)") } else { try? FileManager.default.removeItem(at: dir) }
        }
        let exe = ownExecutablePath()
        Output.line("warren-bench session — \(machineLine())")
        Output.line("  \(rounds) rounds per network, Warren and the floor alternating (ABBA); STUN timeout \(stunTimeout) ms, \(stunRetransmissions) retransmissions; times from each process's launch")
        var summaries: [String] = []
        for kind in network {
            let net = try SessionBenchNetwork(kind == .lan ? .lan : .cone, ip: ip, iptables: tools["iptables"]!, sysctl: tools["sysctl"]!)
            defer { net.tearDown() }
            let runner = SessionBenchRunner(net: net, exe: exe, warren: warrenPath, ip: ip, ss: tools["ss"]!, turnserver: tools["turnserver"]!,
                                            dir: dir, timeout: timeout, stunTimeout: stunTimeout,
                                            stunRetransmissions: stunRetransmissions)
            try runner.startCoturn()
            defer { runner.stopCoturn() }
            Output.line("")
            Output.line(kind == .lan
                ? "network: shared LAN (h1 203.0.113.21, h2 203.0.113.22 on one bridge), coturn STUN on 203.0.113.1:3478"
                : "network: two cone NATs (h1 10.0.1.2 behind 203.0.113.11, h2 10.0.2.2 behind 203.0.113.12), coturn STUN on 203.0.113.1:3478")
            var warren: [SessionAttempt] = [], floor: [SessionAttempt] = []
            for r in 0..<rounds {
                let order: [Bool] = r % 4 == 0 || r % 4 == 3 ? [true, false] : [false, true]
                for isWarren in order {
                    let a = try isWarren ? runner.warrenAttempt(round: r) : runner.floorAttempt(round: r)
                    if isWarren { warren.append(a) } else { floor.append(a) }
                    Output.line("  round \(r + 1) \(isWarren ? "Warren" : "floor ") \(a.line)")
                }
            }
            summaries.append(report(kind, warren: warren, floor: floor))
        }
        Output.line("")
        for s in summaries { Output.line(s) }
    }

    /// The medians, the overhead and the targets for one network.
    private func report(_ kind: Network, warren: [SessionAttempt], floor: [SessionAttempt]) -> String {
        func stat(_ v: [Double]) -> String {
            v.isEmpty ? "–" : String(format: "%6.0f ms (%.0f … %.0f)", median(v), v.min()!, v.max()!)
        }
        let wc = warren.flatMap(\.connected), fc = floor.flatMap(\.connected)
        let wr = warren.flatMap(\.completed), fr = floor.flatMap(\.completed)
        let wac = warren.flatMap(\.agentConnected), war = warren.flatMap(\.agentCompleted)
        let failedW = warren.filter { !$0.ok }.count, failedF = floor.filter { !$0.ok }.count
        var out = [kind == .lan ? "shared LAN:" : "two cone NATs:"]
        out.append("  launch → first selected pair (Connected), per side, \(wc.count)/\(2 * warren.count) Warren, \(fc.count)/\(2 * floor.count) floor:")
        out.append("    Warren (overlay signaling):  \(stat(wc))")
        out.append("    floor (libnice over a pipe): \(stat(fc))")
        let ratio = (wc.isEmpty || fc.isEmpty) ? Double.nan : median(wc) / median(fc)
        out.append(String(format: "    overhead: %.2f× the floor", ratio)
            + (kind == .cone ? "   target ≤ 1.5× → \(ratio <= 1.5 ? "met" : "NOT met")" : ""))
        out.append("  launch → READY (Completed), per side:")
        out.append("    Warren (overlay signaling):  \(stat(wr))")
        out.append("    floor (libnice over a pipe): \(stat(fr))")
        let rratio = (wr.isEmpty || fr.isEmpty) ? Double.nan : median(wr) / median(fr)
        out.append(String(format: "    overhead: %.2f× the floor", rratio)
            + (wr.isEmpty ? "" : "   target READY ≤ 1000 ms → \(median(wr) <= 1000 ? "met" : "NOT met")"))
        out.append("  Warren, from the session's agent creation (warren connect's own \"ms\"): Connected \(stat(wac)), Completed \(stat(war))"
            + (war.isEmpty ? "" : "   READY ≤ 1000 ms → \(median(war) <= 1000 ? "met" : "NOT met")"))
        // When neither side's first credentials reach the other, both wait for the back-off's
        // first resend (500 ms ± 50 %): such a round is slow on both sides.
        let lossy = warren.filter { $0.resends.contains { $0 > 0 } }, clean = warren.filter { !$0.resends.contains { $0 > 0 } }
        out.append("  Warren rounds in which a side resent its credentials before the peer's arrived: \(lossy.count) of \(warren.count); "
            + "launch → Connected \(stat(lossy.flatMap(\.connected))) in those, \(stat(clean.flatMap(\.connected))) in the others")
        out.append("  launch → first credentials sent, per side: Warren \(stat(warren.flatMap(\.firstSend))) (after its overlay link is up), "
            + "floor \(stat(floor.flatMap(\.firstSend)))")
        let wp = Set(warren.compactMap(\.pair)), fp = Set(floor.compactMap(\.pair))
        out.append("  selected pairs: Warren \(wp.sorted()), floor \(fp.sorted())")
        if failedW + failedF > 0 { out.append("  failed attempts (no READY within \(Int(timeout)) s): Warren \(failedW), floor \(failedF)") }
        return out.joined(separator: "\n")
    }
}

/// One attempt's times (ms from each side's launch; empty where a side did not get there).
struct SessionAttempt {
    var connected: [Double] = []
    var completed: [Double] = []
    /// Warren only: the session's own times since its agent was created.
    var agentConnected: [Double] = []
    var agentCompleted: [Double] = []
    var pair: String?
    /// Warren only: credential resends (Idle → Idle) before the peer's credentials arrived.
    var resends: [Int] = []
    /// Ms from each side's launch to its first credentials sent (Warren: Unknown → Idle; the
    /// floor: its credentials line); Warren also: its overlay link up at the public node (the
    /// public node's peer-up for it).
    var firstSend: [Double] = []
    var overlayUp: [Double] = []
    var ok = false
    var note = ""

    var line: String {
        func f(_ v: [Double]) -> String { v.isEmpty ? "–" : v.map { String(format: "%.0f", $0) }.joined(separator: "/") }
        return "Connected \(f(connected)) ms, Completed \(f(completed)) ms (h1/h2)"
            + (agentConnected.isEmpty ? "" : "; since agent: \(f(agentConnected)) / \(f(agentCompleted)) ms")
            + (resends.isEmpty ? "" : "; resends before New \(resends.map(String.init).joined(separator: "/"))")
            + (firstSend.isEmpty ? "" : "; first credentials sent \(f(firstSend)) ms")
            + (overlayUp.isEmpty ? "" : ", overlay up \(f(overlayUp)) ms")
            + (pair.map { "; \($0)" } ?? "") + (note.isEmpty ? "" : "; \(note)")
    }
}

/// Runs the attempts on one network.
struct SessionBenchRunner {
    let net: SessionBenchNetwork
    /// This binary (the floor's `session-peer`s) and the `warren` measured (`node`, `connect`).
    let exe: String
    let warren: String
    let ip: String
    let ss: String
    let turnserver: String
    let dir: URL
    let timeout: Double
    let stunTimeout: Int
    let stunRetransmissions: Int
    private let coturn = Box()

    // @unchecked: set by startCoturn before the rounds and read by stopCoturn after them, on the same task.
    final class Box: @unchecked Sendable { var child: SessionBenchChild? }

    init(net: SessionBenchNetwork, exe: String, warren: String, ip: String, ss: String, turnserver: String, dir: URL,
         timeout: Double, stunTimeout: Int, stunRetransmissions: Int) {
        self.net = net; self.exe = exe; self.warren = warren; self.ip = ip; self.ss = ss; self.turnserver = turnserver; self.dir = dir
        self.timeout = timeout; self.stunTimeout = stunTimeout; self.stunRetransmissions = stunRetransmissions
    }

    var iceArgs: [String] {
        ["--ice-url", "stun:203.0.113.1:3478", "--stun-timeout", "\(stunTimeout)", "--stun-retransmissions", "\(stunRetransmissions)"]
    }

    func log(_ name: String) -> String { dir.appending(path: "\(net.kind.rawValue)-\(name).log").path }

    func startCoturn() throws {
        let c = try SessionBenchChild(name: "coturn", ip: ip, namespace: net.wan, exe: turnserver,
                                      args: ["-n", "-L", "203.0.113.1", "-p", "3478", "--stun-only", "--no-cli", "--no-tls",
                                             "--no-dtls", "--log-file", "stdout", "--simple-log",
                                             "--pidfile", dir.appending(path: "\(net.kind.rawValue)-turnserver.pid").path],
                                      logPath: log("coturn"))
        coturn.child = c
        let deadline = ContinuousClock.now + .seconds(10)
        while !capture(ip, ["netns", "exec", net.wan, ss, "-uln"]).output.contains("203.0.113.1:3478") {
            guard !c.exited, ContinuousClock.now < deadline else {
                throw SessionBenchError("coturn did not start:\n\(logTail(c.logPath))")
            }
            usleep(20_000)
        }
    }

    func stopCoturn() { coturn.child?.stop(grace: .seconds(2)) }

    /// Waits until `done` or the attempt's timeout or a child exits.
    private func wait(_ children: [SessionBenchChild], _ done: () -> Bool) -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        while ContinuousClock.now < deadline {
            if done() { return true }
            if children.contains(where: \.exited) { return done() }
            usleep(5_000)
        }
        return done()
    }

    private func key(_ name: String) throws -> (file: String, publicKey: String) {
        let k = PrivateKey.generate()
        let file = dir.appending(path: "\(net.kind.rawValue)-\(name).key").path
        guard FileManager.default.createFile(atPath: file, contents: Data((k.base64 + "\n").utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw SessionBenchError("cannot write \(file)")
        }
        return (file, k.publicKey.base64)
    }

    /// A fresh public node, then both `warren connect` launched back to back.
    func warrenAttempt(round: Int) throws -> SessionAttempt {
        let pk = try key("public-\(round)")
        let node = try SessionBenchChild(name: "public", ip: ip, namespace: net.wan, exe: warren,
                                         args: ["node", "--key-file", pk.file, "--listen", "tcp://203.0.113.1:7000", "--degree", "0",
                                                "--control", "none"],
                                         logPath: log("public"))
        defer { node.stop(grace: .seconds(2)) }
        guard wait([node], { node.objects.contains { $0.object["event"] as? String == "ready" } }) else {
            throw SessionBenchError("the public node did not start:\n\(logTail(node.logPath))")
        }
        let k1 = try key("h1-\(round)"), k2 = try key("h2-\(round)")
        func backend(_ n: Int) -> String {
            "gossip://\(net.hostAddress(n)):7001?peer=tcp://203.0.113.1:7000&degree=0"
        }
        let h1 = try SessionBenchChild(name: "h1", ip: ip, namespace: net.host(1), exe: warren,
                                       args: ["connect", "--key-file", k1.file, "--to", k2.publicKey, "--backend", backend(1)] + iceArgs,
                                       logPath: log("h1-connect"))
        let h2 = try SessionBenchChild(name: "h2", ip: ip, namespace: net.host(2), exe: warren,
                                       args: ["connect", "--key-file", k2.file, "--to", k1.publicKey, "--backend", backend(2)] + iceArgs,
                                       logPath: log("h2-connect"))
        defer { for c in [h1, h2] { c.stop(grace: .seconds(3)) } }
        func first(_ c: SessionBenchChild, _ state: String) -> (at: UInt64, object: [String: Any])? {
            c.objects.first { $0.object["event"] as? String == "state" && $0.object["state"] as? String == state }
        }
        let ok = wait([h1, h2]) { first(h1, "Completed") != nil && first(h2, "Completed") != nil }
        var a = SessionAttempt(ok: ok)
        for (n, c) in [(1, h1), (2, h2)] {
            if let idle = first(c, "Idle") { a.firstSend.append(Double(idle.at - c.launchedAt) / 1e6) }
            let endpoint = "tcp://\(net.hostAddress(n)):7001"
            if let up = node.objects.first(where: { $0.object["event"] as? String == "peer-up" && $0.object["peer"] as? String == endpoint }),
               up.at >= c.launchedAt {
                a.overlayUp.append(Double(up.at - c.launchedAt) / 1e6)
            }
            let states = c.objects.filter { $0.object["event"] as? String == "state" }.map(\.object)
            let beforeNew = states.prefix { $0["state"] as? String != "New" }
            a.resends.append(beforeNew.filter { $0["from"] as? String == "Idle" && $0["state"] as? String == "Idle" }.count)
            if let e = first(c, "Connected") {
                a.connected.append(Double(e.at - c.launchedAt) / 1e6)
                if let ms = e.object["ms"] as? Double { a.agentConnected.append(ms) }
                if c === h1, let l = e.object["local"] as? String, let r = e.object["remote"] as? String {
                    a.pair = Self.kinds(l, r)
                }
            }
            if let e = first(c, "Completed") {
                a.completed.append(Double(e.at - c.launchedAt) / 1e6)
                if let ms = e.object["ms"] as? Double { a.agentCompleted.append(ms) }
                if c === h1, let l = e.object["local"] as? String, let r = e.object["remote"] as? String {
                    a.pair = Self.kinds(l, r)
                }
            }
        }
        if !ok {
            a.note = "no READY within \(Int(timeout)) s; h1: \(Self.states(h1)); h2: \(Self.states(h2))\n\(logTail(h1.logPath))\n\(logTail(h2.logPath))"
        } else {
            let restarts = [h1, h2].map { c in c.objects.filter { $0.object["state"] as? String == "Closed" }.count }
            if restarts != [0, 0] { a.note = "restarts \(restarts)" }
        }
        return a
    }

    /// Two libnice agents, signaling copied between their stdout and stdin by this process.
    func floorAttempt(round: Int) throws -> SessionAttempt {
        let relayed = ["{\"creds\"", "{\"cand\""]
        let p1 = try SessionBenchChild(name: "p1", ip: ip, namespace: net.host(1), exe: exe,
                                       args: ["session-peer", "--controlling"] + iceArgs, logPath: log("p1"),
                                       relayPrefixes: relayed)
        let p2 = try SessionBenchChild(name: "p2", ip: ip, namespace: net.host(2), exe: exe,
                                       args: ["session-peer"] + iceArgs, logPath: log("p2"), relayPrefixes: relayed)
        p1.relay(to: p2)
        p2.relay(to: p1)
        defer { for c in [p1, p2] { c.stop(grace: .seconds(3)) } }
        func first(_ c: SessionBenchChild, _ event: String, _ state: String? = nil) -> (at: UInt64, object: [String: Any])? {
            c.objects.first { $0.object["event"] as? String == event && (state == nil || $0.object["state"] as? String == state) }
        }
        let ok = wait([p1, p2]) { first(p1, "state", "ready") != nil && first(p2, "state", "ready") != nil }
        var a = SessionAttempt(ok: ok)
        for c in [p1, p2] {
            if let e = c.output.first(where: { $0.line.hasPrefix("{\"creds\"") }) { a.firstSend.append(Double(e.at - c.launchedAt) / 1e6) }
            if let e = first(c, "state", "connected") { a.connected.append(Double(e.at - c.launchedAt) / 1e6) }
            if let e = first(c, "state", "ready") { a.completed.append(Double(e.at - c.launchedAt) / 1e6) }
            if c === p1, let e = c.objects.last(where: { $0.object["event"] as? String == "pair" }),
               let l = e.object["local"] as? String, let r = e.object["remote"] as? String {
                a.pair = Self.kinds(l, r)
            }
        }
        if !ok { a.note = "no READY within \(Int(timeout)) s\n\(logTail(p1.logPath))\n\(logTail(p2.logPath))" }
        return a
    }

    /// "srflx 203.0.113.11:4000", "srflx …" → "srflx–srflx".
    static func kinds(_ l: String, _ r: String) -> String {
        "\(l.split(separator: " ").first ?? "?")–\(r.split(separator: " ").first ?? "?")"
    }

    static func states(_ c: SessionBenchChild) -> String {
        c.objects.compactMap { $0.object["event"] as? String == "state" ? $0.object["state"] as? String : nil }.joined(separator: "→")
    }
}
