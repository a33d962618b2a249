import Foundation
import Logging
import Synchronization
import TidemarkCluster
import TidemarkConfig
import TidemarkConsensus
import TidemarkCore
import TidemarkIO
import TidemarkStorage

/// Why a meta command did not go through.
enum MetaProposeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The meta state refused it (the same on every member).
    case refused(MetaError)
    /// No member could take it now (no leader, the leader unreachable): retry.
    case unavailable(String)

    var description: String {
        switch self {
        case .refused(let error): "\(error.code): \(error.message)"
        case .unavailable(let why): why
        }
    }
}

/// A node's part in the meta group (DESIGN.md section 3): it proposes meta commands (at the
/// leader, or through a call to it), answers the calls of other members when it leads,
/// registers this node (again whenever its client address changed), and, while it leads,
/// turns links lost for `unknownAfterMs` into a node's Unknown status and links back into
/// Running. Membership changes go through the meta log like any other command.
final class MetaAgent: Sendable {
    static let group = GroupID(kind: .meta, number: 0)
    /// The call a member makes to the meta leader: a meta command, answered with its outcome.
    static let proposeMethod: UInt16 = 1
    /// The call a starting node makes to each meta peer: its fixed cluster settings.
    static let settingsMethod: UInt16 = 2
    /// The call a data-only node makes to a member: the meta state, when newer than its copy.
    static let stateMethod: UInt16 = 3
    /// The meta leader's push to a data-only node when the route map changed (a group's
    /// replicas or leader, a node's status): the state, applied when newer than the copy.
    static let pushMethod: UInt16 = 4
    /// A data-only node also pulls this often, whatever it heard: the heartbeats' versions
    /// make it pull once its copy is stale, and this covers a node no heartbeat reaches.
    static let pullEveryMs: UInt64 = 30_000
    static let callTimeoutMs: UInt64 = 5000

    let consensus: Consensus
    let machine: MetaStateMachine
    let transport: PeerTransport?
    let nodeID: NodeID
    let internalAddress: String
    let cores: Int
    let unknownAfterMs: UInt64
    let logger: Logger
    /// This node's client address once its HTTP edge is up.
    let clientAddress = Mutex<String?>(nil)
    /// One registration and one status change in flight at a time.
    let registering = Atomic<Bool>(false)
    let changingStatus = Atomic<Bool>(false)
    /// This node's disk, reported as ReadOnly while it is full (nil: not followed).
    let health: StorageHealth?
    let reportingHealth = Atomic<Bool>(false)
    /// Members of the meta group: IDs 1…memberCount. A node outside it (data-only) keeps a
    /// copy of the meta state it pulls from a member, and proposes through them.
    let memberCount: Int
    var isMember: Bool { nodeID <= NodeID(memberCount) }
    /// On a data-only node: the meta leader as the member last asked knew it (0: none), the
    /// member it asks next, and whether a pull is in flight.
    let mirroredLeader = Atomic<UInt64>(0)
    let nextMember = Atomic<UInt64>(1)
    let pulling = Atomic<Bool>(false)
    /// When the next periodic pull is due (monotonic ns; 0: at the next tick).
    let pullDueNs = Atomic<UInt64>(0)
    /// The route version whose nodes' addresses the transport was last given (a registration
    /// moves it), so the addresses are handed over when they change, not every tick.
    let learnedRouteVersion = Atomic<UInt64>(UInt64.max)
    /// On the leader: the route version last pushed to the data-only nodes.
    let pushedRouteVersion = Atomic<UInt64>(0)
    /// On a data-only node: pushes received, and pulls made because a heartbeat, a write part or
    /// a fragment carried a newer version than the copy (for `/cluster`).
    let pushesReceived = Atomic<UInt64>(0)
    let stalePulls = Atomic<UInt64>(0)
    /// This node's regions for a heartbeat answer (set once the node's regions are open).
    let regionReporter = Mutex<(@Sendable () -> [RegionReport])?>(nil)
    /// On the leader: what its heartbeats heard, when it last sent them, whether it led at
    /// the last tick (a new leader starts a new book), and a leader hint change in flight.
    let heartbeats = HeartbeatBook()
    let lastHeartbeatNs = Atomic<UInt64>(0)
    let ledAtLastTick = Atomic<Bool>(false)
    let reportingLeaders = Mutex<Set<GroupID>>([])
    /// Operations a statement of this process is running, by subject (a database dropped, a
    /// pattern deleted): the resumer leaves them to it (`MetaOperations.subject`).
    let operationsRunningHere = Mutex<Set<String>>([])
    /// Answers the data plane's calls (write parts, query fragments): every method not the meta group's.
    let dataCalls = Mutex<PeerCallHandler?>(nil)

