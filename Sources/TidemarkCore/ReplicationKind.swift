/// How a kind of region group replicates.
public enum ReplicationKind: String, Sendable, Equatable, CaseIterable {
    /// One copy, no network (only with a replication factor of 1).
    case standalone
    case raft
    /// IoTDB's IoTConsensus: every replica takes writes and ships them to the others.
    case multiLeader = "multi_leader"
}
