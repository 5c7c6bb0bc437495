/// A configured seed endpoint and its dial back-off.
struct SeedState: Sendable {
    var endpoint: String
    var failures: UInt32 = 0
    var retryAt: UInt64 = 0
    /// The node this seed leads to (also satisfies the seed when its link has another spelling).
    var node: NodeID?
    /// The seed turned out to be this engine itself.
    var disabled = false
    init(endpoint: String) { self.endpoint = endpoint }
}

/// The seeds, in configuration order (links refer to them by index); every change to them
/// counts in its generation (the cached deadline compares it).
typealias SeedList = CountedArray<SeedState>
