import Foundation
import Logging
import Synchronization
import TidemarkIO

/// The `Consensus` interface over many Raft groups on one node: each group is a `RaftCore`
/// driven here; every round persists the readies of all groups with one fsync
/// (`RaftDisk`), then sends their messages, then hands committed entries to the apply
/// side, which applies them in order per group (`applyOn`: the node's apply stage) while
/// the next rounds already persist and replicate.
///
/// Inputs: `tick()` from the node's timer, `receive(_:)` from the transport, and the
/// `Consensus` calls. One lock orders rounds; the apply side has its own; completions run
/// after both are released.
public final class RaftConsensus: Consensus, @unchecked Sendable {
    /// How the cores of this node are tuned.
    public struct Settings: Sendable {
        public var electionTicks = 10
        public var heartbeatTicks = 1
        public var inflightMax = 256
        public var uncommittedBytesMax = 64 << 20
        /// Snapshots travel in pieces of at most this many bytes of state-machine image.
        public var snapshotChunkBytes = 1 << 20
        public var seed: UInt64 = 1
        /// Idle groups stop heartbeating (`RaftConfig.quiesce`); the host must then report
        /// lost peers through `peerDown`.
        public var quiesce = false
        /// A leader keeps up to this many bytes of entries a follower still lacks before it
        /// compacts them away (the follower then gets a snapshot instead).
        public var catchUpBytesMax = 64 << 20
        /// The largest state-machine image a snapshot may carry; a larger one is not sent, and
        /// the follower stays behind. A state machine that keeps installed images gets the
        /// image in a file; any other holds it in memory and its log, where
        /// `RaftCodec.dataBytesMax` bounds it too.
        public var snapshotBytesMax = 1 << 40
        /// Pieces of a snapshot image that may be on their way, not yet written to the
        /// connection, at once (the sender reads the next one as one is written).
        public var snapshotWindowChunks = 8
        /// Bytes of committed entries handed to the apply side and not yet applied; past it
        /// rounds hand out no more and proposals are refused (retry later), so a slow apply
        /// side holds memory to this bound instead of its queue growing.
        public var applyBacklogBytesMax = 64 << 20

        public init() {}
    }

    typealias WriteCompletion = @Sendable (Result<UInt64, ConsensusError>) -> Void

    /// A proposal of this node: the term it was proposed in, its decoded form, who waits.
    struct PendingWrite: Sendable {
        var term: UInt64
        var local: (any Sendable)?
        var completion: WriteCompletion
    }

    /// A read waiting until its index is applied.
    struct PendingRead: Sendable {
        var index: UInt64
        var completion: WriteCompletion
    }

    struct Group {
        var core: RaftCore
        let machine: StateMachine
        /// Proposals of this node by index.
        var writes: [UInt64: PendingWrite] = [:]
        /// Reads waiting for their read index.
        var reads: [UInt64: WriteCompletion] = [:]

        /// Takes out the proposals `ready` commits and the reads it answers; a replica that
        /// stopped leading keeps no promises about its other reads, and hands them back too.
        mutating func takeAnswered(by ready: RaftReady)
            -> (writes: [UInt64: PendingWrite], reads: [PendingRead], abandonedReads: [WriteCompletion], leaderHint: UInt64?) {
            var answeredWrites: [UInt64: PendingWrite] = [:]
            for entry in ready.committed { if let mine = writes.removeValue(forKey: entry.index) { answeredWrites[entry.index] = mine } }
            var answeredReads: [PendingRead] = []
            for read in ready.readStates {
                if let completion = reads.removeValue(forKey: read.requestID) { answeredReads.append(PendingRead(index: read.index, completion: completion)) }
            }
            var abandoned: [WriteCompletion] = []
            if core.role != .leader {
                abandoned = Array(reads.values)
                reads = [:]
            }
            return (answeredWrites, answeredReads, abandoned, core.leader == 0 ? nil : core.leader)
        }
    }

