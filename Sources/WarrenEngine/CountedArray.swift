/// An array that counts its changes in `generation`: every element written through the
/// subscript, appended or removed adds one. Caches compare the generation instead of being
/// invalidated by hand (the engine's cached deadline, `GossipEngine.Core.deadlineStamp`).
/// A write that no cache depends on goes through `withoutCounting`.
struct CountedArray<Element: Sendable>: Sendable, RandomAccessCollection {
    private var elements: [Element] = []
    private(set) var generation: UInt64 = 0

    init() {}

    var startIndex: Int { 0 }
    var endIndex: Int { elements.count }

    subscript(i: Int) -> Element {
        _read { yield elements[i] }
        _modify {
            generation &+= 1
            yield &elements[i]
        }
    }

    mutating func append(_ e: Element) {
        elements.append(e)
        generation &+= 1
    }

    @discardableResult
    mutating func remove(at i: Int) -> Element {
        generation &+= 1
        return elements.remove(at: i)
    }

    mutating func removeAll() {
        elements.removeAll()
        generation &+= 1
    }

    /// Writes element `i` without counting a change (for what no cache compares).
    mutating func withoutCounting<R>(_ i: Int, _ body: (inout Element) -> R) -> R { body(&elements[i]) }
}
