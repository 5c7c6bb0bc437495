/// The one percentile definition of Warren's reports (simulator, conformance runs, benchmarks):
/// **nearest rank**. The q-th percentile of n values is the value of rank ⌈q·n⌉ (1-based, at
/// least 1) in ascending order: the smallest value with at least a fraction q of all values at
/// or below it. It is always one of the values (no interpolation); the median (q = 0.5) of an
/// even count is the lower middle value.
public enum Percentile {
    /// The 0-based index of the q-th percentile among `count` sorted values (`count` > 0).
    public static func index(count: Int, _ q: Double) -> Int {
        precondition(count > 0, "no values")
        // A hair below the product, so that 0.99 × 100 (98.999…) and 0.5 × 10 land on their rank.
        let rank = Int((q * Double(count) - 1e-9).rounded(.up))
        return min(max(rank, 1), count) - 1
    }

    /// The q-th percentile of already sorted values, nil for none.
    public static func of<T: Comparable>(sorted values: [T], _ q: Double) -> T? {
        values.isEmpty ? nil : values[index(count: values.count, q)]
    }
}

/// The q-th percentile (nearest rank, `Percentile`) of `values` in any order; NaN for none.
public func percentile(_ values: [Double], _ q: Double) -> Double {
    Percentile.of(sorted: values.sorted(), q) ?? .nan
}

/// The median (nearest rank: the lower middle value of an even count); NaN for none.
public func median(_ values: [Double]) -> Double { percentile(values, 0.5) }
