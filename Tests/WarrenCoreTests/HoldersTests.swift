import Testing
import WarrenCore

/// The first holder of a key starts what serves it, the last stops it.
@Suite struct HoldersTests {
    @Test func firstAndLast() {
        var h = Holders<String>()
        #expect(h.take("a") == .first)
        #expect(h.take("a") == .none && h.count(of: "a") == 2)
        #expect(h.take("b") == .first)
        #expect(h.release("a") == .none)
        #expect(h.release("a") == .last && !h.holds("a"))
        #expect(h.release("a") == .none, "releasing a key nobody holds changes nothing")
        #expect(h.take("a") == .first, "after the last, the next is first again")
        #expect(h.release("b") == .last && h.release("a") == .last && h.isEmpty)
    }
}
