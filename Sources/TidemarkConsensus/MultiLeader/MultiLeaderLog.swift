import TidemarkIO

/// The pure rules of a multi-leader replica's log (`MultiLeaderRecord`s in apply order), used
/// by `MultiLeaderConsensus` over its WAL and by the simulator over a simulated disk: what a
/// ready appends, what a replay rebuilds, and how much of the log may go.
public enum MultiLeaderLog {
    /// What `rebuild` recovers from a log.
    public struct Recovered: Sendable {
        /// The core's state: per source what is applied, per peer what it acknowledged, and
        /// the own entries some peer still lacks.
        public var state: MultiLeaderDiskState
        /// The log index of each of those own entries.
        public var ownIndexes: [UInt64]
        /// The last log index replayed (0 for an empty log).
        public var lastIndex: UInt64
    }

    /// What a ready appends to the log, and whether it must be durable before anything ships.
    public struct Append: Sendable {
        public var records: [MultiLeaderRecord]
        /// False when the records only move the dispatchers' progress: lost in a crash, that
        /// progress only makes the dispatchers ship again what the receivers then skip, so it
        /// may ride on the next sync. Entries, and a peer added or removed, are synced first.
        public var syncFirst: Bool
    }

    /// The records that persist `ready`: every entry it applies, then the dispatchers'
    /// progress when it moved since `persistedShipped` (which is updated).
    public static func append(for ready: MultiLeaderReady, persistedShipped: inout [UInt64: UInt64]) -> Append {
        var records = ready.apply.map { MultiLeaderRecord(source: $0.source, sequence: $0.sequence, data: $0.data) }
        var syncFirst = !records.isEmpty
        // A removal drops the peer from `shipped`, so it is persisted here too.
        if let state = ready.state, state.shipped != persistedShipped {
            records.append(MultiLeaderRecord(shipped: state.shipped, applied: state.applied, removed: state.removed))
            if Set(state.shipped.keys) != Set(persistedShipped.keys) { syncFirst = true }
            persistedShipped = state.shipped
        }
        return Append(records: records, syncFirst: syncFirst)
    }

    /// Replays `records` (log index, record) in order: each entry goes to `apply` (the state
    /// machine skips what its own files hold), and the dispatchers' state is rebuilt. `peers`
    /// are the configured ones, with those the log says were added and without those it
    /// says were removed.
    public static func rebuild(nodeID: UInt64, peers: [UInt64], records: some Sequence<(UInt64, MultiLeaderRecord)>,
                               apply: (UInt64, [UInt8]) -> Void) throws(CorruptDataError) -> Recovered {
        var shipped: [UInt64: UInt64] = [:]
        var applied: [UInt64: UInt64] = [:]
        var removed: Set<UInt64> = []
        var own: [(sequence: UInt64, index: UInt64, data: [UInt8])] = []
        var lastIndex: UInt64 = 0
        for (index, record) in records {
            lastIndex = index
            switch record {
            case .entry(let source, let sequence, let data):
                apply(index, data)
                applied[source] = max(applied[source] ?? 1, sequence + 1)
                if source == nodeID { own.append((sequence, index, data)) }
            case .progress(let shippedThen, let appliedThen, let removedThen):
                shipped = shippedThen
                removed = removedThen
                for (source, next) in appliedThen { applied[source] = max(applied[source] ?? 1, next) }
            }
        }
        let next = applied[nodeID] ?? 1
        // Peers added after the configured list was written are in the progress records.
        let peers = Set(peers).union(shipped.keys).subtracting(removed).subtracting([nodeID]).sorted()
        var state = MultiLeaderDiskState()
        state.applied = applied
        state.removed = removed
        state.firstSequence = peers.map { min(shipped[$0] ?? 1, next) }.min() ?? next
        for peer in peers { state.shipped[peer] = max(shipped[peer] ?? 1, state.firstSequence) }
        let kept = own.filter { $0.sequence >= state.firstSequence }
        guard kept.map(\.sequence) == Array(state.firstSequence..<next) else {
            throw CorruptDataError("own entries \(state.firstSequence)..<\(next) are not all in the log")
        }
        state.entries = kept.map(\.data)
        return Recovered(state: state, ownIndexes: kept.map(\.index), lastIndex: lastIndex)
    }

    /// How far the log may be dropped: through what the state machine's files hold
    /// (`checkpointed`), but not an own entry some peer still lacks (`ownIndexes`). Before
    /// dropping, the host logs the current progress again, so it survives.
    public static func releasable(checkpointed: UInt64, ownIndexes: [UInt64]) -> UInt64 {
        guard let firstNeeded = ownIndexes.first else { return checkpointed }
        return min(checkpointed, firstNeeded - 1)
    }
}
