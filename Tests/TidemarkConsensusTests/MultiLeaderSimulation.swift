import TidemarkConsensus

/// The multi-leader group under the same kind of seeded faults as Raft: every replica takes
/// writes for the keys it owns (one device, one node: their order holds), applies them at
/// once and ships them. Checked every round: each source's writes are applied in its order,
/// each once; after healing, every replica converges to the same state and holds every
/// acknowledged write; the log never grows past the lag bound.
final class MultiLeaderSimulation {
    struct Replica {
        var core: MultiLeaderCore?
        /// Persisted with the core's state in one step (the log is the WAL of the state machine).
        var disk = MultiLeaderDiskState()
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
    private(set) var stats = (writes: 0, throttled: 0, crashes: 0, partitions: 0)
    private var nextValue = 0

    init(seed: UInt64, replicas count: Int = 3) {
        self.seed = seed
        random = SimRandom(state: seed ^ 0xA5A5)
        ids = (1...UInt64(count)).map { $0 }
        for id in ids {
            replicas[id] = Replica()
            start(id)
        }
    }

    private func start(_ id: UInt64) {
        replicas[id]!.core = MultiLeaderCore(id: id, peers: ids.filter { $0 != id }, state: replicas[id]!.disk,
                                             lagEntriesMax: lagEntriesMax, batchEntriesMax: 16)
    }

    func step(nemesis: Bool) throws {
        round += 1
        if nemesis { disturb() }
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
        for id in ids where replicas[id]!.core == nil { start(id) }
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
        while var core = replicas[id]!.core, core.hasReady {
            let ready = core.ready()
            var replica = replicas[id]!
            if let state = ready.state { replica.disk = state }
            for entry in ready.apply {
                let expected = (replica.lastApplied[entry.source] ?? 0) + 1
                guard entry.sequence == expected else {
                    throw fail("replica \(id) applies \(entry.source)'s write \(entry.sequence), expected \(expected): order broken")
                }
                replica.lastApplied[entry.source] = entry.sequence
                let parts = String(decoding: entry.data, as: UTF8.self).split(separator: "=", maxSplits: 1)
                replica.registers[String(parts[0])] = String(parts[1])
                // A replica's own write is acknowledged once applied and persisted here.
                if entry.source == id { acknowledged[String(parts[0])] = String(parts[1]) }
            }
            for message in ready.messages { send(message) }
            core.advance(ready)
            replica.core = core
            replicas[id] = replica
        }
    }

    private func send(_ message: MultiLeaderMessage) {
        network.send(message, from: message.from, to: message.to, round: round, random: &random)
    }

    private func deliver() {
        for message in network.due(round: round) where replicas[message.to]!.core != nil {
            replicas[message.to]!.core!.step(message)
        }
    }

    private func disturb() {
        switch random.below(1000) {
        case 0..<10:
            let id = ids[random.below(ids.count)]
            if replicas[id]!.core != nil {
                // The state machine restarts from what was persisted with the log.
                replicas[id]!.core = nil
                stats.crashes += 1
            }
        case 10..<40:
            if let id = ids.first(where: { replicas[$0]!.core == nil }) { start(id) }
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
