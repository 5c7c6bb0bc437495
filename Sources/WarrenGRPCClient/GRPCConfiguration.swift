import Foundation
import WarrenCore

/// Where a `grpc://` client backend connects, and how.
///
/// `grpc://HOST:PORT?insecure=true` — plain-text HTTP/2 (what cunīcu's `?insecure=true` means);
/// without `insecure=true` the connection uses TLS, verified against the system's trust roots
/// or, with `ca=FILE`, against the PEM certificates in FILE; `skip_verify=true` (as in cunīcu)
/// accepts any server certificate — encrypted, but not authenticated. `timeout=SECONDS` bounds how long
/// `subscribe` waits for a stream to go live and how long `publish` waits (default 10).
public struct GRPCConfiguration: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var insecure: Bool
    public var trustRootsFile: String?
    public var skipVerify: Bool = false
    public var subscribeTimeout: Duration
    public var callTimeout: Duration

    public init(host: String, port: Int, insecure: Bool = true, trustRootsFile: String? = nil,
                subscribeTimeout: Duration = .seconds(10), callTimeout: Duration = .seconds(10)) {
        self.host = host
        self.port = port
        self.insecure = insecure
        self.trustRootsFile = trustRootsFile
        self.subscribeTimeout = subscribeTimeout
        self.callTimeout = callTimeout
    }

    public var target: String { "\(host):\(port)" }

    public init(url: URL) throws {
        let text = url.absoluteString
        func bad(_ why: String) -> BackendError { .invalidURL(text, reason: why) }
        guard url.scheme?.lowercased() == "grpc" else { throw bad("expected grpc://HOST:PORT") }
        guard let host = url.host, !host.isEmpty else { throw bad("missing host: expected grpc://HOST:PORT") }
        guard let port = url.port, (1...65535).contains(port) else {
            throw bad("missing or invalid port: expected grpc://HOST:PORT (1–65535)")
        }
        self.init(host: host, port: port, insecure: false)
        let items = URLComponents(url: url, resolvingAgainstBaseURL: false)?.queryItems ?? []
        for item in items {
            let value = item.value ?? ""
            switch item.name {
            case "insecure":
                guard let b = Bool(value.lowercased()) else { throw bad("insecure must be true or false, got \"\(value)\"") }
                insecure = b
            case "ca":
                guard FileManager.default.isReadableFile(atPath: value) else { throw bad("ca file \"\(value)\" is not readable") }
                trustRootsFile = value
            case "skip_verify":
                guard let b = Bool(value.lowercased()) else { throw bad("skip_verify must be true or false, got \"\(value)\"") }
                skipVerify = b
            case "timeout":
                guard let s = Double(value), s > 0, s <= 3600 else { throw bad("timeout must be seconds in (0, 3600], got \"\(value)\"") }
                subscribeTimeout = .milliseconds(Int64(s * 1000))
                callTimeout = subscribeTimeout
            default:
                throw bad("unknown option \"\(item.name)\" (known: insecure, skip_verify, ca, timeout)")
            }
        }
        if insecure && trustRootsFile != nil { throw bad("ca= has no meaning with insecure=true") }
    }
}
