import TidemarkIO
import Foundation
import Logging
import Synchronization
import TidemarkCluster
import TidemarkConfig
import TidemarkConsensus
import TidemarkCore
import TidemarkNet
import TidemarkQuery
import TidemarkStages
import TidemarkStorage

/// A running Tidemark node: its stages, its event loop and the HTTP edge on it.
///
/// `run()` blocks the calling thread, which becomes the event-loop thread, until
/// SIGTERM or SIGINT has stopped the node. `@unchecked Sendable`: the mutable
/// fields are touched only on the loop thread.
public final class Node: @unchecked Sendable {
    /// How the node stopped.
    public enum Outcome: Sendable, Equatable {
        /// Drained and synced within `shutdown_timeout_ms`.
        case clean
        /// The bound passed with work left; the reason says what.
        case timedOut(String)
        /// The node did not start: why, in one line (a fixed setting differs from the cluster's).
        case refused(String)
    }

    public let config: NodeConfig
    private let logger: Logger
    private let dataDirectory: DataDirectory
    private let loop: EventLoop
    private let stages: NodeStages
    private let server: HTTPServer
    private let httpMetrics = HTTPMetrics()
    /// The region replicas this node holds; the append stage writes through their groups.
    private let regions: RegionSet
    /// What statements run over: the node's regions (one node), or the cluster's (`ClusterStore`).
    private let store: any RegionStore
    /// With `meta_peers`: the consensus groups, transport and clock of this node.
    private let cluster: ClusterWiring?
    private let users: UserStore
    /// This node's part in the meta group (its own, alone, without `meta_peers`).
    private let meta: MetaAgent
    private var metaTimer: LoopTimer?
    private var startupTimer: LoopTimer?
    /// Hashes passwords off the decode thread (`Authenticator`); drained after the stages.
    private let authStage: Stage<StageTask>
    private var signalWatchers: [SignalWatcher] = []
    private var ageTimer: LoopTimer?
    /// In a multi-node cluster: follows the meta state's placement of regions on this node.
    private var regionTimer: LoopTimer?
    /// Resumes metadata operations left in flight.
    private var operationsTimer: LoopTimer?
    private var idleTimer: LoopTimer?
    private var shutdownTimer: LoopTimer?
    private var outcome = Outcome.clean

