import Foundation
import TidemarkIO
import Logging
import Synchronization
import TidemarkCluster
import TidemarkConfig
import TidemarkConsensus
import TidemarkCore
import TidemarkNet
import TidemarkStorage

/// A node's cluster machinery: the meta group (always Raft, over `meta_peers`), the consensus
/// of its data region (Raft or multi-leader, as `data_consensus` says), the transport to its
/// peers and the clock. Incoming messages and ticks run as rounds on the append stage (they
/// fsync; the event loop must never wait on a disk); Raft's committed entries are applied on
/// the apply stage.
final class ClusterWiring: Sendable {
    /// The region's consensus, one of the two below.
    let consensus: Consensus
    /// Runs the meta group, and the data region when it is Raft.
    let raft: RaftConsensus?
    let multiLeader: MultiLeaderConsensus?
    let transport: PeerTransport
    let peers: [Peer]
    /// This node's part in the meta group.
    let meta: MetaAgent
    /// `internal.listen`: its host stands in for a wildcard HTTP host in the client address.
    private let internalListen: ListenAddress
    private let submitRound: @Sendable (StageTask) -> Void
    private let box: ConsensusBox
    private let tickMs: Int
    private let timer = Mutex<LoopTimerBox?>(nil)

    /// Holds the loop timer (touched on the loop thread only).
    private final class LoopTimerBox: @unchecked Sendable {
        let timer: LoopTimer
        init(_ timer: LoopTimer) { self.timer = timer }
    }

    /// `submitRound` hands work to the stage that runs rounds, `submitMessages` hands it Raft
    /// messages from peers (it merges a batch of them into one round, one fsync),
    /// `submitApply` hands work to the stage that applies, `submitHandoff` to the stage that
    /// makes snapshot images for followers behind the compacted log. `health` hears of failed
    /// and successful log writes.
    init(config: NodeConfig, nodeID: UInt64, secret: String, loop: EventLoop, submitRound: @escaping @Sendable (StageTask) -> Void,
         submitMessages: @escaping @Sendable ([GroupMessage]) -> Void,
         submitApply: @escaping @Sendable (StageTask) -> Bool, submitHandoff: @escaping @Sendable (StageTask) -> Bool,
         users: UserStore, health: StorageHealth? = nil, logger: Logger) throws {
        self.submitRound = submitRound
        tickMs = config.raftTickMs
        internalListen = config.internalListen
        peers = config.metaPeers.enumerated().map { Peer(id: UInt64($0.offset + 1), address: "\($0.element)") }
        let addresses = Dictionary(uniqueKeysWithValues: config.metaPeers.enumerated().map { (UInt64($0.offset + 1), $0.element) })
            .filter { $0.key != nodeID }
        let box = ConsensusBox()
        self.box = box
        // The pair's heartbeat every tick; silence for an election timeout means the peer is gone.
        let tickMs = UInt64(config.raftTickMs)
        transport = PeerTransport(loop: loop, nodeID: nodeID, peers: addresses, clusterSecret: secret, clusterName: config.clusterName,
                                  logger: logger, pingMs: tickMs, silenceMs: tickMs * UInt64(config.raftElectionTicks),
                                  peerDown: { node in
                                      // Kept until a round reports it: a round dropped by a full stage
                                      // must not leave a sleeping group without its wake-up.
                                      box.downPeers.withLock { _ = $0.insert(node) }
                                      submitRound(StageTask { box.reportDownPeers() })
                                  },
                                  deliverReplication: { messages in submitRound(StageTask { box.multiLeader?.receive(messages) }) },
                                  deliver: submitMessages)
        var settings = RaftConsensus.Settings()
        settings.quiesce = true
        settings.electionTicks = config.raftElectionTicks
        settings.catchUpBytesMax = config.raftCatchUpBytesMax
        settings.applyBacklogBytesMax = config.raftApplyBacklogBytesMax
        settings.snapshotChunkBytes = config.raftSnapshotChunkBytes
        settings.snapshotBytesMax = config.raftSnapshotBytesMax
        settings.seed = nodeID &* 0x9E37_79B9
        let raft = try RaftConsensus(nodeID: nodeID, disk: try RaftDisk(directory: config.dataDir + "/raft", health: health), transport: transport,
                                     settings: settings, logger: logger, applyOn: { work in submitApply(StageTask(work)) },
                                     imageOn: { work in submitHandoff(StageTask(work)) })
        box.raft = raft
        self.raft = raft
        switch config.dataConsensus {
        case .raft:
            multiLeader = nil
            consensus = raft
        case .multiLeader:
            var settings = MultiLeaderConsensus.Settings()
            settings.syncPolicy = config.storage.walSync
            settings.health = health
            settings.imageChunkBytes = config.raftSnapshotChunkBytes
            settings.imageBytesMax = config.raftSnapshotBytesMax
            let multiLeader = MultiLeaderConsensus(nodeID: nodeID, directory: config.dataDir + "/multileader", transport: transport,
                                                   settings: settings, logger: logger, imageOn: { work in submitHandoff(StageTask(work)) })
            box.multiLeader = multiLeader
            self.multiLeader = multiLeader
            consensus = multiLeader
        }
        meta = try MetaAgent.open(config: config, consensus: raft, peers: peers, transport: transport, nodeID: nodeID,
                                  internalAddress: "\(config.internalListen)", users: users, health: health, logger: logger,
                                  offLoop: { work in submitRound(StageTask(work)) })
    }

    /// Listens for peers and starts the clock (on the loop, before it runs). `http` is the
    /// bound address of the node's HTTP edge (started first): the peers learn from this
    /// node's hellos where its clients reach it (`ClusterIdentity.clientAddress`).
    func start(listen address: ListenAddress, http: ListenAddress, loop: EventLoop) throws -> ListenAddress {
        let clientAddress = ClusterIdentity.clientAddress(http: http, internalListen: internalListen)
        let bound = try transport.start(listen: address, clientAddress: clientAddress)
        meta.clientAddressIsKnown(clientAddress)
        let raft = raft, multiLeader = multiLeader, submitRound = submitRound, box = box, meta = meta
        let ticker = LoopTimer(loop: loop, delayMs: UInt64(tickMs), repeatMs: UInt64(tickMs)) {
            submitRound(StageTask {
                box.reportDownPeers()
                raft?.tick()
                multiLeader?.tick()
                meta.tick()
            })
        }
        timer.withLock { $0 = LoopTimerBox(ticker) }
        return bound
    }

    /// Stops the clock and the connections (on the loop).
    func stop() {
        timer.withLock { $0?.timer.cancel() }
        transport.stop()
    }
}

/// Lets the transport reach the consensus built after it.
private final class ConsensusBox: @unchecked Sendable {
    // Set once, before any message can arrive (the transport starts listening later).
    var raft: RaftConsensus?
    var multiLeader: MultiLeaderConsensus?
    /// Peers the transport lost that no round has reported to Raft yet.
    let downPeers = Mutex<Set<UInt64>>([])

    func reportDownPeers() {
        let down = downPeers.withLock { peers in defer { peers = [] }; return peers }
        for node in down.sorted() { raft?.peerDown(node) }
    }
}
