import Testing
import TidemarkCore
@testable import TidemarkStorage

private func row(_ device: String, _ timestamp: Int64, _ cells: (String, Value)...) -> RowWrite {
    RowWrite(device: device, timestamp: timestamp, measurements: cells.map(\.0), values: cells.map(\.1))
}

extension GroupedWrite {
    /// Adds `unit` as one unit of its own batch: nil, or the conflict that refused it.
    mutating func add(_ unit: [RowWrite], lookup: inout SeriesLookup) -> TypeConflict? {
        add(RowBatch(unit), units: [0..<unit.count], lookup: &lookup).first?.refusal.conflict
    }
}

extension ColumnBatch {
    /// Each series' timestamps on their own.
    var timestampsBySeries: [[Int64]] { series.map { Array(timestamps[$0.points]) } }
    /// Each series' values on their own.
    var valuesBySeries: [Column] { series.map { values(of: $0).gathered($0.valueRange) } }
}

@Suite struct GroupedWriteTests {
    private func schemaWithX() throws -> SchemaTree {
        let schema = SchemaTree()
        try schema.createDatabase("root.a")
        try schema.createSeries(SeriesSchema(path: "root.a.d.x", dataType: .int64))
        return schema
    }

    @Test func unitsGoInWholeOrNotAtAllAndValuesAreGroupedBySeries() throws {
        let schema = try schemaWithX()
        var lookup = SeriesLookup(directory: SeriesDirectory(entriesMax: 100), schema: schema)
        var write = GroupedWrite()
        // Fits: x is INT64 in the schema; y is new and becomes DOUBLE.
        #expect(write.add([row("root.a.d", 1, ("x", .int64(1)), ("y", .double(1)))], lookup: &lookup) == nil)
        // y is DOUBLE now (from the unit before): the whole unit is refused, x's value too.
        #expect(write.add([row("root.a.d", 2, ("x", .int64(2)), ("y", .boolean(true)))], lookup: &lookup)
                == TypeConflict(path: "root.a.d.y", expected: .double, got: .boolean))
        // A new series given two types within one unit: refused, and z is not kept either.
        #expect(write.add([row("root.a.d", 3, ("z", .int64(3))), row("root.a.d", 4, ("z", .text("4")))], lookup: &lookup)
                == TypeConflict(path: "root.a.d.z", expected: .int64, got: .text))
        #expect(write.add([row("root.a.d", 5, ("x", .text("5")))], lookup: &lookup)
                == TypeConflict(path: "root.a.d.x", expected: .int64, got: .text))
        // Measurements in another order, and a second device.
        #expect(write.add([row("root.a.d", 6, ("y", .double(6)), ("x", .int64(6))), row("root.a.e", 6, ("x", .boolean(false)))],
                          lookup: &lookup) == nil)
        // z, refused above, may now be another type.
        #expect(write.add([row("root.a.d", 7, ("z", .text("7")))], lookup: &lookup) == nil)
        #expect(write.pointCount == 6)
        let batch = write.makeBatch()
        #expect(batch.series.map(\.path) == ["root.a.d.x", "root.a.d.y", "root.a.e.x", "root.a.d.z"])
        #expect(batch.timestampsBySeries == [[1, 6], [1, 6], [6], [7]])
        #expect(batch.valuesBySeries == [.int64([1, 6]), .double([1, 6]), .boolean([false]), .text(["7"])])
        // The schema's series carries its number; new ones have none yet.
        #expect(batch.series.map(\.id) == [schema.ref("root.a.d.x")!.id, nil, nil, nil])
    }

    @Test func aRefusedUnitOfABatchLeavesTheUnitsAroundItThatShareItsKey() throws {
        let schema = try schemaWithX()
        var lookup = SeriesLookup(directory: SeriesDirectory(entriesMax: 100), schema: schema)
        var rows = RowBatch()
        let key = rows.addKey(RowBatch.Key(device: "root.a.d", measurements: ["x", "y"]))
        rows.append(key: key, timestamp: 1, values: [.int64(1), .double(1)])
        // Refused (x is INT64), after y got its column in this batch.
        rows.append(key: key, timestamp: 2, values: [.int64(2), .boolean(true)])
        rows.append(key: key, timestamp: 3, values: [.int64(3), .double(3)])
        rows.append(key: key, timestamp: 4, values: [.text("4"), .double(4)])
        var write = GroupedWrite()
        let refused = write.add(rows, units: [0..<1, 1..<2, 2..<3, 3..<4], lookup: &lookup)
        #expect(refused.map(\.unit) == [1, 3])
        #expect(refused.map(\.refusal.conflict) == [TypeConflict(path: "root.a.d.y", expected: .double, got: .boolean),
                                          TypeConflict(path: "root.a.d.x", expected: .int64, got: .text)])
        #expect(write.pointCount == 4)
        let batch = write.makeBatch()
        #expect(batch.series.map(\.path) == ["root.a.d.x", "root.a.d.y"])
        #expect(batch.timestampsBySeries == [[1, 3], [1, 3]])
        #expect(batch.valuesBySeries == [.int64([1, 3]), .double([1, 3])])
    }

    @Test func tabletRowsOfOneDeviceShareOneKey() {
        let rows = RowBatch([row("root.a.d", 1, ("x", .int64(1))), row("root.a.d", 2, ("x", .int64(2))),
                             row("root.a.e", 2, ("x", .int64(2))), row("root.a.e", 3, ("x", .int64(3)), ("y", .int64(3)))])
        #expect(rows.keys == [RowBatch.Key(device: "root.a.d", measurements: ["x"]), RowBatch.Key(device: "root.a.e", measurements: ["x"]),
                              RowBatch.Key(device: "root.a.e", measurements: ["x", "y"])])
        #expect(rows.rowKeys == [0, 0, 1, 2])
        #expect((0..<rows.rowCount).map { rows.valueRange(ofRow: $0) } == [0..<1, 1..<2, 2..<3, 3..<5])
    }

    @Test func theDirectoryFollowsTheSchemaAcrossBatches() throws {
        let schema = try schemaWithX()
        var lookup = SeriesLookup(directory: SeriesDirectory(entriesMax: 3), schema: schema)
        var first = GroupedWrite()
        #expect(first.add([row("root.a.d", 1, ("x", .int64(1)))], lookup: &lookup) == nil)
        // Deleted and created again with another type: the next batch sees the new series.
        _ = schema.deleteSeries(matching: try PathPattern(parsing: "root.a.d.x"))
        try schema.createSeries(SeriesSchema(path: "root.a.d.x", dataType: .text))
        var second = GroupedWrite()
        #expect(second.add([row("root.a.d", 2, ("x", .int64(2)))], lookup: &lookup)
                == TypeConflict(path: "root.a.d.x", expected: .text, got: .int64))
        #expect(second.add([row("root.a.d", 2, ("x", .text("2")))], lookup: &lookup) == nil)
        #expect(second.makeBatch().series.map(\.id) == [schema.ref("root.a.d.x")!.id])
        // Past its bound the directory starts again, between batches only.
        for device in ["root.a.e", "root.a.f", "root.a.g"] {
            var write = GroupedWrite()
            #expect(write.add([row(device, 1, ("x", .int64(1)))], lookup: &lookup) == nil)
        }
        #expect(lookup.directory.count == 4)
        lookup.directory.trim()
        #expect(lookup.directory.count == 0)
    }

    @Test func aNewSeriesWithABadPathRefusesOnlyItsUnit() throws {
        let schema = try schemaWithX()
        var lookup = SeriesLookup(directory: SeriesDirectory(entriesMax: 100), schema: schema)
        var rows = RowBatch()
        rows.append(row("root.a.d", 1, ("x", .int64(1))))
        rows.append(row("root.a.d", 2, (String(repeating: "m", count: 200), .int64(2))))
        rows.append(row("root.a." + (1...20).map { "l\($0)" }.joined(separator: "."), 3, ("x", .int64(3))))
        rows.append(row("root.a.d", 4, ("x", .int64(4))))
        var write = GroupedWrite()
        let refused = write.add(rows, units: [0..<1, 1..<2, 2..<3, 3..<4], lookup: &lookup)
        #expect(refused.map(\.unit) == [1, 2])
        #expect(refused.map(\.refusal.description).allSatisfy { $0.contains("level_bytes_max") || $0.contains("path_depth_max") })
        #expect(refused.first?.refusal.description.contains("level 4 is 200 bytes") == true)
        #expect(write.pointCount == 2)
        #expect(write.makeBatch().series.map(\.path) == ["root.a.d.x"])
    }

    @Test func aDeviceWithManyMeasurementsKeepsEachItsNumber() throws {
        var directory = SeriesDirectory(entriesMax: 1_000_000)
        let device = directory.device("root.a.wide")
        let count = 20_000
        // Hints that miss (reversed order) must still find each measurement's number.
        let numbers = (0..<count).map { directory.series(device: device, devicePath: "root.a.wide", measurement: "m\($0)", hint: $0) }
        let again = (0..<count).reversed().map { directory.series(device: device, devicePath: "root.a.wide", measurement: "m\($0)", hint: $0) }
        #expect(Set(numbers).count == count)
        #expect(again == numbers.reversed())
        #expect(directory.path(numbers[17]) == "root.a.wide.m17")
    }
}
