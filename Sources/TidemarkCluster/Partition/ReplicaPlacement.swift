/// Chooses the nodes of a new region group's replicas by IoTDB's greedy copy-set rule: each
/// replica goes, in turn, to the candidate that holds the fewest regions, then the fewest of
/// the same database, then shares the fewest groups with the replicas chosen so far, then has
/// the smallest ID. Spreading pairs of nodes over many groups keeps the scatter width wide (a
/// dead node's regions are rebuilt from many peers), and two replicas of one group never share
/// a node. Pure: the counters are the meta state's groups, kept up to date as groups come and go.
public struct ReplicaPlacement: Sendable, Equatable {
    /// Two nodes, smaller first.
    private struct Pair: Hashable, Sendable {
        let low: NodeID
        let high: NodeID
        init(_ a: NodeID, _ b: NodeID) { (low, high) = a < b ? (a, b) : (b, a) }
    }

    private var regionsByNode: [NodeID: Int] = [:]
    private var regionsByDatabase: [String: [NodeID: Int]] = [:]
    private var groupsShared: [Pair: Int] = [:]

    public init() {}

    /// Regions (replicas of any group) on `node`.
    public func regions(on node: NodeID) -> Int { regionsByNode[node] ?? 0 }

    /// Counts a group's replicas.
    public mutating func add(_ replicas: [NodeID], database: String) { count(replicas, database: database, by: 1) }

    /// Stops counting a group's replicas (its database dropped, a replica moved).
    public mutating func remove(_ replicas: [NodeID], database: String) { count(replicas, database: database, by: -1) }

    /// `factor` distinct nodes of `candidates` for a new group of `database`, in the order
    /// chosen; nil when there are fewer candidates than that.
    public func choose(_ factor: Int, database: String, among candidates: [NodeID]) -> [NodeID]? {
        precondition(factor > 0, "a group has at least one replica")
        let unique = Array(Set(candidates))
        guard unique.count >= factor else { return nil }
        let sameDatabase = regionsByDatabase[database] ?? [:]
        var chosen: [NodeID] = []
        for _ in 0..<factor {
            var best: (key: (Int, Int, Int, NodeID), node: NodeID)?
            for node in unique where !chosen.contains(node) {
                let shared = chosen.reduce(0) { $0 + (groupsShared[Pair($1, node)] ?? 0) }
                let key = (regionsByNode[node] ?? 0, sameDatabase[node] ?? 0, shared, node)
                if best == nil || key < best!.key { best = (key, node) }
            }
            chosen.append(best!.node)
        }
        return chosen
    }

    private mutating func count(_ replicas: [NodeID], database: String, by delta: Int) {
        precondition(Set(replicas).count == replicas.count, "a group's replicas are on distinct nodes: \(replicas)")
        // A counter that reaches zero is removed, so equal groups make equal placements.
        func bump<Key: Hashable>(_ counts: inout [Key: Int], _ key: Key) {
            let value = counts[key, default: 0] + delta
            precondition(value >= 0, "a placement counter went below zero")
            counts[key] = value == 0 ? nil : value
        }
        var sameDatabase = regionsByDatabase[database] ?? [:]
        for (position, node) in replicas.enumerated() {
            bump(&regionsByNode, node)
            bump(&sameDatabase, node)
            for other in replicas[(position + 1)...] { bump(&groupsShared, Pair(node, other)) }
        }
        regionsByDatabase[database] = sameDatabase.isEmpty ? nil : sameDatabase
    }
}
