import Foundation
import WarrenCore

extension Cunicu_BuildInfo {
    /// What `GetBuildInfo` answers: Warren's version and the platform it runs on.
    public static var current: Cunicu_BuildInfo {
        var info = Cunicu_BuildInfo()
        info.version = WarrenVersion.string
        info.builtBy = "warren (swift)"
        #if os(Linux)
        info.os = "linux"
        #elseif os(macOS)
        info.os = "darwin"
        #endif
        #if arch(x86_64)
        info.arch = "amd64"
        #elseif arch(arm64)
        info.arch = "arm64"
        #endif
        return info
    }
}
