/// Limits on password checks (node config `auth:`): how many failed logins a client address
/// and a user name may have in a window, and the small stage that computes password hashes.
public struct AuthSettings: Sendable, Equatable {
    /// Failed logins (and checks in flight) from one client address per window; past it
    /// further logins from that address get 429 without a password hash.
    public var failedLoginsPerClientMax = 10
    /// Failed logins (and checks in flight) for one user name, known or not, per window.
    public var failedLoginsPerUserMax = 20
    /// The window, from a key's first failure; its failures are forgotten when it ends.
    public var failedLoginWindowMs = 60_000
    /// Addresses and names the limiter tracks at once; when it is full of live entries, new
    /// logins get 429 until one expires (memory stays bounded under address spraying).
    public var limiterEntriesMax = 65_536
    /// Threads of the auth stage, which hashes passwords off the decode thread.
    public var threads = 1
    /// Password checks that may wait for the auth stage; past it a login gets 503.
    public var queueCapacity = 64

    public init() {}
}