    /// `offLoop` runs work off the event loop (a peer's call arrives on the loop, and proposing
    /// persists to the log: the loop must never wait on a disk).
    init(consensus: Consensus, machine: MetaStateMachine, transport: PeerTransport?, nodeID: NodeID, memberCount: Int, internalAddress: String,
         cores: Int, unknownAfterMs: UInt64, health: StorageHealth? = nil, logger: Logger, offLoop: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void = { $0() }) {
        precondition(memberCount >= 1, "a meta group has a member")
        self.memberCount = memberCount
        self.health = health
        self.consensus = consensus
        self.machine = machine
        self.transport = transport
        self.nodeID = nodeID
        self.internalAddress = internalAddress
        self.cores = cores
        self.unknownAfterMs = unknownAfterMs
        self.logger = logger
        transport?.handleCalls { [weak self] from, method, body, reply in
            guard let self else { return reply(.failure(.failed("the node is stopping"))) }
            switch method {
            case Self.proposeMethod: offLoop { [weak self] in self?.answerPropose(from: from, body: body, reply: reply) }
            case Self.settingsMethod:
                var writer = ByteWriter()
                machine.settings.write(to: &writer)
                reply(.success(writer.bytes))
            case Self.stateMethod:
                // [leader][the state when newer than the caller's index, else nothing]
                var reader = ByteReader(body)
                guard let since = try? reader.readVarint() else { return reply(.failure(.failed("a state request without an index"))) }
                var writer = ByteWriter()
                writer.write(varint: consensus.leader(of: Self.group) ?? 0)
                let image = machine.image()
                if image.index > since { writer.write(bytes: image.bytes) }
                reply(.success(writer.bytes))
            case Self.heartbeatMethod:
                guard from >= 1 && from <= NodeID(memberCount) else { return reply(.failure(.failed("only a member of the meta group sends heartbeats"))) }
                reply(.success(RegionReport.encode(localReports)))
                offLoop { [weak self] in self?.heardVersion(body) }
            case Self.reportsMethod:
                reply(.success(Self.encodeHeard(heartbeats.regions)))
            case Self.pushMethod:
                guard !isMember else { return reply(.failure(.failed("a member keeps its own meta state"))) }
                guard from >= 1 && from <= NodeID(memberCount) else { return reply(.failure(.failed("only a member of the meta group pushes its state"))) }
                reply(.success([]))
                offLoop { [weak self] in
                    guard let self else { return }
                    pushesReceived.add(1, ordering: .relaxed)
                    installState(body, from: from)
                }
            default:
                guard let dataCalls = dataCalls.withLock({ $0 }) else { return reply(.failure(.failed("unknown method \(method)"))) }
                dataCalls(from, method, body, reply)
            }
        }
    }

    /// Opens the meta state machine under `<data_dir>/meta` (refusing one made with other fixed
    /// settings), creates the meta group on `consensus` with `peers`, and returns this node's
    /// agent in it.
    static func open(config: NodeConfig, consensus: Consensus, peers: [Peer], transport: PeerTransport?, nodeID: NodeID,
                     internalAddress: String, users: UserStore, health: StorageHealth?, logger: Logger,
                     offLoop: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void = { $0() }) throws -> MetaAgent {
        let machine = try MetaStateMachine(settings: settings(of: config), directory: config.dataDir + "/meta",
                                           reservedNodeIDs: max(1, config.metaPeers.count))
        // Attached before the group replays its log: the users' entries go to the store.
        machine.attach(users)
        // A data-only node holds no replica: its copy of the state comes from the members.
        if config.isMetaMember || config.metaPeers.isEmpty { try consensus.createGroup(group, peers: peers, stateMachine: machine) }
        return MetaAgent(consensus: consensus, machine: machine, transport: transport, nodeID: nodeID,
                         memberCount: max(1, config.metaPeers.count), internalAddress: internalAddress,
                         cores: ProcessInfo.processInfo.activeProcessorCount, unknownAfterMs: UInt64(config.nodeUnknownAfterMs), health: health,
                         logger: logger, offLoop: offLoop)
    }

