/// One entry of a Raft log.
public struct RaftEntry: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        /// A client command for the state machine (empty for a new leader's no-op).
        case normal = 0
        /// A membership change (`RaftConfChange` encoded).
        case confChange = 1
    }

    public var index: UInt64
    public var term: UInt64
    public var kind: Kind
    public var data: [UInt8]

    public init(index: UInt64, term: UInt64, kind: Kind = .normal, data: [UInt8] = []) {
        self.index = index
        self.term = term
        self.kind = kind
        self.data = data
    }

    /// Bytes counted against message and uncommitted-log limits.
    var sizeBytes: Int { data.count + 24 }
}

/// What must be on disk before a node may answer votes or acknowledge appends.
public struct HardState: Sendable, Equatable {
    public var term: UInt64 = 0
    /// The candidate voted for in `term`; 0 for none.
    public var vote: UInt64 = 0
    public var commit: UInt64 = 0

    public init(term: UInt64 = 0, vote: UInt64 = 0, commit: UInt64 = 0) {
        self.term = term
        self.vote = vote
        self.commit = commit
    }
}

/// The members of a group: voters decide, learners only receive the log.
public struct RaftMembership: Sendable, Equatable {
    public var voters: Set<UInt64>
    public var learners: Set<UInt64> = []

    public init(voters: Set<UInt64>, learners: Set<UInt64> = []) {
        precondition(voters.isDisjoint(with: learners), "a node is a voter or a learner, not both")
        self.voters = voters
        self.learners = learners
    }

    var quorum: Int { voters.count / 2 + 1 }

    /// The membership after `change`.
    public func applying(_ change: RaftConfChange) -> RaftMembership {
        var next = self
        switch change.kind {
        case .addVoter:
            next.learners.remove(change.node)
            next.voters.insert(change.node)
        case .addLearner:
            next.voters.remove(change.node)
            next.learners.insert(change.node)
        case .remove:
            next.voters.remove(change.node)
            next.learners.remove(change.node)
        }
        return next
    }
}

/// One membership change: a voter, a learner (receives the log, does not vote), or a removal.
/// Changes go one at a time (Raft's single-server changes).
public struct RaftConfChange: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case addVoter = 0, addLearner = 1, remove = 2
    }

    public var kind: Kind
    public var node: UInt64

    public init(_ kind: Kind, node: UInt64) {
        precondition(node != 0, "0 means no node")
        self.kind = kind
        self.node = node
    }

    /// `u8 kind | u64 node` (little-endian).
    public var encoded: [UInt8] { [kind.rawValue] + withUnsafeBytes(of: node.littleEndian, Array.init) }

    public init?(decoding bytes: [UInt8]) {
        guard bytes.count == 9, let kind = Kind(rawValue: bytes[0]) else { return nil }
        let node = bytes[1...].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard node != 0 else { return nil }
        self.init(kind, node: node)
    }
}

/// A compacted prefix of the log: the state machine's image through `index`.
public struct RaftSnapshot: Sendable, Equatable {
    public var index: UInt64
    public var term: UInt64
    public var membership: RaftMembership
    public var data: [UInt8]

    public init(index: UInt64, term: UInt64, membership: RaftMembership, data: [UInt8]) {
        self.index = index
        self.term = term
        self.membership = membership
        self.data = data
    }
}

/// A message between the replicas of one group.
public struct RaftMessage: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case preVote, preVoteResponse, vote, voteResponse
        case append, appendResponse, heartbeat, heartbeatResponse
        case snapshot, timeoutNow
        /// A heartbeat after which the follower stops its clock: the group is idle and every
        /// replica has every entry (see `RaftCore.isQuiesced`).
        case quiesce
    }

    public var kind: Kind
    public var from: UInt64
    public var to: UInt64
    public var term: UInt64
    /// Append: the term and index of the entry before `entries`. Vote: the candidate's last
    /// entry. Append response: the highest index matched (or, rejected, the index refused).
    public var logTerm: UInt64 = 0
    public var index: UInt64 = 0
    public var entries: [RaftEntry] = []
    public var commit: UInt64 = 0
    public var reject = false
    /// A rejecting follower's last index, so the leader backs up in one step.
    public var rejectHint: UInt64 = 0
    public var snapshot: RaftSnapshot?
    /// Heartbeats carry the read request they confirm (0 for none).
    public var context: UInt64 = 0

    public init(kind: Kind, from: UInt64, to: UInt64, term: UInt64) {
        self.kind = kind
        self.from = from
        self.to = to
        self.term = term
    }
}

/// A linearizable read the leader confirmed: once `index` is applied, the read may run.
public struct ReadState: Sendable, Equatable {
    public var requestID: UInt64
    public var index: UInt64
}

/// What the host must do, in this order: persist `hardState`, `snapshot` and `entries`
/// (one fsync), then send `messages`, then apply `snapshot` and `committed` to the state
/// machine, answer `readStates` once applied, and call `advance`.
public struct RaftReady: Sendable, Equatable {
    public var hardState: HardState?
    public var snapshot: RaftSnapshot?
    /// New or replaced entries; an entry at an index already on disk replaces it and all after it.
    public var entries: [RaftEntry] = []
    public var committed: [RaftEntry] = []
    public var messages: [RaftMessage] = []
    public var readStates: [ReadState] = []

    public init() {}

    public var isEmpty: Bool {
        hardState == nil && snapshot == nil && entries.isEmpty && committed.isEmpty && messages.isEmpty && readStates.isEmpty
    }
}

/// How one replica behaves (ticks are the host's clock; etcd's defaults).
public struct RaftConfig: Sendable {
    public var id: UInt64
    /// Ticks without a leader before an election; the actual timeout is random in [t, 2t).
    public var electionTicks = 10
    public var heartbeatTicks = 1
    /// Appends in flight to one follower.
    public var inflightMax = 256
    /// Entry bytes in one append message.
    public var messageBytesMax = 1 << 20
    /// Heartbeat answers from a follower a snapshot was sent to before the leader takes it
    /// as lost and sends it again (a resend carries the whole state-machine image).
    public var snapshotRetryHeartbeats = 20
    /// Bytes of proposals not yet committed; past it proposals are refused.
    public var uncommittedBytesMax = 64 << 20
    public var preVote = true
    public var checkQuorum = true
    /// Idle groups stop ticking and heartbeating until something happens (CockroachDB's
    /// quiescence); the host then must call `peerDown` when it loses a peer.
    public var quiesce = false
    /// Seed of the election-timeout jitter (inject per replica; the simulator controls it).
    public var seed: UInt64

    public init(id: UInt64, seed: UInt64) {
        precondition(id != 0, "0 means no node")
        self.id = id
        self.seed = seed
    }
}

/// Why a proposal, read or transfer was refused.
public enum RaftError: Error, Sendable, Equatable {
    case notLeader(leaderHint: UInt64?)
    case transferring
    case tooManyUncommittedBytes
    /// A membership change is not applied yet, or this leader has not committed in its term.
    case confChangePending
    /// A learner becomes a voter only once its log has caught up with the commit index.
    case learnerBehind
    case invalidConfChange(String)
}

/// SplitMix64: the core's only source of randomness, seeded from outside.
struct SplitMix64: Sendable {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
