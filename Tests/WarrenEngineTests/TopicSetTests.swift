import Testing
import WarrenTestSupport
@testable import WarrenEngine

/// `TopicSet`: the filter in front of the set never makes a local topic look foreign, and a
/// removal keeps the bits of the topics that stay (two topics may share a bit).
@Suite(.computeLane) struct TopicSetTests {
    static func topic(_ i: UInt64) -> Topic { Topic(w0: i, w1: ~i, w2: i &* 3, w3: i << 7) }

    @Test func containsExactlyWhatWasInserted() {
        var s = TopicSet()
        let inside = (1...40).map { Self.topic($0) }, outside = (41...2_000).map { Self.topic($0) }
        for t in inside { let new = s.insert(t); #expect(new) }
        let again = s.insert(inside[0])
        #expect(!again, "a second insert of the same topic is not new")
        #expect(s.count == inside.count && s.topics == Set(inside))
        for t in inside { #expect(s.contains(t)) }
        for t in outside { #expect(!s.contains(t)) }
    }

    @Test func removalKeepsTheBitsOfTheOthers() {
        // Two topics with the same filter bit: removing one must not hide the other.
        let a = Self.topic(1)
        let b = try! #require((2...10_000).lazy.map { Self.topic($0) }.first { TopicSet.bit($0) == TopicSet.bit(a) && $0 != a })
        var s = TopicSet()
        let insertedA = s.insert(a), insertedB = s.insert(b)
        #expect(insertedA && insertedB)
        let removedA = s.remove(a)
        #expect(removedA)
        #expect(!s.contains(a) && s.contains(b))
        let removedAgain = s.remove(a)
        #expect(!removedAgain, "a topic that is not there is not removed")
        let removedB = s.remove(b)
        #expect(removedB && s.count == 0 && !s.contains(b))
    }
}
