import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import WarrenCLI

/// A small client for the NATS text protocol (CONNECT, SUB, PUB, MSG, PING/PONG) over one
/// loopback TCP connection, written for `warren-bench compare`: it is what lets a NATS peer be
/// driven like a `warren node`. No TLS, no auth, no reconnects, no headers (HMSG).
///
/// Writes go through one buffer that a flusher thread empties with a single `send` per wake-up,
/// as the Go client's flusher does: under load many PUBs leave in one system call, an idle PUB
/// leaves at once. Reading is done by whoever owns the `NATSReader` returned by `connect`.
final class NATSClient: Sendable {
    struct Failure: Error, CustomStringConvertible { let description: String }

    private let fd: Int32
    private let pending = Mutex<(bytes: [UInt8], closed: Bool)>(([], false))
    private let wake = DispatchSemaphore(value: 0)

    private init(fd: Int32) { self.fd = fd }

    /// Connects to `host:port` (IPv4), reads the server's INFO, sends CONNECT and subscribes to
    /// `subject` (sid 1). Returns once a PING has come back as PONG, i.e. the server has
    /// processed the subscription, with the reader positioned after that PONG.
    static func connect(host: String, port: UInt16, name: String, subject: String,
                        timeout: Duration = .seconds(5)) throws -> (NATSClient, NATSReader) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else {
            close(fd); throw Failure(description: "not an IPv4 address: \(host)")
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = String(cString: strerror(errno)); close(fd)
            throw Failure(description: "cannot connect to nats-server at \(host):\(port): \(e)")
        }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        // A receive timeout for the handshake only; cleared before the reader takes over.
        let secs = timeout.components.seconds
        var tv = timeval(tv_sec: Int(secs), tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))

        let client = NATSClient(fd: fd)
        var reader = NATSReader(fd: fd)
        do {
            guard try reader.next(onMessage: { _ in }) == .info else { throw Failure(description: "nats-server did not start with INFO") }
            let connect = "{\"verbose\":false,\"pedantic\":false,\"echo\":false,\"lang\":\"swift\",\"version\":\"warren-bench\",\"protocol\":1,\"name\":\(jsonString(name))}"
            try client.writeNow(Array("CONNECT \(connect)\r\nSUB \(subject) 1\r\nPING\r\n".utf8))
            loop: while true {
                switch try reader.next(onMessage: { _ in }) {
                case .pong: break loop
                case .ping: try client.writeNow(Array("PONG\r\n".utf8))
                case .error(let e): throw Failure(description: "nats-server refused the connection: \(e)")
                default: continue
                }
            }
        } catch {
            close(fd); throw error
        }
        tv = timeval(tv_sec: 0, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let t = Thread { client.flushLoop() }
        t.name = "nats-flusher"
        t.start()
        return (client, reader)
    }

    /// Queues `PUB subject size\r\npayload\r\n`.
    func publish(subject: [UInt8], payload: [UInt8]) {
        var frame: [UInt8] = []
        frame.reserveCapacity(subject.count + payload.count + 24)
        frame.append(contentsOf: "PUB ".utf8)
        frame.append(contentsOf: subject)
        frame.append(0x20)
        frame.append(contentsOf: String(payload.count).utf8)
        frame.append(contentsOf: [0x0D, 0x0A])
        frame.append(contentsOf: payload)
        frame.append(contentsOf: [0x0D, 0x0A])
        enqueue(frame)
    }

    /// Answers a server PING.
    func pong() { enqueue(Array("PONG\r\n".utf8)) }

    private func enqueue(_ frame: [UInt8]) {
        let wasEmpty = pending.withLock { p -> Bool in
            let e = p.bytes.isEmpty
            p.bytes.append(contentsOf: frame)
            return e
        }
        if wasEmpty { wake.signal() }
    }

    private func flushLoop() {
        while true {
            wake.wait()
            let (chunk, closed) = pending.withLock { p -> ([UInt8], Bool) in
                let c = p.bytes; p.bytes = []; p.bytes.reserveCapacity(c.count); return (c, p.closed)
            }
            if !chunk.isEmpty {
                do { try writeNow(chunk) } catch {
                    Output.error("nats: \(error)"); Glibc.exit(1)
                }
            }
            if closed { return }
        }
    }

    private func writeNow(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "send to nats-server: \(String(cString: strerror(errno)))")
            }
            off += n
        }
    }
}

