import Foundation
import Testing
import WarrenTestSupport

/// The hex vectors checked in FrameTests are the ones printed in docs/PROTOCOL.md.
@Suite(.computeLane) struct ProtocolDocTests {
    @Test func vectorsAppearInProtocolDoc() throws {
        let here = URL(fileURLWithPath: #filePath)
        let doc = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/PROTOCOL.md")
        let text = try String(contentsOf: doc, encoding: .utf8).filter { !$0.isWhitespace }
        for v in [Vectors.data, Vectors.dataID, Vectors.dataForwarded, Vectors.hello, Vectors.helloLeaf,
                  Vectors.heartbeat, Vectors.peers, Vectors.bye, Vectors.helloViews, Vectors.disconnect, Vectors.forwardJoin,
                  "cae66941d9efbd404e4d88758ea67670", "c2472c0ac37a8dbdb25f05ada0d82643", DiscoveryTests.vector, BatchTests.vector,
                  RoutingFrameTests.routed, RoutingFrameTests.nodes, RoutingFrameTests.store, RoutingFrameTests.helloRouting,
                  "7f9c299f1d9bbe856fbf2c98f0f91435"] {
            #expect(text.contains(v.filter { !$0.isWhitespace }), "missing vector \(v)")
        }
    }
}
