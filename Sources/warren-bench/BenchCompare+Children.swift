import ArgumentParser
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import Warren
import WarrenCLI

// The child processes of `warren-bench compare`: spawning, reading their JSON lines, CPU time,
// and making sure none outlives the bench (normal end, error, SIGINT/SIGTERM).

/// One delivered message as the driver saw it.
struct CompareDelivery: Sendable {
    var id: Int32
    var sender: Int16   // index of the sender's key, −1 if unknown
    var at: UInt64      // monotonic ns when the driver read the line
}

/// Every child process of the bench, so that a signal or an error can stop them all.
enum ChildRegistry {
    static let live = Mutex<[pid_t: String]>([:])

    /// SIGINT/SIGTERM: stop every child, run `cleanup` (what else the command set up), then exit
    /// 130/143. Writing to a dead child's stdin must not kill the bench, so SIGPIPE is ignored
    /// (children get it back, see `spawn`). `command` and `stopping` make the line it prints:
    /// "warren-bench COMMAND: interrupted; STOPPING".
    static func installSignalHandlers(command: String, stopping: String = "stopping every child process",
                                      cleanup: @escaping @Sendable () -> Void = {}) {
        signal(SIGPIPE, SIG_IGN)
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler {
                Output.error("\nwarren-bench \(command): \(sig == SIGINT ? "interrupted" : "terminated"); \(stopping)")
                terminateAll(grace: .seconds(1))
                cleanup()
                exit(128 + sig)
            }
            s.resume()
            _ = Unmanaged.passRetained(s as AnyObject)   // lives as long as the process
        }
    }

    /// SIGTERM to every child, SIGKILL to those still running after `grace`, and reap them.
    static func terminateAll(grace: Duration) {
        let pids = live.withLock { Array($0.keys) }
        for p in pids { kill(p, SIGTERM) }
        reap(pids, grace: grace)
    }

    static func reap(_ pids: [pid_t], grace: Duration) {
        let deadline = ContinuousClock.now.advanced(by: grace)
        var left = Set(pids)
        while !left.isEmpty {
            for p in left {
                var status: Int32 = 0
                let r = waitpid(p, &status, WNOHANG)
                if r == p || (r < 0 && errno == ECHILD) { left.remove(p); _ = live.withLock { $0.removeValue(forKey: p) } }
            }
            if left.isEmpty { break }
            if ContinuousClock.now >= deadline {
                for p in left { kill(p, SIGKILL); var st: Int32 = 0; waitpid(p, &st, 0); _ = live.withLock { $0.removeValue(forKey: p) } }
                break
            }
            usleep(10_000)
        }
    }
}

struct CompareError: Error, CustomStringConvertible { let description: String; init(_ s: String) { description = s } }

/// The `warren` whose `node` and `connect` a bench runs as children: `explicit` if given, else the
/// one beside this executable (the same build directory), else `warren` in PATH.
func warrenExecutable(_ explicit: String?) throws -> String {
    if let explicit {
        guard access(explicit, X_OK) == 0 else { throw ValidationError("--warren \(explicit): not an executable") }
        return explicit
    }
    let beside = URL(fileURLWithPath: ownExecutablePath()).deletingLastPathComponent().appending(path: "warren").path
    if access(beside, X_OK) == 0 { return beside }
    if let p = findExecutable("warren") { return p }
    throw ValidationError("the warren executable was not found beside warren-bench (\(beside)) or in PATH: build it (swift build -c release --product warren) or pass --warren PATH")
}

/// The absolute path of this executable (the benches' own helpers, `peer` and `session-peer`,
/// run the same binary).
func ownExecutablePath() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    if n > 0 { return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    return Bundle.main.executablePath ?? CommandLine.arguments[0]
}

/// Looks for an executable by name in PATH and the usual sbin directories (Debian installs
/// nats-server in /usr/sbin, which is not on every user's PATH).
func findExecutable(_ name: String) -> String? {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
    let dirs = path.split(separator: ":").map(String.init) + ["/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin", "/sbin", "/bin"]
    for d in dirs where access("\(d)/\(name)", X_OK) == 0 { return "\(d)/\(name)" }
    return nil
}

/// `n` distinct free TCP ports on loopback (bound together, then released: another process may
/// still take one before the child binds it).
func freeLoopbackPorts(_ n: Int) throws -> [UInt16] {
    var fds: [Int32] = []
    defer { for fd in fds { close(fd) } }
    var ports: [UInt16] = []
    for _ in 0..<n {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CompareError("socket: \(String(cString: strerror(errno)))") }
        fds.append(fd)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        guard ok else { throw CompareError("cannot bind a loopback port: \(String(cString: strerror(errno)))") }
        ports.append(UInt16(bigEndian: addr.sin_port))
    }
    return ports
}

