import Synchronization

/// Hands a value that is not `Sendable` (a socket, a driver loop and the sockets it owns) from
/// the thread that made it to the thread that will own it, once. `init` takes the value as
/// `sending` — the compiler checks that the maker keeps no reference into it — and `take`
/// gives it out as `sending` to its one new owner. No `@unchecked`: `Mutex` is `Sendable`
/// for any value because it only ever moves whole regions in and out.
final class Handover<Value: ~Copyable>: Sendable {
    private let slot: Mutex<Value?>

    init(_ value: consuming sending Value) { slot = Mutex(Optional(value)) }

    /// The value, the first time; nil afterwards.
    func take() -> sending Value? {
        slot.withLock { v -> sending Value? in v.take() }
    }
}
