import TidemarkCore
import TidemarkStorage

/// A SELECT: resolves its columns against the schema, then streams rows merged by time
/// from the series scans, stopping as soon as the limits allow.
struct Query {
    let select: SelectStatement
    let engine: any RegionStore
    let rowsMax: Int
    let budget: MemoryBudget

    static let aggregates: Set<String> = ["count", "sum", "avg", "min_value", "max_value", "first_value", "last_value", "min_time", "max_time"]

    /// One output column: its header and how to compute it from a row's series values.
    private struct Column {
        var header: String
        var type: String
        var evaluate: ([String: Value]) -> ResultValue
    }

    func run() throws -> QueryResult {
        let range = select.condition.flatMap(TimeRange.of) ?? .all
        if select.last { return try last(range) }
        if select.groupByLevel != nil && !select.items.allSatisfy({ if case .call(let name, _) = $0 { return Self.aggregates.contains(name) }; return false }) {
            throw ExecutionError.semantic("GROUP BY LEVEL needs aggregates in the select list")
        }
        let isAggregate = select.items.contains { if case .call(let name, _) = $0 { return Self.aggregates.contains(name) }; return false }
        var result: QueryResult
        if let windows = select.groupByTime {
            guard isAggregate else { throw ExecutionError.semantic("GROUP BY time needs aggregates in the select list") }
            guard select.condition == nil || range.isOnlyTime else { throw ExecutionError.semantic("GROUP BY time takes a WHERE clause on time only") }
        }
        if select.alignByDevice {
            guard select.groupByLevel == nil else { throw ExecutionError.semantic("ALIGN BY DEVICE cannot be combined with GROUP BY LEVEL") }
            result = isAggregate ? try alignedByDeviceAggregates(range) : try alignedByDevice(range)
        } else if let windows = select.groupByTime {
            result = try windowed(range, windows)
        } else {
            result = isAggregate ? try aggregate(range) : try raw(range)
        }
        // (ALIGN BY DEVICE fills each device's block on its own.)
        if let fill = select.fill, !select.alignByDevice { result.values = result.values.map { Self.fill($0, fill, result.timestamps) } }
        return result
    }

    // MARK: - Column resolution

    /// Full series paths an item's path refers to, under every FROM prefix.
    func expand(_ levels: [String]) throws -> [SeriesSchema] {
        var found: [SeriesSchema] = []
        var seen = Set<String>()
        for prefix in select.from {
            let pattern = try PathPattern(levels: prefix + levels)
            for series in try engine.series(matching: pattern) where seen.insert(series.path).inserted { found.append(series) }
        }
        return found
    }

    /// Replaces relative paths by the one series each names (arithmetic needs exactly one).
    private func bind(_ expression: Expression) throws -> Expression {
        switch expression {
        case .path(let levels):
            let series = try expand(levels)
            guard series.count == 1 else {
                throw ExecutionError.semantic("\(levels.joined(separator: ".")) matches \(series.count) series; an expression needs exactly one")
            }
            return .path([series[0].path])
        case .binary(let op, let a, let b): return .binary(op, try bind(a), try bind(b))
        case .negate(let inner): return .negate(try bind(inner))
        case .call(let name, let arguments): return .call(name, try arguments.map(bind))
        default: return expression
        }
    }

    static func constant(_ expression: Expression) -> Double? {
        switch expression {
        case .number(let value, _): value
        case .negate(let inner): constant(inner).map { -$0 }
        default: nil
        }
    }

    /// Evaluates arithmetic over one row; nil when any operand is missing or not numeric.
    private static func evaluate(_ expression: Expression, _ row: [String: Value]) -> Double? {
        switch expression {
        case .path(let levels): return row[levels[0]]?.numeric
        case .number(let value, _): return value
        case .negate(let inner): return evaluate(inner, row).map { -$0 }
        case .binary(let op, let a, let b):
            guard let x = evaluate(a, row), let y = evaluate(b, row) else { return nil }
            switch op {
            case "+": return x + y
            case "-": return x - y
            case "*": return x * y
            case "/": return x / y
            default: return x.truncatingRemainder(dividingBy: y)
            }
        default: return nil
        }
    }

