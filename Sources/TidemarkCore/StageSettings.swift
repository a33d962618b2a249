/// What a stage does with an event when its queue is full.
public enum OverflowPolicy: String, Sendable, CaseIterable {
    /// Refuse the event: the client gets "overloaded" (HTTP 503) and nothing is applied.
    case reject
    /// Make the producer wait: the edge stops reading the connection until there is room.
    case block
}

/// The sizing of one stage, as read from `stages.yaml` and node overrides.
public struct StageSettings: Sendable, Equatable {
    /// Worker threads; 0 only when `inline` is set.
    public var threads: Int
    /// Bounded queue capacity, in events.
    public var queueCapacity: Int
    /// Events a worker drains per wake-up.
    public var batchSize: Int
    public var overflow: OverflowPolicy
    /// Run the handler on the thread that submits, with no queue hop.
    public var inline: Bool

    public init(threads: Int, queueCapacity: Int, batchSize: Int, overflow: OverflowPolicy, inline: Bool) {
        self.threads = threads
        self.queueCapacity = queueCapacity
        self.batchSize = batchSize
        self.overflow = overflow
        self.inline = inline
    }

    /// The first setting that cannot run and why, or nil when all are valid.
    public var problem: (key: String, message: String)? {
        if threads < 0 { return ("threads", "must not be negative (got \(threads))") }
        if !inline && threads < 1 { return ("threads", "must be at least 1 unless inline is true (got \(threads))") }
        if queueCapacity < 1 { return ("queue", "must be at least 1 (got \(queueCapacity))") }
        if batchSize < 1 { return ("batch", "must be at least 1 (got \(batchSize))") }
        return nil
    }
}
