import ArgumentParser
import Foundation
import Warren

@main
struct WarrenCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren",
        abstract: "Serverless signaling for cunīcu: an encrypted gossip overlay on ZeroMQ.",
        discussion: """
        Keys are Curve25519 keys in base64 (WireGuard format). Like wg, the key tools read and \
        write one value per line, so they compose with pipes:

          warren genkey | tee node.key | warren pubkey > node.pub
          echo '{"credentials":{"ufrag":"a","pwd":"b"}}' | warren seal --key-file a.key --to "$(cat b.pub)" \\
            | warren open --key-file b.key
        """,
        version: WarrenVersion.string,
        subcommands: [GenKey.self, PubKey.self, CommunityKeyCommand.self, Seal.self, Open.self,
                      Node.self, Connect.self, Status.self, Demo.self, Soak.self, Bench.self, Simulate.self]
    )
}

/// Writes whole lines to stdout/stderr without interleaving across threads.
enum Output {
    private static let lock = NSLock()
    static func line(_ s: String) {
        lock.lock(); defer { lock.unlock() }
        FileHandle.standardOutput.write(Data((s + "\n").utf8))
    }
    static func error(_ s: String) {
        lock.lock(); defer { lock.unlock() }
        FileHandle.standardError.write(Data((s + "\n").utf8))
    }
}

/// Reads a key file: a base64 key with an optional trailing newline. Warns, as wg does, when a
/// private key file can be read by others.
func readKeyFile(_ path: String, isPrivate: Bool = true) throws -> Key {
    guard FileManager.default.fileExists(atPath: path) else {
        throw ValidationError("key file \(path) does not exist")
    }
    let data: Data
    do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
        throw ValidationError("cannot read key file \(path): \(error.localizedDescription)")
    }
    if isPrivate, let attrs = try? FileManager.default.attributesOfItem(atPath: path),
       let perms = attrs[.posixPermissions] as? NSNumber, perms.intValue & 0o077 != 0 {
        Output.error("Warning: `\(path)' is world accessible")
    }
    guard let text = String(data: data, encoding: .utf8) else { throw ValidationError("key file \(path) is not text") }
    do { return try Key(base64: text) } catch { throw ValidationError("key file \(path): \(error)") }
}

func parseKeyArgument(_ s: String, name: String) throws -> Key {
    do { return try Key(base64: s) } catch { throw ValidationError("\(name): \(error)") }
}
