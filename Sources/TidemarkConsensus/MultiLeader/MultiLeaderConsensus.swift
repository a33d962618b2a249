import Foundation
import Logging
import Synchronization
import TidemarkIO

/// Carries multi-leader batches and acknowledgements to other nodes (best effort: the
/// dispatchers resend what is not acknowledged).
public protocol ReplicationTransport: AnyObject, Sendable {
    func send(to node: UInt64, _ messages: [ReplicationMessage])
    /// Sends, then tells whether the messages left this node (true) or were dropped (false):
    /// an image's pieces go a few at a time, not all into the transport's queue at once.
    func send(to node: UInt64, _ messages: [ReplicationMessage], whenWritten: @escaping @Sendable (Bool) -> Void)
}

extension ReplicationTransport {
    public func send(to node: UInt64, _ messages: [ReplicationMessage], whenWritten: @escaping @Sendable (Bool) -> Void) {
        send(to: node, messages)
        whenWritten(true)
    }
}

/// The `Consensus` interface over multi-leader groups (DESIGN.md section 5, IoTDB's
/// IoTConsensus): every replica takes writes, applies them at once and acknowledges them
/// once durable in its own log; a dispatcher per peer (`MultiLeaderCore`) ships them in
/// order, and each receiver applies every source's writes in that source's order, once.
/// A peer that lags past `lagEntriesMax` entries makes writes fail with `busy` until it
/// catches up, so the log cannot grow without bound.
///
/// Files: `<directory>/<kind>-<number>/log/*.wal` (see `MultiLeaderRecord`).
public final class MultiLeaderConsensus: Consensus, @unchecked Sendable {
    public struct Settings: Sendable {
        /// Own entries a peer may lack before writes are refused.
        public var lagEntriesMax = 100_000
        /// Entries in one shipped batch.
        public var batchEntriesMax = 256
        /// Ticks before a batch without an answer is sent again.
        public var resendTicks = 3
        public var syncPolicy = WALSyncPolicy.batch
        /// Hears of failed and successful log writes (the node's disk-full state).
        public var health: StorageHealth?
        /// Bytes in one piece of an image sent to a joining replica.
        public var imageChunkBytes = 1 << 20
        /// Pieces of an image not yet written to the connection, at most.
        public var imageWindowChunks = 8
        /// The largest image a joining replica takes (and a member sends).
        public var imageBytesMax = 1 << 40
        /// Ticks without a piece before a joining replica asks for its image again.
        public var imageIdleTicks = 20

        public init() {}
    }

    typealias WriteCompletion = @Sendable (Result<UInt64, ConsensusError>) -> Void

    struct PendingWrite {
        var local: (any Sendable)?
        var completion: WriteCompletion
    }

    /// One group's replica; its `var`s are used only under the host's lock.
    final class Group: @unchecked Sendable {
        var core: MultiLeaderCore
        let machine: StateMachine
        let log: FileWAL
        let directory: String
        /// The log index of each own entry the core still keeps (some peer lacks it), in order.
        var ownIndexes: [UInt64]
        var persistedShipped: [UInt64: UInt64]
        /// Own writes waiting for their entry to be durable and applied, by sequence.
        var pending: [UInt64: PendingWrite] = [:]
        /// The state machine's files hold everything through this log index.
        let checkpointed = CheckpointMark()
        var released: UInt64 = 0
        var applied: UInt64
        /// Its rounds wait while its state machine's image is taken for a joining replica.
        var imaging = false
        /// Set while its log refuses the round for lack of space (cleared once a round writes
        /// everything): writes are refused meanwhile, ticks try the round again.
        var diskFull: StorageIOError?

        init(core: MultiLeaderCore, machine: StateMachine, log: FileWAL, directory: String, ownIndexes: [UInt64],
             shipped: [UInt64: UInt64], applied: UInt64) {
            self.core = core
            self.machine = machine
            self.log = log
            self.directory = directory
            self.ownIndexes = ownIndexes
            persistedShipped = shipped
            self.applied = applied
        }
    }

    /// What the state machine says of its files, passed on to the next round (which holds
    /// the rounds' lock the state machine must not wait for).
    private final class Retention: LogRetention, @unchecked Sendable {
        let log: FileWAL
        let checkpointed: CheckpointMark

