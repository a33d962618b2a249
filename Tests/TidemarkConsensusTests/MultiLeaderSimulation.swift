import TidemarkConsensus

/// The multi-leader group under the same kind of seeded faults as Raft: every replica takes
/// writes for the keys it owns (one device, one node: their order holds), applies them at
/// once and ships them. Hosts keep their log as `MultiLeaderConsensus` does (the same
/// `MultiLeaderLog` rules): every applied entry and the dispatchers' progress, released
/// once the state machine flushed and every peer has the entries; a crash loses the state
/// machine's unflushed part, and a restart rebuilds everything from the log. Checked every
/// round: each source's writes are applied in its order, each once; after healing, every
/// replica converges to the same state and holds every acknowledged write; the log never
/// grows past the lag bound.
final class MultiLeaderSimulation {
    /// What the state machine's own files hold: everything through a log index.
    struct Flushed {
        var index: UInt64 = 0
        var registers: [String: String] = [:]
        var lastApplied: [UInt64: UInt64] = [:]
    }

    struct Replica {
        var core: MultiLeaderCore?
        /// The log on disk, by index (durable: hosts fsync before anything leaves).
        var log: [(index: UInt64, record: MultiLeaderRecord)] = []
        var lastIndex: UInt64 = 0
        var persistedShipped: [UInt64: UInt64] = [:]
        var ownIndexes: [UInt64] = []
        var flushed = Flushed()
        var registers: [String: String] = [:]
        var lastApplied: [UInt64: UInt64] = [:]
    }

    let seed: UInt64
    let ids: [UInt64]
    let lagEntriesMax = 30
    private(set) var replicas: [UInt64: Replica] = [:]
    private var random: SimRandom
    private var network = SimNetwork<MultiLeaderMessage>(dropPercent: 5, duplicatePercent: 2, delayRoundsMax: 3)
    private(set) var round = 0
    private var writesOn = true
    /// Acknowledged writes: per source, the value of each key it last wrote.
    private(set) var acknowledged: [String: String] = [:]
    private(set) var stats = (writes: 0, throttled: 0, crashes: 0, partitions: 0, flushes: 0, released: 0)
    private var nextValue = 0

    init(seed: UInt64, replicas count: Int = 3) {
        self.seed = seed
        random = SimRandom(state: seed ^ 0xA5A5)
        ids = (1...UInt64(count)).map { $0 }
        for id in ids {
            replicas[id] = Replica()
            try! start(id)  // an empty log
        }
    }

    /// Starts (or restarts) a replica from its log: the state machine from its flushed files
    /// plus the log after them, the core from what the log rebuilds.
    private func start(_ id: UInt64) throws {
        var replica = replicas[id]!
        let recovered: MultiLeaderLog.Recovered
        do {
            recovered = try MultiLeaderLog.rebuild(nodeID: id, peers: ids.filter { $0 != id }, records: replica.log.map { ($0.index, $0.record) }) { _, _ in }
        } catch {
            throw fail("replica \(id) cannot rebuild from its log: \(error)")
        }
        replica.registers = replica.flushed.registers
        replica.lastApplied = replica.flushed.lastApplied
        for (index, record) in replica.log where index > replica.flushed.index {
            if case .entry(let source, let sequence, let data) = record { try apply(source, sequence, data, to: &replica, id: id) }
        }
        replica.ownIndexes = recovered.ownIndexes
        replica.persistedShipped = recovered.state.shipped
        replica.core = MultiLeaderCore(id: id, peers: ids.filter { $0 != id }, state: recovered.state,
                                       lagEntriesMax: lagEntriesMax, batchEntriesMax: 16)
        replicas[id] = replica
    }

    func step(nemesis: Bool) throws {
        round += 1
        if nemesis { try disturb() }
        if writesOn && random.chance(60) { write() }
        for id in ids where replicas[id]!.core != nil {
            replicas[id]!.core!.tick()
            try handleReady(id)
        }
        deliver()
        for id in ids where replicas[id]!.core != nil { try handleReady(id) }
        for id in ids {
            if let core = replicas[id]!.core, core.retainedEntries > lagEntriesMax {
                throw fail("replica \(id) retains \(core.retainedEntries) entries, past the bound \(lagEntriesMax)")
            }
        }
    }

    func heal(roundsMax: Int) throws {
        for id in ids where replicas[id]!.core == nil { try start(id) }
        network.calm()
        writesOn = false
        for _ in 0..<roundsMax {
            try step(nemesis: false)
            if converged() { return }
        }
        throw fail("replicas did not converge within \(roundsMax) rounds after healing")
    }

