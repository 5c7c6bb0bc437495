import Foundation

/// The package's executables as built for the tests that run them as child processes.
public enum BuiltExecutable {
    /// The built executable `name`: first in the products directory that holds this test
    /// executable (works for `.build` and custom `--scratch-path`s), then in
    /// `<package>/.build*/debug`.
    public static func url(named name: String) -> URL? {
        let fm = FileManager.default
        var dirs: [URL] = []
        if let exe = Bundle.main.executableURL { dirs.append(exe.resolvingSymlinksInPath().deletingLastPathComponent()) }
        if let arg0 = CommandLine.arguments.first {
            dirs.append(URL(fileURLWithPath: arg0).resolvingSymlinksInPath().deletingLastPathComponent())
        }
        // macOS: the test bundle is a directory (…/debug/WarrenPackageTests.xctest).
        dirs.append(Bundle.main.bundleURL.deletingLastPathComponent())
        for d in Array(dirs) {
            // An .xctest bundle's executable is in Contents/MacOS; climb to the products dir.
            var u = d
            for _ in 0..<3 {
                if u.pathExtension == "xctest" { dirs.append(u.deletingLastPathComponent()); break }
                u = u.deletingLastPathComponent()
            }
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        if let names = try? fm.contentsOfDirectory(atPath: root.path) {
            for n in names.sorted() where n.hasPrefix(".build") { dirs.append(root.appending(path: n).appending(path: "debug")) }
        }
        for d in dirs {
            let u = d.appending(path: name)
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: u.path, isDirectory: &isDir), !isDir.boolValue, fm.isExecutableFile(atPath: u.path) { return u }
        }
        return nil
    }
}

/// The built `warren`.
public enum WarrenExecutable {
    public static let url: URL? = BuiltExecutable.url(named: "warren")
}

/// The built `warren-bench`.
public enum WarrenBenchExecutable {
    public static let url: URL? = BuiltExecutable.url(named: "warren-bench")
}
