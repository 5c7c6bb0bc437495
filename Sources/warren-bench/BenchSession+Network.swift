import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Warren

// The networks and child processes of `warren-bench session`.

struct SessionBenchError: Error, CustomStringConvertible { let description: String; init(_ s: String) { description = s } }

/// A network of namespaces `wsb<pid>-<run>-…` (nothing is made in the host's own namespace):
///
/// - `wan`: bridge `br0` 203.0.113.1/24 with coturn (STUN only) on 203.0.113.1:3478 and the public
///   overlay node on 203.0.113.1:7000; its default route goes to a next hop that swallows
///   everything, so sends to private addresses are lost quietly.
/// - `.lan`: hosts `h1` 203.0.113.21 and `h2` 203.0.113.22 on the bridge.
/// - `.cone`: routers `nat1`/`nat2` (203.0.113.11/12 on the bridge, 10.0.N.1 inside) with
///   MASQUERADE, FORWARD policy DROP but lan→wan and ESTABLISHED,RELATED, and on `wan0` INPUT
///   only ESTABLISHED,RELATED (so the mapping is endpoint-independent and the router never
///   answers a peer's check itself); hosts `h1`/`h2` at 10.0.N.2. Nothing is forwarded to the
///   hosts: the public node cannot dial them and sends over their back-links
///   (docs/PROTOCOL.md §1).
final class SessionBenchNetwork: Sendable {
    enum Kind: String, Sendable { case lan, cone }
    static let prefix = "wsb"
    /// Namespaces of every network alive, for the signal handler.
    static let live = Mutex<Set<String>>([])
    /// The children's log directory, for the signal handler to remove (nil: keep it).
    static let logDirectory = Mutex<String?>(nil)

    let kind: Kind
    let run: String
    let ip: String
    let iptables: String
    let sysctl: String
    private let made = Mutex<[String]>([])

    var wan: String { "\(run)-wan" }
    func host(_ n: Int) -> String { "\(run)-h\(n)" }
    func nat(_ n: Int) -> String { "\(run)-nat\(n)" }
    func hostAddress(_ n: Int) -> String { kind == .lan ? "203.0.113.2\(n)" : "10.0.\(n).2" }
    func publicAddress(_ n: Int) -> String { kind == .lan ? "203.0.113.2\(n)" : "203.0.113.1\(n)" }

    init(_ kind: Kind, ip: String, iptables: String, sysctl: String) throws {
        self.kind = kind
        self.ip = ip
        self.iptables = iptables
        self.sysctl = sysctl
        run = "\(Self.prefix)\(getpid())-\(kind.rawValue)\(UInt32.random(in: 0..<0xFFFF))"
        do { try build() } catch { tearDown(); throw error }
    }