    public let nodeID: UInt64
    let disk: RaftDisk
    let transport: RaftTransport
    let settings: Settings
    let logger: Logger
    let lock = NSLock()
    // protected by lock:
    var groups: [GroupID: Group] = [:]
    private var recovered: [GroupID: RaftDiskState]
    private var nextReadID: UInt64 = 1
    private var snapshotChunks: SnapshotChunks
    var closed = false
    /// Set while the log refuses rounds for lack of space (cleared by the next round that
    /// writes): proposals and reads are refused meanwhile, ticks try the round again.
    private var diskFull: RaftDiskFullError?
    var toApply: [ApplyBatch] = []
    // The apply side:
    let applyOn: @Sendable (@escaping @Sendable () -> Void) -> Bool
    let imageOn: @Sendable (@escaping @Sendable () -> Void) -> Bool
    let applyQueue = Mutex<[ApplyBatch]>([])
    let applyScheduled = Atomic<Bool>(false)
    let applySide = Mutex(ApplyState())
    let applyLock = NSLock()
    let appliedEntries = Atomic<Int>(0)
    private let rounds = Atomic<Int>(0)
    let snapshotsSent = Atomic<Int>(0)
    let snapshotBytesSent = Atomic<Int>(0)
    /// Entry bytes queued for the apply side, not applied yet.
    let applyBacklogBytes = Atomic<Int>(0)
    let snapshotsInstalled = Atomic<Int>(0)
    /// Per group, the index its state machine holds durably (told by `LogRetention.release`);
    /// the next tick compacts the log up to it. Its own lock: the state machine tells it
    /// while holding its own locks, which a round may wait for.
    private let released = Mutex<[GroupID: UInt64]>([:])
    /// Snapshot messages whose image is made once the round's lock is released (making it
    /// takes the state machine's locks). Protected by `lock`.
    private var imagesToSend: [(machine: StateMachine, message: GroupMessage)] = []
    /// Snapshot images being sent, by group and follower: the core asks again after a
    /// while, which must not start a second stream of the same image meanwhile. Protected
    /// by `lock`.
    var imageStreams: Set<ImageStream> = []

    /// `applyOn` runs the apply side's work (by default at once, on the calling thread) and
    /// says whether it took it (a stage that is not running yet does not); `imageOn` makes
    /// and sends snapshot images (the node's handoff stage: a region's image flushes and
    /// reads every segment, which must not hold up rounds and their heartbeats).
    public init(nodeID: UInt64, disk: RaftDisk, transport: RaftTransport, settings: Settings = Settings(),
                logger: Logger = Logger(label: "tidemark.raft"),
                applyOn: @escaping @Sendable (@escaping @Sendable () -> Void) -> Bool = { $0(); return true },
                imageOn: @escaping @Sendable (@escaping @Sendable () -> Void) -> Bool = { $0(); return true }) throws {
        self.nodeID = nodeID
        self.disk = disk
        self.transport = transport
        self.settings = settings
        self.logger = logger
        self.applyOn = applyOn
        self.imageOn = imageOn
        recovered = try disk.recover()
        // An image held in memory goes whole into a log record, which bounds it.
        snapshotChunks = SnapshotChunks(bytesMax: RaftCodec.dataBytesMax - (1 << 20), spoolDirectory: disk.imageDirectory,
                                        spoolBytesMax: settings.snapshotBytesMax)
        // A spooled image no snapshot names any longer is of no use (one a crash cut short, or
        // one installed and dropped from the log).
        let named = Set(recovered.values.compactMap { $0.snapshot.flatMap { SpooledImage.name(in: $0.data) } })
        for name in try FileIO.list(disk.imageDirectory) where !named.contains(name) { try FileIO.remove(disk.imageDirectory + "/" + name) }
    }

    // MARK: - Consensus

    public func createGroup(_ group: GroupID, peers: [Peer], stateMachine: StateMachine) throws {
        try run { () throws(ConsensusError) in
            guard groups[group] == nil else { throw .groupExists(group) }
            let state = recovered.removeValue(forKey: group) ?? RaftDiskState()
            // Replicas of a group must not share election timeouts: the seed mixes in the node.
            var config = RaftConfig(id: nodeID, seed: settings.seed &+ nodeID &* 1_000_003 &+ UInt64(group.number) &* 7919 &+ UInt64(group.kind.rawValue))
            config.electionTicks = settings.electionTicks
            config.heartbeatTicks = settings.heartbeatTicks
            config.inflightMax = settings.inflightMax
            config.uncommittedBytesMax = settings.uncommittedBytesMax
            config.quiesce = settings.quiesce
            let voters = Set(peers.map(\.id)).union([nodeID])
            let core = RaftCore(config: config, membership: RaftMembership(voters: voters), hardState: state.hardState,
                                snapshot: state.snapshot, entries: state.entries)
            if let snapshot = state.snapshot {
                do {
                    try stateMachine.restore(stateSnapshot(snapshot))
                } catch {
                    throw .io("\(group): restoring its snapshot failed: \(error)")
                }
            }
            groups[group] = Group(core: core, machine: stateMachine)
            // A group of one voter has no one to wait for: it leads from the round that made it.
            if voters == [nodeID] { groups[group]!.core.campaign() }
            // Installed before the crash, and not yet dropped from the log.
            if let snapshot = state.snapshot, !snapshot.data.isEmpty, stateMachine.keepsInstalledImages {
                dropInstalledImageLocked(of: group, snapshot)
            }
            let start = state.snapshot?.index ?? 0
            applySide.withLock { $0.applied[group] = start }
            // Committed entries after the snapshot are applied again by the first round.
            stateMachine.attach(logRetention: Retention(consensus: self, group: group))
        }
    }

