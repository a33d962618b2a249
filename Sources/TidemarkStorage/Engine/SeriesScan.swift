import TidemarkCore
import TidemarkIO

/// Sorted points of one source (a segment, a sealed or the active memtable), produced a
/// chunk at a time so a scan holds at most one chunk per source in memory.
struct SourceCursor {
    /// Loads the next chunk of this source, already cut to the query range.
    typealias Loader = () throws -> (timestamps: [Int64], values: Column)

    private var loaders: [Loader]
    private var nextLoader = 0
    /// A source read in batches of unknown number (another scan), after `loaders`.
    private var stream: (() throws -> (timestamps: [Int64], values: Column)?)?
    private(set) var timestamps: [Int64] = []
    private(set) var values: Column
    private(set) var position = 0

    init(type: DataType, loaders: [Loader]) {
        self.loaders = loaders
        values = .empty(type)
    }

    /// A source that is itself a scan: its batches are its chunks.
    init(scan: SeriesScan) {
        self.init(type: scan.dataType) { try scan.next() }
    }

    /// A source read in batches from `next` (nil at its end).
    init(type: DataType, stream next: @escaping () throws -> (timestamps: [Int64], values: Column)?) {
        loaders = []
        stream = next
        values = .empty(type)
    }

    /// The current timestamp, loading chunks as needed; nil when the source is exhausted.
    mutating func peek() throws -> Int64? {
        while position == timestamps.count {
            if nextLoader < loaders.count {
                (timestamps, values) = try loaders[nextLoader]()
                loaders[nextLoader] = { ([], .empty(.boolean)) }  // let the chunk go once consumed
                nextLoader += 1
            } else if let batch = try stream?() {
                (timestamps, values) = batch
            } else {
                stream = nil
                return nil
            }
            position = 0
        }
        return timestamps[position]
    }

    mutating func advance() { position += 1 }
    var currentValue: Value { values[position] }

    /// Moves the loaded points from the current one up to (not including) the first at or
    /// after `bound` (nil: no bound), at most `limit` of them, to the end of
    /// `outTimestamps`/`outValues`. The caller's point is below `bound`, so at least one moves.
    mutating func moveRun(below bound: Int64?, limit: Int, to outTimestamps: inout [Int64], _ outValues: inout Column) {
        precondition(position < timestamps.count && limit > 0, "a run starts at a loaded point")
        precondition(bound.map { timestamps[position] < $0 } ?? true, "a run moves at least its first point")
        let stop = min(timestamps.count, position + limit)
        var end = position
        // No bound is not `below: Int64.max`: a point at Int64.max must move too.
        if let bound {
            while end < stop && timestamps[end] < bound { end += 1 }
        } else {
            end = stop
        }
        outTimestamps += timestamps[position..<end]
        outValues.append(contentsOf: values, range: position..<end)
        position = end
    }
}

/// A time-ordered scan of one series, merged over its sources with the newest write
/// winning each timestamp, returned in batches of at most `batchPoints`.
public final class SeriesScan {
    public let dataType: DataType
    private var cursors: [SourceCursor]  // oldest source first
    private let batchPoints: Int

    init(dataType: DataType, cursors: [SourceCursor], batchPoints: Int) {
        precondition(batchPoints > 0)
        self.dataType = dataType
        self.cursors = cursors
        self.batchPoints = batchPoints
    }

    /// The next batch, or nil at the end.
    public func next() throws -> (timestamps: [Int64], values: Column)? {
        var timestamps: [Int64] = []
        var values = Column.empty(dataType)
        timestamps.reserveCapacity(min(batchPoints, 4096))
        while timestamps.count < batchPoints {
            var lowest: Int64?
            var winner = -1
            var tied = false
            for index in cursors.indices {
                guard let timestamp = try cursors[index].peek() else { continue }
                if lowest == nil || timestamp < lowest! {
                    lowest = timestamp
                    winner = index
                    tied = false
                } else if timestamp == lowest! {
                    winner = index  // ties go to the later (newer) source
                    tied = true
                }
            }
            guard let timestamp = lowest else { break }
            if !tied {
                // Sources rarely overlap in time: everything the winner has before another
                // source's next point goes over in one run instead of point by point.
                var bound: Int64?
                for index in cursors.indices where index != winner {
                    if let next = try cursors[index].peek(), next < (bound ?? .max) || bound == nil { bound = next }
                }
                cursors[winner].moveRun(below: bound, limit: batchPoints - timestamps.count, to: &timestamps, &values)
                continue
            }
            timestamps.append(timestamp)
            values.append(cursors[winner].currentValue)
            for index in cursors.indices where try cursors[index].peek() == timestamp { cursors[index].advance() }
        }
        return timestamps.isEmpty ? nil : (timestamps, values)
    }

