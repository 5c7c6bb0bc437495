import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A child process started with `posix_spawn`, for tests, with the part of `Process`'s interface
/// they use (set the properties, `run()`, then `isRunning`, `terminationStatus`, …).
///
/// Why not `Process`: on Linux, `Process.run()` finds the highest open descriptor by reading
/// `/proc/self/fd` and copies 256 bytes of each entry's name although glibc's entries are 24
/// bytes long (swift-corelibs-foundation #5472). With more than about 1,350 descriptors open the
/// last entry sits at the end of glibc's 32 KiB buffer and the copy reads past it: the whole
/// test process died of SIGSEGV in `Process.run()` here with 1,448 descriptors open (the suites
/// beside it run in-process overlays). `posix_spawn` with `addclosefrom_np` closes the child's
/// other descriptors without that scan.
///
/// Standard input, output and error: a `FileHandle`, a `Pipe` (the child's end is closed here
/// once the child runs, as `Process` does) or nil for this process's own.
// @unchecked: the configuration is set before `run()` and read only by it; the exit status is
// guarded by `lock`.
public final class ChildProcess: @unchecked Sendable {
    public var executableURL: URL?
    public var arguments: [String] = []
    /// nil: this process's environment.
    public var environment: [String: String]?
    public var standardInput: Any?
    public var standardOutput: Any?
    public var standardError: Any?
    public private(set) var processIdentifier: pid_t = 0

    private let lock = NSLock()
    /// The raw wait status once the child was reaped.
    private var waitStatus: Int32?

    public init() {}

    public struct SpawnError: Error, CustomStringConvertible {
        public var executable: String
        public var code: Int32
        public var description: String { "cannot run \(executable): \(String(cString: strerror(code)))" }
    }

    /// Starts the child; throws if it cannot be started (no such file, not executable, …).
    public func run() throws {
        guard let path = executableURL?.path else { throw SpawnError(executable: "(none)", code: ENOENT) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (target, io) in [(Int32(0), standardInput), (1, standardOutput), (2, standardError)] {
            if let fd = Self.descriptor(io, childReads: target == 0) {
                posix_spawn_file_actions_adddup2(&actions, fd, target)
            }
        }
        _ = Self.closeFrom?(&actions, 3)

        // The child starts with every signal at its default and none blocked: a test runner that
        // ignores SIGPIPE must not hand that on (a child writing to a closed pipe should die).
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t(), none = sigset_t()
        sigfillset(&all)
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let env = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { for p in env ?? [] { free(p) } }
        var pid = pid_t()
        let rc = env.map { posix_spawn(&pid, path, &actions, &attributes, argv, $0) }
            ?? posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard rc == 0 else { throw SpawnError(executable: path, code: rc) }
        processIdentifier = pid

        // The child's ends of pipes are its own now.
        var closed = Set<ObjectIdentifier>()
        for (io, childReads) in [(standardInput, true), (standardOutput, false), (standardError, false)] {
            guard let pipe = io as? Pipe, closed.insert(ObjectIdentifier(pipe)).inserted else { continue }
            try? (childReads ? pipe.fileHandleForReading : pipe.fileHandleForWriting).close()
        }
    }

    /// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later; Swift's Glibc module
    /// does not declare it): the child closes every descriptor from 3 on.
    private static let closeFrom: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? =
        dlsym(dlopen(nil, RTLD_NOW), "posix_spawn_file_actions_addclosefrom_np").map { unsafeBitCast($0, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self) }

    private static func descriptor(_ io: Any?, childReads: Bool) -> Int32? {
        switch io {
        case let h as FileHandle: h.fileDescriptor
        case let p as Pipe: (childReads ? p.fileHandleForReading : p.fileHandleForWriting).fileDescriptor
        default: nil
        }
    }

    /// Reaps the child if it has ended; its raw wait status then.
    private func reaped() -> Int32? {
        lock.lock()
        defer { lock.unlock() }
        if let waitStatus { return waitStatus }
        guard processIdentifier > 0 else { return nil }
        var status: Int32 = 0
        let r = waitpid(processIdentifier, &status, WNOHANG)
        if r == processIdentifier || (r < 0 && errno == ECHILD) {
            waitStatus = r < 0 ? 0 : status
        }
        return waitStatus
    }

    public var isRunning: Bool { processIdentifier > 0 && reaped() == nil }

    /// The exit code, or the number of the signal that ended it (as `Process` reports).
    public var terminationStatus: Int32 {
        guard let s = reaped() else { return 0 }
        return s & 0x7f == 0 ? (s >> 8) & 0xff : s & 0x7f
    }

    public var terminationReason: Process.TerminationReason {
        guard let s = reaped() else { return .exit }
        return s & 0x7f == 0 ? .exit : .uncaughtSignal
    }

    /// Blocks until the child has ended (polls: another thread may be asking `isRunning`).
    public func waitUntilExit() {
        while isRunning { usleep(2_000) }
    }

    /// SIGTERM, if it still runs.
    public func terminate() { if isRunning { kill(processIdentifier, SIGTERM) } }

    /// SIGINT, if it still runs.
    public func interrupt() { if isRunning { kill(processIdentifier, SIGINT) } }
}
