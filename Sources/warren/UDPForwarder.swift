import Foundation
import Glibc
import Synchronization
import WarrenCLI
import WarrenEngine

/// A local UDP socket for `warren connect --forward`: datagrams a local application sends to it
/// go to the peer over the ICE path, and datagrams from the peer go back to the application
/// (the last address that sent to the socket, or a fixed `--forward-to`).
final class UDPForwarder: Sendable {
    let address: String
    private let fd: Int32
    private let fixed: Bool

    /// Where replies go, and the counters.
    private struct State {
        var replyTo: sockaddr_storage?
        var replyLength: socklen_t = 0
        var toPeer = 0, fromPeer = 0, droppedNoPath = 0, droppedNoApplication = 0
    }
    private let state = Mutex(State())

    /// Binds `bind` (HOST:PORT, IPv4 or [IPv6]); `onDatagram` gets every datagram the local
    /// application sends and returns false when it could not be sent on.
    init(bind: String, replyTo fixedTarget: String?, onDatagram: @escaping @Sendable ([UInt8]) -> Bool) throws {
        var local = try Self.resolve(bind, option: "--forward")
        let s = socket(Int32(local.0.ss_family), Int32(SOCK_DGRAM.rawValue), 0)
        guard s >= 0 else { throw ForwardError("--forward: socket: \(String(cString: strerror(errno)))") }
        let rc = withUnsafePointer(to: &local.0) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(s, $0, local.1) }
        }
        guard rc == 0 else {
            let e = String(cString: strerror(errno)); close(s)
            throw ForwardError("--forward \(bind): cannot bind: \(e)")
        }
        fd = s
        address = Self.describe(fd: s) ?? bind
        if let fixedTarget {
            let t: (sockaddr_storage, socklen_t)
            do { t = try Self.resolve(fixedTarget, option: "--forward-to") } catch { close(s); throw error }
            state.withLock { $0.replyTo = t.0; $0.replyLength = t.1 }
            fixed = true
        } else {
            fixed = false
        }
        let box = FDBox(fd: s)
        // The thread ends when `stop()` closes the socket (its recvfrom fails).
        let thread = Thread {
            var buf = [UInt8](repeating: 0, count: 65_536)
            while true {
                var from = sockaddr_storage()
                var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
                let n = withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(box.fd, &buf, buf.count, 0, $0, &len) }
                }
                if n < 0 {
                    if errno == EINTR { continue }
                    return  // closed
                }
                box.forwarder.withLock { $0.value }?.fromApplication(Array(buf[0..<n]), from: from, length: len, send: onDatagram)
            }
        }
        thread.name = "warren-forward"
        box.forwarder.withLock { $0.value = self }
        thread.start()
    }

    private func fromApplication(_ d: [UInt8], from: sockaddr_storage, length: socklen_t,
                                 send: @Sendable ([UInt8]) -> Bool) {
        if !fixed { state.withLock { $0.replyTo = from; $0.replyLength = length } }
        let ok = send(d)
        state.withLock { if ok { $0.toPeer += 1 } else { $0.droppedNoPath += 1 } }
    }

    /// A datagram from the peer, for the local application.
    func deliver(_ d: [UInt8]) {
        let target = state.withLock { s -> (sockaddr_storage, socklen_t)? in
            guard let to = s.replyTo else { s.droppedNoApplication += 1; return nil }
            s.fromPeer += 1
            return (to, s.replyLength)
        }
        guard let (address, len) = target else { return }
        var to = address
        _ = withUnsafePointer(to: &to) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, d, d.count, 0, $0, len) }
        }
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    var counters: (toPeer: Int, fromPeer: Int, noPath: Int, noApplication: Int) {
        state.withLock { ($0.toPeer, $0.fromPeer, $0.droppedNoPath, $0.droppedNoApplication) }
    }

    /// HOST:PORT or [IPv6]:PORT, names resolved (UDP).
    static func resolve(_ spec: String, option: String) throws -> (sockaddr_storage, socklen_t) {
        // --forward binds (any port allowed), --forward-to is where datagrams are sent.
        let hp: HostPort
        do { hp = try HostPort(parsing: spec, for: option == "--forward" ? .listen : .dial) } catch {
            throw ForwardError("\(option) \(spec): expected HOST:PORT (IPv6 as [ADDR]:PORT): \(error.rule)")
        }
        let host = hp.host, port = String(hp.port ?? 0)
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_DGRAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, port, &hints, &res)
        guard rc == 0, let r = res else {
            throw ForwardError("\(option) \(spec): cannot resolve \(host): \(String(cString: gai_strerror(rc)))")
        }
        defer { freeaddrinfo(res) }
        var out = sockaddr_storage()
        memcpy(&out, r.pointee.ai_addr, Int(r.pointee.ai_addrlen))
        return (out, r.pointee.ai_addrlen)
    }

    static func describe(fd: Int32) -> String? {
        var a = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc == 0 else { return nil }
        var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        var serv = [CChar](repeating: 0, count: Int(NI_MAXSERV))
        let g = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                getnameinfo($0, len, &host, socklen_t(host.count), &serv, socklen_t(serv.count), NI_NUMERICHOST | NI_NUMERICSERV)
            }
        }
        guard g == 0 else { return nil }
        func text(_ a: [CChar]) -> String {
            String(decoding: a.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        let h = text(host)
        return (h.contains(":") ? "[\(h)]" : h) + ":" + text(serv)
    }
}

/// What the receive thread holds: the socket and, once `init` has finished, the forwarder
/// (weakly: the thread does not keep it alive).
private final class FDBox: Sendable {
    struct Weak: Sendable { weak var value: UDPForwarder? }
    let fd: Int32
    let forwarder = Mutex(Weak())
    init(fd: Int32) { self.fd = fd }
}

struct ForwardError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
