import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Warren
import WarrenTestSupport

/// Real faults on real (namespaced) networks: `warren node` processes, each in its own network
/// namespace, joined by veth pairs to a bridge in a "hub" namespace. The faults are made in the
/// hub: a partition moves bridge ports to a second bridge, a crash is `kill -9`, loss is an
/// iptables `statistic` DROP rule and delay is an NFQUEUE held by `tools/netns/nfq-delay.py`
/// (this kernel has no `sch_netem`). What is emulated, and how it differs from netem:
/// docs/FAULTS.md.
///
/// Needs root (network namespaces) and `ip` (iproute2); the loss/delay test also `iptables` and
/// `python3`. Without them the tests are skipped with the reason.
@Suite(.serialized, .timeLimit(.minutes(2)),
       .enabled(if: NetnsEnv.canRun, "\(NetnsEnv.whyNot)"))
struct NetnsFaultTests {
    // MARK: 1. Partition and heal

    /// Ring 1-2-3-4-5-6-1 of seeds (plus whatever the local preset's degree 3 adds). The cut
    /// separates {1,2,3} from {4,5,6}; each half stays connected through its ring edges.
    @Test func partitionThenHeal() async throws {
        let lab = try NetnsLab(nodes: 6, test: "partition")
        defer { lab.tearDown() }
        let nodes = try await lab.startRing(extra: [])
        try await lab.waitFormed(nodes, minNeighbours: 2, timeout: .seconds(15))

        let before = await NetnsExchange.run("pre", among: nodes, timeout: .seconds(10), quiet: .milliseconds(500))
        before.expectComplete("before the partition", lab: lab)

        // Cut: {n4,n5,n6} move to the other bridge. Packets between the halves vanish (no RST,
        // no ICMP), exactly like a pulled cable.
        let sideA = Array(nodes[0..<3]), sideB = Array(nodes[3..<6])
        let cutAt = ContinuousClock.now
        try lab.partition(sideB.map(\.index))
        // Wait until every node's neighbours are all on its own side (deadAfter = 1.5 s).
        let split = await netnsEventually(timeout: .seconds(10)) {
            sideA.allSatisfy { n in n.neighbours().isSubset(of: Set(sideA.map(\.endpoint))) }
                && sideB.allSatisfy { n in n.neighbours().isSubset(of: Set(sideB.map(\.endpoint))) }
        }
        let detected = ContinuousClock.now - cutAt
        #expect(split, "cross-partition neighbours still up after 10 s: \(nodes.map { "\($0.name): \($0.neighbours().sorted())" })")

        // During the partition: each half delivers its own messages exactly once, …
        async let a = NetnsExchange.run("partA", among: sideA, timeout: .seconds(10), quiet: .milliseconds(500))
        async let b = NetnsExchange.run("partB", among: sideB, timeout: .seconds(10), quiet: .milliseconds(500))
        let (inA, inB) = await (a, b)
        inA.expectComplete("inside half {n1,n2,n3} during the partition", lab: lab)
        inB.expectComplete("inside half {n4,n5,n6} during the partition", lab: lab)
        // … and what crosses the cut is lost (Warren stores nothing), not delivered later.
        for s in sideA { for r in sideB { s.publish(to: r, tag: "cross-\(s.name)-\(r.name)") } }
        for s in sideB { for r in sideA { s.publish(to: r, tag: "cross-\(s.name)-\(r.name)") } }

        // Heal, then wait the stated settle time: deadAfter 1.5 s (already spent) + back-off
        // max 2 s × 1.25 jitter + one SYN retransmission (1 s) + handshake ≈ 4 s → 5 s.
        try await Task.sleep(for: .milliseconds(500))
        let healAt = ContinuousClock.now
        try lab.heal()
        var reconnected: Duration?
        let settle = Duration.seconds(5)
        while ContinuousClock.now - healAt < settle {
            if reconnected == nil, sideA.contains(where: { !$0.neighbours().isDisjoint(with: Set(sideB.map(\.endpoint))) }) {
                reconnected = ContinuousClock.now - healAt
            }
            try await Task.sleep(for: .milliseconds(25))
        }
        #expect(reconnected != nil, "no link across the healed cut after \(settle)")

        let after = await NetnsExchange.run("healed", among: nodes, timeout: .seconds(10), quiet: .seconds(1))
        after.expectComplete("after the heal (+\(settle) settle)", lab: lab)
        let crossed = nodes.reduce(0) { $0 + $1.counts().filter { $0.key.hasPrefix("cross-") }.values.reduce(0, +) }
        #expect(crossed == 0, "\(crossed) messages published across the cut were delivered later")
        print("netns partition: cut detected in \(detected.ms) ms; first link across the healed cut after "
            + "\(reconnected?.ms ?? -1) ms; post-heal all-pairs (\(after.expected) deliveries) complete in "
            + "\(after.elapsed.ms) ms; peer-downs: \(lab.peerDownReasons(nodes))")
    }

