/// Hands a value that is not `Sendable` to another thread that the caller knows will be the
/// only one to use it (a driver thread's socket, a simulator's worker touching its own shards).
/// For this package's threads only.
// @unchecked: that is its purpose; every use hands a value over once (see above).
package struct UnsafeSendable<T>: @unchecked Sendable {
    package let value: T
    package init(_ value: T) { self.value = value }
}
