/// One replica of a Raft group as a pure state machine, driven from outside as etcd's raft
/// is: `tick()` for time, `step(_:)` for messages, `propose`, `readIndex` and
/// `transferLeadership` for requests; `ready()` says what to persist, send and apply, and
/// `advance(_:)` says it was done. No clock, thread, I/O or global randomness inside.
///
/// Features: elections with PreVote and CheckQuorum; commit only by a quorum in the
/// current term; replication with probe / replicate / snapshot progress and an in-flight
/// limit; a cap on uncommitted bytes; ReadIndex reads; leadership transfer; log compaction
/// and snapshot install.
public struct RaftCore: Sendable {
    public enum Role: Sendable, Equatable, CustomStringConvertible {
        case follower, preCandidate, candidate, leader

        public var description: String {
            switch self {
            case .follower: "follower"
            case .preCandidate: "pre-candidate"
            case .candidate: "candidate"
            case .leader: "leader"
            }
        }
    }

    /// Marks a vote request that a leadership transfer started: it overrides the lease.
    static let transferContext: UInt64 = 1

    public let id: UInt64
    let config: RaftConfig
    public private(set) var term: UInt64 = 0
    public private(set) var vote: UInt64 = 0
    public private(set) var role = Role.follower
    /// The leader this replica follows (0: none known).
    public private(set) var leader: UInt64 = 0
    public private(set) var membership: RaftMembership
    var log: RaftLog
    var progress: [UInt64: RaftProgress] = [:]
    private var votes: [UInt64: Bool] = [:]
    private var electionElapsed = 0
    private var heartbeatElapsed = 0
    private var randomizedElectionTimeout = 0
    private var random: SplitMix64
    var messages: [RaftMessage] = []
    var readStates: [ReadState] = []
    var pendingReads: [PendingRead] = []
    var leadTransferee: UInt64 = 0
    var uncommittedBytes = 0
    /// The last membership change proposed; another waits until it is applied.
    private var pendingConfIndex: UInt64 = 0
    private var lastHardState: HardState
    /// The newest snapshot the host made, sent to followers whose entries were compacted.
    var latestSnapshot: RaftSnapshot?
    /// An idle group asleep: no ticks count, no heartbeats go. Anything that happens (a
    /// proposal, a read, a message, the host's `peerDown` for the leader) wakes it.
    public private(set) var isQuiesced = false
    /// Whether lease reads may be answered at once: not after a wake until a CheckQuorum
    /// round has confirmed a quorum again (a quiesced leader did not check).
    private var leaseConfirmed = false

    /// A read waiting for a heartbeat round to confirm the leader still leads.
    struct PendingRead: Sendable {
        var requestID: UInt64
        var index: UInt64
        var acks: Set<UInt64>
    }

    /// A replica, new (`membership` is the initial group) or restarted from what it had on disk.
    public init(config: RaftConfig, membership: RaftMembership, hardState: HardState = HardState(),
                snapshot: RaftSnapshot? = nil, entries: [RaftEntry] = []) {
        id = config.id
        self.config = config
        self.membership = snapshot?.membership ?? membership
        log = RaftLog(snapshot: snapshot, entries: entries, commit: hardState.commit)
        term = hardState.term
        vote = hardState.vote
        lastHardState = hardState
        latestSnapshot = snapshot
        random = SplitMix64(state: config.seed)
        resetTimers()
    }

    // MARK: - Inputs

    /// One unit of time.
    public mutating func tick() {
        if isQuiesced { return }
        if role == .leader {
            heartbeatElapsed += 1
            electionElapsed += 1
            if electionElapsed >= config.electionTicks {
                electionElapsed = 0
                // CheckQuorum: a leader that has not heard from a quorum for a whole timeout steps down.
                if config.checkQuorum {
                    guard quorumRecentlyActive() else {
                        becomeFollower(term: term, leader: 0)
                        return
                    }
                    // Each check looks at the answers of one timeout.
                    for peer in progress.keys { progress[peer]!.recentActive = false }
                    leaseConfirmed = true
                }
                leadTransferee = 0  // a transfer that did not finish within a timeout is abandoned
            }
            if heartbeatElapsed >= config.heartbeatTicks {
                heartbeatElapsed = 0
                if canQuiesce {
                    broadcastHeartbeat(context: 0, kind: .quiesce)
                    isQuiesced = true
                } else {
                    // Reads still waiting (their confirmations lost) ride on this heartbeat:
                    // a quorum confirming the newest confirms all.
                    broadcastHeartbeat(context: pendingReads.last?.requestID ?? 0)
                }
            }
        } else {
            electionElapsed += 1
            if electionElapsed >= randomizedElectionTimeout {
                electionElapsed = 0
                if isPromotable { startElection(transfer: false) }
            }
        }
    }

