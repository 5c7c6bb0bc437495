import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Warren
import WarrenCLI

/// The messages of `warren-bench compare`, the same for every system: ids, who sends each to
/// whom, and the stdin lines (`{"to":…,"message":…}`) that make the peers send them.
///
/// Every message carries its id in a field a real message has anyway — the credentials' `ufrag`
/// (`u` and 11 digits, as long as a typical one) or the candidate's `foundation` (`f` and digits)
/// — so the driver can tell each delivery apart and check exactly-once.
struct CompareWorkload {
    let keys: [PrivateKey]
    let publicB64: [String]
    private(set) var from: [Int32] = []
    private(set) var to: [Int32] = []
    private(set) var kinds: [UInt8] = []   // 0 credentials, 1 candidate

    init(peers: Int) {
        keys = (0..<peers).map { _ in PrivateKey.generate() }
        publicB64 = keys.map { $0.publicKey.base64 }
    }

    var count: Int { from.count }
    var senderIndex: [String: Int] { Dictionary(uniqueKeysWithValues: publicB64.enumerated().map { ($0.element, $0.offset) }) }

    /// One phase: per sender, the chunks of stdin lines to write and the ids in each chunk.
    struct Phase {
        let name: String
        let ids: Range<Int>
        var chunks: [[(ids: [Int], bytes: [UInt8])]]
        /// For a one-at-a-time phase: the sender of each successive chunk (each chunk one line);
        /// the driver writes the next only after the previous has been delivered.
        var sequence: [Int]? = nil
    }

    /// Appends a message and returns its stdin line.
    private mutating func add(from i: Int, to j: Int, candidate k: Int?) -> [UInt8] {
        let id = from.count
        from.append(Int32(i)); to.append(Int32(j)); kinds.append(k == nil ? 0 : 1)
        var m: SignalingMessage
        if let k {
            m = SignalingMessage()
            m.candidate.type = .host
            m.candidate.networkType = .udp4
            m.candidate.foundation = "f\(id)"
            m.candidate.component = 1
            m.candidate.priority = 2_130_706_431 - Int32(k)
            m.candidate.address = "10.\(i / 250).\(i % 250 + 1).\(k + 1)"
            m.candidate.port = Int32(40_000 + k)
        } else {
            m = typicalCredentials()
            m.credentials.ufrag = "u" + String(repeating: "0", count: max(0, 11 - String(id).count)) + String(id)
        }
        let json = (try? m.jsonString()) ?? "{}"
        return Array("{\"to\":\"\(publicB64[j])\",\"message\":\(json)}\n".utf8)
    }

    /// cunīcu's session start between every ordered pair: credentials to every other peer, then
    /// `candidates` candidates to every other peer. Each sender's lines are one chunk.
    mutating func exchange(candidates: Int, name: String = "exchange") -> Phase {
        let n = keys.count, lo = count
        var chunks: [[(ids: [Int], bytes: [UInt8])]] = []
        for i in 0..<n {
            var ids: [Int] = [], bytes: [UInt8] = []
            for k in [nil] + (0..<candidates).map(Optional.some) {
                for j in 0..<n where j != i {
                    ids.append(count)
                    bytes += add(from: i, to: j, candidate: k)
                }
            }
            chunks.append([(ids, bytes)])
        }
        return Phase(name: name, ids: lo..<count, chunks: chunks)
    }

    /// `total` candidates spread evenly over the senders, each sender cycling through the other
    /// peers; written in chunks of `chunk` lines so the driver stamps them as they go.
    mutating func flood(total: Int, chunk: Int = 32) -> Phase {
        let n = keys.count, lo = count
        var chunks: [[(ids: [Int], bytes: [UInt8])]] = Array(repeating: [], count: n)
        var perSender = [[Int]](repeating: [], count: n)
        for m in 0..<total { perSender[m % n].append(m / n) }
        for i in 0..<n {
            var ids: [Int] = [], bytes: [UInt8] = []
            for k in perSender[i] {
                let j = (i + 1 + k % (n - 1)) % n
                ids.append(count)
                bytes += add(from: i, to: j, candidate: k % 4)
                if ids.count == chunk { chunks[i].append((ids, bytes)); ids = []; bytes = [] }
            }
            if !ids.isEmpty { chunks[i].append((ids, bytes)) }
        }
        return Phase(name: "flood", ids: lo..<count, chunks: chunks)
    }

    /// `total` candidates sent one at a time, cycling through senders and recipients.
    mutating func singles(total: Int) -> Phase {
        let n = keys.count, lo = count
        var chunks: [[(ids: [Int], bytes: [UInt8])]] = Array(repeating: [], count: n)
        var sequence: [Int] = []
        for m in 0..<total {
            let i = m % n, j = (i + 1 + (m / n) % (n - 1)) % n
            let id = count
            chunks[i].append(([id], add(from: i, to: j, candidate: m % 4)))
            sequence.append(i)
        }
        return Phase(name: "single", ids: lo..<count, chunks: chunks, sequence: sequence)
    }

    private static let ufragKey = Array("\"ufrag\":\"u".utf8)
    private static let foundationKey = Array("\"foundation\":\"f".utf8)

    /// The id in a delivered message's JSON line (a plain byte scan: the driver reads every
    /// line of every system and should stay cheap).
    static func messageID(in line: ArraySlice<UInt8>) -> Int? {
        line.withUnsafeBufferPointer { p -> Int? in
            for key in [foundationKey, ufragKey] where p.count > key.count {
                var i = 0
                let last = p.count - key.count
                while i <= last {
                    if p[i] == 0x22 && memcmp(p.baseAddress! + i, key, key.count) == 0 {
                        var j = i + key.count, v = 0
                        while j < p.count, p[j] >= 0x30, p[j] <= 0x39 { v = v * 10 + Int(p[j] - 0x30); j += 1 }
                        if j > i + key.count { return v }
                    }
                    i += 1
                }
            }
            return nil
        }
    }
}
