import Foundation
import Metrics
import WarrenCLI

/// The node's stdout: a bounded queue written by its own thread, so that a reader that falls
/// behind (or stops reading) never holds up the overlay. Events (ready, peer-up/down) are always
/// queued; a delivered message that finds `bound` lines (or `byteBound` bytes) waiting is
/// dropped and counted. Once
/// the reader has caught up, `{"event":"dropped","count":N}` says how many were lost since the
/// last such line; the first drop of each run also warns on stderr, and
/// `warren_output_dropped_total` counts them all.
// @unchecked: every mutable field is guarded by `condition` (a lock the writer thread also waits on).
final class StdoutQueue: @unchecked Sendable {
    static let defaultBound = 4096
    /// Bytes that may wait (a delivery can be ~90 KB of JSON): 16 MiB.
    static let byteBound = 16 << 20

    private let condition = NSCondition()
    // Guarded by `condition`.
    private var lines: [String] = []
    private var queuedBytes = 0
    private var isOpen = false
    private var unreported: UInt64 = 0
    private var total: UInt64 = 0
    let bound: Int
    private let droppedCounter = Metrics.Counter(label: "warren_output_dropped_total")

    init(bound: Int) {
        self.bound = bound
        let t = Thread { [self] in run() }
        t.name = "warren-stdout"
        t.start()
    }

    /// An event line: never dropped.
    func event(_ line: String) {
        condition.lock()
        lines.append(line)
        queuedBytes += line.utf8.count
        condition.signal()
        condition.unlock()
    }

    /// A delivered message: dropped (and counted) when `bound` lines are already waiting.
    func delivery(_ line: String) {
        condition.lock()
        if lines.count >= bound || queuedBytes >= Self.byteBound {
            unreported &+= 1
            total &+= 1
            let first = unreported == 1
            condition.unlock()
            droppedCounter.increment()
            if first {
                Output.error("Warning: stdout is not read fast enough; dropping delivered messages (counted: a {\"event\":\"dropped\",\"count\":N} line follows once the reader catches up)")
            }
            return
        }
        lines.append(line)
        queuedBytes += line.utf8.count
        condition.signal()
        condition.unlock()
    }

    /// Writes `first` before anything queued so far, then lets every line through.
    func open(first: String) {
        condition.lock()
        lines.insert(first, at: 0)
        isOpen = true
        condition.signal()
        condition.unlock()
    }

    /// Messages dropped since the start.
    var dropped: UInt64 {
        condition.lock(); defer { condition.unlock() }
        return total
    }

    private func run() {
        var batch: [String] = []
        while true {
            condition.lock()
            while !isOpen || (lines.isEmpty && unreported == 0) { condition.wait() }
            swap(&batch, &lines)
            queuedBytes = 0
            // The count goes out once everything queued before it has been written.
            var report: UInt64 = 0
            if batch.isEmpty { report = unreported; unreported = 0 }
            condition.unlock()
            if report > 0 { batch.append("{\"event\":\"dropped\",\"count\":\(report)}") }
            Output.lines(batch)
            batch.removeAll(keepingCapacity: true)
        }
    }
}
