/// Hands a value that is not `Sendable` to another thread that the caller knows will be the
/// only one to use it: the simulator's workers (pointers to the shards and nodes, each worker
/// touching its own between barriers) and `warren-bench`'s measuring threads (raw ZeroMQ
/// sockets made in pairs, where region checking cannot tell the two ends apart). The node's
/// driver does not use it: its sockets move to the node thread through `Handover` (`sending`).
/// For this package's threads only.
// @unchecked: that is its purpose; every use hands a value over once (see above).
package struct UnsafeSendable<T>: @unchecked Sendable {
    package let value: T
    package init(_ value: T) { self.value = value }
}
