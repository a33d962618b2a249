import TidemarkIO
import TidemarkCore
import Logging
import TidemarkConsensus
import TidemarkStorage

/// A region replica this node holds, behind its consensus group: an engine directory for
/// segments and schema, and the group's log (`<data_dir>/consensus/<group>` standalone),
/// which is the region's write-ahead record.
///
/// Group `data-0` at `<data_dir>/regions/0` is the one region of a data directory from before
/// the partition table, and of a multi-node cluster until writes are forwarded between nodes;
/// a one-node cluster's regions are the table's groups, at `<data_dir>/regions/<group>`.
public final class LocalRegion: Sendable {
    public static let group = GroupID(kind: .data, number: 0)
    public let group: GroupID
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
    public convenience init(standalone dataDir: String, options: EngineOptions, logger: Logger, health: StorageHealth?,
                     applyOn: @escaping @Sendable (@escaping @Sendable () -> Void) -> Bool) throws {
        try self.init(dataDir: dataDir, options: options, logger: logger,
                      consensus: StandaloneConsensus(directory: dataDir + "/consensus", syncPolicy: options.walSync, logger: logger,
                                                     health: health, applyOn: applyOn),
                      peers: [], health: health)
    }

    /// Opens the region as a replica of a group `consensus` runs with `peers`.
    /// `hints` names the leader in a refused change. `users`, when given, applies the group's
    /// user entries (the node's users live in the replicated state).
    public convenience init(dataDir: String, options: EngineOptions, logger: Logger, consensus: Consensus, peers: [Peer],
                     hints: LeaderHints = .standalone, health: StorageHealth? = nil) throws {
        try self.init(group: Self.group, directory: dataDir + "/regions/0", database: nil, options: options, logger: logger,
                      consensus: consensus, peers: peers, hints: hints, health: health)
    }

    /// Opens the replica of `group` (a region of `database`, nil for any) in `directory`, and
    /// replays the group's log into it. With `sharedLog` (a standalone region of the table)
    /// the group logs in the node's shared log, replayed with the others' once all are open
    /// (`StandaloneConsensus.replaySharedLog`).
    public init(group: GroupID, directory: String, database: String?, options: EngineOptions, logger: Logger, consensus: Consensus,
         peers: [Peer], hints: LeaderHints, health: StorageHealth?, sharedLog: Bool = false) throws {
        self.group = group
        engine = try StorageEngine(directory: directory, options: options, logger: logger, log: .consensus, health: health, database: database)
        self.consensus = consensus
        do {
            if sharedLog, let standalone = consensus as? StandaloneConsensus {
                try standalone.createSharedLogGroup(group, stateMachine: RegionStateMachine(engine: engine))
            } else if peers.isEmpty || peers.contains(where: { $0.id == consensus.nodeID }) {
                try consensus.createGroup(group, peers: peers, stateMachine: RegionStateMachine(engine: engine))
            }
        } catch {
            engine.close()
            throw error
        }
        // Schema statements and deletes are entries of the group, applied on every replica.
        engine.routeChanges { record, outcome in
            try consensus.proposeAndWait(group, record, local: outcome, hints: hints)
        }
    }

    /// Every region in a stopped node's data directory, each replayed from its log, sharing
    /// one standalone consensus (tools and tests read what a node stored this way).
    public static func openAll(dataDir: String, options: EngineOptions, logger: Logger) throws -> [LocalRegion] {
        let consensus = StandaloneConsensus(directory: dataDir + "/consensus", syncPolicy: options.walSync, logger: logger)
        var regions: [LocalRegion] = []
        do {
            for name in try FileIO.list(dataDir + "/regions").sorted() {
                let group: GroupID
                if name == "0" {
                    group = Self.group
                } else if name.hasPrefix("data-"), let number = UInt32(name.dropFirst(5)) {
                    group = GroupID(kind: .data, number: number)
                } else {
                    continue
                }
                regions.append(try LocalRegion(group: group, directory: dataDir + "/regions/" + name, database: nil, options: options,
                                               logger: logger, consensus: consensus, peers: [], hints: .standalone, health: nil,
                                               sharedLog: group != Self.group))
            }
            try consensus.replaySharedLog()
        } catch {
            for region in regions { region.close() }
            throw error
        }
        return regions
    }

    /// Writes `points` through the group and waits until they are durable (tools and tests;
    /// the node's append stage proposes without waiting).
    public func write(_ points: [PointWrite]) throws {
        guard let prepared = try engine.prepareWrite(points) else { return }
        try consensus.proposeAndWait(group, prepared.record, local: prepared)
    }

    /// Syncs and closes the log, then the region.
    public func close() {
        consensus.close()
        engine.close()
    }
}
