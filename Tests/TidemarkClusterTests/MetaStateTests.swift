import TidemarkConsensus
import TidemarkCore
import Foundation
import Testing
import TidemarkIO
import TidemarkTestSupport
@testable import TidemarkCluster

@Suite struct MetaStateTests {
    /// A meta state and the next index of its log.
    private struct Log {
        var state: MetaState
        var index: UInt64 = 0

        init(_ settings: ClusterSettings = ClusterSettings()) { state = MetaState(settings: settings) }

        @discardableResult
        mutating func apply(_ command: MetaCommand) throws(MetaError) -> MetaState.Outcome {
            index += 1
            // Every command goes through its bytes, as it does through the meta log.
            let decoded = try! MetaCommand(decoding: command.encoded())
            precondition(decoded == command, "\(command) does not survive its encoding")
            return try state.apply(decoded, index: index)
        }

        mutating func register(_ count: Int, cores: Int = 4) throws -> [NodeID] {
            try (1...count).map { number in
                guard case .node(let id) = try apply(.registerNode(internalAddress: "10.0.0.\(number):10730", clientAddress: "10.0.0.\(number):18080",
                                                                  cores: cores)) else { throw MetaError(code: 0, "no node") }
                return id
            }
        }
    }

    private func database(_ name: String, data: Int = 1, schema: Int = 1, dataGroups: Int = 0) -> DatabaseRecord {
        DatabaseRecord(name: name, schemaReplicationFactor: schema, dataReplicationFactor: data, dataRegionGroupsMin: dataGroups, schemaRegionGroups: 1)
    }

    @Test func nodesRegisterOnceAndKeepTheirIDs() throws {
        var log = Log()
        #expect(try log.register(3) == [1, 2, 3])
        // The same address again is the same node: its ID back, its client address updated.
        #expect(try log.apply(.registerNode(internalAddress: "10.0.0.2:10730", clientAddress: "10.0.0.2:19000", cores: 8)) == .node(2))
        #expect(log.state.nodes[2]?.clientAddress == "10.0.0.2:19000" && log.state.nodes.count == 3)
        #expect(try log.apply(.registerNode(internalAddress: "10.0.0.9:10730", clientAddress: "x", cores: 1)) == .node(4))
    }

    /// Meta members register under their places in `meta_peers`; other nodes after them.
    @Test func metaMembersKeepTheirPlacesAsIDs() throws {
        var log = Log()
        log.state = MetaState(settings: ClusterSettings(), reservedNodeIDs: 3)
        #expect(try log.apply(.registerNode(internalAddress: "10.0.0.9:10730", clientAddress: "c", cores: 1)) == .node(4))
        #expect(try log.apply(.registerNode(internalAddress: "10.0.0.2:10730", clientAddress: "c", cores: 1, requestedID: 2)) == .node(2))
        #expect(try log.apply(.registerNode(internalAddress: "10.0.0.2:10730", clientAddress: "d", cores: 1, requestedID: 2)) == .node(2))
        // Another address for a taken ID, or another ID for a known address: the configs disagree.
        #expect(throws: MetaError.self) { try log.apply(.registerNode(internalAddress: "10.0.0.7:10730", clientAddress: "c", cores: 1, requestedID: 2)) }
        #expect(throws: MetaError.self) { try log.apply(.registerNode(internalAddress: "10.0.0.2:10730", clientAddress: "c", cores: 1, requestedID: 1)) }
        #expect(try log.apply(.registerNode(internalAddress: "10.0.0.8:10730", clientAddress: "c", cores: 1)) == .node(5))
    }

