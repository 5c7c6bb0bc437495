import Foundation
#if canImport(Glibc)
import Glibc
#endif
import GRPCCore
import Synchronization
import Testing
import Warren
import WarrenConformance

/// Many calls on one client connection, and how streams end when the server goes away.
@Suite(.serialized, .timeLimit(.minutes(5))) struct BridgeConnectionTests {
    /// The server advertises its stream limit in its first SETTINGS frame (read off the wire).
    @Test func settingsAdvertiseTheStreamLimit() async throws {
        let overlay = try await GossipOverlay.start(nodes: 1, edges: [])
        for limit in [GRPCBridgeConfiguration.defaultMaxConcurrentStreams, 37] {
            let served = try await ServedBridge.start(overlay.backends[0],
                                                      GRPCBridgeConfiguration(host: "127.0.0.1", port: 0, maxConcurrentStreams: limit))
            let settings = try serverSettings(port: served.port)
            #expect(settings[0x3] == UInt32(limit), "SETTINGS_MAX_CONCURRENT_STREAMS in \(settings)")
            await served.stop()
        }
        await overlay.close()
    }

    /// 1,000 Subscribe streams open at once on one connection, then 1,000 concurrent Publish calls
    /// on it: every stream goes live and receives its envelope, every call succeeds, and the
    /// connection still serves calls. (Then the client cancels the 1,000 streams at once, which
    /// swift-nio-http2's rapid-reset rule answers by closing the connection: docs/GRPC.md.)
    @Test func thousandConcurrentStreamsOnOneConnection() async throws {
        let count = 1000
        let overlay = try await GossipOverlay.start(nodes: 1, edges: [])
        let served = try await ServedBridge.start(overlay.backends[0])
        let bridge = served.bridge
        let sender = PrivateKey.generate()
        let keys = (0..<count).map { _ in PrivateKey.generate() }
        let envelopes = try keys.enumerated().map { i, k in try sealed(from: sender, to: k.publicKey, id: Int32(i)) }
        let live = SharedCount(), got = SharedCount(), done = SharedCount()

        let outcome = try await withRawClient(served.address) { raw -> (received: [Int32?], published: Int, after: String) in
            try await withThrowingTaskGroup(of: (Int, Int32?).self) { group in
                for (i, k) in keys.enumerated() {
                    group.addTask {
                        var params = Cunicu_Signaling_SubscribeParams()
                        params.key = k.publicKey.data
                        return try await raw.subscribe(params) { response in
                            var it = response.messages.makeAsyncIterator()
                            _ = try await it.next()   // "live"
                            live.value.add(1, ordering: .relaxed)
                            let env = try await it.next()
                            let port = try env.map { try EnvelopeCodec.shared.open($0, with: k).1.candidate.port }
                            got.value.add(1, ordering: .relaxed)
                            while done.value.load(ordering: .relaxed) == 0 { try await Task.sleep(for: .milliseconds(10)) }
                            return (i, port)   // returning ends (cancels) the stream
                        }
                    }
                }
                let allLive = await Conformance.eventually(timeout: .seconds(120)) {
                    live.value.load(ordering: .relaxed) == count && bridge.counters.openStreams == count
                }
                try #require(allLive, "\(live.value.load(ordering: .relaxed)) live, \(bridge.counters.openStreams) open on the server")
                let published = try await withThrowingTaskGroup(of: Bool.self) { pubs in
                    for env in envelopes { pubs.addTask { _ = try await raw.publish(env); return true } }
                    var ok = 0
                    for try await done in pubs where done { ok += 1 }
                    return ok
                }
                try #require(await Conformance.eventually(timeout: .seconds(60)) { got.value.load(ordering: .relaxed) == count })
                // The connection still serves another call.
                let info = try await raw.getBuildInfo(Cunicu_Empty())
                done.value.store(1, ordering: .relaxed)
                var received = [Int32?](repeating: nil, count: count)
                for try await (i, port) in group { received[i] = port }
                return (received, published, info.version)
            }
        }
        #expect(outcome.published == count)
        #expect(outcome.received == (0..<count).map { Int32($0) }, "every stream got exactly its own envelope")
        #expect(outcome.after == WarrenVersion.string)
        #expect(bridge.counters.published == UInt64(count))
        #expect(await Conformance.eventually { bridge.counters.openStreams == 0 })
        // The 1,000 cancellations broke the rapid-reset rule: that close is counted, not silent.
        #expect(await Conformance.eventually { bridge.counters.connectionErrors == 1 })
        await served.stop()
        await overlay.close()
    }

    /// With a small advertised limit the client queues what does not fit: 20 Subscribe streams
    /// and 1,000 concurrent Publish calls on one connection to a bridge that allows 32 at a time
    /// all succeed.
    @Test func callsBeyondTheAdvertisedLimitQueue() async throws {
        let limit = 32, streams = 20, calls = 1000
        let overlay = try await GossipOverlay.start(nodes: 1, edges: [])
        let served = try await ServedBridge.start(overlay.backends[0],
                                                  GRPCBridgeConfiguration(host: "127.0.0.1", port: 0, maxConcurrentStreams: limit))
        let bridge = served.bridge
        let sender = PrivateKey.generate()
        let keys = (0..<streams).map { _ in PrivateKey.generate() }
        let envelopes = try (0..<calls).map { i in try sealed(from: sender, to: keys[i % streams].publicKey, id: Int32(i)) }
        let live = SharedCount()

        let (counts, published) = try await withRawClient(served.address) { raw -> ([Int], Int) in
            try await withThrowingTaskGroup(of: (Int, Int).self) { group in
                for (i, k) in keys.enumerated() {
                    group.addTask {
                        var params = Cunicu_Signaling_SubscribeParams()
                        params.key = k.publicKey.data
                        return try await raw.subscribe(params) { response in
                            var it = response.messages.makeAsyncIterator()
                            _ = try await it.next()
                            live.value.add(1, ordering: .relaxed)
                            var n = 0
                            while n < calls / streams, try await it.next() != nil { n += 1 }
                            return (i, n)
                        }
                    }
                }
                try #require(await Conformance.eventually(timeout: .seconds(60)) { live.value.load(ordering: .relaxed) == streams })
                let published = try await withThrowingTaskGroup(of: Void.self) { pubs in
                    for env in envelopes { pubs.addTask { _ = try await raw.publish(env) } }
                    var ok = 0
                    for try await _ in pubs { ok += 1 }
                    return ok
                }
                var counts = [Int](repeating: 0, count: streams)
                for try await (i, n) in group { counts[i] = n }
                return (counts, published)
            }
        }
        #expect(published == calls)
        #expect(counts == [Int](repeating: calls / streams, count: streams))
        #expect(bridge.counters.published == UInt64(calls))
        #expect(bridge.counters.connectionErrors == 0)
        await served.stop()
        await overlay.close()
    }

    /// A client that ignores the advertised limit loses its connection (swift-nio-http2's GOAWAY),
    /// and the bridge counts and logs that instead of staying silent.
    @Test func clientBeyondTheLimitIsCountedWhenClosed() async throws {
        let overlay = try await GossipOverlay.start(nodes: 1, edges: [])
        let served = try await ServedBridge.start(overlay.backends[0],
                                                  GRPCBridgeConfiguration(host: "127.0.0.1", port: 0, maxConcurrentStreams: 8))
        let goAway = try openStreamsIgnoringTheLimit(port: served.port, streams: 9)
        #expect(goAway == 0x1, "GOAWAY PROTOCOL_ERROR")
        #expect(await Conformance.eventually { served.bridge.counters.connectionErrors == 1 })
        await served.stop()
        await overlay.close()
    }

    /// A graceful stop ends a Subscribe stream with UNAVAILABLE (never OK, which cunīcu's client
    /// takes as final); a client subscribed through the grpc:// backend receives again from the
    /// restarted node on the same port.
    @Test func gracefulStopEndsStreamsWithUnavailable() async throws {
        let overlay = try await GossipOverlay.start(nodes: 1, edges: [])
        let served = try await ServedBridge.start(overlay.backends[0])
        let port = served.port
        let me = PrivateKey.generate(), other = PrivateKey.generate()

        let client = try await Backends.make(url: "grpc://\(served.address)?insecure=true") as! GRPCBackend
        let h = RecordingHandler()
        try await client.subscribe(KeyPair(ours: me, theirs: .zero), h)
        // And a raw stream, to see the status the server ends it with.
        let live = Atomic<Bool>(false)
        let raw = Task { () -> RPCError.Code? in
            try await withRawClient(served.address) { raw -> RPCError.Code? in
                var params = Cunicu_Signaling_SubscribeParams()
                params.key = me.publicKey.data
                do {
                    try await raw.subscribe(params) { r in
                        for try await _ in r.messages { live.store(true, ordering: .relaxed) }
                    }
                    return nil   // ended with OK
                } catch let e as RPCError { return e.code }
            }
        }
        #expect(await Conformance.eventually { live.load(ordering: .relaxed) && served.bridge.counters.openStreams == 2 })

        // The node stops the way `warren node` does on SIGTERM: the bridge, then the overlay node.
        await served.stop()
        await overlay.close()
        #expect(try await raw.value == .unavailable)

        // The node comes back (a new overlay node, the same gRPC port).
        let overlay2 = try await GossipOverlay.start(nodes: 1, edges: [])
        let served2 = try await ServedBridge.start(overlay2.backends[0], GRPCBridgeConfiguration(host: "127.0.0.1", port: port))
        #expect(await Conformance.eventually(timeout: .seconds(15)) { served2.bridge.counters.openStreams == 1 })
        try await overlay2.backends[0].publish(KeyPair(ours: other, theirs: me.publicKey), Conformance.candidate(id: 4))
        #expect(await Conformance.eventually { h.count == 1 })
        #expect(h.receipts(PublicKeyPair(ours: me.publicKey, theirs: other.publicKey)).map(\.id) == [4])
        try await client.close()
        await served2.stop()
        await overlay2.close()
    }

    /// Closing the node under a running bridge ends its streams with UNAVAILABLE too.
    @Test func closingTheNodeEndsStreamsWithUnavailable() async throws {
        let overlay = try await GossipOverlay.start(nodes: 1, edges: [])
        let served = try await ServedBridge.start(overlay.backends[0])
        let key = PrivateKey.generate()
        let live = Atomic<Bool>(false)
        let raw = Task { () -> RPCError.Code? in
            try await withRawClient(served.address) { raw -> RPCError.Code? in
                var params = Cunicu_Signaling_SubscribeParams()
                params.key = key.publicKey.data
                do {
                    try await raw.subscribe(params) { r in
                        for try await _ in r.messages { live.store(true, ordering: .relaxed) }
                    }
                    return nil   // ended with OK
                } catch let e as RPCError { return e.code }
            }
        }
        #expect(await Conformance.eventually { live.load(ordering: .relaxed) })
        try await overlay.backends[0].close()
        #expect(try await raw.value == .unavailable)
        // New streams are refused with UNAVAILABLE as well.
        let again = try await withRawClient(served.address) { raw -> RPCError.Code? in
            var params = Cunicu_Signaling_SubscribeParams()
            params.key = key.publicKey.data
            do {
                try await raw.subscribe(params) { r in for try await _ in r.messages {} }
                return nil   // ended with OK
            } catch let e as RPCError { return e.code }
        }
        #expect(again == .unavailable)
        await served.stop()
        await overlay.close()
    }
}

