import Foundation
import Logging
import Synchronization
import TidemarkIO

/// Consensus with one replica and no network (DESIGN.md section 5): each group's log is a
/// local WAL, a write is committed once appended, applied in log order and acknowledged
/// once applied and durable under the node's `wal_sync` (an entry the state machine cannot
/// refuse, `Proposal.refusalImpossible`, once durable: the apply is off the writer's path,
/// and `read` waits for it instead). Under `intervalMs` the apply side
/// runs through `applyOn` (the node's apply stage), so the append stage goes on to the next
/// batch meanwhile; under `batch` and `always` the writer applies after its fsync.
///
/// Files: `<directory>/<kind>-<number>/log/*.wal` and, after `snapshot`, `…/snapshot`; the
/// groups made with `createSharedLogGroup` (a node's regions) log in `<directory>/shared/log`
/// instead, so one fsync covers a batch over all of them (`write(batch:)`).
public final class StandaloneConsensus: Consensus, @unchecked Sendable {
    public let nodeID: UInt64
    private let directory: String
    private let syncPolicy: WALSyncPolicy
    private let logger: Logger
    /// Hears of failed and successful log writes (the node's disk-full state).
    private let health: StorageHealth?
    private let groups = Mutex<[GroupID: StandaloneGroup]?>([:])
    private let applyOn: @Sendable (@escaping @Sendable () -> Void) -> Bool
    /// The log of the regions' groups, opened with the first of them.
    private let shared = Mutex<SharedLog?>(nil)
    /// `replaySharedLog` ran: a shared log opened later is replayed as it opens.
    private let sharedReplayed = Atomic<Bool>(false)
    /// Held while a shared group is made and while the shared log replays: a group made
    /// meanwhile would neither be replayed nor start on its own.
    private let sharedLock = NSLock()

    /// `applyOn` runs the apply side's work (by default at once, on the writing thread) and
    /// says whether it took it; when it does not (a stage full or not running), the writing
    /// thread applies.
    public init(nodeID: UInt64 = 1, directory: String, syncPolicy: WALSyncPolicy, logger: Logger = Logger(label: "tidemark.consensus"),
                health: StorageHealth? = nil,
                applyOn: @escaping @Sendable (@escaping @Sendable () -> Void) -> Bool = { $0(); return true }) {
        self.nodeID = nodeID
        self.health = health
        self.directory = directory
        self.syncPolicy = syncPolicy
        self.logger = logger
        self.applyOn = applyOn
    }

    public func createGroup(_ group: GroupID, peers: [Peer], stateMachine: StateMachine) throws {
        guard peers.allSatisfy({ $0.id == nodeID }) else {
            throw ConsensusError.unsupported("a standalone group has this node as its only replica; \(peers.count) peers were named")
        }
        try groups.withLock { groups in
            guard groups != nil else { throw ConsensusError.stopped }
            guard groups![group] == nil else { throw ConsensusError.groupExists(group) }
            groups![group] = try StandaloneGroup(id: group, directory: directory + "/\(group)", syncPolicy: syncPolicy,
                                                 stateMachine: stateMachine, logger: logger, health: health, applyOn: applyOn)
        }
    }

    /// Creates (or reopens) a group that logs in the node's shared log with the other groups
    /// made so; before `replaySharedLog` ran, it waits for it and takes no writes.
    public func createSharedLogGroup(_ group: GroupID, stateMachine: StateMachine) throws {
        sharedLock.lock()
        defer { sharedLock.unlock() }
        let log = try shared.withLock { shared in
            if let shared { return shared }
            let log = try SharedLog(directory: directory + "/shared/log", policy: syncPolicy, health: health)
            // The node replayed its regions before any was on this log: what it holds is of groups gone since.
            if sharedReplayed.load(ordering: .acquiring) { _ = try log.replay { _, _, _ in false } }
            shared = log
            return log
        }
        try groups.withLock { groups in
            guard groups != nil else { throw ConsensusError.stopped }
            guard groups![group] == nil else { throw ConsensusError.groupExists(group) }
            groups![group] = try StandaloneGroup(id: group, directory: directory + "/\(group)", syncPolicy: syncPolicy,
                                                 stateMachine: stateMachine, logger: logger, health: health, shared: log, applyOn: applyOn)
        }
    }

    /// Fsyncs of the shared log so far (tests, metrics).
    public var sharedLogSyncs: Int { shared.withLock { $0 }?.wal.syncCount ?? 0 }

