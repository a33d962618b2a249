import TidemarkIO
import TidemarkCore
import Logging
import TidemarkConsensus
import TidemarkStorage

/// The node's one data region behind its consensus group (standalone until the node joins
/// a cluster): `<data_dir>/regions/0` for segments and schema, `<data_dir>/consensus/data-0`
/// for the group's log, which is the region's write-ahead record.
public final class LocalRegion: Sendable {
    public static let group = GroupID(kind: .data, number: 0)
    public let engine: StorageEngine
    public let consensus: Consensus

    /// Opens the region, standalone, and replays the group's log into it. Appended entries
    /// are applied through `applyOn` (the node's apply stage; by default on the writing thread).
    /// `health` hears of failed and successful log writes (the node's disk-full state).
    public convenience init(dataDir: String, options: EngineOptions, logger: Logger, health: StorageHealth? = nil,
                            applyOn: @escaping @Sendable (@escaping @Sendable () -> Void) -> Bool = { $0(); return true }) throws {
        try self.init(standalone: dataDir, options: options, logger: logger, health: health, applyOn: applyOn)
    }

    /// The standalone region of a node whose users live in its log too.
    convenience init(standalone dataDir: String, options: EngineOptions, logger: Logger, health: StorageHealth?,
                     applyOn: @escaping @Sendable (@escaping @Sendable () -> Void) -> Bool) throws {
        try self.init(dataDir: dataDir, options: options, logger: logger,
                      consensus: StandaloneConsensus(directory: dataDir + "/consensus", syncPolicy: options.walSync, logger: logger,
                                                     health: health, applyOn: applyOn),
                      peers: [], health: health)
    }

    /// Opens the region as a replica of a group `consensus` runs with `peers`.
    /// `hints` names the leader in a refused change. `users`, when given, applies the group's
    /// user entries (the node's users live in the replicated state).
    init(dataDir: String, options: EngineOptions, logger: Logger, consensus: Consensus, peers: [Peer],
         hints: LeaderHints = .standalone, health: StorageHealth? = nil) throws {
        engine = try StorageEngine(directory: dataDir + "/regions/0", options: options, logger: logger, log: .consensus, health: health)
        self.consensus = consensus
        do {
            // A data-only node holds no replica of it (`Dispatcher.noData` answers for it).
            if peers.isEmpty || peers.contains(where: { $0.id == consensus.nodeID }) {
                try consensus.createGroup(Self.group, peers: peers, stateMachine: RegionStateMachine(engine: engine))
            }
        } catch {
            engine.close()
            throw error
        }
        // Schema statements and deletes are entries of the group, applied on every replica.
        engine.routeChanges { record, outcome in
            try consensus.proposeAndWait(Self.group, record, local: outcome, hints: hints)
        }
    }

    /// Writes `points` through the group and waits until they are durable (tools and tests;
    /// the node's append stage proposes without waiting).
    public func write(_ points: [PointWrite]) throws {
        guard let prepared = try engine.prepareWrite(points) else { return }
        try consensus.proposeAndWait(Self.group, prepared.record, local: prepared)
    }

    /// Syncs and closes the log, then the region.
    public func close() {
        consensus.close()
        engine.close()
    }
}
