import CSodium

/// libsodium must be initialised once per process before any of its functions are used.
enum SodiumRuntime {
    static let ready: Bool = sodium_init() >= 0
}
