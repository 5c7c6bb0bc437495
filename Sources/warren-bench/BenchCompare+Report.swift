import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Warren
import WarrenCLI
import WarrenMeasure

extension CompareBench {
    /// Polls the children's states until `pred(index, state)` holds for all, or fails clearly
    /// (a child exited, or `timeout` seconds passed).
    /// With `throwOnTimeout: false` a timeout returns the late children (named and described)
    /// instead of throwing; a child that exits always throws.
    @discardableResult
    func waitUntil(_ what: String, children: [LineChild], timeout: Double, throwOnTimeout: Bool = true,
                   describe: (Int, ChildState) -> String = { _, _ in "" }, _ pred: (Int, ChildState) -> Bool) throws -> [String] {
        let start = monotonicNanos()
        while true {
            let done = children.enumerated().filter { i, c in c.state.withLock { pred(i, $0) } }.count
            if done == children.count { endProgress(); return [] }
            if let dead = children.first(where: { $0.exited }) {
                endProgress()
                throw CompareError("\(dead.name) exited while waiting until \(what):\n\(logTail(dead.logPath))")
            }
            if Double(monotonicNanos() - start) / 1e9 > timeout {
                endProgress()
                let late = children.enumerated().compactMap { i, c in
                    c.state.withLock { pred(i, $0) ? nil : c.name + describe(i, $0) }
                }
                if !throwOnTimeout { return late }
                throw CompareError("timed out after \(Int(timeout)) s waiting until \(what): \(late.joined(separator: ", ")) not there yet")
            }
            progressLine("  waiting until \(what): \(done)/\(children.count)")
            usleep(20_000)
        }
    }

