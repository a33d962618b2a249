import TidemarkIO
import Foundation
import Logging
import Synchronization
import Testing
import TidemarkConsensus
import TidemarkStorage
import TidemarkTestSupport

/// A register per key (`key=value`), recording each source's order of application.
private final class Registers: StateMachine, Sendable {
    let values = Mutex<[String: String]>([:])
    let applied = Mutex<[String]>([])
    let retention = Mutex<LogRetention?>(nil)
    /// What the last restored image covered (as a region's files would): applied again, skipped.
    let restoredThrough = Mutex<UInt64>(0)
    /// Holds `snapshot()` until the test opens it.
    let snapshotGate = Mutex<Gate?>(nil)

    func apply(_ entry: CommittedEntry) throws {
        guard entry.index > restoredThrough.withLock({ $0 }) else { return }
        let text = String(decoding: entry.data, as: UTF8.self)
        let parts = text.split(separator: "=", maxSplits: 1)
        guard parts.count == 2 else { throw CorruptDataError("not key=value: \(text)") }
        values.withLock { $0[String(parts[0])] = String(parts[1]) }
        applied.withLock { $0.append(text) }
    }

    /// Every register, a `key=value` line each.
    func snapshot() throws -> StateSnapshot {
        snapshotGate.withLock { $0 }?.pass()
        let lines = values.withLock { $0.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)\n" } }
        return StateSnapshot(index: 0, term: 1, data: Array(lines.joined().utf8))
    }

    func restore(_ snapshot: StateSnapshot) throws {
        var restored: [String: String] = [:]
        for line in String(decoding: snapshot.data, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1)
            guard parts.count == 2 else { throw CorruptDataError("not key=value: \(line)") }
            restored[String(parts[0])] = String(parts[1])
        }
        values.withLock { $0 = restored }
        restoredThrough.withLock { $0 = snapshot.index }
    }

    func attach(logRetention: LogRetention) { retention.withLock { $0 = logRetention } }
}

/// Messages between the nodes of one test, delivered when the test pumps them (a node's
/// round holds its lock; delivering inside it would deadlock two nodes answering each other).
private final class Wire: Sendable {
    let queue = Mutex<[(to: UInt64, messages: [ReplicationMessage])]>([])
    let down = Mutex<Set<UInt64>>([])
    /// Messages delivered, by kind.
    let delivered = Mutex<[MultiLeaderMessage.Kind: Int]>([:])

    func endpoint() -> Endpoint { Endpoint(wire: self) }

    /// Delivers until nothing is in flight; messages to or from a node that is down are lost.
    func pump(_ nodes: [UInt64: MultiLeaderConsensus]) {
        for _ in 0..<10_000 {
            let batch = queue.withLock { queue in defer { queue = [] }; return queue }
            if batch.isEmpty { return }
            let isDown = down.withLock { $0 }
            for item in batch where !isDown.contains(item.to) && !isDown.contains(item.messages[0].message.from) {
                delivered.withLock { counts in for message in item.messages { counts[message.message.kind, default: 0] += 1 } }
                nodes[item.to]?.receive(item.messages)
            }
        }
        Issue.record("the wire did not settle")
    }

    final class Endpoint: ReplicationTransport, Sendable {
        let wire: Wire
        init(wire: Wire) { self.wire = wire }
        func send(to node: UInt64, _ messages: [ReplicationMessage]) { wire.queue.withLock { $0.append((node, messages)) } }
    }
}

private let group = GroupID(kind: .data, number: 0)
private let peers = (1...3).map { Peer(id: UInt64($0), address: "127.0.0.1:\(10_000 + $0)") }

/// Node `id` of the test's group, created (or reopened) with the configured peers.
private func node(_ id: UInt64, _ directory: String, _ wire: Wire, _ machine: Registers, lagEntriesMax: Int = 100) throws -> MultiLeaderConsensus {
    let consensus = process(id, directory, wire, lagEntriesMax: lagEntriesMax)
    try consensus.createGroup(group, peers: peers, stateMachine: machine)
    return consensus
}