    private func columns() throws -> [Column] {
        var columns: [Column] = []
        for item in select.items {
            if case .path(let levels) = item {
                for series in try expand(levels) {
                    let path = series.path
                    columns.append(Column(header: path, type: series.dataType.description) { ResultValue($0[path]) })
                }
            } else {
                let bound = try bind(item)
                columns.append(Column(header: bound.description, type: "DOUBLE") { row in
                    Self.evaluate(bound, row).map { .double($0) } ?? .null
                })
            }
        }
        let offset = min(select.seriesOffset, columns.count)
        return Array(columns.dropFirst(offset).prefix(select.seriesLimit ?? Int.max))
    }

    // MARK: - Raw rows

    func raw(_ range: TimeRange) throws -> QueryResult {
        let columns = try columns()
        var needed = Set<String>()
        for item in select.items { for levels in item.paths { for series in try expand(levels) { needed.insert(series.path) } } }
        let condition = try select.condition.map(bindCondition)
        if let condition { for levels in condition.paths { needed.insert(levels[0]) } }
        var timestamps: [Int64] = []
        var rows: [[ResultValue]] = []
        let keep = select.limit.map { select.offset.saturatingAdd($0) }
        if let timeRange = range.range, !columns.isEmpty {
            var merge = try RowMerge(engine: engine, paths: needed.sorted(), range: timeRange, budget: budget)
            defer { budget.release(merge.bufferBytes) }
            var matched = 0
            while let (timestamp, row) = try merge.next() {
                if let condition, !Self.holds(condition, timestamp, row) { continue }
                matched += 1
                if !select.orderByTimeDescending {
                    if matched <= select.offset { continue }
                    if let keep, matched > keep { break }
                }
                let cells = columns.map { $0.evaluate(row) }
                try budget.charge(MemoryBudget.rowBytes(cells), for: "result rows")
                timestamps.append(timestamp)
                rows.append(cells)
                if select.orderByTimeDescending, let keep, rows.count > keep {
                    timestamps.removeFirst()
                    budget.release(MemoryBudget.rowBytes(rows.removeFirst()))
                }
                // IoTDB's check is `limit <= fetched`: a result of exactly rowsMax rows is refused too.
                if rows.count >= rowsMax.saturatingAdd(select.orderByTimeDescending ? select.offset : 0) {
                    throw ExecutionError(code: 708, message: "Dataset row size exceeded the given max row size (\(rowsMax))")
                }
            }
        }
        if select.orderByTimeDescending {
            timestamps.reverse()
            rows.reverse()
            timestamps = Array(timestamps.dropFirst(select.offset))
            rows = Array(rows.dropFirst(select.offset))
        }
        return QueryResult(expressions: columns.map(\.header), columnNames: nil, dataTypes: columns.map(\.type),
                           timestamps: timestamps, values: columns.indices.map { index in rows.map { $0[index] } })
    }

    private func bindCondition(_ condition: Condition) throws -> Condition {
        switch condition {
        case .and(let a, let b): return .and(try bindCondition(a), try bindCondition(b))
        case .or(let a, let b): return .or(try bindCondition(a), try bindCondition(b))
        case .not(let a): return .not(try bindCondition(a))
        case .compare(let lhs, let op, let rhs):
            func bindSide(_ side: Expression) throws -> Expression {
                if side.isTime { return side }
                return try bind(side)
            }
            return .compare(try bindSide(lhs), op, try bindSide(rhs))
        }
    }