/// CPU seconds (user + system, all threads, as the kernel accounts them in /proc/PID/stat) of
/// the given processes; a process that is gone counts 0.
func cpuSeconds(_ pids: [pid_t]) -> Double {
    let tick = Double(sysconf(Int32(_SC_CLK_TCK)))
    var total = 0.0
    for p in pids {
        guard let s = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8),
              let close = s.lastIndex(of: ")") else { continue }
        // Fields after "(comm)": state is field 3, utime field 14, stime field 15.
        let f = s[s.index(after: close)...].split(separator: " ")
        guard f.count > 12, let u = Double(f[11]), let k = Double(f[12]) else { continue }
        total += (u + k) / tick
    }
    return total
}

/// Spawns `path args…` with stdin/stdout as given (nil: /dev/null) and stderr appended to
/// `errPath`, with default signal dispositions and an empty signal mask.
func spawn(_ path: String, _ args: [String], stdin: Int32?, stdout: Int32?, errPath: String) throws -> pid_t {
    var fa = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fa)
    defer { posix_spawn_file_actions_destroy(&fa) }
    if let stdin { posix_spawn_file_actions_adddup2(&fa, stdin, 0) } else { posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0) }
    if let stdout { posix_spawn_file_actions_adddup2(&fa, stdout, 1) } else { posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0) }
    posix_spawn_file_actions_addopen(&fa, 2, errPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var defaults = sigset_t(), empty = sigset_t()
    sigemptyset(&empty)
    sigemptyset(&defaults)
    for s in [SIGPIPE, SIGINT, SIGTERM, SIGHUP] { sigaddset(&defaults, s) }
    posix_spawnattr_setsigdefault(&attr, &defaults)
    posix_spawnattr_setsigmask(&attr, &empty)
    posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
    defer { for a in argv { free(a) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &fa, &attr, argv, environ)
    guard rc == 0 else { throw CompareError("cannot start \(path): \(String(cString: strerror(rc)))") }
    return pid
}

/// The tail of a child's stderr log, for error messages.
func logTail(_ path: String, lines: Int = 6) -> String {
    guard let s = try? String(contentsOfFile: path, encoding: .utf8), !s.isEmpty else { return "(its stderr was empty)" }
    return s.split(separator: "\n").suffix(lines).map { "    | \($0)" }.joined(separator: "\n")
}

/// What the reader thread of one child has seen.
struct ChildState: Sendable {
    var ready: (endpoint: String, publicKey: String)?
    var peersUp = 0
    var peerDowns = 0   // peer-down events seen in all
    var downReasons: [String: Int] = [:]
    var deliveries: [CompareDelivery] = []
    var otherLines: [String] = []
    var closed = false
}

/// The id range the driver is currently counting, and how many of it have arrived.
final class PhaseCounter: Sendable {
    let lo = Atomic<Int>(0), hi = Atomic<Int>(0)
    let arrived = Atomic<Int>(0)
    func begin(_ r: Range<Int>) { arrived.store(0, ordering: .relaxed); lo.store(r.lowerBound, ordering: .relaxed); hi.store(r.upperBound, ordering: .releasing) }
    func contains(_ id: Int) -> Bool { id >= lo.load(ordering: .relaxed) && id < hi.load(ordering: .acquiring) }
}

/// A child process speaking JSON lines (a `warren node` or a `warren-bench peer`), its stdin
/// pipe, and a thread that reads its stdout.
final class LineChild: Sendable {
    let name: String
    let index: Int
    let pid: pid_t
    let stdinFD: Int32
    let logPath: String
    let state = Mutex(ChildState())

    /// `senders` maps a sender's base64 key to its index.
    init(name: String, index: Int, path: String, args: [String], logPath: String,
         senders: [String: Int], counter: PhaseCounter) throws {
        var inPipe: [Int32] = [0, 0], outPipe: [Int32] = [0, 0]
        // Children are spawned from one thread, so close-on-exec set right after pipe() is enough.
        guard pipe(&inPipe) == 0, pipe(&outPipe) == 0 else {
            throw CompareError("pipe: \(String(cString: strerror(errno)))")
        }
        for fd in inPipe + outPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        let pid: pid_t
        do { pid = try spawn(path, args, stdin: inPipe[0], stdout: outPipe[1], errPath: logPath) } catch {
            for fd in inPipe + outPipe { close(fd) }
            throw error
        }
        close(inPipe[0]); close(outPipe[1])
        self.name = name; self.index = index; self.pid = pid; self.stdinFD = inPipe[1]; self.logPath = logPath
        ChildRegistry.live.withLock { $0[pid] = name }
        let fd = outPipe[0]
        let t = Thread { [self] in self.readLoop(fd: fd, senders: senders, counter: counter) }
        t.name = "compare-\(name)"
        t.start()
    }

    /// Writes all of `bytes` to the child's stdin (blocking while its pipe is full).
    func write(_ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(stdinFD, $0.baseAddress! + off, bytes.count - off) }
            if n < 0 { if errno == EINTR { continue }; return false }
            off += n
        }
        return true
    }

    func takeDeliveries() -> [CompareDelivery] { state.withLock { s in let d = s.deliveries; s.deliveries = []; return d } }

    var exited: Bool {
        var status: Int32 = 0
        return state.withLock { $0.closed } || waitpid(pid, &status, WNOHANG) == pid
    }

    /// SIGTERM, then SIGKILL after `grace`; closes our end of its stdin.
    func stop(grace: Duration) {
        close(stdinFD)
        kill(pid, SIGTERM)
        ChildRegistry.reap([pid], grace: grace)
    }

    private func readLoop(fd: Int32, senders: [String: Int], counter: PhaseCounter) {
        var batch: [CompareDelivery] = []
        forEachLine(fd: fd) { line, at in
            handleLine(line, at: at, senders: senders, counter: counter, batch: &batch)
        } afterRead: {
            if !batch.isEmpty {
                state.withLock { $0.deliveries.append(contentsOf: batch) }
                batch.removeAll(keepingCapacity: true)
            }
        }
        close(fd)
        state.withLock { $0.closed = true }
    }

    private static let senderPrefix = Array("{\"sender\":\"".utf8)
    private static let eventPrefix = Array("{\"event\":\"".utf8)

    private func handleLine(_ line: ArraySlice<UInt8>, at: UInt64, senders: [String: Int], counter: PhaseCounter,
                            batch: inout [CompareDelivery]) {
        if line.starts(with: Self.senderPrefix) {
            let s = line.startIndex + Self.senderPrefix.count
            let sender = line.count >= Self.senderPrefix.count + 44
                ? senders[String(decoding: line[s..<(s + 44)], as: UTF8.self)] ?? -1 : -1
            guard let id = CompareWorkload.messageID(in: line) else {
                state.withLock { s in if s.otherLines.count < 20 { s.otherLines.append(String(decoding: line, as: UTF8.self)) } }
                return
            }
            if counter.contains(id) { counter.arrived.add(1, ordering: .relaxed) }
            batch.append(CompareDelivery(id: Int32(id), sender: Int16(sender), at: at))
        } else if line.starts(with: Self.eventPrefix) {
            let obj = (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any] ?? [:]
            switch obj["event"] as? String {
            case "ready":
                let r = (endpoint: obj["endpoint"] as? String ?? "", publicKey: obj["public_key"] as? String ?? "")
                state.withLock { $0.ready = r }
            case "peer-up": state.withLock { $0.peersUp += 1 }
            case "peer-down":
                let reason = obj["reason"] as? String ?? "unknown"
                state.withLock { $0.peersUp -= 1; $0.peerDowns += 1; $0.downReasons[reason, default: 0] += 1 }
            default: break
            }
        } else if !line.isEmpty {
            state.withLock { s in if s.otherLines.count < 20 { s.otherLines.append(String(decoding: line, as: UTF8.self)) } }
        }
    }
}

/// Reads `fd` to its end and calls `line` with each line (without its newline) and the
/// monotonic time of the read that completed it, then `afterRead` once per read. A partial last
/// line at the end is dropped (a child that died mid-line).
func forEachLine(fd: Int32, _ line: (ArraySlice<UInt8>, UInt64) -> Void, afterRead: () -> Void = {}) {
    var buf = [UInt8](repeating: 0, count: 1 << 16)
    var carry: [UInt8] = []
    while true {
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        let at = monotonicNanos()
        var start = 0
        for i in 0..<n where buf[i] == 0x0A {
            if carry.isEmpty {
                line(buf[start..<i], at)
            } else {
                carry.append(contentsOf: buf[start..<i])
                line(carry[...], at)
                carry = []
            }
            start = i + 1
        }
        carry.append(contentsOf: buf[start..<n])
        afterRead()
    }
}