    public func deleteGroup(_ group: GroupID) throws {
        try run { () throws(ConsensusError) in
            guard groups[group] != nil else { throw .noSuchGroup(group) }
            // Kept if its removal cannot be logged (a full disk): it is still there after a restart.
            do { try disk.remove(group) } catch { throw .io("\(group): \(error)") }
            let removed = groups.removeValue(forKey: group)!
            answerWaitersLocked(of: removed, with: .noSuchGroup(group))
        }
    }

    public func write(_ group: GroupID, _ proposal: Proposal, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void) {
        // Once registered, the proposal is answered exactly once: by the apply side, or with
        // the error of a failed round or of `close()`; never also here.
        var registered = false
        do throws(ConsensusError) {
            try run { () throws(ConsensusError) in
                try refuseWhileDiskFullLocked(group)
                let backlog = applyBacklogBytes.load(ordering: .relaxed)
                guard backlog < settings.applyBacklogBytesMax else {
                    throw .busy("\(group): \(backlog) bytes of committed entries wait to be applied (more than \(settings.applyBacklogBytesMax)); retry later")
                }
                try withGroup(group) { state throws(ConsensusError) in
                    let index: UInt64
                    do throws(RaftError) { index = try state.core.propose(proposal.data) } catch { throw Self.translate(error, group) }
                    state.writes[index] = PendingWrite(term: state.core.term, local: proposal.local, completion: completion)
                }
                registered = true
            }
        } catch {
            if !registered { completion(.failure(error)) }
        }
    }

    public func read(_ group: GroupID, consistency: ReadConsistency, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void) {
        var registered = false  // as for `write`
        do throws(ConsensusError) {
            try run { () throws(ConsensusError) in
                guard groups[group] != nil else { throw .noSuchGroup(group) }
                switch consistency {
                case .weak:
                    let applied = applySide.withLock { $0.applied[group] ?? 0 }
                    deferred.append { completion(.success(applied)) }
                    registered = true
                case .linearizable, .leaseBased:
                    try refuseWhileDiskFullLocked(group)
                    let id = nextReadID
                    nextReadID += 1
                    try withGroup(group) { state throws(ConsensusError) in
                        do throws(RaftError) {
                            try state.core.readIndex(requestID: id, lease: consistency == .leaseBased)
                        } catch {
                            throw Self.translate(error, group)
                        }
                        state.reads[id] = completion
                    }
                    registered = true
                }
            }
        } catch {
            if !registered { completion(.failure(error)) }
        }
    }

    public func addPeer(_ group: GroupID, _ peer: Peer) throws {
        try changeMembership(group, RaftConfChange(.addLearner, node: peer.id))
    }

    /// Makes a caught-up learner a voter.
    public func promotePeer(_ group: GroupID, _ peerID: UInt64) throws {
        try changeMembership(group, RaftConfChange(.addVoter, node: peerID))
    }

    public func removePeer(_ group: GroupID, _ peerID: UInt64) throws {
        try changeMembership(group, RaftConfChange(.remove, node: peerID))
    }

    public func transferLeader(_ group: GroupID, to peerID: UInt64) throws {
        try run { () throws(ConsensusError) in
            guard groups[group] != nil else { throw .noSuchGroup(group) }
            do throws(RaftError) { try groups[group]!.core.transferLeadership(to: peerID) } catch { throw Self.translate(error, group) }
        }
    }

    public func leader(of group: GroupID) -> UInt64? {
        lock.withLock { groups[group].flatMap { $0.core.leader == 0 ? nil : $0.core.leader } }
    }