    /// Locks the data directory and builds the stages and the event loop. With `repairLogs`
    /// (`tidemarkd --repair`), logs damaged in the middle are first set aside and cut
    /// (`LogRepairRun`): only once the lock is held, so a running node's logs are never touched.
    public init(config: NodeConfig, logger: Logger, repairLogs: Bool = false) throws {
        self.config = config
        self.logger = logger
        dataDirectory = try DataDirectory(path: config.dataDir)
        if repairLogs {
            let actions = try LogRepairRun.run(dataDir: config.dataDir)
            for action in actions { logger.warning("repaired a damaged log", metadata: ["action": "\(action)"]) }
            logger.notice("log repair done", metadata: ["files": "\(actions.count)"])
        }
        let loop = try EventLoop()
        self.loop = loop
        // The routes (and Raft) reach the stages, which exist only once built: resolve them lazily.
        let stagesBox = StagesBox()
        let storageHealth = StorageHealth(logger: logger, directory: config.dataDir)
        // Files moved aside stay until an operator acts: say so at every start, once per file
        // (listed before the region opens, which logs the segments it quarantines itself).
        for file in NodeHealth.listQuarantine(dataDir: config.dataDir) {
            logger.warning("node is degraded: a quarantined file awaits an operator (list them with `tidemark quarantine`)",
                           metadata: ["file": "\(file.path)", "kind": "\(file.kind)", "bytes": "\(file.bytes)"])
        }
        // Users first: replaying the meta group's log applies its user entries to them.
        let users = try UserStore.open(dataDir: config.dataDir, logger: logger, health: storageHealth)
        self.users = users
        let hints: LeaderHints
        if let nodeID = config.nodeID, let secret = config.clusterSecret {
            // Raft rounds (messages, ticks) persist and replicate on the append stage, committed entries
            // are applied on the apply stage. Both are offered without blocking (the event loop
            // offers them); a full stage drops a round's input and Raft sends again, while a
            // dropped apply run is offered again after the next round.
            let cluster = try ClusterWiring(config: config, nodeID: nodeID, secret: secret, loop: loop,
                                            submitRound: { _ = stagesBox.offerAppend(.consensus($0)) },
                                            submitMessages: { _ = stagesBox.offerAppend(.raftMessages($0)) },
                                            submitApply: { stagesBox.offer($0, to: .apply) == .accepted },
                                            submitHandoff: { stagesBox.offer($0, to: .handoff) == .accepted }, users: users, health: storageHealth,
                                            logger: logger)
            self.cluster = cluster
            hints = LeaderHints(clientAddress: { [transport = cluster.transport] node in transport.clientAddress(of: node) })
            // Before the partition table placed rows over nodes, a cluster kept every row in one
            // region over the meta members: this version cannot place those rows, so it does
            // not start over them rather than show a cluster without them.
            if FileManager.default.fileExists(atPath: config.dataDir + "/regions/0") {
                throw NodeStartError(description: "\(config.dataDir)/regions/0 holds the data of a cluster from before rows were placed by the "
                                     + "partition table (one region over the meta members); this version cannot read it in a multi-node cluster. "
                                     + "Start this node with the previous version and export the data (SELECT … or the REST API), "
                                     + "then start the new version on empty data directories and write it again")
            }
            let regions = RegionSet(cluster: cluster.consensus, dataDir: config.dataDir, options: config.storage, hints: hints, logger: logger,
                                    health: storageHealth)
            meta = cluster.meta
            // The replicas this node holds, as its copy of the meta state places them (before the
            // ports open); later changes are followed on the handoff stage (`regionTimer`).
            try regions.start(with: meta.machine.current)
            self.regions = regions
        } else {
            cluster = nil
            hints = .standalone
            // The append stage logs a batch and goes on to the next; the apply stage applies it
            // and answers its writers (or, before the stages run, the writing thread does).
            let consensus = StandaloneConsensus(directory: config.dataDir + "/consensus", syncPolicy: config.storage.walSync, logger: logger,
                                                health: storageHealth,
                                                applyOn: { work in stagesBox.offer(StageTask(work), to: .apply) == .accepted })
            // A data directory from before the partition table keeps its one region, readable.
            let legacy = FileManager.default.fileExists(atPath: config.dataDir + "/regions/0")
                ? try LocalRegion(dataDir: config.dataDir, options: config.storage, logger: logger, consensus: consensus, peers: [],
                                  health: storageHealth)
                : nil
            // The node's own meta group, then the regions it places here (before the ports open).
            meta = try MetaAgent.open(config: config, consensus: consensus, peers: [], transport: nil, nodeID: 1,
                                      internalAddress: "\(config.internalListen)", users: users, health: storageHealth, logger: logger)
            let regions = RegionSet(tablePlacedOn: consensus, nodeID: 1, legacy: legacy, dataDir: config.dataDir, options: config.storage,
                                    logger: logger, health: storageHealth)
            try regions.start(with: meta.machine.current)
            meta.machine.observe { [regions] state in regions.sync(with: state) }
            self.regions = regions
        }
        let meta = meta, regions = regions
        meta.regionReporter.withLock { $0 = { regions.reports } }
        let metaMembers = Set((0..<max(1, config.metaPeers.count)).map { NodeID($0 + 1) })
        // User changes are entries of the meta group: every node of the cluster, data-only
        // nodes too, authenticates against the same users, and any node takes a change.
        users.routeChanges { record in try meta.proposeUserChange(record) }
        let authStage = Authenticator.makeStage(config.auth)
        self.authStage = authStage
        let authenticator = Authenticator(users: users, settings: config.auth, stage: authStage)
        let startedNs = monotonicNowNs()
        let startTimeSeconds = Date().timeIntervalSince1970
        let clusterWiring = cluster, nodeID = config.nodeID ?? 1, dataDir = config.dataDir
        var routes = AdminRoutes(stages: { stagesBox.snapshots() + [authStage.snapshot()] }, storage: { regions.stats },
                                 health: { NodeHealth.read(dataDir: dataDir, storage: storageHealth, listingQuarantine: $0) }, http: httpMetrics,
                                 auth: { AuthMetrics.read(authenticator) },
                                 cluster: { clusterWiring.map { ClusterStatus.read($0, nodeID: nodeID) } },
                                 meta: { ClusterStatements.json(meta.machine.current, leader: meta.leaderID, metaMembers: metaMembers,
                                                                        pushesReceived: meta.pushesReceived.load(ordering: .relaxed),
                                                                        stalePulls: meta.stalePulls.load(ordering: .relaxed)) },
                                 startedNs: startedNs, startTimeSeconds: startTimeSeconds)
        // In a cluster, rows and fragments of the groups other nodes lead travel to them.
        let plane = cluster.map { cluster in
            DataPlane(transport: cluster.transport, agent: meta, regions: regions, settings: config.route, pointsMax: config.storage.writePointsMax,
                      scanBatchPoints: config.storage.scanBatchPoints,
                      submitWrite: { job in if case .accepted = stagesBox.offerAppend(.write(job)) { return true } else { return false } },
                      submitQuery: { task in stagesBox.offer(task, to: .query) == .accepted })
        }
        let store: any RegionStore = plane.map { plane in
            ClusterStore(nodeID: meta.nodeID, scanBatchPoints: config.storage.scanBatchPoints, timeoutMs: UInt64(config.route.timeoutMs),
                         attemptsMax: config.route.retriesMax + 1, state: { meta.machine.current }, access: plane.access)
        } ?? regions.store()
        self.store = store
        routes.regions = { RegionMetrics.read(regions, route: plane?.metrics) }
        let executor = StatementExecutor(engine: store, rowsMax: config.query.rowsDefault, memoryBytesMax: config.query.memoryBytesMax)
        var dispatcher = Dispatcher(admin: routes, executor: executor, writeLimits: config.storage,
                                    queryLimits: config.query, stages: stagesBox, users: users,
                                    clusterAnswer: { statement, route in
                                        ClusterStatements.change(statement, agent: meta, createDatabases: config.storage.autoCreateSchema, route: route)
                                            ?? ClusterStatements.answer(statement, meta: meta.machine.current, metaMembers: metaMembers,
                                                                     heard: { meta.heardRegions() }, route: route)
                                    }, logger: logger)
        if let plane {
            dispatcher.weakExecutor = StatementExecutor(
                engine: ClusterStore(nodeID: meta.nodeID, scanBatchPoints: config.storage.scanBatchPoints, timeoutMs: UInt64(config.route.timeoutMs),
                                     attemptsMax: config.route.retriesMax + 1, weak: true, state: { meta.machine.current }, access: plane.access),
                rowsMax: config.query.rowsDefault, memoryBytesMax: config.query.memoryBytesMax)
        }
        if cluster == nil {
            dispatcher.afterAcknowledgedWrites = { then in regions.whenApplied(then) }
        }
        dispatcher.afterEngine = { statement, answer in
            // A region that cannot be asked keeps the operation in flight (resumed later).
            ClusterStatements.afterEngine(statement, answer, agent: meta, stillHeld: { (try? store.databases())?.contains($0) ?? true },
                                          stillMatches: { text in (try? PathPattern(parsing: text)).map { (try? store.series(matching: $0))?.isEmpty == false } ?? false })
        }
        let decoder = dispatcher
        let applier = WriteApplier(regions: regions, state: { meta.machine.current }, hints: hints, plane: plane)
        stages = NodeStages(settings: config.stages, decodeHandler: { batch in
            for exchange in batch { decoder.handle(exchange) }
        }, appendHandler: { batch in
            AppendWork.handle(batch, receive: { clusterWiring?.raft?.receive($0) }, propose: { applier.apply($0) })
        }, routeWrite: { [router = PartitionRouter(agent: meta, createDatabases: config.storage.autoCreateSchema)] job, forward in
            router.route(job, forward: forward)
        })
        stagesBox.set(stages)
        regions.eachEngine { [flushStage = stages.taskStages[.flush]!] engine in FlushWiring.attach(engine, to: flushStage, logger: logger) }
        server = HTTPServer(loop: loop, settings: config.http, metrics: httpMetrics, handler: EdgeHandler(decode: stages.decode, authenticator: authenticator))
    }

