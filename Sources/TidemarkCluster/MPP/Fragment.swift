import TidemarkConsensus
import TidemarkCore
import TidemarkIO
import TidemarkQuery
import TidemarkStorage

/// One piece of a statement that runs where a region's data is (DESIGN.md section 3, MPP):
/// an operation over some of the region groups one node holds, with filters and aggregates
/// pushed down to it (a time range, a path pattern, an aggregate of one series).
public struct Fragment: Sendable, Equatable {
    public enum Operation: Sendable, Equatable {
        case databases
        case series(PathPattern)
        case oneSeries(String)
        case devices(PathPattern)
        /// Up to `pointsMax` points of `path` in `range`, from its start.
        case scan(path: String, range: ClosedRange<Int64>, pointsMax: Int)
        case aggregate(path: String, range: ClosedRange<Int64>)
        /// Many series' aggregates, each over its own range (answered in order).
        case aggregates([AggregateRequest])
        case createDatabase(String)
        case createSeries(SeriesSchema)
        case deleteSeries(PathPattern)
        case dropDatabase(String)
        case delete(PathPattern, range: ClosedRange<Int64>)
        case flush
    }

    public var groups: [GroupID]
    /// The meta log index the coordinator planned at: the receiver's copy must reach it.
    public var metaIndex: UInt64
    /// A weak read: any replica serves it, not only the leader.
    public var weak: Bool
    public var operation: Operation

    public init(groups: [GroupID], metaIndex: UInt64, weak: Bool = false, operation: Operation) {
        self.groups = groups
        self.metaIndex = metaIndex
        self.weak = weak
        self.operation = operation
    }

    /// Points a scan page holds at most (bounds a page's frame and the receiver's work).
    public static let pagePointsMax = 1 << 16
    /// (series, range) pairs one fragment asks aggregates of, at most.
    public static let aggregateRequestsMax = 1 << 16

    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        writer.write(varint: UInt64(groups.count))
        for group in groups { group.write(to: &writer) }
        writer.write(varint: metaIndex)
        writer.write(weak ? 1 : 0)
        func range(_ range: ClosedRange<Int64>) {
            writer.write(signedVarint: range.lowerBound)
            writer.write(signedVarint: range.upperBound)
        }
        switch operation {
        case .databases: writer.write(0)
        case .series(let pattern):
            writer.write(1)
            writer.write(lengthPrefixed: pattern.description)
        case .oneSeries(let path):
            writer.write(2)
            writer.write(lengthPrefixed: path)
        case .devices(let pattern):
            writer.write(3)
            writer.write(lengthPrefixed: pattern.description)
        case .scan(let path, let bounds, let pointsMax):
            writer.write(4)
            writer.write(lengthPrefixed: path)
            range(bounds)
            writer.write(varint: UInt64(pointsMax))
        case .aggregate(let path, let bounds):
            writer.write(5)
            writer.write(lengthPrefixed: path)
            range(bounds)
        case .createDatabase(let name):
            writer.write(6)
            writer.write(lengthPrefixed: name)
        case .createSeries(let schema):
            writer.write(7)
            WirePoints.write(schema, to: &writer)
        case .deleteSeries(let pattern):
            writer.write(8)
            writer.write(lengthPrefixed: pattern.description)
        case .dropDatabase(let name):
            writer.write(9)
            writer.write(lengthPrefixed: name)
        case .delete(let pattern, let bounds):
            writer.write(10)
            writer.write(lengthPrefixed: pattern.description)
            range(bounds)
        case .flush: writer.write(11)
        case .aggregates(let requests):
            writer.write(12)
            writer.write(varint: UInt64(requests.count))
            for request in requests {
                writer.write(lengthPrefixed: request.path)
                range(request.range)
            }
        }
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(CorruptDataError) {
        var reader = ByteReader(bytes)
        let count = try reader.readCount(max: 1 << 16, what: "groups")
        var groups: [GroupID] = []
        for _ in 0..<count { groups.append(try GroupID(from: &reader)) }
        let metaIndex = try reader.readVarint()
        let weak = try reader.readByte() != 0
        func pattern() throws(CorruptDataError) -> PathPattern {
            let text = try WirePoints.readText(&reader)
            do { return try PathPattern(parsing: text) } catch { throw CorruptDataError("a path pattern that does not parse: \(text)") }
        }
        func range() throws(CorruptDataError) -> ClosedRange<Int64> {
            let low = try reader.readSignedVarint(), high = try reader.readSignedVarint()
            guard low <= high else { throw CorruptDataError("a time range from \(low) to \(high)") }
            return low...high
        }
        let operation: Operation
        switch try reader.readByte() {
        case 0: operation = .databases
        case 1: operation = .series(try pattern())
        case 2: operation = .oneSeries(try WirePoints.readText(&reader))
        case 3: operation = .devices(try pattern())
        case 4: operation = .scan(path: try WirePoints.readText(&reader), range: try range(),
                                  pointsMax: try reader.readCount(max: Self.pagePointsMax, what: "page points"))
        case 5: operation = .aggregate(path: try WirePoints.readText(&reader), range: try range())
        case 6: operation = .createDatabase(try WirePoints.readText(&reader))
        case 7: operation = .createSeries(try WirePoints.readSchema(&reader))
        case 8: operation = .deleteSeries(try pattern())
        case 9: operation = .dropDatabase(try WirePoints.readText(&reader))
        case 10: operation = .delete(try pattern(), range: try range())
        case 11: operation = .flush
        case 12:
            let count = try reader.readCount(max: Self.aggregateRequestsMax, what: "aggregate requests")
            var requests: [AggregateRequest] = []
            for _ in 0..<count { requests.append(AggregateRequest(path: try WirePoints.readText(&reader), range: try range())) }
            operation = .aggregates(requests)
        case let other: throw CorruptDataError("unknown fragment operation \(other)")
        }
        guard reader.remaining == 0 else { throw CorruptDataError("\(reader.remaining) bytes after a fragment") }
        self.init(groups: groups, metaIndex: metaIndex, weak: weak, operation: operation)
    }
}