/// Node `id`'s consensus, hosting no group yet; images go in pieces of 16 bytes, their work
/// done at once or, given `imageQueue`, there.
private func process(_ id: UInt64, _ directory: String, _ wire: Wire, lagEntriesMax: Int = 100,
                     imageQueue: DispatchQueue? = nil) -> MultiLeaderConsensus {
    var settings = MultiLeaderConsensus.Settings()
    settings.lagEntriesMax = lagEntriesMax
    settings.batchEntriesMax = 4
    settings.imageChunkBytes = 16
    settings.imageIdleTicks = 3
    guard let imageQueue else {
        return MultiLeaderConsensus(nodeID: id, directory: directory + "/n\(id)", transport: wire.endpoint(), settings: settings)
    }
    return MultiLeaderConsensus(nodeID: id, directory: directory + "/n\(id)", transport: wire.endpoint(), settings: settings,
                                imageOn: { work in imageQueue.async(execute: work); return true })
}

/// Writes and returns the answer (given before `write` returns: the entry is durable and applied).
private func write(_ consensus: MultiLeaderConsensus, _ text: String, to target: GroupID = group) -> Result<UInt64, ConsensusError> {
    let result = Mutex<Result<UInt64, ConsensusError>?>(nil)
    consensus.write(target, Proposal(data: Array(text.utf8), local: text)) { answer in result.withLock { $0 = answer } }
    return result.withLock { $0 }!
}

/// Nodes 1…3 of one group, each with its own state machine.
private func threeNodes(_ directory: String, _ wire: Wire, lagEntriesMax: Int = 100) throws -> ([Registers], [UInt64: MultiLeaderConsensus]) {
    let machines = (1...3).map { _ in Registers() }
    var nodes: [UInt64: MultiLeaderConsensus] = [:]
    for id in 1...3 { nodes[UInt64(id)] = try node(UInt64(id), directory, wire, machines[id - 1], lagEntriesMax: lagEntriesMax) }
    return (machines, nodes)
}

/// Ticks and delivers until every node has shipped all it keeps for its peers (at most 10 rounds).
private func shipUntilNothingIsKept(_ nodes: [UInt64: MultiLeaderConsensus], _ wire: Wire) {
    for _ in 0..<10 where nodes.values.contains(where: { $0.retainedEntries(group) != 0 }) {
        for consensus in nodes.values { consensus.tick() }
        wire.pump(nodes)
    }
}

/// Node 3 unreachable: node 1 takes `bound` writes (`a0=0`…, kept for node 3), then refuses
/// the next as busy. Returns why, or nil (recorded as an issue) when it went otherwise.
private func fillUntilThrottled(_ nodes: [UInt64: MultiLeaderConsensus], _ wire: Wire, bound: Int) -> String? {
    wire.down.withLock { $0 = [3] }
    for index in 0..<bound {
        guard case .success = write(nodes[1]!, "a\(index)=\(index)") else { Issue.record("write \(index) refused"); return nil }
        wire.pump(nodes)
    }
    guard case .failure(.busy(let why)) = write(nodes[1]!, "a\(bound)=\(bound)") else {
        Issue.record("a write past the lag bound was taken")
        return nil
    }
    return why
}

