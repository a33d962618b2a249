import Foundation
import Synchronization
import TidemarkCluster
import TidemarkConfig
import TidemarkConsensus
import TidemarkCore
import TidemarkQuery
import TidemarkStages
import TidemarkStorage

/// Counters of forward-or-reject routing, for `/metrics`.
final class RouteMetrics: Sendable {
    /// Write parts this node, as coordinator, sent to another node (retries included).
    let partsSent = Atomic<Int>(0)
    /// Write parts received from coordinators.
    let partsReceived = Atomic<Int>(0)
    /// Parts this node, a follower of their group, passed on to the leader.
    let partsForwarded = Atomic<Int>(0)
    /// WRONG_GROUP answers this node gave (it holds no replica of the group).
    let wrongGroupAnswered = Atomic<Int>(0)
    /// WRONG_GROUP answers this node got as coordinator.
    let wrongGroupHeard = Atomic<Int>(0)
    /// Parts and fragments sent again (elsewhere, or once a leader was elected).
    let retries = Atomic<Int>(0)
    let fragmentsSent = Atomic<Int>(0)
    let fragmentsReceived = Atomic<Int>(0)
}

/// The data plane between the nodes of a cluster (DESIGN.md section 3): a coordinator's
/// write parts and query fragments go to the nodes that serve their region groups, over the
/// internal RPC, and come back answered. A write part is sent to the group's leader as known
/// here (else a replica); a follower passes it on once to its leader, a node without a
/// replica answers WRONG_GROUP with its route version and a hint, and the coordinator then
/// refreshes its copy of the table and sends it again elsewhere, at most `retries_max` times
/// within `timeout_ms`. While a group elects its leader the part is sent again after a pause,
/// within the same time.
final class DataPlane: Sendable {
    static let writePartMethod: UInt16 = 20
    static let fragmentMethod: UInt16 = 21

    let transport: PeerTransport
    let agent: MetaAgent
    let regions: RegionSet
    let metrics = RouteMetrics()
    let settings: RouteSettings
    /// Points a received part may hold (`storage.write_points_max`).
    let pointsMax: Int
    let scanBatchPoints: Int
    /// Offers a received part to the append stage; false when it is full.
    private let submitWrite: @Sendable (WriteJob) -> Bool
    /// Offers a received fragment's work to the query stage; false when it is full.
    private let submitQuery: @Sendable (StageTask) -> Bool

    init(transport: PeerTransport, agent: MetaAgent, regions: RegionSet, settings: RouteSettings, pointsMax: Int, scanBatchPoints: Int,
         submitWrite: @escaping @Sendable (WriteJob) -> Bool, submitQuery: @escaping @Sendable (StageTask) -> Bool) {
        self.transport = transport
        self.agent = agent
        self.regions = regions
        self.settings = settings
        self.pointsMax = pointsMax
        self.scanBatchPoints = scanBatchPoints
        self.submitWrite = submitWrite
        self.submitQuery = submitQuery
        agent.dataCalls.withLock {
            $0 = { [weak self] from, method, body, reply in
                guard let self else { return reply(.failure(.failed("the node is stopping"))) }
                switch method {
                case Self.writePartMethod: receiveWritePart(body, reply: reply)
                case Self.fragmentMethod: receiveFragment(body, reply: reply)
                default: reply(.failure(.failed("unknown method \(method)")))
                }
            }
        }
    }

    private var nodeID: UInt64 { agent.nodeID }
    /// How long a write waits before it is tried again on this node's own replica, electing.
    static let electionPauseMs: UInt64 = 50

    // MARK: Coordinator: writes

    /// One part on its way: where it was sent, how often, until when.
    private final class PartSend: Sendable {
        let job: WriteJob
        let group: GroupID
        let body: [UInt8]
        let deadlineNs: UInt64
        struct Tries {
            var asked: Set<UInt64> = []
            var retries = 0
            var pauses = 0
        }
        let tries = Mutex(Tries())

        init(job: WriteJob, group: GroupID, body: [UInt8], deadlineNs: UInt64) {
            self.job = job
            self.group = group
            self.body = body
            self.deadlineNs = deadlineNs
        }
    }