/// What a fragment answers.
public enum FragmentAnswer: Sendable {
    case names([String])
    case series([SeriesSchema])
    /// A scan's page: its type, its points, and whether the range holds more after them.
    case page(DataType, timestamps: [Int64], values: Column, more: Bool)
    case aggregates(Aggregates)
    /// A batch's aggregates, in the order of its requests.
    case aggregateList([Aggregates])
    case done
    /// The engine's error, to be thrown again at the coordinator.
    case failed(EngineError)
    /// The receiver holds no replica of these groups, or does not lead them (a leader hint
    /// per group when known): the coordinator asks elsewhere.
    case elsewhere(routeVersion: UInt64, leaders: [GroupID: UInt64])

    public func encoded() -> [UInt8] {
        var writer = ByteWriter()
        switch self {
        case .names(let names):
            writer.write(0)
            writer.write(varint: UInt64(names.count))
            for name in names { writer.write(lengthPrefixed: name) }
        case .series(let list):
            writer.write(1)
            writer.write(varint: UInt64(list.count))
            for schema in list { WirePoints.write(schema, to: &writer) }
        case .page(let type, let timestamps, let values, let more):
            precondition(values.dataType == type && values.count == timestamps.count)
            writer.write(2)
            writer.write(more ? 1 : 0)
            writer.write(varint: UInt64(timestamps.count))
            for timestamp in timestamps { writer.write(signedVarint: timestamp) }
            WirePoints.write(values, to: &writer)
        case .aggregates(let aggregates):
            writer.write(3)
            WirePoints.write(aggregates, to: &writer)
        case .done: writer.write(4)
        case .aggregateList(let list):
            writer.write(7)
            writer.write(varint: UInt64(list.count))
            for aggregates in list { WirePoints.write(aggregates, to: &writer) }
        case .failed(let error):
            writer.write(5)
            Self.write(error, to: &writer)
        case .elsewhere(let version, let leaders):
            writer.write(6)
            writer.write(varint: version)
            writer.write(varint: UInt64(leaders.count))
            for (group, node) in leaders.sorted(by: { $0.key < $1.key }) {
                group.write(to: &writer)
                writer.write(varint: node)
            }
        }
        return writer.bytes
    }

