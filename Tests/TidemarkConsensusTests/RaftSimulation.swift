import TidemarkCluster
import TidemarkConsensus
import TidemarkTestSupport

/// A safety or liveness violation, with the seed that replays it.
struct SimulationFailure: Error, CustomStringConvertible {
    let seed: UInt64
    let round: Int
    let what: String
    var description: String { "seed \(seed), round \(round): \(what)" }
}

/// The simulator's own seeded draws (the cores get theirs from their configs).
struct SimRandom {
    private var generator: Seeded

    init(state: UInt64) { generator = Seeded(state: state) }

    mutating func next() -> UInt64 { generator.next() }
    mutating func below(_ bound: Int) -> Int { Int(next() % UInt64(bound)) }
    mutating func chance(_ percent: Int) -> Bool { below(1000) < percent * 10 }
}

/// A whole Raft group run by one seeded, single-threaded scheduler: real `RaftCore`s, a
/// simulated network (drop, delay, duplicate, reorder, partition), simulated disks (what
/// was not persisted is gone after a crash) and a simulated clock. Every round it checks
/// election safety, log matching, leader completeness, state-machine safety and that a
/// persisted commit index or term never moves back; once healed, that every member applied
/// every acknowledged write (the same entry, by state-machine safety): nothing acknowledged
/// is lost.
final class RaftSimulation {
    /// What a replica has on disk.
    struct Disk {
        var hardState = HardState()
        var snapshot: RaftSnapshot?
        var entries: [RaftEntry] = []
    }

    /// A replica: its core while running, its disk always, its state machine (a register per key).
    struct Replica {
        var core: RaftCore?
        var disk = Disk()
        var registers: [String: String] = [:]
        /// With `.meta` payloads: the meta group's state machine instead of the registers.
        var meta = MetaState(settings: ClusterSettings())
        var appliedIndex: UInt64 = 0
        var restarts: UInt64 = 0
        /// The membership it starts with: the initial group, or the group as of its joining.
        var bootstrap = RaftMembership(voters: [])
        /// Started at least once (spares join later, as learners).
        var joined = false
        /// Rounds its disk still refuses writes for lack of space (the nemesis fills it; space
        /// comes back by itself).
        var diskFullRounds = 0
    }

    /// A client write: acknowledged once its proposer applied it at `index`.
    struct Write {
        var key: String
        var value: String
        var proposer: UInt64
        var index: UInt64
        var term: UInt64
        var acknowledged = false
        var call: Int
        var returned = Int.max
    }

    /// A linearizable read: asked of a leader, answered once its read index is applied there.
    struct Read {
        var key: String
        var replica: UInt64
        var call: Int
        var index: UInt64?
    }

    let seed: UInt64
    let ids: [UInt64]
    private(set) var replicas: [UInt64: Replica] = [:]
    var random: SimRandom
    private var network = SimNetwork<RaftMessage>(dropPercent: 5, duplicatePercent: 2, delayRoundsMax: 3)
    private(set) var round = 0
    private var clientsWrite = true
    /// Orders every call and return of the client history.
    private var clock = 0
    private var nextReadID: UInt64 = 1
    private var pendingReads: [UInt64: Read] = [:]
    private(set) var completedReads: [RegisterOperation] = []
    private(set) var writes: [Write] = []
    private var nextValue = 0
    /// Every entry any replica applied, by index: all must agree.
    private var appliedByIndex: [UInt64: RaftEntry] = [:]
    private var leaderOfTerm: [UInt64: UInt64] = [:]
    /// Readies one replica may produce in a row before the simulator calls it a livelock.
    static let readyPassesMax = 10_000
    private(set) var stats = (elections: 0, crashes: 0, partitions: 0, transfers: 0, snapshots: 0, membershipChanges: 0, quiescedRounds: 0,
                              applyHolds: 0, refusedWrites: 0)
    /// Idle groups sleep (`RaftConfig.quiesce`); the hosts' failure detector wakes them.
    let quiesce: Bool

