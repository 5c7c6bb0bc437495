import Foundation
import Testing
import WarrenTestSupport

/// A raw hostile neighbour over real ZeroMQ: tools/hostile/hostile.py (pyzmq, written from
/// docs/PROTOCOL.md) joins a victim `warren node` whose three honest neighbours reach each other
/// only through it, attacks for a few seconds while all pairs exchange messages, and reports.
/// Each attack must leave the victim up, every honest message delivered exactly once during and
/// after it, the victim's descriptors below baseline + 256 and its RSS below baseline + 96 MiB,
/// and the counter that shows the defence risen.
@Suite(.serialized, .timeLimit(.minutes(3)),
       .enabled(if: WarrenExecutable.url != nil, "warren executable not found (build it: swift build --product warren)"),
       .enabled(if: HostilePython.url != nil, "tools/hostile/.venv with pyzmq not found: run ./bootstrap"))
struct HostileNeighbourProcessTests {
    /// `mesh`: the honest nodes also know each other, so every message reaches every node
    /// several times and exactly-once rests on the de-dup cache under the flood.
    @Test(arguments: [
        ("bye", "forged", false), ("selfhello", "forged", false), ("helloflood", "dials_deferred", false),
        ("batch", "penalized", false), ("relayflood", "over_share", false), ("relayflood", "over_share", true),
    ])
    func victimHolds(attack: String, counter: String, mesh: Bool) async throws {
        // On a thread of its own: the attack's seconds must not hold one of the cooperative
        // pool's two threads (it stalled other suites' tests in CI).
        let r = try await onOwnThread { HostilePython.Report(try HostilePython.run(attack: attack, duration: 4, mesh: mesh)) }.json
        #expect(r["ok"] as? Bool == true, "\(r)")
        #expect(r["victim_alive"] as? Bool == true)
        for phase in ["honest_during", "honest_after"] {
            let h = try #require(r[phase] as? [String: Any], "\(r)")
            #expect((h["expected"] as? Int ?? 0) > 0 && h["once"] as? Int == h["expected"] as? Int, "\(phase): \(h)")
        }
        let counters = try #require(r["victim_counters"] as? [String: Any], "\(r)")
        #expect((counters[counter] as? Int ?? 0) > 0, "\(counter) did not rise: \(counters)")
        #expect((r["honest_rate_limited"] as? [Int?] ?? []).allSatisfy { ($0 ?? 0) == 0 }, "\(r)")
    }
}

/// The harness's Python (tools/hostile/.venv, made by ./bootstrap).
enum HostilePython {
    /// A parsed report handed from the thread that ran the attack to the test.
    // @unchecked: made once on that thread and only read after the hand-over.
    struct Report: @unchecked Sendable {
        let json: [String: Any]
        init(_ json: [String: Any]) { self.json = json }
    }

    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let script = root.appending(path: "tools/hostile/hostile.py")

    static let url: URL? = {
        let python = root.appending(path: "tools/hostile/.venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python.path) else { return nil }
        let p = ChildProcess()
        p.executableURL = python
        p.arguments = ["-c", "import zmq"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        p.waitUntilExit()
        return p.terminationStatus == 0 ? python : nil
    }()

    /// Runs one attack; returns the harness's JSON report.
    static func run(attack: String, duration: Double, mesh: Bool = false) throws -> [String: Any] {
        let p = ChildProcess()
        p.executableURL = url!
        p.arguments = [script.path, "--warren", WarrenExecutable.url!.path, "--attack", attack, "--duration", String(duration)]
            + (mesh ? ["--mesh"] : [])
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let o = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        return try #require(o, "no report: \(String(decoding: data, as: UTF8.self))")
    }
}
