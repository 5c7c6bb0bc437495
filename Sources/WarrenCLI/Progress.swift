import Foundation
import Glibc
import Synchronization

private let progressIsTTY = isatty(STDERR_FILENO) != 0
private let lastProgress = Mutex<(String, ContinuousClock.Instant?)>(("", nil))
/// Progress on stderr: rewritten in place on a terminal, otherwise a line at most every 0.5 s.
package func progressLine(_ s: String) {
    if progressIsTTY { FileHandle.standardError.write(Data("\r\u{1B}[K\(s)".utf8)); return }
    let now = ContinuousClock.now
    let show = lastProgress.withLock { last -> Bool in
        guard s != last.0, last.1.map({ now - $0 > .milliseconds(500) }) ?? true else { return false }
        last = (s, now); return true
    }
    if show { FileHandle.standardError.write(Data((s + "\n").utf8)) }
}
/// Ends a progress line rewritten in place (a newline on a terminal; nothing otherwise).
package func endProgress() { if progressIsTTY { FileHandle.standardError.write(Data("\n".utf8)) } }