    /// What the replicated state machine is.
    enum Payload {
        /// A register per key: writes and linearizable reads, checked for linearizability.
        case registers
        /// The meta group's state machine (`MetaState`) under random meta commands; every apply
        /// checks its rules, that the table's version only grows, that no partition of a live
        /// database is ever assigned again, and that every replica reaches the same state at
        /// each index.
        case meta
    }
    let payload: Payload
    /// With `.meta`: the checksum of the meta state's snapshot after each index, as the first
    /// replica to apply it found it.
    var metaDigestByIndex: [UInt64: UInt32] = [:]
    var metaStats = (commands: 0, refused: 0, assignments: 0)

    /// `count` voters, and `spares` replicas that may join later as learners and become voters.
    init(seed: UInt64, replicas count: Int, spares: Int = 1, quiesce: Bool = false, payload: Payload = .registers) {
        self.seed = seed
        self.quiesce = quiesce
        self.payload = payload
        random = SimRandom(state: seed)
        ids = (1...UInt64(count + spares)).map { $0 }
        let initial = RaftMembership(voters: Set(1...UInt64(count)))
        for id in ids {
            replicas[id] = Replica()
            if id <= UInt64(count) {
                replicas[id]!.bootstrap = initial
                start(id)
            }
        }
    }

    private func start(_ id: UInt64) {
        var replica = replicas[id]!
        var config = RaftConfig(id: id, seed: seed &* 31 &+ id &* 1009 &+ replica.restarts)
        config.inflightMax = 8
        config.messageBytesMax = 256
        config.quiesce = quiesce
        replica.joined = true
        replica.core = RaftCore(config: config, membership: replica.bootstrap, hardState: replica.disk.hardState,
                                snapshot: replica.disk.snapshot, entries: replica.disk.entries)
        // The state machine restarts from the snapshot; the log after it is applied again.
        switch payload {
        case .registers: replica.registers = replica.disk.snapshot.map { Self.decodeRegisters($0.data) } ?? [:]
        case .meta: replica.meta = replica.disk.snapshot.map { Self.decodeMeta($0.data) } ?? MetaState(settings: ClusterSettings())
        }
        replica.appliedIndex = replica.disk.snapshot?.index ?? 0
        replicas[id] = replica
    }

    // MARK: - Running

    /// One round: every running replica ticks, handles its ready, then due messages arrive.
    func step(nemesis: Bool) throws {
        round += 1
        if nemesis { disturb() }
        for id in ids where replicas[id]!.diskFullRounds > 0 { replicas[id]!.diskFullRounds -= 1 }
        detectFailures()
        // Quiet stretches (no client for a while) let idle groups go to sleep.
        let busy = clientsWrite && (round / 40) % 3 != 2
        if busy && random.chance(30) { proposeSomewhere() }
        if busy && random.chance(15) { readSomewhere() }
        for id in ids where replicas[id]!.core != nil {
            replicas[id]!.core!.tick()
            try handleReady(id)
        }
        deliver()
        for id in ids where replicas[id]!.core != nil { try handleReady(id) }
        if let leader = currentLeader(), replicas[leader]!.core!.isQuiesced { stats.quiescedRounds += 1 }
        try checkInvariants()
    }

    /// Each host's failure detector: a peer that crashed or is cut off is reported down at
    /// once (the real transport notices a lost or silent link within an election timeout).
    private func detectFailures() {
        for id in ids where replicas[id]!.core != nil {
            for peer in ids where peer != id && (replicas[peer]!.core == nil || !network.connected(id, peer)) {
                replicas[id]!.core!.peerDown(peer)
            }
        }
    }

    /// Every running member of the group asleep.
    private func allQuiesced() -> Bool {
        guard let leader = currentLeader(), let membership = replicas[leader]!.core?.membership else { return false }
        return membership.voters.union(membership.learners).allSatisfy { replicas[$0]!.core?.isQuiesced == true }
    }

    /// Faults heal; returns once every acknowledged write and a fresh write are applied
    /// everywhere, or throws after `roundsMax`. With quiescence, the idle group must then
    /// fall asleep, and when its sleeping leader dies for good the others must wake (their
    /// failure detectors tell them) and make progress again.
    func heal(roundsMax: Int) throws {
        for id in ids where replicas[id]!.joined && replicas[id]!.core == nil { start(id) }
        for id in ids {
            replicas[id]!.core?.holdsCommitted = false
            replicas[id]!.diskFullRounds = 0
        }
        network.calm()
        clientsWrite = false
        try awaitProgress(roundsMax: roundsMax)
        guard quiesce else { return }
        try sleep(roundsMax: 100)
        guard let leader = currentLeader(), replicas[leader]!.core!.membership.voters.count >= 3 else { return }
        replicas[leader]!.core = nil
        pendingReads = pendingReads.filter { $0.value.replica != leader }
        try awaitProgress(roundsMax: roundsMax)
    }

