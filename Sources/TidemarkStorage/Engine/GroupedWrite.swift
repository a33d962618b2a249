import TidemarkCore

/// A unit whose value does not fit its series' type; nothing of the unit was added.
public struct TypeConflict: Sendable, Equatable {
    public var path: String
    public var expected: DataType
    public var got: DataType
}

/// Rows gathered unit by unit (a line-protocol line, a REST request) into one column per
/// series, so the type check and the grouping cost one device lookup per row. A unit goes
/// in whole or not at all. Adding only checks and notes where each value goes; the columns
/// are built once, at their final sizes, by `makeBatch()`.
public struct GroupedWrite: Sendable {
    /// A column of the write, before it is built.
    private struct ColumnPlan {
        let path: String
        let type: DataType
        let id: Int?
        let directoryNumber: Int
        var count = 0
    }

    private var plans: [ColumnPlan] = []
    /// This write's stamp in the directory, which remembers each series' column in it.
    private var batch = 0
    /// The units taken, in order, and the column of each of their values, in order.
    private var units: [ArraySlice<RowWrite>] = []
    private var targets: [Int32] = []
    public private(set) var pointCount = 0

    public init() {}

    public var isEmpty: Bool { pointCount == 0 }

    /// Adds `unit` if each value fits its series' type: the type the schema has, or, for a
    /// new series, the type an earlier value gave it. Otherwise returns the first conflict
    /// and adds nothing.
    public mutating func add(_ unit: [RowWrite], lookup: inout SeriesLookup) -> TypeConflict? {
        add(unit[...], lookup: &lookup)
    }

    /// `add` for rows held in a bigger array (a request's rows, one unit after another).
    public mutating func add(_ unit: ArraySlice<RowWrite>, lookup: inout SeriesLookup) -> TypeConflict? {
        if batch == 0 { batch = lookup.directory.newBatch() }
        let targetsBefore = targets.count
        let plansBefore = plans.count
        for row in unit {
            let device = lookup.directory.device(row.device)
            for (position, measurement) in row.measurements.enumerated() {
                let got = row.values[position].dataType
                let series = lookup.directory.series(device: device, devicePath: row.device, measurement: measurement, hint: position)
                let plan: Int
                if let known = lookup.directory.column(series, batch: batch) {
                    plan = known
                } else {
                    let ref = lookup.directory.ref(series, in: lookup.schema)
                    plan = plans.count
                    plans.append(ColumnPlan(path: lookup.directory.path(series), type: ref?.type ?? got, id: ref?.id, directoryNumber: series))
                    lookup.directory.setColumn(plan, of: series, batch: batch)
                }
                guard plans[plan].type == got else {
                    let conflict = TypeConflict(path: plans[plan].path, expected: plans[plan].type, got: got)
                    undo(targetsFrom: targetsBefore, plansFrom: plansBefore, in: &lookup.directory)
                    return conflict
                }
                plans[plan].count += 1
                targets.append(Int32(plan))
            }
        }
        units.append(unit)
        pointCount += targets.count - targetsBefore
        return nil
    }

    /// Takes back what a refused unit noted.
    private mutating func undo(targetsFrom targetsBefore: Int, plansFrom plansBefore: Int, in directory: inout SeriesDirectory) {
        for plan in targets[targetsBefore...] { plans[Int(plan)].count -= 1 }
        targets.removeSubrange(targetsBefore...)
        for plan in plans[plansBefore...] { directory.setColumn(nil, of: plan.directoryNumber, batch: batch) }
        plans.removeSubrange(plansBefore...)
    }

    /// The write's columns, in the order their series first appeared.
    func makeBatch() -> ColumnBatch {
        var builder = ColumnBatch.Builder(pointCapacity: pointCount)
        for plan in plans { _ = builder.addSeries(path: plan.path, type: plan.type, id: plan.id, count: plan.count) }
        var next = 0
        for unit in units {
            for row in unit {
                for value in row.values {
                    builder.put(Int(targets[next]), timestamp: row.timestamp, value: value)
                    next += 1
                }
            }
        }
        assert(next == targets.count)
        return builder.finish()
    }
}