    // MARK: 2. kill -9 a relay, restart it

    /// An exact ring (`--degree 0`: only the seed links). n3 relays between n2 and n4; killed,
    /// the ring becomes a line and everything goes the other way round.
    @Test func killRelayAndRestart() async throws {
        let lab = try NetnsLab(nodes: 6, test: "kill")
        defer { lab.tearDown() }
        var nodes = try await lab.startRing(extra: ["--degree", "0"])
        try await lab.waitFormed(nodes, minNeighbours: 2, timeout: .seconds(15))
        let before = await NetnsExchange.run("pre", among: nodes, timeout: .seconds(10), quiet: .milliseconds(500))
        before.expectComplete("before the kill", lab: lab)

        let victim = nodes[2]
        let killedAt = ContinuousClock.now
        victim.process.kill9()
        let others = nodes.filter { $0 !== victim }
        // Immediately, while n2 and n4 still count n3 as a neighbour.
        let during = await NetnsExchange.run("dead", among: others, timeout: .seconds(10), quiet: .milliseconds(500))
        during.expectComplete("among the 5 survivors right after kill -9 n3", lab: lab)
        let n2 = nodes[1], n4 = nodes[3]
        let noticed = await netnsEventually(timeout: .seconds(6)) {
            !n2.neighbours().contains(victim.endpoint) && !n4.neighbours().contains(victim.endpoint)
        }
        #expect(noticed, "n2/n4 still list n3 as a neighbour: \(n2.neighbours()) \(n4.neighbours())")
        let noticedAfter = ContinuousClock.now - killedAt
        // And once they know: the ring is a line n4-n5-n6-n1-n2.
        let line = await NetnsExchange.run("line", among: others, timeout: .seconds(10), quiet: .milliseconds(500))
        line.expectComplete("among the 5 survivors after n3 was declared dead", lab: lab)

        // Same key, same endpoint, same seed.
        let restartedAt = ContinuousClock.now
        let reborn = try await lab.restart(victim)
        nodes[2] = reborn
        let rejoined = await netnsEventually(timeout: .seconds(10)) {
            reborn.neighbours() == [n2.endpoint, n4.endpoint]
                && n2.neighbours().contains(reborn.endpoint) && n4.neighbours().contains(reborn.endpoint)
        }
        let rejoin = ContinuousClock.now - restartedAt
        #expect(rejoined, "restarted n3 did not rejoin: its neighbours \(reborn.neighbours()); stderr: \(reborn.process.stderrTail)")
        let after = await NetnsExchange.run("reborn", among: nodes, timeout: .seconds(10), quiet: .seconds(1))
        after.expectComplete("after the restart of n3 (all 6)", lab: lab)

        // A fast restart (a supervisor's Restart=always): kill -9 and start again at once, well
        // inside deadAfter, so n2 and n4 meet the new incarnation before declaring the old dead.
        let downsBefore = n2.events("peer-down").count + n4.events("peer-down").count
        reborn.process.kill9()
        let fastAt = ContinuousClock.now
        let again = try await lab.restart(reborn)
        nodes[2] = again
        let rejoinedFast = await netnsEventually(timeout: .seconds(10)) {
            again.neighbours() == [n2.endpoint, n4.endpoint]
                && n2.neighbours().contains(again.endpoint) && n4.neighbours().contains(again.endpoint)
                && n2.events("peer-down").count + n4.events("peer-down").count >= downsBefore + 2
        }
        let fast = ContinuousClock.now - fastAt
        #expect(rejoinedFast, "fast-restarted n3 did not rejoin: its neighbours \(again.neighbours()); n2 \(n2.neighbours()), n4 \(n4.neighbours())")
        let afterFast = await NetnsExchange.run("again", among: nodes, timeout: .seconds(10), quiet: .seconds(1))
        afterFast.expectComplete("after the fast restart of n3 (all 6)", lab: lab)
        print("netns kill -9: survivors' all-pairs complete in \(during.elapsed.ms) ms (at once), \(line.elapsed.ms) ms "
            + "(as a line); n2/n4 dropped n3 after "
            + "\(noticedAfter.ms) ms; restarted n3 up with both neighbours after \(rejoin.ms) ms; all-pairs "
            + "with it in \(after.elapsed.ms) ms; fast restart: rejoined in \(fast.ms) ms, all-pairs in "
            + "\(afterFast.elapsed.ms) ms; peer-down reasons: \(lab.peerDownReasons(nodes))")
    }

