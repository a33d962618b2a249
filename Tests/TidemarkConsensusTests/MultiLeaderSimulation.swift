import TidemarkConsensus

/// The multi-leader group under the same kind of seeded faults as Raft: every replica takes
/// writes for the keys it owns (one device, one node: their order holds), applies them at
/// once and ships them. Hosts keep their log as `MultiLeaderConsensus` does (the same
/// `MultiLeaderLog` rules): every applied entry and the dispatchers' progress, released
/// once the state machine flushed and every peer has the entries; a crash loses the state
/// machine's unflushed part, and a restart rebuilds everything from the log. Checked every
/// round: each source's writes are applied in its order, each once; after healing, every
/// replica converges to the same state and holds every acknowledged write; the log never
/// grows past the lag bound. Now and then a new replica joins: every member adds it, then
/// it starts from an image of one member (its state machine and per-source applied
/// vector) and takes the rest from each source's dispatcher.
final class MultiLeaderSimulation {
    /// What the state machine's own files hold: everything through a log index.
    struct Flushed {
        var index: UInt64 = 0
        var registers: [String: String] = [:]
        var lastApplied: [UInt64: UInt64] = [:]
    }

    struct Replica {
        var core: MultiLeaderCore?
        /// The log on disk, by index: durable through `durableIndex`; a crash loses the rest.
        var log: [(index: UInt64, record: MultiLeaderRecord)] = []
        var lastIndex: UInt64 = 0
        var durableIndex: UInt64 = 0
        var persistedShipped: [UInt64: UInt64] = [:]
        var ownIndexes: [UInt64] = []
        var flushed = Flushed()
        var registers: [String: String] = [:]
        var lastApplied: [UInt64: UInt64] = [:]
    }

    /// Where a new replica's join stands.
    enum Join {
        case none
        /// Every member added it; its image is taken from a live member from `imageRound` on.
        case added(imageRound: Int)
        case done
    }

    let seed: UInt64
    /// The replicas the group was configured with (a restart passes these as its peers).
    let configured: [UInt64]
    /// The replicas in the group now: the configured ones and, once it joined, the new one.
    private(set) var ids: [UInt64]
    let joiner: UInt64
    private(set) var join = Join.none
    let lagEntriesMax = 30
    private(set) var replicas: [UInt64: Replica] = [:]
    private var random: SimRandom
    private var network = SimNetwork<MultiLeaderMessage>(dropPercent: 5, duplicatePercent: 2, delayRoundsMax: 3)
    private(set) var round = 0
    private var writesOn = true
    /// Acknowledged writes: per source, the value of each key it last wrote.
    private(set) var acknowledged: [String: String] = [:]
    private(set) var stats = (writes: 0, throttled: 0, crashes: 0, partitions: 0, flushes: 0, released: 0, joins: 0)
    private var nextValue = 0

    init(seed: UInt64, replicas count: Int = 3) {
        self.seed = seed
        random = SimRandom(state: seed ^ 0xA5A5)
        configured = (1...UInt64(count)).map { $0 }
        ids = configured
        joiner = UInt64(count) + 1
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
            recovered = try MultiLeaderLog.rebuild(nodeID: id, peers: configured.filter { $0 != id }, records: replica.log.map { ($0.index, $0.record) }) { _, _ in }
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
        replica.core = MultiLeaderCore(id: id, peers: configured.filter { $0 != id }, state: recovered.state,
                                       lagEntriesMax: lagEntriesMax, batchEntriesMax: 16)
        replicas[id] = replica
    }