        init(log: FileWAL, checkpointed: CheckpointMark) {
            self.log = log
            self.checkpointed = checkpointed
        }

        func checkpoint() throws { try log.rotate() }
        func release(through index: UInt64) throws { checkpointed.raise(to: index) }
    }

    /// The highest log index the state machine's files hold.
    final class CheckpointMark: Sendable {
        private let value = Atomic<UInt64>(0)

        var index: UInt64 { value.load(ordering: .relaxed) }

        func raise(to index: UInt64) { value.max(index, ordering: .relaxed) }
    }

    public let nodeID: UInt64
    let directory: String
    let transport: ReplicationTransport
    let settings: Settings
    let logger: Logger
    /// Runs image work (making, sending, installing) off the rounds; false if it cannot now.
    let imageOn: @Sendable (@escaping @Sendable () -> Void) -> Bool
    let lock = NSLock()
    // protected by lock:
    var groups: [GroupID: Group] = [:]
    /// Replicas of this node waiting for their image (`joinGroup`).
    var joining: [GroupID: Joining] = [:]
    /// Images on their way from this node, one per (group, replica) at a time.
    var imageStreams: Set<ImageStream> = []
    var closed = false
    private var deferred: [() -> Void] = []

    /// `imageOn` runs image work (the server's handoff stage); by default, at once.
    public init(nodeID: UInt64, directory: String, transport: ReplicationTransport, settings: Settings = Settings(),
                logger: Logger = Logger(label: "tidemark.multileader"),
                imageOn: @escaping @Sendable (@escaping @Sendable () -> Void) -> Bool = { $0(); return true }) {
        self.nodeID = nodeID
        self.directory = directory
        self.transport = transport
        self.settings = settings
        self.logger = logger
        self.imageOn = imageOn
    }

    // MARK: - Consensus

    /// A replica that was joining when the node stopped (`joinGroup`) goes on waiting for its image.
    /// A log damaged in the middle (`LogDamageError`) or other damaged data (`CorruptDataError`)
    /// is thrown as it is, so `tidemarkd` refuses to start with its exit status for damage.
    public func createGroup(_ group: GroupID, peers: [Peer], stateMachine: StateMachine) throws {
        var damage: Error?
        try run { () throws(ConsensusError) in
            guard groups[group] == nil, joining[group] == nil else { throw .groupExists(group) }
            let peerIDs = peers.map(\.id).filter { $0 != nodeID }
            do {
                if let join = try Joining.resume(group, directory: directory + "/\(group)", peers: peerIDs, machine: stateMachine,
                                                 settings: settings) {
                    joining[group] = join
                    return
                }
                groups[group] = try recover(group, peers: peerIDs, machine: stateMachine)
            } catch let error as ConsensusError {
                throw error
            } catch let error where error is LogDamageError || error is CorruptDataError {
                damage = error  // thrown below: the rounds' body throws only `ConsensusError`
            } catch {
                throw .io("\(group): \(error)")
            }
        }
        if let damage { throw damage }
    }

    public func deleteGroup(_ group: GroupID) throws {
        try run { () throws(ConsensusError) in
            if let join = joining.removeValue(forKey: group) {
                do { try join.abandon() } catch { throw .io("\(group): \(error)") }
                return
            }
            guard let removed = groups.removeValue(forKey: group) else { throw .noSuchGroup(group) }
            removed.log.close()
            do { try FileManager.default.removeItem(atPath: removed.directory) } catch { throw .io("\(group): \(error)") }
            for pending in removed.pending.values { deferred.append { pending.completion(.failure(.noSuchGroup(group))) } }
        }
    }

    public func write(_ group: GroupID, _ proposal: Proposal, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void) {
        do throws(ConsensusError) {
            try run { () throws(ConsensusError) in
                guard let state = groups[group] else { throw joiningOrMissing(group) }
                if let full = state.diskFull {
                    // It would only fail with the next round; refused here, it is surely not applied.
                    throw .busy("\(group): the log refuses writes for lack of space (\(full)); retry once space is freed")
                }
                let sequence: UInt64
                do throws(MultiLeaderError) { sequence = try state.core.propose(proposal.data) } catch {
                    switch error {
                    case .peerLagging(let peer, let entries):
                        throw .busy("\(group): node \(peer) lags \(entries) entries behind (lag_entries_max \(settings.lagEntriesMax)); retry later")
                    case .peerRefused(let peer, let why):
                        throw .refused("\(group): node \(peer): \(why)")
                    }
                }
                state.pending[sequence] = PendingWrite(local: proposal.local, completion: completion)
            }
        } catch {
            completion(.failure(error))
        }
    }

