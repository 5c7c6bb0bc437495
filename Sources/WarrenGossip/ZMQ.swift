import CZeroMQ
import Glibc

/// A ZeroMQ context. Contexts are thread-safe (sockets are not): one is shared by every node of
/// the process, so 32+ nodes run on one I/O thread.
// @unchecked: a raw pointer, and libzmq contexts are thread-safe (zmq_ctx_new(3)).
public struct ZMQContext: @unchecked Sendable {
    public let handle: UnsafeMutableRawPointer

    /// The process-wide context (1 I/O thread — on 2 cores a second one cost 35 % of relay
    /// throughput in context switches — and up to 16,384 sockets).
    public static let shared: ZMQContext = {
        let h = zmq_ctx_new()!
        zmq_ctx_set(h, ZMQ_IO_THREADS, 1)
        zmq_ctx_set(h, ZMQ_MAX_SOCKETS, 16_384)
        return ZMQContext(handle: h)
    }()

    public init(handle: UnsafeMutableRawPointer) { self.handle = handle }
}

public struct ZMQError: Error, CustomStringConvertible, Sendable {
    public var operation: String
    public var code: Int32
    public init(_ operation: String, code: Int32 = zmq_errno()) { self.operation = operation; self.code = code }
    public var description: String { "\(operation): \(String(cString: zmq_strerror(code)))" }
}

/// A socket, used only on the thread that created it.
struct ZMQSocket {
    let handle: UnsafeMutableRawPointer

    init(_ ctx: ZMQContext, type: Int32) throws {
        guard let h = zmq_socket(ctx.handle, type) else { throw ZMQError("zmq_socket") }
        handle = h
    }

    /// Sets an option; a refusal (an unknown option, a value out of range, a key of the wrong
    /// length) is an error naming the option, never ignored.
    func set(_ option: Int32, _ value: Int32) throws {
        var v = value
        guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int32>.size) == 0 else { throw ZMQError("set socket option \(option)") }
    }

    /// An integer option (`ZMQ_FD`, `ZMQ_EVENTS`); nil if ZeroMQ refuses it.
    func get(_ option: Int32) -> Int32? {
        var v: Int32 = 0
        var n = MemoryLayout<Int32>.size
        return zmq_getsockopt(handle, option, &v, &n) == 0 ? v : nil
    }

    func set(_ option: Int32, int64 value: Int64) throws {
        var v = value
        guard zmq_setsockopt(handle, option, &v, MemoryLayout<Int64>.size) == 0 else { throw ZMQError("set socket option \(option)") }
    }

    func set(_ option: Int32, bytes: [UInt8]) throws {
        let rc = bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        guard rc == 0 else { throw ZMQError("set socket option \(option)") }
    }

    func bind(_ endpoint: String) throws {
        guard zmq_bind(handle, endpoint) == 0 else { throw ZMQError("bind \(endpoint)") }
    }

    func connect(_ endpoint: String) throws {
        guard zmq_connect(handle, endpoint) == 0 else { throw ZMQError("connect \(endpoint)") }
    }

    var lastEndpoint: String {
        var buf = [CChar](repeating: 0, count: 512)
        var len = buf.count
        zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buf, &len)
        return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func close() { zmq_close(handle) }

    /// Sends a 2-part message without blocking. Returns false if the high-water mark was reached
    /// (with ZMQ_XPUB_NODROP the socket refuses instead of silently dropping).
    func send(topic: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer) -> Bool {
        if zmq_send(handle, topic.baseAddress, topic.count, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 { return false }
        // Multi-part messages are atomic: once the first part is queued the second is too.
        return zmq_send(handle, body.baseAddress, body.count, ZMQ_DONTWAIT) >= 0
    }
}

/// Monotonic nanoseconds.
@inline(__always)
public func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}
