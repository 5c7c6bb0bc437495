import WarrenEngine
import WarrenSimulator

let msNS: UInt64 = 1_000_000
let second: UInt64 = 1_000_000_000

func hex(_ s: String) -> [UInt8] {
    var out = [UInt8]()
    var it = s.filter { !$0.isWhitespace }.makeIterator()
    while let a = it.next(), let b = it.next() {
        out.append(UInt8(String([a, b]), radix: 16)!)
    }
    return out
}

func hexString(_ b: [UInt8]) -> String {
    b.map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
}

/// A non-zero test topic.
func topic(_ n: UInt8) -> Topic { Topic(bytes: [UInt8](repeating: n, count: 31) + [1])! }

func endpoint(_ i: Int) -> String { "tcp://127.0.0.1:\(7000 + i)" }

/// Local preset with explicit topology by default (no random extra links).
func cfg(_ i: Int, seeds: [Int] = [], degree: Int = 0, leaf: Bool = false) -> EngineConfig {
    var c = EngineConfig.local(endpoint: endpoint(i), seeds: seeds.map(endpoint))
    c.targetDegree = degree
    c.leaf = leaf
    return c
}

extension InMemoryNetwork {
    /// Nodes 0..<n; node i seeds the given nodes.
    static func build(n: Int, seed: UInt64 = 1, options: Options = Options(),
                      edges: (Int) -> [Int], degree: Int = 0) -> InMemoryNetwork {
        var net = InMemoryNetwork(seed: seed, options: options)
        for i in 0..<n { net.addNode(config: cfg(i, seeds: edges(i), degree: degree)) }
        return net
    }

    func isUp(_ i: Int, _ j: Int) -> Bool {
        guard let id = nodes[j].nodeID else { return false }
        return neighbourIDs(i).contains(id)
    }

    func deliveries(_ i: Int, _ id: MessageID) -> [Delivery] {
        nodes[i].deliveries.filter { $0.id == id }
    }
}

/// A random envelope.
func envelope(_ rng: inout SeededGenerator, _ n: Int = 64) -> [UInt8] {
    (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
}
