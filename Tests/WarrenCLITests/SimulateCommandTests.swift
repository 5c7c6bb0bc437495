import Foundation
import Testing
import WarrenTestSupport

/// `warren simulate` from the command line: `--threads` changes only the real time, and bad
/// input is refused with a message that names the option.
@Suite(.serialized, .timeLimit(.minutes(2))) struct SimulateCommandTests {
    /// `runBlocking` on a thread of its own: the child's wait must not hold one of the
    /// cooperative pool's two threads (it stalled other suites' tests in CI).
    static func run(_ args: [String]) async throws -> (status: Int32, out: String, err: String) {
        try await onOwnThread { try runBlocking(args) }
    }

    static func runBlocking(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
        let p = ChildProcess()
        p.executableURL = WarrenExecutable.url!
        p.arguments = ["simulate"] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }

    @Test(.enabled(if: WarrenExecutable.url != nil, "the warren executable was not found next to the tests"))
    func threadsChangeOnlyTheRealTime() async throws {
        let args = ["--nodes", "120", "--messages", "40", "--loss", "0.02", "--seed", "9"]
        let one = try await Self.run(args + ["--threads", "1"])
        let two = try await Self.run(args + ["--threads", "2"])
        #expect(one.status == 0 && two.status == 0)
        let body = { (s: String) in s.split(separator: "\n").filter { !$0.hasPrefix("real time:") } }
        #expect(body(one.out) == body(two.out))
        #expect(one.out.contains("ratio 1.0000"))
        // On a busy machine the two threads may fall back to one for a while; the CLI says so.
        #expect(one.out.contains("(1 thread)") && two.out.contains("(2 threads"))
    }

    @Test(.enabled(if: WarrenExecutable.url != nil, "the warren executable was not found next to the tests"))
    func badThreadsRefused() async throws {
        for bad in ["0", "65"] {
            let r = try await Self.run(["--nodes", "10", "--threads", bad])
            #expect(r.status != 0)
            #expect(r.err.contains("--threads must be 1…64"))
        }
    }

    /// Values that leave nothing to simulate, or contradict their own message, are refused with
    /// the rule; their neighbours that make sense run.
    @Test(.enabled(if: WarrenExecutable.url != nil, "the warren executable was not found next to the tests"))
    func badValuesNameTheirRule() async throws {
        let refused: [([String], String)] = [
            (["--nodes", "1", "--messages", "5"], "--messages needs --nodes ≥ 2"),
            (["--nodes", "10", "--churn", "100"], "below 100"),
            (["--nodes", "10", "--loss", "1.5"], "--loss"),
            (["--nodes", "0"], "--nodes must be ≥ 1"),
            (["--nodes", "10", "--routing-settle", "5"], "need --routing"),
            (["--nodes", "10", "--routing-bucket-size", "2"], "need --routing"),
            (["--nodes", "10", "--routing", "--routing-bucket-size", "0"], "--routing-bucket-size must be 1…64"),
            (["--nodes", "10", "--routing", "--routing-settle=-1"], "--routing-settle must be 0…3600"),
            (["--nodes", "10", "--routing", "--routing-settle", "nan"], "--routing-settle must be 0…3600"),
            (["--nodes", "10", "--kill", "1"], "--kill must be above 0 and below 1"),
            (["--nodes", "10", "--kill", "0"], "--kill must be above 0 and below 1"),
            (["--nodes", "10", "--kill", "nan"], "--kill must be above 0 and below 1"),
            (["--nodes", "10", "--partition", "0"], "--partition must be above 0"),
            (["--nodes", "10", "--partition", "inf"], "--partition must be above 0"),
            (["--nodes", "10", "--fault-at", "0.5"], "--fault-at needs --kill or --partition"),
            (["--nodes", "10", "--kill", "0.5", "--fault-at", "1"], "--fault-at must be above 0 and below 1"),
            (["--nodes", "10", "--kill", "0.5", "--partition", "5"], "one fault each"),
            (["--nodes", "10", "--messages", "0", "--kill", "0.5"], "need --messages > 0"),
            (["--nodes", "10", "--kill", "0.01"], "kills no node"),
            (["--nodes", "10", "--kill", "0.95"], "leaves fewer than 2 nodes"),
            // 100 messages × 20 ms: a 2-s stream, the cut from 0.66 s.
            (["--nodes", "10", "--messages", "100", "--partition", "5"], "does not end before the stream"),
        ]
        for (args, needle) in refused {
            let r = try await Self.run(args)
            #expect(r.status == 64, "\(args): \(r.status) \(r.err)")
            #expect(r.err.contains(needle), "\(args): \(r.err)")
        }
        // Nothing ever reachable: no RMR to report (it was printed as −1.000).
        let cut = try await Self.run(["--nodes", "5", "--messages", "3", "--loss", "1"])
        #expect(cut.status == 0 && cut.out.contains("RMR n/a") && !cut.out.contains("RMR -1"), "\(cut.out)")
        let one = try await Self.run(["--nodes", "1", "--messages", "0"])
        #expect(one.status == 0, "\(one.err)")
        let nearly = try await Self.run(["--nodes", "10", "--messages", "5", "--churn", "99.9"])
        #expect(nearly.status == 0, "\(nearly.err)")
        let routed = try await Self.run(["--nodes", "20", "--messages", "3", "--routing", "--routing-settle", "2", "--routing-bucket-size", "1"])
        #expect(routed.status == 0 && routed.out.contains("frames per delivered unicast"), "\(routed.err)")
    }

    /// A kill and a partition from the command line: the report says what happened and how the
    /// overlay recovered, the same with one and two threads.
    @Test(.enabled(if: WarrenExecutable.url != nil, "the warren executable was not found next to the tests"))
    func faultsReportedTheSameOnAnyThreads() async throws {
        let body = { (s: String) in s.split(separator: "\n").filter { !$0.hasPrefix("real time:") } }
        let kill = ["--nodes", "80", "--messages", "200", "--interval-ms", "100", "--kill", "0.5", "--seed", "3"]
        let k1 = try await Self.run(kill + ["--threads", "1"]), k2 = try await Self.run(kill + ["--threads", "2"])
        #expect(k1.status == 0 && k2.status == 0, "\(k1.err)")
        #expect(body(k1.out) == body(k2.out))
        #expect(k1.out.contains("fault: kill 40 of 80 nodes at once at 6600.000 ms"), "\(k1.out)")
        #expect(k1.out.contains("overlay at the end: 1 component of the live overlay, largest 40 of 40 live nodes"), "\(k1.out)")
        let cut = ["--nodes", "80", "--messages", "200", "--interval-ms", "100", "--partition", "8", "--fault-at", "0.25", "--seed", "3"]
        let p1 = try await Self.run(cut + ["--threads", "1"]), p2 = try await Self.run(cut + ["--threads", "2"])
        #expect(p1.status == 0 && p2.status == 0, "\(p1.err)")
        #expect(body(p1.out) == body(p2.out))
        #expect(p1.out.contains("fault: partition into two halves from 5000.000 ms to 13000.000 ms of the stream"), "\(p1.out)")
        #expect(p1.out.contains("components just before the heal: 2"), "\(p1.out)")
    }
}
