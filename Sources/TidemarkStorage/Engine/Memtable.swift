import TidemarkCore

/// One series' points as written: arrival order, possibly out of time order and with
/// repeated timestamps; `sorted()` gives time order with the newest write per timestamp.
struct SeriesBuffer {
    let path: String
    /// The series' number (`SeriesRef.id`) when its points were written.
    let id: Int
    var timestamps: [Int64] = []
    var values: Column
    private var inOrder = true

    init(path: String, id: Int, type: DataType) {
        self.path = path
        self.id = id
        values = .empty(type)
    }

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

/// The growing in-memory part of a region: per-series column buffers, found by series
/// number. Not thread-safe; the engine guards the active memtable with its lock and never
/// mutates a sealed one.
final class Memtable: @unchecked Sendable {
    private(set) var buffers: [SeriesBuffer] = []
    /// Series number → index in `buffers`: an integer hash instead of the path's.
    private var slotByID: [Int: Int] = [:]
    private(set) var bytes = 0
    private(set) var pointCount = 0
    /// Highest WAL sequence applied; a sealed memtable's segments carry it.
    private(set) var maxSequence: UInt64 = 0
    let createdNs: UInt64

    init(createdNs: UInt64) { self.createdNs = createdNs }

    var isEmpty: Bool { pointCount == 0 }

    /// The points of series number `id`.
    func buffer(id: Int) -> SeriesBuffer? { slotByID[id].map { buffers[$0] } }

    /// Appends a column of series number `id` (named `path`).
    func append(id: Int, path: String, timestamps: [Int64], values: Column, sequence: UInt64) {
        precondition(timestamps.count == values.count)
        if let slot = slotByID[id] {
            precondition(buffers[slot].values.dataType == values.dataType, "a series number has one type")
            assert(buffers[slot].path == path, "a series number names one series")
            buffers[slot].append(timestamps: timestamps, values: values)
        } else {
            slotByID[id] = buffers.count
            var buffer = SeriesBuffer(path: path, id: id, type: values.dataType)
            buffer.append(timestamps: timestamps, values: values)
            buffers.append(buffer)
            bytes += 64 + path.utf8.count
        }
        bytes += 8 * timestamps.count + values.valueBytes
        pointCount += timestamps.count
        maxSequence = max(maxSequence, sequence)
    }

    func noteSequence(_ sequence: UInt64) { maxSequence = max(maxSequence, sequence) }

    /// The buffers, one per path, for a flush (a segment holds a path once). A write that
    /// raced a series' deletion can leave points under its old number beside the new
    /// series' own: they are merged, older first, or dropped when the type changed.
    var buffersByPath: [SeriesBuffer] {
        var firstOfPath: [String: Int] = [:]
        var merged: [SeriesBuffer] = []
        merged.reserveCapacity(buffers.count)
        for buffer in buffers {
            guard let at = firstOfPath[buffer.path] else {
                firstOfPath[buffer.path] = merged.count
                merged.append(buffer)
                continue
            }
            if merged[at].values.dataType == buffer.values.dataType {
                merged[at].append(timestamps: buffer.timestamps, values: buffer.values)
            } else {
                merged[at] = buffer
            }
        }
        return merged
    }

    /// Drops the points of series matching `pattern` in `range`; a series left empty is
    /// dropped whole, so a series deleted and created again never has two buffers here.
    func remove(matching pattern: PathPattern, in range: ClosedRange<Int64>) {
        var emptied = false
        for slot in buffers.indices where pattern.matches(buffers[slot].path) {
            let before = buffers[slot].timestamps.count
            buffers[slot].remove(in: range)
            pointCount -= before - buffers[slot].timestamps.count
            emptied = emptied || buffers[slot].timestamps.isEmpty
        }
        guard emptied else { return }
        buffers.removeAll { $0.timestamps.isEmpty }
        slotByID = Dictionary(uniqueKeysWithValues: buffers.enumerated().map { ($1.id, $0) })
    }
}