    /// Waits until nats-server accepts connections on `port`.
    func waitForNATS(port: UInt16, pid: pid_t, log: String, timeout: Double = 10) throws {
        let start = monotonicNanos()
        while true {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                ChildRegistry.live.withLock { _ = $0.removeValue(forKey: pid) }
                throw CompareError("nats-server exited at start:\n\(logTail(log))")
            }
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
            }
            close(fd)
            if ok { return }
            if Double(monotonicNanos() - start) / 1e9 > timeout {
                throw CompareError("nats-server did not accept connections on 127.0.0.1:\(port) within \(Int(timeout)) s:\n\(logTail(log))")
            }
            usleep(20_000)
        }
    }

    /// Sizes on the wire of the exchange's first credentials and first candidate: sealed
    /// envelope (Warren, NATS) and sender key + protobuf (raw ZeroMQ).
    func envelopeSizes(_ w: CompareWorkload) throws -> (credentials: Int, candidate: Int, rawCredentials: Int, rawCandidate: Int) {
        func size(_ candidate: Bool) throws -> (Int, Int) {
            var m = typicalCredentials()
            if candidate {
                m = SignalingMessage()
                m.candidate.type = .host; m.candidate.networkType = .udp4; m.candidate.foundation = "f1200"
                m.candidate.component = 1; m.candidate.priority = 2_130_706_431; m.candidate.address = "10.0.1.1"; m.candidate.port = 40_000
            }
            let sealed = try EnvelopeCodec.shared.sealBytes(m, from: w.keys[0], to: w.keys[1].publicKey).count
            return (sealed, 32 + (try m.serializedBytes() as [UInt8]).count)
        }
        let (c, rc) = try size(false), (k, rk) = try size(true)
        return (c, k, rc, rk)
    }

    func printReport(_ results: [(System, SystemOutcome)], sizes: (credentials: Int, candidate: Int, rawCredentials: Int, rawCandidate: Int),
                     natsVersion: String?) {
        let exchangeCount = peers * (peers - 1) * (1 + candidates)
        Output.line("warren-bench compare — \(machineLine())")
        Output.line("  \(peers) peers, one process each; one at a time: \(singles) candidates, each sent after the previous arrived; exchange: every ordered pair sends 1 credentials + \(candidates) candidates (\(exchangeCount) messages), \(rounds) rounds; flood: \(flood) candidates, \(floodRounds) rounds; rounds alternate between systems")
        Output.line("  message sizes: sealed envelope \(sizes.credentials) B (credentials) / \(sizes.candidate) B (candidate) on Warren and NATS; raw ZeroMQ sends sender key + plain protobuf, \(sizes.rawCredentials) / \(sizes.rawCandidate) B")
        for (sys, o) in results {
            switch sys {
            case .warren: Output.line("  Warren: \(peers) × `warren node --degree 0`, fixed random topology (\(o.note)), flooding with de-dup and TTL")
            case .warrenRouting: Output.line("  Warren, routing: \(peers) × `warren node --degree 0 --routing`, the same topology (\(o.note)) and its routing contacts; unicast along a path, the flood as fallback")
            case .nats: Output.line("  NATS: nats-server \(natsVersion ?? "") + \(peers) × `warren-bench peer --system nats` (a subject per recipient, sealed envelopes)")
            case .zmq: Output.line("  raw ZeroMQ: \(peers) × `warren-bench peer --system zmq` (every SUB connected to every XPUB, topic = recipient key)")
            }
        }
        Output.line("")
        func cell(_ s: String, _ w: Int) -> String { s.count >= w ? s + " " : s.padding(toLength: w, withPad: " ", startingAt: 0) }
        func num(_ v: Double, _ f: String) -> String { v.isNaN ? "–" : String(format: f, v) }
        Output.line(cell("", 23) + cell("one at a time", 16) + cell("exchange", 10) + cell("exchange lat. µs", 18) + cell("flood", 9) + cell("CPU µs / deliv.", 17) + "delivered once")
        Output.line(cell("system", 23) + cell("p50 µs", 8) + cell("p99 µs", 8) + cell("time", 10) + cell("p50", 9) + cell("p99", 9) + cell("msg/s", 9) + cell("exch.", 8) + cell("flood", 9) + "single, exchange, flood")
        var failures: [String] = []
        for (sys, o) in results {
            let e = Summary(o.exchanges), f = Summary(o.floods), one = Summary(o.singles)
            if let err = o.error { failures.append("\(sys.title): \(err)") }
            guard e.rounds > 0, f.rounds > 0 else {
                Output.line(cell(sys.title, 23) + "did not run: \(o.error ?? "unknown error")")
                continue
            }
            Output.line(cell(sys.title, 23) + cell(num(one.percentile(0.5), "%.0f"), 8) + cell(num(one.percentile(0.99), "%.0f"), 8)
                        + cell(num(e.medianElapsed * 1000, "%.0f ms"), 10)
                        + cell(num(e.percentile(0.5), "%.0f"), 9) + cell(num(e.percentile(0.99), "%.0f"), 9)
                        + cell(num(f.medianRate, "%.0f"), 9)
                        + cell(num(e.cpuPerMessage * 1e6, "%.0f"), 8) + cell(num(f.cpuPerMessage * 1e6, "%.0f"), 9)
                        + "\(one.delivered)/\(one.expected), \(e.delivered)/\(e.expected), \(f.delivered)/\(f.expected)")
            for p in o.phases where !p.exactlyOnce {
                failures.append("\(sys.title) \(p.name): missing \(p.missing), duplicates \(p.duplicates), misrouted \(p.misrouted)"
                                + (p.peerDowns > 0 ? ", \(p.peerDowns) neighbour links went down during it" : "")
                                + (p.stopReason.map { " — \($0)" } ?? ""))
            }
        }
        Output.line("")
        for (sys, o) in results where !o.warnings.isEmpty {
            for w in o.warnings { Output.line("  ! \(sys.title): \(w)") }
        }
        for (sys, o) in results {
            let downs = o.phases.map(\.peerDowns).reduce(0, +)
            if downs > 0 {
                let why = o.downReasons.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
                Output.line("  ! \(sys.title): \(downs) neighbour links were reported down during the measured phases (reasons over the whole run: \(why))")
            }
        }
        for (sys, o) in results where o.phases.count > 0 {
            let e = Summary(o.exchanges), f = Summary(o.floods)
            Output.line(String(format: "  %@ — exchange time %.1f … %.1f ms, flood %.0f … %.0f msg/s over the rounds", sys.title,
                               e.minElapsed * 1000, e.maxElapsed * 1000, f.minRate, f.maxRate)
                        + (sys == .nats ? String(format: "; nats-server itself %.1f / %.1f µs CPU per message (exchange / flood)",
                                                 e.serverCPUPerMessage * 1e6, f.serverCPUPerMessage * 1e6) : ""))
        }
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let driverCPU = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        Output.line(String(format: "  the driver (this process: writing and reading every line, not counted above) used %.1f s CPU in all", driverCPU))
        Output.line("")
        Output.line("  one at a time: unloaded latency, write of a message → its delivery line read, through the same JSON pipes")
        Output.line("  exchange time: first write to a sender's stdin → last delivery read (median of the rounds); latency: each message's")
        Output.line("  write → its delivery line read, all rounds (both through the peers' JSON stdin/stdout, the same for every system);")
        Output.line("  flood: median of the rounds; CPU: utime+stime of the system's processes (incl. nats-server) during the phases,")
        Output.line("  from /proc/PID/stat, divided by the messages delivered in them; the driver's own CPU is not included")
        Output.line("")
        if failures.isEmpty {
            Output.line("PASS: every system delivered every message exactly once")
        } else {
            Output.line("FAIL:")
            for f in failures { Output.line("  ! \(f)") }
        }
    }

    func writeCSV(_ results: [(System, SystemOutcome)], workload: CompareWorkload, dir: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var summary = "system,phase,round,expected,delivered,missing,duplicates,misrouted,elapsed_s,msg_per_s,p50_us,p99_us,cpu_s,cpu_us_per_msg,server_cpu_s,peer_downs\n"
        for (sys, o) in results {
            var round: [String: Int] = [:]
            for p in o.phases {
                round[p.name, default: 0] += 1
                summary += [sys.rawValue, p.name, "\(round[p.name]!)", "\(p.expected)", "\(p.delivered)", "\(p.missing)", "\(p.duplicates)", "\(p.misrouted)",
                            String(format: "%.6f", p.elapsed), String(format: "%.1f", p.rate),
                            String(format: "%.1f", p.percentile(0.5)), String(format: "%.1f", p.percentile(0.99)),
                            String(format: "%.3f", p.cpu), String(format: "%.2f", p.cpuPerMessage * 1e6),
                            String(format: "%.3f", p.serverCPU), "\(p.peerDowns)"].joined(separator: ",") + "\n"
            }
            let e = o.exchanges
            guard !e.isEmpty else { continue }
            var samples = "round,id,from,to,kind,latency_us\n"
            for (r, p) in e.enumerated() {
                for (id, l) in zip(p.latencyIDs, p.latenciesUs) {
                    samples += "\(r + 1),\(id),\(workload.from[id]),\(workload.to[id]),\(workload.kinds[id] == 0 ? "credentials" : "candidate"),\(String(format: "%.1f", l))\n"
                }
            }
            try samples.write(toFile: "\(dir)/latency-\(sys.rawValue).csv", atomically: true, encoding: .utf8)
            for (name, phases) in [("cdf", e), ("cdf-single", o.singles)] {
                let sorted = Summary(phases).latencies.sorted()
                var cdf = "latency_us,fraction\n"
                for (k, l) in sorted.enumerated() { cdf += String(format: "%.1f,%.5f\n", l, Double(k + 1) / Double(sorted.count)) }
                try cdf.write(toFile: "\(dir)/\(name)-\(sys.rawValue).csv", atomically: true, encoding: .utf8)
            }
        }
        try summary.write(toFile: "\(dir)/summary.csv", atomically: true, encoding: .utf8)
        Output.error("compare: wrote \(dir)/summary.csv, latency-*.csv, cdf-*.csv")
    }

    /// The latency CDFs of every system, log-scale x, as a PNG via gnuplot: the exchange (solid)
    /// and one message at a time (dashed).
    func plotCDF(_ results: [(System, SystemOutcome)], dataDir: String, file: String, workload: CompareWorkload) throws {
        if csv == nil { try writeCSV(results, workload: workload, dir: dataDir) }
        let url = URL(fileURLWithPath: file)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        var plots: [String] = []
        for (k, (sys, o)) in results.enumerated() {
            let e = Summary(o.exchanges), one = Summary(o.singles)
            guard !e.latencies.isEmpty else { continue }
            let title = String(format: "%@, exchange (p50 %.1f ms, p99 %.1f ms)", sys.title, e.percentile(0.5) / 1000, e.percentile(0.99) / 1000)
            plots.append("\"\(dataDir)/cdf-\(sys.rawValue).csv\" using ($1/1000):2 every ::1 with lines linewidth 2 linecolor \(k + 1) title \"\(title)\"")
            guard !one.latencies.isEmpty else { continue }
            let t1 = String(format: "%@, one at a time (p50 %.2f ms, p99 %.2f ms)", sys.title, one.percentile(0.5) / 1000, one.percentile(0.99) / 1000)
            plots.append("\"\(dataDir)/cdf-single-\(sys.rawValue).csv\" using ($1/1000):2 every ::1 with lines linewidth 2 dashtype 2 linecolor \(k + 1) title \"\(t1)\"")
        }
        guard !plots.isEmpty else { throw CompareError("nothing to plot: no system completed the exchange") }
        let n = peers * (peers - 1) * (1 + candidates)
        let what = rounds > 1 ? "\(rounds) rounds of \(n) messages" : "\(n) messages"
        let script = """
        set datafile separator ","
        set terminal pngcairo size 1100,680 noenhanced font "sans,10"
        set output "\(url.path)"
        set title "Delivery latency, \(peers) peers, one process each\\nsolid: exchange, credentials + \(candidates) candidates per ordered pair (\(what)); dashed: \(singles) messages one at a time"
        set xlabel "write to the sender's stdin → delivery line read from the recipient (ms, log scale)"
        set ylabel "fraction of messages delivered"
        set logscale x
        set yrange [0:1.02]
        set grid
        set key outside below vertical maxrows 3 width -8
        plot \(plots.joined(separator: ", \\\n     "))

        """
        let scriptPath = "\(dataDir)/compare-cdf.gp"
        try script.write(toFile: scriptPath, atomically: true, encoding: .utf8)
        let log = "\(dataDir)/gnuplot.log"
        let pid = try spawn(findExecutable("gnuplot")!, [scriptPath], stdin: nil, stdout: nil, errPath: log)
        var status: Int32 = 0
        let start = monotonicNanos()
        while waitpid(pid, &status, WNOHANG) != pid {
            if Double(monotonicNanos() - start) / 1e9 > 30 { kill(pid, SIGKILL); waitpid(pid, &status, 0); throw CompareError("gnuplot did not finish within 30 s") }
            usleep(20_000)
        }
        guard status == 0 else { throw CompareError("gnuplot failed (status \(status)):\n\(logTail(log))") }
        Output.error("compare: wrote \(url.path)")
    }
}

