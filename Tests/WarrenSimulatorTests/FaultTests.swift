import Testing
import WarrenTestSupport
import WarrenEngine
@testable import WarrenSimulator

/// The faults of `warren simulate` (`SimulationConfig.killFraction`, `partitionDuration`):
/// an overlay with bounded views is one component again within seconds of half of it being
/// killed at once, and after a 2-minute partition heals; from then on every message is
/// delivered. And the options' rules.
///
/// Serialized: each run is seconds of CPU on this 2-core machine, and three at once starved the
/// other suites' time-bounded tests in CI.
@Suite(.serialized) struct FaultTests {
    /// 300 nodes with views, lan timers, a message every 100 ms.
    static func overlay(messages: Int, seed: UInt64 = 5) -> SimulationConfig {
        var c = SimulationConfig()
        c.nodes = 300
        c.degree = 4
        c.messages = messages
        c.seed = seed
        c.messageInterval = 100_000_000
        return c
    }

    @Test func survivesHalfKilledAtOnce() async {
        var c = Self.overlay(messages: 300)   // 30 s: the kill at 10 s, 20 s after it
        c.killFraction = 0.5
        let config = c
        let r = await onOwnThread { Simulation.run(config) }
        #expect(r.formed)
        #expect(r.killed == 150)
        #expect(r.faultStart == 10_000_000_000 && r.faultEnd == r.faultStart)
        #expect(r.before.sent == 100 && r.before.ratio == 1)
        // Half the links are gone at once: the survivors fall apart at first ...
        #expect(r.componentsAtFault > 1 && r.liveAtFault == 150)
        // ... and are one overlay again within seconds (dead after 5 s with the lan preset).
        let healed = r.connectivityRecovery ?? .max
        #expect(healed <= 10_000_000_000, "one component \(healed) ns after the kill")
        #expect(r.components == 1 && r.largestComponent == 150 && r.liveNodes == 150)
        // Every message after the recovery is delivered; the last 5-s bucket entirely.
        let delivered = r.deliveryRecovery ?? .max
        #expect(delivered <= 10_000_000_000, "delivery 1.0 from \(delivered) ns after the kill")
        #expect(r.timeline.last.map { $0.sent > 0 && $0.ratio == 1 } == true)
        #expect(r.after.sent + r.before.sent == r.messages)
        #expect(r.messages + r.uncounted == 300)
        #expect(r.exactlyOnceViolations == 0)
        #expect(r.meanDegree >= 3)
    }

    @Test func partitionHealsByItself() async {
        var c = Self.overlay(messages: 400)
        c.nodes = 150
        c.messageInterval = 500_000_000        // 200 s: the cut from 60 s ...
        c.faultAt = 0.3
        c.partitionDuration = 120_000_000_000  // ... to 180 s, 20 s after it
        let config = c
        let r = await onOwnThread { Simulation.run(config) }
        #expect(r.formed)
        #expect(r.faultStart == 60_000_000_000 && r.faultEnd == 180_000_000_000)
        #expect(r.before.ratio == 1)
        // Across the cut nothing arrives: about half the messages of the partition are lost,
        // and the halves are apart just before it heals.
        #expect(r.during.ratio > 0.3 && r.during.ratio < 0.7, "during \(r.during.ratio)")
        #expect(r.componentsAtFault >= 2)
        let healed = r.connectivityRecovery ?? .max
        #expect(healed <= 10_000_000_000, "one component \(healed) ns after the heal")
        #expect(r.components == 1 && r.largestComponent == 150)
        let delivered = r.deliveryRecovery ?? .max
        #expect(delivered <= 10_000_000_000, "delivery 1.0 from \(delivered) ns after the heal")
        #expect(r.timeline.last.map { $0.sent > 0 && $0.ratio == 1 } == true)
        #expect(r.uncounted == 0)
        #expect(r.exactlyOnceViolations == 0)
    }

    /// The faults draw from the workload's generator: any number of threads, the same report.
    @Test func threadsDoNotChangeTheFaults() async {
        var kill = Self.overlay(messages: 120, seed: 9)
        kill.nodes = 120
        kill.killFraction = 0.4
        kill.churnPercentPerMinute = 30
        var cut = Self.overlay(messages: 120, seed: 9)
        cut.nodes = 120
        cut.partitionDuration = 4_000_000_000
        cut.loss = 0.02
        for c in [kill, cut] {
            let one = await onOwnThread { Simulation.run(c, threads: 1) }
            let two = await onOwnThread { Simulation.run(c, threads: 2) }
            #expect(one == two)
            #expect(one.text == two.text)
            #expect(one.csvRow == two.csvRow)
        }
    }

    /// No fault: nothing of the fault is reported, the draws are those of the build before
    /// faults (every slot is live), and the overlay is one component at the end.
    @Test func noFaultNoFaultFigures() {
        let r = Simulation.run(SimulatorTests.small())
        #expect(r.killed == 0 && r.uncounted == 0 && r.deliveryRecovery == nil && r.connectivityRecovery == nil)
        #expect(r.components == 1 && r.liveNodes == 60)
        #expect(!r.text.contains("fault:"))
        #expect(r.timeline.reduce(0) { $0 + $1.sent } == r.messages)
    }

    @Test func faultOptionsNameTheirRule() {
        func problem(_ change: (inout SimulationConfig) -> Void) -> String? {
            var c = Self.overlay(messages: 300)
            change(&c)
            return c.faultProblem
        }
        #expect(problem { _ in } == nil)
        #expect(problem { $0.killFraction = 0.5 } == nil)
        #expect(problem { $0.partitionDuration = 10_000_000_000 } == nil)
        #expect(problem { $0.killFraction = 1 }?.contains("--kill must be") == true)
        #expect(problem { $0.killFraction = -0.1 }?.contains("--kill must be") == true)
        #expect(problem { $0.killFraction = .nan }?.contains("--kill must be") == true)
        #expect(problem { $0.faultAt = 1 }?.contains("--fault-at") == true)
        #expect(problem { $0.faultAt = 0 }?.contains("--fault-at") == true)
        #expect(problem { $0.killFraction = 0.5; $0.partitionDuration = 1_000_000_000 }?.contains("one fault each") == true)
        #expect(problem { $0.killFraction = 0.5; $0.messages = 0 }?.contains("--messages > 0") == true)
        #expect(problem { $0.killFraction = 0.001 }?.contains("kills no node") == true)
        #expect(problem { $0.killFraction = 0.999 }?.contains("fewer than 2 nodes") == true)
        // 30 s of stream, the cut from 10 s: 20 s is too long.
        #expect(problem { $0.partitionDuration = 20_000_000_000 }?.contains("does not end before the stream") == true)
        #expect(problem { $0.partitionDuration = 19_900_000_000 } == nil)
    }
}
