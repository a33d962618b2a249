import TidemarkCore
import TidemarkStorage

/// Rows of several series aligned by timestamp, from their scans, one batch per series at a time.
struct RowMerge {
    private var scans: [(path: String, scan: SeriesScan, timestamps: [Int64], values: TidemarkStorage.Column, index: Int)]

    /// What the scans' buffers were charged to `budget`; the owner releases it when done.
    let bufferBytes: Int

    init(engine: any RegionStore, paths: [String], range: ClosedRange<Int64>, budget: MemoryBudget) throws {
        // Each scan holds up to one decoded batch: a timestamp and a value per point.
        bufferBytes = paths.count * engine.scanBatchPoints * 16
        try budget.charge(bufferBytes, for: "scan buffers of \(paths.count) series")
        scans = try paths.map { path in (path, try engine.scan(path: path, range: range), [], .empty(.boolean), 0) }
    }

    mutating func next() throws -> (Int64, [String: Value])? {
        var lowest: Int64?
        for index in scans.indices {
            if scans[index].index == scans[index].timestamps.count {
                guard let batch = try scans[index].scan.next() else { continue }
                scans[index].timestamps = batch.timestamps
                scans[index].values = batch.values
                scans[index].index = 0
            }
            let timestamp = scans[index].timestamps[scans[index].index]
            lowest = min(lowest ?? timestamp, timestamp)
        }
        guard let timestamp = lowest else { return nil }
        var row: [String: Value] = [:]
        for index in scans.indices where scans[index].index < scans[index].timestamps.count
            && scans[index].timestamps[scans[index].index] == timestamp {
            row[scans[index].path] = scans[index].values[scans[index].index]
            scans[index].index += 1
        }
        return (timestamp, row)
    }
}
