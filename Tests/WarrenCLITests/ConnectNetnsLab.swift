import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Warren

// MARK: - Environment

/// What the `warren connect` namespace tests need besides `NetnsEnv.canRun`.
enum ConnectNetnsEnv {
    static let turnserver = NetnsEnv.which("turnserver")
    /// Debian's python3 (a pyenv shim would be slow to start and may not exist in every PATH).
    static let python3: String? = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3")
        ? "/usr/bin/python3" : NetnsEnv.python3

    static var canRun: Bool { NetnsEnv.canRun && NetnsEnv.iptables != nil && turnserver != nil && python3 != nil }
    static var whyNot: String {
        if !NetnsEnv.canRun { return NetnsEnv.whyNot }
        if NetnsEnv.iptables == nil { return "warren connect namespace tests need iptables (NAT routers); skipped" }
        if turnserver == nil { return "warren connect namespace tests need coturn's turnserver (./bootstrap installs it); skipped" }
        return "warren connect namespace tests need python3 (the UDP applications); skipped"
    }
}

// MARK: - The lab

/// Networks for `warren connect`, all in namespaces named `wcn<pid>-<run>-…`; nothing is
/// created in, or changed on, the host's own namespace, so deleting the namespaces removes every
/// interface and iptables rule made here.
///
/// - `wan`: bridge `br0` 203.0.113.1/24 (the "Internet"), coturn on 203.0.113.1:3478, the public
///   Warren node on 203.0.113.1:7000. Its default route leads to a next hop that swallows
///   everything (a veth whose far end has no address, and a permanent fake neighbour), so a send
///   to a private address is silently lost instead of failing with ENETUNREACH (coturn drops a
///   whole TURN allocation on such an error).
/// - `.cone` / `.symmetric`: routers `nat1`, `nat2` with `wan0` 203.0.113.1N on the bridge and
///   `lan0` 10.0.N.1/24; hosts `h1`, `h2` at 10.0.N.2 behind them. MASQUERADE (`--random` for
///   symmetric), FORWARD policy DROP with lan→wan and ESTABLISHED,RELATED back, and on `wan0`
///   INPUT only ESTABLISHED,RELATED (without that drop the router itself answers the peer's first
///   check and a cone NAT behaves like a symmetric one).
///   Nothing is forwarded to the hosts: each host's node dials the public node, which cannot
///   dial it back and sends to it over the host's back-link instead (docs/PROTOCOL.md §1), so the
///   hosts use outbound connections only, TCP and UDP alike.
/// - `.lan`: `h1` 203.0.113.21 and `h2` 203.0.113.22 directly on the bridge (no NAT).
///
/// Counting rules (iptables rules without a target, tagged with a comment) are read by
/// `counter(_:_:)`.
final class ConnectLab: @unchecked Sendable {
    enum Kind: String { case lan, cone, symmetric }

    static let prefix = "wcn"
    let kind: Kind
    let run: String
    let dir: URL
    private(set) var namespaces: [String] = []
    private(set) var processes: [(name: String, process: NetnsProcess)] = []

    var wan: String { "\(run)-wan" }
    func nat(_ n: Int) -> String { "\(run)-nat\(n)" }
    func host(_ n: Int) -> String { "\(run)-h\(n)" }
    /// The host's own address.
    func hostAddress(_ n: Int) -> String { kind == .lan ? "203.0.113.2\(n)" : "10.0.\(n).2" }
    /// The address the other side sees: the NAT's public address, or the host's on the LAN.
    func publicAddress(_ n: Int) -> String { kind == .lan ? "203.0.113.2\(n)" : "203.0.113.1\(n)" }

    init(_ kind: Kind, test: String) throws {
        signal(SIGPIPE, SIG_IGN)
        Self.removeLeftovers()
        self.kind = kind
        run = "\(Self.prefix)\(getpid())-\(UUID().uuidString.prefix(6).lowercased())"
        dir = FileManager.default.temporaryDirectory.appending(path: "warren-connect-\(test)-\(run)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        do {
            try build()
        } catch {
            tearDown()
            throw error
        }
    }