    /// Reads are local: a replica has applied its own writes and, a little later, the others'.
    public func read(_ group: GroupID, consistency: ReadConsistency, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void) {
        guard consistency == .weak else {
            return completion(.failure(.unsupported("a multi-leader group has no linearizable reads; read with weak consistency")))
        }
        let applied = lock.withLock { groups[group].map { Result<UInt64, ConsensusError>.success($0.applied) } ?? .failure(joiningOrMissing(group)) }
        completion(applied)
    }

    /// Brings `peer` into this replica's group, durably: from now on this replica keeps its
    /// entries for `peer` and takes `peer`'s writes. Every member adds the peer first; then
    /// the new node calls `joinGroup` naming one of them, which sends it an image.
    public func addPeer(_ group: GroupID, _ peer: Peer) throws {
        try run { () throws(ConsensusError) in
            guard let state = groups[group] else { throw joiningOrMissing(group) }
            guard !state.imaging else { throw .busy("\(group) is taking an image for a joining replica; retry later") }
            do throws(MultiLeaderError) { try state.core.addPeer(peer.id) } catch {
                guard case .peerRefused(let peerID, let why) = error else { throw .refused("\(group): \(error)") }
                throw .refused("\(group): node \(peerID) cannot be added: \(why)")
            }
        }
        // The round that followed persisted the addition, unless the log failed.
        let persisted = lock.withLock { groups[group].map { $0.persistedShipped[peer.id] != nil } ?? false }
        guard persisted else { throw ConsensusError.io("\(group): the addition of node \(peer.id) could not be logged") }
    }

    /// Takes `peerID` out of this replica's group, durably (a restart with the old peer list
    /// keeps it out). Writes that a lagging peer held back go on; entries kept for it go.
    /// Each remaining replica is told on its own (the meta group's operation does).
    public func removePeer(_ group: GroupID, _ peerID: UInt64) throws {
        guard peerID != nodeID else { throw ConsensusError.unsupported("a replica cannot remove itself: delete the group on this node") }
        try run { () throws(ConsensusError) in
            guard let state = groups[group] else { throw .noSuchGroup(group) }
            guard state.core.peers.contains(peerID) else { throw .refused("node \(peerID) is not a peer of \(group)") }
            guard !state.imaging else { throw .busy("\(group) is taking an image for a joining replica; retry later") }
            state.core.removePeer(peerID)
        }
        // The round that followed persisted the removal, unless the log failed.
        let persisted = lock.withLock { groups[group].map { $0.persistedShipped[peerID] == nil } ?? false }
        guard persisted else { throw ConsensusError.io("\(group): the removal of node \(peerID) could not be logged") }
    }

    public func transferLeader(_ group: GroupID, to peerID: UInt64) throws {
        throw ConsensusError.unsupported("every replica of a multi-leader group leads")
    }

    /// Every replica takes writes: this node.
    public func leader(of group: GroupID) -> UInt64? { lock.withLock { groups[group] == nil ? nil : nodeID } }

    /// Why there is no running replica of `group` here: it waits for its image, or there is none.
    func joiningOrMissing(_ group: GroupID) -> ConsensusError {
        guard let join = joining[group] else { return .noSuchGroup(group) }
        return .busy("\(group) is joining: its image from node \(join.donor) is not installed yet; retry later")
    }

    public func snapshot(_ group: GroupID) throws -> UInt64 {
        throw ConsensusError.unsupported("multi-leader groups keep their log until the state machine flushes")
    }

    public func close() {
        let waiting = lock.withLock {
            closed = true
            for group in groups.values { group.log.close() }
            return groups.values.flatMap { group in defer { group.pending = [:] }; return Array(group.pending.values) }
        }
        for write in waiting { write.completion(.failure(.stopped)) }
    }

    // MARK: - Driving