    @Test func aDatabaseGetsItsGroupsAndPartitionsFollowTheRules() throws {
        var log = Log()
        _ = try log.register(3)  // 3 nodes × capacity 2 = 6 regions
        try log.apply(.createDatabase(database("root.a", data: 3, schema: 3)))
        let state = log.state
        let dataGroups = state.groups.values.filter { $0.id.kind == .data }
        let schemaGroups = state.groups.values.filter { $0.id.kind == .schema }
        #expect(schemaGroups.count == 1 && schemaGroups.allSatisfy { Set($0.replicas) == [1, 2, 3] })
        #expect(dataGroups.count == 2, "AUTO: capacity 6 / factor 3 = 2 groups")
        #expect(throws: MetaError(code: 501, "root.a: database already exists")) { try log.apply(.createDatabase(database("root.a"))) }
        #expect(throws: MetaError.self) { try log.apply(.createDatabase(database("root.a.b"))) }
        #expect(throws: MetaError.self) { try log.apply(.createDatabase(database("root.big", data: 4))) }

        // New slots go to the group with the fewest; a slot's next partition follows it.
        try log.apply(.allocate(database: "root.a", (0..<10).map { SlotRequest(slot: $0, timePartitions: [100]) }))
        let version = log.state.table.version
        #expect(version == log.index, "the table's version is the index of its last change")
        let counts = log.state.table.currentDataSlotCounts("root.a")
        #expect(counts.count == 2 && counts.values.allSatisfy { $0 == 5 })
        try log.apply(.allocate(database: "root.a", (0..<10).map { SlotRequest(slot: $0, timePartitions: [100, 101]) }))
        for slot in 0..<10 {
            #expect(log.state.table.dataGroup("root.a", slot: slot, timePartition: 101) == log.state.table.dataGroup("root.a", slot: slot, timePartition: 100))
        }
        // Asking again for what is assigned changes nothing, not even the version.
        let before = log.state.table
        try log.apply(.allocate(database: "root.a", [SlotRequest(slot: 3, timePartitions: [100, 101])]))
        #expect(log.state.table == before)
        #expect(throws: MetaError.self) { try log.apply(.allocate(database: "root.a", [SlotRequest(slot: 1000, timePartitions: [1])])) }
        #expect(throws: MetaError(code: 500, "root.none: no such database")) { try log.apply(.allocate(database: "root.none", [])) }
    }

    /// Nodes join: the database's groups grow, and the future partitions of the fullest
    /// groups' slots move to the new ones; history stays.
    @Test func groupsGrowWithTheClusterAndOnlyTheFutureMoves() throws {
        var log = Log()
        _ = try log.register(1, cores: 2)
        try log.apply(.createDatabase(database("root.a")))
        try log.apply(.allocate(database: "root.a", (0..<100).map { SlotRequest(slot: $0, timePartitions: [1]) }))
        #expect(log.state.groupCount("root.a", .data) == 1)
        let history = log.state.table.dataSlots["root.a"]!.mapValues { $0[1]! }
        try log.apply(.registerNode(internalAddress: "10.0.0.2:10730", clientAddress: "c", cores: 2))
        try log.apply(.registerNode(internalAddress: "10.0.0.3:10730", clientAddress: "c", cores: 2))
        try log.apply(.allocate(database: "root.a", (0..<100).map { SlotRequest(slot: $0, timePartitions: [1, 2]) }))
        #expect(log.state.groupCount("root.a", .data) == 3)
        #expect(log.state.table.dataSlots["root.a"]!.mapValues { $0[1]! } == history, "history moved")
        let counts = log.state.table.currentDataSlotCounts("root.a")
        #expect(counts.count == 3 && counts.values.max()! - counts.values.min()! <= 2, "\(counts)")
        // The new groups went to the new nodes.
        let nodesWithData = Set(log.state.groups.values.filter { $0.id.kind == .data }.flatMap(\.replicas))
        #expect(nodesWithData == [1, 2, 3])
    }

    @Test func aNodeWithTheLastLiveCopyCannotBeRemoved() throws {
        var log = Log()
        _ = try log.register(3)
        try log.apply(.createDatabase(database("root.one", data: 1, schema: 1, dataGroups: 1)))
        let holder = log.state.groups.values.first { $0.id.kind == .data }!.replicas[0]
        #expect(throws: MetaError.self) { try log.apply(.removeNode(holder)) }
        var replicated = Log()
        _ = try replicated.register(3)
        try replicated.apply(.createDatabase(database("root.three", data: 3, schema: 3)))
        try replicated.apply(.setNodeStatus(2, .unknown))
        try replicated.apply(.removeNode(1))  // 3 still has every region live
        #expect(replicated.state.nodes[1]?.status == .removing)
        // Now 3 holds the only live copies (1 removing, 2 unknown).
        do {
            try replicated.apply(.removeNode(3))
            Issue.record("removed the node holding the last live copies")
        } catch {
            #expect(error.code == 919 && error.message.contains("only live copy"))
        }
    }

    @Test func aSnapshotRestoresTheSameStateAndRefusesDamage() throws {
        var log = Log()
        _ = try log.register(5)
        try log.apply(.createDatabase(database("root.a", data: 3, schema: 3)))
        try log.apply(.createDatabase(database("root.b", data: 2)))
        try log.apply(.allocate(database: "root.a", (0..<50).map { SlotRequest(slot: $0 * 7, timePartitions: [-1, 0, 5]) }))
        try log.apply(.reportLeader(log.state.groups.keys.sorted()[1], log.state.groups.values.sorted { $0.id < $1.id }[1].replicas[1]))
        try log.apply(.dropDatabase("root.b"))
        let bytes = MetaSnapshot.encode(log.state)
        let restored = try MetaSnapshot.decode(bytes)
        #expect(restored == log.state)
        #expect(MetaSnapshot.encode(restored) == bytes)
        var damaged = bytes
        damaged[damaged.count / 2] ^= 0x40
        #expect(throws: CorruptDataError.self) { try MetaSnapshot.decode(damaged) }
        #expect(throws: CorruptDataError.self) { try MetaSnapshot.decode(Array(bytes.dropLast())) }
        // Applying on from the restored state gives what the original gives.
        var original = log, copy = Log()
        copy.state = restored
        copy.index = log.index
        try original.apply(.allocate(database: "root.a", [SlotRequest(slot: 999, timePartitions: [9])]))
        try copy.apply(.allocate(database: "root.a", [SlotRequest(slot: 999, timePartitions: [9])]))
        #expect(original.state == copy.state)
    }

