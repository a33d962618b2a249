import Foundation
import Logging
import Synchronization
import TidemarkStorage

/// Consensus with one replica and no network (DESIGN.md section 5): each group's log is a
/// local WAL, a write is committed once appended, applied at once and acknowledged when
/// durable under the node's `wal_sync`.
///
/// Files: `<directory>/<kind>-<number>/log/*.wal` and, after `snapshot`, `…/snapshot`.
public final class StandaloneConsensus: Consensus, @unchecked Sendable {
    public let nodeID: UInt64
    private let directory: String
    private let syncPolicy: WALSyncPolicy
    private let logger: Logger
    private let groups = Mutex<[GroupID: StandaloneGroup]?>([:])

    public init(nodeID: UInt64 = 1, directory: String, syncPolicy: WALSyncPolicy, logger: Logger = Logger(label: "tidemark.consensus")) {
        self.nodeID = nodeID
        self.directory = directory
        self.syncPolicy = syncPolicy
        self.logger = logger
    }

    public func createGroup(_ group: GroupID, peers: [Peer], stateMachine: StateMachine) throws {
        guard peers.allSatisfy({ $0.id == nodeID }) else {
            throw ConsensusError.unsupported("a standalone group has this node as its only replica; \(peers.count) peers were named")
        }
        try groups.withLock { groups in
            guard groups != nil else { throw ConsensusError.stopped }
            guard groups![group] == nil else { throw ConsensusError.groupExists(group) }
            groups![group] = try StandaloneGroup(id: group, directory: directory + "/\(group)", syncPolicy: syncPolicy,
                                                 stateMachine: stateMachine, logger: logger)
        }
    }

    public func deleteGroup(_ group: GroupID) throws {
        let removed = try groups.withLock { groups -> StandaloneGroup in
            guard groups != nil else { throw ConsensusError.stopped }
            guard let removed = groups!.removeValue(forKey: group) else { throw ConsensusError.noSuchGroup(group) }
            return removed
        }
        removed.close()
        try FileManager.default.removeItem(atPath: removed.directory)
    }

    public func write(_ group: GroupID, _ proposal: Proposal, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void) {
        do {
            try self.group(group).write(proposal, completion: completion)
        } catch {
            completion(.failure(error as? ConsensusError ?? .io("\(error)")))
        }
    }

    public func read(_ group: GroupID, consistency: ReadConsistency, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void) {
        // One replica: whatever it applied is every acknowledged write, at any consistency.
        do { completion(.success(try self.group(group).appliedIndex)) } catch {
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
    }

    private func group(_ id: GroupID) throws -> StandaloneGroup {
        try groups.withLock { groups in
            guard let groups else { throw ConsensusError.stopped }
            guard let group = groups[id] else { throw ConsensusError.noSuchGroup(id) }
            return group
        }
    }
}

/// One standalone group: its log, its state machine and the lock that keeps log order
/// and apply order the same.
final class StandaloneGroup: @unchecked Sendable {
    let id: GroupID
    let directory: String
    private let log: FileWAL
    private let syncPolicy: WALSyncPolicy
    private let stateMachine: StateMachine
    private let logger: Logger
    private let order = NSLock()
    // protected by order:
    private var applied: UInt64 = 0

    private var snapshotPath: String { directory + "/snapshot" }

    init(id: GroupID, directory: String, syncPolicy: WALSyncPolicy, stateMachine: StateMachine, logger: Logger) throws {
        self.id = id
        self.directory = directory
        self.syncPolicy = syncPolicy
        self.stateMachine = stateMachine
        self.logger = logger
        try FileIO.makeDirectory(directory)
        log = try FileWAL(directory: directory + "/log", policy: syncPolicy)
        try recover()
    }

