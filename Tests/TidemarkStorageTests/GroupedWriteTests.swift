import Testing
import TidemarkCore
@testable import TidemarkStorage

private func row(_ device: String, _ timestamp: Int64, _ cells: (String, Value)...) -> RowWrite {
    RowWrite(device: device, timestamp: timestamp, measurements: cells.map(\.0), values: cells.map(\.1))
}

@Suite struct GroupedWriteTests {
    @Test func unitsGoInWholeOrNotAtAllAndValuesAreGroupedBySeries() {
        let existing: [String: DataType] = ["root.a.d.x": .int64]
        var asked: [String] = []
        let lookup = { (path: String) -> DataType? in asked.append(path); return existing[path] }
        var write = GroupedWrite()
        // Fits: x is INT64 in the schema; y is new and becomes DOUBLE.
        #expect(write.add([row("root.a.d", 1, ("x", .int64(1)), ("y", .double(1)))], existing: lookup) == nil)
        // y is DOUBLE now (from the unit before): the whole unit is refused, x's value too.
        #expect(write.add([row("root.a.d", 2, ("x", .int64(2)), ("y", .boolean(true)))], existing: lookup)
                == TypeConflict(path: "root.a.d.y", expected: .double, got: .boolean))
        // A new series given two types within one unit.
        #expect(write.add([row("root.a.d", 3, ("z", .int64(3))), row("root.a.d", 4, ("z", .text("4")))], existing: lookup)
                == TypeConflict(path: "root.a.d.z", expected: .int64, got: .text))
        #expect(write.add([row("root.a.d", 5, ("x", .text("5")))], existing: lookup)
                == TypeConflict(path: "root.a.d.x", expected: .int64, got: .text))
        // Measurements in another order, and a second device.
        #expect(write.add([row("root.a.d", 6, ("y", .double(6)), ("x", .int64(6))), row("root.a.e", 6, ("x", .boolean(false)))],
                          existing: lookup) == nil)
        #expect(write.pointCount == 5)
        #expect(write.columns.map(\.path) == ["root.a.d.x", "root.a.d.y", "root.a.e.x"])
        #expect(write.columns.map(\.timestamps) == [[1, 6], [1, 6], [6]])
        #expect(write.columns.map(\.values) == [.int64([1, 6]), .double([1, 6]), .boolean([false])])
        // The schema is asked once per series (and again only for units refused before adding it).
        #expect(asked.filter { $0 == "root.a.d.x" }.count == 1)
    }
}