    @Test func commandsFromOutsideDecodeOnlyWhole() {
        let command = MetaCommand.allocate(database: "root.a", [SlotRequest(slot: 3, timePartitions: [1, -2])])
        #expect(throws: CorruptDataError.self) { try MetaCommand(decoding: command.encoded() + [0]) }
        #expect(throws: CorruptDataError.self) { try MetaCommand(decoding: Array(command.encoded().dropLast())) }
        #expect(throws: CorruptDataError.self) { try MetaCommand(decoding: [99]) }
        // A count larger than the bytes behind it is refused before anything is allocated.
        #expect(throws: CorruptDataError.self) { try MetaCommand(decoding: [5, 1, 0x61, 0xff, 0xff, 0xff, 0xff, 0x0f]) }
    }

    /// Random commands from random members' views, seed by seed: every state keeps its rules,
    /// the table's version only grows, and no (slot, partition) is ever assigned twice.
    @Test(arguments: 0..<20) func randomCommandsKeepTheRules(seed: UInt64) throws {
        var random = Seeded(state: seed)
        var log = Log()
        var assigned: [String: [Int: [Int64: GroupID]]] = [:]
        var version: UInt64 = 0
        for _ in 0..<300 {
            let databases = log.state.databases.keys.sorted()
            let nodes = log.state.nodes.keys.sorted()
            let command: MetaCommand
            switch Int.random(in: 0..<10, using: &random) {
            case 0: command = .registerNode(internalAddress: "n\(Int.random(in: 1...12, using: &random))", clientAddress: "c", cores: Int.random(in: 1...8, using: &random))
            case 1: command = .createDatabase(database("root.d\(Int.random(in: 0..<6, using: &random))", data: Int.random(in: 1...3, using: &random),
                                                       schema: Int.random(in: 1...3, using: &random), dataGroups: Int.random(in: 0...3, using: &random)))
            case 2 where !databases.isEmpty && Int.random(in: 0..<4, using: &random) == 0: command = .dropDatabase(databases.randomElement(using: &random)!)
            case 3 where !nodes.isEmpty:
                command = .setNodeStatus(nodes.randomElement(using: &random)!, NodeRecord.Status.allCases.randomElement(using: &random)!)
            case 4 where !nodes.isEmpty: command = .removeNode(nodes.randomElement(using: &random)!)
            case 5 where !log.state.groups.isEmpty:
                let group = log.state.groups.keys.sorted().randomElement(using: &random)!
                command = .reportLeader(group, NodeID.random(in: 1...12, using: &random))
            default:
                guard let database = databases.randomElement(using: &random) else { continue }
                command = .allocate(database: database, (0..<Int.random(in: 1...20, using: &random)).map { _ in
                    SlotRequest(slot: Int.random(in: 0..<1000, using: &random), timePartitions: (0..<3).map { _ in Int64.random(in: -2...6, using: &random) })
                })
            }
            let dropped: String? = if case .dropDatabase(let name) = command { name } else { nil }
            _ = try? log.apply(command)
            #expect(log.state.violations().isEmpty, "\(log.state.violations())")
            #expect(log.state.table.version >= version)
            version = log.state.table.version
            if let dropped { assigned[dropped] = nil }
            for (database, slots) in log.state.table.dataSlots {
                for (slot, partitions) in slots {
                    for (partition, group) in partitions {
                        if let earlier = assigned[database]?[slot]?[partition] {
                            #expect(earlier == group, "\(database) slot \(slot) partition \(partition) moved from \(earlier) to \(group)")
                        }
                        assigned[database, default: [:]][slot, default: [:]][partition] = group
                    }
                }
            }
        }
        #expect(try MetaSnapshot.decode(MetaSnapshot.encode(log.state)) == log.state)
    }
}

