import ArgumentParser
import Foundation
import Glibc
import WarrenCore

/// Reads a key file: a base64 key with an optional trailing newline. Warns, as wg does, when a
/// private key file can be read by others ("world accessible") or by its group ("group
/// accessible"). Errors never repeat the file's content.
package func readKeyFile(_ path: String, isPrivate: Bool = true) throws -> Key {
    let data = try readFile(path, what: "key file")
    if isPrivate { warnIfReadableByOthers(path, what: "key file") }
    guard let text = String(data: data, encoding: .utf8) else { throw RuntimeError("key file \(path) is not text") }
    do { return try Key(base64: text) } catch { throw RuntimeError("key file \(path): \(error)") }
}

/// The wg-style warning for a secret file that others than its owner can read.
package func warnIfReadableByOthers(_ path: String, what: String) {
    var st = stat()
    guard stat(path, &st) == 0 else { return }
    let mode = st.st_mode
    if mode & 0o007 != 0 {
        Output.error("Warning: `\(path)' is world accessible")
    } else if mode & 0o070 != 0 {
        Output.error("Warning: `\(path)' is group accessible")
    }
}

/// A passphrase file: its first line (a trailing newline is not part of the passphrase).
package func readPassphraseFile(_ path: String) throws -> String {
    let data = try readFile(path, what: "passphrase file")
    warnIfReadableByOthers(path, what: "passphrase file")
    return try passphrase(fromText: data, source: "passphrase file \(path)")
}

/// The passphrase on stdin (its first line).
package func readPassphraseStdin() throws -> String {
    var data = Data()
    var buf = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = read(0, &buf, buf.count)
        if n < 0 { if errno == EINTR { continue }; throw RuntimeError("cannot read stdin: \(String(cString: strerror(errno)))") }
        if n == 0 { break }
        data.append(contentsOf: buf[0..<n])
        if data.count > 1 << 16 { throw RuntimeError("stdin: a passphrase of more than 64 KiB") }
    }
    return try passphrase(fromText: data, source: "stdin")
}

package func passphrase(fromText data: Data, source: String) throws -> String {
    guard let text = String(data: data, encoding: .utf8) else { throw RuntimeError("\(source) is not UTF-8 text") }
    var line = text.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
    if line.hasSuffix("\r") { line.removeLast() }
    guard !line.isEmpty else { throw RuntimeError("\(source) holds no passphrase (its first line is empty)") }
    return line
}

package func parseKeyArgument(_ s: String, name: String) throws -> Key {
    do { return try Key(base64: s) } catch { throw ValidationError("\(name): \(error)") }
}
