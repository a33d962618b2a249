import TidemarkCore

/// A unit whose value does not fit its series' type; nothing of the unit was added.
public struct TypeConflict: Sendable, Equatable {
    public var path: String
    public var expected: DataType
    public var got: DataType
}

/// One series' points of a write, as columns.
struct SeriesColumn: Sendable {
    let path: String
    let type: DataType
    var timestamps: [Int64] = []
    var values: Column

    init(path: String, type: DataType) {
        self.path = path
        self.type = type
        values = .empty(type)
    }

    init(path: String, type: DataType, timestamps: [Int64], values: Column) {
        precondition(timestamps.count == values.count && values.dataType == type)
        self.path = path
        self.type = type
        self.timestamps = timestamps
        self.values = values
    }
}

/// Rows gathered unit by unit (a line-protocol line, a REST request) straight into one
/// column per series, so the type check and the grouping cost one device lookup per row.
/// A unit goes in whole or not at all.
public struct GroupedWrite: Sendable {
    private(set) var columns: [SeriesColumn] = []
    /// A device's measurement and the index of its column.
    private struct Slot {
        let measurement: String
        let column: Int
    }

    /// A series a unit creates.
    private struct NewSeries {
        let path: String
        let type: DataType
    }

    /// Per device, its measurements' column indexes, in the order first seen.
    private var devices: [String: Int] = [:]
    private var deviceColumns: [[Slot]] = []
    public private(set) var pointCount = 0

    public init() {}

    public var isEmpty: Bool { pointCount == 0 }

    /// Adds `unit` if each value fits its series' type: the type the schema has
    /// (`existing`, asked once per new series), or, for a new series, the type an earlier
    /// value gave it. Otherwise returns the first conflict and adds nothing.
    public mutating func add(_ unit: [RowWrite], existing: (String) -> DataType?) -> TypeConflict? {
        add(unit[...], existing: existing)
    }

    /// `add` for rows held in a bigger array (a request's rows, one unit after another).
    public mutating func add(_ unit: ArraySlice<RowWrite>, existing: (String) -> DataType?) -> TypeConflict? {
        // Where each value goes: a column index, or a new series (its path, its type).
        var targets: [Int] = []
        var created: [NewSeries] = []
        // By path: a REST tablet of a new device names its series once per row.
        var createdAt: [String: Int] = [:]
        for row in unit {
            let device = devices[row.device]
            for (position, measurement) in row.measurements.enumerated() {
                let value = row.values[position]
                if let device, let column = Self.column(of: measurement, in: deviceColumns[device], hint: position) {
                    guard columns[column].type == value.dataType else {
                        return TypeConflict(path: row.path(position), expected: columns[column].type, got: value.dataType)
                    }
                    targets.append(column)
                    continue
                }
                let path = row.path(position)
                if let at = createdAt[path] {
                    guard created[at].type == value.dataType else { return TypeConflict(path: path, expected: created[at].type, got: value.dataType) }
                    targets.append(-1 - at)
                    continue
                }
                if let known = existing(path), known != value.dataType { return TypeConflict(path: path, expected: known, got: value.dataType) }
                createdAt[path] = created.count
                targets.append(-1 - created.count)
                created.append(NewSeries(path: path, type: value.dataType))
            }
        }
        // Checked: now add.
        var createdColumns: [Int] = []
        var next = 0
        for row in unit {
            for (position, value) in row.values.enumerated() {
                var column = targets[next]
                next += 1
                if column < 0 {
                    let at = -1 - column
                    if at == createdColumns.count {
                        createdColumns.append(columns.count)
                        columns.append(SeriesColumn(path: created[at].path, type: created[at].type))
                        register(row.device, row.measurements[position], column: columns.count - 1)
                    }
                    column = createdColumns[at]
                }
                columns[column].timestamps.append(row.timestamp)
                columns[column].values.append(value)
            }
            pointCount += row.values.count
        }
        return nil
    }

    /// A device's column for `measurement`; rows of one device usually list their
    /// measurements in the same order, so the same position is tried first.
    private static func column(of measurement: String, in known: [Slot], hint: Int) -> Int? {
        if hint < known.count && known[hint].measurement == measurement { return known[hint].column }
        return known.first { $0.measurement == measurement }?.column
    }

    private mutating func register(_ device: String, _ measurement: String, column: Int) {
        if let at = devices[device] {
            deviceColumns[at].append(Slot(measurement: measurement, column: column))
        } else {
            devices[device] = deviceColumns.count
            deviceColumns.append([Slot(measurement: measurement, column: column)])
        }
    }
}