    /// Restores the last snapshot, then replays the log after it.
    private func recover() throws {
        var snapshotIndex: UInt64 = 0
        if let bytes = try FileIO.readFile(snapshotPath) {
            let snapshot = try SnapshotFile.decode(bytes, path: snapshotPath)
            try stateMachine.restore(snapshot)
            snapshotIndex = snapshot.index
            applied = snapshot.index
        }
        var refused = 0
        let report = try log.replay { index, data in
            guard index > snapshotIndex else { return }
            do { try stateMachine.apply(CommittedEntry(index: index, term: 1, data: data)) } catch { refused += 1 }
            applied = index
        }
        // Entries released to the state machine's own files leave no record, but keep their indexes.
        applied = max(applied, log.lastSequence)
        if report.bytesCut > 0 {
            logger.warning("cut a torn log tail", metadata: ["group": "\(id)", "bytes": "\(report.bytesCut)", "entries": "\(report.records)"])
        }
        if refused > 0 {
            // The same entries were refused when first written; their writers were told.
            logger.info("replay skipped refused entries", metadata: ["group": "\(id)", "entries": "\(refused)"])
        }
        stateMachine.attach(logRetention: log)
    }

    var appliedIndex: UInt64 { order.withLock { applied } }

    func write(_ proposal: Proposal, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void) throws {
        let index: UInt64
        let refusal: ConsensusError?
        do {
            (index, refusal) = try order.withLock {
                let index = try log.append([proposal.data])
                precondition(index == applied + 1, "log and apply order agree")
                applied = index
                do {
                    try stateMachine.apply(CommittedEntry(index: index, term: 1, data: proposal.data, local: proposal.local))
                    return (index, nil)
                } catch {
                    return (index, .refused("\(error)"))
                }
            }
        } catch {
            throw ConsensusError.io("\(id): log append failed: \(error)")
        }
        if let refusal { return completion(.failure(refusal)) }
        switch syncPolicy {
        case .always:
            completion(.success(index))  // append synced already
        case .batch:
            // Writers that arrive while an fsync runs share the next one (group commit).
            do {
                try log.waitDurable(index)
                completion(.success(index))
            } catch {
                completion(.failure(.io("\(id): log sync failed: \(error)")))
            }
        case .intervalMs:
            // VictoriaMetrics' durability: in the OS's hands now (a process crash loses
            // nothing), on disk within the interval.
            completion(.success(index))
        }
    }

    /// Snapshots the state machine, keeps the snapshot durably, then lets the log go up to it.
    func snapshot() throws -> UInt64 {
        let snapshot = try order.withLock { try stateMachine.snapshot() }
        try FileIO.writeFileAtomically(SnapshotFile.encode(snapshot), to: snapshotPath, directory: directory)
        try log.rotate()
        try log.truncate(through: snapshot.index)
        return snapshot.index
    }

    func close() { log.close() }
}

/// `u64 index | u64 term | u32 length | data | u32 CRC32C(all before)`.
enum SnapshotFile {
    static func encode(_ snapshot: StateSnapshot) -> [UInt8] {
        var writer = ByteWriter(capacity: snapshot.data.count + 24)
        writer.write(littleEndian: snapshot.index)
        writer.write(littleEndian: snapshot.term)
        writer.write(littleEndian: UInt32(snapshot.data.count))
        writer.write(bytes: snapshot.data)
        writer.write(littleEndian: CRC32C.checksum(writer.bytes))
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8], path: String) throws -> StateSnapshot {
        guard bytes.count >= 24 else { throw CorruptDataError("\(path): \(bytes.count) bytes is too short for a snapshot") }
        let stored = bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: bytes.count - 4, as: UInt32.self)) }
        guard CRC32C.checksum(Array(bytes.dropLast(4))) == stored else { throw CorruptDataError("\(path): snapshot fails its CRC") }
        let (index, term, length) = bytes.withUnsafeBytes {
            (UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
             UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)),
             Int(UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 16, as: UInt32.self))))
        }
        guard length == bytes.count - 24 else { throw CorruptDataError("\(path): snapshot length \(length) does not match the file") }
        return StateSnapshot(index: index, term: term, data: Array(bytes[20..<(20 + length)]))
    }
}
