import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Warren
import WarrenCLI
import WarrenConformance
import WarrenMeasure

/// What one phase of one system delivered.
struct PhaseOutcome: Sendable {
    var name: String
    var expected = 0
    var delivered = 0        // distinct expected messages that arrived at the right peer from the right sender
    var duplicates = 0       // further arrivals of those
    var misrouted = 0        // arrivals at the wrong peer or naming the wrong sender
    var latenciesUs: [Double] = []   // first arrival − write to the sender's stdin, per delivered id (id order)
    var latencyIDs: [Int] = []
    var elapsed = 0.0        // first write → last first arrival, seconds
    var cpu = 0.0            // CPU seconds of the system's processes during the phase
    var serverCPU = 0.0      // of which the central server's (nats-server)
    var stopReason: String?  // why the driver stopped waiting, if not everything arrived
    var peerDowns = 0        // Warren: neighbour links reported down during the phase

    var missing: Int { expected - delivered }
    var exactlyOnce: Bool { missing == 0 && duplicates == 0 && misrouted == 0 }
    var rate: Double { elapsed > 0 ? Double(delivered) / elapsed : 0 }
    var cpuPerMessage: Double { delivered > 0 ? cpu / Double(delivered) : .nan }
    var serverCPUPerMessage: Double { delivered > 0 ? serverCPU / Double(delivered) : .nan }
    func percentile(_ q: Double) -> Double { WarrenMeasure.percentile(latenciesUs, q) }
}

/// Runs one phase on running children: writes every sender's lines (stamping each chunk just
/// before its write), waits until every message has arrived, or `timeout` passes, or nothing
/// arrives for `stall` seconds, or a child dies; then waits `settle` for late duplicates.
func runPhase(_ phase: CompareWorkload.Phase, workload: CompareWorkload, children: [LineChild], cpuPids: [pid_t], serverPids: [pid_t] = [],
              counter: PhaseCounter, timeout: Double, stall: Double = 15, settle: Duration = .milliseconds(300),
              label: String) -> PhaseOutcome {
    var out = PhaseOutcome(name: phase.name)
    out.expected = phase.ids.count
    for c in children { _ = c.takeDeliveries() }   // strays from an earlier phase
    counter.begin(phase.ids)
    let sent = SendStamps(count: phase.ids.count)
    let base = phase.ids.lowerBound
    let writersDone = DispatchSemaphore(value: 0)
    let cpu0 = cpuSeconds(cpuPids), server0 = cpuSeconds(serverPids)
    let downs0 = children.map { $0.state.withLock { $0.peerDowns } }.reduce(0, +)
    var writers = 0
    if let sequence = phase.sequence {
        // One at a time: each message is written only once the previous one has arrived.
        var next = [Int](repeating: 0, count: children.count)
        var stamps: [(Int, UInt64)] = []
        for (k, i) in sequence.enumerated() {
            let chunk = phase.chunks[i][next[i]]
            next[i] += 1
            let before = counter.arrived.load(ordering: .relaxed)
            let now = monotonicNanos()
            for id in chunk.ids { stamps.append((id, now)) }
            if !children[i].write(chunk.bytes) { break }
            while counter.arrived.load(ordering: .relaxed) <= before && monotonicNanos() - now < 2_000_000_000 { usleep(20) }
            progressLine("  \(label): \(k + 1)/\(sequence.count)")
        }
        sent.times.withLock { s in for (id, t) in stamps { s[id - base] = t } }
    } else {
        for (i, c) in children.enumerated() {
            let chunks = UnsafeSendable(phase.chunks[i])
            let t = Thread {
                var stamps: [(Int, UInt64)] = []
                for chunk in chunks.value {
                    let now = monotonicNanos()
                    for id in chunk.ids { stamps.append((id, now)) }
                    if !c.write(chunk.bytes) { break }
                }
                sent.times.withLock { s in for (id, t) in stamps { s[id - base] = t } }
                writersDone.signal()
            }
            t.name = "compare-writer-\(i)"
            t.start()
        }
        writers = children.count
    }
    let start = monotonicNanos()
    var lastCount = 0, lastProgressAt = start
    while true {
        let n = counter.arrived.load(ordering: .relaxed)
        let now = monotonicNanos()
        if n >= out.expected { break }
        if n != lastCount { lastCount = n; lastProgressAt = now }
        if Double(now - start) / 1e9 > timeout {
            out.stopReason = "timed out after \(Int(timeout)) s with \(n) of \(out.expected) arrived"; break
        }
        if Double(now - lastProgressAt) / 1e9 > stall {
            out.stopReason = "nothing arrived for \(Int(stall)) s (\(n) of \(out.expected) arrived)"; break
        }
        if let dead = children.first(where: { $0.exited }) {
            out.stopReason = "\(dead.name) exited during the phase:\n\(logTail(dead.logPath))"; break
        }
        progressLine("  \(label): \(n)/\(out.expected) delivered")
        usleep(1000)
    }
    out.cpu = cpuSeconds(cpuPids) - cpu0
    out.serverCPU = cpuSeconds(serverPids) - server0
    endProgress()
    usleep(UInt32(seconds(settle) * 1e6))
    for _ in 0..<writers { _ = writersDone.wait(timeout: .now() + 5) }
    out.peerDowns = children.map { $0.state.withLock { $0.peerDowns } }.reduce(0, +) - downs0

    let sentAt = sent.times.withLock { $0 }
    var firstAt = [UInt64](repeating: 0, count: phase.ids.count)
    for c in children {
        for d in c.takeDeliveries() {
            let id = Int(d.id)
            guard phase.ids.contains(id) else { continue }
            guard Int(workload.to[id]) == c.index, Int(workload.from[id]) == Int(d.sender) else { out.misrouted += 1; continue }
            if firstAt[id - base] == 0 { firstAt[id - base] = d.at; out.delivered += 1 } else { out.duplicates += 1 }
        }
    }
    let firstSend = sentAt.filter { $0 > 0 }.min() ?? start
    var last: UInt64 = firstSend
    for k in 0..<firstAt.count where firstAt[k] > 0 && sentAt[k] > 0 {
        out.latenciesUs.append(Double(firstAt[k] &- sentAt[k]) / 1000)
        out.latencyIDs.append(base + k)
        last = max(last, firstAt[k])
    }
    out.elapsed = Double(last - firstSend) / 1e9
    return out
}

/// When each message of a phase was written to its sender's stdin (monotonic ns; 0: never).
final class SendStamps: Sendable {
    let times: Mutex<[UInt64]>
    init(count: Int) { times = Mutex([UInt64](repeating: 0, count: count)) }
}
