import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import WarrenTestSupport

/// The tests' `posix_spawn` launcher behaves as `Process` did where the tests rely on it.
@Suite struct ChildProcessTests {
    func shell(_ script: String, stdout: Any? = nil) throws -> ChildProcess {
        let p = ChildProcess()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        p.standardOutput = stdout ?? FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        return p
    }

    @Test func exitCodesAndSignalsAreReported() throws {
        let exited = try shell("exit 3")
        exited.waitUntilExit()
        #expect(!exited.isRunning && exited.terminationStatus == 3 && exited.terminationReason == .exit)
        let signalled = try shell("kill -TERM $$")
        signalled.waitUntilExit()
        #expect(signalled.terminationStatus == SIGTERM && signalled.terminationReason == .uncaughtSignal)
        let sleeper = try shell("sleep 30")
        #expect(sleeper.isRunning)
        sleeper.terminate()
        sleeper.waitUntilExit()
        #expect(sleeper.terminationReason == .uncaughtSignal)
    }

    /// The child's end of an output pipe is closed here, so reading reaches the end.
    @Test func outputPipeReachesItsEnd() throws {
        let pipe = Pipe()
        let p = try shell("echo hello; echo world", stdout: pipe)
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        #expect(text == "hello\nworld\n")
    }

    /// A child inherits only its standard descriptors, however many this process has open, and
    /// starts with no signal ignored although the test runner ignores SIGPIPE.
    @Test func childGetsOnlyItsStandardDescriptorsAndDefaultSignals() throws {
        let held = (0..<300).map { _ in open("/dev/null", O_RDONLY) }
        defer { for fd in held { close(fd) } }
        signal(SIGPIPE, SIG_IGN)
        let pipe = Pipe()
        let p = try shell("ls /proc/self/fd | wc -l; grep SigIgn /proc/self/status", stdout: pipe)
        let lines = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            .split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        p.waitUntilExit()
        // ls's own: 0, 1, 2 and the directory it reads (the shell's pipe to wc is its stdout).
        #expect(Int(lines.first ?? "") ?? 0 <= 4, "\(lines)")
        // SigIgn is a mask of signal n at bit n − 1: the standard signals, 1–31, must all be
        // clear (glibc keeps its own real-time signals, 32 and 33, as they are).
        let ignored = UInt64(lines.last?.split(separator: "\t").last ?? "", radix: 16)
        #expect(ignored.map { $0 & 0x7fff_ffff == 0 } == true, "\(lines)")
    }

    @Test func aMissingExecutableIsAnError() {
        let p = ChildProcess()
        p.executableURL = URL(fileURLWithPath: "/nonexistent/warren")
        #expect(throws: ChildProcess.SpawnError.self) { try p.run() }
        #expect(!p.isRunning)
    }
}
