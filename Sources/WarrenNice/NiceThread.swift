import CNiceShim

/// One thread running a private GMainContext: every libnice agent of a factory lives there, every
/// call to an agent runs there, and every libnice signal arrives there.
///
/// The thread ends once the last reference to this object is gone (the factory and every agent
/// hold one), after the functions already posted have run.
// @unchecked: an opaque C pointer whose operations the shim makes thread-safe (below).
final class NiceThread: @unchecked Sendable {
    // `loop` is only read after init; the shim makes `post`, `isCurrent` and `stop` thread-safe.
    private let loop: OpaquePointer

    init(name: String) throws(NiceAgentError) {
        guard let loop = cns_loop_new(name) else { throw .threadFailed }
        self.loop = loop
    }

    deinit {
        // Waits for the thread unless this runs on it (the last agent released in its close callback).
        cns_loop_stop(loop)
    }

    /// True on the thread itself.
    var isCurrent: Bool { cns_loop_is_current(loop) != 0 }

    /// Runs `body` on the thread, always later (never inside the caller); in order per caller.
    func post(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Callback(body)).toOpaque()
        cns_loop_post(loop, { Unmanaged<Callback>.fromOpaque($0!).takeUnretainedValue().body() },
                      box, { Unmanaged<Callback>.fromOpaque($0!).release() })
    }

    /// Runs `body` once after `milliseconds` on the thread; the id cancels it (on the thread).
    func timer(milliseconds: UInt32, _ body: @escaping @Sendable () -> Void) -> UInt32 {
        let box = Unmanaged.passRetained(Callback(body)).toOpaque()
        return cns_loop_timer(loop, milliseconds,
                              { Unmanaged<Callback>.fromOpaque($0!).takeUnretainedValue().body() },
                              box, { Unmanaged<Callback>.fromOpaque($0!).release() })
    }

    /// Cancels a timer that has not fired (call on the thread).
    func cancel(timer: UInt32) {
        cns_loop_cancel(loop, timer)
    }

    /// The raw loop for the shim's agent functions (use on the thread only).
    var rawLoop: OpaquePointer { loop }

    private final class Callback {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}