    /// Opens the HTTP port, serves until SIGTERM/SIGINT, then stops within the bound.
    /// Binds the HTTP port, starts the cluster's transport and clock, and opens the port
    /// only once the node is ready (`StartupSequence`: its settings agree with the meta
    /// group, and it is registered there); `onReady` runs then, on the loop. Serves until
    /// SIGTERM/SIGINT, then stops within the bound.
    public func run(onReady: @escaping (ListenAddress) -> Void) throws -> Outcome {
        let address: ListenAddress
        do {
            address = try server.bind()
        } catch {
            _ = stages.drain(deadlineNs: monotonicNowNs() + 1_000_000_000)
            _ = authStage.drain(deadlineNs: monotonicNowNs() + 1_000_000_000)
            regions.close()
            users.close()
            loop.close()
            loop.run()
            throw error
        }
        var internalAddress: ListenAddress?
        if let cluster {
            do {
                internalAddress = try cluster.start(listen: config.internalListen, http: address, loop: loop)
            } catch {
                server.closeAllConnections()
                throw error
            }
        }
        if cluster == nil {
            // Alone, the node registers in its own meta group (a cluster's clock does it otherwise).
            meta.clientAddressIsKnown("\(address)")
            let meta = meta, append = stages.append
            // Offered, never waited for (the loop must not block): a full stage skips one tick.
            metaTimer = LoopTimer(loop: loop, delayMs: 0, repeatMs: 1000) { _ = append.offer(.consensus(StageTask { meta.tick() })) }
        }
        for signal in [SIGTERM, SIGINT] {
            signalWatchers.append(try SignalWatcher(loop: loop, signal: signal) { [unowned self] in beginShutdown(signal: signal) })
        }
        if cluster != nil {
            // Offered, never waited for: opening a replica may replay its log (a full stage skips a second).
            let regions = regions, meta = meta, handoff = stages.taskStages[.handoff]!
            regionTimer = LoopTimer(loop: loop, delayMs: 1000, repeatMs: 1000) { _ = handoff.offer(StageTask { regions.sync(with: meta.machine.current) }) }
        }
        // Operations left in flight (a crash between a drop's start and end) are resumed.
        let resumeStore = store, resumeMeta = meta, resumeLogger = logger, handoffStage = stages.taskStages[.handoff]!
        operationsTimer = LoopTimer(loop: loop, delayMs: 5000, repeatMs: 5000) {
            guard !resumeMeta.machine.current.operations.isEmpty else { return }
            _ = handoffStage.offer(StageTask { MetaOperations.resume(store: resumeStore, agent: resumeMeta, logger: resumeLogger) })
        }
        let ageCheckMs = UInt64(max(100, min(config.storage.memtableAgeMsMax / 4, 10_000)))
        ageTimer = LoopTimer(loop: loop, delayMs: ageCheckMs, repeatMs: ageCheckMs) { [unowned self] in
            for engine in regions.engines { FlushWiring.sealByAge(engine, flushStage: stages.taskStages[.flush]!, logger: logger) }
        }
        if config.storage.compactionIdleMs > 0 {
            // Checked five times per idle period: a merge starts at most a fifth of it late.
            let idleCheckMs = UInt64(max(100, min(config.storage.compactionIdleMs / 5, 10_000)))
            idleTimer = LoopTimer(loop: loop, delayMs: idleCheckMs, repeatMs: idleCheckMs) { [unowned self] in
                for engine in regions.engines { FlushWiring.compactIfIdle(engine, flushStage: stages.taskStages[.flush]!, logger: logger) }
            }
        }
        let others = Dictionary(uniqueKeysWithValues: (cluster?.peers ?? []).filter { $0.id != config.nodeID }.map { ($0.id, $0.address) })
        let startup = StartupSequence(meta: meta, settings: meta.machine.settings, peers: others, memberCount: max(1, config.metaPeers.count),
                                      logger: logger)
        startupTimer = LoopTimer(loop: loop, delayMs: 0, repeatMs: 20) { [unowned self] in
            guard shutdownTimer == nil else {
                startupTimer?.cancel()
                return
            }
            switch startup.advance() {
            case .wait:
                return
            case .refuse(let reason):
                startupTimer?.cancel()
                outcome = .refused(reason)
                beginShutdown(signal: 0)
            case .open:
                startupTimer?.cancel()
                do {
                    try server.listen()
                } catch {
                    outcome = .refused("cannot listen on \(address): \(error)")
                    return beginShutdown(signal: 0)
                }
                logger.info("tidemarkd listening", metadata: ["http": "\(address)", "internal": "\(internalAddress.map { "\($0)" } ?? "-")",
                                                             "data_dir": "\(config.dataDir)", "node": "\(config.nodeName)"])
                onReady(address)
                // A data directory from before the meta group kept databases: bring them in (background work).
                let engines = regions.engines, meta = meta, logger = logger, store = store
                _ = stages.taskStages[.handoff]!.offer(StageTask {
                    MetaReconcile.run(engines: engines, agent: meta, logger: logger)
                    MetaOperations.resume(store: store, agent: meta, logger: logger)
                })
            }
        }
        loop.run()
        return outcome
    }