    /// Steps until a fresh write is acknowledged and every live member applied every
    /// acknowledged write.
    private func awaitProgress(roundsMax: Int) throws {
        var probe: Int?
        for _ in 0..<roundsMax {
            try step(nemesis: false)
            // A fresh write, proposed again if the leader that took it lost its term.
            if let leader = currentLeader(), probe.map({ !writes[$0].acknowledged && writes[$0].term != replicas[leader]!.core!.term }) ?? true {
                probe = propose(at: leader) ?? probe
            }
            if let probe, writes[probe].acknowledged, converged() { return }
        }
        let states = ids.filter { replicas[$0]!.joined }.map { id in
            guard let core = replicas[id]!.core else { return "\(id): down" }
            return "\(id): \(core.role) term \(core.term) applied \(replicas[id]!.appliedIndex) last \(replicas[id]!.disk.entries.last?.index ?? 0)"
        }
        throw SimulationFailure(seed: seed, round: round, what: "no progress within \(roundsMax) rounds after healing "
                                + "(probe acknowledged: \(probe.map { writes[$0].acknowledged } ?? false); \(states.joined(separator: "; ")))")
    }

    /// With quiescence on, the idle group must fall asleep within `roundsMax` rounds.
    private func sleep(roundsMax: Int) throws {
        guard quiesce else { return }
        for _ in 0..<roundsMax {
            if allQuiesced() { return }
            try step(nemesis: false)
        }
        let states = ids.compactMap { id in
            replicas[id]!.core.map { "\(id): \($0.role) term \($0.term) leader \($0.leader) last \($0.lastIndex) commit \($0.commitIndex) asleep \($0.isQuiesced)" }
        }
        throw SimulationFailure(seed: seed, round: round, what: "the idle group did not quiesce within \(roundsMax) rounds (\(states.joined(separator: "; ")))")
    }

    private func converged() -> Bool {
        guard let leader = currentLeader(), let membership = replicas[leader]!.core?.membership else { return false }
        let applied = membership.voters.union(membership.learners).filter { replicas[$0]!.core != nil }.map { replicas[$0]!.appliedIndex }
        guard let first = applied.first, applied.allSatisfy({ $0 == first }) else { return false }
        return writes.filter(\.acknowledged).allSatisfy { $0.index <= first }
    }

    private func currentLeader() -> UInt64? {
        ids.first { replicas[$0]!.core?.role == .leader }
    }

    // MARK: - Host duties

    private func handleReady(_ id: UInt64) throws {
        var passes = 0
        while var core = replicas[id]!.core, core.hasReady {
            passes += 1
            guard passes <= Self.readyPassesMax else { throw fail("replica \(id) still has work after \(passes - 1) readies") }
            let ready = core.ready()
            if replicas[id]!.diskFullRounds > 0 && (ready.hardState != nil || !ready.entries.isEmpty || ready.snapshot != nil) {
                // The disk refuses the write, as RaftConsensus meets a full one: nothing of the
                // ready is persisted, sent or applied, its reads fail, and the core keeps the
                // rest for a later ready.
                core.abandon(ready)
                for state in ready.readStates { pendingReads[state.requestID] = nil }
                replicas[id]!.core = core
                stats.refusedWrites += 1
                return
            }
            var replica = replicas[id]!
            // Persist first (one fsync), then send, then apply.
            if let hardState = ready.hardState {
                if hardState.commit < replica.disk.hardState.commit {
                    throw fail("replica \(id) would move its durable commit back from \(replica.disk.hardState.commit) to \(hardState.commit)")
                }
                if hardState.term < replica.disk.hardState.term { throw fail("replica \(id) would move its term back") }
                replica.disk.hardState = hardState
            }
            if let snapshot = ready.snapshot {
                replica.disk.snapshot = snapshot
                replica.disk.entries = []
            }
            if let first = ready.entries.first {
                replica.disk.entries.removeAll { $0.index >= first.index }
                replica.disk.entries += ready.entries
            }
            for message in ready.messages { send(message) }
            if let snapshot = ready.snapshot {
                switch payload {
                case .registers: replica.registers = Self.decodeRegisters(snapshot.data)
                case .meta: replica.meta = Self.decodeMeta(snapshot.data)
                }
                replica.appliedIndex = snapshot.index
            }
            for state in ready.readStates where pendingReads[state.requestID]?.replica == id {
                pendingReads[state.requestID]!.index = state.index
            }
            for entry in ready.committed {
                guard entry.index == replica.appliedIndex + 1 else {
                    throw fail("replica \(id) applies \(entry.index) after \(replica.appliedIndex)")
                }
                if let seen = appliedByIndex[entry.index], seen != entry {
                    throw fail("state-machine safety: index \(entry.index) applied as \(entry) and as \(seen)")
                }
                appliedByIndex[entry.index] = entry
                try apply(entry, to: &replica, id: id)
            }
            if core.role == .leader && leaderOfTerm[core.term] == nil {
                leaderOfTerm[core.term] = id
                stats.elections += 1
                try checkLeaderCompleteness(core, id: id)
            }
            core.advance(ready)
            replica.core = core
            replicas[id] = replica
            answerReads(at: id)
        }
    }