    // MARK: 3. Loss and delay on every link

    /// 10 % random loss and 50 ms one-way delay for every IPv4 packet crossing the hub, both
    /// directions, from before the first node starts. All-pairs plus one community broadcast
    /// per node, each delivered exactly once.
    @Test(.enabled(if: NetnsEnv.canEmulateLossAndDelay, "\(NetnsEnv.whyNoLossAndDelay)"))
    func lossAndDelayOnEveryLink() async throws {
        let lab = try NetnsLab(nodes: 6, test: "lossy")
        defer { lab.tearDown() }
        try await lab.impair(lossPercent: 10, delayMilliseconds: 50)
        let nodes = try await lab.startRing(extra: [])
        try await lab.waitFormed(nodes, minNeighbours: 2, timeout: .seconds(30))

        // The delay is in effect: one message to a direct neighbour takes at least 50 ms.
        let t0 = ContinuousClock.now
        nodes[0].publish(to: nodes[1], tag: "probe")
        let probed = await netnsEventually(timeout: .seconds(10), poll: .milliseconds(2)) { nodes[1].counts()["probe"] == 1 }
        let probe = ContinuousClock.now - t0
        #expect(probed, "the probe did not arrive")
        #expect(probe >= .milliseconds(50), "a hop took \(probe.ms) ms: the delay is not in effect")

        // Five rounds a second apart (≈ 10 s under loss), then a final count over all of them.
        var rounds: [NetnsExchange] = []
        for r in 1...5 {
            let x = await NetnsExchange.run("lossy\(r)", among: nodes, timeout: .seconds(30), quiet: .zero)
            x.expectComplete("round \(r) with 10 % loss and 50 ms delay", lab: lab)
            rounds.append(x)
            if !x.missing.isEmpty { break }
            try await Task.sleep(for: .seconds(1))
        }
        try await Task.sleep(for: .seconds(2))
        for i in rounds.indices { rounds[i].recheck() }
        for (i, x) in rounds.enumerated() { x.expectComplete("round \(i + 1), final count", lab: lab) }
        let counters = lab.impairmentCounters()
        #expect(counters.dropped > 0, "the loss rule dropped nothing: \(counters)")
        #expect(counters.delayed > 0, "the delay queue held nothing: \(counters)")
        #expect(lab.delayDaemonAlive, "nfq-delay exited: \(lab.delayDaemonStderr)")
        print("netns loss+delay: probe \(probe.ms) ms; 5 rounds of all-pairs + community (\(rounds[0].expected) "
            + "deliveries each) complete in \(rounds.map(\.elapsed.ms)) ms; hub dropped \(counters.dropped) of \(counters.dropped + counters.delayed) "
            + "packets, delayed \(counters.delayed); peer-downs (flaps): \(lab.peerDownReasons(nodes))")
    }

    // MARK: 4. LAN discovery