    public func snapshot(_ group: GroupID) throws -> UInt64 {
        guard let machine = lock.withLock({ groups[group]?.machine }) else { throw ConsensusError.noSuchGroup(group) }
        // The image is taken with only the apply side held (nothing is applied meanwhile, so
        // the image and its index agree): rounds, heartbeats included, go on while a state
        // machine writes its image (a region flushes its memtables).
        let image: StateSnapshot
        do { image = try applyLock.withLock { try machine.snapshot() } } catch { throw ConsensusError.io("\(group): snapshot failed: \(error)") }
        guard image.index > 0 else { return 0 }
        try run { () throws(ConsensusError) in
            try withGroup(group) { state throws(ConsensusError) in
                // Already compacted past it (another snapshot was quicker): nothing to do.
                guard let term = state.core.term(at: image.index) else { return }
                let snapshot = RaftSnapshot(index: image.index, term: term, membership: state.core.membership, data: image.data)
                do { try disk.compact(group, snapshot: snapshot) } catch { throw .io("\(group): snapshot failed: \(error)") }
                state.core.compact(snapshot)
            }
        }
        return image.index
    }

    /// Stops the node's groups. Every proposal and read still waiting is answered `.stopped`
    /// (a proposal's entry may still be committed: the writer learns nothing either way).
    public func close() {
        let completions = lock.withLock { () -> [() -> Void] in
            if !closed { stopLocked(reason: .stopped) }
            defer { deferred = [] }
            return deferred
        }
        // What the apply side has not taken yet will not be applied now; its reads are answered too.
        let stranded: [() -> Void] = applyLock.withLock {
            let batches = applyQueue.withLock { queue in defer { queue = [] }; return queue }
            var answers = batches.flatMap { batch in
                batch.writes.values.map { write in { write.completion(.failure(.stopped)) } } +
                    batch.reads.map { read in { read.completion(.failure(.stopped)) } }
            }
            let reads = applySide.withLock { side in defer { side.reads = [:] }; return side.reads.values.flatMap { $0 } }
            answers += reads.map { read in { read.completion(.failure(.stopped)) } }
            return answers
        }
        for completion in completions + stranded { completion() }
        disk.close()
    }

    /// Marks the node stopped and answers every waiter the groups hold with `reason`.
    func stopLocked(reason: ConsensusError) {
        closed = true
        for id in groups.keys {
            answerWaitersLocked(of: groups[id]!, with: reason)
            groups[id]!.writes = [:]
            groups[id]!.reads = [:]
        }
    }

    private func answerWaitersLocked(of group: Group, with reason: ConsensusError) {
        for pending in group.writes.values { deferred.append { pending.completion(.failure(reason)) } }
        for read in group.reads.values { deferred.append { read(.failure(reason)) } }
    }

    // MARK: - Inputs

    /// One unit of the node's Raft clock (the timer calls this every `tick_ms`); also
    /// compacts the logs their state machines released.
    public func tick() {
        try? run { () throws(ConsensusError) in
            for group in groups.keys { groups[group]!.core.tick() }
            // A stream no piece came to for this long is dead: its spool file goes.
            snapshotChunks.tick(idleTicksMax: 10 * settings.electionTicks)
            // A compaction the log refused (its disk is full) is tried again next tick; the
            // round still runs, and writes again what a failed round left.
            do { try compactReleasedLocked() } catch { logger.debug("compacting the raft log failed", metadata: ["reason": "\(error)"]) }
        }
    }

    /// Tells the group's log what its state machine holds durably.
    private final class Retention: LogRetention, @unchecked Sendable {
        weak var consensus: RaftConsensus?
        let group: GroupID
        init(consensus: RaftConsensus, group: GroupID) {
            self.consensus = consensus
            self.group = group
        }
        /// The Raft log rotates by size; a sealed memtable needs no new file.
        func checkpoint() throws {}
        func release(through index: UInt64) throws {
            consensus?.released.withLock { $0[group] = max($0[group] ?? 0, index) }
        }
    }