    /// The settings the cluster is made with, from a node's config (fixed once it exists).
    static func settings(of config: NodeConfig) -> ClusterSettings {
        var settings = ClusterSettings()
        let inCluster = !config.metaPeers.isEmpty
        settings.clusterName = config.clusterName
        settings.seriesSlotCount = config.fixed.seriesSlotNum
        settings.timePartitionIntervalMs = config.storage.partitionInterval
        settings.schemaReplicationFactor = config.fixed.schemaReplicationFactor
        settings.dataReplicationFactor = config.fixed.dataReplicationFactor
        settings.dataConsensus = !inCluster ? .standalone : config.dataConsensus == .raft ? .raft : .multiLeader
        settings.schemaConsensus = config.fixed.schemaConsensus ?? (inCluster ? .raft : .standalone)
        settings.dataRegionGroupsPerDatabase = config.fixed.dataRegionGroupsPerDatabase
        settings.schemaRegionGroupsPerDatabase = config.fixed.schemaRegionGroupsPerDatabase
        return settings
    }

    /// The node's HTTP edge is up at `address`: registration may go (again) with it.
    func clientAddressIsKnown(_ address: String) { clientAddress.withLock { $0 = address } }

    /// Proposes `command` to the meta group; `completion` runs once, from any thread.
    func propose(_ command: MetaCommand, completion: @escaping @Sendable (Result<MetaState.Outcome, MetaProposeError>) -> Void) {
        proposeIndexed(command) { result, _ in completion(result) }
    }

    /// `propose`, with the meta log index the answering node had applied when it answered (at
    /// least the entry's): a caller that reads this node's copy next waits for that index.
    func proposeIndexed(_ command: MetaCommand,
                        completion: @escaping @Sendable (Result<MetaState.Outcome, MetaProposeError>, _ appliedIndex: UInt64) -> Void) {
        let leader = leaderID
        if !isMember, let transport {
            // Through a member, which passes it on to its leader; the next try asks the next one.
            let member = leader ?? nextMember.load(ordering: .relaxed)
            return transport.call(member, method: Self.proposeMethod, body: command.encoded(), timeoutMs: Self.callTimeoutMs) { [self] result in
                switch result {
                case .success(let bytes):
                    // This node's copy learns its own change at the next tick, not a pull period later.
                    pullDueNs.store(0, ordering: .relaxed)
                    let (answer, index) = Self.decodeAnswer(bytes)
                    completion(answer, index)
                case .failure(let error):
                    nextMember.store(member % NodeID(memberCount) + 1, ordering: .relaxed)
                    mirroredLeader.store(0, ordering: .relaxed)
                    completion(.failure(.unavailable("meta member \(member): \(error)")), 0)
                }
            }
        }
        if leader == nodeID {
            let proposal = MetaProposal()
            consensus.write(Self.group, Proposal(data: command.encoded(), local: proposal)) { [machine] result in
                let applied = machine.appliedIndex
                switch (result, proposal.outcome) {
                case (_, .success(let outcome)?): completion(.success(outcome), applied)
                case (_, .failure(let error)?): completion(.failure(.refused(error)), applied)
                case (.failure(let error), nil): completion(.failure(.unavailable("\(error)")), 0)
                case (.success, nil): completion(.failure(.unavailable("the meta entry was applied elsewhere")), 0)
                }
            }
        } else if let leader, let transport {
            transport.call(leader, method: Self.proposeMethod, body: command.encoded(), timeoutMs: Self.callTimeoutMs) { result in
                switch result {
                case .success(let bytes):
                    let (answer, index) = Self.decodeAnswer(bytes)
                    completion(answer, index)
                case .failure(let error): completion(.failure(.unavailable("meta leader \(leader): \(error)")), 0)
                }
            }
        } else {
            completion(.failure(.unavailable("the meta group has no leader yet; retry shortly")), 0)
        }
    }

