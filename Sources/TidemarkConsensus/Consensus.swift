import TidemarkIO

/// A node of the cluster, as a consensus group knows it.
public struct Peer: Hashable, Sendable {
    public var id: UInt64
    /// `host:port` of the node's internal RPC listener.
    public var address: String

    public init(id: UInt64, address: String) {
        self.id = id
        self.address = address
    }
}

/// How fresh a read must be.
public enum ReadConsistency: Sendable {
    /// Sees every write acknowledged before the read began (Raft: ReadIndex).
    case linearizable
    /// The leader's lease stands in for a quorum round (only with CheckQuorum).
    case leaseBased
    /// Whatever this replica has applied; may be stale.
    case weak
}

/// A write handed to a group. `data` is what the log keeps and other replicas apply;
/// `local` is the same command already decoded on the proposing node, so its own apply
/// need not decode it again (etcd's proposal context, in spirit).
public struct Proposal: Sendable {
    public var data: [UInt8]
    public var local: (any Sendable)?
    /// The state machine cannot refuse this entry (a write whose series all exist): a
    /// consensus may then acknowledge it once it is logged and durable, before it is applied.
    /// Standalone does, and its `read(_:consistency:)` waits until such entries are applied,
    /// so a read still sees every acknowledged write. Raft and multi-leader answer after the
    /// apply either way.
    public var refusalImpossible: Bool

    public init(data: [UInt8], local: (any Sendable)? = nil, refusalImpossible: Bool = false) {
        self.data = data
        self.local = local
        self.refusalImpossible = refusalImpossible
    }
}

/// A committed log entry, handed to the state machine in index order.
public struct CommittedEntry: Sendable {
    public var index: UInt64
    public var term: UInt64
    public var data: [UInt8]
    /// The proposal's decoded form when it was proposed on this node and this process.
    public var local: (any Sendable)?

    public init(index: UInt64, term: UInt64, data: [UInt8], local: (any Sendable)? = nil) {
        precondition(index > 0, "log indexes start at 1")
        self.index = index
        self.term = term
        self.data = data
        self.local = local
    }
}

/// A point-in-time image of a state machine: everything applied through `index`.
public struct StateSnapshot: Sendable, Equatable {
    public var index: UInt64
    public var term: UInt64
    public var data: [UInt8]
    /// Where the image is when it came from another replica in pieces and waits on disk
    /// instead of in `data` (only for state machines that keep installed images).
    public var file: String?

    public init(index: UInt64, term: UInt64, data: [UInt8], file: String? = nil) {
        self.index = index
        self.term = term
        self.data = data
        self.file = file
    }
}

/// A state machine's image, read in order piece by piece (a region's need not fit in memory).
public protocol ImageReader: AnyObject {
    /// The whole image's size.
    var byteCount: Int { get }
    /// The next at most `max` bytes; empty at the end.
    func read(max: Int) throws -> [UInt8]
    /// Lets go of what the image holds on to (a region's links to its segments).
    func close()
}

/// An image already in memory.
public final class BytesImageReader: ImageReader {
    private let bytes: [UInt8]
    private var offset = 0

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var byteCount: Int { bytes.count }

    public func read(max: Int) -> [UInt8] {
        let end = min(bytes.count, offset + max)
        defer { offset = end }
        return Array(bytes[offset..<end])
    }

    public func close() {}
}

/// What a group replicates into: applies committed entries, takes and restores snapshots.
public protocol StateMachine: AnyObject, Sendable {
    /// Applies one committed entry. Entries come in index order, each once per process;
    /// after a restart the group replays its log, so applying an index again must change
    /// nothing. A thrown error is a deterministic refusal: every replica refuses the same
    /// entry, and the proposer's write fails with it.
    func apply(_ entry: CommittedEntry) throws
    /// Everything applied so far, for a replica that fell behind the log.
    func snapshot() throws -> StateSnapshot
    /// Replaces the state with `snapshot`.
    func restore(_ snapshot: StateSnapshot) throws
    /// What a replica that fell behind the log is sent to `restore` the snapshot `snapshot`
    /// names: its data, unless the state machine keeps its snapshots small in the log and
    /// makes the image only when one is sent (a region: its segment files hold the state).
    /// Throws, having read no more than it must, when the image would pass `bytesMax`.
    func openImage(for snapshot: StateSnapshot, bytesMax: Int) throws -> any ImageReader
    /// Whether `restore` makes what an image installs durable by itself (a region writes its
    /// segment files): the group's log then drops the image once it is installed, instead of
    /// holding it in memory and rewriting it into every checkpoint. Such a state machine's
    /// `restore` also takes an image that waits in a file (`StateSnapshot.file`), as one
    /// that came in pieces does.
    var keepsInstalledImages: Bool { get }
    /// Called once the group's log has been replayed: from then on the state machine tells
    /// the log what it may drop.
    func attach(logRetention: LogRetention)
    /// The highest log index whose effects the state machine keeps in its own files (a
    /// region's segments and tombstones), 0 for none: it takes an entry at or below it for
    /// one applied before. A standalone group whose log ends before it (`--repair` cut
    /// records already flushed) numbers new entries after it, so no index names two entries.
    var persistedIndexMax: UInt64 { get }
    /// Whether entries it applied are held only in memory (a region's memtable) and not yet in
    /// its own files: a log shared with other groups keeps them until it says otherwise.
    var holdsUnflushedEntries: Bool { get }
}

