import Testing
import TidemarkCore
@testable import TidemarkCluster

/// What a write needs of the meta group before it goes on (`WritePartitions`).
@Suite struct WritePartitionsTests {
    private func rows(_ lines: [(String, Int64)]) -> RowBatch {
        RowBatch(lines.map { RowWrite(device: $0.0, timestamp: $0.1, measurements: ["v"], values: [.double(1)]) })
    }

    @Test func aDeviceFallsInTheDatabaseThatIsALevelPrefixOfIt() {
        let databases = ["root.a": DatabaseRecord(name: "root.a", schemaReplicationFactor: 1, dataReplicationFactor: 1, dataRegionGroupsMin: 0, schemaRegionGroups: 1)]
        #expect(WritePartitions.database(of: "root.a.d1", in: databases) == "root.a")
        #expect(WritePartitions.database(of: "root.ab.d1", in: databases) == nil, "a name prefix is not a level prefix")
        #expect(WritePartitions.database(of: "root.`a.d1`.x", in: databases) == nil, "a dot inside backquotes is no level end")
        #expect(WritePartitions.autoDatabase(of: "root.plant.line.press") == "root.plant")
        #expect(WritePartitions.autoDatabase(of: "root.`a.b`.c") == "root.`a.b`")
        #expect(WritePartitions.autoDatabase(of: "root") == nil)
    }

    @Test func aWriteAsksOnlyForWhatTheTableLacks() throws {
        var state = MetaState(settings: ClusterSettings(), reservedNodeIDs: 0)
        try state.apply(.registerNode(internalAddress: "n1:1", clientAddress: "n1:2", cores: 2), index: 1)
        let week = state.settings.timePartitionIntervalMs
        let write = rows([("root.p.d1", 5), ("root.p.d1", 6), ("root.p.d1", week + 1), ("root.p.d2", -1)])
        let needs = WritePartitions.missing(write, in: state, createDatabases: true)
        #expect(needs.databases == ["root.p"])
        let slot1 = SeriesSlots.slot(ofDevice: "root.p.d1", slotCount: 1000), slot2 = SeriesSlots.slot(ofDevice: "root.p.d2", slotCount: 1000)
        let expected = [SlotRequest(slot: slot1, timePartitions: [0, 1]), SlotRequest(slot: slot2, timePartitions: [-1])].sorted { $0.slot < $1.slot }
        #expect(needs.allocations == ["root.p": expected])
        // Without auto-create, a device outside every database is the engine's to refuse.
        #expect(WritePartitions.missing(write, in: state, createDatabases: false).isEmpty)

        try state.apply(.createDatabase(DatabaseRecord(name: "root.p", schemaReplicationFactor: 1, dataReplicationFactor: 1, dataRegionGroupsMin: 0,
                                                       schemaRegionGroups: 1)), index: 2)
        try state.apply(.allocate(database: "root.p", needs.allocations["root.p"]!), index: 3)
        #expect(WritePartitions.missing(write, in: state, createDatabases: true).isEmpty, "everything is assigned now")
        #expect(WritePartitions.missing(rows([("root.p.d1", 2 * week)]), in: state, createDatabases: true).allocations
                == ["root.p": [SlotRequest(slot: slot1, timePartitions: [2])]])
    }
}

/// Where a write's rows go among the region groups (`WritePartitions.place`).
@Suite struct WritePlacementTests {
    private func state(groups: Int) throws -> MetaState {
        var state = MetaState(settings: ClusterSettings(), reservedNodeIDs: 0)
        try state.apply(.registerNode(internalAddress: "n1:1", clientAddress: "n1:2", cores: 2), index: 1)
        try state.apply(.createDatabase(DatabaseRecord(name: "root.p", schemaReplicationFactor: 1, dataReplicationFactor: 1,
                                                       dataRegionGroupsMin: groups, schemaRegionGroups: 1)), index: 2)
        return state
    }

    private func rows(_ lines: [(String, Int64)]) -> RowBatch {
        RowBatch(lines.map { RowWrite(device: $0.0, timestamp: $0.1, measurements: ["v"], values: [.double(1)]) })
    }

    @Test func aDatabaseWithOneGroupTakesEveryRowOfItWithoutALookupPerRow() throws {
        let state = try state(groups: 1)
        let only = try #require(state.groups.values.first { $0.id.kind == .data }?.id)
        let placement = WritePartitions.place(rows([("root.p.d1", 5), ("root.p.d2", 1 << 40), ("root.p", 3)]), in: state)
        #expect(placement == WritePartitions.Placement(single: only, rowGroups: []), "a device that is the database itself is in it")
    }

    @Test func rowsGoToTheGroupOfTheirSlotAndPartitionAndRowsOutsideEveryDatabaseToNone() throws {
        var state = try state(groups: 3)
        let week = state.settings.timePartitionIntervalMs
        let devices = (0..<30).map { "root.p.d\($0)" }
        let write = rows(devices.flatMap { device -> [(String, Int64)] in [(device, 1), (device, week + 1)] } + [("root.q.x", 1)])
        let needs = WritePartitions.missing(write, in: state, createDatabases: false)
        try state.apply(.allocate(database: "root.p", needs.allocations["root.p"]!), index: 3)
        let placement = WritePartitions.place(write, in: state)
        #expect(placement.single == nil)
        #expect(placement.rowGroups.count == write.rowCount)
        for row in 0..<write.rowCount - 1 {
            let device = write.key(ofRow: row).device
            let expected = state.table.dataGroup("root.p", slot: SeriesSlots.slot(ofDevice: device, slotCount: 1000),
                                                 timePartition: SeriesSlots.timePartition(of: write.rowTimestamps[row], intervalMs: week))
            #expect(placement.rowGroups[row] == expected && expected != nil)
        }
        #expect(placement.rowGroups.last! == nil, "root.q is no database")
        #expect(Set(placement.rowGroups.compactMap { $0 }).count == 3, "30 devices spread over the 3 groups")
    }
}