/// Opens `streams` Subscribe streams at once on a raw HTTP/2 connection (after acknowledging the
/// server's settings, so its limit is in force) and returns the error code of the GOAWAY the
/// server answers with, if any.
func openStreamsIgnoringTheLimit(port: Int, streams: Int) throws -> UInt32? {
    let fd = try connectedSocket(port: port)
    defer { close(fd) }
    func frame(_ type: UInt8, _ flags: UInt8, _ stream: UInt32, _ payload: [UInt8]) -> [UInt8] {
        [UInt8(payload.count >> 16), UInt8(payload.count >> 8 & 0xff), UInt8(payload.count & 0xff), type, flags,
         UInt8(stream >> 24), UInt8(stream >> 16 & 0xff), UInt8(stream >> 8 & 0xff), UInt8(stream & 0xff)] + payload
    }
    func literal(_ index: UInt8, _ value: String) -> [UInt8] {   // literal without indexing, indexed name < 15
        [index, UInt8(value.utf8.count)] + Array(value.utf8)
    }
    try sendAll(fd, Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + frame(0x4, 0, 0, []))
    let reader = FrameReader(fd: fd)
    while true {   // the server's SETTINGS, then acknowledge them
        let (type, flags, _) = try reader.next()
        if type == 0x4 && flags & 0x1 == 0 { break }
    }
    try sendAll(fd, frame(0x4, 0x1, 0, []))
    // :method POST, :scheme http, :path, :authority, content-type, te (HPACK, no Huffman coding)
    let headers: [UInt8] = [0x83, 0x86] + literal(0x04, "/cunicu.signaling.Signaling/Subscribe")
        + literal(0x01, "localhost") + [0x0f, 0x10, 16] + Array("application/grpc".utf8)
        + [0x00, 2] + Array("te".utf8) + [8] + Array("trailers".utf8)
    var out: [UInt8] = []
    for i in 0..<streams { out += frame(0x1, 0x4, UInt32(2 * i + 1), headers) }   // HEADERS, END_HEADERS
    try sendAll(fd, out)
    while let (type, _, payload) = try? reader.next() {
        if type == 0x7 { return payload.count >= 8 ? payload[4..<8].reduce(0) { $0 << 8 | UInt32($1) } : nil }
    }
    return nil
}