@Suite struct MultiLeaderConsensusTests {
    @Test func everyReplicaTakesWritesAndAllConvergeInEachSourcesOrder() throws {
        let directory = try temporaryDirectory("multileader")
        let wire = Wire()
        let (machines, nodes) = try threeNodes(directory, wire)
        for round in 0..<10 {
            for id in 1...3 {
                guard case .success = write(nodes[UInt64(id)]!, "n\(id)-k\(round % 3)=v\(round)") else {
                    Issue.record("node \(id) refused a write")
                    return
                }
            }
            if round % 4 == 0 { wire.pump(nodes) }
        }
        wire.pump(nodes)
        let expected = machines[0].values.withLock { $0 }
        #expect(expected.count == 9 && expected["n2-k0"] == "v9")
        for machine in machines {
            #expect(machine.values.withLock { $0 } == expected)
            // Each source's writes in its order, once.
            for source in 1...3 {
                let mine = machine.applied.withLock { $0 }.filter { $0.hasPrefix("n\(source)-") }
                #expect(mine == (0..<10).map { "n\(source)-k\($0 % 3)=v\($0)" })
            }
        }
        // Everyone has everything: nothing is kept for a peer.
        for id in 1...3 { #expect(nodes[UInt64(id)]!.retainedEntries(group) == 0) }
        #expect(nodes[1]!.leader(of: group) == 1 && nodes[2]!.leader(of: group) == 2)
        for consensus in nodes.values { consensus.close() }
    }

    @Test func aLaggingPeerThrottlesWritesAndARestartedSourceShipsFromItsLog() throws {
        let directory = try temporaryDirectory("multileader")
        let wire = Wire()
        let (machines, started) = try threeNodes(directory, wire, lagEntriesMax: 5)
        var nodes = started

        // Node 3 is unreachable: node 1 keeps its entries for it, up to the bound, then refuses.
        guard let why = fillUntilThrottled(nodes, wire, bound: 5) else { return }
        #expect(why.contains("node 3 lags 5 entries"))
        #expect(nodes[1]!.retainedEntries(group) == 5)
        #expect(machines[1].values.withLock { $0.count } == 5 && machines[2].values.withLock { $0.isEmpty })

        // Node 1 restarts (its state machine starts empty: the log is its WAL) while 3 is still away.
        nodes[1]!.close()
        let restartedMachine = Registers()
        nodes[1] = try node(1, directory, wire, restartedMachine, lagEntriesMax: 5)
        #expect(restartedMachine.values.withLock { $0.count } == 5)
        #expect(nodes[1]!.retainedEntries(group) == 5)

        // Node 3 comes back: the restarted node ships what it lacks, in order, once; writes flow again.
        wire.down.withLock { $0 = [] }
        for _ in 0..<5 {
            nodes[1]!.tick()
            wire.pump(nodes)
        }
        #expect(machines[2].applied.withLock { $0 } == (0..<5).map { "a\($0)=\($0)" })
        #expect(nodes[1]!.retainedEntries(group) == 0)
        guard case .success = write(nodes[1]!, "a5=5") else { Issue.record("writes still refused after the peer caught up"); return }
        wire.pump(nodes)
        #expect(machines[2].values.withLock { $0["a5"] } == "5" && machines[1].values.withLock { $0["a5"] } == "5")
        for consensus in nodes.values { consensus.close() }
    }

    @Test func theLogIsReleasedOnlyOnceFlushedAndShippedAndProgressSurvives() throws {
        let directory = try temporaryDirectory("multileader")
        let wire = Wire()
        let (machines, started) = try threeNodes(directory, wire)
        var nodes = started
        wire.down.withLock { $0 = [3] }
        var last: UInt64 = 0
        for index in 0..<6 {
            guard case .success(let at) = write(nodes[1]!, "b\(index)=\(index)") else { Issue.record("refused"); return }
            last = at
        }
        // The state machine flushed everything; node 3 still lacks the entries, so they stay.
        try machines[0].retention.withLock { try $0!.checkpoint(); try $0!.release(through: last) }
        wire.pump(nodes)
        nodes[1]!.tick()
        #expect(nodes[1]!.retainedEntries(group) == 6)
        // A restart now still finds them in the log, to ship.
        nodes[1]!.close()
        nodes[1] = try node(1, directory, wire, machines[0])
        #expect(nodes[1]!.retainedEntries(group) == 6)
        wire.down.withLock { $0 = [] }
        for _ in 0..<5 {
            nodes[1]!.tick()
            wire.pump(nodes)
        }
        #expect(nodes[1]!.retainedEntries(group) == 0)
        // Released now; a restart finds the progress (what it applied, what peers have) and
        // numbers the next write after the last, so receivers take it.
        nodes[1]!.close()
        nodes[1] = try node(1, directory, wire, Registers())
        guard case .success = write(nodes[1]!, "b6=6") else { Issue.record("refused after restart"); return }
        wire.pump(nodes)
        #expect(machines[1].values.withLock { $0["b6"] } == "6" && machines[2].values.withLock { $0["b6"] } == "6")
        #expect(machines[2].applied.withLock { $0 }.filter { $0.hasPrefix("b") } == (0...6).map { "b\($0)=\($0)" })
        for consensus in nodes.values { consensus.close() }
    }

    /// The file that held the latest progress can be released (the state machine flushed a
    /// later entry from another source); the progress is written again first.
    @Test func progressSurvivesTheReleaseOfTheFileThatHeldIt() throws {
        let directory = try temporaryDirectory("multileader")
        let wire = Wire()
        let (machines, started) = try threeNodes(directory, wire)
        var nodes = started
        for index in 0..<3 { _ = write(nodes[1]!, "c\(index)=\(index)") }
        wire.pump(nodes)  // acknowledged: node 1's progress goes into its first log file
        try machines[0].retention.withLock { try $0!.checkpoint() }
        _ = write(nodes[2]!, "d0=0")  // applied on node 1 into its second file; its progress does not change
        wire.pump(nodes)
        try machines[0].retention.withLock { try $0!.release(through: 1_000) }
        nodes[1]!.tick()
        nodes[1]!.close()
        nodes[1] = try node(1, directory, wire, Registers())
        guard case .success = write(nodes[1]!, "c3=3") else { Issue.record("refused after restart"); return }
        wire.pump(nodes)
        #expect(machines[1].applied.withLock { $0 }.filter { $0.hasPrefix("c") } == (0...3).map { "c\($0)=\($0)" })
        for consensus in nodes.values { consensus.close() }
    }
    @Test func aRemovedPeerNoLongerHoldsBackWritesAndStaysRemovedAfterARestart() throws {
        let directory = try temporaryDirectory("multileader")
        let wire = Wire()
        let (machines, started) = try threeNodes(directory, wire, lagEntriesMax: 3)
        var nodes = started
        // Node 3 is gone for good: node 1 keeps its entries for it, up to the bound.
        guard fillUntilThrottled(nodes, wire, bound: 3) != nil else { return }
        #expect(nodes[1]!.retainedEntries(group) == 3)

        // Removed: nothing is kept for it any more (node 2 has everything), and writes go on.
        try nodes[1]!.removePeer(group, 3)
        #expect(nodes[1]!.retainedEntries(group) == 0)
        #expect(throws: ConsensusError.refused("node 3 is not a peer of \(group)")) { try nodes[1]!.removePeer(group, 3) }
        for index in 3..<6 {
            guard case .success = write(nodes[1]!, "a\(index)=\(index)") else { Issue.record("write \(index) refused after the removal"); return }
            wire.pump(nodes)
        }
        #expect(machines[1].values.withLock { $0.count } == 6)

        // The log files that held the removal go (flushed and shipped); then node 1 restarts
        // with the configured peers, node 3 among them: it stays out.
        try machines[0].retention.withLock { try $0!.checkpoint() }
        try machines[0].retention.withLock { try $0!.release(through: 1_000) }
        nodes[1]!.tick()
        nodes[1]!.close()
        let restarted = Registers()
        nodes[1] = try node(1, directory, wire, restarted, lagEntriesMax: 3)
        for index in 6..<10 {
            guard case .success = write(nodes[1]!, "a\(index)=\(index)") else { Issue.record("write \(index) refused after the restart"); return }
            wire.pump(nodes)
        }
        #expect(nodes[1]!.retainedEntries(group) == 0)
        // Node 3 is back on the wire: node 1 neither ships to it nor applies what it sends.
        wire.down.withLock { $0 = [] }
        _ = write(nodes[3]!, "z=from-3")
        for _ in 0..<4 {
            for consensus in nodes.values { consensus.tick() }
            wire.pump(nodes)
        }
        #expect(machines[2].values.withLock { $0 } == ["z": "from-3"])  // its own write, none of node 1's
        #expect(machines[1].values.withLock { $0["z"] } == "from-3")  // node 2 still counts 3 as a peer
        #expect(restarted.values.withLock { $0["z"] } == nil && restarted.values.withLock { $0["a9"] } == "9")
        #expect(throws: ConsensusError.unsupported("a replica cannot remove itself: delete the group on this node")) {
            try nodes[1]!.removePeer(group, 1)
        }
        for consensus in nodes.values { consensus.close() }
    }

