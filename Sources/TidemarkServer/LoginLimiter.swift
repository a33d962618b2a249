/// Counts failed logins per client address and per user name in a fixed window that opens
/// at a key's first failure. A login is let through to a password hash only while both its
/// keys have room for one more failure, counting the checks still in flight as failures-to-be,
/// so a burst cannot queue more hashes than the limit before the first one fails.
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
    private(set) var entries: [Key: Entry] = [:]

    init(perClientMax: Int, perUserMax: Int, windowMs: Int, entriesMax: Int) {
        precondition(perClientMax > 0 && perUserMax > 0 && windowMs > 0 && entriesMax >= 2)
        self.perClientMax = perClientMax
        self.perUserMax = perUserMax
        self.windowMs = UInt64(windowMs)
        self.entriesMax = entriesMax
    }

    /// Starts a login: nil when it may be checked (it is then in flight until `end` or
    /// `cancel`), else the milliseconds after which it is worth trying again.
    mutating func begin(client: String, user: String, nowMs: UInt64) -> UInt64? {
        let keys = [(Key.client(client), perClientMax), (Key.user(user), perUserMax)]
        var retryMs: UInt64?
        for (key, max) in keys {
            let entry = current(key, nowMs: nowMs)
            guard entry.failures + entry.inFlight >= max else { continue }
            // Full of failures: wait out the window; full of checks in flight: they end soon.
            let wait = entry.failures >= max ? entry.windowEndMs - nowMs : 1000
            retryMs = Swift.max(retryMs ?? 0, wait)
        }
        if let retryMs { return retryMs }
        let newKeys = keys.filter { entries[$0.0] == nil }.count
        if entries.count + newKeys > entriesMax {
            purge(nowMs: nowMs)
            if entries.count + newKeys > entriesMax { return windowMs }
        }
        for (key, _) in keys {
            var entry = current(key, nowMs: nowMs)
            entry.inFlight += 1
            entries[key] = entry
        }
        return nil
    }

    /// Ends a login that `begin` let through; a failure counts against both keys.
    mutating func end(client: String, user: String, failed: Bool, nowMs: UInt64) {
        for key in [Key.client(client), Key.user(user)] {
            var entry = current(key, nowMs: nowMs)
            precondition(entry.inFlight > 0, "end of a login that never began")
            entry.inFlight -= 1
            if failed {
                if entry.failures == 0 { entry.windowEndMs = nowMs + windowMs }
                entry.failures += 1
            }
            store(entry, key)
        }
    }

    /// Ends a login that `begin` let through but that was never checked.
    mutating func cancel(client: String, user: String, nowMs: UInt64) {
        for key in [Key.client(client), Key.user(user)] {
            var entry = current(key, nowMs: nowMs)
            precondition(entry.inFlight > 0, "cancel of a login that never began")
            entry.inFlight -= 1
            store(entry, key)
        }
    }

    /// The entry with an ended window's failures forgotten.
    private func current(_ key: Key, nowMs: UInt64) -> Entry {
        var entry = entries[key] ?? Entry()
        if entry.failures > 0 && nowMs >= entry.windowEndMs { entry.failures = 0 }
        return entry
    }

    private mutating func store(_ entry: Entry, _ key: Key) {
        entries[key] = entry.failures == 0 && entry.inFlight == 0 ? nil : entry
    }

    /// Drops entries whose window has ended and that have nothing in flight.
    private mutating func purge(nowMs: UInt64) {
        entries = entries.filter { $0.value.inFlight > 0 || ($0.value.failures > 0 && nowMs < $0.value.windowEndMs) }
    }
}
