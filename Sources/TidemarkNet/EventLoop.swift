import CLibUV
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A libuv call that failed, with libuv's name and message for the code.
public struct UVError: Error, Sendable, CustomStringConvertible {
    public let code: Int32
    public let operation: String

    public var description: String {
        "\(operation): \(String(cString: uv_strerror(code))) (\(String(cString: uv_err_name(code))))"
    }
}

/// Runs `body`, a libuv call returning a status, and throws on a negative status.
@discardableResult
func uvCheck(_ operation: String, _ status: Int32) throws(UVError) -> Int32 {
    guard status >= 0 else { throw UVError(code: status, operation: operation) }
    return status
}

/// One libuv loop and the thread that runs it. Every socket of the node lives on it;
/// other threads reach it only through `execute`, a locked inbox drained after `uv_async_send`.
///
/// `@unchecked Sendable`: `loop` and the handles are touched only on the loop
/// thread (asserted); `inbox` is protected by its mutex.
public final class EventLoop: @unchecked Sendable {
    let loop: UnsafeMutablePointer<uv_loop_t>
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    /// The wakeup handle was handed to libuv, whose close callback frees it.
    private var wakeupInitialized = false
    private let inbox = Mutex<(tasks: [@Sendable () -> Void], closed: Bool)>(([], false))
    private let loopThread = Atomic<UInt>(0)  // pthread_t of the running loop, 0 before run()

    public init() throws(UVError) {
        // A write to a socket its peer closed must fail with EPIPE (the stream closes), not
        // kill the process with SIGPIPE: a client or peer that hangs up is not a crash.
        // libuv leaves the signal alone; ignoring it is process-wide and idempotent.
        signal(SIGPIPE, SIG_IGN)
        loop = .allocate(capacity: 1)
        wakeup = .allocate(capacity: 1)
        // On failure deinit frees both allocations (every stored property is set by then).
        try uvCheck("uv_loop_init", uv_loop_init(loop))
        loop.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        wakeupInitialized = true
        try uvCheck("uv_async_init", uv_async_init(loop, wakeup) { handle in
            EventLoop.from(handle!.pointee.loop).drainInbox()
        })
    }

    deinit {
        loop.deallocate()
        if !wakeupInitialized { wakeup.deallocate() }
    }

    static func from(_ loop: UnsafeMutablePointer<uv_loop_t>?) -> EventLoop {
        Unmanaged<EventLoop>.fromOpaque(loop!.pointee.data).takeUnretainedValue()
    }

    /// Runs the loop on the calling thread until `close()` and every handle are done.
    public func run() {
        loopThread.store(UInt(pthread_self()), ordering: .releasing)
        uv_run(loop, UV_RUN_DEFAULT)
        drainInbox()
        let status = uv_loop_close(loop)
        precondition(status == 0, "event loop closed with live handles: \(String(cString: uv_err_name(status)))")
    }

    /// Runs `task` on the loop thread soon. Safe from any thread; after `close()` tasks are dropped.
    /// Tasks already queued when `close()` runs still run before `run()` returns.
    public func execute(_ task: @escaping @Sendable () -> Void) {
        // Sent under the lock, so close() cannot free the handle between the check and the send;
        // uv_async_send coalesces, so one send per empty-to-non-empty edge is enough.
        inbox.withLock { inbox in
            guard !inbox.closed else { return }
            inbox.tasks.append(task)
            if inbox.tasks.count == 1 { uv_async_send(wakeup) }
        }
    }

    /// True on the thread running the loop, and before `run()` (set-up is single-threaded).
    public var inLoopThread: Bool {
        let owner = loopThread.load(ordering: .acquiring)
        return owner == 0 || owner == UInt(pthread_self())
    }

    func assertInLoop(_ function: StaticString = #function) {
        precondition(inLoopThread, "\(function) must run on the event-loop thread")
    }

    /// Milliseconds of the loop's cached clock.
    var nowMs: UInt64 { uv_now(loop) }

    /// Closes the inbox handle, so `run()` returns once the other handles are closed too.
    public func close() {
        assertInLoop()
        let wasClosed = inbox.withLock { inbox in
            defer { inbox.closed = true }
            return inbox.closed
        }
        guard !wasClosed else { return }
        uv_close(UnsafeMutableRawPointer(wakeup).assumingMemoryBound(to: uv_handle_t.self)) { handle in
            UnsafeMutableRawPointer(handle!).deallocate()
        }
    }

    private func drainInbox() {
        while true {
            let tasks = inbox.withLock { inbox in
                let taken = inbox.tasks
                inbox.tasks.removeAll(keepingCapacity: true)
                return taken
            }
            if tasks.isEmpty { return }
            for task in tasks { task() }
        }
    }
}

/// Closes a handle whose memory was allocated as a Swift pointer and frees it.
func closeAndFree<Handle>(_ handle: UnsafeMutablePointer<Handle>) {
    uv_close(UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)) { handle in
        UnsafeMutableRawPointer(handle!).deallocate()
    }
}

/// Runs a callback on the loop when the process receives a signal (SIGTERM, SIGINT).
public final class SignalWatcher {
    private let handle: UnsafeMutablePointer<uv_signal_t>
    private let action: () -> Void

    public init(loop: EventLoop, signal: Int32, action: @escaping () -> Void) throws(UVError) {
        loop.assertInLoop()
        self.action = action
        handle = .allocate(capacity: 1)
        try uvCheck("uv_signal_init", uv_signal_init(loop.loop, handle))
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        try uvCheck("uv_signal_start", uv_signal_start(handle, { handle, _ in
            Unmanaged<SignalWatcher>.fromOpaque(handle!.pointee.data).takeUnretainedValue().action()
        }, signal))
    }

    /// Stops watching; the handle is freed when libuv is done with it.
    public func close() {
        uv_signal_stop(handle)
        closeAndFree(handle)
    }
}

/// A timer on the loop, one-shot or repeating. The owner keeps it alive until it has
/// fired (one-shot) or is cancelled.
public final class LoopTimer {
    private var handle: UnsafeMutablePointer<uv_timer_t>?
    private let action: () -> Void
    private let repeating: Bool

    /// Fires after `delayMs`, then every `repeatMs` if that is above 0.
    public init(loop: EventLoop, delayMs: UInt64, repeatMs: UInt64 = 0, action: @escaping () -> Void) {
        repeating = repeatMs > 0
        loop.assertInLoop()
        self.action = action
        let handle = UnsafeMutablePointer<uv_timer_t>.allocate(capacity: 1)
        uv_timer_init(loop.loop, handle)
        handle.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        self.handle = handle
        uv_timer_start(handle, { handle in
            let timer = Unmanaged<LoopTimer>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            if !timer.repeating { timer.cancel() }
            timer.action()
        }, delayMs, repeatMs)
    }

    /// Stops the timer if it has not fired; safe to call more than once.
    public func cancel() {
        guard let handle else { return }
        self.handle = nil
        uv_timer_stop(handle)
        closeAndFree(handle)
    }
}