/// The reading half of a NATS connection: a growable buffer and a frame parser. Owned by one
/// thread.
struct NATSReader {
    enum Control: Equatable { case info, msg, ping, pong, ok, error(String) }

    let fd: Int32
    private var buf = [UInt8](repeating: 0, count: 1 << 16)
    private var lo = 0, hi = 0

    init(fd: Int32) { self.fd = fd }

    /// Reads the next frame (blocking as needed). For MSG, `onMessage` gets the payload, valid
    /// only during the call. Throws at end of stream or on a read error.
    mutating func next(onMessage: (UnsafeRawBufferPointer) -> Void) throws -> Control {
        while true {
            if let r = try parseOne(onMessage) { return r }
            try fill()
        }
    }

    /// One complete frame from the buffer, or nil when more bytes are needed.
    private mutating func parseOne(_ onMessage: (UnsafeRawBufferPointer) -> Void) throws -> Control? {
        guard let eol = crlf(from: lo) else { return nil }
        let lineStart = lo
        // The verb: up to the first space or the end of the line.
        var verbEnd = lineStart
        while verbEnd < eol && buf[verbEnd] != 0x20 && buf[verbEnd] != 0x09 { verbEnd += 1 }
        let verb = String(decoding: buf[lineStart..<verbEnd], as: UTF8.self).uppercased()
        switch verb {
        case "MSG":
            // MSG <subject> <sid> [reply-to] <#bytes>: the size is the last token.
            var i = eol - 1, size = 0, mult = 1
            while i > verbEnd && buf[i] >= 0x30 && buf[i] <= 0x39 { size += Int(buf[i] - 0x30) * mult; mult *= 10; i -= 1 }
            guard mult > 1 else {
                throw NATSClient.Failure(description: "malformed MSG line: \(String(decoding: buf[lineStart..<eol], as: UTF8.self))")
            }
            let start = eol + 2, end = start + size
            guard end + 2 <= hi else {
                if end + 2 > buf.count - lo { grow(to: end + 2 - lo) }
                return nil
            }
            buf.withUnsafeBytes { onMessage(UnsafeRawBufferPointer(rebasing: $0[start..<end])) }
            lo = end + 2
            return .msg
        case "PING": lo = eol + 2; return .ping
        case "PONG": lo = eol + 2; return .pong
        case "+OK": lo = eol + 2; return .ok
        case "INFO": lo = eol + 2; return .info
        case "-ERR":
            let text = String(decoding: buf[verbEnd..<eol], as: UTF8.self).trimmingCharacters(in: .whitespaces)
            lo = eol + 2
            return .error(text)
        default:
            throw NATSClient.Failure(description: "unexpected line from nats-server: \(String(decoding: buf[lineStart..<eol], as: UTF8.self).prefix(80))")
        }
    }

    private func crlf(from: Int) -> Int? {
        var i = from
        while i + 1 < hi {
            if buf[i] == 0x0D && buf[i + 1] == 0x0A { return i }
            i += 1
        }
        return nil
    }

    private mutating func grow(to needed: Int) {
        var n = buf.count
        while n < needed { n *= 2 }
        var nb = [UInt8](repeating: 0, count: n)
        nb.withUnsafeMutableBytes { d in buf.withUnsafeBytes { s in d.copyMemory(from: UnsafeRawBufferPointer(rebasing: s[lo..<hi])) } }
        hi -= lo; lo = 0; buf = nb
    }

    private mutating func fill() throws {
        if lo == hi { lo = 0; hi = 0 }
        if hi == buf.count {
            if lo > 0 {
                let live = hi - lo
                buf.withUnsafeMutableBytes { p in _ = memmove(p.baseAddress!, p.baseAddress! + lo, live) }
                lo = 0; hi = live
            } else {
                grow(to: buf.count * 2)
            }
        }
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + hi, $0.count - hi, 0) }
            if n > 0 { hi += n; return }
            if n == 0 { throw NATSClient.Failure(description: "nats-server closed the connection") }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK { throw NATSClient.Failure(description: "nats-server did not answer in time") }
            throw NATSClient.Failure(description: "read from nats-server: \(String(cString: strerror(errno)))")
        }
    }
}