    private func beginShutdown(signal: Int32) {
        guard shutdownTimer == nil else {
            logger.notice("already stopping", metadata: ["signal": "\(signal)"])
            return
        }
        let deadlineNs = monotonicNowNs() + UInt64(config.shutdownTimeoutMs) * 1_000_000
        logger.notice("stopping: no new connections; draining requests and stages",
                      metadata: ["signal": "\(signal)", "bound_ms": "\(config.shutdownTimeoutMs)"])
        ageTimer?.cancel()
        regionTimer?.cancel()
        operationsTimer?.cancel()
        idleTimer?.cancel()
        metaTimer?.cancel()
        startupTimer?.cancel()
        // The whole stop shares one bound; past it open connections are cut.
        shutdownTimer = LoopTimer(loop: loop, delayMs: UInt64(config.shutdownTimeoutMs)) { [unowned self] in
            outcome = .timedOut("connections still had requests in flight")
            server.closeAllConnections()
        }
        server.shutdown { [unowned self] in
            shutdownTimer?.cancel()
            // Draining stages blocks, so it runs off the loop; the loop stays up for their replies.
            let stages = stages, loop = loop, dataDirectory = dataDirectory, logger = logger, regions = regions, users = users
            let authStage = authStage
            Thread.detachNewThread {
                let drained = stages.drain(deadlineNs: deadlineNs) && authStage.drain(deadlineNs: deadlineNs)
                regions.close()  // syncs the logs; memtables are rebuilt from them at the next start
                users.close()
                let syncProblem = dataDirectory.sync()
                if let syncProblem { logger.error("sync failed", metadata: ["reason": "\(syncProblem)"]) }
                loop.execute { [self] in
                    if !drained && outcome == .clean { outcome = .timedOut("stages still had queued work") }
                    if syncProblem != nil && outcome == .clean { outcome = .timedOut("data directory sync failed") }
                    cluster?.stop()
                    for watcher in signalWatchers { watcher.close() }
                    signalWatchers = []
                    loop.close()
                }
            }
        }
    }
}

