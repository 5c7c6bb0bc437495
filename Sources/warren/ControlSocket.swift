import Foundation
import Glibc
import Logging
import Warren
import WarrenCLI

/// A running node's control socket: a Unix stream socket that takes one JSON request line per
/// connection and answers one JSON line. `warren status`, `warren members` and `warren send`
/// use it. Requests: `{"command":"status"}`, `{"command":"members"}`,
/// `{"command":"send","to":KEY|"community","message":{…}}`. Replies carry `"error"` on failure.
/// The socket is created 0600: whoever can use it can publish as this node.
final class ControlSocket: Sendable {
    let path: String
    private let fd: Int32

    /// `$WARREN_CONTROL`, else `$XDG_RUNTIME_DIR/warren.sock`, else `/run/warren/warren.sock`.
    static var defaultPath: String {
        let env = ProcessInfo.processInfo.environment
        if let p = env["WARREN_CONTROL"], !p.isEmpty { return p }
        if let d = env["XDG_RUNTIME_DIR"], !d.isEmpty { return d + "/warren.sock" }
        return "/run/warren/warren.sock"
    }

    /// Binds `path` (a stale socket left by a crashed node is replaced; a live one is not).
    init(path: String, logger: Logger, handler: @escaping @Sendable ([String: Any]) async -> [String: Any]) throws {
        self.path = path
        guard path.utf8.count < 104 else { throw RuntimeError("control socket path \(path) is longer than 103 bytes") }
        if Self.isLive(path) {
            throw RuntimeError("control socket \(path) is in use by another running node (give --control PATH, or --control none)")
        }
        unlink(path)
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty && !FileManager.default.fileExists(atPath: dir) {
            guard mkdir(dir, 0o755) == 0 else {
                throw RuntimeError("cannot create the control socket's directory \(dir): \(String(cString: strerror(errno)))")
            }
        }
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { throw RuntimeError("control socket: \(String(cString: strerror(errno)))") }
        var addr = Self.address(path)
        let old = umask(0o177)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        umask(old)
        guard rc == 0, listen(s, 16) == 0 else {
            let e = String(cString: strerror(errno)); close(s)
            throw RuntimeError("cannot create the control socket \(path): \(e)")
        }
        fd = s
        let t = Thread { Self.serve(fd: s, handler: handler, logger: logger) }
        t.name = "warren-control"
        t.start()
    }

    static func address(_ path: String) -> sockaddr_un {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return addr
    }

    /// True when a process accepts connections on `path`.
    static func isLive(_ path: String) -> Bool {
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { return false }
        defer { close(s) }
        var addr = address(path)
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        } == 0
    }

    private static func serve(fd: Int32, handler: @escaping @Sendable ([String: Any]) async -> [String: Any], logger: Logger) {
        while true {
            let c = accept(fd, nil, nil)
            if c < 0 { if errno == EINTR { continue }; return }
            var tv = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let request = readLine(c)
            let box = UncheckedBox(request.flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] })
            Task {
                let reply: [String: Any]
                if let obj = box.value { reply = await handler(obj) } else { reply = ["error": "the request is not one JSON object on one line"] }
                var text = jsonText(reply) + "\n"
                _ = text.withUTF8 { b in write(c, b.baseAddress, b.count) }
                close(c)
            }
        }
    }

    /// Reads up to a newline (at most 1 MiB).
    private static func readLine(_ c: Int32) -> Data? {
        var data = Data()
        var buf = [UInt8](repeating: 0, count: 4096)
        while data.count < 1 << 20 {
            let n = read(c, &buf, buf.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            if let nl = buf[0..<n].firstIndex(of: 0x0A) { data.append(contentsOf: buf[0..<nl]); return data }
            data.append(contentsOf: buf[0..<n])
        }
        return data.isEmpty ? nil : data
    }

    /// One request of a node's control socket.
    static func handle(_ request: [String: Any], backend: GossipBackend, key: PrivateKey, publisher: Publisher,
                       bridge: SignalingBridge?, dropped: UInt64) async -> [String: Any] {
        switch request["command"] as? String {
        case "status":
            return statusObject(await backend.stats(), backend: backend, key: key, bridge: bridge, dropped: dropped)
        case "members":
            return ["members": members(await backend.stats(), backend: backend, key: key)]
        case "send":
            var fields = request
            fields["command"] = nil
            do {
                try await publisher.publish(object: fields)
                return ["ok": true]
            } catch {
                return ["error": describe(error)]
            }
        case let other:
            return ["error": "unknown command \(other.map { "\"\($0)\"" } ?? "(none)") (known: status, members, send)"]
        }
    }

    /// Sends one request to the node at `path`; returns its reply.
    static func request(_ object: [String: Any], path: String, timeout: Int = 30) throws -> [String: Any] {
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { throw RuntimeError("socket: \(String(cString: strerror(errno)))") }
        defer { close(s) }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = address(path)
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else {
            throw RuntimeError("cannot reach a node at \(path): \(String(cString: strerror(errno))) (is warren node running? give --control PATH)")
        }
        var text = jsonText(object) + "\n"
        _ = text.withUTF8 { b in write(s, b.baseAddress, b.count) }
        guard let reply = readLine(s) else { throw RuntimeError("the node at \(path) did not answer") }
        guard let obj = try? JSONSerialization.jsonObject(with: reply) as? [String: Any] else {
            throw RuntimeError("the node at \(path) answered something that is not JSON")
        }
        if let e = obj["error"] as? String { throw RuntimeError(e) }
        return obj
    }
}

// @unchecked: carries a JSON value (Any) from the thread that made it to the one that sends it; neither keeps it.
final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ v: T) { value = v }
}

func jsonText(_ obj: Any) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
}
