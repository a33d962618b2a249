import TidemarkConsensus
import TidemarkCore
import TidemarkNet

/// What `/cluster` and `/metrics` say of a node in a cluster.
struct ClusterStatus: Sendable {
    struct Group: Sendable {
        var name: String
        var role: String
        var term: UInt64
        var leader: UInt64
        var applied: UInt64
        var quiesced: Bool
        /// Raft: the last index compacted out of the log (0 for multi-leader).
        var compacted: UInt64 = 0
        /// Multi-leader: own entries some peer still lacks; nil for Raft.
        var retainedEntries: Int?
    }

    var nodeID: UInt64
    var peers: [Peer]
    /// Each node's client address (`HOST:PORT` of its HTTP edge) by ID, as far as known.
    var clientAddresses: [UInt64: String]
    var groups: [Group]
    var raft: RaftConsensus.Counters?
    var framesSent: Int
    var framesReceived: Int
    var framesDropped: Int
    var connectionsRefused: Int
    var connectionsDialed: Int
    var framesRefused: [String: Int]

    static func read(_ wiring: ClusterWiring, nodeID: UInt64) -> ClusterStatus {
        let metrics = wiring.transport.metrics
        var groups = (wiring.raft?.groupStatuses() ?? []).map { status in
            Group(name: "\(status.group)", role: "\(status.role)", term: status.term, leader: status.leader, applied: status.applied,
                  quiesced: status.quiesced, compacted: status.compacted)
        }
        // Every replica of a multi-leader group leads it.
        groups += (wiring.multiLeader?.groupStatuses() ?? []).map { status in
            Group(name: "\(status.group)", role: "leader", term: 0, leader: nodeID, applied: status.applied, quiesced: false,
                  retainedEntries: status.retainedEntries)
        }
        return ClusterStatus(
            nodeID: nodeID, peers: wiring.peers,
            clientAddresses: Dictionary(uniqueKeysWithValues: wiring.peers.compactMap { peer in
                wiring.transport.clientAddress(of: peer.id).map { (peer.id, $0) }
            }),
            groups: groups,
            raft: wiring.raft?.counters,
            framesSent: metrics.framesSent.load(ordering: .relaxed), framesReceived: metrics.framesReceived.load(ordering: .relaxed),
            framesDropped: metrics.framesDropped.load(ordering: .relaxed),
            connectionsRefused: metrics.connectionsRefused.load(ordering: .relaxed),
            connectionsDialed: metrics.connectionsDialed.load(ordering: .relaxed),
            framesRefused: metrics.refusedByLabel)
    }

    /// `GET /cluster`: nodes (internal and client addresses; a client address is null until
    /// the node said hello), groups and their leaders (the partition table comes with the meta group).
    var json: String {
        let peerList = peers.map { peer in
            "{\"id\":\(peer.id),\"internal\":\(jsonQuoted(peer.address)),\"client\":\(clientAddresses[peer.id].map(jsonQuoted) ?? "null")}"
        }.joined(separator: ",")
        let groupList = groups.map {
            "{\"group\":\(jsonQuoted($0.name)),\"role\":\(jsonQuoted($0.role)),\"term\":\($0.term),\"leader\":\($0.leader),\"applied\":\($0.applied),\"quiesced\":\($0.quiesced),\"compacted\":\($0.compacted)"
                + ($0.retainedEntries.map { ",\"retained_entries\":\($0)" } ?? "") + "}"
        }.joined(separator: ",")
        return "{\"node_id\":\(nodeID),\"nodes\":[\(peerList)],\"groups\":[\(groupList)],\"partition_table_version\":0}"
    }
}
