import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Warren
import WarrenConformance

/// `warren bench compare`: the same signaling workload over Warren's overlay, a central NATS
/// server and raw ZeroMQ, one after the other in one run, each as one process per peer driven
/// through the same JSON-lines protocol.
struct CompareBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Warren's overlay vs a central NATS server vs raw ZeroMQ PUB/SUB: one workload, one run.",
        discussion: """
        Each system runs as one process per peer, all started from this binary and driven alike \
        over stdin/stdout JSON lines: `warren node` for Warren, `warren bench peer --system nats` \
        (with a nats-server started on a free loopback port) and `warren bench peer --system zmq`. \
        After a warm-up round, two phases:
          exchange  every ordered pair: 1 credentials + --candidates candidates (cunīcu's session start)
          flood     --flood candidates written as fast as the peers take them
        Reported per system: time to complete the exchange, its delivery latency p50/p99 (write to \
        the sender's stdin → line read from the recipient's stdout, one monotonic clock), flood \
        deliveries per second, and CPU time of the system's processes (incl. nats-server) per \
        delivered message. Exits 1 if a system did not deliver every message exactly once.
        nats-server comes from Debian's nats-server package: run ./bootstrap.
        """)

    enum System: String, CaseIterable, ExpressibleByArgument {
        case warren, nats, zmq
        var title: String {
            switch self {
            case .warren: "Warren overlay"
            case .nats: "NATS (central server)"
            case .zmq: "raw ZeroMQ PUB/SUB"
            }
        }
    }

    @Option(help: "Peers (processes) per system.") var peers: Int = 16
    @Option(help: "Candidates each peer sends to each other peer in the exchange.") var candidates: Int = 4
    @Option(help: "Messages in the saturation phase (spread over all senders).") var flood: Int = 32_000
    @Option(help: "Systems to run, comma-separated.") var systems: String = "warren,nats,zmq"
    @Option(help: "Warren: minimum neighbours per node in the random topology.") var degree: Int = 3
    @Option(help: "Warren: topology seed.") var seed: UInt64 = 1
    @Option(help: "Seconds a phase may take before the missing messages are reported.") var timeout: Double = 120
    @Option(help: ArgumentHelp("Write summary.csv, latency-SYSTEM.csv and cdf-SYSTEM.csv to DIR.", valueName: "DIR")) var csv: String?
    @Option(help: ArgumentHelp("Write the exchange latency CDFs as a PNG (gnuplot), e.g. docs/plots/compare-cdf.png.", valueName: "FILE")) var plot: String?
    @Option(help: "The nats-server executable (default: found in PATH or /usr/sbin).") var natsServer: String?

    func validate() throws {
        guard (2...128).contains(peers) else { throw ValidationError("--peers must be 2…128") }
        guard (0...64).contains(candidates) else { throw ValidationError("--candidates must be 0…64") }
        guard flood >= peers else { throw ValidationError("--flood must be at least --peers") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        _ = try selectedSystems()
    }

    func selectedSystems() throws -> [System] {
        let list = systems.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return try list.map { s in
            guard let v = System(rawValue: s) else { throw ValidationError("--systems: unknown system \"\(s)\" (warren, nats, zmq)") }
            return v
        }
    }

    func run() throws {
        let chosen = try selectedSystems()
        var natsPath: String?
        if chosen.contains(.nats) {
            natsPath = natsServer ?? findExecutable("nats-server")
            guard let p = natsPath, access(p, X_OK) == 0 else {
                throw ValidationError("nats-server not found (looked in PATH and /usr/sbin): run ./bootstrap, which installs Debian's nats-server package, or pass --nats-server PATH")
            }
        }
        if plot != nil && findExecutable("gnuplot") == nil {
            throw ValidationError("gnuplot not found, needed for --plot: run ./bootstrap (Debian's gnuplot-nox)")
        }
        ChildRegistry.installSignalHandlers()
        defer { ChildRegistry.terminateAll(grace: .seconds(3)) }

        let dir = FileManager.default.temporaryDirectory.appending(path: "warren-compare-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }

        // One workload for all systems: the same keys, the same lines.
        var workload = CompareWorkload(peers: peers)
        let warmups = (0..<3).map { _ in workload.exchange(candidates: 0, name: "warm-up") }
        let exchange = workload.exchange(candidates: candidates)
        let floodPhase = workload.flood(total: flood)
        var keyFiles: [String] = []
        for (i, k) in workload.keys.enumerated() {
            let path = dir.appending(path: "peer\(i).key").path
            guard FileManager.default.createFile(atPath: path, contents: Data((k.base64 + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
                throw CompareError("cannot write \(path)")
            }
            keyFiles.append(path)
        }
        let sizes = try envelopeSizes(workload)
        let env = Setup(exe: ownExecutablePath(), dir: dir.path, keyFiles: keyFiles, natsPath: natsPath)

        var results: [(System, SystemOutcome)] = []
        for sys in chosen {
            Output.error("compare: \(sys.title): starting \(peers) processes")
            let outcome = runSystem(sys, env: env, workload: workload, warmups: warmups, exchange: exchange, flood: floodPhase)
            if let e = outcome.error { Output.error("compare: \(sys.title): \(e)") }
            results.append((sys, outcome))
        }

        printReport(results, sizes: sizes, natsVersion: natsPath.flatMap(natsServerVersion))
        if let csv { try writeCSV(results, workload: workload, dir: csv) }
        if let plot { try plotCDF(results, dataDir: csv ?? dir.path, file: plot, workload: workload) }
        if results.contains(where: { !$0.1.passed }) { throw ExitCode(1) }
    }

    struct Setup {
        let exe: String, dir: String, keyFiles: [String], natsPath: String?
    }

    struct SystemOutcome {
        var phases: [PhaseOutcome] = []
        var error: String?
        var note = ""
        var exchange: PhaseOutcome? { phases.first { $0.name == "exchange" } }
        var flood: PhaseOutcome? { phases.first { $0.name == "flood" } }
        var passed: Bool { error == nil && phases.count == 2 && phases.allSatisfy(\.exactlyOnce) }
    }

    /// Starts one system, runs warm-up, exchange and flood, and stops every process it started.
    func runSystem(_ sys: System, env: Setup, workload: CompareWorkload, warmups: [CompareWorkload.Phase],
                   exchange: CompareWorkload.Phase, flood: CompareWorkload.Phase) -> SystemOutcome {
        var outcome = SystemOutcome()
        var children: [LineChild] = []
        var server: pid_t?
        let counter = PhaseCounter()
        let senders = workload.senderIndex
        defer {
            for c in children { kill(c.pid, SIGTERM) }
            for c in children { c.stop(grace: .seconds(3)) }
            if let server { kill(server, SIGTERM); ChildRegistry.reap([server], grace: .seconds(3)) }
        }
        do {
            let ports = try freeLoopbackPorts(peers + 1)
            func start(_ i: Int, _ args: [String]) throws {
                children.append(try LineChild(name: "\(sys.rawValue)-\(i)", index: i, path: env.exe, args: args,
                                              logPath: "\(env.dir)/\(sys.rawValue)-\(i).log", senders: senders, counter: counter))
            }
            var expectedNeighbours: [Int]?
            switch sys {
            case .warren:
                let edges = GossipOverlay.randomTopology(nodes: peers, degree: degree, seed: seed)
                var deg = [Int](repeating: 0, count: peers)
                for (a, b) in edges { deg[a] += 1; deg[b] += 1 }
                expectedNeighbours = deg
                outcome.note = "\(edges.count) links, degree ≥ \(min(degree, peers - 1)), seed \(seed)"
                for i in 0..<peers {
                    var args = ["node", "--key-file", env.keyFiles[i], "--listen", "tcp://127.0.0.1:\(ports[i])",
                                "--degree", "0", "--log-level", "warning"]
                    for (a, b) in edges where b == i { args += ["--peer", "tcp://127.0.0.1:\(ports[a])"] }
                    try start(i, args)
                }
            case .nats:
                let port = ports[peers]
                let log = "\(env.dir)/nats-server.log"
                let pid = try spawn(env.natsPath!, ["-a", "127.0.0.1", "-p", "\(port)"], stdin: nil, stdout: nil, errPath: log)
                ChildRegistry.live.withLock { $0[pid] = "nats-server" }
                server = pid
                try waitForNATS(port: port, pid: pid, log: log)
                for i in 0..<peers {
                    try start(i, ["bench", "peer", "--system", "nats", "--key-file", env.keyFiles[i], "--nats", "127.0.0.1:\(port)"])
                }
            case .zmq:
                for i in 0..<peers {
                    var args = ["bench", "peer", "--system", "zmq", "--key-file", env.keyFiles[i], "--listen", "tcp://127.0.0.1:\(ports[i])"]
                    for j in 0..<peers where j != i { args += ["--peer", "tcp://127.0.0.1:\(ports[j])"] }
                    try start(i, args)
                }
            }
            try waitUntil("every process is ready", children: children, timeout: 30) { _, s in s.ready != nil }
            if let want = expectedNeighbours {
                try waitUntil("the overlay has formed (every node has its neighbours)", children: children, timeout: 60,
                              describe: { i, s in " (\(s.peersUp) of \(want[i]) neighbours up)" }) { i, s in
                    s.peersUp >= want[i]
                }
            }
            let pids = children.map(\.pid) + (server.map { [$0] } ?? [])

            // Warm-up: until one round arrives complete (connections, caches, shared keys).
            var warmed = false
            for (r, w) in warmups.enumerated() {
                let o = runPhase(w, workload: workload, children: children, cpuPids: pids, counter: counter,
                                 timeout: 10, stall: 5, label: "\(sys.rawValue) warm-up \(r + 1)")
                if o.delivered == o.expected { warmed = true; break }
                Output.error("compare: \(sys.title): warm-up round \(r + 1) delivered \(o.delivered)/\(o.expected)\(o.stopReason.map { " (\($0))" } ?? "")")
            }
            guard warmed else { throw CompareError("no warm-up round delivered every message; not measuring") }

            for phase in [exchange, flood] {
                let o = runPhase(phase, workload: workload, children: children, cpuPids: pids, serverPids: server.map { [$0] } ?? [],
                                 counter: counter,
                                 timeout: timeout, label: "\(sys.rawValue) \(phase.name)")
                if let r = o.stopReason { Output.error("compare: \(sys.title) \(phase.name): \(r)") }
                outcome.phases.append(o)
                Output.error(String(format: "compare: %@ %@: %d/%d in %.3f s", sys.title, phase.name, o.delivered, o.expected, o.elapsed))
            }
        } catch {
            outcome.error = "\(error)"
        }
        return outcome
    }
}