    /// The host lost its link to `peer` (or has not heard from it for a while): a replica
    /// asleep under that leader wakes, so it elects another if the leader is gone.
    public mutating func peerDown(_ peer: UInt64) {
        if isQuiesced && role != .leader && leader == peer { wake() }
    }

    /// Every replica has every entry and nothing waits: the leader may put the group to sleep.
    private var canQuiesce: Bool {
        config.quiesce && role == .leader && leadTransferee == 0 && pendingReads.isEmpty && readStates.isEmpty
            && log.committed == log.lastIndex && log.stable == log.lastIndex && log.applied == log.committed
            && log.term(at: log.committed) == term
            && progress.values.allSatisfy { $0.match == log.lastIndex && $0.recentActive }
    }

    private mutating func wake() {
        guard isQuiesced else { return }
        isQuiesced = false
        electionElapsed = 0
        heartbeatElapsed = 0
        if role == .leader {
            // CheckQuorum starts afresh; until it passes, no lease reads.
            for peer in progress.keys { progress[peer]!.recentActive = false }
            leaseConfirmed = false
        }
    }

    /// Starts an election now (tests and tools).
    public mutating func campaign() {
        if isPromotable { startElection(transfer: false) }
    }

    /// Appends a client command; returns its index. Only the leader accepts proposals.
    public mutating func propose(_ data: [UInt8]) throws(RaftError) -> UInt64 {
        wake()
        guard role == .leader else { throw .notLeader(leaderHint: leader == 0 ? nil : leader) }
        guard leadTransferee == 0 else { throw .transferring }
        let entry = RaftEntry(index: log.lastIndex + 1, term: term, data: data)
        guard uncommittedBytes == 0 || uncommittedBytes + entry.sizeBytes <= config.uncommittedBytesMax else {
            throw .tooManyUncommittedBytes
        }
        uncommittedBytes += entry.sizeBytes
        log.append(entry)
        broadcastAppend()
        return entry.index
    }

    /// Proposes a membership change; it takes effect on each replica when applied.
    public mutating func proposeConfChange(_ change: RaftConfChange) throws(RaftError) -> UInt64 {
        wake()
        guard role == .leader else { throw .notLeader(leaderHint: leader == 0 ? nil : leader) }
        guard leadTransferee == 0 else { throw .transferring }
        // One change at a time, and (Ongaro's fix for single-server changes) only once this
        // leader has committed an entry of its own term.
        guard pendingConfIndex <= log.applied, log.term(at: log.committed) == term else { throw .confChangePending }
        switch change.kind {
        case .addVoter:
            guard !membership.voters.contains(change.node) else { throw .invalidConfChange("\(change.node) is a voter already") }
            guard membership.learners.contains(change.node), let learner = progress[change.node] else {
                throw .invalidConfChange("\(change.node) must join as a learner and catch up before it votes")
            }
            guard learner.match >= log.committed else { throw .learnerBehind }
        case .addLearner:
            guard !membership.voters.contains(change.node) && !membership.learners.contains(change.node) else {
                throw .invalidConfChange("\(change.node) is a member already")
            }
        case .remove:
            guard membership.voters.contains(change.node) || membership.learners.contains(change.node) else {
                throw .invalidConfChange("\(change.node) is not a member")
            }
            guard membership.voters != [change.node] else { throw .invalidConfChange("the last voter cannot be removed") }
        }
        let entry = RaftEntry(index: log.lastIndex + 1, term: term, kind: .confChange, data: change.encoded)
        log.append(entry)
        pendingConfIndex = entry.index
        broadcastAppend()
        return entry.index
    }