    /// One unit of time: dispatchers resend what was not acknowledged; a joining replica
    /// asks the members whether they added it, or for its image, again when nothing came.
    public func tick() {
        try? run { () throws(ConsensusError) in
            for group in groups.values { group.core.tick() }
            for join in joining.values { ask(join.tick(idleTicksMax: settings.imageIdleTicks), for: join) }
        }
    }

    /// Batches, acknowledgements and image traffic from other nodes.
    public func receive(_ messages: [ReplicationMessage]) {
        var requests: [ReplicationMessage] = [], pieces: [ReplicationMessage] = []
        try? run { () throws(ConsensusError) in
            for item in messages where item.message.to == nodeID && item.message.from != nodeID {
                switch item.message.kind {
                case .replicate, .acknowledge: groups[item.group]?.core.step(item.message)
                case .imageRequest: requests.append(item)
                case .imagePiece: pieces.append(item)
                case .joinProbe: answerProbeLocked(item)
                case .joinAccepted: joining[item.group]?.accept(item.message.from)
                }
            }
        }
        // Served once the rounds are done: an image is taken with every ready handled.
        for request in requests { serveImage(request) }
        for piece in pieces { takePiece(piece) }
    }

    /// One group's replica on this node, for `/cluster` and `/metrics`.
    public struct GroupStatus: Sendable {
        public var group: GroupID
        /// The last log index applied here.
        public var applied: UInt64
        /// Own entries some peer still lacks (writes are refused past `lagEntriesMax`).
        public var retainedEntries: Int
    }

    public func groupStatuses() -> [GroupStatus] {
        lock.withLock {
            groups.map { GroupStatus(group: $0.key, applied: $0.value.applied, retainedEntries: $0.value.core.retainedEntries) }
                .sorted { $0.group < $1.group }
        }
    }

    /// Own entries some peer still lacks, per group.
    public func retainedEntries(_ group: GroupID) -> Int? { lock.withLock { groups[group]?.core.retainedEntries } }

    // MARK: - Rounds

    func run(_ body: () throws(ConsensusError) -> Void) throws(ConsensusError) {
        lock.lock()
        guard !closed else {
            lock.unlock()
            throw .stopped
        }
        var failure: ConsensusError?
        do { try body() } catch { failure = error }
        for (id, group) in groups.sorted(by: { $0.key < $1.key }) where !group.imaging {
            // A group's own failure fails its own writes (failPending); it is not the caller's error.
            do { try roundLocked(id, group) } catch { logger.error("multi-leader round failed", metadata: ["group": "\(id)", "error": "\(error)"]) }
        }
        let completions = deferred
        deferred = []
        lock.unlock()
        for completion in completions { completion() }
        if let failure { throw failure }
    }

    /// Persists what the group's core produced (one append, one fsync), applies it, answers
    /// its own writes, ships its messages, and lets go of the log the state machine and
    /// every peer no longer need.
    private func roundLocked(_ id: GroupID, _ group: Group) throws(ConsensusError) {
        while group.core.hasReady {
            let ready = group.core.ready()
            var shippedAfter = group.persistedShipped  // taken as logged once the append succeeds
            let append = MultiLeaderLog.append(for: ready, persistedShipped: &shippedAfter)
            if !append.records.isEmpty {
                let records = append.records.map(\.encoded)
                let last: UInt64
                do {
                    last = try group.log.append(records)
                    // Durable before anything ships, whatever `wal_sync` says: a source that lost
                    // entries in a crash would number other writes the same.
                    if append.syncFirst && settings.syncPolicy != .always { try group.log.waitDurable(last) }
                } catch let error as StorageIOError where error.isOutOfSpace && !group.log.hasFailed {
                    // As a Raft round the log refused: nothing of it is logged, nothing that
                    // relied on it ships, and the next round (a tick) writes it again. Its
                    // writes fail now; a write of this node's is not acknowledged, though it is
                    // applied once written.
                    if group.diskFull == nil {
                        logger.info("a multi-leader log refuses writes for lack of space: writes fail until a round writes again",
                                    metadata: ["group": "\(id)", "reason": "\(error)"])
                    }
                    group.diskFull = error
                    group.core.abandon(ready)
                    failPending(group, .io("\(id): log append failed: \(error); not acknowledged (the write may still be applied)"))
                    return
                } catch {
                    failPending(group, .io("\(id): log append failed: \(error)"))
                    throw .io("\(id): log append failed: \(error)")
                }
                group.persistedShipped = shippedAfter
                let first = last - UInt64(records.count) + 1
                for (offset, entry) in ready.apply.enumerated() {
                    let index = first + UInt64(offset)
                    let own = entry.source == nodeID
                    let pending = own ? group.pending.removeValue(forKey: entry.sequence) : nil
                    var refusal: ConsensusError?
                    do {
                        try group.machine.apply(CommittedEntry(index: index, term: 1, data: entry.data, local: pending?.local))
                    } catch {
                        // Refused here is refused on every replica (the same schema rules).
                        refusal = .refused("\(error)")
                    }
                    group.applied = index
                    if own { group.ownIndexes.append(index) }
                    if let pending {
                        deferred.append { pending.completion(refusal.map { .failure($0) } ?? .success(index)) }
                    }
                }
            }
            // Shipped only once durable here: a source that lost an entry in a crash would
            // number a different write the same.
            var outgoing: [UInt64: [ReplicationMessage]] = [:]
            for message in ready.messages { outgoing[message.to, default: []].append(ReplicationMessage(group: id, message: message)) }
            for (node, messages) in outgoing.sorted(by: { $0.key < $1.key }) { transport.send(to: node, messages) }
            group.core.advance(ready)
        }
        if group.diskFull != nil {
            logger.info("a multi-leader log takes writes again", metadata: ["group": "\(id)"])
            group.diskFull = nil
        }
        // Own entries every peer acknowledged left the core: their log indexes go too.
        let kept = group.core.retainedEntries
        if group.ownIndexes.count > kept { group.ownIndexes.removeFirst(group.ownIndexes.count - kept) }
        try releaseLocked(id, group)
    }

