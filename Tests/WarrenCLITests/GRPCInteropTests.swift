import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import Warren
import WarrenConformance
import WarrenTestSupport

/// `warren node --grpc` processes driven by an independent gRPC implementation: Python's grpcio
/// with code generated from Proto/ at run time, sealing with PyNaCl (tools/grpc-interop/).
@Suite(.serialized, .timeLimit(.minutes(2)),
       .enabled(if: WarrenExecutable.url != nil, "warren executable not found (build it: swift build --product warren)"),
       .enabled(if: InteropPython.url != nil,
                "tools/grpc-interop/.venv with grpcio, grpcio-tools and PyNaCl not found: run ./bootstrap"))
struct GRPCInteropTests {
    typealias Child = NodeCommandTests.Child

    @Test func pythonClientThroughTwoNodesBridges() async throws {
        try await NodeCommandTests.withTempDir { dir in
            let k1 = try NodeCommandTests.writeKey(.generate(), "n1.key", in: dir)
            let k2 = try NodeCommandTests.writeKey(.generate(), "n2.key", in: dir)
            let (n1, r1, _) = try await NodeCommandTests.startNode("n1", key: k1, peers: [], extra: ["--grpc", "127.0.0.1:0"], in: dir)
            defer { n1.forceKill() }
            let e1 = try #require(r1["endpoint"] as? String)
            let (n2, _, _) = try await NodeCommandTests.startNode("n2", key: k2, peers: [e1], extra: ["--grpc", "127.0.0.1:0"], in: dir)
            defer { n2.forceKill() }
            func grpcAddress(_ c: Child) -> String? {
                c.objects.first { $0["event"] as? String == "ready" }?["grpc"] as? String
            }
            func peerUp(_ c: Child) -> Bool { c.objects.contains { $0["event"] as? String == "peer-up" } }
            #expect(await NodeCommandTests.eventually(timeout: .seconds(20)) { peerUp(n1) && peerUp(n2) },
                    "n1: \(n1.stdout)\(n1.stderr)\nn2: \(n2.stdout)\(n2.stderr)")
            let a1 = try #require(grpcAddress(n1)), a2 = try #require(grpcAddress(n2))

            // A Swift peer on node 2's bridge, through the grpc:// backend.
            let swiftKey = PrivateKey.generate()
            let swift = try await Backends.make(url: "grpc://\(a2)?insecure=true")
            let fromPython = RecordingHandler()
            try await swift.subscribe(KeyPair(ours: swiftKey, theirs: .zero), fromPython)

            let py = try InteropPython.start(["--a", a1, "--b", a2, "--swift-peer", swiftKey.publicKey.base64], in: dir)
            defer { py.forceKill() }
            #expect(await NodeCommandTests.eventually(timeout: .seconds(60)) { py.subscribedKey != nil || !py.process.isRunning },
                    "python: \(py.stdout)\(py.stderr)")
            let pythonKey = try Key(base64: try #require(py.subscribedKey, "python: \(py.stdout)\(py.stderr)"))
            try await swift.publish(KeyPair(ours: swiftKey, theirs: pythonKey), Conformance.candidate(id: 77))
            #expect(await Conformance.eventually(timeout: .seconds(20)) { fromPython.count == 1 })
            #expect(fromPython.receipts(PublicKeyPair(ours: swiftKey.publicKey, theirs: pythonKey)).map(\.id) == [78],
                    "Python answered port + 1, sealed with PyNaCl and opened by the Swift codec")
            #expect(await NodeCommandTests.eventually(timeout: .seconds(20)) { !py.process.isRunning })
            #expect(!py.process.isRunning && py.process.terminationStatus == 0, "python: \(py.stdout)\(py.stderr)")  // no trap while it runs
            #expect(py.stdout.contains("\"ok\": true"), "python: \(py.stdout)\(py.stderr)")
            try await swift.close()

            for n in [n1, n2] { kill(n.process.processIdentifier, SIGTERM) }
            #expect(await n1.waitExit(timeout: .seconds(10)) == 0, "n1: \(n1.stderr)")
            #expect(await n2.waitExit(timeout: .seconds(10)) == 0, "n2: \(n2.stderr)")
        }
    }

    @Test func nodeRefusesPlaintextBridgeOnPublicAddress() async throws {
        try await NodeCommandTests.withTempDir { dir in
            let k = try NodeCommandTests.writeKey(.generate(), "n.key", in: dir)
            let r = try await NodeCommandTests.run(["node", "--key-file", k, "--listen", "tcp://127.0.0.1:0",
                                                    "--grpc", "0.0.0.0:0"], in: dir)
            #expect(r.status != 0)
            #expect(r.stderr.contains("plain-text"), "\(r.stderr)")
            let r2 = try await NodeCommandTests.run(["node", "--key-file", k, "--listen", "tcp://127.0.0.1:0",
                                                     "--grpc", "127.0.0.1:0", "--grpc-tls", "/nonexistent.pem"], in: dir)
            #expect(r2.status != 0)
            #expect(r2.stderr.contains("--grpc-tls takes two files"), "\(r2.stderr)")
        }
    }
}

/// The interop script's Python (tools/grpc-interop/.venv, made by ./bootstrap).
enum InteropPython {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let script = root.appending(path: "tools/grpc-interop/interop.py")

    static let url: URL? = {
        let python = root.appending(path: "tools/grpc-interop/.venv/bin/python")
        guard FileManager.default.isExecutableFile(atPath: python.path) else { return nil }
        let p = ChildProcess()
        p.executableURL = python
        p.arguments = ["-c", "import grpc, grpc_tools, nacl"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        p.waitUntilExit()
        return p.terminationStatus == 0 ? python : nil
    }()

    static func start(_ arguments: [String], in dir: URL) throws -> NodeCommandTests.Child {
        try NodeCommandTests.Child([script.path] + arguments, in: dir, name: "interop", executable: url!)
    }
}

extension NodeCommandTests.Child {
    /// The public key the script subscribed, once it printed {"event":"subscribed",…}.
    var subscribedKey: String? {
        objects.first { $0["event"] as? String == "subscribed" }?["public_key_a"] as? String
    }
}
