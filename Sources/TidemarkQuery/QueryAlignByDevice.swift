import TidemarkCore
import TidemarkStorage

/// ALIGN BY DEVICE: one block of rows per device, in device order: `Device`, then a column
/// per measurement (raw rows) or per aggregate of a measurement (one row per device, or one
/// per window with GROUP BY time).
extension Query {
    /// An output column: its header, the item it runs per device and the measurement it needs.
    private struct AlignedColumn {
        var header: String
        var item: Expression
        var measurement: String
    }

    func alignedByDevice(_ range: TimeRange) throws -> QueryResult {
        var columns: [AlignedColumn] = []
        for item in select.items {
            guard case .path(let levels) = item, levels.count == 1 else {
                throw ExecutionError.semantic("ALIGN BY DEVICE takes measurement names, got \(item)")
            }
            for name in try measurements(levels[0]) where !columns.contains(where: { $0.measurement == name }) {
                columns.append(AlignedColumn(header: name, item: .path([name]), measurement: name))
            }
        }
        return try aligned(columns, timed: true) { try $0.raw(range) }
    }

    func alignedByDeviceAggregates(_ range: TimeRange) throws -> QueryResult {
        var columns: [AlignedColumn] = []
        for item in select.items {
            guard case .call(let name, let arguments) = item, Self.aggregates.contains(name), arguments.count == 1,
                  case .path(let levels) = arguments[0], levels.count == 1 else {
                throw ExecutionError.semantic("ALIGN BY DEVICE takes aggregates of measurement names only, got \(item)")
            }
            for measurement in try measurements(levels[0]) {
                columns.append(AlignedColumn(header: "\(name)(\(measurement))", item: .call(name, [.path([measurement])]), measurement: measurement))
            }
        }
        return try aligned(columns, timed: select.groupByTime != nil) { perDevice in
            if let windows = select.groupByTime { return try perDevice.windowed(range, windows) }
            return try perDevice.aggregate(range)
        }
    }

    /// `name`, or for `*` every measurement under the FROM paths.
    private func measurements(_ name: String) throws -> [String] {
        guard name == "*" else { return [name] }
        var found: [String] = []
        for prefix in select.from {
            for series in try engine.series(matching: try PathPattern(levels: prefix + ["*"])) {
                let measurement = try SeriesPath.splitLevels(series.path).last!
                if !found.contains(measurement) { found.append(measurement) }
            }
        }
        return found
    }

    /// Runs `perDevice` for each device with the columns it has, and stacks the blocks.
    private func aligned(_ all: [AlignedColumn], timed: Bool, perDevice run: (Query) throws -> QueryResult) throws -> QueryResult {
        let columns = Array(all.dropFirst(select.seriesOffset).prefix(select.seriesLimit ?? Int.max))
        var devices: [String] = []
        for prefix in select.from {
            for device in try engine.devices(matching: try PathPattern(levels: prefix)) where !devices.contains(device) { devices.append(device) }
        }
        var timestamps: [Int64] = []
        var out: [[ResultValue]] = Array(repeating: [], count: columns.count + 1)
        var types = Array(repeating: "", count: columns.count)
        var remainingOffset = select.offset
        var remainingLimit = select.limit ?? Int.max
        for device in devices.sorted() where remainingLimit > 0 {
            let present = try columns.indices.filter { try engine.series(device + "." + columns[$0].measurement) != nil }
            guard !present.isEmpty else { continue }
            var perDevice = select
            perDevice.alignByDevice = false
            perDevice.from = [try SeriesPath.splitLevels(device)]
            perDevice.items = present.map { columns[$0].item }
            (perDevice.offset, perDevice.limit, perDevice.seriesOffset, perDevice.seriesLimit) = (0, nil, 0, nil)
            // Each item names one series of this device, so block column k is present[k].
            var block = try run(Query(select: perDevice, engine: engine, rowsMax: rowsMax, budget: budget))
            let rows = block.timestamps?.count ?? block.values.first?.count ?? 0
            guard block.values.count == present.count, block.values.allSatisfy({ $0.count == rows }) else {
                throw ExecutionError(code: 305, message: "internal error: \(device)'s block has \(block.values.count) columns for \(present.count)")
            }
            if let fill = select.fill { block.values = block.values.map { Self.fill($0, fill, block.timestamps) } }
            for row in 0..<rows {
                if remainingOffset > 0 { remainingOffset -= 1; continue }
                guard remainingLimit > 0 else { break }
                remainingLimit -= 1
                if timed { timestamps.append(block.timestamps?[row] ?? 0) }
                out[0].append(.text(device))
                var cells: [ResultValue] = [.text(device)]
                for index in columns.indices {
                    if let at = present.firstIndex(of: index) {
                        cells.append(block.values[at][row])
                        types[index] = block.dataTypes[at]
                    } else {
                        cells.append(.null)
                    }
                    out[index + 1].append(cells.last!)
                }
                try budget.charge(MemoryBudget.rowBytes(cells), for: "result rows")
                if out[0].count >= rowsMax {
                    throw ExecutionError(code: 708, message: "Dataset row size exceeded the given max row size (\(rowsMax))")
                }
            }
        }
        return QueryResult(expressions: nil, columnNames: ["Device"] + columns.map(\.header),
                           dataTypes: ["TEXT"] + types.map { $0.isEmpty ? "TEXT" : $0 },
                           timestamps: timed ? timestamps : nil, values: out)
    }
}
