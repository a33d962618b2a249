import TidemarkCore
import TidemarkIO

/// A write's points grouped by series, with every series' timestamps in one array and its
/// values in one array per type. A write of 50 000 points over 10 000 series then costs a
/// handful of allocations, not two per series to make and two more to free.
struct ColumnBatch: Sendable {
    /// One series of the batch: where its points are.
    struct Series: Sendable {
        let path: String
        let type: DataType
        /// The series' number when the write was checked against the schema; nil for a
        /// series that did not exist then, or one decoded from the log.
        var id: Int?
        /// Its timestamps: `timestamps[points]`.
        let points: Range<Int>
        /// Where its values start in the values of its type (`values(of:)`).
        let valueStart: Int

        var count: Int { points.count }
        var valueRange: Range<Int> { valueStart..<(valueStart + points.count) }
    }

    var series: [Series] = []
    private(set) var timestamps: [Int64] = []
    /// One column per `DataType`, by raw value; a type the batch has no value of stays empty.
    private var valuesByType: [Column] = DataType.allCases.map { Column.empty($0) }

    var pointCount: Int { timestamps.count }

    /// The column holding series `series`' values, at `series.valueRange`.
    func values(of series: Series) -> Column { valuesByType[Int(series.type.rawValue)] }
}

extension ColumnBatch {
    /// Fills a batch: each series is declared with its point count, then its points are put
    /// in any order across series (a series' own points in time of arrival).
    struct Builder {
        private var series: [Series] = []
        /// Where the next point of each series goes, in `timestamps` and in its type's values.
        private var nextPoint: [Int] = []
        private var nextValue: [Int] = []
        private var timestamps: [Int64] = []
        private var booleans: [Bool] = []
        private var int32s: [Int32] = []
        private var int64s: [Int64] = []
        private var floats: [Float] = []
        private var doubles: [Double] = []
        private var texts: [String] = []

        init(pointCapacity: Int = 0) { timestamps.reserveCapacity(pointCapacity) }

        /// Declares a series of `count` points; returns its number in the batch.
        mutating func addSeries(path: String, type: DataType, id: Int? = nil, count: Int) -> Int {
            precondition(count >= 0)
            let valueStart: Int
            switch type {
            case .boolean: valueStart = booleans.count; booleans.append(contentsOf: repeatElement(false, count: count))
            case .int32: valueStart = int32s.count; int32s.append(contentsOf: repeatElement(0, count: count))
            case .int64: valueStart = int64s.count; int64s.append(contentsOf: repeatElement(0, count: count))
            case .float: valueStart = floats.count; floats.append(contentsOf: repeatElement(0, count: count))
            case .double: valueStart = doubles.count; doubles.append(contentsOf: repeatElement(0, count: count))
            case .text: valueStart = texts.count; texts.append(contentsOf: repeatElement("", count: count))
            }
            let points = timestamps.count..<(timestamps.count + count)
            timestamps.append(contentsOf: repeatElement(0, count: count))
            series.append(Series(path: path, type: type, id: id, points: points, valueStart: valueStart))
            nextPoint.append(points.lowerBound)
            nextValue.append(valueStart)
            return series.count - 1
        }

        /// Puts the next point of series `index`; `value` must be of the series' type.
        mutating func put(_ index: Int, timestamp: Int64, value: Value) {
            let slot = claimPoint(of: index, timestamp: timestamp, type: value.dataType)
            switch value {
            case .boolean(let v): booleans[slot] = v
            case .int32(let v): int32s[slot] = v
            case .int64(let v): int64s[slot] = v
            case .float(let v): floats[slot] = v
            case .double(let v): doubles[slot] = v
            case .text(let v): texts[slot] = v
            }
        }

        /// `put` of a DOUBLE point without making a `Value`.
        mutating func put(_ index: Int, timestamp: Int64, double: Double) {
            doubles[claimPoint(of: index, timestamp: timestamp, type: .double)] = double
        }

        /// Stores the timestamp of series `index`'s next point and returns the slot for its value.
        private mutating func claimPoint(of index: Int, timestamp: Int64, type: DataType) -> Int {
            let point = nextPoint[index], slot = nextValue[index]
            precondition(point < series[index].points.upperBound, "more points than the series was declared with")
            precondition(type == series[index].type, "a value of the series' type")
            timestamps[point] = timestamp
            nextPoint[index] = point + 1
            nextValue[index] = slot + 1
            return slot
        }

        func finish() -> ColumnBatch {
            assert(series.indices.allSatisfy { nextPoint[$0] == series[$0].points.upperBound }, "every declared point was put")
            var batch = ColumnBatch()
            batch.series = series
            batch.timestamps = timestamps
            batch.valuesByType = [.boolean(booleans), .int32(int32s), .int64(int64s), .float(floats), .double(doubles), .text(texts)]
            assert(batch.valuesByType.enumerated().allSatisfy { $0.element.dataType.rawValue == $0.offset })
            return batch
        }
    }

    /// The batch of single points, one series per path in order of first appearance; throws
    /// when one path is given two types.
    init(points: [PointWrite]) throws(EngineError) {
        var position: [String: Int] = [:]
        var plans: [(path: String, type: DataType, count: Int)] = []
        var targets: [Int] = []
        targets.reserveCapacity(points.count)
        for point in points {
            let at: Int
            if let known = position[point.path] {
                at = known
            } else {
                at = plans.count
                position[point.path] = at
                plans.append((point.path, point.value.dataType, 0))
            }
            guard plans[at].type == point.value.dataType else {
                throw EngineError.typeMismatch(path: point.path, expected: plans[at].type, got: point.value.dataType)
            }
            plans[at].count += 1
            targets.append(at)
        }
        var builder = Builder(pointCapacity: points.count)
        for plan in plans { _ = builder.addSeries(path: plan.path, type: plan.type, count: plan.count) }
        for (point, target) in zip(points, targets) { builder.put(target, timestamp: point.timestamp, value: point.value) }
        self = builder.finish()
    }
}