func connectedSocket(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(.EIO) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { close(fd); throw POSIXError(.ECONNREFUSED) }
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    return fd
}

func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
    var sent = 0
    while sent < bytes.count {
        let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + sent, bytes.count - sent, 0) }
        guard n > 0 else { throw POSIXError(.EIO) }
        sent += n
    }
}

/// Reads whole HTTP/2 frames from a socket.
struct FrameReader {
    let fd: Int32

    func read(_ n: Int) throws -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n), got = 0
        while got < n {
            let r = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, n - got, 0) }
            guard r > 0 else { throw POSIXError(.EIO) }
            got += r
        }
        return out
    }
    func next() throws -> (type: UInt8, flags: UInt8, payload: [UInt8]) {
        let h = try read(9)
        let length = Int(h[0]) << 16 | Int(h[1]) << 8 | Int(h[2])
        return (h[3], h[4], try read(length))
    }
}

/// A counter that escaping child tasks can share.
final class SharedCount: Sendable {
    let value = Atomic<Int>(0)
}

/// Connects to a local HTTP/2 server with the client preface and an empty SETTINGS frame, and
/// returns the parameters of the server's first (non-ACK) SETTINGS frame.
func serverSettings(port: Int) throws -> [UInt16: UInt32] {
    let fd = try connectedSocket(port: port)
    defer { close(fd) }
    try sendAll(fd, Array("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".utf8) + [0, 0, 0, 4, 0, 0, 0, 0, 0])
    let reader = FrameReader(fd: fd)
    for _ in 0..<8 {
        let (type, flags, payload) = try reader.next()
        guard type == 0x4, flags & 0x1 == 0 else { continue }   // SETTINGS, not an ACK
        var settings: [UInt16: UInt32] = [:]
        for i in stride(from: 0, to: payload.count - 5, by: 6) {
            let id = UInt16(payload[i]) << 8 | UInt16(payload[i + 1])
            settings[id] = payload[(i + 2)..<(i + 6)].reduce(0) { $0 << 8 | UInt32($1) }
        }
        return settings
    }
    throw POSIXError(.EPROTO)
}
