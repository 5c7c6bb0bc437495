import NIOCore

/// A Swift concurrency task executor that runs its jobs on one NIO event loop.
///
/// Package surface: the client backend runs its connection's calls on one, and the bridge
/// (WarrenGRPC) its server's tasks.
///
/// The bridge serves on a one-thread event loop group and runs the server's tasks (every RPC
/// handler, every stream's writer) with this executor as their preference. A handler then runs
/// on the thread that owns its HTTP/2 connection: reading a request, calling the handler and
/// writing a response no longer hop between the event loop and the cooperative pool, and an
/// envelope from the node's thread reaches its stream's writer with one wake-up.
package final class EventLoopTaskExecutor: TaskExecutor {
    package let loop: any EventLoop

    package init(_ loop: any EventLoop) { self.loop = loop }

    package func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        loop.execute { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