    /// Compacts each group's log up to what its state machine released, keeping what a
    /// lagging follower still needs (`catchUpBytesMax`). The snapshot carries no data: a
    /// region's image is made when a follower needs it.
    private func compactReleasedLocked() throws(ConsensusError) {
        let pending = released.withLock { $0 }
        for (group, durable) in pending.sorted(by: { $0.key < $1.key }) where groups[group] != nil {
            let compacted = try withGroup(group) { state throws(ConsensusError) -> UInt64 in
                let index = state.core.compactionIndex(durable: durable, catchUpBytesMax: settings.catchUpBytesMax)
                guard index > state.core.compactedIndex, let term = state.core.term(at: index) else { return state.core.compactedIndex }
                let snapshot = RaftSnapshot(index: index, term: term, membership: state.core.membership, data: [])
                do { try disk.compact(group, snapshot: snapshot) } catch { throw .io("\(group): compacting the log failed: \(error)") }
                state.core.compact(snapshot)
                return index
            }
            // Done with this release; one kept for a lagging follower is looked at again next tick.
            if compacted >= durable { released.withLock { if $0[group] == durable { $0[group] = nil } } }
        }
    }

    /// The transport lost (or stopped hearing) `node`: groups asleep under it wake up.
    public func peerDown(_ node: UInt64) {
        try? run { () throws(ConsensusError) in
            for group in groups.keys { groups[group]!.core.peerDown(node) }
        }
    }

    /// Messages from another node.
    public func receive(_ messages: [GroupMessage]) {
        var taken: [GroupMessage] = []
        try? run { () throws(ConsensusError) in
            for piece in messages where groups[piece.group] != nil && piece.message.to == nodeID {
                let spooled = groups[piece.group]!.machine.keepsInstalledImages
                guard let item = snapshotChunks.receive(piece, spooled: spooled) else { continue }  // a snapshot still in pieces
                if let data = item.message.snapshot?.data, SpooledImage.name(in: data) != nil {
                    taken.append(item)
                } else {
                    groups[item.group]!.core.step(item.message)
                }
            }
        }
        for item in taken where !imageOn({ [self] in takeSpooledImage(item) }) {
            logger.warning("no room to take a snapshot image now; the leader sends it again", metadata: ["group": "\(item.group)"])
            try? FileIO.remove(disk.imageDirectory + "/" + SpooledImage.name(in: item.message.snapshot!.data)!)
        }
    }

    /// What the node's Raft groups have done, for `/metrics`.
    public struct Counters: Sendable {
        /// fsyncs of the Raft log.
        public var fsyncs: Int
        /// Rounds that persisted something.
        public var rounds: Int
        public var appliedEntries: Int
        /// Snapshots sent with a state-machine image, and images installed here.
        public var snapshotsSent: Int
        public var snapshotsInstalled: Int
        /// Bytes of the images sent.
        public var snapshotBytesSent: Int
        /// Appends followers here let go while their apply side was behind.
        public var appendsHeld: Int
    }

    public var counters: Counters {
        Counters(fsyncs: disk.syncs, rounds: rounds.load(ordering: .relaxed), appliedEntries: appliedEntries.load(ordering: .relaxed),
                 snapshotsSent: snapshotsSent.load(ordering: .relaxed), snapshotsInstalled: snapshotsInstalled.load(ordering: .relaxed),
                 snapshotBytesSent: snapshotBytesSent.load(ordering: .relaxed),
                 appendsHeld: lock.withLock { groups.values.reduce(0) { $0 + $1.core.appendsHeld } })
    }

    /// Every group of this node with its role, term, leader and applied index (`/cluster`).
    /// One group's replica on this node, for `/cluster` and `/metrics`.
    public struct GroupStatus: Sendable {
        public var group: GroupID
        public var role: RaftCore.Role
        public var term: UInt64
        public var leader: UInt64
        public var applied: UInt64
        /// Asleep: idle, not ticking nor heartbeating.
        public var quiesced: Bool
        /// The last index compacted out of the log into a snapshot.
        public var compacted: UInt64
        /// The index of the last entry in this replica's log.
        public var lastIndex: UInt64
    }

    public func groupStatuses() -> [GroupStatus] {
        let applied = applySide.withLock { $0.applied }
        return lock.withLock {
            groups.keys.sorted().map { id in
                let core = groups[id]!.core
                return GroupStatus(group: id, role: core.role, term: core.term, leader: core.leader, applied: applied[id] ?? 0,
                                   quiesced: core.isQuiesced, compacted: core.compactedIndex, lastIndex: core.lastIndex)
            }
        }
    }

