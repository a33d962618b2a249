import Foundation
import Logging
import Synchronization
import TidemarkConsensus
import TidemarkCore
import TidemarkIO
import TidemarkQuery
import TidemarkStorage

/// The region replicas this node holds (DESIGN.md section 3: "start the region replicas this
/// node holds"), and where a write's rows go among them.
///
/// In a one-node cluster the partition table places every row: the node holds every data
/// region group the meta group makes, each a standalone group with its own engine under
/// `<data_dir>/regions/<group>`, opened when the meta state names it (at start, before the
/// ports open, and on every change after) and removed when its database is dropped. A data
/// directory from before the table keeps its region (`data-0`) beside them: read, deleted
/// from and dropped with the rest, never written again.
///
/// In a multi-node cluster every node opens the replicas of the groups the table places on
/// it, each a group of the cluster's data consensus over the nodes holding it (they elect
/// leaders, report roles and sizes in heartbeats); the coordinator sends the rows and the
/// fragments of groups it does not lead to the nodes that do (`DataPlane`, `ClusterStore`).
public final class RegionSet: Sendable {
    /// Whether the groups run over several nodes (rather than standalone, on the shared log).
    public let isCluster: Bool
    private let hints: LeaderHints
    public let consensus: Consensus
    private let dataDir: String
    private let options: EngineOptions
    private let logger: Logger
    private let health: StorageHealth?
    private let nodeID: NodeID
    private let legacy: LocalRegion?
    private let held = Mutex<[GroupID: LocalRegion]>([:])
    /// Serialises `sync` (the meta group's applying thread, and the start).
    private let syncLock = NSLock()
    /// Runs on every region's engine once, when it opens (the flush stage's wiring).
    private let onOpen = Mutex<(@Sendable (StorageEngine) -> Void)?>(nil)

    /// The set of a one-node cluster: `legacy` is `data-0` when the data directory has one.
    public init(tablePlacedOn consensus: Consensus, nodeID: NodeID, legacy: LocalRegion?, dataDir: String, options: EngineOptions,
                logger: Logger, health: StorageHealth?) {
        isCluster = false
        hints = .standalone
        self.consensus = consensus
        self.nodeID = nodeID
        self.legacy = legacy
        self.dataDir = dataDir
        self.options = options
        self.logger = logger
        self.health = health
    }

    /// The set of a multi-node cluster: the table's regions this node holds are opened as
    /// replicas of their groups on `consensus`.
    public init(cluster consensus: Consensus, dataDir: String, options: EngineOptions, hints: LeaderHints, logger: Logger, health: StorageHealth?) {
        isCluster = true
        self.hints = hints
        self.consensus = consensus
        nodeID = consensus.nodeID
        legacy = nil
        self.dataDir = dataDir
        self.options = options
        self.logger = logger
        self.health = health
    }

    /// Every region held, `data-0` first, then by group.
    public var all: [LocalRegion] {
        (legacy.map { [$0] } ?? []) + held.withLock { $0 }.sorted { $0.key < $1.key }.map(\.value)
    }

    public var engines: [StorageEngine] { all.map(\.engine) }

    /// The region of `group`, when this node holds it.
    public func region(_ group: GroupID) -> LocalRegion? {
        if let legacy, legacy.group == group { return legacy }
        return held.withLock { $0[group] }
    }

    /// The region of `group`, opened first when `state` places it here and it is not open yet
    /// (a peer's part or fragment came before the periodic sync).
    public func region(_ group: GroupID, openingFrom state: MetaState) -> LocalRegion? {
        if let found = region(group) { return found }
        guard state.groups[group]?.replicas.contains(nodeID) == true else { return nil }
        sync(with: state)
        return region(group)
    }

    /// Reads and schema statements over every region held (a one-node cluster's whole data).
    public func store() -> RegionUnion {
        RegionUnion(scanBatchPoints: options.scanBatchPoints) { [self] in engines }
    }

    /// Runs `body` on every region's engine now and on each opened later.
    public func eachEngine(_ body: @escaping @Sendable (StorageEngine) -> Void) {
        onOpen.withLock { $0 = body }
        for engine in engines { body(engine) }
    }

    /// Opens the data regions `state` places on this node that are not open, and closes and
    /// removes those it no longer has (their database was dropped). A region that cannot
    /// open is logged and left closed: writes to it are refused until it opens (tried again at
    /// each change, and at the next start, which refuses to go on without it).
    public func sync(with state: MetaState) {
        do { try sync(with: state, strict: false) } catch { preconditionFailure("a lenient sync does not throw: \(error)") }
    }