    /// Node 4 joins a running group: every member adds it, it takes an image from node 1
    /// (in pieces, across a restart of its own before the first), then every source's later
    /// writes, in order, once; its own writes reach the others; members that restart with
    /// the configured peers (node 4 not among them) keep it.
    @Test func aNewReplicaJoinsFromAnImageAndTakesPartInTheGroup() throws {
        let directory = try temporaryDirectory("multileader")
        let wire = Wire()
        let (machines, started) = try threeNodes(directory, wire)
        var nodes = started
        var written: [UInt64: [String]] = [:]  // each source's writes, in its order
        func writeRound(_ round: Int, on sources: [UInt64]) {
            for id in sources {
                // Keys k4 and k5 are written only before node 4 joins: it has them from its image.
                let text = "n\(id)-k\(round < 6 ? round : round % 4)=v\(round)"
                guard case .success = write(nodes[id]!, text) else {
                    Issue.record("node \(id) refused \(text)")
                    return
                }
                written[id, default: []].append(text)
            }
        }
        for round in 0..<6 { writeRound(round, on: [1, 2, 3]) }
        wire.pump(nodes)

        let newcomer = Peer(id: 4, address: "127.0.0.1:10004")
        for id in UInt64(1)...2 { try nodes[id]!.addPeer(group, newcomer) }
        #expect(throws: ConsensusError.refused("\(group): node 4 cannot be added: it is a replica of the group already")) {
            try nodes[1]!.addPeer(group, newcomer)
        }
        // Writes go on, shipped to node 4 (which is not there yet) and to each other.
        for round in 6..<9 { writeRound(round, on: [1, 2, 3]) }

