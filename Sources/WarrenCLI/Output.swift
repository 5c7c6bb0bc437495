import ArgumentParser
import Foundation
import Glibc
import Synchronization
import SwiftProtobuf

/// Writes whole lines to stdout and stderr, without interleaving across threads. A failed
/// write to stdout (a full disk, a closed pipe) ends the program with
/// `warren: cannot write stdout: <reason>` (or `warren-bench: …`) on stderr and exit status 1.
package enum Output {
    // Two locks: a stdout write that blocks (nobody reads the pipe) never holds up stderr.
    private static let outLock = Mutex(())
    private static let errLock = Mutex(())
    /// The executable's name, for the messages it prints (`warren`, `warren-bench`).
    package static let programName = String(CommandLine.arguments.first?.split(separator: "/").last ?? "warren")

    package static func line(_ s: String) {
        outLock.withLock { _ in
            if let e = writeAll(1, s + "\n") { failStdout(e) }
        }
    }

    /// Several lines in one write (the node's output queue).
    package static func lines(_ batch: [String]) {
        guard !batch.isEmpty else { return }
        var text = ""
        for l in batch { text += l; text += "\n" }
        outLock.withLock { _ in
            if let e = writeAll(1, text) { failStdout(e) }
        }
    }

    package static func error(_ s: String) {
        errLock.withLock { _ in _ = writeAll(2, s + "\n") }
    }

    /// Nothing is buffered (every line is one write), but Foundation's `print` may be; kept for
    /// callers that mix both.
    package static func flush() { fflush(nil) }

    /// Writes all of `s`; returns errno on failure.
    package static func writeAll(_ fd: Int32, _ s: String) -> Int32? {
        var s = s
        return s.withUTF8 { buf -> Int32? in
            var off = 0
            while off < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + off, buf.count - off)
                if n < 0 { if errno == EINTR { continue }; return errno }
                off += n
            }
            return nil
        }
    }

    package static func failStdout(_ code: Int32) -> Never {
        _ = writeAll(2, "\(programName): cannot write stdout: \(String(cString: strerror(code)))\n")
        exit(1)
    }
}

/// An error of a command that ran: printed as `Error: <sentence>`, exit status 1, no usage
/// text (ArgumentParser's `ValidationError` is for arguments: usage and status 64).
package struct RuntimeError: Error, CustomStringConvertible {
    package var description: String
    package init(_ d: String) { description = d }
}

/// An error as a sentence: SwiftProtobuf's and Foundation's errors are named, not dumped.
package func describe(_ error: any Error) -> String {
    if let e = error as? JSONDecodingError { return describeJSON(e) }
    if let e = error as? BinaryDecodingError {
        if case .truncated = e { return "the protobuf data is truncated" }
        return "the data is not valid protobuf"
    }
    if let e = error as? RuntimeError { return e.description }
    if let e = error as? ValidationError { return e.message }
    if !(error is CocoaError) {
        let d = String(describing: error)
        if !d.contains("Error Domain=") { return d }
    }
    let ns = error as NSError
    if let posix = ns.userInfo[NSUnderlyingErrorKey] as? NSError, posix.domain == NSPOSIXErrorDomain {
        return String(cString: strerror(Int32(posix.code)))
    }
    return ns.localizedDescription
}

/// A configuration error's text without the "invalid gossip configuration:" prefix.
package func plain(_ error: any Error) -> String {
    let d = describe(error)
    let prefix = "invalid gossip configuration: "
    return d.hasPrefix(prefix) ? String(d.dropFirst(prefix.count)) : d
}

private func describeJSON(_ e: JSONDecodingError) -> String {
    switch e {
    case .unknownField(let f): return "unknown field \"\(f)\" (the message must be a cunicu.signaling.Message in protobuf's canonical JSON)"
    case .failure: return "not a cunicu.signaling.Message in protobuf's canonical JSON"
    case .malformedNumber: return "a number is malformed"
    case .numberRange: return "a number is out of range for its field"
    case .malformedMap: return "a map is malformed"
    case .malformedBool: return "a boolean is malformed (use true or false)"
    case .malformedString: return "a string is malformed"
    case .invalidUTF8: return "a string is not valid UTF-8"
    case .missingFieldNames: return "field names are missing"
    case .schemaMismatch: return "a field has the wrong type"
    case .unrecognizedEnumValue: return "an enum value is not known"
    case .illegalNull: return "null is not allowed here"
    case .unquotedMapKey: return "a map key is not quoted"
    case .leadingZero: return "a number has a leading zero"
    case .truncated: return "the JSON is truncated"
    case .malformedDuration: return "a duration is malformed"
    case .malformedTimestamp: return "a timestamp is malformed"
    case .malformedFieldMask: return "a field mask is malformed"
    case .trailingGarbage: return "there is text after the JSON object"
    case .conflictingOneOf: return "two fields of one oneof are set (a Message holds one of credentials, candidate, peer, pske)"
    case .messageDepthLimit: return "the JSON is nested too deeply"
    }
}

/// Reads a whole file; errors are sentences with the system's reason.
package func readFile(_ path: String, what: String) throws -> Data {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw RuntimeError("cannot read \(what) \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var data = Data()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n < 0 { if errno == EINTR { continue }; throw RuntimeError("cannot read \(what) \(path): \(String(cString: strerror(errno)))") }
        if n == 0 { break }
        data.append(contentsOf: buf[0..<n])
        if data.count > 1 << 20 { throw RuntimeError("\(what) \(path) is larger than 1 MiB") }
    }
    return data
}
