import Foundation
import Testing
import WarrenTestSupport

/// `warren node --metrics` serves Prometheus text and a /status table; `warren status` reads it.
@Suite(.serialized) struct MetricsCommandTests {
    func run(_ args: [String], stdout: URL) throws -> ChildProcess {
        let p = ChildProcess()
        p.executableURL = WarrenExecutable.url!
        p.arguments = args
        _ = FileManager.default.createFile(atPath: stdout.path, contents: nil)
        p.standardOutput = try FileHandle(forWritingTo: stdout)
        p.standardError = FileHandle.nullDevice
        p.standardInput = Pipe()
        try p.run()
        return p
    }

    func readyLine(_ url: URL) async -> [String: Any]? {
        for _ in 0..<200 {
            if let line = (try? String(contentsOf: url, encoding: .utf8))?.split(separator: "\n").first,
               let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] { return obj }
            try? await Task.sleep(for: .milliseconds(25))
        }
        return nil
    }

    func output(_ args: [String]) throws -> (Int32, String) {
        let p = ChildProcess()
        p.executableURL = WarrenExecutable.url!
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test(.enabled(if: WarrenExecutable.url != nil, "the warren executable was not found next to the tests"))
    func metricsAndStatus() async throws {
        let dir = URL(fileURLWithPath: NSTemporaryDirectory()).appending(path: "warren-metrics-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let (_, keyA) = try output(["genkey"]), (_, keyB) = try output(["genkey"])
        for (n, k) in [("a", keyA), ("b", keyB)] {
            try k.write(to: dir.appending(path: "\(n).key"), atomically: true, encoding: .utf8)
            chmod(dir.appending(path: "\(n).key").path, 0o600)
        }
        let a = try run(["node", "--key-file", dir.appending(path: "a.key").path, "--listen", "tcp://127.0.0.1:*",
                         "--metrics", "127.0.0.1:0", "--control", "none"], stdout: dir.appending(path: "a.out"))
        defer { if a.isRunning { a.terminate() } }
        let readyA = try #require(await readyLine(dir.appending(path: "a.out")))
        let endpoint = try #require(readyA["endpoint"] as? String)
        let metrics = try #require(readyA["metrics"] as? String)
        let b = try run(["node", "--key-file", dir.appending(path: "b.key").path, "--listen", "tcp://127.0.0.1:*",
                         "--peer", endpoint, "--control", "none"], stdout: dir.appending(path: "b.out"))
        defer { if b.isRunning { b.terminate() } }
        _ = await readyLine(dir.appending(path: "b.out"))

        var table = ""
        for _ in 0..<100 {
            let (rc, out) = try output(["status", "--metrics", metrics])
            table = out
            if rc == 0 && out.contains("1 neighbours") { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(table.contains("1 neighbours"), "\(table)")
        #expect(table.contains("NEIGHBOUR") && table.contains("published"))

        // Counters appear in Prometheus text format (reported about once a second).
        var prom = ""
        for _ in 0..<60 {
            prom = (try? rawGet(metrics, "/metrics")) ?? ""
            if prom.contains("warren_neighbours{node=\"\(endpoint)\"} 1") { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        for name in ["warren_published_total", "warren_delivered_total", "warren_relayed_total", "warren_duplicates_total",
                     "warren_ttl_expired_total", "warren_over_ttl_total", "warren_malformed_total", "warren_refused_total",
                     "warren_rate_limited_total", "warren_hwm_drops_total", "warren_neighbours", "warren_dedup_entries"] {
            #expect(prom.contains(name), "missing \(name)")
            #expect(prom.contains("# HELP \(name) "), "no # HELP line for \(name)")
        }
        #expect(prom.contains("warren_neighbours{node=\"\(endpoint)\"} 1"))

        // HTTP/1.1: two requests on one connection, both answered (keep-alive).
        let twice = try rawGet(metrics, "/metrics", requests: 2, version: "HTTP/1.1")
        #expect(twice.components(separatedBy: "HTTP/1.1 200 OK").count == 3, "\(twice.prefix(300))")

        let (rc, bad) = try output(["status", "--metrics", "127.0.0.1:1"])
        #expect(rc != 0 && bad.contains("cannot connect"))
        a.terminate(); b.terminate()
    }


    func rawGet(_ addr: String, _ path: String, requests: Int = 1, version: String = "HTTP/1.0") throws -> String {
        let parts = addr.split(separator: ":")
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = UInt16(parts[1])!.bigEndian
        inet_pton(AF_INET, String(parts[0]), &sa.sin_addr)
        let rc = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { return "" }
        var req = ""
        for i in 0..<requests {
            req += "GET \(path) \(version)\r\nHost: x\r\n" + (i == requests - 1 ? "Connection: close\r\n" : "") + "\r\n"
        }
        _ = req.withCString { write(fd, $0, strlen($0)) }
        var data = [UInt8](), buf = [UInt8](repeating: 0, count: 65536)
        while true { let n = read(fd, &buf, buf.count); if n <= 0 { break }; data += buf[0..<n] }
        return String(decoding: data, as: UTF8.self)
    }
}
