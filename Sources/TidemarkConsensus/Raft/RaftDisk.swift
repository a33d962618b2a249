import Foundation
import TidemarkIO

/// What one group had on disk, to restart its `RaftCore` from.
public struct RaftDiskState: Sendable, Equatable {
    public var hardState = HardState()
    public var snapshot: RaftSnapshot?
    public var entries: [RaftEntry] = []

    public init(hardState: HardState = HardState(), snapshot: RaftSnapshot? = nil, entries: [RaftEntry] = []) {
        self.hardState = hardState
        self.snapshot = snapshot
        self.entries = entries
    }
}

/// A Raft log write refused for lack of space (ENOSPC, EDQUOT): the log cut back what it
/// had written of it, so nothing of the write is on disk, and takes writes again once there
/// is space. The same readies may be written again.
public struct RaftDiskFullError: Error, Sendable, CustomStringConvertible {
    public let underlying: StorageIOError
    public var description: String { "\(underlying)" }
}

/// The Raft log of every group on a node in one segmented, checksummed log (the WAL's
/// record format: CRC per record, torn tail cut at recovery), so one fsync covers a batch of
/// readies from all groups, as TiKV's store writer does. A host persists a batch with
/// `write`, and only then sends the readies' messages.
///
/// Old files go once every group's entries in them are compacted: at each rotation the
/// latest hard state and snapshot of every group are written again into the new file.
public final class RaftDisk: @unchecked Sendable {
    public let segmentBytesMax: Int
    private let wal: FileWAL
    private let directory: String
    private let health: StorageHealth?
    private let lock = NSLock()
    // protected by lock:
    private var groups: [GroupID: Tracked] = [:]
    private var bytesSinceRotation = 0

    /// What is needed to rewrite a group and to know which log records it still needs.
    private struct Tracked {
        var hardState = HardState()
        var snapshot: RaftSnapshot?
        var compactedThrough: UInt64 = 0
        /// WAL sequences of the group's entry records, with the last index each holds.
        var entryRecords: [(sequence: UInt64, lastIndex: UInt64)] = []
        /// Sequence of the newest record with its hard state and snapshot.
        var checkpointSequence: UInt64 = 0

        var oldestNeeded: UInt64 {
            min(entryRecords.first?.sequence ?? .max, checkpointSequence == 0 ? .max : checkpointSequence)
        }
    }

    /// Where snapshot images that came in pieces wait until their state machine installs them.
    public let imageDirectory: String

    /// Opens the log and recovers every group's state; `health` hears of failed and successful
    /// log writes (the node's disk-full state).
    public init(directory: String, segmentBytesMax: Int = 64 << 20, health: StorageHealth? = nil) throws {
        precondition(segmentBytesMax > 0)
        self.segmentBytesMax = segmentBytesMax
        self.directory = directory
        self.health = health
        wal = try FileWAL(directory: directory, policy: .batch, health: health)
        imageDirectory = directory + "/images"
        try FileIO.makeDirectory(imageDirectory)
    }

    /// Replays the log once, before the first write: each group's hard state, snapshot and entries.
    public func recover() throws -> [GroupID: RaftDiskState] {
        var states: [GroupID: RaftDiskState] = [:]
        try lock.withLock {
            _ = try wal.replay { sequence, payload in
                switch try RaftRecord.decode(payload) {
                case .entries(let id, let entries):
                    guard let first = entries.first else { return }
                    var state = states[id] ?? RaftDiskState()
                    state.entries.removeAll { $0.index >= first.index }
                    guard state.entries.last.map({ $0.index + 1 == first.index }) ?? true else {
                        throw CorruptDataError("raft log of \(id): entries from \(first.index) do not follow \(state.entries.last!.index)")
                    }
                    state.entries += entries
                    states[id] = state
                    groups[id, default: Tracked()].entryRecords.removeAll { $0.lastIndex >= first.index }
                    groups[id]!.entryRecords.append((sequence, entries.last!.index))
                case .hardState(let id, let hardState):
                    states[id, default: RaftDiskState()].hardState = hardState
                    groups[id, default: Tracked()].hardState = hardState
                    groups[id]!.checkpointSequence = sequence
                case .snapshot(let id, let snapshot, let installed):
                    var state = states[id] ?? RaftDiskState()
                    state.snapshot = snapshot
                    if installed { state.entries = [] } else { state.entries.removeAll { $0.index <= snapshot.index } }
                    states[id] = state
                    groups[id, default: Tracked()].snapshot = snapshot
                    groups[id]!.checkpointSequence = sequence
                    if installed { groups[id]!.entryRecords = [] }
                case .compacted(let id, let index):
                    states[id]?.entries.removeAll { $0.index <= index }
                    groups[id]?.compactedThrough = index
                    groups[id]?.entryRecords.removeAll { $0.lastIndex <= index }
                case .removed(let id):
                    states[id] = nil
                    groups[id] = nil
                }
            }
        }
        return states
    }

