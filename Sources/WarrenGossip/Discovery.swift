import Foundation
import Glibc
import WarrenCore
import WarrenEngine

/// The UDP side of LAN discovery (docs/PROTOCOL.md §8), owned by a node's driver thread: every
/// `interval` it broadcasts the node's beacon on each up, broadcast-capable IPv4 interface
/// (loopback excluded) to `port`, and it reads the beacons others send there. Several nodes on
/// one host share the port (`SO_REUSEADDR`/`SO_REUSEPORT`; broadcasts reach every socket). The
/// engine never sees the socket: each beacon becomes `GossipEngine.discovered`.
struct DiscoverySocket {
    let fd: Int32
    let port: UInt16
    let beacon: [UInt8]
    let interval: UInt64
    /// A closed overlay only dials keys on its allow-list.
    let allowed: Set<Key>?
    var nextBeacon: UInt64 = 0
    /// The socket is read at most every `pollInterval`, not on every pass of a busy loop.
    var nextPoll: UInt64 = 0
    static let pollInterval: UInt64 = 50_000_000
    var sent: UInt64 = 0
    var received: UInt64 = 0

    init(port: UInt16, beacon: Beacon, interval: UInt64, allowed: Set<Key>?) throws {
        guard let bytes = beacon.encode() else {
            throw GossipConfigurationError.invalid("discovery: endpoint \"\(beacon.endpoint)\" cannot be announced")
        }
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw ZMQError("discovery socket", code: errno) }
        var one: Int32 = 1
        let size = socklen_t(MemoryLayout<Int32>.size)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, size)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, size)
        setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, size)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = port.bigEndian
        addr.sin_addr.s_addr = INADDR_ANY
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            Glibc.close(fd)
            throw ZMQError("discovery: bind UDP port \(port)", code: e)
        }
        self.fd = fd
        self.port = port
        self.beacon = bytes
        self.interval = interval
        self.allowed = allowed
    }

    /// Sends the beacon if it is due; returns the beacons received since the last call as
    /// (beacon, source address).
    mutating func service(now: UInt64) -> [(Beacon, String)] {
        if now >= nextBeacon {
            nextBeacon = now &+ interval
            broadcast()
        }
        var found: [(Beacon, String)] = []
        var buf = [UInt8](repeating: 0, count: 512)
        for _ in 0..<256 {
            var from = sockaddr_in()
            var len = socklen_t(MemoryLayout<sockaddr_in>.size)
            let n = buf.withUnsafeMutableBytes { b in
                withUnsafeMutablePointer(to: &from) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { recvfrom(fd, b.baseAddress, b.count, 0, $0, &len) }
                }
            }
            guard n >= 0 else { break }   // EAGAIN: drained
            guard let b = Beacon.decode(buf[0..<n]) else { continue }
            received &+= 1
            if let allowed {
                guard let a = try? PeerAddress(parsing: b.endpoint), let k = a.key, allowed.contains(k) else { continue }
            }
            var text = [CChar](repeating: 0, count: Int(INET_ADDRSTRLEN))
            var a = from.sin_addr
            guard inet_ntop(AF_INET, &a, &text, socklen_t(text.count)) != nil else { continue }
            found.append((b, String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))
        }
        return found
    }

    /// One datagram to the subnet broadcast address of every up, broadcast-capable IPv4 interface.
    mutating func broadcast() {
        var list: UnsafeMutablePointer<ifaddrs>?
        guard getifaddrs(&list) == 0 else { return }
        defer { freeifaddrs(list) }
        var p = list
        while let ifa = p {
            defer { p = ifa.pointee.ifa_next }
            let flags = Int32(bitPattern: ifa.pointee.ifa_flags)
            guard flags & Int32(IFF_UP) != 0, flags & Int32(IFF_BROADCAST) != 0,
                  flags & Int32(IFF_LOOPBACK) == 0,
                  let a = ifa.pointee.ifa_addr, a.pointee.sa_family == sa_family_t(AF_INET),
                  let m = ifa.pointee.ifa_netmask else { continue }
            // address | ~netmask: `ip addr add A/N` without `brd +` leaves the broadcast unset.
            var to = a.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee }
            let mask = m.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { $0.pointee.sin_addr.s_addr }
            to.sin_addr.s_addr |= ~mask
            to.sin_port = port.bigEndian
            let n = beacon.withUnsafeBytes { b in
                withUnsafePointer(to: &to) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                    }
                }
            }
            if n > 0 { sent &+= 1 }
        }
    }

    func close() { Glibc.close(fd) }
}

extension DriverLoop where Transport: ~Copyable {
    /// Beacons out when due, beacons in to the engine. Called on every pass of the driver loop
    /// (which wakes at least every heartbeat interval); does work at most every 50 ms.
    mutating func serviceDiscovery() {
        let now = clock.now
        guard var d = discovery, now >= d.nextPoll else { return }
        d.nextPoll = now &+ DiscoverySocket.pollInterval
        let found = d.service(now: now)
        discovery = d
        guard !found.isEmpty else { return }
        for (b, source) in found {
            engine.discovered(endpoint: b.endpoint(seenFrom: source), node: b.nodeID, now: now, rng: &rng, into: &actions)
        }
        perform()
    }
}