    /// `sync`; with `strict` (at start, before the shared log is replayed: a region's entries
    /// must not be released unread) the first region that cannot open is thrown.
    private func sync(with state: MetaState, strict: Bool) throws {
        syncLock.lock()
        defer { syncLock.unlock() }
        let wanted = state.groups.values.filter { $0.id.kind == .data && $0.replicas.contains(nodeID) }
        let open = held.withLock { $0 }
        for group in wanted where open[group.id] == nil {
            // A multi-node cluster's group runs over the nodes holding it (their addresses
            // registered); a one-node cluster's is standalone, on the shared log.
            let peers = isCluster ? group.replicas.compactMap { id in state.nodes[id].map { Peer(id: id, address: $0.internalAddress) } } : []
            guard peers.count == (isCluster ? group.replicas.count : 0) else { continue }
            do {
                let region = try LocalRegion(group: group.id, directory: directory(of: group.id), database: group.database,
                                             options: options, logger: logger, consensus: consensus, peers: peers, hints: hints,
                                             health: health, sharedLog: !isCluster)
                onOpen.withLock { $0 }?(region.engine)
                held.withLock { $0[group.id] = region }
                logger.info("region opened", metadata: ["group": "\(group.id)", "database": "\(group.database)"])
            } catch {
                if strict { throw RegionOpenError(group: group.id, underlying: "\(error)") }
                logger.error("region cannot open", metadata: ["group": "\(group.id)", "error": "\(error)"])
            }
        }
        let wantedIDs = Set(wanted.map(\.id))
        for (id, region) in open where !wantedIDs.contains(id) {
            held.withLock { _ = $0.removeValue(forKey: id) }
            remove(region)
        }
        // The old region of an upgraded one-node cluster takes no writes: it does not count.
        let writable = held.withLock { Array($0.values) }.map(\.engine)
        let share = Self.memtableShare(of: options.memtableBytesMax, among: writable.count)
        for engine in writable { engine.setMemtableBytesMax(share) }
    }

    /// Each written region's memtable bound: the node's `memtable_bytes_max` shared among
    /// them, at least 4 MiB (or the whole, when smaller): the active memtables together stay
    /// within the bound up to bound / 4 MiB regions (16 by default), past that 4 MiB each.
    /// Sealed ones waiting for the flush add to it, as on a node with one region.
    public static func memtableShare(of budget: Int, among regions: Int) -> Int {
        precondition(budget > 0 && regions >= 0)
        return max(min(budget, 4 << 20), budget / max(1, regions))
    }

    /// Opens the regions `state` places here and replays their shared log: at start, before
    /// the ports open (a region's directory left by a dropped database is removed first).
    public func start(with state: MetaState) throws {
        removeOrphans(of: state)
        try sync(with: state, strict: true)
        try (consensus as? StandaloneConsensus)?.replaySharedLog()
    }

    /// Removes region directories no group of `state` names (a crash came between dropping a
    /// database in the meta group and removing its regions). Before `sync`, at start, and only
    /// in a one-node cluster: there `state` is the whole meta log replayed, while a member of a
    /// larger one starts from its checkpoint and applies the rest later, so a group made since
    /// would look like an orphan.
    public func removeOrphans(of state: MetaState) {
        guard !isCluster else { return }
        let names = Set(state.groups.keys.filter { $0.kind == .data }.map { "\($0)" })
        let listed = (try? FileManager.default.contentsOfDirectory(atPath: dataDir + "/regions")) ?? []
        for name in listed where name.hasPrefix("data-") && name != "\(LocalRegion.group)" && !names.contains(name) {
            logger.notice("removing the region of a dropped database", metadata: ["region": "\(name)"])
            try? FileManager.default.removeItem(atPath: dataDir + "/regions/" + name)
            try? FileManager.default.removeItem(atPath: dataDir + "/consensus/" + name)  // a standalone group's snapshot
        }
    }

    /// Calls `then` once every region held applied what was acknowledged before the call.
    public func whenApplied(_ then: @escaping @Sendable () -> Void) {
        let regions = all
        guard !regions.isEmpty else { return then() }
        let remaining = Atomic<Int>(regions.count)
        for region in regions {
            region.consensus.read(region.group, consistency: .linearizable) { _ in
                if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { then() }
            }
        }
    }

    /// Every region held, with its role and sizes (a heartbeat's answer).
    public var reports: [RegionReport] {
        all.map { region in
            let stats = region.engine.stats
            let term = (region.consensus as? RaftConsensus)?.status(of: region.group)?.term ?? 0
            return RegionReport(group: region.group, isLeader: region.consensus.leader(of: region.group) == region.consensus.nodeID,
                                term: term, segmentBytes: stats.segmentBytes, memtableBytes: stats.memtableBytes)
        }
    }

    /// The engines' figures, summed.
    public var stats: EngineStats {
        engines.reduce(into: EngineStats()) { sum, engine in
            let one = engine.stats
            sum.segments += one.segments
            sum.segmentBytes += one.segmentBytes
            sum.memtableBytes += one.memtableBytes
            sum.sealedMemtables += one.sealedMemtables
            sum.quarantinedSegments += one.quarantinedSegments
            sum.tombstones += one.tombstones
        }
    }

    /// Syncs and closes the logs (every group of the node's consensus), then the engines.
    public func close() {
        consensus.close()
        for engine in engines { engine.close() }
    }

    private func directory(of group: GroupID) -> String { dataDir + "/regions/\(group)" }

    private func remove(_ region: LocalRegion) {
        do {
            try consensus.deleteGroup(region.group)
            try region.engine.destroy()
            logger.info("region removed", metadata: ["group": "\(region.group)"])
        } catch {
            logger.error("region cannot be removed; it is removed at the next start", metadata: ["group": "\(region.group)", "error": "\(error)"])
        }
    }
}

/// A region the node holds could not open at start: the node does not start without it.
public struct RegionOpenError: Error, CustomStringConvertible {
    public let group: GroupID
    public let underlying: String

    public var description: String {
        "region \(group) cannot open: \(underlying) (the node holds it; fix the cause, or restore <data_dir>/regions/\(group), and start again)"
    }
}