/// `nats-server --version`, e.g. "v2.9.10".
func natsServerVersion(_ path: String) -> String? {
    let out = FileManager.default.temporaryDirectory.appending(path: "warren-nats-version-\(getpid())").path
    defer { unlink(out) }
    let fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    guard let pid = try? spawn(path, ["--version"], stdin: nil, stdout: fd, errPath: "/dev/null") else { return nil }
    ChildRegistry.reap([pid], grace: .seconds(5))
    let s = (try? String(contentsOfFile: out, encoding: .utf8)) ?? ""
    return s.split(separator: " ").last.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
}

/// One system's rounds of one phase, taken together.
struct Summary {
    let rounds: Int
    let latencies: [Double]
    let medianElapsed, minElapsed, maxElapsed: Double
    let medianRate, minRate, maxRate: Double
    let delivered, expected: Int
    let cpuPerMessage, serverCPUPerMessage: Double

    init(_ phases: [PhaseOutcome]) {
        rounds = phases.count
        latencies = phases.flatMap(\.latenciesUs)
        let el = phases.map(\.elapsed), rt = phases.map(\.rate)
        medianElapsed = el.isEmpty ? .nan : median(el); minElapsed = el.min() ?? .nan; maxElapsed = el.max() ?? .nan
        medianRate = rt.isEmpty ? .nan : median(rt); minRate = rt.min() ?? .nan; maxRate = rt.max() ?? .nan
        delivered = phases.map(\.delivered).reduce(0, +)
        expected = phases.map(\.expected).reduce(0, +)
        cpuPerMessage = delivered > 0 ? phases.map(\.cpu).reduce(0, +) / Double(delivered) : .nan
        serverCPUPerMessage = delivered > 0 ? phases.map(\.serverCPU).reduce(0, +) / Double(delivered) : .nan
    }

    func percentile(_ q: Double) -> Double { WarrenMeasure.percentile(latencies, q) }
}