    private func apply(_ entry: RaftEntry, to replica: inout Replica, id: UInt64) throws {
        replica.appliedIndex = entry.index
        guard entry.kind == .normal, !entry.data.isEmpty else {
            if payload == .meta { try checkMetaDigest(replica.meta, at: entry.index, id: id) }
            return
        }
        switch payload {
        case .registers:
            let text = String(decoding: entry.data, as: UTF8.self)
            let parts = text.split(separator: "=", maxSplits: 1)
            replica.registers[String(parts[0])] = String(parts[1])
        case .meta:
            try applyMeta(entry, to: &replica.meta, id: id)
        }
        for at in writes.indices where writes[at].proposer == id && writes[at].index == entry.index && writes[at].term == entry.term {
            writes[at].acknowledged = true
            clock += 1
            writes[at].returned = clock
        }
    }

    private func send(_ message: RaftMessage) {
        network.send(message, from: message.from, to: message.to, round: round, random: &random)
    }

    private func deliver() {
        for message in network.due(round: round) where replicas[message.to]!.core != nil {
            replicas[message.to]!.core!.step(message)
        }
    }

    // MARK: - Clients

    @discardableResult
    private func propose(at id: UInt64) -> Int? {
        guard var core = replicas[id]!.core else { return nil }
        nextValue += 1
        let key = payload == .meta ? "meta" : "k\(random.below(5))"
        let value = "v\(nextValue)"
        let data = payload == .meta ? randomMetaCommand(seenBy: replicas[id]!.meta).encoded() : Array("\(key)=\(value)".utf8)
        clock += 1
        guard let index = try? core.propose(data) else { return nil }
        writes.append(Write(key: key, value: value, proposer: id, index: index, term: core.term, call: clock))
        replicas[id]!.core = core
        return writes.count - 1
    }

    /// Any replica that thinks it leads (an old leader cut off may not know it was replaced).
    private func someLeader() -> UInt64? {
        let leaders = ids.filter { replicas[$0]!.core?.role == .leader }
        return leaders.isEmpty ? nil : leaders[random.below(leaders.count)]
    }

    private func proposeSomewhere() {
        if let leader = someLeader() { propose(at: leader) }
    }

    private func readSomewhere() {
        guard payload == .registers, let leader = someLeader() else { return }
        clock += 1
        let read = Read(key: "k\(random.below(5))", replica: leader, call: clock)
        // Some reads use the leader's lease (CheckQuorum is on; the simulated clocks do not drift).
        let lease = random.chance(30)
        guard (try? replicas[leader]!.core!.readIndex(requestID: nextReadID, lease: lease)) != nil else { return }
        pendingReads[nextReadID] = read
        nextReadID += 1
    }

