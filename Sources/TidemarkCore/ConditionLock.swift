#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A pthread mutex with condition variables, for the stage queues and the WAL's group commit.
///
/// `Synchronization.Mutex` has no condition variable, and workers must sleep
/// until their queue goes from empty to non-empty, so the queue needs one.
/// `@unchecked Sendable`: the pthread objects are the synchronisation.
package final class ConditionLock: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let conditions: UnsafeMutablePointer<pthread_cond_t>
    private let conditionCount: Int

    /// - Parameter conditions: how many independent condition variables share this mutex.
    package init(conditions conditionCount: Int = 1) {
        precondition(conditionCount >= 1)
        self.conditionCount = conditionCount
        mutex = .allocate(capacity: 1)
        precondition(pthread_mutex_init(mutex, nil) == 0)
        conditions = .allocate(capacity: conditionCount)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        // Timed waits measure against the monotonic clock, so a wall-clock jump cannot stretch them.
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        for index in 0..<conditionCount {
            precondition(pthread_cond_init(conditions + index, &attributes) == 0)
        }
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        for index in 0..<conditionCount { pthread_cond_destroy(conditions + index) }
        pthread_mutex_destroy(mutex)
        conditions.deallocate()
        mutex.deallocate()
    }

    package func lock() { precondition(pthread_mutex_lock(mutex) == 0) }
    package func unlock() { precondition(pthread_mutex_unlock(mutex) == 0) }

    /// Waits on condition `index`; the caller holds the lock.
    package func wait(_ index: Int = 0) {
        precondition(index < conditionCount)
        precondition(pthread_cond_wait(conditions + index, mutex) == 0)
    }

    /// Waits on condition `index` until signalled or the monotonic clock passes `deadlineNs`.
    /// Returns false on timeout. The caller holds the lock.
    @discardableResult
    package func wait(_ index: Int, untilNs deadlineNs: UInt64) -> Bool {
        precondition(index < conditionCount)
        var deadline = timespec(tv_sec: Int(deadlineNs / 1_000_000_000), tv_nsec: Int(deadlineNs % 1_000_000_000))
        let status = pthread_cond_timedwait(conditions + index, mutex, &deadline)
        precondition(status == 0 || status == ETIMEDOUT)
        return status == 0
    }

    package func signal(_ index: Int = 0) { pthread_cond_signal(conditions + index) }
    package func broadcast(_ index: Int = 0) { pthread_cond_broadcast(conditions + index) }

    package func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }
}

/// Nanoseconds on the monotonic clock.
@inline(__always)
public func monotonicNowNs() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}