    private func converged() -> Bool {
        let states = ids.map { replicas[$0]!.registers }
        return states.allSatisfy { $0 == states[0] } && acknowledged.allSatisfy { states[0][$0.key] == $0.value }
    }

    private func write() {
        let id = ids[random.below(ids.count)]
        guard var core = replicas[id]!.core else { return }
        nextValue += 1
        // Each replica owns its keys: one device's writes go through one node.
        let key = "n\(id)-k\(random.below(4))"
        let value = "v\(nextValue)"
        do {
            _ = try core.propose(Array("\(key)=\(value)".utf8))
            stats.writes += 1
        } catch {
            stats.throttled += 1
        }
        replicas[id]!.core = core
    }

    private func handleReady(_ id: UInt64) throws {
        var passes = 0
        while var core = replicas[id]!.core, core.hasReady {
            passes += 1
            guard passes <= RaftSimulation.readyPassesMax else { throw fail("replica \(id) still has work after \(passes - 1) readies") }
            let ready = core.ready()
            var replica = replicas[id]!
            // Logged (and synced) first, as the real host does; then applied, answered, shipped.
            for record in MultiLeaderLog.records(for: ready, persistedShipped: &replica.persistedShipped) {
                replica.lastIndex += 1
                replica.log.append((replica.lastIndex, record))
                if case .entry(let source, let sequence, let data) = record {
                    try apply(source, sequence, data, to: &replica, id: id)
                    if source == id {
                        replica.ownIndexes.append(replica.lastIndex)
                        // A replica's own write is acknowledged once logged and applied here.
                        let parts = String(decoding: data, as: UTF8.self).split(separator: "=", maxSplits: 1)
                        acknowledged[String(parts[0])] = String(parts[1])
                    }
                }
            }
            for message in ready.messages { send(message) }
            core.advance(ready)
            replica.ownIndexes.removeFirst(max(0, replica.ownIndexes.count - core.retainedEntries))
            replica.core = core
            replicas[id] = replica
        }
    }

    private func apply(_ source: UInt64, _ sequence: UInt64, _ data: [UInt8], to replica: inout Replica, id: UInt64) throws {
        let expected = (replica.lastApplied[source] ?? 0) + 1
        guard sequence == expected else {
            throw fail("replica \(id) applies \(source)'s write \(sequence), expected \(expected): order broken")
        }
        replica.lastApplied[source] = sequence
        let parts = String(decoding: data, as: UTF8.self).split(separator: "=", maxSplits: 1)
        replica.registers[String(parts[0])] = String(parts[1])
    }

    /// The state machine flushes what it applied; the log lets go of what no one needs.
    private func flush(_ id: UInt64) {
        guard var replica = replicas[id], let core = replica.core else { return }
        replica.flushed = Flushed(index: replica.lastIndex, registers: replica.registers, lastApplied: replica.lastApplied)
        stats.flushes += 1
        let through = MultiLeaderLog.releasable(checkpointed: replica.flushed.index, ownIndexes: replica.ownIndexes)
        if replica.log.contains(where: { $0.index <= through }) {
            let state = core.diskState
            replica.lastIndex += 1
            replica.log.append((replica.lastIndex, MultiLeaderRecord(shipped: state.shipped, applied: state.applied, removed: state.removed)))
            let before = replica.log.count
            replica.log.removeAll { $0.index <= through }
            stats.released += before - replica.log.count
        }
        replicas[id] = replica
    }

    private func send(_ message: MultiLeaderMessage) {
        network.send(message, from: message.from, to: message.to, round: round, random: &random)
    }

    private func deliver() {
        for message in network.due(round: round) where replicas[message.to]!.core != nil {
            replicas[message.to]!.core!.step(message)
        }
    }

    private func disturb() throws {
        switch random.below(1000) {
        case 0..<10:
            let id = ids[random.below(ids.count)]
            if replicas[id]!.core != nil {
                // What the state machine had not flushed is gone; the log brings it back.
                replicas[id]!.core = nil
                stats.crashes += 1
            }
        case 10..<40:
            if let id = ids.first(where: { replicas[$0]!.core == nil }) { try start(id) }
        case 70..<110:
            flush(ids[random.below(ids.count)])
        case 40..<46:
            network.partition(ids, random: &random)
            stats.partitions += 1
        case 46..<70:
            network.heal()
        default:
            break
        }
    }

    private func fail(_ what: String) -> SimulationFailure { SimulationFailure(seed: seed, round: round, what: what) }
}