    /// Reads whose index the replica has applied return what its registers hold.
    private func answerReads(at id: UInt64) {
        let applied = replicas[id]!.appliedIndex
        for (requestID, read) in pendingReads.sorted(by: { $0.key < $1.key }) where read.replica == id {
            guard let index = read.index, index <= applied else { continue }
            clock += 1
            completedReads.append(RegisterOperation(key: read.key, kind: .read, value: replicas[id]!.registers[read.key],
                                                    call: read.call, returned: clock))
            pendingReads[requestID] = nil
        }
    }

    /// The client history: acknowledged writes, writes with no answer (they may or may not
    /// have happened; those no read saw can always go last, so they are left out), and reads.
    var history: [RegisterOperation] {
        let seen = Set(completedReads.compactMap(\.value))
        let kept = writes.filter { $0.acknowledged || seen.contains($0.value) }
        return kept.map { RegisterOperation(key: $0.key, kind: .write, value: $0.value, call: $0.call, returned: $0.returned) } + completedReads
    }

    // MARK: - Nemesis

    private func disturb() {
        let roll = random.below(1000)
        switch roll {
        case 0..<8:  // crash: whatever was not persisted is gone
            let id = ids[random.below(ids.count)]
            if replicas[id]!.core != nil {
                replicas[id]!.core = nil
                stats.crashes += 1
                // Its reads never answer.
                pendingReads = pendingReads.filter { $0.value.replica != id }
            }
        case 8..<30:  // restart a crashed replica
            if let id = ids.first(where: { replicas[$0]!.joined && replicas[$0]!.core == nil }) {
                replicas[id]!.restarts += 1
                start(id)
            }
        case 30..<36:  // partition into two sides
            network.partition(ids, random: &random)
            stats.partitions += 1
        case 36..<50:  // heal the partition
            network.heal()
        case 50..<54:  // leadership transfer
            if let leader = currentLeader() {
                let target = ids[random.below(ids.count)]
                if (try? replicas[leader]!.core!.transferLeadership(to: target)) != nil { stats.transfers += 1 }
            }
        case 54..<64:  // a replica snapshots its state machine and compacts its log
            let id = ids[random.below(ids.count)]
            compact(id)
        case 64..<74:  // membership: a spare joins as a learner, a learner becomes a voter, a member leaves
            changeMembership()
        case 74..<80:  // a failure detector's false alarm: a live peer reported down
            let id = ids[random.below(ids.count)]
            replicas[id]!.core?.peerDown(ids[random.below(ids.count)])
        case 80..<90:  // a replica's apply side falls behind (committed entries wait in its log), or catches up
            let id = ids[random.below(ids.count)]
            if let held = replicas[id]!.core?.holdsCommitted {
                replicas[id]!.core!.holdsCommitted = !held
                if !held { stats.applyHolds += 1 }
            }
        case 90..<93:  // a replica's disk is full for a while
            let id = ids[random.below(ids.count)]
            replicas[id]!.diskFullRounds = 3 + random.below(20)
        default:
            break
        }
    }

    private func changeMembership() {
        guard let leader = currentLeader(), var core = replicas[leader]!.core else { return }
        let membership = core.membership
        let change: RaftConfChange
        if let spare = ids.first(where: { !replicas[$0]!.joined }), random.chance(50) {
            change = RaftConfChange(.addLearner, node: spare)
        } else if let learner = membership.learners.sorted().first, random.chance(70) {
            change = RaftConfChange(.addVoter, node: learner)
        } else if membership.voters.count > 3 || !membership.learners.isEmpty {
            // Keep at least three voters; a removed replica never comes back.
            let removable = (membership.voters.count > 3 ? membership.voters : membership.learners).sorted()
            change = RaftConfChange(.remove, node: removable[random.below(removable.count)])
        } else {
            return
        }
        guard (try? core.proposeConfChange(change)) != nil else { return }
        replicas[leader]!.core = core
        stats.membershipChanges += 1
        if change.kind == .addLearner {
            // The operator starts the new replica with the group as it will be.
            replicas[change.node]!.bootstrap = membership.applying(change)
            start(change.node)
        }
    }

