import Foundation
import Glibc

/// systemd's readiness protocol (sd_notify): datagrams to `$NOTIFY_SOCKET`, when it is set
/// (a unit with `Type=notify`). Nothing happens otherwise.
enum SystemdNotify {
    static func send(_ state: String) {
        guard let path = ProcessInfo.processInfo.environment["NOTIFY_SOCKET"], !path.isEmpty else { return }
        let s = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard s >= 0 else { return }
        defer { close(s) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }   // the abstract namespace
        let length = withUnsafeMutableBytes(of: &addr.sun_path) { raw -> Int in
            let n = min(bytes.count, raw.count - 1)
            raw.copyBytes(from: bytes.prefix(n))
            return n
        }
        let size = socklen_t(MemoryLayout<sa_family_t>.size + length)
        var text = state
        _ = text.withUTF8 { b in
            withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(s, b.baseAddress, b.count, 0, $0, size) }
            }
        }
    }

    /// `MONOTONIC_USEC`, which `RELOADING=1` carries for `Type=notify-reload`.
    static var monotonicMicros: UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000 + UInt64(ts.tv_nsec) / 1000
    }
}
