/// The stages of a Tidemark node (DESIGN.md section 4), declared in one table.
///
/// The order of the cases is the order work flows through a node; shutdown
/// drains stages in this order so nothing is handed to a stage already stopped.
public enum StageName: String, CaseIterable, Sendable {
    case decode
    case route
    case append
    case apply
    case query
    case flush
    case handoff

    /// What the stage does, as shown by `tidemark stages` and in the docs.
    public var summary: String {
        switch self {
        case .decode: "bytes from the edge into requests (HTTP, line protocol, SQL, RPC frames)"
        case .route: "partition lookup, split, forward-or-reject"
        case .append: "consensus: append to the log, replicate, wait for quorum"
        case .apply: "apply committed entries to schema and memtables"
        case .query: "execute query fragments and merge results"
        case .flush: "seal memtables into compressed segment files"
        case .handoff: "ship sealed segments and region replicas between nodes"
        }
    }
}