    private func compact(_ id: UInt64) {
        guard var core = replicas[id]!.core else { return }
        let replica = replicas[id]!
        // Compact what is applied and on disk, keeping a few entries for slow followers.
        guard replica.appliedIndex > 3, let entry = replica.disk.entries.first(where: { $0.index == replica.appliedIndex - 2 }) else { return }
        // The registers as of the snapshot's index, rebuilt from the disk.
        let data: [UInt8]
        switch payload {
        case .registers:
            guard let registers = Self.registers(upTo: entry.index, snapshot: replica.disk.snapshot, entries: replica.disk.entries) else { return }
            data = Self.encodeRegisters(registers)
        case .meta:
            guard let meta = Self.meta(upTo: entry.index, snapshot: replica.disk.snapshot, entries: replica.disk.entries) else { return }
            data = MetaSnapshot.encode(meta)
        }
        let snapshot = RaftSnapshot(index: entry.index, term: entry.term, membership: core.membership, data: data)
        core.compact(snapshot)
        replicas[id]!.core = core
        replicas[id]!.disk.snapshot = snapshot
        replicas[id]!.disk.entries.removeAll { $0.index <= entry.index }
        stats.snapshots += 1
    }

    // MARK: - Invariants

    private func checkInvariants() throws {
        var leaders: [UInt64: UInt64] = [:]
        for id in ids {
            guard let core = replicas[id]!.core else { continue }
            if core.role == .leader {
                if let other = leaders[core.term], other != id { throw fail("election safety: \(other) and \(id) both lead term \(core.term)") }
                if let recorded = leaderOfTerm[core.term], recorded != id {
                    throw fail("election safety: \(recorded) and \(id) both led term \(core.term)")
                }
                leaders[core.term] = id
            }
        }
        try checkLogMatching()
    }

    /// Log matching: entries with the same index and term are identical, and so are all
    /// entries before them (checked on what the replicas have on disk).
    private func checkLogMatching() throws {
        for (a, b) in ids.flatMap({ a in ids.filter { $0 > a }.map { (a, $0) } }) {
            let left = Dictionary(uniqueKeysWithValues: replicas[a]!.disk.entries.map { ($0.index, $0) })
            let right = replicas[b]!.disk.entries
            var matchedFrom: UInt64?
            for entry in right.reversed() {
                guard let other = left[entry.index] else { continue }
                if other.term == entry.term {
                    if other != entry { throw fail("log matching: \(a) and \(b) hold different entries at \(entry.index), term \(entry.term)") }
                    matchedFrom = matchedFrom ?? entry.index
                } else if let from = matchedFrom, entry.index < from {
                    throw fail("log matching: \(a) and \(b) agree at \(from) but differ at \(entry.index)")
                }
            }
        }
    }

    /// Leader completeness: a new leader holds every entry anyone applied.
    private func checkLeaderCompleteness(_ core: RaftCore, id: UInt64) throws {
        let disk = replicas[id]!.disk
        let snapshotIndex = disk.snapshot?.index ?? 0
        let held = Dictionary(uniqueKeysWithValues: disk.entries.map { ($0.index, $0) })
        for (index, entry) in appliedByIndex where index > snapshotIndex {
            guard let mine = held[index], mine.term == entry.term else {
                throw fail("leader completeness: leader \(id) of term \(core.term) lacks committed entry \(index)")
            }
        }
    }

    func fail(_ what: String) -> SimulationFailure { SimulationFailure(seed: seed, round: round, what: what) }

    // MARK: - Registers

    static func encodeRegisters(_ registers: [String: String]) -> [UInt8] {
        Array(registers.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "\n").utf8)
    }

    static func decodeRegisters(_ bytes: [UInt8]) -> [String: String] {
        var registers: [String: String] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            registers[String(parts[0])] = String(parts[1])
        }
        return registers
    }

    /// The registers after applying everything through `index`, from a snapshot and entries.
    static func registers(upTo index: UInt64, snapshot: RaftSnapshot?, entries: [RaftEntry]) -> [String: String]? {
        var registers = snapshot.map { decodeRegisters($0.data) } ?? [:]
        var at = snapshot?.index ?? 0
        for entry in entries where entry.index > at && entry.index <= index {
            guard entry.index == at + 1 else { return nil }
            at = entry.index
            guard entry.kind == .normal, !entry.data.isEmpty else { continue }
            let parts = String(decoding: entry.data, as: UTF8.self).split(separator: "=", maxSplits: 1)
            registers[String(parts[0])] = String(parts[1])
        }
        return at == index ? registers : nil
    }
}