    private static func holds(_ condition: Condition, _ timestamp: Int64, _ row: [String: Value]) -> Bool {
        switch condition {
        case .and(let a, let b): return holds(a, timestamp, row) && holds(b, timestamp, row)
        case .or(let a, let b): return holds(a, timestamp, row) || holds(b, timestamp, row)
        case .not(let a): return !holds(a, timestamp, row)
        case .compare(let lhs, let op, let rhs):
            func side(_ expression: Expression) -> ResultValue {
                if expression.isTime {
                    return .integer(timestamp)
                }
                switch expression {
                case .string(let text): return .text(text)
                case .boolean(let flag): return .boolean(flag)
                case .path(let levels): return ResultValue(row[levels[0]])
                default: return evaluate(expression, row).map { .double($0) } ?? .null
                }
            }
            let a = side(lhs), b = side(rhs)
            if let x = a.number, let y = b.number { return compare(x, op, y) }
            switch (a, b) {
            case (.text(let x), .text(let y)): return compare(x, op, y)
            case (.boolean(let x), .boolean(let y)): return op == "=" ? x == y : op == "!=" ? x != y : false
            default: return false  // a missing value satisfies no comparison
            }
        }
    }

    private static func compare<T: Comparable>(_ x: T, _ op: String, _ y: T) -> Bool {
        switch op {
        case "=": x == y
        case "!=": x != y
        case "<": x < y
        case "<=": x <= y
        case ">": x > y
        default: x >= y
        }
    }

    // MARK: - Aggregates and LAST

    /// (series, range) pairs asked of the store at once, at most.
    static let aggregateBatchMax = 16_384

    func aggregate(_ range: TimeRange) throws -> QueryResult {
        var headers: [String] = [], types: [String] = [], values: [[ResultValue]] = []
        // GROUP BY LEVEL = n: series sharing levels 0…n and the measurement merge into one column.
        var grouped: [(header: String, name: String, type: DataType, result: Aggregates)] = []
        var groupIndex: [String: Int] = [:]
        let condition = try select.condition.map(bindCondition)
        var expanded: [(name: String, series: [SeriesSchema])] = []
        for item in select.items {
            guard case .call(let name, let arguments) = item, Self.aggregates.contains(name),
                  arguments.count == 1, case .path(let levels) = arguments[0] else {
                throw ExecutionError.semantic("mixing aggregates with other columns is not supported: \(item)")
            }
            expanded.append((name, try expand(levels)))
        }
        // Without value filters, every series' aggregates in one batch (one fragment per node in a cluster).
        var batched: [String: Aggregates] = [:]
        if let timeRange = range.range, condition == nil || range.isOnlyTime {
            var unique = Set<String>()
            for entry in expanded { for series in entry.series { unique.insert(series.path) } }
            let paths: [String] = unique.sorted()
            let results: [Aggregates] = try engine.aggregates(paths.map { AggregateRequest(path: $0, range: timeRange) })
            for (index, path) in paths.enumerated() { batched[path] = results[index] }
        }
        for (name, seriesList) in expanded {
            for series in seriesList {
                var result = Aggregates()
                if let timeRange = range.range {
                    if condition == nil || range.isOnlyTime {
                        result = batched[series.path] ?? Aggregates()
                    } else {
                        // Value filters: fold the matching points of this series' rows.
                        var merge = try RowMerge(engine: engine, paths: Array(Set([series.path] + condition!.paths.map { $0[0] })).sorted(),
                                                 range: timeRange, budget: budget)
                        defer { budget.release(merge.bufferBytes) }
                        while let (timestamp, row) = try merge.next() {
                            guard Self.holds(condition!, timestamp, row), let value = row[series.path] else { continue }
                            var column = TidemarkStorage.Column.empty(series.dataType)
                            column.append(value)
                            result.fold(timestamps: [timestamp], values: column)
                        }
                    }
                }
                if let level = select.groupByLevel {
                    let header = Self.levelHeader(name, series.path, level: level)
                    if let at = groupIndex[header] { grouped[at].result.merge(result) } else {
                        groupIndex[header] = grouped.count
                        grouped.append((header, name, series.dataType, result))
                    }
                    continue
                }
                headers.append("\(name)(\(series.path))")
                let (type, value) = Self.pick(name, result, series.dataType)
                types.append(type)
                values.append([value])
            }
        }
        for group in grouped {
            headers.append(group.header)
            let (type, value) = Self.pick(group.name, group.result, group.type)
            types.append(type)
            values.append([value])
        }
        let offset = min(select.seriesOffset, headers.count)
        let limit = select.seriesLimit ?? Int.max
        return QueryResult(expressions: Array(headers.dropFirst(offset).prefix(limit)), columnNames: nil,
                           dataTypes: Array(types.dropFirst(offset).prefix(limit)), timestamps: nil,
                           values: Array(values.dropFirst(offset).prefix(limit)))
    }

