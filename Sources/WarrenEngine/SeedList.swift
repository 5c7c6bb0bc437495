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

/// The seeds, in configuration order (links refer to them by index), and a generation that
/// changes with every change to them (the cached deadline compares it).
struct SeedList: Sendable, RandomAccessCollection {
    private var seeds: [SeedState] = []
    private(set) var generation: UInt64 = 0

    var startIndex: Int { 0 }
    var endIndex: Int { seeds.count }

    subscript(i: Int) -> SeedState {
        _read { yield seeds[i] }
        _modify {
            generation &+= 1
            yield &seeds[i]
        }
    }

    mutating func append(_ s: SeedState) {
        seeds.append(s)
        generation &+= 1
    }
}
