import CSodium

extension MessageID {
    /// The message id of a DATA envelope: BLAKE2b with a 16-byte output, no key.
    public init(envelope: UnsafeBufferPointer<UInt8>) {
        _ = SodiumRuntime.ready
        var out: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &out) { o in
            _ = crypto_generichash(
                o.baseAddress!.assumingMemoryBound(to: UInt8.self), 16,
                envelope.baseAddress, UInt64(envelope.count), nil, 0)
        }
        self.init(hi: UInt64(bigEndian: out.0), lo: UInt64(bigEndian: out.1))
    }

    /// The message id of a DATA envelope: BLAKE2b with a 16-byte output, no key.
    public init(envelope: [UInt8]) {
        self = envelope.withUnsafeBufferPointer { MessageID(envelope: $0) }
    }
}
