import Foundation
import Glibc
import Logging
import ServiceLifecycle
import Warren
import WarrenCLI

/// One stdin line: text, bytes that are not UTF-8, or a line longer than `StdinReader.maxLine`.
enum InputLine: Sendable {
    case text(String)
    case invalidUTF8
    case tooLong
}

/// Reads stdin lines on a dedicated thread (blocking reads stay off the cooperative pool).
/// Bytes are split at newlines and checked: a line that is not UTF-8 is reported, not patched.
/// Memory is bounded both ways: a line longer than `maxLine` is skipped up to its newline and
/// reported, and the thread stops reading while `window` lines wait to be published (the pipe
/// then pushes back on the writer; nothing is dropped).
final class StdinReader: Sendable {
    /// Far above the longest useful line (a 65,524-byte envelope's message as JSON).
    static let maxLine = 1 << 20
    static let window = 256

    let lines: AsyncStream<InputLine>
    private let credit = DispatchSemaphore(value: StdinReader.window)

    init() {
        let (stream, continuation) = AsyncStream.makeStream(of: InputLine.self)
        lines = stream
        let credit = self.credit
        let t = Thread {
            var pending: [UInt8] = []
            var skipping = false
            var buf = [UInt8](repeating: 0, count: 65536)
            func emit(_ line: InputLine) {
                credit.wait()
                continuation.yield(line)
            }
            func emit(_ bytes: ArraySlice<UInt8>) {
                var b = bytes
                if b.last == 0x0D { b.removeLast() }
                if let s = String(validating: b, as: UTF8.self) { emit(.text(s)) } else { emit(.invalidUTF8) }
            }
            while true {
                let n = read(0, &buf, buf.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                var chunk = buf[0..<n]
                if skipping {
                    guard let nl = chunk.firstIndex(of: 0x0A) else { continue }
                    skipping = false
                    chunk = chunk[(nl + 1)...]
                }
                pending.append(contentsOf: chunk)
                var start = 0
                while let nl = pending[start...].firstIndex(of: 0x0A) {
                    if nl - start > Self.maxLine { emit(.tooLong) } else { emit(pending[start..<nl]) }
                    start = nl + 1
                }
                pending.removeFirst(start)
                if pending.count > Self.maxLine {
                    emit(.tooLong)
                    pending.removeAll()
                    skipping = true
                }
            }
            if !pending.isEmpty && !skipping { emit(pending[...]) }
            continuation.finish()
        }
        t.name = "warren-stdin"
        t.start()
    }

    /// One line was handled: the reader may queue another.
    func consumed() { credit.signal() }
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
            let reader = StdinReader()
            for await line in reader.lines.cancelOnGracefulShutdown() {
                n += 1
                defer { reader.consumed() }
                switch line {
                case .invalidUTF8:
                    Output.error("stdin line \(n): not valid UTF-8")
                case .tooLong:
                    Output.error("stdin line \(n): longer than \(StdinReader.maxLine) bytes; skipped")
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
