#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import WarrenEngine

/// One-way latency of a simulated link, drawn once per (directional) link. Nanoseconds.
public enum LatencyDistribution: Sendable, Hashable, CustomStringConvertible {
    /// Every link has this latency.
    case fixed(UInt64)
    /// Uniform in the range.
    case uniform(ClosedRange<UInt64>)
    /// Log-normal: `median × e^(sigma·Z)`, Z standard normal, clamped to ≥ max(1 µs,
    /// median × e^(−5·sigma)) (`minimum`).
    case logNormal(median: UInt64, sigma: Double)

    func draw(_ rng: inout SeededGenerator) -> UInt64 { draw(using: &rng) }

    /// The shortest latency a draw can return (≥ 1 ns). The simulator's threads run in windows
    /// of this length: a frame sent in a window arrives after it.
    public var minimum: UInt64 {
        switch self {
        case .fixed(let v): max(v, 1)
        case .uniform(let r): max(r.lowerBound, 1)
        case .logNormal(let median, let sigma):
            // 5 sigma below the median (a draw below it has probability 3 × 10⁻⁷), and ≥ 1 µs.
            UInt64(min(max(Double(median) * exp(-5 * max(sigma, 0)), 1_000), 1e15))
        }
    }

    public func draw(using rng: inout some RandomNumberGenerator) -> UInt64 {
        switch self {
        case .fixed(let v):
            return max(v, 1)
        case .uniform(let r):
            let span = r.upperBound - r.lowerBound
            return max(span == 0 ? r.lowerBound : r.lowerBound + rng.next(upperBound: span + 1), 1)
        case .logNormal(let median, let sigma):
            // Box–Muller from two 53-bit uniforms in (0, 1].
            let u1 = Double((rng.next() >> 11) + 1) / 9_007_199_254_740_992.0
            let u2 = Double(rng.next() >> 11) / 9_007_199_254_740_992.0
            let z = (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
            let v = Double(median) * exp(sigma * z)
            return max(UInt64(min(v, 1e15)), minimum)   // minimum ≥ 1 µs
        }
    }

    /// The distribution without commas or spaces (a CSV field): `fixed:1.000ms`,
    /// `uniform:0.500ms:2.000ms`, `lognormal:1.000ms:0.5`.
    public var csvField: String {
        switch self {
        case .fixed(let v): "fixed:\(formatMillis(v))ms"
        case .uniform(let r): "uniform:\(formatMillis(r.lowerBound))ms:\(formatMillis(r.upperBound))ms"
        case .logNormal(let m, let s): "lognormal:\(formatMillis(m))ms:\(s)"
        }
    }

    public var description: String {
        switch self {
        case .fixed(let v): "fixed \(formatMillis(v)) ms"
        case .uniform(let r): "uniform \(formatMillis(r.lowerBound))…\(formatMillis(r.upperBound)) ms"
        case .logNormal(let m, let s): "log-normal median \(formatMillis(m)) ms, sigma \(s)"
        }
    }
}

/// Milliseconds with up to 3 decimals, no Foundation.
func formatMillis(_ ns: UInt64) -> String { formatFixed(Double(ns) / 1e6, 3) }

/// `v` with `digits` decimals (rounded), without Foundation; trailing zeros kept.
public func formatFixed(_ v: Double, _ digits: Int) -> String {
    guard v.isFinite else { return v.isNaN ? "nan" : (v < 0 ? "-inf" : "inf") }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let neg = v < 0
    let r = (abs(v) * scale).rounded()
    let whole = UInt64(r / scale)
    var frac = UInt64(r - Double(whole) * scale)
    var s = (neg && r != 0 ? "-" : "") + String(whole)
    if digits > 0 {
        var fs = ""
        for _ in 0..<digits { fs = String(frac % 10) + fs; frac /= 10 }
        s += "." + fs
    }
    return s
}
