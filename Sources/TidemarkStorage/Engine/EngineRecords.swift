import TidemarkCore

/// A delete: every point of series matching `pattern` with a time in `range`.
public struct Tombstone: Sendable, Equatable {
    public var pattern: PathPattern
    public var range: ClosedRange<Int64>
    /// The WAL sequence of the delete: it applies to data written before it.
    public var sequence: UInt64
}

/// The points of one series within a write, in arrival order.
struct SeriesGroup {
    let path: String
    /// The type of the group's first point.
    let type: DataType
    var indices: [Int]
    /// A later point's type when it differs from `type` (the write must be refused).
    var mixedType: DataType?

    static func of(_ points: [PointWrite]) -> [SeriesGroup] {
        var position: [String: Int] = [:]
        var groups: [SeriesGroup] = []
        for (index, point) in points.enumerated() {
            if let at = position[point.path] {
                groups[at].indices.append(index)
                if point.value.dataType != groups[at].type { groups[at].mixedType = point.value.dataType }
            } else {
                position[point.path] = groups.count
                groups.append(SeriesGroup(path: point.path, type: point.value.dataType, indices: [index]))
            }
        }
        return groups
    }
}

/// What the region's WAL records hold.
enum EngineRecord: Equatable {
    case write([PointWrite])
    case delete(pattern: String, range: ClosedRange<Int64>)

    static let pointsPerRecordMax = 10_000_000

    func encoded() -> [UInt8] {
        var writer = ByteWriter()
        switch self {
        case .write(let points):
            return Self.encodeWrite(points, SeriesGroup.of(points))
        case .delete(let pattern, let range):
            writer.write(2)
            writer.write(lengthPrefixed: Array(pattern.utf8))
            writer.write(signedVarint: range.lowerBound)
            writer.write(signedVarint: range.upperBound)
        }
        return writer.bytes
    }

    /// A write record: points grouped by series, each path written once, order kept within a series.
    static func encodeWrite(_ points: [PointWrite], _ groups: [SeriesGroup]) -> [UInt8] {
        var writer = ByteWriter(capacity: points.count * 12 + groups.count * 40)
        writer.write(1)
        writer.write(varint: UInt64(groups.count))
        for group in groups {
            precondition(group.mixedType == nil, "one series, one type")
            writer.write(lengthPrefixed: Array(group.path.utf8))
            writer.write(group.type.rawValue)
            writer.write(varint: UInt64(group.indices.count))
            for index in group.indices {
                writer.write(signedVarint: points[index].timestamp)
                ChunkStats.encode(points[index].value, into: &writer)
            }
        }
        return writer.bytes
    }

    static func decode(_ bytes: [UInt8]) throws(CorruptDataError) -> EngineRecord {
        var reader = ByteReader(bytes)
        let record: EngineRecord
        switch try reader.readByte() {
        case 1:
            let groups = try reader.readCount(max: min(pointsPerRecordMax, reader.remaining), what: "series")
            var points: [PointWrite] = []
            for _ in 0..<groups {
                guard let path = String(validating: try reader.readLengthPrefixed(max: 4096), as: UTF8.self),
                      let type = DataType(rawValue: try reader.readByte()) else { throw CorruptDataError("bad series in a WAL record") }
                let count = try reader.readCount(max: min(pointsPerRecordMax - points.count, reader.remaining), what: "points")
                for _ in 0..<count {
                    let timestamp = try reader.readSignedVarint()
                    points.append(PointWrite(path: path, timestamp: timestamp, value: try ChunkStats.decodeValue(type, from: &reader)))
                }
            }
            record = .write(points)
        case 2:
            guard let pattern = String(validating: try reader.readLengthPrefixed(max: 4096), as: UTF8.self) else {
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
        func text(_ value: String) { writer.write(lengthPrefixed: Array(value.utf8)) }
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
            guard let value = String(validating: try reader.readLengthPrefixed(max: 4096), as: UTF8.self) else {
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