    /// Proposes a user change (the user store's record) and waits until it is applied here:
    /// a refusal the meta group cannot take now is `EngineError.unavailable` (503).
    func proposeUserChange(_ record: [UInt8]) throws {
        switch proposeAndWait(.user(record)) {
        case .success: return
        case .failure(.refused(let error)): throw UserError(code: error.code, message: error.message)
        case .failure(.unavailable(let why)): throw EngineError.unavailable("the meta group cannot take the user change now: \(why)", leaderAddress: nil)
        }
    }

    /// Proposes `command` and waits for its outcome (the query stage runs statements this way),
    /// retrying while the group has no reachable leader, up to `timeoutMs`.
    func proposeAndWait(_ command: MetaCommand, timeoutMs: UInt64 = statementTimeoutMs) -> Result<MetaState.Outcome, MetaProposeError> {
        let deadlineNs = monotonicNowNs() + timeoutMs * 1_000_000
        while true {
            let done = DispatchSemaphore(value: 0)
            let answer = Mutex<(Result<MetaState.Outcome, MetaProposeError>, UInt64)?>(nil)
            proposeIndexed(command) { result, index in
                answer.withLock { $0 = (result, index) }
                done.signal()
            }
            let leftNs = deadlineNs > monotonicNowNs() ? deadlineNs - monotonicNowNs() : 0
            guard done.wait(timeout: .now() + .nanoseconds(Int(leftNs))) == .success, let (result, index) = answer.withLock({ $0 }) else {
                return .failure(.unavailable("the meta group did not answer within \(timeoutMs) ms"))
            }
            if case .success = result {
                // Taken at the leader: the statement after this one reads this node's copy.
                let leftMs = deadlineNs > monotonicNowNs() ? (deadlineNs - monotonicNowNs()) / 1_000_000 : 0
                guard machine.waitApplied(through: index, timeoutMs: leftMs) else {
                    return .failure(.unavailable("the meta group took it, but this node has not applied it within \(timeoutMs) ms"))
                }
                return result
            }
            guard case .failure(.unavailable) = result, monotonicNowNs() + Self.retryMs * 1_000_000 < deadlineNs else { return result }
            Thread.sleep(forTimeInterval: Double(Self.retryMs) / 1000)  // an election takes a few ticks: ask again after one
        }
    }

    static let retryMs: UInt64 = 100
    /// How long a statement waits for the meta group (an election after a member died included).
    static let statementTimeoutMs: UInt64 = 15_000

    /// A member's call at this node: proposed here when this node leads.
    /// A member not leading passes on (once) what a node outside the group sends: such a node
    /// does not know the leader. A joining node (provisional ID) may only register.
    private func answerPropose(from: UInt64, body: [UInt8], reply: @escaping @Sendable (Result<[UInt8], PeerCallError>) -> Void) {
        let fromMember = from >= 1 && from <= NodeID(memberCount)
        guard consensus.leader(of: Self.group) == nodeID || (isMember && !fromMember) else {
            return reply(.failure(.failed("node \(nodeID) does not lead the meta group")))
        }
        let command: MetaCommand
        do { command = try MetaCommand(decoding: body) } catch { return reply(.failure(.failed("a meta command from node \(from) does not decode: \(error)"))) }
        if PeerIdentity.isProvisional(from) {
            guard case .registerNode(_, _, _, 0) = command else { return reply(.failure(.failed("a joining node may only register"))) }
        }
        proposeIndexed(command) { result, index in reply(.success(Self.encodeAnswer(result, appliedIndex: index))) }
    }

    /// Pulls the meta state at the next tick (a data-only node; a member's copy follows its log).
    /// `stale`: a peer's request named a newer meta index than this copy's (counted as a stale pull).
    func refreshSoon(stale: Bool = false) {
        guard !isMember else { return }
        if stale { stalePulls.add(1, ordering: .relaxed) }
        pullDueNs.store(0, ordering: .relaxed)
    }

