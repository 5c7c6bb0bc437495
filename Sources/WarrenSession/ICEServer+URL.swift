/// Errors in STUN/TURN URLs.
public struct ICEServerError: Error, Equatable, Sendable, CustomStringConvertible {
    public var description: String
    init(_ url: String, _ rule: String) {
        description = "invalid ICE server \(String(reflecting: ICEServer.redacted(url))): \(rule)"
    }
}

extension ICEServer {
    /// Parses cunīcu's forms: `stun:HOST[:PORT]`, `turn:USER:PASS@HOST[:PORT][?transport=udp|tcp]`,
    /// `turns:USER:PASS@HOST[:PORT]` (TLS). Default ports: 3478, and 5349 for `turns:`.
    /// IPv6 hosts go in brackets. Errors never repeat the password.
    public init(url: String) throws {
        let text = url.trimmingCharacters(in: .whitespaces)
        guard let colon = text.firstIndex(of: ":") else {
            throw ICEServerError(url, "expected stun:HOST:PORT or turn:USER:PASS@HOST:PORT")
        }
        guard let k = Kind(rawValue: text[..<colon].lowercased()) else {
            throw ICEServerError(url, "the scheme must be stun:, turn: or turns:")
        }
        var rest = Substring(text[text.index(after: colon)...])
        if rest.hasPrefix("//") { rest = rest.dropFirst(2) }
        var transport: ICECandidate.RelayProtocol = k == .turns ? .tls : .udp
        if let q = rest.firstIndex(of: "?") {
            let query = rest[rest.index(after: q)...]
            rest = rest[..<q]
            for item in query.split(separator: "&") {
                let kv = item.split(separator: "=", maxSplits: 1).map(String.init)
                guard kv.count == 2, kv[0] == "transport" else {
                    throw ICEServerError(url, "the only query parameter is transport=udp|tcp")
                }
                guard k != .stun else { throw ICEServerError(url, "a STUN server takes no transport") }
                switch kv[1].lowercased() {
                case "udp" where k == .turn: transport = .udp
                case "tcp": transport = k == .turns ? .tls : .tcp
                default: throw ICEServerError(url, "transport must be udp or tcp (turns: is always TLS over TCP)")
                }
            }
        }
        var user: String?
        var pass: String?
        if let at = rest.lastIndex(of: "@") {
            guard k != .stun else { throw ICEServerError(url, "a STUN server takes no user name") }
            let auth = rest[..<at]
            rest = rest[rest.index(after: at)...]
            guard let c = auth.firstIndex(of: ":"), c != auth.startIndex, auth.index(after: c) != auth.endIndex else {
                throw ICEServerError(url, "TURN credentials must be USER:PASS")
            }
            user = String(auth[..<c]).removingPercentEncoding ?? String(auth[..<c])
            let p = auth[auth.index(after: c)...]
            pass = String(p).removingPercentEncoding ?? String(p)
        } else if k != .stun {
            throw ICEServerError(url, "a TURN server needs USER:PASS@ before the host")
        }
        let (h, p) = try Self.hostPort(rest, url: url, defaultPort: k == .turns ? 5349 : 3478)
        self.init(kind: k, host: h, port: p, username: user, password: pass, transport: transport)
    }

    private static func hostPort(_ s: Substring, url: String, defaultPort: Int) throws -> (String, Int) {
        var host: Substring
        var portText: Substring?
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { throw ICEServerError(url, "an IPv6 host needs a closing ]") }
            host = s[s.index(after: s.startIndex)..<close]
            let after = s[s.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw ICEServerError(url, "expected :PORT after ]") }
                portText = after.dropFirst()
            }
            guard IPLiteral.family(String(host)) == .v6 else { throw ICEServerError(url, "\(host) is not an IPv6 address") }
        } else {
            if s.filter({ $0 == ":" }).count > 1 { throw ICEServerError(url, "put an IPv6 host in brackets: [ADDR]:PORT") }
            if let c = s.firstIndex(of: ":") {
                host = s[..<c]
                portText = s[s.index(after: c)...]
            } else {
                host = s
            }
        }
        guard !host.isEmpty else { throw ICEServerError(url, "the host is missing") }
        guard host.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._:".contains($0)) }) else {
            throw ICEServerError(url, "\(String(reflecting: String(host))) is not a host name or address")
        }
        var port = defaultPort
        if let pt = portText {
            guard let n = Int(pt), (1...65535).contains(n) else {
                throw ICEServerError(url, "port \(String(reflecting: String(pt))) is not 1–65535")
            }
            port = n
        }
        return (String(host), port)
    }

    /// `url` with the password of a `USER:PASS@` part replaced by `***`.
    public static func redacted(_ url: String) -> String {
        guard let at = url.lastIndex(of: "@"), let schemeEnd = url.firstIndex(of: ":") else { return url }
        let afterScheme = url.index(after: schemeEnd)
        guard afterScheme < at, let c = url[afterScheme..<at].firstIndex(of: ":") else { return url }
        return String(url[...c]) + "***" + String(url[at...])
    }
}

import Foundation