    func step(nemesis: Bool) throws {
        round += 1
        if case .added(let imageRound) = join, round >= imageRound { try admitJoiner() }
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
        if case .added = join { return false }  // the new replica has not started yet
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
            // Logged (and synced, unless only progress moved) first, as the real host does;
            // then applied, answered, shipped.
            let append = MultiLeaderLog.append(for: ready, persistedShipped: &replica.persistedShipped)
            for record in append.records {
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
            if append.syncFirst { replica.durableIndex = replica.lastIndex }
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
        // Every applied entry is durable; a progress record after them may not be.
        replica.flushed = Flushed(index: replica.durableIndex, registers: replica.registers, lastApplied: replica.lastApplied)
        stats.flushes += 1
        let through = MultiLeaderLog.releasable(checkpointed: replica.flushed.index, ownIndexes: replica.ownIndexes)
        if replica.log.contains(where: { $0.index <= through }) {
            let state = core.diskState
            replica.lastIndex += 1
            replica.log.append((replica.lastIndex, MultiLeaderRecord(shipped: state.shipped, applied: state.applied, removed: state.removed)))
            replica.durableIndex = replica.lastIndex  // synced before the files that held it go
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
        // A replica not started (or not yet joined) hears nothing.
        for message in network.due(round: round) where replicas[message.to]?.core != nil {
            replicas[message.to]!.core!.step(message)
        }
    }

    private func disturb() throws {
        switch random.below(1000) {
        case 0..<10:
            let id = ids[random.below(ids.count)]
            if replicas[id]!.core != nil {
                // What the state machine had not flushed is gone; the log brings it back, all
                // but its unsynced tail.
                let durable = replicas[id]!.durableIndex
                replicas[id]!.core = nil
                replicas[id]!.log.removeAll { $0.index > durable }
                replicas[id]!.lastIndex = durable
                stats.crashes += 1
            }
        case 10..<40:
            if let id = ids.first(where: { replicas[$0]!.core == nil }) { try start(id) }
        case 70..<110:
            flush(ids[random.below(ids.count)])
        case 110..<113:
            try addJoiner()
        case 40..<46:
            network.partition(ids, random: &random)
            stats.partitions += 1
        case 46..<70:
            network.heal()
        default:
            break
        }
    }

    /// Every member adds the new replica (logged at once, as the host's `addPeer` does); its
    /// image is taken a few rounds later. Only while every member is up: the operator adds
    /// the peer on each of them before the new one asks for its image.
    private func addJoiner() throws {
        guard case .none = join, ids.allSatisfy({ replicas[$0]!.core != nil }) else { return }
        for id in ids {
            do { try replicas[id]!.core!.addPeer(joiner) } catch { throw fail("replica \(id) refused to add \(joiner): \(error)") }
            do {
                try replicas[id]!.core!.addPeer(joiner)
                throw fail("replica \(id) added \(joiner) twice")
            } catch let error as MultiLeaderError {
                guard case .peerRefused = error else { throw fail("replica \(id) refused the second add with \(error)") }
            }
            try handleReady(id)
        }
        join = .added(imageRound: round + 1 + random.below(20))
    }

    /// The new replica starts from a live member's image, taken between rounds (every ready
    /// handled): its state machine's state and, per source, the next write to apply. Its log
    /// holds only that vector, after the image's index; the rest comes from each source.
    private func admitJoiner() throws {
        let live = ids.filter { replicas[$0]!.core != nil }
        guard !live.isEmpty else { return }
        let donorID = live[random.below(live.count)]
        let donor = replicas[donorID]!
        let applied = donor.core!.diskState.applied
        for (source, next) in applied where next != (donor.lastApplied[source] ?? 0) + 1 {
            throw fail("donor \(donorID) says \(source)'s next write is \(next) but applied through \(donor.lastApplied[source] ?? 0)")
        }
        var replica = Replica()
        replica.flushed = Flushed(index: donor.lastIndex, registers: donor.registers, lastApplied: donor.lastApplied)
        replica.lastIndex = donor.lastIndex + 1
        replica.log = [(replica.lastIndex, MultiLeaderRecord(shipped: [:], applied: applied))]
        replica.durableIndex = replica.lastIndex
        replicas[joiner] = replica
        ids.append(joiner)
        join = .done
        stats.joins += 1
        try start(joiner)
    }

    private func fail(_ what: String) -> SimulationFailure { SimulationFailure(seed: seed, round: round, what: what) }
}
