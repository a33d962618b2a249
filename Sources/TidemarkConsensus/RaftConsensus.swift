import Foundation
import Logging
import TidemarkStorage

/// Carries Raft messages to other nodes (best effort: Raft copes with loss). `RaftConsensus`
/// hands over, per destination, the messages of all groups produced in one round.
public protocol RaftTransport: AnyObject, Sendable {
    func send(to node: UInt64, _ messages: [GroupMessage])
}

/// The `Consensus` interface over many Raft groups on one node: each group is a `RaftCore`
/// driven here; every round persists the readies of all groups with one fsync
/// (`RaftDisk`), then sends their messages, then applies committed entries in order.
///
/// Inputs: `tick()` from the node's timer, `receive(_:)` from the transport, and the
/// `Consensus` calls. One lock orders them; completions run after it is released.
public final class RaftConsensus: Consensus, @unchecked Sendable {
    /// How the cores of this node are tuned.
    public struct Settings: Sendable {
        public var electionTicks = 10
        public var heartbeatTicks = 1
        public var inflightMax = 256
        public var uncommittedBytesMax = 64 << 20
        public var seed: UInt64 = 1

        public init() {}
    }

    private typealias WriteCompletion = @Sendable (Result<UInt64, ConsensusError>) -> Void

    private struct Group {
        var core: RaftCore
        let machine: StateMachine
        /// Proposals of this node by index: the term they were proposed in, and who waits.
        var writes: [UInt64: (term: UInt64, local: (any Sendable)?, completion: WriteCompletion)] = [:]
        /// Reads waiting for their read index, then for it to be applied.
        var reads: [UInt64: WriteCompletion] = [:]
        var readsAtIndex: [(index: UInt64, completion: WriteCompletion)] = []
        var applied: UInt64 = 0
    }

    public let nodeID: UInt64
    private let disk: RaftDisk
    private let transport: RaftTransport
    private let settings: Settings
    private let logger: Logger
    private let lock = NSLock()
    // protected by lock:
    private var groups: [GroupID: Group] = [:]
    private var recovered: [GroupID: RaftDiskState]
    private var nextReadID: UInt64 = 1
    private var closed = false

