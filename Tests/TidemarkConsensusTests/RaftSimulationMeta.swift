import TidemarkCluster
import TidemarkConsensus
import TidemarkIO

/// The meta group's state machine in the Raft simulator (`Payload.meta`): random meta
/// commands go through the simulated group (crashes, partitions, snapshots, membership
/// changes), and every apply checks the meta state's rules.
extension RaftSimulation {
    /// Applies a committed meta command and checks: the state keeps its rules, the table's
    /// version never falls, no partition of a database that lives on is assigned again
    /// elsewhere, and the state after this index is the one every other replica reached.
    func applyMeta(_ entry: RaftEntry, to meta: inout MetaState, id: UInt64) throws {
        let command: MetaCommand
        do { command = try MetaCommand(decoding: entry.data) } catch { throw fail("replica \(id) cannot decode meta entry \(entry.index): \(error)") }
        let before = meta
        do { try meta.apply(command, index: entry.index) } catch {
            metaStats.refused += 1
            guard meta == before else { throw fail("meta entry \(entry.index) was refused but changed the state") }
        }
        metaStats.commands += 1
        let broken = meta.violations()
        if !broken.isEmpty { throw fail("meta rules broken at \(entry.index) on replica \(id): \(broken.prefix(3))") }
        if meta.table.version < before.table.version {
            throw fail("meta table version fell from \(before.table.version) to \(meta.table.version) at \(entry.index)")
        }
        for (database, slots) in before.table.dataSlots where meta.databases[database] != nil {
            for (slot, partitions) in slots {
                for (partition, group) in partitions where meta.table.dataGroup(database, slot: slot, timePartition: partition) != group {
                    throw fail("\(database) slot \(slot) partition \(partition) moved from \(group) at \(entry.index)")
                }
            }
        }
        for (database, slots) in before.table.schemaSlots where meta.databases[database] != nil {
            for (slot, group) in slots where meta.table.schemaGroup(database, slot: slot) != group {
                throw fail("\(database) schema slot \(slot) moved from \(group) at \(entry.index)")
            }
        }
        metaStats.assignments += meta.table.dataSlots.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } }
            - before.table.dataSlots.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } }
        try checkMetaDigest(meta, at: entry.index, id: id)
    }

    /// Every replica's state after `index` must be the same.
    func checkMetaDigest(_ meta: MetaState, at index: UInt64, id: UInt64) throws {
        let digest = CRC32C.checksum(MetaSnapshot.encode(meta))
        if let seen = metaDigestByIndex[index], seen != digest {
            throw fail("replica \(id) reached another meta state at \(index) than an earlier replica")
        }
        metaDigestByIndex[index] = digest
    }

    /// A command a client of the meta group might send, from what `meta` (the proposer's
    /// view, perhaps stale) holds.
    func randomMetaCommand(seenBy meta: MetaState) -> MetaCommand {
        let databases = meta.databases.keys.sorted()
        let nodes = meta.nodes.keys.sorted()
        switch random.below(10) {
        case 0, 1:
            return .registerNode(internalAddress: "10.0.0.\(random.below(8) + 1):10730", clientAddress: "c\(random.below(3))", cores: random.below(8) + 1)
        case 2:
            return .createDatabase(DatabaseRecord(name: "root.d\(random.below(5))", schemaReplicationFactor: random.below(3) + 1,
                                                  dataReplicationFactor: random.below(3) + 1, dataRegionGroupsMin: random.below(3),
                                                  schemaRegionGroups: 1))
        case 3 where !databases.isEmpty && random.chance(30):
            // A drop in one step (an older node's), or a recorded one's start or end.
            let database = databases[random.below(databases.count)]
            let kinds: [MetaOperation.Kind] = [.dropDatabase(database), .deleteSeries(database + ".**"), .deleteData(database + ".**", -5...5)]
            let kind = kinds[random.below(kinds.count)]
            return [MetaCommand.dropDatabase(database), .begin(kind), .finish(kind)][random.below(3)]
        case 4 where !nodes.isEmpty:
            return .setNodeStatus(nodes[random.below(nodes.count)], NodeRecord.Status.allCases[random.below(NodeRecord.Status.allCases.count)])
        case 5 where !nodes.isEmpty && random.chance(30):
            return .removeNode(nodes[random.below(nodes.count)])
        case 6 where !meta.groups.isEmpty:
            let groups = meta.groups.keys.sorted()
            return .reportLeader(groups[random.below(groups.count)], UInt64(random.below(8) + 1))
        default:
            let database = databases.isEmpty ? "root.d0" : databases[random.below(databases.count)]
            return .allocate(database: database, (0..<(random.below(6) + 1)).map { _ in
                SlotRequest(slot: random.below(1000), timePartitions: (0..<(random.below(3) + 1)).map { _ in Int64(random.below(8)) - 2 })
            })
        }
    }

    static func decodeMeta(_ bytes: [UInt8]) -> MetaState {
        // A snapshot this simulator made: failing to decode it is a bug here, not a finding.
        try! MetaSnapshot.decode(bytes)
    }

    /// The meta state after applying everything through `index`, from a snapshot and entries.
    static func meta(upTo index: UInt64, snapshot: RaftSnapshot?, entries: [RaftEntry]) -> MetaState? {
        var meta = snapshot.map { decodeMeta($0.data) } ?? MetaState(settings: ClusterSettings())
        var at = snapshot?.index ?? 0
        for entry in entries where entry.index > at && entry.index <= index {
            guard entry.index == at + 1 else { return nil }
            at = entry.index
            guard entry.kind == .normal, !entry.data.isEmpty, let command = try? MetaCommand(decoding: entry.data) else { continue }
            _ = try? meta.apply(command, index: entry.index)
        }
        return at == index ? meta : nil
    }
}
