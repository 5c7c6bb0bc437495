import Foundation
import Warren
import WarrenCLI

/// Publishes the node's stdin lines and the control socket's `send` requests.
final class Publisher: Sendable {
    let backend: GossipBackend
    let key: PrivateKey
    let community: PrivateKey?

    init(backend: GossipBackend, key: PrivateKey, community: PrivateKey?) {
        self.backend = backend; self.key = key; self.community = community
    }

    /// One `{"to":…,"message":{…}}` line.
    func publish(line: String) async throws {
        guard let obj = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
            throw RuntimeError("not a JSON object")
        }
        try await publish(object: obj)
    }

    func publish(object obj: [String: Any], allowed: Set<String> = ["to", "message"]) async throws {
        if let unknown = obj.keys.sorted().first(where: { !allowed.contains($0) }) {
            throw RuntimeError("unknown field \"\(unknown)\" (known: \(allowed.sorted().joined(separator: ", ")))")
        }
        guard let to = obj["to"] as? String else { throw RuntimeError("missing \"to\" (a base64 public key or \"community\")") }
        guard let m = obj["message"] else { throw RuntimeError("missing \"message\" object") }
        guard let fields = m as? [String: Any] else {
            throw RuntimeError("\"message\" must be a JSON object (a cunicu.signaling.Message), got \(jsonKind(m))")
        }
        let recipient = try self.recipient(to)
        let msgData = try JSONSerialization.data(withJSONObject: fields)
        let msg: SignalingMessage
        do { msg = try SignalingMessage(jsonUTF8Data: msgData) } catch { throw RuntimeError("\"message\": \(describe(error))") }
        try await backend.publish(KeyPair(ours: key, theirs: recipient), msg)
    }

    func recipient(_ to: String) throws -> Key {
        if to == "community" {
            guard let community else { throw RuntimeError("\"to\":\"community\" needs --community or --community-file") }
            return community.publicKey
        }
        let k: Key
        do { k = try Key(base64: to) } catch { throw RuntimeError("\"to\": \(error)") }
        if k.isZero { throw RuntimeError("\"to\": \(GossipPublishError.zeroRecipient)") }
        return k
    }
}

func jsonKind(_ v: Any) -> String {
    switch v {
    case is [Any]: return "an array"
    case is String: return "a string"
    case is NSNull: return "null"
    default: return "a number or boolean"
    }
}