    /// Sends `job` (a client's rows of `group`, which this node does not lead) to the node
    /// that does, answering the job once that node did; `hint` is the leader as this node's
    /// replica of the group knows it.
    func send(_ job: WriteJob, to group: GroupID, hint: UInt64?) {
        var job = job
        if job.routeDeadlineNs == 0 { job.routeDeadlineNs = monotonicNowNs() + UInt64(settings.timeoutMs) * 1_000_000 }
        let state = agent.machine.current
        let part = WritePart(group: group, hops: 1, metaIndex: state.appliedIndex, rows: job.rows, lines: job.units.map(\.line),
                             unitRows: job.units.map(\.rows))
        let send = PartSend(job: job, group: group, body: part.encoded(), deadlineNs: job.routeDeadlineNs)
        attempt(send, hint: hint, again: nil)
    }

    /// Sends the part to the next node: `hint` first, or `again` (the node asked last, after a pause).
    private func attempt(_ send: PartSend, hint: UInt64?, again: UInt64?) {
        let state = agent.machine.current
        let asked = send.tries.withLock { $0.asked }
        let replicas = state.groups[send.group]?.replicas ?? []
        let candidates = [again, hint, state.groups[send.group]?.leaderHint].compactMap { $0 } + replicas
        guard let node = candidates.first(where: { $0 != nodeID && ($0 == again || !asked.contains($0)) }) else {
            // This node's own replica is the one left (electing, or the group's only one): the
            // job comes round again through the append stage after a pause.
            if regions.region(send.group) != nil, monotonicNowNs() + Self.electionPauseMs * 1_000_000 < send.deadlineNs {
                metrics.retries.add(1, ordering: .relaxed)
                let job = send.job, submitWrite = submitWrite
                DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(Self.electionPauseMs))) {
                    if !submitWrite(job) { job.finish(.refusedBy("append", .overloaded)) }
                }
                return
            }
            return finish(send, WriteOutcome(refused: send.job.decodeErrors, failure: "no replica of region group \(send.group) could take the write; retry",
                                             failureStatus: 503))
        }
        send.tries.withLock { _ = $0.asked.insert(node) }
        let now = monotonicNowNs()
        guard send.deadlineNs > now else {
            return finish(send, WriteOutcome(refused: send.job.decodeErrors, failure: "region group \(send.group) did not take the write within \(settings.timeoutMs) ms; retry",
                                             failureStatus: 503))
        }
        metrics.partsSent.add(1, ordering: .relaxed)
        transport.call(node, method: Self.writePartMethod, body: send.body, timeoutMs: max(1, (send.deadlineNs - now) / 1_000_000)) { [self] result in
            switch result {
            case .success(let bytes):
                guard let answer = try? WritePartAnswer(decoding: bytes) else {
                    return finish(send, WriteOutcome(refused: send.job.decodeErrors, failure: "node \(node) answered the write with bytes that do not decode",
                                                     failureStatus: 500))
                }
                heard(answer, from: node, for: send)
            case .failure(let error):
                retryElsewhere(send, hint: nil, problem: "node \(node): \(error)")
            }
        }
    }

    private func heard(_ answer: WritePartAnswer, from node: UInt64, for send: PartSend) {
        if answer.wrongGroupVersion != nil {
            metrics.wrongGroupHeard.add(1, ordering: .relaxed)
            agent.refreshSoon()
            return retryElsewhere(send, hint: answer.leaderHint, problem: answer.failure ?? "WRONG_GROUP")
        }
        // Not the leader, or no leader yet, or busy for a moment: nothing of it was written.
        if answer.failureStatus == 503, answer.stage == nil, answer.failure != nil {
            if let leader = answer.leaderHint, leader != node, leader != nodeID {
                return retryElsewhere(send, hint: leader, problem: answer.failure!)
            }
            return pauseThenRetry(send, at: node, answer: answer)
        }
        finish(send, Self.outcome(of: answer, decodeErrors: send.job.decodeErrors))
    }

    private func retryElsewhere(_ send: PartSend, hint: UInt64?, problem: String) {
        let allowed = send.tries.withLock { tries -> Bool in
            tries.retries += 1
            return tries.retries <= settings.retriesMax
        }
        guard allowed, monotonicNowNs() < send.deadlineNs else {
            return finish(send, WriteOutcome(refused: send.job.decodeErrors, failure: "region group \(send.group) could not take the write: \(problem); retry",
                                             failureStatus: 503))
        }
        metrics.retries.add(1, ordering: .relaxed)
        attempt(send, hint: hint, again: nil)
    }

    /// The group is electing, or its leader busy: asked again after a pause that doubles (50 ms
    /// to 800 ms), until `timeout_ms`; then the last answer is the write's.
    private func pauseThenRetry(_ send: PartSend, at node: UInt64, answer: WritePartAnswer) {
        let pauses = send.tries.withLock { tries -> Int in
            tries.pauses += 1
            return tries.pauses
        }
        let pauseMs = UInt64(50 << min(4, pauses - 1))
        guard monotonicNowNs() + pauseMs * 1_000_000 < send.deadlineNs else {
            return finish(send, Self.outcome(of: answer, decodeErrors: send.job.decodeErrors))
        }
        metrics.retries.add(1, ordering: .relaxed)
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(pauseMs))) { [self] in
            attempt(send, hint: nil, again: node)
        }
    }

    private func finish(_ send: PartSend, _ outcome: WriteOutcome) { send.job.finish(outcome) }

    /// A follower's pass of a coordinator's part to its leader (once: the leader writes or refuses).
    func passOn(_ job: WriteJob, pin: WritePin, to leader: UInt64) {
        metrics.partsForwarded.add(1, ordering: .relaxed)
        let part = WritePart(group: pin.group, hops: 2, metaIndex: pin.metaIndex, rows: job.rows, lines: job.units.map(\.line),
                             unitRows: job.units.map(\.rows))
        transport.call(leader, method: Self.writePartMethod, body: part.encoded(), timeoutMs: UInt64(settings.timeoutMs)) { result in
            switch result {
            case .success(let bytes):
                guard let answer = try? WritePartAnswer(decoding: bytes) else {
                    return job.finish(WriteOutcome(refused: [], failure: "leader \(leader) answered with bytes that do not decode", failureStatus: 500))
                }
                job.finish(Self.outcome(of: answer, decodeErrors: []))
            case .failure(let error):
                var outcome = WriteOutcome(refused: [], failure: "the leader of \(pin.group), node \(leader), did not take the write: \(error)", failureStatus: 503)
                outcome.leaderNode = leader
                job.finish(outcome)
            }
        }
    }

    static func outcome(of answer: WritePartAnswer, decodeErrors: [SourceError]) -> WriteOutcome {
        var outcome = WriteOutcome(refused: (decodeErrors + answer.refused).sorted { $0.line < $1.line }, failure: answer.failure,
                                   failureStatus: answer.failureStatus)
        outcome.stage = answer.stage
        outcome.leaderAddress = answer.leaderAddress
        outcome.leaderNode = answer.leaderHint
        outcome.wrongGroupVersion = answer.wrongGroupVersion
        return outcome
    }

    static func answer(of outcome: WriteOutcome) -> WritePartAnswer {
        WritePartAnswer(refused: outcome.refused, failure: outcome.failure, failureStatus: outcome.failureStatus, stage: outcome.stage,
                        leaderAddress: outcome.leaderAddress, leaderHint: outcome.leaderNode, wrongGroupVersion: outcome.wrongGroupVersion)
    }

    // MARK: Receiver: writes

    /// A coordinator's part (on the loop): once this node's copy of the meta state has what the
    /// coordinator placed it by, it goes to the append stage, pinned to its group.
    private func receiveWritePart(_ body: [UInt8], reply: @escaping @Sendable (Result<[UInt8], PeerCallError>) -> Void) {
        let part: WritePart
        do { part = try WritePart(decoding: body, pointsMax: pointsMax) } catch {
            return reply(.failure(.failed("a write part that does not decode: \(error)")))
        }
        metrics.partsReceived.add(1, ordering: .relaxed)
        let units = zip(part.lines, part.unitRows).map { WriteJob.Unit(line: $0, rows: $1) }
        var job = WriteJob(rows: part.rows, units: units, decodeErrors: []) { outcome in reply(.success(Self.answer(of: outcome).encoded())) }
        job.pin = WritePin(group: part.group, hops: part.hops, metaIndex: part.metaIndex)
        if agent.machine.appliedIndex < part.metaIndex { agent.refreshSoon(stale: true) }
        agent.machine.whenApplied(through: part.metaIndex) { [submitWrite, job] in
            if !submitWrite(job) { job.finish(.refusedBy("append", .overloaded)) }
        }
    }

    /// What the append stage does with `jobs` of `group` when this node does not lead it: a
    /// client's rows go to the leader (this node coordinates); a coordinator's part is passed
    /// on once by a follower, and refused WRONG_GROUP where no replica is held. Returns the
    /// jobs left to the group's writer here (it refuses them, naming the leader).
    func route(_ jobs: [WriteJob], of group: GroupID, region: LocalRegion?) -> [WriteJob] {
        let leader = region?.consensus.leader(of: group)
        var left: [WriteJob] = []
        for job in jobs {
            guard let pin = job.pin else {
                send(job, to: group, hint: leader)
                continue
            }
            guard region != nil else {
                metrics.wrongGroupAnswered.add(1, ordering: .relaxed)
                let state = agent.machine.current
                job.finish(Self.outcome(of: .wrongGroup(group, routeVersion: state.routeVersion, leaderHint: state.groups[group]?.leaderHint),
                                        decodeErrors: []))
                continue
            }
            if pin.hops < WritePart.hopsMax, let leader, leader != nodeID {
                passOn(job, pin: pin, to: leader)
            } else {
                left.append(job)
            }
        }
        return left
    }

    // MARK: Fragments

    /// The way the coordinator's `ClusterStore` reaches regions: its own served here, others through calls.
    var access: ClusterStore.Access {
        let regions = regions, agent = agent, transport = transport, metrics = metrics, timeoutMs = UInt64(settings.timeoutMs)
        let nodeID = agent.nodeID
        return ClusterStore.Access(
            local: { group, weak in
                guard let region = regions.region(group, openingFrom: agent.machine.current),
                      weak || region.consensus.leader(of: group) == nodeID else { return nil }
                return region.engine
            },
            leader: { group in regions.region(group)?.consensus.leader(of: group) },
            call: { node, fragment, completion in
                metrics.fragmentsSent.add(1, ordering: .relaxed)
                transport.call(node, method: Self.fragmentMethod, body: fragment.encoded(), timeoutMs: timeoutMs) { result in
                    switch result {
                    case .success(let bytes): completion(Result { try FragmentAnswer(decoding: bytes) })
                    case .failure(let error): completion(.failure(error))
                    }
                }
            })
    }

    /// A coordinator's fragment (on the loop): run on the query stage once this node's copy of
    /// the meta state has what the coordinator planned it by.
    private func receiveFragment(_ body: [UInt8], reply: @escaping @Sendable (Result<[UInt8], PeerCallError>) -> Void) {
        let fragment: Fragment
        do { fragment = try Fragment(decoding: body) } catch { return reply(.failure(.failed("a fragment that does not decode: \(error)"))) }
        metrics.fragmentsReceived.add(1, ordering: .relaxed)
        if agent.machine.appliedIndex < fragment.metaIndex { agent.refreshSoon(stale: true) }
        agent.machine.whenApplied(through: fragment.metaIndex) { [self] in
            let accepted = submitQuery(StageTask { [self] in reply(.success(run(fragment).encoded())) })
            if !accepted { reply(.success(FragmentAnswer.failed(.unavailable("the query stage of node \(nodeID) is overloaded; retry", leaderAddress: nil)).encoded())) }
        }
    }

    /// Runs a fragment over the regions it names, when this node leads them all (holds them,
    /// for a weak read); else says where they are.
    func run(_ fragment: Fragment) -> FragmentAnswer {
        let state = agent.machine.current
        var engines: [StorageEngine] = []
        var leaders: [GroupID: UInt64] = [:]
        var served = true
        for group in fragment.groups {
            guard let region = regions.region(group, openingFrom: state) else {
                served = false
                if let hint = state.groups[group]?.leaderHint { leaders[group] = hint }
                continue
            }
            let leader = region.consensus.leader(of: group)
            guard fragment.weak || leader == nodeID else {
                served = false
                if let leader { leaders[group] = leader }
                continue
            }
            engines.append(region.engine)
        }
        guard served else { return .elsewhere(routeVersion: state.routeVersion, leaders: leaders) }
        return FragmentRunner.run(fragment.operation, on: engines, scanBatchPoints: scanBatchPoints)
    }
}
