import TidemarkCore

/// One series' points as written: arrival order, possibly out of time order and with
/// repeated timestamps; `sorted()` gives time order with the newest write per timestamp.
struct SeriesBuffer {
    var timestamps: [Int64] = []
    var values: Column
    private var inOrder = true

    init(type: DataType) { values = .empty(type) }

    mutating func append(_ timestamp: Int64, _ value: Value) {
        if let last = timestamps.last, timestamp <= last { inOrder = false }
        timestamps.append(timestamp)
        values.append(value)
    }

    mutating func append(contentsOf points: some Sequence<(Int64, Value)>) {
        for (timestamp, value) in points { append(timestamp, value) }
    }

    /// Strictly increasing timestamps; for a repeated timestamp the last write wins.
    func sorted() -> (timestamps: [Int64], values: Column) {
        if inOrder { return (timestamps, values) }
        // A stable sort keeps writes of one timestamp in arrival order; keep the last of each run.
        let order = timestamps.indices.sorted { (timestamps[$0], $0) < (timestamps[$1], $1) }
        var kept: [Int] = []
        kept.reserveCapacity(order.count)
        for (position, index) in order.enumerated() {
            if position + 1 < order.count && timestamps[order[position + 1]] == timestamps[index] { continue }
            kept.append(index)
        }
        return (kept.map { timestamps[$0] }, values.gathered(kept))
    }

    /// Drops points in `range`.
    mutating func remove(in range: ClosedRange<Int64>) {
        let kept = timestamps.indices.filter { !range.contains(timestamps[$0]) }
        guard kept.count != timestamps.count else { return }
        timestamps = kept.map { timestamps[$0] }
        values = values.gathered(kept)
    }
}

/// The growing in-memory part of a region: per-series column buffers. Not thread-safe;
/// the engine guards the active memtable with its lock and never mutates a sealed one.
final class Memtable: @unchecked Sendable {
    private(set) var series: [String: SeriesBuffer] = [:]
    private(set) var bytes = 0
    private(set) var pointCount = 0
    /// Highest WAL sequence applied; a sealed memtable's segments carry it.
    private(set) var maxSequence: UInt64 = 0
    let createdNs: UInt64

    init(createdNs: UInt64) { self.createdNs = createdNs }

    var isEmpty: Bool { pointCount == 0 }

    func append(path: String, type: DataType, timestamp: Int64, value: Value, sequence: UInt64) {
        precondition(value.dataType == type, "value type checked against the schema before it gets here")
        if series[path] == nil {
            series[path] = SeriesBuffer(type: type)
            bytes += 64 + path.utf8.count
        }
        series[path]!.append(timestamp, value)
        bytes += 8 + Self.valueBytes(value)
        pointCount += 1
        maxSequence = max(maxSequence, sequence)
    }

    /// Appends `indices` of `points`, all of series `path`, with one lookup for the series.
    func append(path: String, type: DataType, points: [PointWrite], indices: [Int], sequence: UInt64) {
        if series[path] == nil {
            series[path] = SeriesBuffer(type: type)
            bytes += 64 + path.utf8.count
        }
        series[path]!.append(contentsOf: indices.lazy.map { (points[$0].timestamp, points[$0].value) })
        for index in indices { bytes += 8 + Self.valueBytes(points[index].value) }
        pointCount += indices.count
        maxSequence = max(maxSequence, sequence)
    }

    func noteSequence(_ sequence: UInt64) { maxSequence = max(maxSequence, sequence) }

    func remove(matching pattern: PathPattern, in range: ClosedRange<Int64>) {
        for path in series.keys where pattern.matches(path) {
            let before = series[path]!.timestamps.count
            series[path]!.remove(in: range)
            pointCount -= before - series[path]!.timestamps.count
        }
    }

    private static func valueBytes(_ value: Value) -> Int {
        switch value {
        case .boolean: 1
        case .int32, .float: 4
        case .int64, .double: 8
        case .text(let text): 16 + text.utf8.count
        }
    }
}
