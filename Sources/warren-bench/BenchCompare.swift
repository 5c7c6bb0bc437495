import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Warren
import WarrenCLI
import WarrenConformance

/// `warren-bench compare`: the same signaling workload over Warren's overlay, a central NATS
/// server and raw ZeroMQ, one after the other in one run, each as one process per peer driven
/// through the same JSON-lines protocol.
struct CompareBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compare",
        abstract: "Warren's overlay vs a central NATS server vs raw ZeroMQ PUB/SUB: one workload, one run.",
        discussion: """
        Each system runs as one process per peer, all child processes of this one, driven alike \
        over stdin/stdout JSON lines: `warren node` for Warren (the `warren` beside this binary, or --warren), `warren-bench peer --system nats` \
        (with a nats-server started on a free loopback port) and `warren-bench peer --system zmq`. \
        All systems are started and warmed up first; then their rounds alternate:
          single    --singles candidates one at a time (each after the previous arrived): unloaded latency
          exchange  (--rounds) every ordered pair: 1 credentials + --candidates candidates (cunīcu's session start)
          flood     (--flood-rounds) --flood candidates written as fast as the peers take them
        Reported per system: time to complete an exchange (median), its delivery latency p50/p99 \
        over all rounds (write to the sender's stdin → line read from the recipient's stdout, one \
        monotonic clock), flood deliveries per second (median), and CPU time of the system's processes (incl. nats-server) per \
        delivered message. Exits 1 if a system did not deliver every message exactly once.
        nats-server comes from Debian's nats-server package: run ./bootstrap.
        """)

    enum System: String, CaseIterable, ExpressibleByArgument {
        case warren, warrenRouting = "warren-routing", nats, zmq
        var title: String {
            switch self {
            case .warren: "Warren overlay"
            case .warrenRouting: "Warren with routing"
            case .nats: "NATS (central server)"
            case .zmq: "raw ZeroMQ PUB/SUB"
            }
        }
    }

    @Option(help: "Peers (processes) per system.") var peers: Int = 16
    @Option(help: "Candidates each peer sends to each other peer in the exchange.") var candidates: Int = 4
    @Option(help: "Messages in the saturation phase (spread over all senders).") var flood: Int = 32_000
    @Option(help: "Messages sent one at a time (each after the previous arrived) for the unloaded latency.") var singles: Int = 300
    @Option(help: "Exchange rounds per system (interleaved across systems; latencies pooled, times' median reported).") var rounds: Int = 5
    @Option(help: "Flood rounds per system (interleaved; median msg/s reported).") var floodRounds: Int = 3
    @Option(help: "Systems to run, comma-separated: warren (flooding), warren-routing (the same nodes with --routing), nats, zmq.") var systems: String = "warren,nats,zmq"
    @Option(help: "Warren: minimum neighbours per node in the random topology.") var degree: Int = 3
    @Option(help: "Warren: topology seed.") var seed: UInt64 = 1
    @Option(help: "Seconds a phase may take before the missing messages are reported.") var timeout: Double = 120
    @Option(help: ArgumentHelp("Write summary.csv, latency-SYSTEM.csv and cdf-SYSTEM.csv to DIR.", valueName: "DIR")) var csv: String?
    @Option(help: ArgumentHelp("Write the exchange latency CDFs as a PNG (gnuplot), e.g. docs/plots/compare-cdf.png.", valueName: "FILE")) var plot: String?
    @Option(help: "The nats-server executable (default: found in PATH or /usr/sbin).") var natsServer: String?
    @Option(help: ArgumentHelp("Keep the peers' keys and stderr logs in DIR (default: a temporary directory, removed at the end).", valueName: "DIR")) var workDir: String?
    @Option(help: ArgumentHelp("The `warren` whose nodes are measured (default: the one beside warren-bench, else in PATH).", valueName: "PATH")) var warren: String?
    @Option(help: "Log level of the `warren node` processes (their stderr goes to the work directory).") var nodeLogLevel: String = "warning"

    func validate() throws {
        guard (2...128).contains(peers) else { throw ValidationError("--peers must be 2…128") }
        guard (0...64).contains(candidates) else { throw ValidationError("--candidates must be 0…64") }
        guard flood >= peers else { throw ValidationError("--flood must be at least --peers") }
        guard singles >= 1 else { throw ValidationError("--singles must be at least 1") }
        guard rounds >= 1, floodRounds >= 1 else { throw ValidationError("--rounds and --flood-rounds must be at least 1") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
        _ = try selectedSystems()
    }

    func selectedSystems() throws -> [System] {
        let list = systems.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
        return try list.map { s in
            guard let v = System(rawValue: s) else { throw ValidationError("--systems: unknown system \"\(s)\" (\(System.allCases.map(\.rawValue).joined(separator: ", ")))") }
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
        let warrenPath = chosen.contains(.warren) || chosen.contains(.warrenRouting) ? try warrenExecutable(warren) : ""
        ChildRegistry.installSignalHandlers(command: "compare")
        defer { ChildRegistry.terminateAll(grace: .seconds(3)) }

        let dir = workDir.map { URL(fileURLWithPath: $0) } ?? FileManager.default.temporaryDirectory.appending(path: "warren-compare-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { if workDir == nil { try? FileManager.default.removeItem(at: dir) } }

        // One workload for all systems: the same keys, the same lines.
        var workload = CompareWorkload(peers: peers)
        let warmups = (0..<3).map { _ in workload.exchange(candidates: 0, name: "warm-up") }
        let singlesPhase = workload.singles(total: singles)
        let exchanges = (0..<rounds).map { _ in workload.exchange(candidates: candidates) }
        let floods = (0..<floodRounds).map { _ in workload.flood(total: flood) }
        var keyFiles: [String] = []
        for (i, k) in workload.keys.enumerated() {
            let path = dir.appending(path: "peer\(i).key").path
            guard FileManager.default.createFile(atPath: path, contents: Data((k.base64 + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
                throw CompareError("cannot write \(path)")
            }
            keyFiles.append(path)
        }
        let sizes = try envelopeSizes(workload)
        let env = Setup(exe: ownExecutablePath(), warren: warrenPath, dir: dir.path, keyFiles: keyFiles, natsPath: natsPath)

        // Start every system (each warmed up), then interleave their rounds, so that a change
        // in the machine's background load hits all of them alike.
        var runs: [SystemRun] = []
        for sys in chosen {
            Output.error("compare: \(sys.title): starting \(peers) processes")
            let r = SystemRun(sys)
            do { try start(r, env: env, workload: workload, warmups: warmups) } catch {
                r.outcome.error = "\(error)"
                Output.error("compare: \(sys.title): \(error)")
                r.stop()
            }
            runs.append(r)
        }
        for phases in [[singlesPhase], exchanges, floods] {
            for (k, phase) in phases.enumerated() {
                for r in runs where r.outcome.error == nil {
                    let o = runPhase(phase, workload: workload, children: r.children, cpuPids: r.pids, serverPids: r.serverPids,
                                     counter: r.counter, timeout: timeout, label: "\(r.system.rawValue) \(phase.name) \(k + 1)/\(phases.count)")
                    if let why = o.stopReason {
                        Output.error("compare: \(r.system.title) \(phase.name) \(k + 1): \(why)")
                        if r.children.contains(where: { $0.exited }) { r.outcome.error = "a process died during \(phase.name) \(k + 1): \(why)"; r.stop() }
                    }
                    r.outcome.phases.append(o)
                    Output.error(String(format: "compare: %@ %@ %d/%d: %d/%d in %.3f s", r.system.title, phase.name, k + 1, phases.count,
                                        o.delivered, o.expected, o.elapsed))
                }
            }
        }
        for r in runs {
            for c in r.children { for (k, v) in c.state.withLock({ $0.downReasons }) { r.outcome.downReasons[k, default: 0] += v } }
            r.stop()
        }

        let results = runs.map { ($0.system, $0.outcome) }
        printReport(results, sizes: sizes, natsVersion: natsPath.flatMap(natsServerVersion))
        if let csv { try writeCSV(results, workload: workload, dir: csv) }
        if let plot { try plotCDF(results, dataDir: csv ?? dir.path, file: plot, workload: workload) }
        if results.contains(where: { !$0.1.passed(rounds: rounds, floodRounds: floodRounds) }) { throw ExitCode(1) }
    }

    struct Setup {
        /// This binary (the `peer` children) and the `warren` whose nodes are measured.
        let exe: String, warren: String, dir: String, keyFiles: [String], natsPath: String?
    }

    struct SystemOutcome {
        var phases: [PhaseOutcome] = []
        var error: String?
        var warnings: [String] = []
        var downReasons: [String: Int] = [:]   // Warren: peer-down events by reason, whole run
        var note = ""
        var exchanges: [PhaseOutcome] { phases.filter { $0.name == "exchange" } }
        var floods: [PhaseOutcome] { phases.filter { $0.name == "flood" } }
        var singles: [PhaseOutcome] { phases.filter { $0.name == "single" } }
        func passed(rounds: Int, floodRounds: Int) -> Bool {
            error == nil && singles.count == 1 && exchanges.count == rounds && floods.count == floodRounds && phases.allSatisfy(\.exactlyOnce)
        }
    }

    /// One system's running processes and what they delivered.
    final class SystemRun {
        let system: System
        var children: [LineChild] = []
        var server: pid_t?
        let counter = PhaseCounter()
        var outcome = SystemOutcome()
        init(_ s: System) { system = s }
        var pids: [pid_t] { children.map(\.pid) + serverPids }
        var serverPids: [pid_t] { server.map { [$0] } ?? [] }

        /// Stops every process of this system (SIGTERM, SIGKILL after 3 s).
        func stop() {
            for c in children { kill(c.pid, SIGTERM) }
            for c in children { c.stop(grace: .seconds(3)) }
            children = []
            if let server { kill(server, SIGTERM); ChildRegistry.reap([server], grace: .seconds(3)) }
            server = nil
        }
    }

    /// Starts one system's processes, waits until they are ready (and, for Warren, until the
    /// overlay has formed) and runs warm-up rounds until one delivers everything.
    func start(_ run: SystemRun, env: Setup, workload: CompareWorkload, warmups: [CompareWorkload.Phase]) throws {
        let sys = run.system
        let senders = workload.senderIndex
        let ports = try freeLoopbackPorts(peers + 1)
        // Warren's peers are the product's `warren node`; the others this binary's `peer`.
        let path = sys == .warren || sys == .warrenRouting ? env.warren : env.exe
        func start(_ i: Int, _ args: [String]) throws {
            run.children.append(try LineChild(name: "\(sys.rawValue)-\(i)", index: i, path: path, args: args,
                                              logPath: "\(env.dir)/\(sys.rawValue)-\(i).log", senders: senders, counter: run.counter))
        }
        var expectedNeighbours: [Int]?
        switch sys {
        case .warren, .warrenRouting:
            let edges = GossipOverlay.randomTopology(nodes: peers, degree: degree, seed: seed)
            var deg = [Int](repeating: 0, count: peers)
            for (a, b) in edges { deg[a] += 1; deg[b] += 1 }
            expectedNeighbours = deg
            run.outcome.note = "\(edges.count) links, degree ≥ \(min(degree, peers - 1)), seed \(seed)"
            for i in 0..<peers {
                // The harness reads every node's stdout on its own thread: a queue that never
                // fills keeps the comparison about the overlay (no stdout drops), and the
                // machine's control socket is left alone.
                var args = ["node", "--key-file", env.keyFiles[i], "--listen", "tcp://127.0.0.1:\(ports[i])",
                            "--degree", "0", "--log-level", nodeLogLevel, "--output-queue", "1000000", "--control", "none"]
                if sys == .warrenRouting { args.append("--routing") }
                for (a, b) in edges where b == i { args += ["--peer", "tcp://127.0.0.1:\(ports[a])"] }
                try start(i, args)
            }
        case .nats:
            let port = ports[peers]
            let log = "\(env.dir)/nats-server.log"
            let pid = try spawn(env.natsPath!, ["-a", "127.0.0.1", "-p", "\(port)"], stdin: nil, stdout: nil, errPath: log)
            ChildRegistry.live.withLock { $0[pid] = "nats-server" }
            run.server = pid
            try waitForNATS(port: port, pid: pid, log: log)
            for i in 0..<peers {
                try start(i, ["peer", "--system", "nats", "--key-file", env.keyFiles[i], "--nats", "127.0.0.1:\(port)"])
            }
        case .zmq:
            for i in 0..<peers {
                var args = ["peer", "--system", "zmq", "--key-file", env.keyFiles[i], "--listen", "tcp://127.0.0.1:\(ports[i])"]
                for j in 0..<peers where j != i { args += ["--peer", "tcp://127.0.0.1:\(ports[j])"] }
                try start(i, args)
            }
        }
        try waitUntil("every process is ready", children: run.children, timeout: 30) { _, s in s.ready != nil }
        if let want = expectedNeighbours {
            // A link that does not come up is reported, not fatal: the warm-up then shows whether
            // the overlay still reaches every peer.
            let late = try waitUntil("the overlay has formed (every node has its neighbours)", children: run.children, timeout: 30,
                                     throwOnTimeout: false, describe: { i, s in " (\(s.peersUp) of \(want[i]) neighbours up)" }) { i, s in
                s.peersUp >= want[i]
            }
            if !late.isEmpty {
                let w = "overlay not fully formed after 30 s: \(late.joined(separator: ", ")); measured on the links that are up"
                run.outcome.warnings.append(w)
                Output.error("compare: \(sys.title): \(w)")
            }
        }
        // Warm-up: until one round arrives complete (connections, caches, shared keys).
        for (r, w) in warmups.enumerated() {
            let o = runPhase(w, workload: workload, children: run.children, cpuPids: run.pids, counter: run.counter,
                             timeout: 10, stall: 5, label: "\(sys.rawValue) warm-up \(r + 1)")
            if o.delivered == o.expected { return }
            Output.error("compare: \(sys.title): warm-up round \(r + 1) delivered \(o.delivered)/\(o.expected)\(o.stopReason.map { " (\($0))" } ?? "")")
        }
        throw CompareError("no warm-up round delivered every message; not measuring")
    }
}
