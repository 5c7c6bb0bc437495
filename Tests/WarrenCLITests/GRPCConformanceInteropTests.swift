import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Warren
import WarrenTestSupport

/// `warren node --grpc` processes driven by tools/grpc-interop/conformance.py (Python's grpcio,
/// which, unlike grpc-swift, does not limit its streams before the server says so).
@Suite(.serialized, .timeLimit(.minutes(10)),
       .enabled(if: WarrenExecutable.url != nil, "warren executable not found (build it: swift build --product warren)"),
       .enabled(if: InteropPython.url != nil,
                "tools/grpc-interop/.venv with grpcio, grpcio-tools and PyNaCl not found: run ./bootstrap"))
struct GRPCConformanceInteropTests {
    typealias Child = NodeCommandTests.Child
    static let script = InteropPython.root.appending(path: "tools/grpc-interop/conformance.py")

    static func python(_ arguments: [String], in dir: URL) throws -> Child {
        try Child([script.path] + arguments, in: dir, name: "conformance", executable: InteropPython.url!)
    }

    static func grpcAddress(_ c: Child) -> String? {
        c.objects.first { $0["event"] as? String == "ready" }?["grpc"] as? String
    }

    /// Three nodes (a triangle), each serving the bridge; returns them and their gRPC addresses.
    static func withThreeNodes(in dir: URL, _ body: ([String]) async throws -> Void) async throws {
        var nodes: [Child] = [], endpoints: [String] = []
        defer { for n in nodes { n.forceKill() } }
        for i in 0..<3 {
            let k = try NodeCommandTests.writeKey(.generate(), "n\(i).key", in: dir)
            let (n, r, _) = try await NodeCommandTests.startNode("n\(i)", key: k, peers: endpoints,
                                                               extra: ["--grpc", "127.0.0.1:0"], in: dir)
            nodes.append(n)
            endpoints.append(try #require(r["endpoint"] as? String))
        }
        let formed = await NodeCommandTests.eventually(timeout: .seconds(20)) {
            nodes.allSatisfy { c in c.objects.filter { $0["event"] as? String == "peer-up" }.count >= 2 }
        }
        try #require(formed, "\(nodes.map { $0.stdout + $0.stderr })")
        try await body(nodes.map { grpcAddress($0)! })
        for n in nodes { kill(n.process.processIdentifier, SIGTERM) }
        for n in nodes { #expect(await n.waitExit(timeout: .seconds(15)) == 0, "\(n.name): \(n.stderr)") }
    }

    /// Runs the script to completion and returns its last JSON line.
    static func run(_ arguments: [String], in dir: URL, timeout: Duration) async throws -> [String: Any] {
        let py = try python(arguments, in: dir)
        defer { py.forceKill() }
        let status = await py.waitExit(timeout: timeout)
        #expect(status == 0, "conformance.py \(arguments.joined(separator: " ")): \(py.stdout)\(py.stderr)")
        let last = try #require(py.objects.last, "no output: \(py.stderr)")
        #expect(last["ok"] as? Bool == true, "\(last)")
        return last
    }

    /// 1,000 Subscribe streams and 1,000 concurrent Publish calls on one grpcio connection.
    @Test func thousandStreamsOnOneConnection() async throws {
        try await NodeCommandTests.withTempDir { dir in
            let k = try NodeCommandTests.writeKey(.generate(), "n.key", in: dir)
            let (n, _, _) = try await NodeCommandTests.startNode("n", key: k, peers: [], extra: ["--grpc", "127.0.0.1:0"], in: dir)
            defer { n.forceKill() }
            let address = try #require(Self.grpcAddress(n))
            let out = try await Self.run(["streams", "--bridge", address, "--streams", "1000"], in: dir, timeout: .seconds(480))
            #expect(out["published"] as? Int == 1000)
            kill(n.process.processIdentifier, SIGTERM)
            #expect(await n.waitExit(timeout: .seconds(15)) == 0, "\(n.stderr)")
        }
    }

    /// cunīcu's conformance procedure through three nodes' bridges, every peer on its own
    /// connection, each handler served within cunīcu's 1 s.
    @Test(arguments: [10, 64]) func conformanceThroughThreeNodes(peers: Int) async throws {
        try await NodeCommandTests.withTempDir { dir in
            try await Self.withThreeNodes(in: dir) { bridges in
                let out = try await Self.run(["exchange", "--bridges", bridges.joined(separator: ","), "--peers", "\(peers)"],
                                             in: dir, timeout: .seconds(300))
                #expect(out["handler_calls"] as? Int == 4 * peers * (peers - 1))
            }
        }
    }

    /// One client connection carrying 200 peers, all publishing at once.
    @Test func twoHundredPeersOnOneConnection() async throws {
        try await NodeCommandTests.withTempDir { dir in
            try await Self.withThreeNodes(in: dir) { bridges in
                let out = try await Self.run(["exchange", "--bridges", bridges[0], "--peers", "200",
                                              "--connections", "one", "--parallel"], in: dir, timeout: .seconds(480))
                #expect(out["handler_calls"] as? Int == 4 * 200 * 199)
            }
        }
    }

    /// SIGTERM of the node ends the stream with UNAVAILABLE; a client that subscribes again the
    /// way cunīcu's does (on anything but OK or CANCELLED) receives from the restarted node.
    @Test func gracefulStopThenResubscribe() async throws {
        try await NodeCommandTests.withTempDir { dir in
            let k = try NodeCommandTests.writeKey(.generate(), "n.key", in: dir)
            let port = try #require(NodeCommandTests.freePort())
            let grpc = ["--grpc", "127.0.0.1:\(port)"]
            let (n1, _, _) = try await NodeCommandTests.startNode("n1", key: k, peers: [], extra: grpc, in: dir)
            defer { n1.forceKill() }
            let py = try Self.python(["watch", "--bridge", "127.0.0.1:\(port)"], in: dir)
            defer { py.forceKill() }
            func events(_ e: String) -> [[String: Any]] { py.objects.filter { $0["event"] as? String == e } }
            #expect(await NodeCommandTests.eventually(timeout: .seconds(60)) { !events("live").isEmpty },
                    "\(py.stdout)\(py.stderr)")
            let key = try #require(events("live").first?["public_key"] as? String)

            kill(n1.process.processIdentifier, SIGTERM)
            #expect(await n1.waitExit(timeout: .seconds(15)) == 0, "\(n1.stderr)")
            #expect(await NodeCommandTests.eventually(timeout: .seconds(10)) { !events("ended").isEmpty })
            #expect(events("ended").first?["code"] as? String == "UNAVAILABLE", "\(py.stdout)")

            let (n2, _, _) = try await NodeCommandTests.startNode("n2", key: k, peers: [], extra: grpc, in: dir)
            defer { n2.forceKill() }
            #expect(await NodeCommandTests.eventually(timeout: .seconds(30)) { events("live").count >= 2 },
                    "\(py.stdout)\(py.stderr)")
            try n2.write("{\"to\":\"\(key)\",\"message\":{\"candidate\":{\"port\":4711}}}\n")
            #expect(await py.waitExit(timeout: .seconds(20)) == 0, "\(py.stdout)\(py.stderr)")
            let last = try #require(py.objects.last)
            #expect(last["ok"] as? Bool == true, "\(last)")
            #expect(((last["message"] as? [String: Any])?["candidate"] as? [String: Any])?["port"] as? Int == 4711, "\(last)")
            kill(n2.process.processIdentifier, SIGTERM)
            #expect(await n2.waitExit(timeout: .seconds(15)) == 0, "\(n2.stderr)")
        }
    }
}