    private func build() throws {
        try namespace(wan)
        try cmd(ip, ["-n", wan, "link", "add", "br0", "type", "bridge"])
        try cmd(ip, ["-n", wan, "addr", "add", "203.0.113.1/24", "dev", "br0"])
        try cmd(ip, ["-n", wan, "link", "set", "br0", "up"])
        try cmd(ip, ["-n", wan, "link", "add", "bh0", "type", "veth", "peer", "name", "bh1"])
        try cmd(ip, ["-n", wan, "link", "set", "bh0", "up"])
        try cmd(ip, ["-n", wan, "link", "set", "bh1", "up"])
        try cmd(ip, ["-n", wan, "route", "add", "default", "via", "192.0.2.254", "dev", "bh0", "onlink"])
        try cmd(ip, ["-n", wan, "neigh", "add", "192.0.2.254", "lladdr", "02:00:00:00:00:fe", "dev", "bh0", "nud", "permanent"])
        for n in 1...2 {
            switch kind {
            case .lan:
                try namespace(host(n))
                try cmd(ip, ["-n", wan, "link", "add", "p\(n)", "type", "veth", "peer", "name", "eth0", "netns", host(n)])
                try cmd(ip, ["-n", wan, "link", "set", "p\(n)", "master", "br0", "up"])
                try cmd(ip, ["-n", host(n), "addr", "add", "\(hostAddress(n))/24", "dev", "eth0"])
                try cmd(ip, ["-n", host(n), "link", "set", "eth0", "up"])
            case .cone:
                let r = nat(n), h = host(n)
                try namespace(r)
                try namespace(h)
                try cmd(ip, ["-n", wan, "link", "add", "p\(n)", "type", "veth", "peer", "name", "wan0", "netns", r])
                try cmd(ip, ["-n", wan, "link", "set", "p\(n)", "master", "br0", "up"])
                try cmd(ip, ["-n", r, "addr", "add", "\(publicAddress(n))/24", "dev", "wan0"])
                try cmd(ip, ["-n", r, "link", "set", "wan0", "up"])
                try cmd(ip, ["-n", r, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", h])
                try cmd(ip, ["-n", r, "addr", "add", "10.0.\(n).1/24", "dev", "lan0"])
                try cmd(ip, ["-n", r, "link", "set", "lan0", "up"])
                try cmd(ip, ["-n", h, "addr", "add", "\(hostAddress(n))/24", "dev", "eth0"])
                try cmd(ip, ["-n", h, "link", "set", "eth0", "up"])
                try cmd(ip, ["-n", h, "route", "add", "default", "via", "10.0.\(n).1"])
                try inside(r, [sysctl, "-qw", "net.ipv4.ip_forward=1"])
                let rules: [[String]] = [
                    ["-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE"],
                    ["-P", "FORWARD", "DROP"],
                    ["-A", "FORWARD", "-i", "lan0", "-o", "wan0", "-j", "ACCEPT"],
                    ["-A", "FORWARD", "-i", "wan0", "-o", "lan0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
                    ["-A", "INPUT", "-i", "wan0", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
                    ["-A", "INPUT", "-i", "wan0", "-j", "DROP"],
                ]
                for rule in rules { try inside(r, [iptables, "-w"] + rule) }
            }
        }
        // libnice gathers on running interfaces only: wait until every veth has its carrier.
        let deadline = ContinuousClock.now + .seconds(10)
        while made.withLock({ $0 }).contains(where: { capture(ip, ["-n", $0, "link"]).output.contains("NO-CARRIER") }) {
            guard ContinuousClock.now < deadline else { throw SessionBenchError("interfaces still without carrier after 10 s") }
            usleep(50_000)
        }
    }

    private func namespace(_ name: String) throws {
        try cmd(ip, ["netns", "add", name])
        made.withLock { $0.append(name) }
        Self.live.withLock { _ = $0.insert(name) }
        try cmd(ip, ["-n", name, "link", "set", "lo", "up"])
        try inside(name, [sysctl, "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"])
    }

    func inside(_ ns: String, _ args: [String]) throws { try cmd(ip, ["netns", "exec", ns] + args) }

    private func cmd(_ exe: String, _ args: [String]) throws {
        let r = capture(exe, args)
        guard r.status == 0 else { throw SessionBenchError("\(exe) \(args.joined(separator: " ")): \(r.output)") }
    }

    /// Kills what still runs inside and deletes the namespaces (with their rules).
    func tearDown() {
        let names = made.withLock { n in let c = n; n = []; return c }
        Self.remove(names, ip: ip)
        Self.live.withLock { l in for n in names { l.remove(n) } }
    }

    static func remove(_ names: [String], ip: String) {
        for name in names {
            for p in capture(ip, ["netns", "pids", name]).output.split(separator: "\n").compactMap({ pid_t($0) }) {
                kill(p, SIGKILL)
            }
        }
        for name in names.reversed() { _ = capture(ip, ["netns", "del", name]) }
    }

    /// Namespaces of earlier bench runs whose process is gone.
    static func removeLeftovers(ip: String) {
        var stale: [String] = []
        for line in capture(ip, ["netns", "list"]).output.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix(prefix), let dash = name.firstIndex(of: "-"),
                  let pid = pid_t(name[name.index(name.startIndex, offsetBy: prefix.count)..<dash]) else { continue }
            if kill(pid, 0) == 0 || errno != ESRCH { continue }
            stale.append(name)
        }
        remove(stale, ip: ip)
    }
}

/// Runs a command to completion; stdout and stderr together.
func capture(_ exe: String, _ args: [String]) -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    p.standardInput = FileHandle.nullDevice
    do { try p.run() } catch { return (-1, "\(exe): \(error)") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// A child in a namespace whose stdout lines are kept with the monotonic time they were read;
/// lines may also be copied to another child's stdin as they arrive (the floor's signaling).
final class SessionBenchChild: Sendable {
    let name: String
    let pid: pid_t
    let launchedAt: UInt64
    let logPath: String
    /// Our end of its stdin; -1 once closed. Writes and the close hold the lock, so a closed
    /// descriptor number is never written to.
    private let stdinFD: Mutex<Int32>
    private let lines = Mutex<[(at: UInt64, line: String)]>([])
    /// Where relayed lines go, and those read before it was set.
    private let relay = Mutex<(target: SessionBenchChild?, pending: [String])>((nil, []))
    private let relayPrefixes: [String]
    private let done = Atomic<Bool>(false)

    /// `ip netns exec NS exe args…`; lines starting with one of `relayPrefixes` go to the child
    /// set with `relay(to:)`.
    init(name: String, ip: String, namespace: String, exe: String, args: [String], logPath: String,
         relayPrefixes: [String] = []) throws {
        var inPipe: [Int32] = [0, 0], outPipe: [Int32] = [0, 0]
        guard pipe(&inPipe) == 0, pipe(&outPipe) == 0 else { throw SessionBenchError("pipe: \(String(cString: strerror(errno)))") }
        for fd in inPipe + outPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let at = monotonicNanos()
        let pid: pid_t
        do { pid = try spawn(ip, ["netns", "exec", namespace, exe] + args, stdin: inPipe[0], stdout: outPipe[1], errPath: logPath) } catch {
            for fd in inPipe + outPipe { close(fd) }
            throw error
        }
        close(inPipe[0]); close(outPipe[1])
        self.name = name; self.pid = pid; self.launchedAt = at; self.logPath = logPath
        self.stdinFD = Mutex(inPipe[1]); self.relayPrefixes = relayPrefixes
        ChildRegistry.live.withLock { $0[pid] = name }
        let fd = outPipe[0]
        let t = Thread { [self] in self.readLoop(fd) }
        t.name = "session-bench-\(name)"
        t.start()
    }

    /// From now on relayed lines go to `other` (those read so far first; in order, under the lock).
    func relay(to other: SessionBenchChild) {
        relay.withLock { r in
            r.target = other
            for l in r.pending { other.write(l + "\n") }
            r.pending = []
        }
    }

    /// Every line so far with its time.
    var output: [(at: UInt64, line: String)] { lines.withLock { $0 } }

    /// The JSON objects of the lines so far, with their times.
    var objects: [(at: UInt64, object: [String: Any])] {
        output.compactMap { l in
            ((try? JSONSerialization.jsonObject(with: Data(l.line.utf8))) as? [String: Any]).map { (l.at, $0) }
        }
    }

    var exited: Bool { done.load(ordering: .acquiring) }

    func write(_ s: String) {
        let bytes = Array(s.utf8)
        stdinFD.withLock { fd in
            guard fd >= 0 else { return }
            var off = 0
            while off < bytes.count {
                let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + off, bytes.count - off) }
                if n < 0 { if errno == EINTR { continue }; return }
                off += n
            }
        }
    }

    /// Closes its stdin, SIGTERM, SIGKILL after `grace`.
    func stop(grace: Duration) {
        stdinFD.withLock { fd in
            if fd >= 0 { close(fd) }
            fd = -1
        }
        kill(pid, SIGTERM)
        ChildRegistry.reap([pid], grace: grace)
    }

    private func readLoop(_ fd: Int32) {
        forEachLine(fd: fd) { bytes, at in
            let line = String(decoding: bytes, as: UTF8.self)
            lines.withLock { $0.append((at, line)) }
            if relayPrefixes.contains(where: { line.hasPrefix($0) }) {
                relay.withLock { r in
                    if let t = r.target { t.write(line + "\n") } else { r.pending.append(line) }
                }
            }
        }
        close(fd)
        done.store(true, ordering: .releasing)
    }
}
