import ArgumentParser
import Foundation
import Glibc
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
                      Node.self, Connect.self, Status.self, Members.self, Send.self, Demo.self, Soak.self, Bench.self,
                      Simulate.self]
    )

    /// ArgumentParser's entry point, with SIGPIPE ignored first: a closed stdout is then a
    /// write error (EPIPE) that `Output` reports, not a silent death.
    static func main() async {
        signal(SIGPIPE, SIG_IGN)
        do {
            var command = try parseAsRoot()
            if var async = command as? AsyncParsableCommand { try await async.run() } else { try command.run() }
            Output.flush()
        } catch {
            Output.flush()
            exit(withError: error)
        }
    }
}

