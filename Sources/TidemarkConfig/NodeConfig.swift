import TidemarkCore
import TidemarkStorage

/// Everything a node is configured with; every field has a default (DESIGN.md section 8).
public struct NodeConfig: Sendable {
    public var nodeName = "node1"
    public var dataDir = "./data"
    public var clusterName = "tidemark"
    public var http = HTTPSettings()
    /// Failed-login limits and the auth stage (`auth:`).
    public var auth = AuthSettings()
    /// Native client protocol address; taken into use by the Thrift service.
    public var nativeListen = ListenAddress(host: "127.0.0.1", port: 6667)
    /// Internal RPC address; taken into use by the cluster transport.
    public var internalListen = ListenAddress(host: "127.0.0.1", port: 10730)
    /// Internal addresses of the meta group (1, 3 or 5 nodes); empty means a single node. A
    /// member's ID is its position here, from 1; a node not listed joins through them.
    public var metaPeers: [ListenAddress] = []
    /// Signs internal RPC frames; required with `meta_peers`.
    public var clusterSecret: String?
    /// How the nodes of `meta_peers` replicate the data region.
    public var dataConsensus = DataConsensusKind.raft
    /// The Raft clock: one tick every `raftTickMs`; an election after 10–20 ticks without a leader.
    public var raftTickMs = 100
    public var raftElectionTicks = 10
    /// A node whose link to the meta leader has been down this long is Unknown (SHOW DATANODES).
    public var nodeUnknownAfterMs = 10_000
    /// Settings fixed when the cluster is made, kept by its meta group and checked at every
    /// start (the time partition's width is `storage.partitionInterval`, set by
    /// `time_partition_interval_ms`).
    public var fixed = FixedSettings()
    /// Log bytes a Raft leader keeps for a lagging follower before compacting them away
    /// (the follower then catches up from a region image).
    public var raftCatchUpBytesMax = 64 << 20
    /// Committed entry bytes waiting for the apply stage past which writes answer 503.
    public var raftApplyBacklogBytesMax = 64 << 20
    /// A region image travels in pieces of this many bytes, a few at a time; a follower puts
    /// them together in a file under `<data_dir>/raft/images`.
    public var raftSnapshotChunkBytes = 1 << 20
    /// The largest region image a leader sends (a larger one is not, and the follower stays behind).
    public var raftSnapshotBytesMax = 1 << 40

    /// This node's ID in the cluster: a meta member's is its 1-based place in `meta_peers`;
    /// a data-only node's the one the meta group gave it when it joined (`joinedNodeID`).
    public var nodeID: UInt64? {
        metaPeers.firstIndex(of: internalListen).map { UInt64($0 + 1) } ?? joinedNodeID
    }
    /// Whether this node is one of `meta_peers` (else, in a cluster, a data-only node).
    public var isMetaMember: Bool { metaPeers.contains(internalListen) }
    /// The ID a data-only node was given by the meta group (kept in `<data_dir>/node_id`).
    public var joinedNodeID: UInt64?
    /// The storage engine of each region; `wal_sync` sets `storage.walSync`.
    public var storage = EngineOptions()
    public var query = QueryLimits()
    /// How a coordinator routes writes and fragments to other nodes.
    public var route = RouteSettings()
    public var logLevel = LogLevelName.info
    /// Bound on a graceful stop (SIGTERM/SIGINT): stop accepting, drain, sync, exit.
    public var shutdownTimeoutMs = 10_000
    /// Sizing of every stage, from `stages.yaml` and overrides.
    public var stages: [StageName: StageSettings]

    public init(stages: [StageName: StageSettings]) {
        precondition(Set(stages.keys) == Set(StageName.allCases), "every stage needs settings")
        self.stages = stages
    }
}

/// The cluster-wide settings a node's config names and the meta group keeps: fixed once the
/// cluster is made (DESIGN.md section 3; IoTDB's names and defaults).
public struct FixedSettings: Sendable, Equatable {
    /// `series_slot_num`: slots devices hash into.
    public var seriesSlotNum = 1000
    public var schemaReplicationFactor = 1
    public var dataReplicationFactor = 1
    /// `schema_consensus`; nil: Raft in a cluster, standalone alone.
    public var schemaConsensus: ReplicationKind?
    /// 0: from the data nodes' cores (IoTDB's AUTO).
    public var dataRegionGroupsPerDatabase = 0
    public var schemaRegionGroupsPerDatabase = 1

    public init() {}
}

/// swift-log's levels, named as in the config file.
/// The consensus of data regions (DESIGN.md section 5): Raft (a leader orders every write)
/// or multi-leader (every replica takes writes and ships them to the others).
public enum DataConsensusKind: String, Sendable, CaseIterable {
    case raft
    case multiLeader = "multi_leader"
}

public enum LogLevelName: String, Sendable, CaseIterable {
    case trace, debug, info, notice, warning, error, critical
}

/// `route:` in the node config: forward-or-reject between nodes (DESIGN.md section 3).
public struct RouteSettings: Sendable, Equatable {
    /// Times a coordinator sends a part again elsewhere (a stale table, a dead replica).
    public var retriesMax = 3
    /// How long a write's part or a query's fragment may take, retries included.
    public var timeoutMs = 10_000

    public init() {}
}
