import ArgumentParser
import Foundation
import TidemarkCluster

/// `tidemark plan-bench`: how long the meta group's allocator takes to place a large
/// cluster's region groups, and how even the result is (issue 29's allocation benchmark).
struct PlanBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan-bench",
        abstract: "Time the replica placement of many region groups on many nodes (no server needed).")

    @Option(help: "Nodes.") var nodes = 100
    @Option(help: "Region groups to place.") var groups = 10_000
    @Option(help: "Replicas per group.") var factor = 3
    @Option(help: "Databases the groups belong to, in turn.") var databases = 10
    @Flag(help: "Also time the meta state's commands: CREATE DATABASE and partition allocations, applied in turn.")
    var meta = false

    func validate() throws {
        guard nodes > 0, groups > 0, databases > 0, (1...nodes).contains(factor) else {
            throw ValidationError("nodes, groups and databases must be positive, and factor from 1 to nodes")
        }
    }

    func run() {
        let candidates = (1...nodes).map { NodeID($0) }
        var placement = ReplicaPlacement()
        var twice = 0
        let started = Date()
        for index in 0..<groups {
            let database = "root.db\(index % databases)"
            let replicas = placement.choose(factor, database: database, among: candidates)!
            if Set(replicas).count != replicas.count { twice += 1 }
            placement.add(replicas, database: database)
        }
        let seconds = Date().timeIntervalSince(started)
        let counts = candidates.map { placement.regions(on: $0) }
        let mean = Double(groups * factor) / Double(nodes)
        print(String(format: "%d groups × %d replicas on %d nodes in %.3f s (%.1f µs per group); regions per node %d…%d (mean %.1f); groups with two replicas on one node: %d",
                     groups, factor, nodes, seconds, seconds * 1e6 / Double(groups), counts.min()!, counts.max()!, mean, twice))
        if meta { runMetaCommands() }
    }

    /// The meta state machine's own cost per command (what a member spends applying it; a
    /// replicated command also waits for the group's commit, an fsync round).
    private func runMetaCommands() {
        var state = MetaState(settings: ClusterSettings())
        var index: UInt64 = 0
        func apply(_ command: MetaCommand) {
            index += 1
            _ = try? state.apply(command, index: index)
        }
        for node in 1...nodes { apply(.registerNode(internalAddress: "10.0.\(node / 256).\(node % 256):10730", clientAddress: "c", cores: 8)) }
        var started = Date()
        for number in 0..<databases {
            apply(.createDatabase(DatabaseRecord(name: "root.db\(number)", schemaReplicationFactor: factor, dataReplicationFactor: factor,
                                                 dataRegionGroupsMin: 0, schemaRegionGroups: 1)))
        }
        let createSeconds = Date().timeIntervalSince(started)
        started = Date()
        var allocations = 0
        for partition in 0..<10 {
            for number in 0..<databases {
                apply(.allocate(database: "root.db\(number)", (0..<100).map { SlotRequest(slot: ($0 * 7 + partition) % 1000, timePartitions: [Int64(partition)]) }))
                allocations += 1
            }
        }
        let allocateSeconds = Date().timeIntervalSince(started)
        print(String(format: "meta state: %d CREATE DATABASE in %.3f s (%.0f per second, %d groups made); %d allocations of 100 slots in %.3f s (%.0f per second); table version %d",
                     databases, createSeconds, Double(databases) / createSeconds, state.groups.count, allocations, allocateSeconds,
                     Double(allocations) / allocateSeconds, state.table.version))
    }
}
