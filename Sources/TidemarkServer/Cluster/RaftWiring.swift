import Logging
import Synchronization
import TidemarkConfig
import TidemarkConsensus
import TidemarkCore
import TidemarkNet

/// A node's Raft machinery: the consensus of its groups, the transport to its peers and
/// the clock. Incoming messages and ticks run as rounds on the append stage (they fsync; the
/// event loop must never wait on a disk); committed entries are applied on the apply stage.
final class RaftWiring: Sendable {
    let consensus: RaftConsensus
    let transport: PeerTransport
    let peers: [Peer]
    private let submitRound: @Sendable (StageTask) -> Void
    private let tickMs: Int
    private let timer = Mutex<LoopTimerBox?>(nil)

    /// Holds the loop timer (touched on the loop thread only).
    private final class LoopTimerBox: @unchecked Sendable {
        let timer: LoopTimer
        init(_ timer: LoopTimer) { self.timer = timer }
    }

    /// `submitRound` hands work to the stage that runs Raft rounds, `submitApply` to the one that applies.
    init(config: NodeConfig, nodeID: UInt64, secret: String, loop: EventLoop, submitRound: @escaping @Sendable (StageTask) -> Void,
         submitApply: @escaping @Sendable (StageTask) -> Bool, logger: Logger) throws {
        self.submitRound = submitRound
        tickMs = config.raftTickMs
        peers = config.metaPeers.enumerated().map { Peer(id: UInt64($0.offset + 1), address: "\($0.element)") }
        let addresses = Dictionary(uniqueKeysWithValues: config.metaPeers.enumerated().map { (UInt64($0.offset + 1), $0.element) })
            .filter { $0.key != nodeID }
        let consensusBox = ConsensusBox()
        // The pair's heartbeat every tick; silence for an election timeout means the peer is gone.
        let tickMs = UInt64(config.raftTickMs)
        transport = PeerTransport(loop: loop, nodeID: nodeID, peers: addresses, clusterSecret: secret,
                                  pingMs: tickMs, silenceMs: tickMs * UInt64(config.raftElectionTicks),
                                  peerDown: { node in submitRound(StageTask { consensusBox.value?.peerDown(node) }) }) { messages in
            submitRound(StageTask { consensusBox.value?.receive(messages) })
        }
        var settings = RaftConsensus.Settings()
        settings.quiesce = true
        settings.electionTicks = config.raftElectionTicks
        settings.seed = nodeID &* 0x9E37_79B9
        consensus = try RaftConsensus(nodeID: nodeID, disk: try RaftDisk(directory: config.dataDir + "/raft"), transport: transport,
                                      settings: settings, logger: logger, applyOn: { work in submitApply(StageTask(work)) })
        consensusBox.value = consensus
    }

    /// Listens for peers and starts the clock (on the loop, before it runs).
    func start(listen address: ListenAddress, loop: EventLoop) throws -> ListenAddress {
        let bound = try transport.start(listen: address)
        let consensus = consensus, submitRound = submitRound
        let ticker = LoopTimer(loop: loop, delayMs: UInt64(tickMs), repeatMs: UInt64(tickMs)) {
            submitRound(StageTask { consensus.tick() })
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
    var value: RaftConsensus?
}
