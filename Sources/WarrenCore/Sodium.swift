import CSodium

/// One-time libsodium initialisation (thread-safe; `sodium_init` is idempotent).
public enum Sodium {
    private static let initialised: Bool = sodium_init() >= 0
    @inlinable public static func ensureInitialised() { precondition(isReady, "libsodium failed to initialise") }
    public static var isReady: Bool { initialised }
}
