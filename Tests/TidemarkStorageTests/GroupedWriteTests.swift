import Testing
import TidemarkCore
@testable import TidemarkStorage

@Suite struct GroupedWriteTests {
    @Test func unitsGoInWholeOrNotAtAllAndPointsAreGroupedBySeries() {
        let existing: [String: DataType] = ["root.a.d.x": .int64]
        var write = GroupedWrite()
        // Fits: x is INT64 in the schema; y is new and becomes DOUBLE.
        #expect(write.add([PointWrite(path: "root.a.d.x", timestamp: 1, value: .int64(1)),
                           PointWrite(path: "root.a.d.y", timestamp: 1, value: .double(1))], existing: { existing[$0] }) == nil)
        // y is DOUBLE now (from the unit before): the whole unit is refused, x's point too.
        #expect(write.add([PointWrite(path: "root.a.d.x", timestamp: 2, value: .int64(2)),
                           PointWrite(path: "root.a.d.y", timestamp: 2, value: .boolean(true))], existing: { existing[$0] })
                == TypeConflict(path: "root.a.d.y", expected: .double, got: .boolean))
        // A new series given two types within one unit.
        #expect(write.add([PointWrite(path: "root.a.d.z", timestamp: 3, value: .int64(3)),
                           PointWrite(path: "root.a.d.z", timestamp: 4, value: .text("4"))], existing: { existing[$0] })
                == TypeConflict(path: "root.a.d.z", expected: .int64, got: .text))
        #expect(write.add([PointWrite(path: "root.a.d.x", timestamp: 5, value: .text("5"))], existing: { existing[$0] })
                == TypeConflict(path: "root.a.d.x", expected: .int64, got: .text))
        #expect(write.add([PointWrite(path: "root.a.d.y", timestamp: 6, value: .double(6)),
                           PointWrite(path: "root.a.d.x", timestamp: 6, value: .int64(6))], existing: { existing[$0] }) == nil)
        #expect(write.points.map(\.timestamp) == [1, 1, 6, 6])
        #expect(write.groups.map(\.path) == ["root.a.d.x", "root.a.d.y"])
        #expect(write.groups.map(\.indices) == [[0, 3], [1, 2]])
        #expect(write.groups.allSatisfy { $0.mixedType == nil })
    }
}
