import TidemarkIO
import Foundation
import Synchronization
import TidemarkConsensus
import TidemarkStorage

/// A data region as its consensus group sees it: committed entries are engine records
/// (points, deletes, schema statements).
public final class RegionStateMachine: StateMachine, Sendable {
    /// The first byte of a user entry an earlier version logged in a data region (users live in
    /// the meta group now; `UserStore.entryKind`).
    public static let userEntryKind: UInt8 = 16

    public let engine: StorageEngine
    private let lastApplied = Atomic<UInt64>(0)

    public init(engine: StorageEngine) {
        self.engine = engine
    }

    public func apply(_ entry: CommittedEntry) throws {
        if entry.data.first == Self.userEntryKind {
            // A user change logged here by an earlier version: users live in the meta group
            // now, which took them from that version's users log (`UserStore.open`).
        } else {
            try engine.apply(index: entry.index, record: entry.data, prepared: entry.local as? PreparedWrite,
                             outcome: entry.local as? ApplyOutcome)
        }
        lastApplied.store(entry.index, ordering: .releasing)
    }

    /// A region's snapshot is its segment files: flushing puts everything applied in them.
    /// The snapshot in the log carries no data; `openImage(for:)` makes it when one is sent.
    public func snapshot() throws -> StateSnapshot {
        try engine.flush()
        return StateSnapshot(index: lastApplied.load(ordering: .acquiring), term: 1, data: [])
    }

    /// Every segment, the schema and the tombstones, covering at least the snapshot.
    public func openImage(for snapshot: StateSnapshot, bytesMax: Int) throws -> any ImageReader {
        let applied = lastApplied.load(ordering: .acquiring)
        guard applied >= snapshot.index else {
            throw ConsensusError.refused("region image for index \(snapshot.index) asked before it was applied (\(applied))")
        }
        return try engine.openImageExport(coveringThrough: applied, bytesMax: bytesMax, extras: [])
    }

    /// An installed image is the region's segment files, schema log and tombstones, all
    /// synced before `restore` returns.
    public var keepsInstalledImages: Bool { true }

    /// A snapshot with an image (from the leader) replaces the region, unless an image at
    /// least as new is installed already (a restart replays the same snapshot). One without
    /// is this node's own compaction, made only once its segments held the entries (a drop
    /// of a database may since have removed some of them).
    public func restore(_ snapshot: StateSnapshot) throws {
        if engine.installedImageIndex < snapshot.index {
            if let file = snapshot.file {
                try engine.installImage(file: file, coveringAtLeast: snapshot.index)
            } else if !snapshot.data.isEmpty {
                try engine.installImage(snapshot.data, coveringAtLeast: snapshot.index)
            }
        }
        lastApplied.store(snapshot.index, ordering: .releasing)
    }

    public func attach(logRetention: LogRetention) { engine.attach(logRetention: logRetention) }

    public var persistedIndexMax: UInt64 { engine.persistedIndexMax }

    public var holdsUnflushedEntries: Bool { engine.holdsUnflushedPoints }
}

extension RegionImageExport: ImageReader {}

extension Consensus {
    /// Proposes `data` and waits for the answer: for callers that are not a stage with a
    /// continuation (a statement run by the query stage). With `hints`, a refusal this node
    /// cannot help (not the leader, busy) comes back as `EngineError.unavailable`, naming
    /// the leader's client address.
    public func proposeAndWait(_ group: GroupID, _ data: [UInt8], local: (any Sendable)? = nil, hints: LeaderHints? = nil,
                        timeoutMs: Int = 30_000) throws {
        let answer = Mutex<Result<UInt64, ConsensusError>?>(nil)
        let done = DispatchSemaphore(value: 0)
        write(group, Proposal(data: data, local: local)) { result in
            answer.withLock { $0 = result }
            done.signal()
        }
        // Bounded: a proposal whose leader vanished may never be answered.
        guard done.wait(timeout: .now() + .milliseconds(timeoutMs)) == .success else {
            throw ConsensusError.refused("\(group): no answer within \(timeoutMs) ms (no leader?); the write may or may not have been applied")
        }
        if case .failure(let error) = answer.withLock({ $0 })! { throw hints?.engineError(error) ?? error }
    }
}
