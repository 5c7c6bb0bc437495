import ArgumentParser
import Glibc

/// The entry point of Warren's executables (`warren`, `warren-bench`): ArgumentParser's, with
/// SIGPIPE ignored first, so that a closed stdout is a write error (EPIPE) that `Output`
/// reports, not a silent death.
package enum CommandMain {
    package static func run<Root: ParsableCommand>(_ root: Root.Type) async {
        signal(SIGPIPE, SIG_IGN)
        do {
            var command = try root.parseAsRoot()
            if var async = command as? AsyncParsableCommand { try await async.run() } else { try command.run() }
            Output.flush()
        } catch {
            Output.flush()
            root.exit(withError: error)
        }
    }
}