    /// The meta group's leader as this node knows it (a data-only node: as a member told it).
    var leaderID: NodeID? {
        if isMember { return consensus.leader(of: Self.group) }
        let mirrored = mirroredLeader.load(ordering: .relaxed)
        return mirrored == 0 ? nil : mirrored
    }





    /// Whether the meta state holds this node as it is now (its addresses, not Unknown).
    var isRegistered: Bool {
        guard let client = clientAddress.withLock({ $0 }), let known = machine.current.nodes[nodeID] else { return false }
        return known.clientAddress == client && known.internalAddress == internalAddress && known.status != .unknown
    }

    /// Asks `peer` for the cluster settings it was made with; `completion` runs on the loop.
    func fetchSettings(of peer: NodeID, completion: @escaping @Sendable (Result<ClusterSettings, PeerCallError>) -> Void) {
        guard let transport else { return completion(.failure(.unreachable("no transport"))) }
        Self.fetchSettings(of: peer, over: transport, completion: completion)
    }

    /// Asks `peer` over `transport` for its cluster settings (a joining node has no agent yet).
    static func fetchSettings(of peer: NodeID, over transport: PeerTransport,
                              completion: @escaping @Sendable (Result<ClusterSettings, PeerCallError>) -> Void) {
        transport.call(peer, method: Self.settingsMethod, body: [], timeoutMs: 2000) { result in
            completion(result.flatMap { bytes in
                var reader = ByteReader(bytes)
                guard let settings = try? ClusterSettings(from: &reader), reader.isAtEnd else {
                    return .failure(.failed("node \(peer)'s settings do not decode"))
                }
                return .success(settings)
            })
        }
    }

    /// Every tick: register when needed; as leader, send heartbeats and follow the nodes'
    /// answers and links.
    func tick() {
        let nowNs = monotonicNowNs()
        if nowNs >= pullDueNs.load(ordering: .relaxed) {
            pullDueNs.store(nowNs + Self.pullEveryMs * 1_000_000, ordering: .relaxed)
            pullState()
        }
        learnAddresses()
        registerIfNeeded()
        reportDisk()
        let leads = isMember && consensus.leader(of: Self.group) == nodeID
        if leads && !ledAtLastTick.load(ordering: .relaxed) {
            heartbeats.reset()
            lastHeartbeatNs.store(0, ordering: .relaxed)
        }
        ledAtLastTick.store(leads, ordering: .relaxed)
        if leads {
            sendHeartbeats()
            followLinks()
            pushRouteMap()
        }
    }




    // MARK: - The answer of a propose call

    /// `[kind][payload]`, a success followed by the meta log index applied when it was answered.
    static func encodeAnswer(_ result: Result<MetaState.Outcome, MetaProposeError>, appliedIndex: UInt64) -> [UInt8] {
        var writer = ByteWriter()
        switch result {
        case .success(.done):
            writer.write(0)
            writer.write(varint: appliedIndex)
        case .success(.node(let id)):
            writer.write(1)
            writer.write(varint: id)
            writer.write(varint: appliedIndex)
        case .failure(.refused(let error)):
            writer.write(2)
            writer.write(varint: UInt64(max(0, error.code)))
            writer.write(lengthPrefixed: error.message)
        case .failure(.unavailable(let why)):
            writer.write(3)
            writer.write(lengthPrefixed: why)
        }
        return writer.bytes
    }

    static func decodeAnswer(_ bytes: [UInt8]) -> (Result<MetaState.Outcome, MetaProposeError>, UInt64) {
        var reader = ByteReader(bytes)
        do {
            switch try reader.readByte() {
            case 0: return (.success(.done), try reader.readVarint())
            case 1:
                let id = try reader.readVarint()
                return (.success(.node(id)), try reader.readVarint())
            case 2:
                let code = try reader.readCount(max: 1 << 20, what: "code")
                return (.failure(.refused(MetaError(code: code, try reader.readText(max: 4096) ?? ""))), 0)
            default: return (.failure(.unavailable(try reader.readText(max: 4096) ?? "")), 0)
            }
        } catch {
            return (.failure(.unavailable("the meta leader's answer does not decode: \(error)")), 0)
        }
    }
}
