import Foundation
import Glibc
import Logging
import ServiceLifecycle
import Warren

/// One stdin line: text, or bytes that are not UTF-8.
enum InputLine: Sendable {
    case text(String)
    case invalidUTF8
}

/// Reads stdin lines on a dedicated thread (blocking reads stay off the cooperative pool).
/// Bytes are split at newlines and checked: a line that is not UTF-8 is reported, not patched.
func stdinLines() -> AsyncStream<InputLine> {
    AsyncStream { continuation in
        let t = Thread {
            var pending: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 65536)
            func emit(_ bytes: ArraySlice<UInt8>) {
                var b = bytes
                if b.last == 0x0D { b.removeLast() }
                if let s = String(validating: b, as: UTF8.self) { continuation.yield(.text(s)) } else { continuation.yield(.invalidUTF8) }
            }
            while true {
                let n = read(0, &buf, buf.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                pending.append(contentsOf: buf[0..<n])
                var start = 0
                while let nl = pending[start...].firstIndex(of: 0x0A) {
                    emit(pending[start..<nl])
                    start = nl + 1
                }
                pending.removeFirst(start)
            }
            if !pending.isEmpty { emit(pending[...]) }
            continuation.finish()
        }
        t.name = "warren-stdin"
        t.start()
    }
}

/// Publishes stdin lines until graceful shutdown, then closes the backend.
struct NodeService: Service, CustomStringConvertible {
    let backend: GossipBackend
    let publisher: Publisher
    let bridge: SignalingServer?
    let bridgeTask: Task<Void, any Error>?
    let reloader: Reloader
    let logger: Logger

    var description: String { "warren node" }

    func run() async throws {
        reloader.install()
        await withGracefulShutdownHandler {
            var n = 0
            for await line in stdinLines().cancelOnGracefulShutdown() {
                n += 1
                switch line {
                case .invalidUTF8:
                    Output.error("stdin line \(n): not valid UTF-8")
                case .text(let text):
                    if text.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                    do { try await publisher.publish(line: text) } catch { Output.error("stdin line \(n): \(describe(error))") }
                }
            }
            // End of stdin: keep running until asked to stop.
            try? await gracefulShutdown()
        } onGracefulShutdown: {
            SystemdNotify.send("STOPPING=1")
            logger.info("shutting down")
        }
        // The gRPC bridge first (it ends its streams), then the overlay node.
        bridge?.shutdown()
        _ = await bridgeTask?.result
        try? await backend.close()
    }
}
