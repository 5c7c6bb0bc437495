import Testing
import WarrenMeasure

/// The one percentile definition: nearest rank, ⌈q·n⌉ (1-based).
@Suite struct PercentileTests {
    @Test func nearestRank() {
        let ten = (1...10).map(Double.init)
        #expect(median(ten) == 5, "the lower middle of an even count")
        #expect(median([3, 1, 2]) == 2)
        #expect(percentile(ten, 0.9) == 9 && percentile(ten, 0.91) == 10 && percentile(ten, 1) == 10)
        #expect(percentile(ten, 0) == 1, "rank at least 1")
        let hundred = (1...100).map(Double.init)
        #expect(percentile(hundred, 0.99) == 99, "0.99 × 100 is rank 99, not 100")
        #expect(percentile(hundred, 0.5) == 50)
        #expect(percentile([], 0.5).isNaN)
        #expect(Percentile.of(sorted: [UInt64](), 0.5) == nil)
        #expect(Percentile.of(sorted: [7 as UInt64], 0.99) == 7)
    }
}
