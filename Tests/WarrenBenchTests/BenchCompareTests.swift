import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import WarrenTestSupport

/// `warren-bench compare` through the built executable: a small run over all three systems
/// (Warren's overlay, nats-server, raw ZeroMQ) must deliver every message exactly once on each.
@Suite(.serialized, .timeLimit(.minutes(5)),
       .enabled(if: WarrenBenchExecutable.url != nil && WarrenExecutable.url != nil,
                "warren-bench or warren executable not found next to the test bundle (build them: swift build)"))
struct BenchCompareTests {
    static let natsServer: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for d in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/local/sbin", "/usr/local/bin"]
        where access("\(d)/nats-server", X_OK) == 0 { return "\(d)/nats-server" }
        return nil
    }()

    struct Run { var status: Int32?; var stdout: String; var stderr: String }

    /// Runs `warren-bench args…` to completion; SIGKILL (status nil) after `timeout` seconds.
    /// `warrenBenchBlocking` on a thread of its own: a wait of minutes for a child must not hold
    /// one of the cooperative pool's two threads (it stalled other suites' tests in CI).
    static func warrenBench(_ args: [String], timeout: Double) async throws -> Run {
        try await onOwnThread { try warrenBenchBlocking(args, timeout: timeout) }
    }

    static func warrenBenchBlocking(_ args: [String], timeout: Double) throws -> Run {
        let dir = FileManager.default.temporaryDirectory.appending(path: "warren-compare-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let outURL = dir.appending(path: "out"), errURL = dir.appending(path: "err")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        defer { try? out.close(); try? err.close() }
        let p = ChildProcess()
        p.executableURL = WarrenBenchExecutable.url!
        p.arguments = args
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning && Date() < deadline { usleep(50_000) }
        var status: Int32?
        if p.isRunning {
            // SIGINT first: the bench must stop its children itself.
            kill(p.processIdentifier, SIGINT)
            usleep(3_000_000)
            if p.isRunning { kill(p.processIdentifier, SIGKILL) }
            p.waitUntilExit()
        } else {
            status = p.terminationStatus
        }
        return Run(status: status,
                   stdout: (try? String(contentsOf: outURL, encoding: .utf8)) ?? "",
                   stderr: (try? String(contentsOf: errURL, encoding: .utf8)) ?? "")
    }

    @Test(.enabled(if: natsServer != nil, "nats-server is not installed (run ./bootstrap): the three-system comparison is skipped"))
    func everyMessageExactlyOnceOnAllThreeSystems() async throws {
        let csv = FileManager.default.temporaryDirectory.appending(path: "warren-compare-csv-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: csv) }
        let peers = 4, candidates = 4, flood = 480, rounds = 2
        let r = try await Self.warrenBench(["compare", "--peers", "\(peers)", "--candidates", "\(candidates)", "--rounds", "\(rounds)",
                                      "--flood", "\(flood)", "--flood-rounds", "1", "--singles", "20", "--csv", csv.path, "--timeout", "60"], timeout: 240)
        #expect(r.status == 0, "bench compare exited \(r.status.map(String.init) ?? "only when killed"):\n\(r.stdout)\n\(r.stderr.suffix(3000))")
        #expect(r.stdout.contains("PASS"), "\(r.stdout)")

        let text = (try? String(contentsOf: csv.appending(path: "summary.csv"), encoding: .utf8)) ?? ""
        let rows = text.split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
        guard let header = rows.first else { Issue.record("no summary.csv written:\n\(r.stderr.suffix(2000))"); return }
        func col(_ name: String) -> Int { header.firstIndex(of: name) ?? -1 }
        var seen: [String: Int] = [:]
        for row in rows.dropFirst() where row.count == header.count {
            let system = row[col("system")], phase = row[col("phase")]
            seen["\(system)/\(phase)", default: 0] += 1
            let expected = phase == "exchange" ? peers * (peers - 1) * (1 + candidates) : phase == "single" ? 20 : flood
            #expect(Int(row[col("expected")]) == expected, "\(system) \(phase): expected column \(row[col("expected")])")
            #expect(Int(row[col("delivered")]) == expected, "\(system) \(phase): delivered \(row[col("delivered")]) of \(expected)")
            #expect(row[col("missing")] == "0", "\(system) \(phase): missing \(row[col("missing")])")
            #expect(row[col("duplicates")] == "0", "\(system) \(phase): duplicates \(row[col("duplicates")])")
            #expect(row[col("misrouted")] == "0", "\(system) \(phase): misrouted \(row[col("misrouted")])")
        }
        #expect(seen == ["warren/single": 1, "warren/exchange": rounds, "warren/flood": 1,
                         "nats/single": 1, "nats/exchange": rounds, "nats/flood": 1,
                         "zmq/single": 1, "zmq/exchange": rounds, "zmq/flood": 1], "summary.csv rows: \(seen)")
        // Every exchange latency sample is there, one per message and round.
        for system in ["warren", "nats", "zmq"] {
            let samples = (try? String(contentsOf: csv.appending(path: "latency-\(system).csv"), encoding: .utf8)) ?? ""
            #expect(samples.split(separator: "\n").count == 1 + rounds * peers * (peers - 1) * (1 + candidates), "latency-\(system).csv")
        }
        // No child process is left behind.
        #expect(!Self.childrenOfDeadBenchRunning(), "a warren node / bench peer / nats-server outlived the bench")
    }

    /// Warren's nodes with unicast routing beside the same nodes flooding: both deliver every
    /// message exactly once, and the report and summary.csv name both.
    @Test func warrenWithRoutingBesideFlooding() async throws {
        let csv = FileManager.default.temporaryDirectory.appending(path: "warren-compare-csv-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: csv) }
        let r = try await Self.warrenBench(["compare", "--systems", "warren,warren-routing", "--peers", "6", "--rounds", "1",
                                      "--flood", "600", "--flood-rounds", "1", "--singles", "20", "--csv", csv.path, "--timeout", "60"], timeout: 240)
        #expect(r.status == 0, "bench compare exited \(r.status.map(String.init) ?? "only when killed"):\n\(r.stdout)\n\(r.stderr.suffix(3000))")
        #expect(r.stdout.contains("Warren with routing") && r.stdout.contains("--routing"), "\(r.stdout)")
        let text = (try? String(contentsOf: csv.appending(path: "summary.csv"), encoding: .utf8)) ?? ""
        #expect(text.contains("\nwarren-routing,exchange,") && text.contains("\nwarren,exchange,"), "summary.csv: \(text)")
        #expect(!Self.childrenOfDeadBenchRunning(), "a warren node outlived the bench")
    }

    @Test func unknownSystemNamesTheKnownOnes() async throws {
        let r = try await Self.warrenBench(["compare", "--systems", "warren,routing"], timeout: 30)
        #expect(r.status == 64, "status \(String(describing: r.status)), stderr: \(r.stderr)")
        #expect(r.stderr.contains("unknown system \"routing\"") && r.stderr.contains("warren-routing"), "stderr: \(r.stderr)")
    }

    @Test func missingNATSServerSaysRunBootstrap() async throws {
        let r = try await Self.warrenBench(["compare", "--systems", "nats", "--nats-server", "/nonexistent/nats-server"], timeout: 30)
        #expect(r.status != 0 && r.status != nil)
        #expect(r.stderr.contains("./bootstrap"), "stderr: \(r.stderr)")
    }

    /// `relay` with a window above the publish queue's bound (65,536): a publish the full queue
    /// refuses is retried, not lost. On each line every envelope missing at B is a counted
    /// high-water-mark drop (before the retry, the refused ones went missing uncounted: `relay
    /// --window 100000` lost 103,667 of 600,000 batched envelopes with 0 HWM drops).
    @Test func relayWindowAboveThePublishQueueLosesNothingUncounted() async throws {
        let r = try await Self.warrenBench(["relay", "--count", "100000", "--window", "100000", "--rounds", "1"], timeout: 240)
        #expect(r.status == 0, "status \(String(describing: r.status)), stderr: \(r.stderr)")
        let lines = r.stdout.split(separator: "\n").filter { $0.contains("Warren A → R → B:") || $0.contains("--no-batch (reference):") }
        #expect(lines.count == 2, "stdout: \(r.stdout)")
        // A link of a line that timed out (its node's thread busy with the queued publishes, the
        // machine loaded) would lose what was sent meanwhile: none may.
        #expect(!r.stdout.contains("declared down"), "stdout: \(r.stdout)")
        for line in lines {
            let lost = try #require(line.firstMatch(of: /lost (\d+)/)).1, drops = try #require(line.firstMatch(of: /HWM drops (\d+)/)).1
            #expect(lost == drops, "every loss is a counted drop: \(line)")
        }
    }

    /// Counts that leave nothing to measure are refused with the option's name (rc 64, the usage
    /// error), never a crash or a line of NaNs.
    @Test(arguments: [
        ["latency", "--samples", "0"], ["relay", "--count", "0"], ["relay", "--window", "0"],
        ["relay", "--rounds", "0"], ["crypto", "--rounds", "0"], ["crypto", "--cached", "0"],
        ["seen", "--rounds", "0"], ["soak", "--warmup", "60", "--duration", "60"],
    ])
    func emptyMeasurementsAreRefused(_ args: [String]) async throws {
        let r = try await Self.warrenBench(args, timeout: 30)
        #expect(r.status == 64, "\(args): status \(String(describing: r.status)), stderr: \(r.stderr)")
        #expect(r.stderr.contains("must be"), "stderr: \(r.stderr)")
        #expect(!r.stdout.contains("nan"), "stdout: \(r.stdout)")
    }

    /// True if a process whose parent is gone (re-parented to init) is one of the bench's children.
    static func childrenOfDeadBenchRunning() -> Bool {
        guard let pids = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return false }
        for p in pids where Int32(p) != nil {
            guard let cmd = try? String(contentsOfFile: "/proc/\(p)/cmdline", encoding: .utf8) else { continue }
            let args = cmd.split(separator: "\0")
            let ours = args.contains("peer") && args.contains("--system") && args.contains { $0.contains("warren-compare-") }
                || args.contains("node") && args.contains { $0.contains("warren-compare-") }
            if ours { return true }
        }
        return false
    }
}