    public init(decoding bytes: [UInt8]) throws(CorruptDataError) {
        var reader = ByteReader(bytes)
        let countMax = bytes.count
        switch try reader.readByte() {
        case 0:
            let count = try reader.readCount(max: countMax, what: "names")
            var names: [String] = []
            for _ in 0..<count { names.append(try WirePoints.readText(&reader)) }
            self = .names(names)
        case 1:
            let count = try reader.readCount(max: countMax, what: "series")
            var list: [SeriesSchema] = []
            for _ in 0..<count { list.append(try WirePoints.readSchema(&reader)) }
            self = .series(list)
        case 2:
            let more = try reader.readByte() != 0
            let count = try reader.readCount(max: min(countMax, Fragment.pagePointsMax), what: "page points")
            var timestamps: [Int64] = []
            timestamps.reserveCapacity(count)
            for _ in 0..<count { timestamps.append(try reader.readSignedVarint()) }
            let values = try WirePoints.readColumn(&reader, countMax: count)
            guard values.count == count else { throw CorruptDataError("a page of \(count) timestamps and \(values.count) values") }
            self = .page(values.dataType, timestamps: timestamps, values: values, more: more)
        case 3: self = .aggregates(try WirePoints.readAggregates(&reader))
        case 4: self = .done
        case 7:
            let count = try reader.readCount(max: min(countMax, Fragment.aggregateRequestsMax), what: "aggregates")
            var list: [Aggregates] = []
            for _ in 0..<count { list.append(try WirePoints.readAggregates(&reader)) }
            self = .aggregateList(list)
        case 5: self = .failed(try Self.readError(&reader))
        case 6:
            let version = try reader.readVarint()
            let count = try reader.readCount(max: countMax, what: "leaders")
            var leaders: [GroupID: UInt64] = [:]
            for _ in 0..<count { leaders[try GroupID(from: &reader)] = try reader.readVarint() }
            self = .elsewhere(routeVersion: version, leaders: leaders)
        case let other: throw CorruptDataError("unknown fragment answer \(other)")
        }
        guard reader.remaining == 0 else { throw CorruptDataError("\(reader.remaining) bytes after a fragment answer") }
    }

    private static let schemaKinds: [SchemaError.Kind] = [.databaseExists, .seriesExists, .noSuchDatabase, .noSuchSeries, .invalidPath, .other]

    static func write(_ error: EngineError, to writer: inout ByteWriter) {
        switch error {
        case .schema(let schema):
            writer.write(0)
            writer.write(UInt8(schemaKinds.firstIndex(of: schema.kind)!))
            writer.write(lengthPrefixed: schema.description)
        case .typeMismatch(let path, let expected, let got):
            writer.write(1)
            writer.write(lengthPrefixed: path)
            writer.write(expected.rawValue)
            writer.write(got.rawValue)
        case .tooLarge(let why):
            writer.write(2)
            writer.write(lengthPrefixed: why)
        case .flushBehind(let sealed):
            writer.write(3)
            writer.write(varint: UInt64(sealed))
        case .io(let why):
            writer.write(4)
            writer.write(lengthPrefixed: why)
        case .corrupt(let why):
            writer.write(5)
            writer.write(lengthPrefixed: why)
        case .unavailable(let why, let leader):
            writer.write(6)
            writer.write(lengthPrefixed: why)
            writer.write(leader == nil ? 0 : 1)
            if let leader { writer.write(lengthPrefixed: leader) }
        }
    }

    static func readError(_ reader: inout ByteReader) throws(CorruptDataError) -> EngineError {
        switch try reader.readByte() {
        case 0:
            let kind = Int(try reader.readByte())
            guard kind < schemaKinds.count else { throw CorruptDataError("unknown schema error kind \(kind)") }
            return .schema(SchemaError(try WirePoints.readText(&reader), kind: schemaKinds[kind]))
        case 1: return .typeMismatch(path: try WirePoints.readText(&reader), expected: try WirePoints.readType(&reader), got: try WirePoints.readType(&reader))
        case 2: return .tooLarge(try WirePoints.readText(&reader))
        case 3: return .flushBehind(sealed: try reader.readCount(max: Int(Int32.max), what: "sealed memtables"))
        case 4: return .io(try WirePoints.readText(&reader))
        case 5: return .corrupt(try WirePoints.readText(&reader))
        case 6:
            let why = try WirePoints.readText(&reader)
            return .unavailable(why, leaderAddress: try reader.readByte() == 0 ? nil : try WirePoints.readText(&reader))
        case let other: throw CorruptDataError("unknown engine error \(other)")
        }
    }
}