    /// Asks for a linearizable read: a `ReadState` with `requestID` comes out of `ready()` once
    /// a quorum confirmed this replica still leads; the read may run when its index is applied.
    /// `lease` (only with CheckQuorum, as etcd's lease-based reads) answers at once: followers
    /// that heard from this leader within an election timeout refuse to elect another, and
    /// this leader steps down when it has not heard from a quorum for as long, so within a
    /// bounded clock drift no other leader can have committed anything newer.
    public mutating func readIndex(requestID: UInt64, lease: Bool = false) throws(RaftError) {
        wake()
        guard role == .leader else { throw .notLeader(leaderHint: leader == 0 ? nil : leader) }
        // A new leader knows the commit index only once an entry of its own term is committed.
        guard log.term(at: log.committed) == term else { throw .notLeader(leaderHint: nil) }
        if membership.voters == [id] || (lease && config.checkQuorum && leaseConfirmed) {
            readStates.append(ReadState(requestID: requestID, index: log.committed))
            return
        }
        pendingReads.append(PendingRead(requestID: requestID, index: log.committed, acks: [id]))
        broadcastHeartbeat(context: requestID)
    }

    /// Hands leadership to `target` once its log is up to date (it then campaigns at once).
    public mutating func transferLeadership(to target: UInt64) throws(RaftError) {
        wake()
        guard role == .leader else { throw .notLeader(leaderHint: leader == 0 ? nil : leader) }
        guard target != id, membership.voters.contains(target) else { return }
        leadTransferee = target
        electionElapsed = 0
        if progress[target]?.match == log.lastIndex {
            send(RaftMessage(kind: .timeoutNow, from: id, to: target, term: term))
        } else {
            sendAppend(to: target)
        }
    }

    /// The host finished sending a snapshot to `peer` (every piece of its image left): the
    /// wait before it is taken as lost starts now, not when it was asked for, since a large
    /// image takes longer on its way than that wait.
    public mutating func snapshotSent(to peer: UInt64) {
        guard role == .leader, var follower = progress[peer], case .snapshot = follower.state else { return }
        follower.heartbeatsSinceSnapshot = 0
        progress[peer] = follower
    }

    /// A snapshot from the leader, taken and not yet handed out by `ready()`.
    public var pendingSnapshot: RaftSnapshot? { log.pendingSnapshot }

    /// The host installed the image of the snapshot at `index` and keeps it durably itself:
    /// the snapshot need not carry it any longer (leading later, this replica has its state
    /// machine make a fresh image). False when a newer snapshot came meanwhile.
    public mutating func dropSnapshotImage(at index: UInt64) -> Bool {
        guard let snapshot = latestSnapshot, snapshot.index == index, !snapshot.data.isEmpty else { return false }
        precondition(log.pendingSnapshot?.index != index, "an image is dropped only once its snapshot is persisted and applied")
        latestSnapshot!.data = []
        return true
    }

    /// The host took a snapshot of the state machine through `snapshot.index` (applied):
    /// entries up to it are dropped, and lagging followers get the snapshot instead.
    public mutating func compact(_ snapshot: RaftSnapshot) {
        precondition(snapshot.index <= log.applied, "a snapshot covers applied entries only")
        guard snapshot.index > log.snapshotIndex else { return }
        precondition(log.term(at: snapshot.index) == snapshot.term, "snapshot term does not match the log")
        latestSnapshot = snapshot
        log.compact(through: snapshot.index)
    }

    /// Where the host may compact the log once its state machine holds everything through
    /// `durable`: there, but on a leader no further than the slowest follower has, while the
    /// entries kept for it stay within `catchUpBytesMax` (past that it gets a snapshot).
    public func compactionIndex(durable: UInt64, catchUpBytesMax: Int) -> UInt64 {
        let target = min(durable, log.applied)
        guard role == .leader, target > log.snapshotIndex,
              let slowest = progress.values.map(\.match).min(), slowest < target else { return target }
        let keptFrom = max(slowest, log.snapshotIndex)
        return log.bytes(from: keptFrom + 1, through: target) <= catchUpBytesMax ? keptFrom : target
    }

