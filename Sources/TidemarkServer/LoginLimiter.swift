import DequeModule

/// Counts failed logins per client address and per user name in a fixed window that opens
/// at a key's first failure. A login is let through to a password hash only while both its
/// keys have room for one more failure, counting the checks still in flight as failures-to-be,
/// so a burst cannot queue more hashes than the limit before the first one fails.
///
/// Ended windows are forgotten in the order they end: every window lasts `windowMs` and
/// opens at the time of a call, so a queue of open windows in opening order is also in
/// ending order, and each call drops the ended ones from its front. Each window is queued
/// once and dropped once, so forgetting is amortised O(1) per login, under the caller's
/// lock on the loop thread, however full the table. (Scanning the whole table when it is
/// full, as this once did, cost up to `entriesMax` steps on every login while attackers
/// kept it full.)
///
/// A pure value: time comes in as `nowMs`, so tests drive it without clocks.
struct LoginLimiter {
    enum Key: Hashable {
        case client(String)
        case user(String)
    }

    struct Entry {
        var failures = 0
        var inFlight = 0
        var windowEndMs: UInt64 = 0
    }

    let perClientMax: Int
    let perUserMax: Int
    let windowMs: UInt64
    let entriesMax: Int
    /// Keys with failures in an open window or checks in flight; no others.
    private(set) var entries: [Key: Entry] = [:]
    /// The keys whose window is open, in the order the windows end: exactly one for each
    /// entry with failures.
    private var windows: Deque<(key: Key, endMs: UInt64)> = []
    /// The latest time seen: time never goes back here, so windows end in the order they open.
    private var latestMs: UInt64 = 0
    /// Queued windows looked at to forget ended ones, over the limiter's life (for tests
    /// that check forgetting stays O(1) per login).
    private(set) var windowsExamined = 0

    init(perClientMax: Int, perUserMax: Int, windowMs: Int, entriesMax: Int) {
        precondition(perClientMax > 0 && perUserMax > 0 && windowMs > 0 && entriesMax >= 2)
        self.perClientMax = perClientMax
        self.perUserMax = perUserMax
        self.windowMs = UInt64(windowMs)
        self.entriesMax = entriesMax
    }

    /// Keys whose failure window is open.
    var openWindows: Int { windows.count }

    /// Starts a login: nil when it may be checked (it is then in flight until `end` or
    /// `cancel`), else the milliseconds after which it is worth trying again.
    mutating func begin(client: String, user: String, nowMs: UInt64) -> UInt64? {
        let nowMs = forgetEndedWindows(nowMs: nowMs)
        let keys = [(Key.client(client), perClientMax), (Key.user(user), perUserMax)]
        var retryMs: UInt64?
        for (key, max) in keys {
            let entry = entries[key] ?? Entry()
            guard entry.failures + entry.inFlight >= max else { continue }
            // Full of failures: wait out the window; full of checks in flight: they end soon.
            let wait = entry.failures >= max ? entry.windowEndMs - nowMs : 1000
            retryMs = Swift.max(retryMs ?? 0, wait)
        }
        if let retryMs { return retryMs }
        let newKeys = keys.filter { entries[$0.0] == nil }.count
        if entries.count + newKeys > entriesMax {
            // Every entry is live: the first window to end frees one (or a check in flight does).
            return windows.first.map { $0.endMs - nowMs } ?? 1000
        }
        for (key, _) in keys { entries[key, default: Entry()].inFlight += 1 }
        return nil
    }

    /// Ends a login that `begin` let through; a failure counts against both keys.
    mutating func end(client: String, user: String, failed: Bool, nowMs: UInt64) {
        let nowMs = forgetEndedWindows(nowMs: nowMs)
        for key in [Key.client(client), Key.user(user)] {
            var entry = entries[key] ?? Entry()
            precondition(entry.inFlight > 0, "end of a login that never began")
            entry.inFlight -= 1
            if failed {
                if entry.failures == 0 {
                    entry.windowEndMs = nowMs + windowMs
                    precondition(windows.last.map { $0.endMs <= entry.windowEndMs } ?? true, "windows end in the order they open")
                    windows.append((key, entry.windowEndMs))
                }
                entry.failures += 1
            }
            store(entry, key)
        }
    }

    /// Ends a login that `begin` let through but that was never checked.
    mutating func cancel(client: String, user: String, nowMs: UInt64) {
        _ = forgetEndedWindows(nowMs: nowMs)
        for key in [Key.client(client), Key.user(user)] {
            var entry = entries[key] ?? Entry()
            precondition(entry.inFlight > 0, "cancel of a login that never began")
            entry.inFlight -= 1
            store(entry, key)
        }
    }

    private mutating func store(_ entry: Entry, _ key: Key) {
        entries[key] = entry.failures == 0 && entry.inFlight == 0 ? nil : entry
    }

    /// Forgets the failures of every window that has ended by `nowMs` (or by a later time
    /// already seen), dropping entries left with nothing in flight; returns the time to use.
    private mutating func forgetEndedWindows(nowMs: UInt64) -> UInt64 {
        latestMs = max(latestMs, nowMs)
        while let window = windows.first, window.endMs <= latestMs {
            windows.removeFirst()
            windowsExamined += 1
            guard var entry = entries[window.key] else { preconditionFailure("an open window without its entry") }
            precondition(entry.failures > 0 && entry.windowEndMs == window.endMs, "one queued window per entry with failures")
            entry.failures = 0
            store(entry, window.key)
        }
        return latestMs
    }
}
