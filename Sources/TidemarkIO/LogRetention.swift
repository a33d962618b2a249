/// What a log keeps, as told by the state it feeds: where a new file helps (so a prefix
/// can later go whole) and which entries are now durable elsewhere.
public protocol LogRetention: AnyObject, Sendable {
    /// Starts a new log file: what came before can go once the sealed memtable is flushed.
    func checkpoint() throws
    /// Entries through `index` are durable in segments; the log may drop them.
    func release(through index: UInt64) throws
}

extension FileWAL: LogRetention {
    public func checkpoint() throws { try rotate() }
    public func release(through index: UInt64) throws { try truncate(through: index) }
}
