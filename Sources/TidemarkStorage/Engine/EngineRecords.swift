import TidemarkCore

/// A delete: every point of series matching `pattern` with a time in `range`.
public struct Tombstone: Sendable, Equatable {
    public var pattern: PathPattern
    public var range: ClosedRange<Int64>
    /// The WAL sequence of the delete: it applies to data written before it.
    public var sequence: UInt64
}

/// The columns of `points`, one per series in order of first appearance; throws when one
/// series is given two types.
func seriesColumns(of points: [PointWrite]) throws(EngineError) -> [SeriesColumn] {
    var position: [String: Int] = [:]
    var columns: [SeriesColumn] = []
    for point in points {
        let at: Int
        if let known = position[point.path] {
            at = known
        } else {
            at = columns.count
            position[point.path] = at
            columns.append(SeriesColumn(path: point.path, type: point.value.dataType))
        }
        guard columns[at].type == point.value.dataType else {
            throw EngineError.typeMismatch(path: point.path, expected: columns[at].type, got: point.value.dataType)
        }
        columns[at].timestamps.append(point.timestamp)
        columns[at].values.append(point.value)
    }
    return columns
}

/// What the region's log records hold.
enum EngineRecord {
    case write([SeriesColumn])
    case delete(pattern: String, range: ClosedRange<Int64>)

    static let pointsPerRecordMax = 10_000_000

    func encoded() -> [UInt8] {
        switch self {
        case .write(let columns):
            return Self.encodeWrite(columns)
        case .delete(let pattern, let range):
            var writer = ByteWriter()
            writer.write(2)
            writer.write(lengthPrefixed: pattern)
            writer.write(signedVarint: range.lowerBound)
            writer.write(signedVarint: range.upperBound)
            return writer.bytes
        }
    }

    /// A write record: per series its path, type and count, then timestamp and value per point.
    static func encodeWrite(_ columns: [SeriesColumn]) -> [UInt8] {
        let points = columns.reduce(0) { $0 + $1.timestamps.count }
        var writer = ByteWriter(capacity: points * 12 + columns.count * 40)
        writer.write(1)
        writer.write(varint: UInt64(columns.count))
        for column in columns {
            writer.write(lengthPrefixed: column.path)
            writer.write(column.type.rawValue)
            writer.write(varint: UInt64(column.timestamps.count))
            // The same bytes as ChunkStats.encode of each value, without a Value per point.
            switch column.values {
            case .double(let values):
                for (timestamp, value) in zip(column.timestamps, values) {
                    writer.write(signedVarint: timestamp)
                    writer.write(littleEndian: value.bitPattern)
                }
            case .int64(let values):
                for (timestamp, value) in zip(column.timestamps, values) {
                    writer.write(signedVarint: timestamp)
                    writer.write(signedVarint: value)
                }
            default:
                for (index, timestamp) in column.timestamps.enumerated() {
                    writer.write(signedVarint: timestamp)
                    ChunkStats.encode(column.values[index], into: &writer)
                }
            }
        }
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(CorruptDataError) -> EngineRecord {
        var reader = ByteReader(bytes)
        let record: EngineRecord
        switch try reader.readByte() {
        case 1:
            let count = try reader.readCount(max: min(pointsPerRecordMax, reader.remaining), what: "series")
            var columns: [SeriesColumn] = []
            var points = 0
            for _ in 0..<count {
                guard let path = try reader.readText(max: 4096),
                      let type = DataType(rawValue: try reader.readByte()) else { throw CorruptDataError("bad series in a log record") }
                let pointCount = try reader.readCount(max: min(pointsPerRecordMax - points, reader.remaining), what: "points")
                points += pointCount
                var column = SeriesColumn(path: path, type: type)
                column.timestamps.reserveCapacity(pointCount)
                for _ in 0..<pointCount {
                    column.timestamps.append(try reader.readSignedVarint())
                    column.values.append(try ChunkStats.decodeValue(type, from: &reader))
                }
                columns.append(column)
            }
            record = .write(columns)
        case 2:
            guard let pattern = try reader.readText(max: 4096) else {
                throw CorruptDataError("bad delete pattern")
            }
            let low = try reader.readSignedVarint(), high = try reader.readSignedVarint()
            guard low <= high else { throw CorruptDataError("inverted delete range") }
            record = .delete(pattern: pattern, range: low...high)
        case let kind:
            throw CorruptDataError("unknown WAL record kind \(kind)")
        }
        guard reader.isAtEnd else { throw CorruptDataError("bytes after a WAL record") }
        return record
    }
}

/// Schema changes, in the schema log (replayed before the data WAL).
enum SchemaRecord {
    case createDatabase(String)
    case createSeries(SeriesSchema)
    case deleteSeries(pattern: String)
    case deleteDatabase(String)

    func encoded() -> [UInt8] {
        var writer = ByteWriter()
        func text(_ value: String) { writer.write(lengthPrefixed: value) }
        switch self {
        case .createDatabase(let name): writer.write(1); text(name)
        case .createSeries(let schema):
            writer.write(2); text(schema.path); writer.write(schema.dataType.rawValue); text(schema.encoding); text(schema.compression)
        case .deleteSeries(let pattern): writer.write(3); text(pattern)
        case .deleteDatabase(let name): writer.write(4); text(name)
        }
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(CorruptDataError) -> SchemaRecord {
        var reader = ByteReader(bytes)
        func text() throws(CorruptDataError) -> String {
            guard let value = try reader.readText(max: 4096) else {
                throw CorruptDataError("schema record text is not UTF-8")
            }
            return value
        }
        switch try reader.readByte() {
        case 1: return .createDatabase(try text())
        case 2:
            let path = try text()
            guard let type = DataType(rawValue: try reader.readByte()) else { throw CorruptDataError("bad data type in schema log") }
            return .createSeries(SeriesSchema(path: path, dataType: type, encoding: try text(), compression: try text()))
        case 3: return .deleteSeries(pattern: try text())
        case 4: return .deleteDatabase(try text())
        case let kind: throw CorruptDataError("unknown schema record kind \(kind)")
        }
    }
}
