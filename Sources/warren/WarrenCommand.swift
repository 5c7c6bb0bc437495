import ArgumentParser
import Foundation
import Warren
import WarrenCLI

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
                      Node.self, Connect.self, Status.self, Members.self, Send.self, Demo.self, Simulate.self]
    )

    static func main() async { await CommandMain.run(Self.self) }
}
