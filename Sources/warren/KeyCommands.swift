import ArgumentParser
import Foundation
import Glibc
import Warren
import WarrenCLI

struct GenKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "genkey", abstract: "Print a new random private key (base64).",
        discussion: "warren genkey --out node.key creates the file readable by its owner only (0600); on stdout, store it with restricted permissions: umask 077; warren genkey > node.key")
    @Option(name: .long, help: ArgumentHelp("Write the key to this new file (mode 0600) instead of stdout.", valueName: "FILE")) var out: String?

    func run() throws {
        let key = PrivateKey.generate().base64
        guard let out else { return Output.line(key) }
        // O_EXCL: an existing key is never overwritten; 0600 from the start (no window).
        let fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw RuntimeError("cannot create \(out): \(String(cString: strerror(errno)))") }
        let failed = Output.writeAll(fd, key + "\n")
        let closeFailed = close(fd) != 0 ? errno : nil
        if let e = failed ?? closeFailed {
            unlink(out)
            throw RuntimeError("cannot write \(out): \(String(cString: strerror(e)))")
        }
    }
}

struct PubKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pubkey", abstract: "Read a private key on stdin and print its public key.",
        discussion: "Example: warren genkey | warren pubkey")
    func run() throws {
        var input = ""
        while let l = readLine(strippingNewline: false) { input += l }
        let lines = input.split(whereSeparator: \.isNewline).filter { !$0.allSatisfy(\.isWhitespace) }
        if lines.count > 1 { throw RuntimeError("stdin holds \(lines.count) lines; pubkey reads one private key") }
        do { Output.line(try PrivateKey(base64: input).publicKey.base64) } catch {
            throw RuntimeError("stdin: \(error)")
        }
    }
}

struct CommunityKeyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "community-key",
        abstract: "Print the community private key derived from a passphrase (cunīcu-compatible).",
        discussion: """
        Argon2id(passphrase, salt "w1c3c0nn3cts3veryb0dy", t=1, m=64 MiB, p=4), clamped. Members \
        subscribe to it from any sender; publishing to its public key reaches all of them. With no \
        passphrase argument, or "-", the passphrase is the first line of stdin (not visible in ps):
          warren community-key --public < community.pass
        """)
    @Argument(help: "The community passphrase; - or none: read it from stdin.") var passphrase: String?
    @Option(name: .long, help: ArgumentHelp("Read the passphrase from the first line of this file.", valueName: "FILE")) var file: String?
    @Flag(name: .long, help: "Print the public key instead of the private key.") var `public` = false

    func validate() throws {
        if file != nil && passphrase != nil { throw ValidationError("give the passphrase or --file, not both") }
    }

    func run() throws {
        let text: String
        if let file { text = try readPassphraseFile(file) }
        else if let passphrase, passphrase != "-" { text = passphrase }
        else { text = try readPassphraseStdin() }
        let k: PrivateKey
        do { k = try PrivateKey.community(passphrase: text) } catch { throw RuntimeError("\(error)") }
        Output.line(`public` ? k.publicKey.base64 : k.base64)
    }
}

struct Seal: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Seal Messages (one canonical-JSON object per line) into base64 Envelopes.",
        discussion: """
        Each stdin line is a cunicu.signaling.Message in protobuf's canonical JSON, e.g.
          {"credentials":{"ufrag":"a","pwd":"b","needCreds":true}}
        and becomes one base64 Envelope line on stdout. A bad line is reported on stderr with its \
        number; the others are still sealed; the exit status is 1 if any line failed.
        """)
    @Option(name: .long, help: "File holding our private key (base64).") var keyFile: String
    @Option(name: .long, help: "Recipient public key (base64).") var to: String

    func run() throws {
        let ours = PrivateKey(try readKeyFile(keyFile))
        let recipient = try parseKeyArgument(to, name: "--to")
        var failed = false
        var n = 0
        while let line = readLine() {
            n += 1
            if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
            do {
                let msg = try SignalingMessage(jsonString: line)
                let bytes = try EnvelopeCodec.shared.sealBytes(msg, from: ours, to: recipient)
                Output.line(Data(bytes).base64EncodedString())
            } catch {
                failed = true
                Output.error("line \(n): \(describe(error))")
            }
        }
        if failed { throw ExitCode(1) }
    }
}

struct Open: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Open base64 Envelopes (one per line) and print them as JSON lines.",
        discussion: """
        Output per line: {"sender": B64, "recipient": B64, "message": {…canonical JSON…}}. A bad \
        line (not base64, not an envelope, not for our key, tampered) is reported on stderr with \
        its number and reason; the rest are still processed; the exit status is 1 if any failed.
        """)
    @Option(name: .long, help: "File holding our private key (base64).") var keyFile: String

    func run() throws {
        let ours = PrivateKey(try readKeyFile(keyFile))
        var failed = false
        var n = 0
        while let line = readLine() {
            n += 1
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            guard let data = Data(base64Encoded: t) else {
                failed = true
                Output.error("line \(n): not valid base64")
                continue
            }
            do {
                let (pair, msg) = try EnvelopeCodec.shared.open(Array(data), with: ours)
                Output.line(try jsonLine(sender: pair.theirs, recipient: pair.ours, message: msg))
            } catch {
                failed = true
                Output.error("line \(n): \(describe(error))")
            }
        }
        if failed { throw ExitCode(1) }
    }
}