        // Node 4 starts joining, stops before it asked, and resumes after its restart.
        let joined = Registers()
        let everyone = peers + [newcomer]
        var joiner = process(4, directory, wire)
        try joiner.joinGroup(group, peers: everyone, stateMachine: joined, donor: 1)
        #expect(throws: ConsensusError.groupExists(group)) { try joiner.joinGroup(group, peers: everyone, stateMachine: joined, donor: 1) }
        guard case .failure(.busy(let why)) = write(joiner, "n4-early=0") else {
            Issue.record("a joining replica took a write")
            return
        }
        #expect(why.contains("joining"))
        joiner.close()
        joiner = process(4, directory, wire)
        try joiner.createGroup(group, peers: everyone, stateMachine: joined)
        #expect(joiner.isJoining(group))
        nodes[4] = joiner
        // Node 3 has not added it: the image is not asked for (node 3 might have let go of
        // entries it lacks). Once node 3 adds it, it is.
        for _ in 0..<8 {
            for consensus in nodes.values { consensus.tick() }
            wire.pump(nodes)
        }
        #expect(joiner.isJoining(group) && wire.delivered.withLock { $0[.imageRequest] } == nil)
        try nodes[3]!.addPeer(group, newcomer)

        // The image comes in pieces; then each source ships what came after it.
        for round in 9..<12 {
            writeRound(round, on: [1, 2, 3])
            for consensus in nodes.values { consensus.tick() }
            wire.pump(nodes)
        }
        #expect(!joiner.isJoining(group))
        for name in ["image.part", "joining"] { #expect(!FileManager.default.fileExists(atPath: directory + "/n4/\(group)/\(name)")) }
        writeRound(12, on: [1, 2, 3, 4])
        shipUntilNothingIsKept(nodes, wire)
        let expected = machines[0].values.withLock { $0 }
        #expect(expected["n4-k0"] == "v12" && expected["n3-k5"] == "v5" && expected.count == 19)
        for machine in machines + [joined] { #expect(machine.values.withLock { $0 } == expected) }
        for consensus in nodes.values { #expect(consensus.retainedEntries(group) == 0) }
        // Node 4 applied what its image lacked: of each source, a tail of its writes, in order, once.
        let applied = joined.applied.withLock { $0 }
        for (source, texts) in written {
            let mine = applied.filter { $0.hasPrefix("n\(source)-") }
            #expect(!mine.isEmpty && Array(texts.suffix(mine.count)) == mine)
        }

        // Node 1 restarts with the configured peers and still ships to node 4; node 4 restarts too.
        nodes[1]!.close()
        nodes[1] = try node(1, directory, wire, machines[0])
        nodes[4]!.close()
        nodes[4] = process(4, directory, wire)
        try nodes[4]!.createGroup(group, peers: everyone, stateMachine: joined)
        #expect(!nodes[4]!.isJoining(group))
        writeRound(13, on: [1, 4])
        wire.pump(nodes)
        #expect(joined.values.withLock { $0["n1-k1"] } == "v13")
        for machine in machines { #expect(machine.values.withLock { $0["n4-k1"] } == "v13") }

        // A removed node is not added back, and a node no member added gets no image.
        try nodes[1]!.removePeer(group, 4)
        #expect(throws: ConsensusError.refused("\(group): node 4 cannot be added: it was removed from the group, and node IDs are not reused")) {
            try nodes[1]!.addPeer(group, newcomer)
        }
        let stranger = process(5, directory, wire)
        try stranger.joinGroup(group, peers: everyone + [Peer(id: 5, address: "127.0.0.1:10005")], stateMachine: Registers(), donor: 2)
        nodes[5] = stranger
        for _ in 0..<5 {
            stranger.tick()
            wire.pump(nodes)
        }
        #expect(stranger.isJoining(group))
        try stranger.deleteGroup(group)
        #expect(!stranger.isJoining(group) && !FileManager.default.fileExists(atPath: directory + "/n5/\(group)"))
        for consensus in nodes.values { consensus.close() }
    }

    @Test func theDonorTakesItsImageOffTheRoundsSoItsOtherGroupsGoOn() throws {
        let directory = try temporaryDirectory("multileader")
        let wire = Wire()
        let imageQueue = DispatchQueue(label: "node 1 images")
        let machines = (1...3).map { _ in Registers() }
        var nodes: [UInt64: MultiLeaderConsensus] = [:]
        for id in UInt64(1)...3 {
            nodes[id] = process(id, directory, wire, imageQueue: id == 1 ? imageQueue : nil)
            try nodes[id]!.createGroup(group, peers: peers, stateMachine: machines[Int(id) - 1])
        }
        // Node 1 also runs a group of its own.
        let other = GroupID(kind: .data, number: 1)
        try nodes[1]!.createGroup(other, peers: [peers[0]], stateMachine: Registers())
        for round in 0..<3 {
            for id in UInt64(1)...3 { guard case .success = write(nodes[id]!, "n\(id)-k\(round)=v\(round)") else { Issue.record("refused"); return } }
        }
        wire.pump(nodes)
        let newcomer = Peer(id: 4, address: "127.0.0.1:10004")
        for id in UInt64(1)...3 { try nodes[id]!.addPeer(group, newcomer) }
        let joined = Registers()
        let joiner = process(4, directory, wire)
        try joiner.joinGroup(group, peers: peers + [newcomer], stateMachine: joined, donor: 1)
        nodes[4] = joiner

        // Node 1's image is held up while it is taken.
        let gate = Gate()
        machines[0].snapshotGate.withLock { $0 = gate }
        for _ in 0..<10 where wire.delivered.withLock({ $0[.imageRequest] }) == nil {
            joiner.tick()
            wire.pump(nodes)
        }
        #expect(gate.awaitEntry())
        machines[0].snapshotGate.withLock { $0 = nil }
        // Meanwhile node 1's other group takes writes, and the imaged group's own writes wait.
        let otherAnswered = DispatchSemaphore(value: 0)
        let donor = nodes[1]!
        DispatchQueue.global().async {
            if case .success = write(donor, "o=1", to: other) { otherAnswered.signal() }
        }
        #expect(otherAnswered.wait(timeout: .now() + 10) == .success, "a write to another group waited for the image")
        let waitingAnswered = DispatchSemaphore(value: 0)
        nodes[1]!.write(group, Proposal(data: Array("n1-during=1".utf8))) { answer in
            if case .success = answer { waitingAnswered.signal() }
        }
        #expect(waitingAnswered.wait(timeout: .now()) == .timedOut)
        #expect(throws: ConsensusError.busy("\(group) is taking an image for a joining replica; retry later")) {
            try nodes[1]!.addPeer(group, Peer(id: 5, address: "127.0.0.1:10005"))
        }
        guard case .success = write(nodes[2]!, "n2-during=1") else { Issue.record("node 2 refused a write"); return }
        wire.pump(nodes)

        // Once the image is taken, the waiting write is answered and node 4 joins with both writes.
        gate.release()
        #expect(waitingAnswered.wait(timeout: .now() + 10) == .success)
        for _ in 0..<1_000 where joiner.isJoining(group) {
            imageQueue.sync {}  // the image's next pieces are sent
            wire.pump(nodes)
        }
        #expect(!joiner.isJoining(group))
        shipUntilNothingIsKept(nodes, wire)
        let expected = machines[0].values.withLock { $0 }
        #expect(expected["n1-during"] == "1" && expected["n2-during"] == "1" && expected.count == 11)
        for machine in machines + [joined] { #expect(machine.values.withLock { $0 } == expected) }
        // Taken exactly at the vector: node 4 applied the two later writes, each once.
        #expect(joined.applied.withLock { $0 }.filter { $0.hasSuffix("-during=1") }.sorted() == ["n1-during=1", "n2-during=1"])
        for consensus in nodes.values { consensus.close() }
    }
}

/// Issue 27 review: a multi-leader group's log on a full disk, and a damaged one at start.
@Suite(.serialized) struct MultiLeaderLogFailureTests {
    /// A lone replica (no peers) of `group` under `directory`, its log writes told to `health`.
    private func loneReplica(_ directory: String, _ machine: Registers, health: StorageHealth? = nil) throws -> MultiLeaderConsensus {
        var settings = MultiLeaderConsensus.Settings()
        settings.health = health
        let consensus = MultiLeaderConsensus(nodeID: 1, directory: directory, transport: Wire().endpoint(), settings: settings)
        try consensus.createGroup(group, peers: [Peer(id: 1, address: "a")], stateMachine: machine)
        return consensus
    }

    /// Item 2: a log damaged in the middle came out of `createGroup` wrapped in
    /// `ConsensusError.io`, so tidemarkd exited 1 instead of 3 (damage). Now it comes out as is.
    @Test func aDamagedLogComesOutAsLogDamage() throws {
        let directory = try temporaryDirectory("multileader-damage")
        let consensus = try loneReplica(directory, Registers())
        for number in 1...3 { #expect((try? write(consensus, "k\(number)=\(number)").get()) != nil) }
        consensus.close()
        let logDirectory = directory + "/\(group)/log"
        let name = try #require(try FileManager.default.contentsOfDirectory(atPath: logDirectory).first { $0.hasSuffix(".wal") })
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: logDirectory + "/" + name)))
        let scan = LogScan.scan(bytes, firstSequence: nil, payloadBytesMax: FileWAL.payloadBytesMax)
        try #require(scan.records.count >= 3)
        bytes[scan.records[1].payload.lowerBound] ^= 0x40  // the second record: good ones follow it
        try Data(bytes).write(to: URL(fileURLWithPath: logDirectory + "/" + name))
        let error = try #require(throws: LogDamageError.self) { _ = try loneReplica(directory, Registers()) }
        #expect(error.path == logDirectory + "/" + name)
    }