    /// Replays the shared log into the groups made with `createSharedLogGroup` (once, after
    /// the node created every region it holds, before any writes); a record of a group not
    /// held here is dropped with the file it is in.
    public func replaySharedLog() throws {
        sharedLock.lock()
        defer { sharedLock.unlock() }
        sharedReplayed.store(true, ordering: .releasing)
        guard let log = shared.withLock({ $0 }), !log.isReplayed else { return }
        let waiting = groups.withLock { groups in (groups ?? [:]).filter { $0.value.isShared } }
        let report = try log.replay { group, index, data in
            guard let target = waiting[group] else { return false }
            target.replayShared(index: index, data: data)
            return true
        }
        if report.bytesCut > 0 {
            logger.warning("cut a torn log tail", metadata: ["log": "shared", "file": "\(report.cutPath ?? "")", "offset": "\(report.cutOffset)",
                                                            "bytes": "\(report.bytesCut)", "entries": "\(report.records)"])
        }
        for group in waiting.values { try group.finishSharedReplay() }
    }

    /// Writes entries of several groups: on the shared log, under `batch`, one fsync makes all
    /// of them durable (the node's group commit across its regions); each `completion` runs
    /// as `write`'s would.
    public func write(batch writes: [GroupWrite]) {
        var pending: [(StandaloneGroup, StandaloneGroup.PendingWrite)] = []
        for write in writes {
            do {
                let group = try self.group(write.group)
                pending.append((group, try group.append(write.proposal, completion: write.completion)))
            } catch {
                write.completion(.failure(error as? ConsensusError ?? .io("\(error)")))
            }
        }
        // One wait per log, for its last record: every record before it is durable with it.
        var syncErrors: [ObjectIdentifier: Error] = [:]
        if syncPolicy == .batch {
            var last: [ObjectIdentifier: (FileWAL, UInt64)] = [:]
            for (_, write) in pending { last[ObjectIdentifier(write.wal)] = (write.wal, max(last[ObjectIdentifier(write.wal)]?.1 ?? 0, write.sequence)) }
            for (key, (wal, sequence)) in last {
                do { try wal.waitDurable(sequence) } catch { syncErrors[key] = error }
            }
        }
        for (group, write) in pending { group.finishAppend(write, syncError: syncErrors[ObjectIdentifier(write.wal)]) }
    }

    public func deleteGroup(_ group: GroupID) throws {
        let removed = try groups.withLock { groups -> StandaloneGroup in
            guard groups != nil else { throw ConsensusError.stopped }
            guard let removed = groups!.removeValue(forKey: group) else { throw ConsensusError.noSuchGroup(group) }
            return removed
        }
        removed.close()
        if removed.isShared { try shared.withLock { $0 }?.forget(group) }
        try FileManager.default.removeItem(atPath: removed.directory)
    }

    public func write(_ group: GroupID, _ proposal: Proposal, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void) {
        do {
            try self.group(group).write(proposal, completion: completion)
        } catch {
            completion(.failure(error as? ConsensusError ?? .io("\(error)")))
        }
    }

    /// One replica: once it applied everything appended when the read came (acknowledged
    /// writes among them), at any consistency but `weak`. `completion` runs at once, or on the
    /// apply side once it got there.
    public func read(_ group: GroupID, consistency: ReadConsistency, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void) {
        do {
            let group = try self.group(group)
            if consistency == .weak { return completion(.success(group.appliedIndex)) }
            group.whenApplied(completion)
        } catch {
            completion(.failure(error as? ConsensusError ?? .io("\(error)")))
        }
    }

    public func addPeer(_ group: GroupID, _ peer: Peer) throws {
        _ = try self.group(group)
        throw ConsensusError.unsupported("\(group) is standalone: it cannot have other replicas (use the raft or multi-leader consensus)")
    }

    public func removePeer(_ group: GroupID, _ peerID: UInt64) throws {
        _ = try self.group(group)
        throw ConsensusError.unsupported("\(group) is standalone: its one replica cannot be removed; delete the group instead")
    }

    public func transferLeader(_ group: GroupID, to peerID: UInt64) throws {
        _ = try self.group(group)
        guard peerID == nodeID else { throw ConsensusError.unsupported("\(group) is standalone: node \(nodeID) is its only leader") }
    }

    public func leader(of group: GroupID) -> UInt64? {
        (try? self.group(group)) == nil ? nil : nodeID
    }

    public func snapshot(_ group: GroupID) throws -> UInt64 {
        try self.group(group).snapshot()
    }

    public func close() {
        let all = groups.withLock { groups in
            defer { groups = nil }
            return groups.map { Array($0.values) } ?? []
        }
        for group in all { group.close() }
        shared.withLock { $0 }?.close()
    }

    private func group(_ id: GroupID) throws -> StandaloneGroup {
        try groups.withLock { groups in
            guard let groups else { throw ConsensusError.stopped }
            guard let group = groups[id] else { throw ConsensusError.noSuchGroup(id) }
            return group
        }
    }
}
