/// Warren's version, reported by `warren --version` and the gRPC bridge's `GetBuildInfo`.
public enum WarrenVersion {
    public static let string = "0.1.0"
}