    /// Item 1, as in Raft: a round the full log refused fails its writes without being logged
    /// or shipped, later writes are refused (retryable) before the core, and the next round
    /// once space is free writes the refused entries once, in order.
    @Test(.enabled(if: Tmpfs.available)) func aFullDiskFailsTheRoundAndTheGroupGoesOnOnceSpaceIsFree() throws {
        let disk = try Tmpfs(label: "multileader", sizeBytes: 1 << 20)
        defer { disk.unmount() }
        let health = StorageHealth(logger: Logger(label: "test"), directory: disk.path)
        let machine = Registers()
        let consensus = try loneReplica(disk.path + "/ml", machine, health: health)
        #expect((try? write(consensus, "a=1").get()) != nil)
        let large = String(repeating: "v", count: 8192)
        let filler = try disk.fill(leaveBytes: 0)
        guard case .failure(.io(let why)) = write(consensus, "b=" + large) else {
            Issue.record("expected an I/O failure")
            return
        }
        #expect(why.contains("No space left on device") && why.contains("not acknowledged"), "\(why)")
        guard case .failure(.busy) = write(consensus, "c=3") else {
            Issue.record("expected a retryable refusal while the disk is full")
            return
        }
        #expect(health.reading.diskFull)
        try FileManager.default.removeItem(atPath: filler)
        consensus.tick()
        #expect(!health.reading.diskFull)
        #expect((try? write(consensus, "d=4").get()) != nil)
        #expect(machine.applied.withLock { $0 } == ["a=1", "b=" + large, "d=4"])
        consensus.close()
        var entries: [String] = []
        _ = try FileWAL(directory: disk.path + "/ml/\(group)/log", policy: .batch).replay { _, payload in
            if case .entry(_, _, let data) = try MultiLeaderRecord(decoding: payload) { entries.append(String(decoding: data, as: UTF8.self)) }
        }
        #expect(entries == ["a=1", "b=" + large, "d=4"])
    }
}