    /// The role and term of this node's replica of `group` (tests, `/cluster`).
    public func status(of group: GroupID) -> (role: RaftCore.Role, term: UInt64, applied: UInt64)? {
        let applied = applySide.withLock { $0.applied[group] ?? 0 }
        return lock.withLock { groups[group].map { ($0.core.role, $0.core.term, applied) } }
    }

    // MARK: - Rounds

    /// Runs `body` on the group in place: a copy would share the group's log, and the next
    /// append to it would copy every entry.
    private func withGroup<T>(_ id: GroupID, _ body: (inout Group) throws(ConsensusError) -> T) throws(ConsensusError) -> T {
        guard groups[id] != nil else { throw .noSuchGroup(id) }
        return try body(&groups[id]!)
    }

    /// Completions to call once the lock is released.
    var deferred: [() -> Void] = []

    /// Runs `body` under the lock, then a round (persist, send, apply), then the completions.
    func run(_ body: () throws(ConsensusError) -> Void) throws(ConsensusError) {
        lock.lock()
        guard !closed else {
            lock.unlock()
            throw .stopped
        }
        var failure: ConsensusError?
        do { try body() } catch { failure = error }
        if failure == nil {
            do { try roundLocked() } catch { failure = error }
        }
        let completions = deferred
        deferred = []
        let batches = toApply
        toApply = []
        let images = imagesToSend
        imagesToSend = []
        // Queued under the rounds' lock, so the apply side sees batches in round order.
        if !batches.isEmpty { applyQueue.withLock { $0 += batches } }
        lock.unlock()
        for completion in completions { completion() }
        for (machine, message) in images {
            // Refused (the stage is full or stopping): the leader probes and asks again later.
            if !imageOn({ [self] in sendImage(message, of: machine) }) {
                logger.warning("no room to make a snapshot image now", metadata: ["group": "\(message.group)", "to": "\(message.message.to)"])
                _ = lock.withLock { imageStreams.remove(ImageStream(message)) }
            }
        }
        // Also when nothing new came: an earlier run may not have been taken.
        if !batches.isEmpty || !applyQueue.withLock({ $0.isEmpty }) { scheduleApply() }
        if let failure { throw failure }
    }

    private func roundLocked() throws(ConsensusError) {
        // A slow apply side: committed entries wait in the log until it catches up.
        let holds = applyBacklogBytes.load(ordering: .relaxed) >= settings.applyBacklogBytesMax
        for group in groups.keys where groups[group]!.core.holdsCommitted != holds { groups[group]!.core.holdsCommitted = holds }
        while true {
            var batch: [(group: GroupID, ready: RaftReady)] = []
            // Only the groups with work, in a fixed order (most of many groups are idle).
            for group in groups.keys.filter({ groups[$0]!.core.hasReady }).sorted() {
                batch.append((group, groups[group]!.core.ready()))
            }
            guard !batch.isEmpty else {
                diskFull = nil  // nothing waits to be written
                return
            }
            rounds.add(1, ordering: .relaxed)
            // 1. A leader's appends and heartbeats rely on nothing on its disk (its own entries
            //    count toward a quorum only once persisted), so they leave before the fsync and
            //    the followers write in parallel, as etcd does.
            var early: [UInt64: [GroupMessage]] = [:]
            var late: [UInt64: [GroupMessage]] = [:]
            for (group, ready) in batch {
                for message in ready.messages {
                    // No image in the log (or only a token of this node's spool): the state machine makes one.
                    if message.kind == .snapshot, let data = message.snapshot?.data, data.isEmpty || SpooledImage.name(in: data) != nil {
                        let item = GroupMessage(group: group, message: message)
                        if imageStreams.insert(ImageStream(item)).inserted { imagesToSend.append((groups[group]!.machine, item)) }
                        continue
                    }
                    let items = SnapshotChunks.split(GroupMessage(group: group, message: message), chunkBytes: settings.snapshotChunkBytes)
                    switch message.kind {
                    case .append, .heartbeat, .snapshot, .timeoutNow: early[message.to, default: []] += items
                    default: late[message.to, default: []] += items
                    }
                }
            }
            if diskFull == nil {
                for (node, messages) in early.sorted(by: { $0.key < $1.key }) { transport.send(to: node, messages) }
            } else {
                // While its log refuses writes for lack of space, a leader's heartbeats would keep
                // the followers from electing one with space and the group would wait on this
                // disk: they leave only once the round is written.
                for (node, messages) in early { late[node] = messages + (late[node] ?? []) }
            }
            // 2. Persist every group's ready with one fsync: votes and acknowledgements
            //    must be durable before the messages that rely on them leave.
            do { try disk.write(batch) } catch let error as RaftDiskFullError {
                // Not the caller's error: the waiters are answered, and a tick tries again.
                failRoundLocked(batch, error)
                return
            } catch {
                logger.critical("raft log write failed; this node stops accepting writes", metadata: ["reason": "\(error)"])
                disk.failed(error)
                // Entries handed to the apply side in earlier rounds were durable: they are
                // applied and answered there. Everything else is answered now, once.
                stopLocked(reason: .io("raft log: \(error)"))
                throw .io("raft log: \(error)")
            }
            if diskFull != nil {
                logger.info("the raft log takes writes again")
                diskFull = nil
            }
            for (node, messages) in late.sorted(by: { $0.key < $1.key }) { transport.send(to: node, messages) }
            // 3. Hand committed entries to the apply side, advance.
            for (group, ready) in batch {
                handOverLocked(group, ready)
                groups[group]!.core.advance(ready)
            }
        }
    }