/// Gives the routes the node's stages after both exist.
final class StagesBox: Sendable {
    private let stages = Mutex<NodeStages?>(nil)

    func set(_ value: NodeStages) { stages.withLock { $0 = value } }

    /// Offers work to the append stage without ever blocking (the event loop calls this):
    /// a full queue drops it. Only for work that comes again (Raft messages and ticks).
    func offerAppend(_ work: AppendWork) -> SubmitResult {
        guard let stages = stages.withLock({ $0 }) else { return .rejected(.stopping) }
        return stages.append.offer(work)
    }

    /// Offers a task to one of the task stages without ever blocking; a full queue drops it.
    func offer(_ task: StageTask, to name: StageName) -> SubmitResult {
        guard let stages = stages.withLock({ $0 }) else { return .rejected(.stopping) }
        return stages.taskStages[name]!.offer(task)
    }

    /// Hands a statement to the query stage.
    func submitQuery(_ task: StageTask) -> SubmitResult {
        guard let stages = stages.withLock({ $0 }) else { return .rejected(.stopping) }
        return stages.taskStages[.query]!.submit(task)
    }

    /// Hands a decoded write to the route stage, answering at once if it is refused.
    func submitWrite(_ job: WriteJob) {
        guard let stages = stages.withLock({ $0 }) else { return }
        if case .rejected(let reason) = stages.route.submit(job) {
            job.finish(.refusedBy("route", reason))
        }
    }
    func snapshots() -> [StageSnapshot] { stages.withLock { $0 }?.all.map { $0.snapshot() } ?? [] }
}

/// Why a node does not start, in words an operator can act on.
public struct NodeStartError: Error, CustomStringConvertible {
    public let description: String
}
