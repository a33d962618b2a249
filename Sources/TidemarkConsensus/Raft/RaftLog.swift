/// A replica's log in memory: a compacted prefix (the snapshot's index and term), the
/// entries after it, and how far they are persisted, committed and handed out to apply.
struct RaftLog: Sendable {
    private(set) var snapshotIndex: UInt64 = 0
    private(set) var snapshotTerm: UInt64 = 0
    private(set) var entries: [RaftEntry] = []
    /// Entries through this index are on disk (the host said so in `advance`).
    var stable: UInt64 = 0
    private(set) var committed: UInt64 = 0
    /// Entries through this index were handed to the host to apply.
    var applied: UInt64 = 0
    /// A snapshot received but not yet persisted and applied by the host.
    var pendingSnapshot: RaftSnapshot?

    init() {}

    /// The log after a restart: what was on disk.
    init(snapshot: RaftSnapshot?, entries: [RaftEntry], commit: UInt64) {
        if let snapshot {
            snapshotIndex = snapshot.index
            snapshotTerm = snapshot.term
        }
        self.entries = entries.filter { $0.index > snapshotIndex }
        for (offset, entry) in self.entries.enumerated() {
            precondition(entry.index == snapshotIndex + 1 + UInt64(offset), "persisted entries are contiguous after the snapshot")
        }
        stable = lastIndex
        committed = max(commit, snapshotIndex)
        precondition(committed <= lastIndex, "commit index past the log")
        applied = snapshotIndex
    }

    var firstIndex: UInt64 { snapshotIndex + 1 }
    var lastIndex: UInt64 { snapshotIndex + UInt64(entries.count) }
    var lastTerm: UInt64 { term(at: lastIndex)! }

    /// The term of the entry at `index`, or nil when it is compacted away or not there.
    func term(at index: UInt64) -> UInt64? {
        if index == snapshotIndex { return snapshotTerm }
        guard index > snapshotIndex, index <= lastIndex else { return nil }
        return entries[Int(index - snapshotIndex - 1)].term
    }

    func matches(index: UInt64, term: UInt64) -> Bool { self.term(at: index) == term }

    /// Whether a candidate with this last entry is at least as up to date as this log.
    func isUpToDate(lastIndex candidateIndex: UInt64, lastTerm candidateTerm: UInt64) -> Bool {
        candidateTerm > lastTerm || (candidateTerm == lastTerm && candidateIndex >= lastIndex)
    }

    /// Entries in `from…through`, at most `bytesMax` (but at least one).
    func slice(from: UInt64, through: UInt64, bytesMax: Int) -> [RaftEntry] {
        precondition(from > snapshotIndex, "slice of compacted entries")
        guard from <= through else { return [] }
        var out: [RaftEntry] = []
        var bytes = 0
        for index in from...min(through, lastIndex) {
            let entry = entries[Int(index - snapshotIndex - 1)]
            if !out.isEmpty && bytes + entry.sizeBytes > bytesMax { break }
            bytes += entry.sizeBytes
            out.append(entry)
        }
        return out
    }

    /// The entries in `from…through` still in the log, in place (no copy).
    private func held(from: UInt64, through: UInt64) -> ArraySlice<RaftEntry> {
        let low = max(from, snapshotIndex + 1), high = min(through, lastIndex)
        guard low <= high else { return [] }
        return entries[Int(low - snapshotIndex - 1)...Int(high - snapshotIndex - 1)]
    }

    /// Bytes (`sizeBytes`) of the entries in `from…through`.
    func bytes(from: UInt64, through: UInt64) -> Int { held(from: from, through: through).reduce(0) { $0 + $1.sizeBytes } }

    /// Whether an entry in `from…through` is a membership change.
    func containsConfChange(from: UInt64, through: UInt64) -> Bool {
        held(from: from, through: through).contains { $0.kind == .confChange }
    }

    /// Appends a new leader-made entry.
    mutating func append(_ entry: RaftEntry) {
        precondition(entry.index == lastIndex + 1, "entries are appended in order")
        entries.append(entry)
    }

    /// A follower takes `incoming` (which follow the entry at `after`, already matched):
    /// entries it has are kept, the first conflict truncates the log from there. Returns
    /// the last index now known to match the leader.
    mutating func merge(after: UInt64, _ incoming: [RaftEntry]) -> UInt64 {
        for entry in incoming {
            guard entry.index > snapshotIndex else { continue }
            if let existing = term(at: entry.index) {
                if existing == entry.term { continue }
                precondition(entry.index > committed, "a committed entry never conflicts")
                entries.removeLast(Int(lastIndex - entry.index + 1))
                stable = min(stable, entry.index - 1)
            }
            entries.append(entry)
        }
        return after + UInt64(incoming.count)
    }

    mutating func commit(to index: UInt64) {
        guard index > committed else { return }
        precondition(index <= lastIndex, "commit past the log")
        committed = index
    }

    /// Drops the entries through `index` (already applied and in a snapshot).
    mutating func compact(through index: UInt64) {
        guard index > snapshotIndex else { return }
        precondition(index <= applied, "only applied entries are compacted")
        let term = self.term(at: index)!
        entries.removeFirst(Int(index - snapshotIndex))
        snapshotIndex = index
        snapshotTerm = term
    }

    /// Replaces the whole log by a snapshot from the leader.
    mutating func restore(_ snapshot: RaftSnapshot) {
        snapshotIndex = snapshot.index
        snapshotTerm = snapshot.term
        entries = []
        committed = snapshot.index
        stable = snapshot.index
        pendingSnapshot = snapshot
    }
}