    /// The log refused the round's write for lack of space, and holds none of it. Nothing
    /// that relied on it happens: no message that needs it leaves, nothing is applied, and
    /// the cores keep what they had to persist, so the next round (a tick, once space is
    /// free) writes the same entries from the same index. Every proposal and read waiting in
    /// those groups fails now rather than wait for space: none is acknowledged, though an
    /// entry the followers already have may still commit (as after `close()`).
    private func failRoundLocked(_ batch: [(group: GroupID, ready: RaftReady)], _ error: RaftDiskFullError) {
        if diskFull == nil {
            logger.info("the raft log refuses writes for lack of space: proposals fail until a round writes again",
                           metadata: ["reason": "\(error)"])
        }
        diskFull = error
        for (id, ready) in batch {
            groups[id]!.core.abandon(ready)
            answerWaitersLocked(of: groups[id]!, with: .io("\(id): raft log: \(error); not acknowledged (the write may still be applied)"))
            groups[id]!.writes = [:]
            groups[id]!.reads = [:]
        }
    }

    /// While the log refuses writes for lack of space, new proposals and reads would only
    /// fail with the next round: they are refused before they reach the core (so, unlike
    /// those the failed round held, they are surely not applied).
    private func refuseWhileDiskFullLocked(_ group: GroupID) throws(ConsensusError) {
        guard let diskFull else { return }
        throw .busy("\(group): the raft log refuses writes for lack of space (\(diskFull)); retry once space is freed")
    }

    /// Moves what `ready` commits (and the proposals and reads waiting for it) to the apply side.
    private func handOverLocked(_ id: GroupID, _ ready: RaftReady) {
        // In place: a copy of the group would share its log, and the next append would copy it whole.
        let answered = groups[id]!.takeAnswered(by: ready)
        let hint = answered.leaderHint
        for read in answered.abandonedReads { deferred.append { read(.failure(.notLeader(id, leaderHint: hint))) } }
        if ready.snapshot != nil || !ready.committed.isEmpty || !answered.reads.isEmpty {
            applyBacklogBytes.add(ready.committed.reduce(0) { $0 + $1.data.count }, ordering: .relaxed)
            toApply.append(ApplyBatch(group: id, machine: groups[id]!.machine, snapshot: ready.snapshot, entries: ready.committed,
                                      writes: answered.writes, reads: answered.reads, leaderHint: hint))
        }
    }

    private func changeMembership(_ group: GroupID, _ change: RaftConfChange) throws {
        try run { () throws(ConsensusError) in
            guard groups[group] != nil else { throw .noSuchGroup(group) }
            try refuseWhileDiskFullLocked(group)
            do throws(RaftError) { _ = try groups[group]!.core.proposeConfChange(change) } catch { throw Self.translate(error, group) }
        }
    }

    private static func translate(_ error: RaftError, _ group: GroupID) -> ConsensusError {
        switch error {
        case .notLeader(let hint): .notLeader(group, leaderHint: hint)
        case .transferring: .busy("\(group) is transferring its leadership; retry")
        case .tooManyUncommittedBytes: .busy("\(group) has too many uncommitted bytes; retry later")
        case .confChangePending: .busy("\(group) has a membership change in progress; retry")
        case .learnerBehind: .busy("the learner has not caught up yet; retry")
        case .invalidConfChange(let why): .refused(why)
        }
    }
}
