import TidemarkCore

/// One series' points as written: arrival order, possibly out of time order and with
/// repeated timestamps; `sorted()` gives time order with the newest write per timestamp.
struct SeriesBuffer {
    var timestamps: [Int64] = []
    var values: Column
    private var inOrder = true

    init(type: DataType) { values = .empty(type) }

    mutating func append(timestamps more: [Int64], values column: Column) {
        guard let first = more.first else { return }
        if inOrder {
            if let last = timestamps.last, first <= last { inOrder = false }
            if inOrder { for index in more.indices.dropFirst() where more[index] <= more[index - 1] { inOrder = false; break } }
        }
        timestamps += more
        values.append(contentsOf: column)
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

    /// Appends a column of series `path` with one lookup for the series.
    func append(path: String, timestamps: [Int64], values: Column, sequence: UInt64) {
        precondition(timestamps.count == values.count)
        let seriesBefore = series.count
        // One hash of the path: the default is only built for a new series.
        series[path, default: SeriesBuffer(type: values.dataType)].append(timestamps: timestamps, values: values)
        if series.count != seriesBefore { bytes += 64 + path.utf8.count }
        bytes += 8 * timestamps.count + values.valueBytes
        pointCount += timestamps.count
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
}
