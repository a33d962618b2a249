import TidemarkCore

/// A unit whose point does not fit its series' type; nothing of the unit was added.
public struct TypeConflict: Sendable, Equatable {
    public var path: String
    public var expected: DataType
    public var got: DataType
}

/// Points gathered unit by unit (a line-protocol line, a REST record) and grouped by series
/// as they come, so the type check and the grouping cost one lookup per point. A unit goes
/// in whole or not at all.
public struct GroupedWrite: Sendable {
    public private(set) var points: [PointWrite] = []
    private(set) var groups: [SeriesGroup] = []
    private var position: [String: Int] = [:]

    public init() {}

    public var isEmpty: Bool { points.isEmpty }

    /// Adds `unit` if each point fits its series' type: the type the schema has
    /// (`existing`), or, for a new series, the type an earlier point gave it. Otherwise
    /// returns the first conflict and adds nothing.
    public mutating func add(_ unit: [PointWrite], existing: (String) -> DataType?) -> TypeConflict? {
        var slots: [Int?] = []
        slots.reserveCapacity(unit.count)
        var newInUnit: [String: DataType] = [:]
        for point in unit {
            let slot = position[point.path]
            let expected = slot.map { groups[$0].type } ?? existing(point.path) ?? newInUnit[point.path]
            if let expected, expected != point.value.dataType {
                return TypeConflict(path: point.path, expected: expected, got: point.value.dataType)
            }
            if slot == nil && expected == nil { newInUnit[point.path] = point.value.dataType }
            slots.append(slot)
        }
        for (point, slot) in zip(unit, slots) {
            let index = points.count
            points.append(point)
            if let slot = slot ?? position[point.path] {
                groups[slot].indices.append(index)
            } else {
                position[point.path] = groups.count
                groups.append(SeriesGroup(path: point.path, type: point.value.dataType, indices: [index]))
            }
        }
        return nil
    }
}
