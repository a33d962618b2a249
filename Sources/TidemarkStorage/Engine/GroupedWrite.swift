import TidemarkCore
import TidemarkIO

/// A unit whose value does not fit its series' type; nothing of the unit was added.
public struct TypeConflict: Sendable, Equatable {
    public var path: String
    public var expected: DataType
    public var got: DataType
}

/// Why a unit was refused whole: nothing of it was added, the other units were.
public enum UnitRefusal: Sendable, Equatable, CustomStringConvertible {
    case typeConflict(TypeConflict)
    /// A new series whose path breaks the schema's rules or limits (depth, level size).
    case invalidPath(SchemaError)

    public var conflict: TypeConflict? {
        if case .typeConflict(let conflict) = self { return conflict }
        return nil
    }

    public var description: String {
        switch self {
        case .typeConflict(let conflict): "\(conflict.path) is \(conflict.expected), got a \(conflict.got) value"
        case .invalidPath(let error): error.description
        }
    }
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
    /// The row batches added, the units taken from them in order, and the column of each of
    /// their values, in order.
    private var sources: [RowBatch] = []
    private var units: [(source: Int, rows: Range<Int>)] = []
    private var targets: [Int32] = []
    public private(set) var pointCount = 0

    public init() {}

    public var isEmpty: Bool { pointCount == 0 }

    /// Adds each unit (a range of `rows`' rows) whose values each fit their series' type: the
    /// type the schema has, or, for a new series, the type an earlier value gave it, and whose
    /// new series have valid paths. Returns, in order, the units refused whole with the first
    /// reason.
    public mutating func add(_ rows: RowBatch, units taken: [Range<Int>],
                             lookup: inout SeriesLookup) -> [(unit: Int, refusal: UnitRefusal)] {
        if batch == 0 { batch = lookup.directory.newBatch() }
        let source = sources.count
        sources.append(rows)
        // Each key's series numbers, found once for all its rows (a directory entry keeps its
        // number for the whole batch).
        var seriesOfKey = [[Int]?](repeating: nil, count: rows.keys.count)
        var refused: [(unit: Int, refusal: UnitRefusal)] = []
        for (unitIndex, unit) in taken.enumerated() {
            precondition(unit.upperBound <= rows.rowCount, "a unit names rows of the batch")
            let targetsBefore = targets.count
            let plansBefore = plans.count
            var refusal: UnitRefusal?
            rowLoop: for row in unit {
                let keyIndex = Int(rows.rowKeys[row])
                let series: [Int]
                if let known = seriesOfKey[keyIndex] {
                    series = known
                } else {
                    let key = rows.keys[keyIndex]
                    let device = lookup.directory.device(key.device)
                    series = key.measurements.enumerated().map { position, measurement in
                        lookup.directory.series(device: device, devicePath: key.device, measurement: measurement, hint: position)
                    }
                    seriesOfKey[keyIndex] = series
                }
                for (number, valueIndex) in zip(series, rows.valueRange(ofRow: row)) {
                    let got = rows.values[valueIndex].dataType
                    let plan: Int
                    if let known = lookup.directory.column(number, batch: batch) {
                        plan = known
                    } else {
                        let ref = lookup.directory.ref(number, in: lookup.schema)
                        if ref == nil {
                            // A new series: a bad path refuses this unit, not the whole request.
                            do { _ = try lookup.schema.validate(lookup.directory.path(number)) } catch {
                                refusal = .invalidPath(error)
                                break rowLoop
                            }
                        }
                        plan = plans.count
                        plans.append(ColumnPlan(path: lookup.directory.path(number), type: ref?.type ?? got, id: ref?.id, directoryNumber: number))
                        lookup.directory.setColumn(plan, of: number, batch: batch)
                    }
                    guard plans[plan].type == got else {
                        refusal = .typeConflict(TypeConflict(path: plans[plan].path, expected: plans[plan].type, got: got))
                        break rowLoop
                    }
                    plans[plan].count += 1
                    targets.append(Int32(plan))
                }
            }
            if let refusal {
                undo(targetsFrom: targetsBefore, plansFrom: plansBefore, in: &lookup.directory)
                refused.append((unitIndex, refusal))
                continue
            }
            units.append((source, unit))
            pointCount += targets.count - targetsBefore
        }
        return refused
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
        for (source, unit) in units {
            let rows = sources[source]
            for row in unit {
                let timestamp = rows.rowTimestamps[row]
                for valueIndex in rows.valueRange(ofRow: row) {
                    builder.put(Int(targets[next]), timestamp: timestamp, value: rows.values[valueIndex])
                    next += 1
                }
            }
        }
        assert(next == targets.count)
        return builder.finish()
    }
}
