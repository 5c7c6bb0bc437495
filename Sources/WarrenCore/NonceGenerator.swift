import CSodium
import Synchronization

/// Fresh 24-byte nonces without a system call per message.
///
/// A ChaCha20 key is drawn from the kernel (libsodium `randombytes_buf`) once; each nonce is
/// 24 bytes of the ChaCha20 keystream under that key and a 64-bit counter that never repeats
/// (and is re-keyed from the kernel every 2^32 nonces). Outputs are indistinguishable from
/// random and never repeat, which is what XSalsa20-Poly1305 requires of its nonces.
final class NonceGenerator: Sendable {
    private struct State { var key = [UInt8](repeating: 0, count: 32); var counter: UInt64 = 0 }
    private let state: Mutex<State>

    init() {
        var s = State()
        s.key.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, 32) }
        state = Mutex(s)
    }

    func fill(_ out: inout [UInt8]) {
        precondition(out.count == EnvelopeCodec.nonceLength)
        state.withLock { s in
            if s.counter == UInt64(UInt32.max) {
                s.key.withUnsafeMutableBytes { randombytes_buf($0.baseAddress!, 32) }
                s.counter = 0
            }
            s.counter &+= 1
            var n = s.counter.littleEndian
            withUnsafeBytes(of: &n) { nonce in
                s.key.withUnsafeBufferPointer { k in
                    out.withUnsafeMutableBufferPointer { o in
                        _ = crypto_stream_chacha20(o.baseAddress!, 24, nonce.baseAddress!.assumingMemoryBound(to: UInt8.self), k.baseAddress!)
                    }
                }
            }
        }
    }
}
