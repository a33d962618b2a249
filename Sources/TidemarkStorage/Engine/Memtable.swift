import TidemarkCore
import TidemarkIO

/// One series' points as written: arrival order, possibly out of time order and with
/// repeated timestamps; `sorted()` gives time order with the newest write per timestamp.
struct SeriesBuffer {
    let path: String
    /// The number (`SeriesRef.id`) of the series the points were last written under.
    var id: Int
    var timestamps: [Int64] = []
    var values: Column
    private var inOrder = true

    init(path: String, id: Int, type: DataType) {
        self.path = path
        self.id = id
        values = .empty(type)
    }

    /// Appends `more`, with their values at `range` of `column`.
    mutating func append(timestamps more: UnsafeBufferPointer<Int64>, values column: Column, range: Range<Int>) {
        precondition(more.count == range.count)
        guard let first = more.first else { return }
        if inOrder {
            if let last = timestamps.last, first <= last { inOrder = false }
            if inOrder { for index in more.indices.dropFirst() where more[index] <= more[index - 1] { inOrder = false; break } }
        }
        timestamps.append(few: more)
        values.append(contentsOf: column, range: range)
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
    /// One per path, so a flush and a read see a series' points in one place.
    private(set) var buffers: [SeriesBuffer] = []
    /// Series number → index in `buffers`: what every write asks (an integer hash).
    private var slotByID: [Int: Int] = [:]
    /// Path → index in `buffers`: asked by reads, and by a write only for a number not seen yet.
    private var slotByPath: [String: Int] = [:]
    private(set) var bytes = 0
    private(set) var pointCount = 0
    /// Highest WAL sequence applied; a sealed memtable's segments carry it.
    private(set) var maxSequence: UInt64 = 0
    let createdNs: UInt64

    init(createdNs: UInt64) { self.createdNs = createdNs }

    var isEmpty: Bool { pointCount == 0 }

    /// The points of the series at `path`.
    func buffer(path: String) -> SeriesBuffer? { slotByPath[path].map { buffers[$0] } }

    /// Appends points of series number `id` (named `path`): `timestamps`, with their values
    /// at `range` of `values` (all of it when nil).
    func append(id: Int, path: String, timestamps: ArraySlice<Int64>, values: Column, range: Range<Int>? = nil, sequence: UInt64) {
        timestamps.withUnsafeBufferPointer { append(id: id, path: path, timestamps: $0, values: values, range: range, sequence: sequence) }
    }

    /// `append` for timestamps the caller holds in place (a write's columns share one array).
    func append(id: Int, path: String, timestamps: UnsafeBufferPointer<Int64>, values: Column, range: Range<Int>? = nil, sequence: UInt64) {
        let range = range ?? 0..<values.count
        precondition(timestamps.count == range.count)
        let slot = slotByID[id] ?? slot(forNew: id, path: path, type: values.dataType)
        precondition(buffers[slot].values.dataType == values.dataType, "a series number has one type")
        assert(buffers[slot].path == path, "a series number names one series")
        buffers[slot].append(timestamps: timestamps, values: values, range: range)
        bytes += 8 * timestamps.count + values.valueBytes(range)
        pointCount += timestamps.count
        maxSequence = max(maxSequence, sequence)
    }

    /// The buffer a number not seen yet writes to. A path with a buffer under another number
    /// belongs to a series deleted and made again while a write raced the deletion: the
    /// buffer carries on under the new number, or, for another type, starts again (its
    /// points are the dead series').
    private func slot(forNew id: Int, path: String, type: DataType) -> Int {
        guard let slot = slotByPath[path] else {
            buffers.append(SeriesBuffer(path: path, id: id, type: type))
            slotByID[id] = buffers.count - 1
            slotByPath[path] = buffers.count - 1
            bytes += 64 + path.utf8.count
            return buffers.count - 1
        }
        slotByID[buffers[slot].id] = nil
        slotByID[id] = slot
        if buffers[slot].values.dataType == type {
            buffers[slot].id = id
        } else {
            pointCount -= buffers[slot].timestamps.count
            bytes -= 8 * buffers[slot].timestamps.count + buffers[slot].values.valueBytes
            buffers[slot] = SeriesBuffer(path: path, id: id, type: type)
        }
        return slot
    }

    func noteSequence(_ sequence: UInt64) { maxSequence = max(maxSequence, sequence) }

    func remove(matching pattern: PathPattern, in range: ClosedRange<Int64>) {
        for slot in buffers.indices where pattern.matches(buffers[slot].path) {
            let before = buffers[slot].timestamps.count
            buffers[slot].remove(in: range)
            pointCount -= before - buffers[slot].timestamps.count
        }
    }
}
