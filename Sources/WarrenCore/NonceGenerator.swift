import CSodium
import Synchronization

/// Fresh 24-byte nonces without a system call per message.
///
/// A ChaCha20 key is drawn from the kernel (libsodium `randombytes_buf`) once; nonces are
/// consecutive 24-byte pieces of the ChaCha20 keystream under that key, drawn 64 at a time with a
/// 64-bit block counter that never repeats (re-keyed from the kernel every 2^32 batches). Outputs are indistinguishable from
/// random and never repeat, which is what XSalsa20-Poly1305 requires of its nonces.
final class NonceGenerator: Sendable {
    private static let batch = 64   // nonces drawn per keystream call
    private struct State {
        var key = [UInt8](repeating: 0, count: 32)
        var counter: UInt64 = 0
        var buffer = [UInt8](repeating: 0, count: 24 * NonceGenerator.batch)
        var used = NonceGenerator.batch
    }
    private let state: Mutex<State>

    init() {
        var s = State()
        s.key.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, 32) }
        state = Mutex(s)
    }

    func fill(_ out: inout [UInt8]) {
        precondition(out.count == EnvelopeCodec.nonceLength)
        out.withUnsafeMutableBytes { fill($0) }
    }

    /// Writes one nonce into the first 24 bytes of `out`.
    func fill(_ out: UnsafeMutableRawBufferPointer) {
        precondition(out.count >= EnvelopeCodec.nonceLength)
        state.withLock { s in
            if s.used == Self.batch {
                if s.counter == UInt64(UInt32.max) {
                    s.key.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, 32) }
                    s.counter = 0
                }
                s.counter &+= 1
                var n = s.counter.littleEndian
                let key = s.key
                withUnsafeBytes(of: &n) { nonce in
                    key.withUnsafeBufferPointer { k in
                        s.buffer.withUnsafeMutableBufferPointer { o in
                            _ = crypto_stream_chacha20(o.baseAddress!, UInt64(o.count),
                                                       nonce.baseAddress!.assumingMemoryBound(to: UInt8.self), k.baseAddress!)
                        }
                    }
                }
                s.used = 0
            }
            let off = s.used * 24
            s.buffer.withUnsafeBytes { b in
                out.baseAddress!.copyMemory(from: b.baseAddress! + off, byteCount: 24)
            }
            s.used += 1
        }
    }
}