    public init(nodeID: UInt64, disk: RaftDisk, transport: RaftTransport, settings: Settings = Settings(),
                logger: Logger = Logger(label: "tidemark.raft")) throws {
        self.nodeID = nodeID
        self.disk = disk
        self.transport = transport
        self.settings = settings
        self.logger = logger
        recovered = try disk.recover()
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
            let voters = Set(peers.map(\.id)).union([nodeID])
            let core = RaftCore(config: config, membership: RaftMembership(voters: voters), hardState: state.hardState,
                                snapshot: state.snapshot, entries: state.entries)
            if let snapshot = state.snapshot {
                do {
                    try stateMachine.restore(StateSnapshot(index: snapshot.index, term: snapshot.term, data: snapshot.data))
                } catch {
                    throw .io("\(group): restoring its snapshot failed: \(error)")
                }
            }
            groups[group] = Group(core: core, machine: stateMachine, applied: state.snapshot?.index ?? 0)
            // Committed entries after the snapshot are applied again by the first round.
        }
    }

    public func deleteGroup(_ group: GroupID) throws {
        try run { () throws(ConsensusError) in
            guard let removed = groups.removeValue(forKey: group) else { throw .noSuchGroup(group) }
            do { try disk.remove(group) } catch { throw .io("\(group): \(error)") }
            for pending in removed.writes.values { pending.completion(.failure(.noSuchGroup(group))) }
        }
    }

    public func write(_ group: GroupID, _ proposal: Proposal, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void) {
        do throws(ConsensusError) {
            try run { () throws(ConsensusError) in
                guard var state = groups[group] else { throw .noSuchGroup(group) }
                let index: UInt64
                do throws(RaftError) { index = try state.core.propose(proposal.data) } catch { throw Self.translate(error, group) }
                state.writes[index] = (state.core.term, proposal.local, completion)
                groups[group] = state
            }
        } catch {
            completion(.failure(error))
        }
    }

    public func read(_ group: GroupID, consistency: ReadConsistency, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void) {
        do throws(ConsensusError) {
            try run { () throws(ConsensusError) in
                guard var state = groups[group] else { throw .noSuchGroup(group) }
                switch consistency {
                case .weak:
                    let applied = state.applied
                    deferred.append { completion(.success(applied)) }
                case .linearizable, .leaseBased:
                    let id = nextReadID
                    nextReadID += 1
                    do throws(RaftError) { try state.core.readIndex(requestID: id) } catch { throw Self.translate(error, group) }
                    state.reads[id] = completion
                    groups[group] = state
                }
            }
        } catch {
            completion(.failure(error))
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
        try run { () throws(ConsensusError) in
            guard var state = groups[group] else { throw .noSuchGroup(group) }
            do {
                let image = try state.machine.snapshot()
                precondition(image.index <= state.applied, "a state machine snapshots what it applied")
                guard image.index > 0 else { return }
                let term = state.core.term(at: image.index) ?? image.term
                let snapshot = RaftSnapshot(index: image.index, term: term, membership: state.core.membership, data: image.data)
                state.core.compact(snapshot)
                try disk.compact(group, snapshot: snapshot)
                groups[group] = state
            } catch {
                throw .io("\(group): snapshot failed: \(error)")
            }
        }
        return lock.withLock { groups[group]?.applied ?? 0 }
    }

    public func close() {
        lock.withLock { closed = true }
        disk.close()
    }

    // MARK: - Inputs

    /// One unit of the node's Raft clock (the timer calls this every `tick_ms`).
    public func tick() {
        try? run { () throws(ConsensusError) in
            for group in groups.keys { groups[group]!.core.tick() }
        }
    }

    /// Messages from another node.
    public func receive(_ messages: [GroupMessage]) {
        try? run { () throws(ConsensusError) in
            for item in messages where groups[item.group] != nil && item.message.to == nodeID {
                groups[item.group]!.core.step(item.message)
            }
        }
    }

    /// The role and term of this node's replica of `group` (tests, `/cluster`).
    public func status(of group: GroupID) -> (role: RaftCore.Role, term: UInt64, applied: UInt64)? {
        lock.withLock { groups[group].map { ($0.core.role, $0.core.term, $0.applied) } }
    }

    // MARK: - Rounds

    /// Completions to call once the lock is released.
    private var deferred: [() -> Void] = []

    /// Runs `body` under the lock, then a round (persist, send, apply), then the completions.
    private func run(_ body: () throws(ConsensusError) -> Void) throws(ConsensusError) {
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
        lock.unlock()
        for completion in completions { completion() }
        if let failure { throw failure }
    }

    private func roundLocked() throws(ConsensusError) {
        while true {
            var batch: [(group: GroupID, ready: RaftReady)] = []
            for group in groups.keys.sorted(by: { $0.description < $1.description }) where groups[group]!.core.hasReady {
                batch.append((group, groups[group]!.core.ready()))
            }
            guard !batch.isEmpty else { return }
            // 1. Persist every group's ready with one fsync: votes and acknowledgements
            //    must be durable before the messages that rely on them leave.
            do { try disk.write(batch) } catch {
                logger.critical("raft log write failed; this node stops accepting writes", metadata: ["reason": "\(error)"])
                closed = true
                throw .io("raft log: \(error)")
            }
            // 2. Send, one batch per destination node.
            var outgoing: [UInt64: [GroupMessage]] = [:]
            for (group, ready) in batch {
                for message in ready.messages { outgoing[message.to, default: []].append(GroupMessage(group: group, message: message)) }
            }
            for (node, messages) in outgoing.sorted(by: { $0.key < $1.key }) { transport.send(to: node, messages) }
            // 3. Apply, answer, advance.
            for (group, ready) in batch {
                applyLocked(group, ready)
                groups[group]!.core.advance(ready)
            }
        }
    }

    private func applyLocked(_ id: GroupID, _ ready: RaftReady) {
        var state = groups[id]!
        if let snapshot = ready.snapshot {
            do {
                try state.machine.restore(StateSnapshot(index: snapshot.index, term: snapshot.term, data: snapshot.data))
            } catch {
                logger.error("installing a snapshot failed", metadata: ["group": "\(id)", "reason": "\(error)"])
            }
            state.applied = max(state.applied, snapshot.index)
        }
        for entry in ready.committed {
            var outcome: Result<UInt64, ConsensusError> = .success(entry.index)
            let mine = state.writes.removeValue(forKey: entry.index)
            if entry.kind == .normal && !entry.data.isEmpty {
                let local = mine?.term == entry.term ? mine?.local : nil
                do {
                    try state.machine.apply(CommittedEntry(index: entry.index, term: entry.term, data: entry.data, local: local))
                } catch {
                    outcome = .failure(.refused("\(error)"))
                }
            }
            state.applied = entry.index
            if let mine {
                // Another leader's entry took this index: the proposal was lost.
                let result = mine.term == entry.term ? outcome : .failure(.notLeader(id, leaderHint: state.core.leader == 0 ? nil : state.core.leader))
                deferred.append { mine.completion(result) }
            }
        }
        for read in ready.readStates {
            if let completion = state.reads.removeValue(forKey: read.requestID) { state.readsAtIndex.append((read.index, completion)) }
        }
        let applied = state.applied
        for read in state.readsAtIndex where read.index <= applied { deferred.append { read.completion(.success(applied)) } }
        state.readsAtIndex.removeAll { $0.index <= applied }
        // A replica that stopped leading keeps no promises about its pending proposals and reads.
        if state.core.role != .leader {
            let hint = state.core.leader == 0 ? nil : state.core.leader
            for read in state.reads.values { deferred.append { read(.failure(.notLeader(id, leaderHint: hint))) } }
            state.reads = [:]
        }
        groups[id] = state
    }

    private func changeMembership(_ group: GroupID, _ change: RaftConfChange) throws {
        try run { () throws(ConsensusError) in
            guard groups[group] != nil else { throw .noSuchGroup(group) }
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