    /// Drops log files through what the state machine flushed, but never an own entry some
    /// peer still lacks; the latest progress is written again first, so it survives.
    private func releaseLocked(_ id: GroupID, _ group: Group) throws(ConsensusError) {
        let through = MultiLeaderLog.releasable(checkpointed: group.checkpointed.index, ownIndexes: group.ownIndexes)
        guard through > group.released else { return }
        do {
            let state = group.core.diskState
            let progress = try group.log.append([MultiLeaderRecord(shipped: state.shipped, applied: state.applied, removed: state.removed).encoded])
            if settings.syncPolicy != .always { try group.log.waitDurable(progress) }  // before the files that held it go
            try group.log.truncate(through: through)
        } catch let error as StorageIOError where error.isOutOfSpace && !group.log.hasFailed {
            return  // the next round tries again
        } catch {
            throw .io("\(id): releasing the log failed: \(error)")
        }
        group.released = through
    }

    private func failPending(_ group: Group, _ error: ConsensusError) {
        let pending = group.pending.values
        group.pending = [:]
        for write in pending { deferred.append { write.completion(.failure(error)) } }
    }

    // MARK: - Recovery

    /// Opens the group's log and replays it: into the state machine (it skips what its own
    /// files hold), and into the dispatchers' state.
    func recover(_ id: GroupID, peers: [UInt64], machine: StateMachine) throws -> Group {
        let groupDirectory = directory + "/\(id)"
        try FileIO.makeDirectory(groupDirectory)
        let log = try FileWAL(directory: groupDirectory + "/log", policy: settings.syncPolicy, health: settings.health)
        var records: [(UInt64, MultiLeaderRecord)] = []
        _ = try log.replay { index, bytes in records.append((index, try MultiLeaderRecord(decoding: bytes))) }
        // Refused again exactly as when first applied; nothing to report twice.
        let recovered = try MultiLeaderLog.rebuild(nodeID: nodeID, peers: peers, records: records) { index, data in
            try? machine.apply(CommittedEntry(index: index, term: 1, data: data))
        }
        let core = MultiLeaderCore(id: nodeID, peers: peers, state: recovered.state, lagEntriesMax: settings.lagEntriesMax,
                                   batchEntriesMax: settings.batchEntriesMax, resendTicks: settings.resendTicks)
        let group = Group(core: core, machine: machine, log: log, directory: groupDirectory, ownIndexes: recovered.ownIndexes,
                          shipped: recovered.state.shipped, applied: max(recovered.lastIndex, log.lastSequence))
        machine.attach(logRetention: Retention(log: log, checkpointed: group.checkpointed))
        return group
    }
}