/// A recorded two-phase DROP DATABASE in the meta state.
@Suite struct MetaOperationTests {
    @Test func aDropInFlightRefusesAllocationsSurvivesASnapshotAndFinishesOnce() throws {
        var state = MetaState(settings: ClusterSettings(), reservedNodeIDs: 0)
        try state.apply(.registerNode(internalAddress: "n1:1", clientAddress: "n1:2", cores: 4), index: 1)
        try state.apply(.createDatabase(DatabaseRecord(name: "root.a", defaults: state.settings)), index: 2)
        try state.apply(.allocate(database: "root.a", [SlotRequest(slot: 7, timePartitions: [0])]), index: 3)
        #expect(throws: MetaError.self) { try state.apply(.begin(.dropDatabase("root.nothing")), index: 4) }
        try state.apply(.begin(.dropDatabase("root.a")), index: 5)
        try state.apply(.begin(.dropDatabase("root.a")), index: 6)  // a retried statement: the same operation
        #expect(state.operations == [5: MetaOperation(id: 5, kind: .dropDatabase("root.a"))])
        #expect(throws: MetaError(code: 606, "root.a is being dropped; write to it again once the drop finished")) {
            try state.apply(.allocate(database: "root.a", [SlotRequest(slot: 8, timePartitions: [0])]), index: 7)
        }
        #expect(state.table.dataGroup("root.a", slot: 7, timePartition: 0) != nil, "nothing leaves before the finish")
        // A snapshot keeps the operation in flight, and the decoded state finishes it the same way.
        var restored = try MetaSnapshot.decode(MetaSnapshot.encode(state))
        #expect(restored == state)
        for copy in [0, 1] {
            var target = copy == 0 ? state : restored
            try target.apply(.finish(.dropDatabase("root.a")), index: 8)
            #expect(target.operations.isEmpty && target.databases["root.a"] == nil && target.groups.isEmpty && target.table.dataSlots.isEmpty)
            try target.apply(.finish(.dropDatabase("root.a")), index: 9)  // finished already: nothing to do
            #expect(target.violations().isEmpty)
            if copy == 0 { state = target } else { restored = target }
        }
        #expect(state == restored)
        #expect(Array(MetaSnapshot.encode(state).prefix(8)) == Array("TMMETA1\0".utf8), "with nothing in flight, the previous version's layout")
        try state.apply(.createDatabase(DatabaseRecord(name: "root.a", defaults: state.settings)), index: 10)
        #expect(state.databases["root.a"] != nil, "made again once the drop finished")
    }

    @Test func aSeriesDeleteInFlightRefusesWritesToWhatItMatchesAndSurvivesASnapshot() throws {
        var state = MetaState(settings: ClusterSettings(), reservedNodeIDs: 0)
        try state.apply(.registerNode(internalAddress: "n1:1", clientAddress: "n1:2", cores: 4), index: 1)
        try state.apply(.createDatabase(DatabaseRecord(name: "root.a", defaults: state.settings)), index: 2)
        try state.apply(.begin(.deleteSeries("root.a.d1.*")), index: 3)
        try state.apply(.begin(.deleteSeries("root.a.d1.*")), index: 4)
        #expect(state.operations == [3: MetaOperation(id: 3, kind: .deleteSeries("root.a.d1.*"))])
        func rows(_ device: String) -> RowBatch { RowBatch([RowWrite(device: device, timestamp: 1, measurements: ["v"], values: [.int64(1)])]) }
        #expect(WritePartitions.refusedByOperations(rows("root.a.d1"), in: state)?.contains("root.a.d1.v is being deleted") == true)
        #expect(WritePartitions.refusedByOperations(rows("root.a.d2"), in: state) == nil)
        let restored = try MetaSnapshot.decode(MetaSnapshot.encode(state))
        #expect(restored == state)
        try state.apply(.finish(.deleteSeries("root.a.d1.*")), index: 5)
        #expect(state.operations.isEmpty && WritePartitions.refusedByOperations(rows("root.a.d1"), in: state) == nil)

        // A delete of points refuses only writes into its time range.
        let command = MetaCommand.begin(.deleteData("root.a.**", -10...0))
        #expect(try MetaCommand(decoding: command.encoded()) == command)
        try state.apply(command, index: 6)
        func row(_ time: Int64) -> RowBatch { RowBatch([RowWrite(device: "root.a.d9", timestamp: time, measurements: ["v"], values: [.int64(1)])]) }
        #expect(WritePartitions.refusedByOperations(row(-3), in: state) != nil && WritePartitions.refusedByOperations(row(1), in: state) == nil)
        #expect(try MetaSnapshot.decode(MetaSnapshot.encode(state)) == state)
        var reversed = command.encoded()
        reversed.removeLast(2)
        reversed += [2, 19]  // the range's ends as zigzag varints: 1 then -10, an empty range
        #expect(throws: CorruptDataError.self) { try MetaCommand(decoding: reversed) }
    }
}