    public mutating func step(_ message: RaftMessage) {
        guard message.to == id, message.from != id else { return }
        // Heartbeats of this term and their answers change nothing for a sleeping replica (a
        // leader awake for a read, or a heartbeat delayed past the quiesce); a node no longer
        // in the group may campaign forever. Anything else wakes.
        let fromMember = membership.voters.contains(message.from) || membership.learners.contains(message.from)
        let heartbeat = message.term == term
            && (message.kind == .heartbeat || message.kind == .heartbeatResponse || message.kind == .quiesce)
        if fromMember && !heartbeat { wake() }
        if message.term > term {
            if message.kind == .vote || message.kind == .preVote {
                // With CheckQuorum a replica that heard from a live leader within a timeout ignores
                // campaigns (unless a transfer started them): a partitioned node cannot disrupt.
                let inLease = config.checkQuorum && leader != 0 && electionElapsed < config.electionTicks
                if inLease && message.context != Self.transferContext { return }
            }
            switch message.kind {
            case .preVote:
                break  // a pre-vote never changes the term
            case .preVoteResponse where !message.reject:
                break  // granted for the term we would campaign in
            case .append, .heartbeat, .quiesce, .snapshot:
                becomeFollower(term: message.term, leader: message.from)
            default:
                becomeFollower(term: message.term, leader: 0)
            }
        } else if message.term < term {
            if (config.checkQuorum || config.preVote) && (message.kind == .append || message.kind == .heartbeat || message.kind == .quiesce) {
                // A stale leader learns of the newer term and steps down.
                send(RaftMessage(kind: .appendResponse, from: id, to: message.from, term: term))
            } else if message.kind == .preVote {
                var refusal = RaftMessage(kind: .preVoteResponse, from: id, to: message.from, term: term)
                refusal.reject = true
                send(refusal)
            }
            return
        }
        switch message.kind {
        case .preVote, .vote:
            handleVoteRequest(message)
        default:
            switch role {
            case .leader: stepLeader(message)
            case .preCandidate, .candidate: stepCandidate(message)
            case .follower: stepFollower(message)
            }
        }
    }

    // MARK: - Output

    /// The highest index known to be committed.
    public var commitIndex: UInt64 { log.committed }
    /// The last index compacted into a snapshot (0 for none).
    public var compactedIndex: UInt64 { log.snapshotIndex }
    /// The index of the last entry in the log.
    public var lastIndex: UInt64 { log.lastIndex }
    /// The term of the entry at `index`, if the log still has it.
    public func term(at index: UInt64) -> UInt64? { log.term(at: index) }

    /// Set by the host while its apply side is too far behind: readies hand out no committed
    /// entries (they wait in the log) until it is cleared, and a follower takes no new
    /// entries meanwhile, so the log it holds in memory stops growing.
    public var holdsCommitted = false
    /// Appends a follower let go because its apply side was behind (the leader sends them again).
    public private(set) var appendsHeld = 0

    public var hasReady: Bool {
        currentHardState != lastHardState || log.pendingSnapshot != nil || log.stable < log.lastIndex
            || (!holdsCommitted && log.applied < log.committed) || !messages.isEmpty || !readStates.isEmpty
    }

    public mutating func ready() -> RaftReady {
        var ready = RaftReady()
        if currentHardState != lastHardState { ready.hardState = currentHardState }
        ready.snapshot = log.pendingSnapshot
        if log.stable < log.lastIndex {
            ready.entries = log.slice(from: log.stable + 1, through: log.lastIndex, bytesMax: .max)
        }
        // Entries of this same ready are persisted before anything is applied.
        let appliedFrom = max(log.applied, log.snapshotIndex) + 1
        if appliedFrom <= log.committed && !holdsCommitted {
            ready.committed = log.slice(from: appliedFrom, through: log.committed, bytesMax: .max)
        }
        ready.messages = messages
        ready.readStates = readStates
        return ready
    }

    /// The host persisted, sent and applied `ready`.
    public mutating func advance(_ ready: RaftReady) {
        if let hardState = ready.hardState { lastHardState = hardState }
        if let snapshot = ready.snapshot {
            if log.pendingSnapshot == snapshot { log.pendingSnapshot = nil }
            latestSnapshot = snapshot
            log.applied = max(log.applied, snapshot.index)
        }
        if let last = ready.entries.last, log.term(at: last.index) == last.term {
            log.stable = max(log.stable, last.index)
        }
        if let last = ready.committed.last { log.applied = max(log.applied, last.index) }
        for entry in ready.committed where entry.kind == .confChange {
            if let change = RaftConfChange(decoding: entry.data) { applyConfChange(change) }
        }
        messages.removeFirst(min(ready.messages.count, messages.count))
        readStates.removeFirst(min(ready.readStates.count, readStates.count))
        // The leader's own entries count toward a quorum once they are on its disk.
        if role == .leader && maybeCommit() { broadcastAppend() }
    }

    /// The host could not persist `ready` (its disk was full) and wrote none of it. Its
    /// messages go, as a network may lose them: what relied on the write (votes, appends
    /// acknowledged) must not leave, and what left before it the core sends again in its own
    /// time. Its read states go too (the host fails their reads). Its entries, hard state and
    /// snapshot stay unpersisted: the next `ready()` hands them out again, from the same
    /// index, so the log gets no hole and no entry twice.
    public mutating func abandon(_ ready: RaftReady) {
        messages.removeFirst(min(ready.messages.count, messages.count))
        readStates.removeFirst(min(ready.readStates.count, readStates.count))
    }

