import Foundation
import Testing
@testable import WarrenNice
import WarrenSession

extension NiceAgentTests {
    /// With consent freshness (the default), a peer that vanishes after READY is reported as
    /// FAILED (libnice: ≈ 6–10 s), and `send` refuses from then on.
    @Test func lostPeerAfterReadyIsReportedAsFailed() async throws {
        let factory = try loopbackFactory()
        let pair = try Pair(factory)
        pair.start()
        #expect(await pair.a.wait(for: .ready))
        #expect(await pair.b.wait(for: .ready))
        #expect(pair.controlling.send([1]))
        let cut = ContinuousClock.now
        pair.controlled.close()
        #expect(await pair.b.waitClosed())
        #expect(await pair.a.wait(for: .failed, 30))
        let after = ContinuousClock.now - cut
        #expect(after > .seconds(2) && after < .seconds(30), "FAILED after \(after)")
        #expect(!pair.controlling.send([2]))
        #expect(await pair.close())
    }
}