extension StateMachine {
    public func openImage(for snapshot: StateSnapshot, bytesMax: Int) throws -> any ImageReader {
        guard snapshot.data.count <= bytesMax else {
            throw ConsensusError.refused("an image of \(snapshot.data.count) bytes is more than the \(bytesMax) one may carry")
        }
        return BytesImageReader(snapshot.data)
    }
    public var keepsInstalledImages: Bool { false }
    public var persistedIndexMax: UInt64 { 0 }
    public var holdsUnflushedEntries: Bool { true }
}

/// Why a consensus operation failed.
public enum ConsensusError: Error, Sendable, Equatable, CustomStringConvertible {
    case noSuchGroup(GroupID)
    case groupExists(GroupID)
    /// This replica is not the leader; the hint names the leader if known.
    case notLeader(GroupID, leaderHint: UInt64?)
    /// The operation does not exist for this algorithm (say, adding a peer to a standalone group).
    case unsupported(String)
    /// The state machine refused the entry.
    case refused(String)
    /// The group cannot take this now (a leadership transfer, a membership change, a full log).
    case busy(String)
    /// The log could not be written or synced; nothing more is acknowledged.
    case io(String)
    case stopped

    /// Whether the same request may succeed later or elsewhere (no leader yet, a transfer,
    /// a full log): HTTP 503 rather than 500.
    public var isRetryable: Bool {
        switch self {
        case .notLeader, .busy: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .noSuchGroup(let group): "no consensus group \(group) on this node"
        case .groupExists(let group): "consensus group \(group) exists already"
        case .notLeader(let group, let hint): "not the leader of \(group)" + (hint.map { "; the leader is node \($0)" } ?? "")
        case .unsupported(let what): what
        case .refused(let why): why
        case .busy(let why): why
        case .io(let why): why
        case .stopped: "consensus is stopped"
        }
    }
}

/// One interface, several algorithms (DESIGN.md section 5): standalone, Raft, multi-leader.
public protocol Consensus: AnyObject, Sendable {
    /// This node's ID in its groups.
    var nodeID: UInt64 { get }
    /// Creates (or, after a restart, reopens and replays) the group with these replicas.
    func createGroup(_ group: GroupID, peers: [Peer], stateMachine: StateMachine) throws
    /// Removes this node's replica of the group and its log.
    func deleteGroup(_ group: GroupID) throws
    /// Proposes a write; `completion` runs once it is committed, applied on this node and
    /// durable as the group's sync policy says, or with why it is not.
    func write(_ group: GroupID, _ proposal: Proposal, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void)
    /// Runs `completion` once this replica may serve a read of the given freshness, with
    /// the index its state machine has applied.
    func read(_ group: GroupID, consistency: ReadConsistency, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void)
    func addPeer(_ group: GroupID, _ peer: Peer) throws
    func removePeer(_ group: GroupID, _ peerID: UInt64) throws
    func transferLeader(_ group: GroupID, to peerID: UInt64) throws
    /// The group's leader as this node knows it.
    func leader(of group: GroupID) -> UInt64?
    /// Snapshots the state machine and compacts the log up to it; returns the snapshot's index.
    func snapshot(_ group: GroupID) throws -> UInt64
    /// Closes every group's log; later calls fail with `.stopped`.
    func close()
    /// Proposes writes to several groups at once: as many `write`s, but a consensus whose
    /// groups share a log (standalone) makes them durable together.
    func write(batch writes: [GroupWrite])
}

/// One write of a `write(batch:)`.
public struct GroupWrite: Sendable {
    public var group: GroupID
    public var proposal: Proposal
    public var completion: @Sendable (Result<UInt64, ConsensusError>) -> Void

    public init(group: GroupID, proposal: Proposal, completion: @escaping @Sendable (Result<UInt64, ConsensusError>) -> Void) {
        self.group = group
        self.proposal = proposal
        self.completion = completion
    }
}

extension Consensus {
    public func write(batch writes: [GroupWrite]) {
        for write in writes { self.write(write.group, write.proposal, completion: write.completion) }
    }
}