    private mutating func applyConfChange(_ change: RaftConfChange) {
        membership = membership.applying(change)
        guard role == .leader else { return }
        switch change.kind {
        case .addVoter, .addLearner:
            guard change.node != id else { break }
            if progress[change.node] == nil {
                var peer = RaftProgress(next: log.lastIndex + 1, isLearner: change.kind == .addLearner)
                peer.recentActive = true
                progress[change.node] = peer
                sendAppend(to: change.node)
            } else {
                progress[change.node]!.isLearner = change.kind == .addLearner
            }
        case .remove:
            progress[change.node] = nil
            if change.node == id {
                becomeFollower(term: term, leader: 0)  // a leader that removed itself steps down
                return
            }
        }
        // The quorum may be smaller now.
        if maybeCommit() { broadcastAppend() }
    }

    private var currentHardState: HardState { HardState(term: term, vote: vote, commit: log.committed) }

    // MARK: - Roles

    private var isPromotable: Bool { membership.voters.contains(id) && log.pendingSnapshot == nil }

    private var hasUnappliedConfChange: Bool { log.containsConfChange(from: log.applied + 1, through: log.committed) }

    private mutating func resetTimers() {
        electionElapsed = 0
        heartbeatElapsed = 0
        randomizedElectionTimeout = config.electionTicks + Int(random.next() % UInt64(config.electionTicks))
    }

    mutating func becomeFollower(term newTerm: UInt64, leader newLeader: UInt64) {
        precondition(newTerm >= term, "terms never go back")
        if newTerm != term {
            term = newTerm
            vote = 0
        }
        role = .follower
        leader = newLeader
        isQuiesced = false
        resetTimers()
        resetLeaderState()
    }

    private mutating func resetLeaderState() {
        votes = [:]
        progress = [:]
        pendingReads = []
        leadTransferee = 0
        uncommittedBytes = 0
    }

    private mutating func startElection(transfer: Bool) {
        // etcd's rule: a replica that has not applied a committed membership change (its host
        // holds committed entries back) does not campaign, since it would count votes by the
        // configuration before it.
        guard !hasUnappliedConfChange else {
            electionElapsed = 0
            return
        }
        if config.preVote && !transfer {
            role = .preCandidate
            leader = 0
            votes = [:]
            campaign(.preVote, transfer: false)
        } else {
            becomeCandidate()
            campaign(.vote, transfer: transfer)
        }
    }

    private mutating func becomeCandidate() {
        term += 1
        vote = id
        role = .candidate
        leader = 0
        resetTimers()
        resetLeaderState()
    }

    private mutating func campaign(_ kind: RaftMessage.Kind, transfer: Bool) {
        votes = [id: true]
        if tallyVotes() { return }
        let campaignTerm = kind == .preVote ? term + 1 : term
        for voter in membership.voters.sorted() where voter != id {
            var request = RaftMessage(kind: kind, from: id, to: voter, term: campaignTerm)
            request.index = log.lastIndex
            request.logTerm = log.lastTerm
            request.context = transfer ? Self.transferContext : 0
            send(request)
        }
    }

    /// Acts on the votes so far: returns true once the campaign is decided.
    private mutating func tallyVotes() -> Bool {
        let granted = membership.voters.filter { votes[$0] == true }.count
        let refused = membership.voters.filter { votes[$0] == false }.count
        if granted >= membership.quorum {
            if role == .preCandidate {
                becomeCandidate()
                campaign(.vote, transfer: false)
            } else {
                becomeLeader()
            }
            return true
        }
        if refused >= membership.quorum {
            becomeFollower(term: term, leader: 0)
            return true
        }
        return false
    }

    private mutating func becomeLeader() {
        precondition(role == .candidate, "only a candidate becomes leader")
        role = .leader
        leader = id
        leaseConfirmed = true
        resetTimers()
        resetLeaderState()
        for peer in membership.voters.union(membership.learners) where peer != id {
            var peerProgress = RaftProgress(next: log.lastIndex + 1, isLearner: membership.learners.contains(peer))
            peerProgress.recentActive = true
            progress[peer] = peerProgress
        }
        // No membership change until everything already in the log is applied.
        pendingConfIndex = log.lastIndex
        // An empty entry of the new term: committing it commits everything before it.
        log.append(RaftEntry(index: log.lastIndex + 1, term: term))
        broadcastAppend()
    }