    /// Four nodes with `--discover` and no seeds find each other by UDP beacons on the bridge and
    /// form one overlay (nothing else could connect them). A fifth node without `--discover` joins
    /// through a seed and learns the rest by peer exchange: beacons and seeds work side by side.
    /// Then all-pairs signaling among the five completes exactly once.
    @Test func discoveryWithoutSeeds() async throws {
        let lab = try NetnsLab(nodes: 5, test: "discover")
        defer { lab.tearDown() }
        var nodes: [NetnsNode] = []
        for i in 0..<4 {
            nodes.append(try await lab.startNode(i, key: .generate(), peers: [], extra: ["--discover", "--discover-port", "5670"]))
        }
        try await lab.waitFormed(nodes, minNeighbours: 3, timeout: .seconds(15))
        let formed = nodes.map { $0.neighbours() }
        for (i, n) in formed.enumerated() {
            #expect(n == Set(nodes.indices.filter { $0 != i }.map { nodes[$0].endpoint }), "n\(i + 1) neighbours \(n.sorted())")
        }
        nodes.append(try await lab.startNode(4, key: .generate(), peers: [0], extra: []))
        try await lab.waitFormed([nodes[4]], minNeighbours: 2, timeout: .seconds(15))
        let x = await NetnsExchange.run("discover", among: nodes, timeout: .seconds(10), quiet: .milliseconds(500))
        x.expectComplete("five nodes, four of them found by beacons only", lab: lab)
        print("netns discovery: 4 nodes formed a full mesh from beacons; n5 (seed only) has \(nodes[4].neighbours().count) neighbours; "
            + "exchange of \(x.expected) deliveries in \(x.elapsed.ms) ms")
    }
}

// MARK: - Environment

enum NetnsEnv {
    static let isRoot = getuid() == 0
    static let ip = which("ip")
    static let iptables = which("iptables")
    static let python3 = which("python3")
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let delayScript = packageRoot.appending(path: "tools/netns/nfq-delay.py").path

    /// The built `warren`: `$WARREN_EXECUTABLE` if set, else beside this test executable (any
    /// scratch path), else in `.build*/debug`.
    static let warren: String? = {
        if let e = ProcessInfo.processInfo.environment["WARREN_EXECUTABLE"], !e.isEmpty {
            return FileManager.default.isExecutableFile(atPath: e) ? e : nil
        }
        var dirs: [URL] = []
        if let exe = Bundle.main.executableURL { dirs.append(exe.resolvingSymlinksInPath().deletingLastPathComponent()) }
        if let arg0 = CommandLine.arguments.first {
            dirs.append(URL(fileURLWithPath: arg0).resolvingSymlinksInPath().deletingLastPathComponent())
        }
        if let names = try? FileManager.default.contentsOfDirectory(atPath: packageRoot.path) {
            for n in names.sorted() where n.hasPrefix(".build") { dirs.append(packageRoot.appending(path: "\(n)/debug")) }
        }
        return dirs.map { $0.appending(path: "warren").path }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }()

    static var canRun: Bool { isRoot && ip != nil && warren != nil }
    static var whyNot: String {
        if !isRoot { return "network-namespace fault tests need root (ip netns); skipped" }
        if ip == nil { return "network-namespace fault tests need `ip` (iproute2); skipped" }
        return "warren executable not found next to the test bundle (swift build --product warren); skipped"
    }
    static var canEmulateLossAndDelay: Bool { canRun && iptables != nil && python3 != nil
        && FileManager.default.fileExists(atPath: delayScript) }
    static var whyNoLossAndDelay: String {
        "loss/delay emulation needs iptables and python3 (./bootstrap installs them) and \(delayScript); skipped"
    }

    static func which(_ name: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }
}

/// Polls `condition` until it holds or `timeout` passes.
func netnsEventually(timeout: Duration, poll: Duration = .milliseconds(25), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: poll)
    }
    return condition()
}

extension Duration {
    var ms: Int { Int(components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000) }
}