    private func build() throws {
        try addNamespace(wan)
        try ip(["-n", wan, "link", "add", "br0", "type", "bridge"])
        try ip(["-n", wan, "addr", "add", "203.0.113.1/24", "dev", "br0"])
        try ip(["-n", wan, "link", "set", "br0", "up"])
        try ip(["-n", wan, "link", "add", "bh0", "type", "veth", "peer", "name", "bh1"])
        try ip(["-n", wan, "link", "set", "bh0", "up"])
        try ip(["-n", wan, "link", "set", "bh1", "up"])
        try ip(["-n", wan, "route", "add", "default", "via", "192.0.2.254", "dev", "bh0", "onlink"])
        try ip(["-n", wan, "neigh", "add", "192.0.2.254", "lladdr", "02:00:00:00:00:fe", "dev", "bh0", "nud", "permanent"])
        // Datagrams to the public host itself other than STUN/TURN control (3478): relayed data
        // (TURN) or anything misrouted through it.
        try iptables(wan, ["-A", "INPUT", "-p", "udp", "!", "--dport", "3478", "-m", "comment", "--comment", "udp-not-3478"])
        try iptables(wan, ["-A", "INPUT", "-p", "udp", "--dport", "3478", "-m", "comment", "--comment", "udp-3478"])
        // Signaling: the public node's overlay port and its gRPC bridge.
        try iptables(wan, ["-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "7000,8080", "-m", "comment", "--comment", "signaling"])
        for n in 1...2 {
            switch kind {
            case .lan:
                try addNamespace(host(n))
                try ip(["-n", wan, "link", "add", "p\(n)", "type", "veth", "peer", "name", "eth0", "netns", host(n)])
                try ip(["-n", wan, "link", "set", "p\(n)", "master", "br0", "up"])
                try ip(["-n", host(n), "addr", "add", "\(hostAddress(n))/24", "dev", "eth0"])
                try ip(["-n", host(n), "link", "set", "eth0", "up"])
            case .cone, .symmetric:
                let r = nat(n), h = host(n)
                try addNamespace(r)
                try addNamespace(h)
                try ip(["-n", wan, "link", "add", "p\(n)", "type", "veth", "peer", "name", "wan0", "netns", r])
                try ip(["-n", wan, "link", "set", "p\(n)", "master", "br0", "up"])
                try ip(["-n", r, "addr", "add", "\(publicAddress(n))/24", "dev", "wan0"])
                try ip(["-n", r, "link", "set", "wan0", "up"])
                try ip(["-n", r, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", h])
                try ip(["-n", r, "addr", "add", "10.0.\(n).1/24", "dev", "lan0"])
                try ip(["-n", r, "link", "set", "lan0", "up"])
                try ip(["-n", h, "addr", "add", "\(hostAddress(n))/24", "dev", "eth0"])
                try ip(["-n", h, "link", "set", "eth0", "up"])
                try ip(["-n", h, "route", "add", "default", "via", "10.0.\(n).1"])
                try exec(r, ["/sbin/sysctl", "-qw", "net.ipv4.ip_forward=1"])
                try iptables(r, ["-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE"]
                    + (kind == .symmetric ? ["--random"] : []))
                try iptables(r, ["-P", "FORWARD", "DROP"])
                try iptables(r, ["-A", "FORWARD", "-i", "lan0", "-o", "wan0", "-j", "ACCEPT"])
                try iptables(r, ["-A", "FORWARD", "-i", "wan0", "-o", "lan0", "-m", "conntrack",
                                 "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"])
                try iptables(r, ["-A", "INPUT", "-i", "wan0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"])
                try iptables(r, ["-A", "INPUT", "-i", "wan0", "-j", "DROP"])
                // UDP from this host's network straight to the other NAT (no relay in between).
                try iptables(r, ["-I", "FORWARD", "1", "-i", "lan0", "-o", "wan0", "-p", "udp", "-d", publicAddress(3 - n),
                                 "-m", "comment", "--comment", "udp-to-peer"])
            }
        }
    }

    /// Waits until no interface of any namespace shows NO-CARRIER (libnice gathers on running
    /// interfaces only).
    func waitCarrier() async throws {
        let ok = await netnsEventually(timeout: .seconds(10), poll: .milliseconds(50)) {
            self.namespaces.allSatisfy { !netnsRun(NetnsEnv.ip!, ["-n", $0, "link"]).output.contains("NO-CARRIER") }
        }
        if !ok { throw NetnsError("interfaces still without carrier after 10 s: \(namespaces.map { netnsRun(NetnsEnv.ip!, ["-n", $0, "-br", "link"]).output })") }
    }

    // MARK: Commands

    private func addNamespace(_ name: String) throws {
        try ip(["netns", "add", name])
        namespaces.append(name)
        try ip(["-n", name, "link", "set", "lo", "up"])
        try exec(name, ["/sbin/sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
    }

    func ip(_ args: [String]) throws {
        let r = netnsRun(NetnsEnv.ip!, args)
        if r.status != 0 { throw NetnsError("ip \(args.joined(separator: " ")): \(r.output)") }
    }

    func exec(_ ns: String, _ args: [String]) throws {
        let r = netnsRun(NetnsEnv.ip!, ["netns", "exec", ns] + args)
        if r.status != 0 { throw NetnsError("\(args.joined(separator: " ")) in \(ns): \(r.output)") }
    }

    func iptables(_ ns: String, _ args: [String]) throws {
        try exec(ns, [NetnsEnv.iptables!, "-w"] + args)
    }

    /// Packets counted by the rules tagged `comment` in `ns` (all tables' filter chains).
    func counter(_ ns: String, _ comment: String) -> Int {
        let out = netnsRun(NetnsEnv.ip!, ["netns", "exec", ns, NetnsEnv.iptables!, "-w", "-L", "-v", "-n", "-x"]).output
        var total = 0
        for line in out.split(separator: "\n") where line.contains("/* \(comment) */") {
            if let first = line.split(separator: " ").first, let n = Int(first) { total += n }
        }
        return total
    }

    /// All counters, for messages.
    func counters() -> String {
        var parts: [String] = []
        parts.append("wan udp-not-3478=\(counter(wan, "udp-not-3478")) udp-3478=\(counter(wan, "udp-3478")) signaling=\(counter(wan, "signaling"))")
        if kind != .lan {
            for n in 1...2 { parts.append("nat\(n) udp-to-peer=\(counter(nat(n), "udp-to-peer"))") }
        }
        return parts.joined(separator: "; ")
    }

    // MARK: Processes

    @discardableResult
    func start(_ name: String, in ns: String, _ exe: String, _ args: [String]) throws -> NetnsProcess {
        let p = try NetnsProcess(NetnsEnv.ip!, ["netns", "exec", ns, exe] + args, dir: dir, name: name)
        processes.append((name, p))
        return p
    }

    /// coturn on 203.0.113.1:3478: STUN only, or STUN and TURN (user `warren`, password `secret`).
    func startCoturn(turn: Bool) async throws {
        var args = ["-n", "-L", "203.0.113.1", "-p", "3478", "--no-cli", "--no-tls", "--no-dtls",
                    "--log-file", "stdout", "--simple-log", "--pidfile", dir.appending(path: "turnserver.pid").path]
        if turn {
            args += ["-v", "-E", "203.0.113.1", "--lt-cred-mech", "--user", "warren:secret", "--realm", "warren",
                     "--fingerprint", "--min-port", "49152", "--max-port", "49300",
                     "--denied-peer-ip", "10.0.0.0-10.255.255.255"]
        } else {
            args += ["--stun-only"]
        }
        let p = try start("coturn", in: wan, ConnectNetnsEnv.turnserver!, args)
        let up = await netnsEventually(timeout: .seconds(10), poll: .milliseconds(50)) {
            !p.running || netnsRun(NetnsEnv.ip!, ["netns", "exec", self.wan, "/bin/ss", "-uln"]).output.contains("203.0.113.1:3478")
        }
        guard up, p.running else { throw NetnsError("coturn did not start: \(p.stdout.suffix(1500)) \(p.stderrTail)") }
    }

    /// Writes a fresh key file (mode 0600); returns its path and the public key.
    func newKey(_ name: String) throws -> (file: String, publicKey: String) {
        let (secret, pub) = Self.generateKey()
        let file = dir.appending(path: "\(name).key").path
        guard FileManager.default.createFile(atPath: file, contents: Data((secret + "\n").utf8),
                                             attributes: [.posixPermissions: 0o600]) else {
            throw NetnsError("cannot write \(file)")
        }
        return (file, pub)
    }

    /// Synchronous (see the toolchain note in NodeCommandTests.swift).
    private static func generateKey() -> (String, String) {
        let k = PrivateKey.generate()
        return (k.base64, k.publicKey.base64)
    }

    /// The public overlay node (and, with `grpc`, its gRPC bridge on 203.0.113.1:8080).
    func startPublicNode(grpc: Bool = false) async throws -> NetnsProcess {
        let key = try newKey("public")
        var args = ["node", "--key-file", key.file, "--listen", "tcp://203.0.113.1:7000", "--degree", "0", "--log-level", "info",
                    "--control", "none"]
        if grpc { args += ["--grpc", "203.0.113.1:8080", "--grpc-allow-plaintext"] }
        let p = try start("public", in: wan, NetnsEnv.warren!, args)
        let ready = await netnsEventually(timeout: .seconds(10)) {
            p.objects.contains { $0["event"] as? String == "ready" } || !p.running
        }
        guard ready, p.running else { throw NetnsError("the public node printed no ready line; \(diagnostics())") }
        return p
    }

    // MARK: Teardown

    /// Deletes `wcn<pid>-…` namespaces whose pid is gone, killing what still runs inside.
    static func removeLeftovers() {
        guard let ip = NetnsEnv.ip else { return }
        for line in netnsRun(ip, ["netns", "list"]).output.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix(prefix), let dash = name.firstIndex(of: "-"),
                  let pid = Int32(name[name.index(name.startIndex, offsetBy: prefix.count)..<dash]) else { continue }
            if kill(pid, 0) == 0 || errno != ESRCH { continue }
            for p in netnsRun(ip, ["netns", "pids", name]).output.split(separator: "\n").compactMap({ Int32($0) }) {
                _ = kill(p, SIGKILL)
            }
            netnsRun(ip, ["netns", "del", name])
        }
    }

    /// SIGKILLs every process started here and anything else still inside the namespaces, then
    /// deletes the namespaces (with their interfaces and iptables rules).
    func tearDown() {
        for (_, p) in processes { p.kill9() }
        for name in namespaces {
            for p in netnsRun(NetnsEnv.ip!, ["netns", "pids", name]).output.split(separator: "\n").compactMap({ Int32($0) }) {
                _ = kill(p, SIGKILL)
            }
        }
        let deadline = ContinuousClock.now.advanced(by: .seconds(5))
        while processes.contains(where: { $0.process.running }), ContinuousClock.now < deadline { usleep(20_000) }
        for name in namespaces.reversed() { netnsRun(NetnsEnv.ip!, ["netns", "del", name]) }
        namespaces = []
        if ProcessInfo.processInfo.environment["WARREN_NETNS_KEEP"] == "1" {
            print("netns: logs and keys kept in \(dir.path)")
        } else {
            try? FileManager.default.removeItem(at: dir)
        }
    }

    /// Every process's stdout (tail) and stderr (tail), and the counters.
    func diagnostics() -> String {
        processes.map { n, p in
            "\n[\(n) running=\(p.running)] stdout: \(p.stdout.suffix(4000))\n  stderr: \(p.stderrTail)"
        }.joined() + "\n[counters] \(counters())"
    }
}

// MARK: - One `warren connect`

/// A `warren connect` process in one of the lab's hosts, and what it printed.
final class ConnectPeer: @unchecked Sendable {
    let name: String
    let namespace: String
    let keyFile: String
    let publicKey: String
    let arguments: [String]
    private(set) var process: NetnsProcess
    private(set) var incarnations: [NetnsProcess]

    init(name: String, namespace: String, keyFile: String, publicKey: String, arguments: [String], process: NetnsProcess) {
        self.name = name
        self.namespace = namespace
        self.keyFile = keyFile
        self.publicKey = publicKey
        self.arguments = arguments
        self.process = process
        incarnations = [process]
    }

    func replace(with p: NetnsProcess) {
        process = p
        incarnations.append(p)
    }

    /// The `state` events of the current process, in order.
    var states: [[String: Any]] { process.objects.filter { $0["event"] as? String == "state" } }
    var stateNames: [String] { states.compactMap { $0["state"] as? String } }
    var lastState: String? { stateNames.last }
    var isConnected: Bool { lastState == "Connected" || lastState == "Completed" }

    /// The first `to` state event at index ≥ `from`.
    func first(_ to: String, from: Int = 0) -> [String: Any]? {
        let s = states
        guard from < s.count else { return nil }
        return s[from...].first { $0["state"] as? String == to }
    }

    /// The selected pair reported with the last Connected/Completed state.
    var pair: (local: String, remote: String)? {
        guard let s = states.last(where: { ["Connected", "Completed"].contains($0["state"] as? String ?? "") }),
              let l = s["local"] as? String, let r = s["remote"] as? String else { return nil }
        return (l, r)
    }

    /// "kind address:port" → (kind, address).
    static func split(_ c: String) -> (kind: String, address: String) {
        let parts = c.split(separator: " ")
        let endpoint = parts.last.map(String.init) ?? ""
        let address = endpoint.split(separator: ":").dropLast().joined(separator: ":")
        return (String(parts.first ?? ""), address)
    }

    /// The state names, compactly, for messages.
    var summary: String { "\(name): \(stateNames.joined(separator: "→"))" }
}

extension ConnectLab {
    /// Starts `warren connect` in host `n` to `peer` with the given backend and ICE URLs.
    /// h1 forwards 127.0.0.1:5001 (replies to the last local sender); h2 forwards 127.0.0.1:5002
    /// and delivers to 127.0.0.1:6002.
    func startConnect(_ n: Int, key: (file: String, publicKey: String), to peer: String, backend: [String],
                      iceURLs: [String]) async throws -> ConnectPeer {
        var args = ["connect", "--key-file", key.file, "--to", peer] + backend + ["--log-level", "info",
                    "--forward", "127.0.0.1:500\(n)"]
        if n == 2 { args += ["--forward-to", "127.0.0.1:6002"] }
        for u in iceURLs { args += ["--ice-url", u] }
        let p = try start("h\(n)-connect", in: host(n), NetnsEnv.warren!, args)
        let c = ConnectPeer(name: "h\(n)", namespace: host(n), keyFile: key.file, publicKey: key.publicKey, arguments: args, process: p)
        try await waitReady(c)
        return c
    }

    /// The same key and arguments in a new process (after kill -9).
    func restart(_ c: ConnectPeer) async throws {
        guard await netnsEventually(timeout: .seconds(5), { !c.process.running }) else {
            throw NetnsError("\(c.name) is still running")
        }
        let p = try start("\(c.name)-connect", in: c.namespace, NetnsEnv.warren!, c.arguments)
        c.replace(with: p)
        try await waitReady(c)
    }

    private func waitReady(_ c: ConnectPeer) async throws {
        let p = c.process
        let ready = await netnsEventually(timeout: .seconds(10)) {
            p.objects.contains { $0["event"] as? String == "ready" } || !p.running
        }
        guard ready, p.running else { throw NetnsError("\(c.name) printed no ready line; \(diagnostics())") }
    }

    /// The gossip backend URL of host `n`: a node on the host (it advertises its private address,
    /// which nobody outside can dial), with the public node as its only neighbour.
    func gossipBackend(_ n: Int) -> String {
        "gossip://\(hostAddress(n)):7001?peer=tcp://203.0.113.1:7000&degree=0"
    }

    /// The same node as `gossipBackend(n)`, given with warren node's own flags.
    func nodeFlags(_ n: Int) -> [String] {
        ["--listen", "tcp://\(hostAddress(n)):7001", "--peer", "tcp://203.0.113.1:7000", "--degree", "0"]
    }

    /// How a host's `warren connect` reaches the overlay.
    enum Signaling { case gossipURL, nodeFlags, grpc }

    /// Starts coturn, the public node and both `warren connect`s.
    func startPair(turn: Bool = false, signaling: Signaling = .gossipURL) async throws -> (ConnectPeer, ConnectPeer) {
        let grpc = signaling == .grpc
        try await waitCarrier()
        try await startCoturn(turn: turn)
        _ = try await startPublicNode(grpc: grpc)
        let k1 = try newKey("h1"), k2 = try newKey("h2")
        let ice = turn ? ["stun:203.0.113.1:3478", "turn:warren:secret@203.0.113.1:3478?transport=udp"] : ["stun:203.0.113.1:3478"]
        func backend(_ n: Int) -> [String] {
            switch signaling {
            case .gossipURL: return ["--backend", gossipBackend(n)]
            case .nodeFlags: return nodeFlags(n)
            case .grpc: return ["--backend", "grpc://203.0.113.1:8080?insecure=true"]
            }
        }
        let b1 = backend(1), b2 = backend(2)
        let h1 = try await startConnect(1, key: k1, to: k2.publicKey, backend: b1, iceURLs: ice)
        let h2 = try await startConnect(2, key: k2, to: k1.publicKey, backend: b2, iceURLs: ice)
        return (h1, h2)
    }

    // MARK: UDP applications

    /// In h2: receives on 127.0.0.1:6002 (h2's --forward-to), prints each datagram and sends
    /// `echo:<datagram>` back through h2's forward port 5002.
    func startEcho() async throws -> NetnsProcess {
        let script = """
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 6002))
        print("listening", flush=True)
        while True:
            d, a = s.recvfrom(65536)
            print("got " + d.decode(errors="replace"), flush=True)
            s.sendto(b"echo:" + d, ("127.0.0.1", 5002))
        """
        let p = try start("h2-echo", in: host(2), ConnectNetnsEnv.python3!, ["-u", "-c", script])
        guard await netnsEventually(timeout: .seconds(10), { p.stdout.contains("listening") || !p.running }), p.running else {
            throw NetnsError("the echo application did not start: \(p.stderrTail)")
        }
        return p
    }

    /// In h1: sends `count` datagrams `<tag>-<i>` to h1's forward port 5001, re-sending those not
    /// yet echoed every 300 ms, for at most `seconds`. Returns how many distinct ones were echoed.
    func sendAndCollectEchoes(tag: String, count: Int, seconds: Double = 5) async throws -> (echoed: Int, sent: Int, output: String) {
        let script = """
        import socket, sys, time, json
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(0.05)
        tag, n, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
        got, sent, deadline = set(), 0, time.time() + limit
        while time.time() < deadline and len(got) < n:
            for i in range(n):
                if i not in got:
                    s.sendto(("%s-%d" % (tag, i)).encode(), ("127.0.0.1", 5001)); sent += 1
            t = time.time() + 0.3
            while time.time() < t and len(got) < n:
                try:
                    d, _ = s.recvfrom(65536)
                except socket.timeout:
                    continue
                x = d.decode(errors="replace")
                if x.startswith("echo:%s-" % tag):
                    got.add(int(x.rsplit("-", 1)[1]))
        print(json.dumps({"echoed": len(got), "sent": sent}), flush=True)
        """
        let p = try start("h1-send-\(tag)", in: host(1), ConnectNetnsEnv.python3!, ["-u", "-c", script, tag, "\(count)", "\(seconds)"])
        _ = await netnsEventually(timeout: .seconds(Int64(seconds) + 10)) { !p.running }
        let line = p.stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let echoed = o["echoed"] as? Int, let sent = o["sent"] as? Int else {
            throw NetnsError("the sender printed no result: \(p.stdout) \(p.stderrTail)")
        }
        return (echoed, sent, line)
    }
}