    /// One row per window start: each aggregate over `[t, t + interval)`, windows `step` apart.
    /// With GROUP BY LEVEL, the series sharing a level header fold into one column.
    func windowed(_ range: TimeRange, _ windows: TimeWindows) throws -> QueryResult {
        var columns: [(header: String, type: String, name: String, dataType: DataType, members: [String])] = []
        var columnIndex: [String: Int] = [:]
        for item in select.items {
            guard case .call(let name, let arguments) = item, Self.aggregates.contains(name),
                  arguments.count == 1, case .path(let levels) = arguments[0] else {
                throw ExecutionError.semantic("GROUP BY time takes aggregates of paths only, got \(item)")
            }
            for series in try expand(levels) {
                let header = select.groupByLevel.map { Self.levelHeader(name, series.path, level: $0) } ?? "\(name)(\(series.path))"
                // Only GROUP BY LEVEL folds series into one column: without it, an aggregate
                // named twice (`sum(*), sum(s0)`) is two columns, each of its one series.
                if select.groupByLevel != nil, let at = columnIndex[header] {
                    columns[at].members.append(series.path)
                    continue
                }
                columnIndex[header] = columns.count
                columns.append((header, Self.pick(name, Aggregates(), series.dataType).0, name, series.dataType, [series.path]))
            }
        }
        var starts: [Int64] = []
        var start = windows.start
        while start < windows.end {
            starts.append(start)
            guard starts.count < rowsMax else {
                throw ExecutionError(code: 708, message: "Dataset row size exceeded the given max row size (\(rowsMax))")
            }
            let (next, overflow) = start.addingReportingOverflow(windows.stepMs)
            if overflow { break }
            start = next
        }
        let kept = Array(starts.dropFirst(select.offset).prefix(select.limit ?? Int.max))
        try budget.charge(kept.count * (8 + 16 * columns.count), for: "\(kept.count) windows of \(columns.count) columns")
        var values: [[ResultValue]] = columns.map { _ in [] }
        // The (window, series) pairs in batches of at most `aggregateBatchMax` (one fragment
        // per node and batch in a cluster).
        var unique = Set<String>()
        for column in columns { unique.formUnion(column.members) }
        let paths: [String] = unique.sorted()
        let windowsPerBatch = max(1, Self.aggregateBatchMax / max(1, paths.count))
        var chunkStart = 0
        while chunkStart < kept.count {
            let chunkEnd: Int = min(kept.count, chunkStart + windowsPerBatch)
            var spans: [Bool] = []
            var requests: [AggregateRequest] = []
            for windowStart in kept[chunkStart..<chunkEnd] {
                // The window is [start, start + interval) cut at the range's end (which is > start).
                let windowEnd = min(windowStart.saturatingAdd(windows.intervalMs), windows.end) - 1
                let low = max(windowStart, range.range?.lowerBound ?? Int64.max)
                let high = min(windowEnd, range.range?.upperBound ?? Int64.min)
                spans.append(low <= high)
                if low <= high { requests += paths.map { AggregateRequest(path: $0, range: low...high) } }
            }
            chunkStart = chunkEnd
            let answered: [Aggregates] = try engine.aggregates(requests)
            var next = 0
            for inRange in spans {
                var window: [String: Aggregates] = [:]
                if inRange {
                    for path in paths {
                        window[path] = answered[next]
                        next += 1
                    }
                }
                for (index, column) in columns.enumerated() {
                    var result = Aggregates()
                    for path in column.members { result.merge(window[path] ?? Aggregates()) }
                    values[index].append(Self.pick(column.name, result, column.dataType).1)
                }
            }
        }
        return QueryResult(expressions: columns.map(\.header), columnNames: nil, dataTypes: columns.map(\.type),
                           timestamps: kept, values: values)
    }