struct NetnsError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// Runs a command to completion; stdout and stderr together.
@discardableResult
func netnsRun(_ exe: String, _ args: [String]) -> (status: Int32, output: String) {
    let p = ChildProcess()
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

// MARK: - Child processes

/// A long-running child: stdin a pipe, stdout and stderr files (readable at any time, no pipe
/// buffers to drain).
final class NetnsProcess: @unchecked Sendable {
    let process = ChildProcess()
    let input = Pipe()
    let outURL: URL, errURL: URL

    init(_ exe: String, _ args: [String], dir: URL, name: String) throws {
        let id = UUID().uuidString.prefix(8)
        outURL = dir.appending(path: "\(name)-\(id).out")
        errURL = dir.appending(path: "\(name)-\(id).err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        defer { try? out.close(); try? err.close() }
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = args
        process.standardInput = input
        process.standardOutput = out
        process.standardError = err
        try process.run()
    }

    var stdout: String { (try? String(contentsOf: outURL, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOf: errURL, encoding: .utf8)) ?? "" }
    var stderrTail: String { String(stderr.suffix(1500)) }
    var objects: [[String: Any]] {
        var lines = stdout.components(separatedBy: "\n")
        lines.removeLast()  // empty or an incomplete line
        return lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }
    func write(_ s: String) { try? input.fileHandleForWriting.write(contentsOf: Data(s.utf8)) }
    /// Running and not a zombie. (A crashed `warren` leaves its `swift-backtrace` helper
    /// behind holding the child's inherited descriptors; Foundation then does not reap the
    /// child, and `isRunning` stays true.)
    var running: Bool {
        guard process.isRunning else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return false }
        return !stat[close...].hasPrefix(") Z")
    }

    /// `ip netns exec` execs the command, so this pid is the program's own.
    func kill9() {
        if running { _ = kill(process.processIdentifier, SIGKILL) }
        try? input.fileHandleForWriting.close()
    }
}

/// One `warren node` in namespace `n<index+1>`, listening on 10.77.0.<index+1>:7000.
final class NetnsNode: @unchecked Sendable {
    let index: Int
    let name: String
    let endpoint: String
    let keyFile: String
    let publicKey: String
    let arguments: [String]
    let process: NetnsProcess

    init(index: Int, endpoint: String, keyFile: String, publicKey: String, arguments: [String], process: NetnsProcess) {
        self.index = index
        name = "n\(index + 1)"
        self.endpoint = endpoint
        self.keyFile = keyFile
        self.publicKey = publicKey
        self.arguments = arguments
        self.process = process
    }

    /// Endpoints of the neighbours that are up now (peer-up minus peer-down, by node id).
    func neighbours() -> Set<String> {
        var up: [String: String] = [:]
        for o in process.objects {
            guard let e = o["event"] as? String, let id = o["node"] as? String else { continue }
            if e == "peer-up" { up[id] = o["peer"] as? String ?? "?" } else if e == "peer-down" { up[id] = nil }
        }
        return Set(up.values)
    }
    func events(_ kind: String) -> [[String: Any]] { process.objects.filter { $0["event"] as? String == kind } }

    /// Delivered messages by tag (`credentials.ufrag`).
    func counts() -> [String: Int] {
        var c: [String: Int] = [:]
        for o in process.objects {
            if let m = o["message"] as? [String: Any], let cr = m["credentials"] as? [String: Any],
               let tag = cr["ufrag"] as? String { c[tag, default: 0] += 1 }
        }
        return c
    }

    func publish(to r: NetnsNode, tag: String) {
        process.write(#"{"to":"\#(r.publicKey)","message":{"credentials":{"ufrag":"\#(tag)","pwd":"p"}}}"# + "\n")
    }
    func publishCommunity(tag: String) {
        process.write(#"{"to":"community","message":{"credentials":{"ufrag":"\#(tag)","pwd":"p"}}}"# + "\n")
    }
}

/// All-pairs signaling plus one community broadcast per node; checks exactly-once delivery.
struct NetnsExchange {
    var want: [(node: NetnsNode, tag: String)] = []
    var missing: [String] = []
    var doubled: [String] = []
    var elapsed: Duration = .zero
    var expected: Int { want.count }

    static func run(_ tag: String, among nodes: [NetnsNode], timeout: Duration, quiet: Duration) async -> NetnsExchange {
        var result = NetnsExchange()
        let start = ContinuousClock.now
        for s in nodes {
            for r in nodes where r !== s {
                let t = "\(tag)-\(s.name)-\(r.name)"
                s.publish(to: r, tag: t)
                result.want.append((r, t))
            }
            let t = "\(tag)-community-\(s.name)"
            s.publishCommunity(tag: t)
            for r in nodes { result.want.append((r, t)) }
        }
        let w = result
        // A crashed node will never catch up: stop waiting at once.
        _ = await netnsEventually(timeout: timeout) { w.check().missing.isEmpty || nodes.contains { !$0.process.running } }
        result.elapsed = ContinuousClock.now - start
        try? await Task.sleep(for: quiet)
        result.recheck()
        return result
    }

    func check() -> (missing: [String], doubled: [String]) {
        var counts: [ObjectIdentifier: [String: Int]] = [:]
        var m: [String] = [], d: [String] = []
        for (n, t) in want {
            if counts[ObjectIdentifier(n)] == nil { counts[ObjectIdentifier(n)] = n.counts() }
            let c = counts[ObjectIdentifier(n)]?[t] ?? 0
            if c == 0 { m.append("\(t)@\(n.name)") } else if c > 1 { d.append("\(t)@\(n.name)×\(c)") }
        }
        return (m, d)
    }

    /// Counts again (a late duplicate shows up here).
    mutating func recheck() { (missing, doubled) = check() }

    func expectComplete(_ what: String, lab: NetnsLab, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(missing.isEmpty && doubled.isEmpty,
                "\(what): \(missing.count) of \(expected) deliveries missing \(missing.prefix(12)), doubled \(doubled.prefix(12)); \(lab.diagnostics())",
                sourceLocation: sourceLocation)
    }
}

// MARK: - The lab network

/// Network namespaces `wnf<pid>-<run>-hub` and `…-n1` … `…-nN`. The hub holds bridges `br0` (all
/// ports) and `br1` (the far side of a partition) and one veth port `pI` per node; node I has
/// `veth0` = 10.77.0.I/24 and loopback. Nothing is created in, or changed on, the host's own
/// namespace. Leftovers of crashed runs (namespaces whose `<pid>` is no longer alive) are removed
/// first, with any process still inside them.
final class NetnsLab: @unchecked Sendable {
    static let prefix = "wnf"
    let run: String
    let hub: String
    let count: Int
    let dir: URL
    private(set) var nodes: [NetnsNode] = []
    private var everStarted: [NetnsNode] = []
    private var delayDaemon: NetnsProcess?
    private var namespaces: [String] = []
    let community = "warren-netns-faults"

    init(nodes count: Int, test: String) throws {
        signal(SIGPIPE, SIG_IGN)
        Self.removeLeftovers()
        self.count = count
        run = "\(Self.prefix)\(getpid())-\(UUID().uuidString.prefix(6).lowercased())"
        hub = "\(run)-hub"
        dir = FileManager.default.temporaryDirectory.appending(path: "warren-netns-\(test)-\(run)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        do {
            try ns("add", hub)
            try ip(["-n", hub, "link", "set", "lo", "up"])
            for br in ["br0", "br1"] {
                try ip(["-n", hub, "link", "add", br, "type", "bridge"])
                try ip(["-n", hub, "link", "set", br, "up"])
            }
            for i in 0..<count {
                let n = node(i)
                try ns("add", n)
                try ip(["-n", hub, "link", "add", "p\(i + 1)", "type", "veth", "peer", "name", "veth0", "netns", n])
                try ip(["-n", hub, "link", "set", "p\(i + 1)", "master", "br0", "up"])
                try ip(["-n", n, "addr", "add", "\(address(i))/24", "dev", "veth0"])
                try ip(["-n", n, "link", "set", "veth0", "up"])
                try ip(["-n", n, "link", "set", "lo", "up"])
            }
        } catch {
            tearDown()
            throw error
        }
    }

    func node(_ i: Int) -> String { "\(run)-n\(i + 1)" }
    func address(_ i: Int) -> String { "10.77.0.\(i + 1)" }
    func endpoint(_ i: Int) -> String { "tcp://\(address(i)):7000" }

    private func ip(_ args: [String]) throws {
        let r = netnsRun(NetnsEnv.ip!, args)
        if r.status != 0 { throw NetnsError("ip \(args.joined(separator: " ")): \(r.output)") }
    }
    private func ns(_ verb: String, _ name: String) throws {
        try ip(["netns", verb, name])
        if verb == "add" { namespaces.append(name) }
    }
    private func inNamespace(_ name: String, _ args: [String]) throws {
        let r = netnsRun(NetnsEnv.ip!, ["netns", "exec", name] + args)
        if r.status != 0 { throw NetnsError("\(args.joined(separator: " ")) in \(name): \(r.output)") }
    }

    /// Deletes `wnf<pid>-…` namespaces whose pid is gone, killing what still runs inside.
    static func removeLeftovers() {
        guard let ip = NetnsEnv.ip else { return }
        let list = netnsRun(ip, ["netns", "list"]).output
        for line in list.split(separator: "\n") {
            let name = String(line.split(separator: " ").first ?? "")
            guard name.hasPrefix(prefix), let dash = name.firstIndex(of: "-"),
                  let pid = Int32(name[name.index(name.startIndex, offsetBy: prefix.count)..<dash]) else { continue }
            if kill(pid, 0) == 0 || errno != ESRCH { continue }  // that run is still alive
            for p in netnsRun(ip, ["netns", "pids", name]).output.split(separator: "\n").compactMap({ Int32($0) }) {
                _ = kill(p, SIGKILL)
            }
            netnsRun(ip, ["netns", "del", name])
        }
    }

    /// SIGKILLs our children and everything else still inside our namespaces (e.g. the
    /// `swift-backtrace` helper of a crashed node), then deletes the namespaces. Never blocks
    /// for long: a child that is not reaped within 5 s is left to the kernel.
    func tearDown() {
        for n in everStarted { n.process.kill9() }
        delayDaemon?.kill9()
        for name in namespaces {
            for p in netnsRun(NetnsEnv.ip!, ["netns", "pids", name]).output.split(separator: "\n").compactMap({ Int32($0) }) {
                _ = kill(p, SIGKILL)
            }
        }
        let deadline = ContinuousClock.now.advanced(by: .seconds(5))
        while (everStarted.map(\.process) + [delayDaemon].compactMap { $0 }).contains(where: \.running),
              ContinuousClock.now < deadline {
            usleep(20_000)
        }
        for name in namespaces.reversed() { netnsRun(NetnsEnv.ip!, ["netns", "del", name]) }
        namespaces = []
        if ProcessInfo.processInfo.environment["WARREN_NETNS_KEEP"] == "1" {
            print("netns: logs and keys kept in \(dir.path)")
        } else {
            try? FileManager.default.removeItem(at: dir)
        }
    }

    // MARK: Nodes

    func startNode(_ i: Int, key: PrivateKey, peers: [Int], extra: [String]) async throws -> NetnsNode {
        let keyFile = dir.appending(path: "n\(i + 1).key").path
        if !FileManager.default.fileExists(atPath: keyFile) {
            guard FileManager.default.createFile(atPath: keyFile, contents: Data((key.base64 + "\n").utf8),
                                                 attributes: [.posixPermissions: 0o600]) else {
                throw NetnsError("cannot write \(keyFile)")
            }
        }
        var args = ["node", "--key-file", keyFile, "--listen", endpoint(i), "--preset", "local",
                    "--community", community, "--log-level", "info", "--control", "none"]
        for p in peers { args += ["--peer", endpoint(p)] }
        args += extra
        return try await launch(i, keyFile: keyFile, publicKey: key.publicKey.base64, arguments: args)
    }

    private func launch(_ i: Int, keyFile: String, publicKey: String, arguments: [String]) async throws -> NetnsNode {
        let p = try NetnsProcess(NetnsEnv.ip!, ["netns", "exec", node(i), NetnsEnv.warren!] + arguments, dir: dir, name: "n\(i + 1)")
        let n = NetnsNode(index: i, endpoint: endpoint(i), keyFile: keyFile, publicKey: publicKey, arguments: arguments, process: p)
        everStarted.append(n)
        let ready = await netnsEventually(timeout: .seconds(10)) {
            p.objects.contains { $0["event"] as? String == "ready" } || !p.running
        }
        guard ready, p.running else {
            throw NetnsError("n\(i + 1) printed no ready line; stdout: \(p.stdout) stderr: \(p.stderrTail)")
        }
        if nodes.count > i { nodes[i] = n } else { nodes.append(n) }
        return n
    }

    /// Node i seeds node i+1 (mod count): a ring.
    func startRing(extra: [String]) async throws -> [NetnsNode] {
        var out: [NetnsNode] = []
        for i in 0..<count {
            out.append(try await startNode(i, key: .generate(), peers: [(i + 1) % count], extra: extra))
        }
        return out
    }

    /// The same key, endpoint and arguments: a new process (kill -9'd before).
    func restart(_ old: NetnsNode) async throws -> NetnsNode {
        guard await netnsEventually(timeout: .seconds(5), { !old.process.running }) else {
            throw NetnsError("\(old.name) is still running")
        }
        return try await launch(old.index, keyFile: old.keyFile, publicKey: old.publicKey, arguments: old.arguments)
    }

    func waitFormed(_ nodes: [NetnsNode], minNeighbours: Int, timeout: Duration) async throws {
        let ok = await netnsEventually(timeout: timeout) {
            nodes.allSatisfy { $0.neighbours().count >= minNeighbours } || nodes.contains { !$0.process.running }
        }
        let dead = nodes.filter { !$0.process.running }.map(\.name)
        if !dead.isEmpty { throw NetnsError("\(dead) exited while the overlay formed; \(diagnostics())") }
        if !ok {
            throw NetnsError("overlay not formed in \(timeout): \(nodes.map { "\($0.name): \($0.neighbours().sorted())" }); \(diagnostics())")
        }
    }

    // MARK: Faults

    /// Moves the given nodes' hub ports to `br1`: no frame crosses between the two bridges.
    func partition(_ far: [Int]) throws {
        for i in far { try ip(["-n", hub, "link", "set", "p\(i + 1)", "master", "br1"]) }
    }

    /// Every port back on `br0`.
    func heal() throws {
        for i in 0..<count { try ip(["-n", hub, "link", "set", "p\(i + 1)", "master", "br0"]) }
    }

    /// In the hub: bridged IPv4 goes through iptables (br_netfilter); FORWARD drops `lossPercent`
    /// at random, then queues the rest to nfq-delay, which releases each packet after the delay.
    func impair(lossPercent: Int, delayMilliseconds: Int) async throws {
        try inNamespace(hub, ["/bin/sh", "-c", "echo 1 > /proc/sys/net/bridge/bridge-nf-call-iptables"])
        let d = try NetnsProcess(NetnsEnv.ip!, ["netns", "exec", hub, NetnsEnv.python3!, NetnsEnv.delayScript,
                                                "--queue", "0", "--delay-ms", "\(delayMilliseconds)", "--stop-on-eof"],
                                 dir: dir, name: "nfq-delay")
        delayDaemon = d
        let up = await netnsEventually(timeout: .seconds(10)) { d.stdout.contains("ready") || !d.running }
        guard up, d.running else { throw NetnsError("nfq-delay did not start: \(d.stderrTail)") }
        let p = String(format: "%.2f", Double(lossPercent) / 100)
        try inNamespace(hub, [NetnsEnv.iptables!, "-w", "-A", "FORWARD", "-m", "statistic", "--mode", "random",
                              "--probability", p, "-j", "DROP"])
        try inNamespace(hub, [NetnsEnv.iptables!, "-w", "-A", "FORWARD", "-j", "NFQUEUE", "--queue-num", "0"])
    }

    var delayDaemonAlive: Bool { delayDaemon?.running ?? false }
    var delayDaemonStderr: String { delayDaemon?.stderrTail ?? "" }

    /// Packets the hub's FORWARD rules dropped and queued (delayed) so far.
    func impairmentCounters() -> (dropped: Int, delayed: Int) {
        let out = netnsRun(NetnsEnv.ip!, ["netns", "exec", hub, NetnsEnv.iptables!, "-w", "-L", "FORWARD", "-v", "-n", "-x"]).output
        var dropped = 0, delayed = 0
        for line in out.split(separator: "\n") {
            let f = line.split(separator: " ")
            guard f.count > 2, let pkts = Int(f[0]) else { continue }
            if f[2] == "DROP" { dropped += pkts } else if f[2] == "NFQUEUE" { delayed += pkts }
        }
        return (dropped, delayed)
    }

    // MARK: Diagnostics

    func peerDownReasons(_ nodes: [NetnsNode]) -> [String: [String]] {
        var d: [String: [String]] = [:]
        for n in nodes { d[n.name] = n.events("peer-down").map { "\($0["peer"] as? String ?? "?"):\($0["reason"] as? String ?? "?")" } }
        return d
    }
    func diagnostics() -> String {
        nodes.map { n in
            "\n[\(n.name) running=\(n.process.running) neighbours=\(n.neighbours().sorted()) "
                + "downs=\(n.events("peer-down").count)] stderr: \(n.process.stderrTail)"
        }.joined()
    }
}