    /// Persists the readies of many groups with one append and, when any of them needs it,
    /// one fsync; returns once durable. Like etcd's `MustSync`, a ready that only moves the
    /// commit index is written but not synced: a lost commit index is learned again from the
    /// leader, while entries, votes and terms must never be lost.
    ///
    /// Throws `RaftDiskFullError` when the log refused the batch for lack of space and none
    /// of it is on disk (the caller may write the same readies again later); anything else
    /// it throws leaves the log unusable.
    public func write(_ batch: [(group: GroupID, ready: RaftReady)]) throws {
        var records: [(GroupID, RaftRecord)] = []
        var mustSync = false
        try lock.withLock {
            for (group, ready) in batch {
                if let snapshot = ready.snapshot { records.append((group, .snapshot(group, snapshot, installed: true))) }
                if !ready.entries.isEmpty { records.append((group, .entries(group, ready.entries))) }
                if let hardState = ready.hardState {
                    records.append((group, .hardState(group, hardState)))
                    let before = groups[group]?.hardState ?? HardState()
                    if hardState.term != before.term || hardState.vote != before.vote { mustSync = true }
                }
                if ready.snapshot != nil || !ready.entries.isEmpty { mustSync = true }
            }
            guard !records.isEmpty else { return }
            try appendLocked(records, sync: mustSync)
        }
    }

    /// Raft stopped on this node after `error` (any log failure but lack of space, or a
    /// snapshot it could not install): the node's health says its log failed, so `/ping`
    /// answers 503 until a restart.
    public func failed(_ error: Error) {
        health?.logStopped(directory, reason: "\(error)")
    }

    /// The group's entries through `snapshot.index` are in the snapshot: keep it, let them go.
    public func compact(_ group: GroupID, snapshot: RaftSnapshot) throws {
        try lock.withLock {
            try appendLocked([(group, .snapshot(group, snapshot, installed: false)), (group, .compacted(group, snapshot.index))])
            try dropUnneededFilesLocked()
        }
    }

    /// Forgets a group (its replica left this node).
    public func remove(_ group: GroupID) throws {
        try lock.withLock {
            try appendLocked([(group, .removed(group))])
            groups[group] = nil
            try dropUnneededFilesLocked()
        }
    }

    /// The group's newest snapshot as the log holds it (what a restart recovers).
    public func snapshot(of group: GroupID) -> RaftSnapshot? { lock.withLock { groups[group]?.snapshot } }

    /// fsyncs so far (for the "fsyncs per committed batch" figure).
    public var syncs: Int { wal.syncCount }

    public func close() { wal.close() }

    // MARK: - Internals

    /// Appends `records` (and syncs them with `sync`), then rotates when the file is full. A
    /// refusal for lack of space throws `RaftDiskFullError`, with nothing of `records` written;
    /// a rotation refused so is tried again after the next append, the records being durable.
    private func appendLocked(_ records: [(GroupID, RaftRecord)], sync: Bool = true) throws {
        let payloads = records.map { $0.1.encoded() }
        let last: UInt64
        do {
            last = try wal.append(payloads)
        } catch let error as StorageIOError where error.isOutOfSpace && !wal.hasFailed {
            throw RaftDiskFullError(underlying: error)
        }
        if sync { try wal.waitDurable(last) }
        let first = last - UInt64(payloads.count) + 1
        for (offset, (group, record)) in records.enumerated() {
            let sequence = first + UInt64(offset)
            switch record {
            case .entries(_, let entries):
                groups[group, default: Tracked()].entryRecords.removeAll { $0.lastIndex >= entries.first!.index }
                groups[group]!.entryRecords.append((sequence, entries.last!.index))
            case .hardState(_, let hardState):
                groups[group, default: Tracked()].hardState = hardState
                groups[group]!.checkpointSequence = sequence
            case .snapshot(_, let snapshot, let installed):
                groups[group, default: Tracked()].snapshot = snapshot
                groups[group]!.checkpointSequence = sequence
                if installed { groups[group]!.entryRecords = [] }
            case .compacted(_, let index):
                groups[group]?.compactedThrough = index
                groups[group]?.entryRecords.removeAll { $0.lastIndex <= index }
            case .removed:
                groups[group] = nil
            }
        }
        bytesSinceRotation += payloads.reduce(0) { $0 + $1.count + FileWAL.recordHeaderBytes }
        guard bytesSinceRotation >= segmentBytesMax else { return }
        do {
            try rotateLocked()
        } catch is RaftDiskFullError {
            // The checkpoint was refused: the groups' older records stay needed (nothing was
            // dropped), and the next append tries again.
            bytesSinceRotation = segmentBytesMax
        } catch let error as StorageIOError where error.isOutOfSpace && !wal.hasFailed {
            bytesSinceRotation = segmentBytesMax  // no file for the checkpoint (no inode free): the same
        }
    }

    /// Starts a new file holding every group's latest hard state and snapshot, then drops
    /// files no group needs.
    private func rotateLocked() throws {
        bytesSinceRotation = 0
        try wal.rotate()
        var checkpoint: [(GroupID, RaftRecord)] = []
        for (group, tracked) in groups.sorted(by: { "\($0.key)" < "\($1.key)" }) {
            if let snapshot = tracked.snapshot { checkpoint.append((group, .snapshot(group, snapshot, installed: false))) }
            checkpoint.append((group, .hardState(group, tracked.hardState)))
        }
        if !checkpoint.isEmpty { try appendLocked(checkpoint) }
        try dropUnneededFilesLocked()
    }

    private func dropUnneededFilesLocked() throws {
        guard let oldest = groups.values.map(\.oldestNeeded).min(), oldest != .max, oldest > 1 else { return }
        try wal.truncate(through: oldest - 1)
    }
}