    // MARK: - Votes

    private mutating func handleVoteRequest(_ request: RaftMessage) {
        let responseKind: RaftMessage.Kind = request.kind == .preVote ? .preVoteResponse : .voteResponse
        let canVote = vote == request.from || (vote == 0 && leader == 0) || (request.kind == .preVote && request.term > term)
        if canVote && log.isUpToDate(lastIndex: request.index, lastTerm: request.logTerm) {
            // A granted pre-vote answers in the term it was asked for.
            send(RaftMessage(kind: responseKind, from: id, to: request.from, term: request.term))
            if request.kind == .vote {
                vote = request.from
                electionElapsed = 0
            }
        } else {
            var refusal = RaftMessage(kind: responseKind, from: id, to: request.from, term: term)
            refusal.reject = true
            send(refusal)
        }
    }

    private mutating func stepCandidate(_ message: RaftMessage) {
        switch message.kind {
        case .append:
            becomeFollower(term: message.term, leader: message.from)
            handleAppend(message)
        case .heartbeat, .quiesce:
            becomeFollower(term: message.term, leader: message.from)
            handleHeartbeat(message)
        case .snapshot:
            becomeFollower(term: message.term, leader: message.from)
            handleSnapshot(message)
        case .preVoteResponse where role == .preCandidate, .voteResponse where role == .candidate:
            guard membership.voters.contains(message.from) else { return }
            votes[message.from] = !message.reject
            _ = tallyVotes()
        default:
            break
        }
    }

    // MARK: - Follower

    private mutating func stepFollower(_ message: RaftMessage) {
        switch message.kind {
        case .append:
            electionElapsed = 0
            leader = message.from
            handleAppend(message)
        case .heartbeat:
            electionElapsed = 0
            leader = message.from
            handleHeartbeat(message)
        case .quiesce:
            electionElapsed = 0
            leader = message.from
            handleHeartbeat(message)
            // Sleep only with exactly the leader's log, all of it committed.
            if log.lastIndex == message.commit && log.committed == message.commit { isQuiesced = true }
        case .snapshot:
            electionElapsed = 0
            leader = message.from
            handleSnapshot(message)
        case .timeoutNow:
            if isPromotable { startElection(transfer: true) }
        default:
            break
        }
    }

    private mutating func handleAppend(_ append: RaftMessage) {
        var response = RaftMessage(kind: .appendResponse, from: id, to: append.from, term: term)
        if append.index < log.committed {
            response.index = log.committed
        } else if log.matches(index: append.index, term: append.logTerm) {
            if holdsCommitted && append.index + UInt64(append.entries.count) > log.lastIndex {
                // As if the append were lost (no answer, or the leader would send it again
                // at once): the leader retries after a heartbeat. The commit index it
                // carries still counts up to where the logs match.
                log.commit(to: min(append.commit, append.index))
                appendsHeld += 1
                return
            }
            let last = log.merge(after: append.index, append.entries)
            log.commit(to: min(append.commit, last))
            response.index = last
        } else {
            response.reject = true
            response.index = append.index
            response.rejectHint = log.lastIndex
        }
        send(response)
    }

    private mutating func handleHeartbeat(_ heartbeat: RaftMessage) {
        // The leader sends at most what this replica matched, so the entries are here.
        log.commit(to: min(heartbeat.commit, log.lastIndex))
        var response = RaftMessage(kind: .heartbeatResponse, from: id, to: heartbeat.from, term: term)
        response.context = heartbeat.context
        send(response)
    }

    private mutating func handleSnapshot(_ message: RaftMessage) {
        guard let snapshot = message.snapshot else { return }
        var response = RaftMessage(kind: .appendResponse, from: id, to: message.from, term: term)
        if snapshot.index <= log.committed {
            response.index = log.committed
        } else if log.matches(index: snapshot.index, term: snapshot.term) {
            // The log already holds the snapshot's last entry: just commit up to it.
            log.commit(to: snapshot.index)
            response.index = snapshot.index
        } else {
            log.restore(snapshot)
            membership = snapshot.membership
            response.index = snapshot.index
        }
        send(response)
    }

    mutating func send(_ message: RaftMessage) {
        messages.append(message)
    }
}
