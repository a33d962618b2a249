import Dispatch

/// Holds a stage's workers inside the handler until the test opens it, so tests
/// can fill queues deterministically instead of racing the workers.
public final class Gate: Sendable {
    private let entered = DispatchSemaphore(value: 0)
    private let open = DispatchSemaphore(value: 0)

    public init() {}

    /// Called by the handler: announce entry, then wait to be let through.
    public func pass() {
        entered.signal()
        open.wait()
    }

    /// Waits (bounded) until a worker is inside the handler.
    public func awaitEntry() -> Bool { entered.wait(timeout: .now() + 10) == .success }

    /// Lets `count` passes through.
    public func release(_ count: Int = 1) { for _ in 0..<count { open.signal() } }
}
