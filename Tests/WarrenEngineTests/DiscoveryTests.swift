import PropertyBased
import Testing
import WarrenTestSupport
import WarrenEngine
import WarrenSimulator

/// LAN discovery in the engine (docs/PROTOCOL.md §8): the beacon codec, and an overlay that forms
/// from beacons alone.
@Suite(.computeLane) struct DiscoveryTests {
    static let vector = "57524e42010102030405060708001374" + "63703a2f2f31302e302e302e393a37303030"

    @Test func beaconVector() throws {
        let b = Beacon(nodeID: Vectors.from, endpoint: "tcp://10.0.0.9:7000")
        #expect(hexString(try #require(b.encode())) == Self.vector)
        #expect(Beacon.decode(hex(Self.vector)) == b)
        #expect(Beacon(nodeID: NodeID(raw: 0), endpoint: "tcp://a:1").encode() == nil)
        #expect(Beacon(nodeID: Vectors.from, endpoint: "").encode() == nil)
    }

    @Test func notBeacons() {
        let v = hex(Self.vector)
        var wrongMagic = v; wrongMagic[0] = 0x58
        var wrongVersion = v; wrongVersion[4] = 2
        var zeroID = v; for i in 5..<13 { zeroID[i] = 0 }
        var badLength = v; badLength[13] = 1
        var badUTF8 = v; badUTF8[v.count - 1] = 0xFF
        for bad in [wrongMagic, wrongVersion, zeroID, badLength, badUTF8, Array(v.dropLast()), v + [0], [], Array(v.prefix(14))] {
            #expect(Beacon.decode(bad) == nil, "accepted \(hexString(bad))")
        }
    }

    /// Edited vectors and garbage: decoding never traps, and what it accepts re-encodes to exactly
    /// the input.
    @Test func acceptedBeaconsAreCanonical() async {
        let v = hex(Self.vector)
        let edited = zip(Gen.uint8(), Gen.uint8()).array(of: 0...4).map { edits in
            var b = v
            for (pos, x) in edits {
                let i = Int(pos) % (b.count + 1)
                if i == b.count { b.append(x) } else if x == 0 { b.remove(at: i) } else { b[i] ^= x }
            }
            return b
        }
        var accepted = 0
        await propertyCheck(count: 5_000, input: edited, Gen.uint8().array(of: 0...40)) { b, garbage in
            for input in [b, garbage] {
                guard let beacon = Beacon.decode(input) else { continue }
                accepted += 1
                #expect(beacon.encode() == input)
            }
        }
        #expect(accepted > 0)
    }

    @Test func wildcardAndLoopbackHostsAreReplacedBySource() {
        func seen(_ e: String) -> String { Beacon(nodeID: Vectors.from, endpoint: e).endpoint(seenFrom: "10.77.0.3") }
        #expect(seen("tcp://127.0.0.1:7000") == "tcp://10.77.0.3:7000")
        #expect(seen("tcp://0.0.0.0:7000") == "tcp://10.77.0.3:7000")
        #expect(seen("tcp://10.77.0.9:7000") == "tcp://10.77.0.9:7000")
        #expect(seen("KEY@tcp://127.0.0.1:7000") == "KEY@tcp://10.77.0.3:7000")
        #expect(seen("KEY@tcp://10.1.1.1:7000") == "KEY@tcp://10.1.1.1:7000")
    }

    /// Four nodes without seeds; each hears the others' beacons. They form one overlay and a
    /// community message reaches every node exactly once. Without beacons nothing forms.
    @Test func overlayFormsFromBeaconsAlone() {
        var net = InMemoryNetwork(seed: 11)
        for i in 0..<4 { net.addNode(config: cfg(i, degree: 3)) }
        for i in 0..<4 { net.subscribe(i, topic(1)) }
        net.run(until: second); #expect(!net.budgetExceeded)
        #expect((0..<4).allSatisfy { net.neighbourIDs($0).isEmpty }, "no seeds: nothing may form yet")
        // One round of beacons, each heard by every node (its own too: ignored).
        for i in 0..<4 {
            let b = Beacon(nodeID: net.engine(i)!.nodeID, endpoint: endpoint(i))
            for j in 0..<4 { net.discover(to: j, b) }
        }
        net.run(for: 2 * second); #expect(!net.budgetExceeded)
        for i in 0..<4 { #expect(net.neighbourIDs(i).count == 3, "node \(i): \(net.neighbourIDs(i).count) neighbours") }
        #expect(!net.engine(0)!.knownEndpoints.contains(endpoint(0)), "own beacon learned")
        let id = net.publish(from: 2, topic: topic(1), envelope: [9, 9])
        net.run(for: second); #expect(!net.budgetExceeded)
        for i in 0..<4 { #expect(net.deliveries(i, id).count == 1, "node \(i)") }
    }

    /// Beacons add to seeds: a node with a seed and a beacon neighbour gets both.
    @Test func beaconsAndSeedsTogether() {
        var net = InMemoryNetwork(seed: 12)
        net.addNode(config: cfg(0, seeds: [1], degree: 3))
        net.addNode(config: cfg(1, degree: 0))
        net.addNode(config: cfg(2, degree: 0))
        net.run(until: second); #expect(!net.budgetExceeded)
        #expect(net.isUp(0, 1) && !net.isUp(0, 2))
        net.discover(to: 0, Beacon(nodeID: net.engine(2)!.nodeID, endpoint: endpoint(2)))
        net.run(for: second); #expect(!net.budgetExceeded)
        #expect(net.isUp(0, 1) && net.isUp(0, 2) && net.isUp(2, 0))
    }
}