    /// One scan over several regions' scans of a series (each a region of the cluster holding
    /// some of its time partitions), merged by time; where two hold the same timestamp, the
    /// later scan in `scans` wins. Nil when `scans` is empty or their types differ.
    public static func merging(_ scans: [SeriesScan], batchPoints: Int) -> SeriesScan? {
        guard let first = scans.first, scans.allSatisfy({ $0.dataType == first.dataType }) else { return nil }
        if scans.count == 1 { return first }
        return SeriesScan(dataType: first.dataType, cursors: scans.map { SourceCursor(scan: $0) }, batchPoints: batchPoints)
    }

    /// A scan of sorted batches that `next` returns until nil (a region on another node,
    /// page after page), in batches of at most `batchPoints`.
    public static func streaming(_ dataType: DataType, batchPoints: Int,
                                 next: @escaping () throws -> (timestamps: [Int64], values: Column)?) -> SeriesScan {
        SeriesScan(dataType: dataType, cursors: [SourceCursor(type: dataType, stream: next)], batchPoints: batchPoints)
    }

    /// Every remaining point (tests and small series only).
    public func all() throws -> (timestamps: [Int64], values: Column) {
        var timestamps: [Int64] = []
        var values = Column.empty(dataType)
        while let batch = try next() {
            timestamps += batch.timestamps
            for index in 0..<batch.values.count { values.append(batch.values[index]) }
        }
        return (timestamps, values)
    }
}

/// The aggregates of IoTDB's dialect over one series and time range.
public struct Aggregates: Sendable, Equatable {
    public var count = 0
    public var sum: Double?
    public var minValue: Double?
    public var maxValue: Double?
    public var firstValue: Value?
    public var lastValue: Value?
    public var minTime: Int64?
    public var maxTime: Int64?
    /// Chunks answered from their statistics without being read (for tests and metrics).
    public var chunksFromStatistics = 0

    public init() {}

    public var average: Double? { sum.map { count == 0 ? .nan : $0 / Double(count) } }

    /// Combines the aggregates of another series (GROUP BY LEVEL): first and last by time.
    public mutating func merge(_ other: Aggregates) {
        guard other.count > 0 else { return }
        guard count > 0 else { self = other; return }
        if let t = other.minTime, t < (minTime ?? .max) { minTime = t; firstValue = other.firstValue }
        if let t = other.maxTime, t > (maxTime ?? .min) { maxTime = t; lastValue = other.lastValue }
        count += other.count
        if let s = other.sum { sum = (sum ?? 0) + s }
        if let low = other.minValue { minValue = minValue.map { Swift.min($0, low) } ?? low }
        if let high = other.maxValue { maxValue = maxValue.map { Swift.max($0, high) } ?? high }
        chunksFromStatistics += other.chunksFromStatistics
    }

    /// Folds points that come after everything folded so far, in time order.
    public mutating func fold(timestamps: [Int64], values: Column) {
        guard !timestamps.isEmpty else { return }
        fold(ChunkStats(timestamps: timestamps, values: values))
    }

    /// Folds a chunk's statistics; chunks arrive in time order.
    mutating func fold(_ stats: ChunkStats) {
        if count == 0 {
            firstValue = stats.first
            minTime = stats.minTime
        }
        count += stats.count
        lastValue = stats.last
        maxTime = stats.maxTime
        if let chunkSum = stats.sum, let low = stats.minValue, let high = stats.maxValue {
            sum = (sum ?? 0) + chunkSum
            minValue = minValue.map { $0.isNaN || low.isNaN ? .nan : Swift.min($0, low) } ?? low
            maxValue = maxValue.map { $0.isNaN || high.isNaN ? .nan : Swift.max($0, high) } ?? high
        }
    }
}
