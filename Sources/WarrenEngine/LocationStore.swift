/// Location records held by this node (docs/PROTOCOL.md §9, "Location records"): for a key,
/// which node subscribes it, until when. Routing state only: no envelope is ever kept.
struct LocationStore: Sendable {
    struct Record: Sendable {
        var node: UInt64
        var endpoint: String
        var expiry: UInt64
    }

    /// What the records say about a key.
    enum Lookup: Equatable {
        case none
        /// One live subscriber.
        case one(UInt64)
        /// More than one (a key subscribed twice, a community): the frame is flooded.
        case many
    }

    /// Subscribers kept per key; one more makes the key a group until its records expire.
    static let perKey = 3

    let maxKeys: Int
    private var records: [Topic: [Record]] = [:]
    /// Keys that had more subscribers than `perKey`, until when.
    private var groups: [Topic: UInt64] = [:]
    /// No record or group expires before this (`expire` has nothing to do until then).
    private var earliest: UInt64 = .max

    init(maxKeys: Int) { self.maxKeys = max(1, maxKeys) }

    var count: Int { records.count }

    mutating func store(_ key: Topic, node: UInt64, endpoint: String, expiry: UInt64, now: UInt64) {
        earliest = min(earliest, expiry)
        var list = records[key] ?? []
        list.removeAll { $0.expiry <= now }
        if let i = list.firstIndex(where: { $0.node == node }) {
            list[i].expiry = max(list[i].expiry, expiry)
            list[i].endpoint = endpoint
        } else if list.count < Self.perKey {
            list.append(Record(node: node, endpoint: endpoint, expiry: expiry))
        } else {
            groups[key] = max(groups[key] ?? 0, expiry)
        }
        if records[key] == nil && records.count >= maxKeys {
            // Full: the key whose records expire first makes room.
            // Ties broken by the key's words, not by the dictionary's order.
            func rank(_ e: (key: Topic, value: [Record])) -> (UInt64, UInt64, UInt64) {
                (e.value.map(\.expiry).max() ?? 0, e.key.w0, e.key.w1)
            }
            if let victim = records.min(by: { rank($0) < rank($1) })?.key { records[victim] = nil }
        }
        records[key] = list
    }

    mutating func withdraw(_ key: Topic, node: UInt64) {
        guard var list = records[key] else { return }
        list.removeAll { $0.node == node }
        records[key] = list.isEmpty ? nil : list
    }

    func lookup(_ key: Topic, now: UInt64) -> Lookup {
        if let g = groups[key], g > now { return .many }
        guard let list = records[key] else { return .none }
        var found: UInt64? = nil
        for r in list where r.expiry > now {
            if found != nil { return .many }
            found = r.node
        }
        return found.map { .one($0) } ?? .none
    }

    /// Subscribers of keys with exactly one live record (candidates for a pinned link).
    func singleSubscribers(now: UInt64, limit: Int) -> [(node: UInt64, endpoint: String)] {
        // In node order, not the dictionary's (which differs from process to process).
        var out: [(node: UInt64, endpoint: String)] = []
        for (key, list) in records {
            if let g = groups[key], g > now { continue }
            let live = list.filter { $0.expiry > now }
            if live.count == 1 { out.append((live[0].node, live[0].endpoint)) }
        }
        out.sort { $0.node < $1.node }
        return Array(out.prefix(limit))
    }

    mutating func expire(now: UInt64) {
        guard now >= earliest, !records.isEmpty || !groups.isEmpty else { return }
        var next = UInt64.max
        for (_, list) in records { for r in list where r.expiry > now { next = min(next, r.expiry) } }
        for (_, g) in groups where g > now { next = min(next, g) }
        earliest = next
        for (k, list) in records {
            let live = list.filter { $0.expiry > now }
            if live.count != list.count { records[k] = live.isEmpty ? nil : live }
        }
        for (k, g) in groups where g <= now { groups[k] = nil }
    }

    var countedBytes: Int {
        var n = groups.count * 48
        for (_, list) in records {
            n += 48
            for r in list { n += MemoryLayout<Record>.stride + r.endpoint.utf8.count }
        }
        return n
    }
}