    /// GROUP BY LEVEL = n: the header of the column a series folds into — levels 0…n and the
    /// measurement kept, the levels between them `*`.
    static func levelHeader(_ name: String, _ path: String, level: Int) -> String {
        let levels = (try? SeriesPath.splitLevels(path)) ?? [path]
        let kept = levels.count > level + 1 ? Array(levels[0...level]) + Array(repeating: "*", count: levels.count - level - 2) + [levels.last!] : levels
        return "\(name)(\(kept.joined(separator: ".")))"
    }

    /// A column with its nulls filled.
    static func fill(_ column: [ResultValue], _ fill: Fill, _ timestamps: [Int64]?) -> [ResultValue] {
        var out = column
        switch fill {
        case .constant(let expression):
            let value: ResultValue
            switch expression {
            case .string(let text): value = .text(text)
            case .boolean(let flag): value = .boolean(flag)
            default: value = constant(expression).map { .double($0) } ?? .null
            }
            for index in out.indices where out[index] == .null { out[index] = value }
        case .previous:
            var last = ResultValue.null
            for index in out.indices {
                if out[index] == .null { out[index] = last } else { last = out[index] }
            }
        case .linear:
            guard let times = timestamps else { return out }
            var previous: Int?
            for index in out.indices where out[index] != .null {
                if let before = previous, index - before > 1, let a = out[before].number, let b = out[index].number {
                    let (t0, t1) = (Double(times[before]), Double(times[index]))
                    for gap in (before + 1)..<index { out[gap] = .double(a + (b - a) * (Double(times[gap]) - t0) / (t1 - t0)) }
                }
                previous = index
            }
        }
        return out
    }

    private static func pick(_ name: String, _ result: Aggregates, _ type: DataType) -> (String, ResultValue) {
        switch name {
        case "count": ("INT64", .integer(Int64(result.count)))
        case "sum": ("DOUBLE", result.count == 0 ? .null : result.sum.map { .double($0) } ?? .null)
        case "avg": ("DOUBLE", result.count == 0 ? .null : result.average.map { .double($0) } ?? .null)
        case "min_value": (type.description, result.count == 0 ? .null : result.minValue.map { .double($0) } ?? .null)
        case "max_value": (type.description, result.count == 0 ? .null : result.maxValue.map { .double($0) } ?? .null)
        case "first_value": (type.description, ResultValue(result.firstValue))
        case "last_value": (type.description, ResultValue(result.lastValue))
        case "min_time": ("INT64", result.minTime.map { .integer($0) } ?? .null)
        default: ("INT64", result.maxTime.map { .integer($0) } ?? .null)
        }
    }

    private func last(_ range: TimeRange) throws -> QueryResult {
        var timestamps: [Int64] = [], names: [ResultValue] = [], values: [ResultValue] = [], types: [ResultValue] = []
        guard let timeRange = range.range else {
            return QueryResult(expressions: nil, columnNames: ["timeseries", "value", "dataType"], dataTypes: ["TEXT", "TEXT", "TEXT"],
                               timestamps: [], values: [[], [], []])
        }
        var listed: [SeriesSchema] = []
        for item in select.items {
            guard case .path(let levels) = item else { throw ExecutionError.semantic("SELECT LAST takes paths, got \(item)") }
            listed += try expand(levels)
        }
        let results: [Aggregates] = try engine.aggregates(listed.map { AggregateRequest(path: $0.path, range: timeRange) })
        for (series, result) in zip(listed, results) {
            guard let time = result.maxTime, let value = result.lastValue else { continue }
            timestamps.append(time)
            names.append(.text(series.path))
            values.append(.text(Self.text(value)))
            types.append(.text(series.dataType.description))
        }
        return QueryResult(expressions: nil, columnNames: ["timeseries", "value", "dataType"], dataTypes: ["TEXT", "TEXT", "TEXT"],
                           timestamps: timestamps, values: [names, values, types])
    }

    private static func text(_ value: Value) -> String {
        switch value {
        case .boolean(let v): "\(v)"
        case .int32(let v): "\(v)"
        case .int64(let v): "\(v)"
        case .float(let v): "\(v)"
        case .double(let v): "\(v)"
        case .text(let v): v
        }
    }
}
