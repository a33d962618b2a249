import Glibc
import TidemarkCore
import TidemarkIO

/// A delete: every point of series matching `pattern` with a time in `range`.
public struct Tombstone: Sendable, Equatable {
    public var pattern: PathPattern
    public var range: ClosedRange<Int64>
    /// The WAL sequence of the delete: it applies to data written before it.
    public var sequence: UInt64
}

/// What the region's log records hold: points, deletes of points, and schema changes (which
/// every replica applies at the same log position, so their schemas never part).
enum EngineRecord {
    case write(ColumnBatch)
    case delete(pattern: String, range: ClosedRange<Int64>)
    /// A schema statement. `deleteSeries` and `deleteDatabase` also delete the points of
    /// what they remove, in the same entry, so schema and data go together.
    case schema(SchemaRecord)

    /// The first byte of each kind of record; bytes from 16 up are the node's (users).
    static let writeKind: UInt8 = 1, deleteKind: UInt8 = 2, schemaKind: UInt8 = 3

    static let pointsPerRecordMax = 10_000_000

    func encoded() -> [UInt8] {
        switch self {
        case .write(let batch):
            return Self.encodeWrite(batch)
        case .delete(let pattern, let range):
            var writer = ByteWriter()
            writer.write(2)
            writer.write(lengthPrefixed: pattern)
            writer.write(signedVarint: range.lowerBound)
            writer.write(signedVarint: range.upperBound)
            return writer.bytes
        case .schema(let change):
            precondition(change.isStatement, "a schema entry carries a statement, not a marker")
            return [Self.schemaKind] + change.encoded()
        }
    }

    /// A write record: per series its path, type and count, then timestamp and value per point.
    static func encodeWrite(_ batch: ColumnBatch) -> [UInt8] {
        var writer = ByteWriter(capacity: batch.pointCount * 12 + batch.series.count * 40)
        writer.write(1)
        writer.write(varint: UInt64(batch.series.count))
        let timestamps = batch.timestamps
        for series in batch.series {
            writer.write(lengthPrefixed: series.path)
            writer.write(series.type.rawValue)
            writer.write(varint: UInt64(series.count))
            // The same bytes as ChunkStats.encode of each value, without a Value per point.
            let values = batch.values(of: series)
            switch values {
            case .double(let doubles):
                for (point, slot) in zip(series.points, series.valueRange) {
                    writer.write(signedVarint: timestamps[point])
                    writer.write(littleEndian: doubles[slot].bitPattern)
                }
            case .int64(let int64s):
                for (point, slot) in zip(series.points, series.valueRange) {
                    writer.write(signedVarint: timestamps[point])
                    writer.write(signedVarint: int64s[slot])
                }
            default:
                for (point, slot) in zip(series.points, series.valueRange) {
                    writer.write(signedVarint: timestamps[point])
                    ChunkStats.encode(values[slot], into: &writer)
                }
            }
        }
        return writer.bytes
    }

    /// Decodes a record. `recent` is the series of the record decoded before, with their
    /// numbers: a workload's records name the same series in the same order, so a path whose
    /// bytes match the one at its place takes that string and number (no string made, no
    /// lookup by path); any other is decoded as text, without a number.
    static func decode(_ bytes: [UInt8], recent: [ColumnBatch.Series] = []) throws(CorruptDataError) -> EngineRecord {
        var reader = ByteReader(bytes)
        let record: EngineRecord
        switch try reader.readByte() {
        case 1:
            let count = try reader.readCount(max: min(pointsPerRecordMax, reader.remaining), what: "series")
            var builder = ColumnBatch.Builder()
            var points = 0
            for index in 0..<count {
                let pathBytes = try reader.readLengthPrefixed(max: 4096)
                let path: String, id: Int?
                if index < recent.count && Self.utf8(of: recent[index].path, equals: pathBytes) {
                    (path, id) = (recent[index].path, recent[index].id)
                } else {
                    guard let text = ByteReader.text(pathBytes) else { throw CorruptDataError("a series path in a log record is not UTF-8") }
                    (path, id) = (text, nil)
                }
                guard let type = DataType(rawValue: try reader.readByte()) else { throw CorruptDataError("bad series type in a log record") }
                let pointCount = try reader.readCount(max: min(pointsPerRecordMax - points, reader.remaining), what: "points")
                points += pointCount
                let series = builder.addSeries(path: path, type: type, id: id, count: pointCount)
                switch type {
                case .double:
                    for _ in 0..<pointCount {
                        let timestamp = try reader.readSignedVarint()
                        builder.put(series, timestamp: timestamp, double: try ChunkStats.decodeDouble(from: &reader))
                    }
                default:
                    for _ in 0..<pointCount {
                        let timestamp = try reader.readSignedVarint()
                        builder.put(series, timestamp: timestamp, value: try ChunkStats.decodeValue(type, from: &reader))
                    }
                }
            }
            record = .write(builder.finish())
        case 2:
            guard let pattern = try reader.readText(max: 4096) else {
                throw CorruptDataError("bad delete pattern")
            }
            let low = try reader.readSignedVarint(), high = try reader.readSignedVarint()
            guard low <= high else { throw CorruptDataError("inverted delete range") }
            record = .delete(pattern: pattern, range: low...high)
        case 3:
            let change = try SchemaRecord.decode(Array(bytes[1...]))
            guard change.isStatement else { throw CorruptDataError("a schema entry carries a marker") }
            return .schema(change)
        case let kind:
            throw CorruptDataError("unknown WAL record kind \(kind)")
        }
        guard reader.isAtEnd else { throw CorruptDataError("bytes after a WAL record") }
        return record
    }

    private static func utf8(of path: String, equals bytes: ArraySlice<UInt8>) -> Bool {
        var path = path  // withUTF8 reads a native string in place
        return path.withUTF8 { utf8 in
            bytes.withUnsafeBufferPointer { other in
                utf8.count == other.count && (utf8.isEmpty || memcmp(utf8.baseAddress!, other.baseAddress!, utf8.count) == 0)
            }
        }
    }
}

/// Schema changes, in the schema log (replayed before the data WAL) and, as statements, in
/// the region's log (`EngineRecord.schema`).
public enum SchemaRecord: Sendable, Equatable {
    case createDatabase(String)
    case createSeries(SeriesSchema)
    case deleteSeries(pattern: String)
    case deleteDatabase(String)
    /// Schema-log only: every schema effect of the region log's entries through this index
    /// is in the records before it, so a replay of those entries leaves the schema alone.
    case appliedThrough(UInt64)

    /// A change a statement makes (not a marker).
    var isStatement: Bool {
        if case .appliedThrough = self { return false }
        return true
    }

    func encoded() -> [UInt8] {
        var writer = ByteWriter()
        func text(_ value: String) { writer.write(lengthPrefixed: value) }
        switch self {
        case .createDatabase(let name): writer.write(1); text(name)
        case .createSeries(let schema):
            writer.write(2); text(schema.path); writer.write(schema.dataType.rawValue); text(schema.encoding); text(schema.compression)
        case .deleteSeries(let pattern): writer.write(3); text(pattern)
        case .deleteDatabase(let name): writer.write(4); text(name)
        case .appliedThrough(let index): writer.write(5); writer.write(varint: index)
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
        let record: SchemaRecord
        switch try reader.readByte() {
        case 1: record = .createDatabase(try text())
        case 2:
            let path = try text()
            guard let type = DataType(rawValue: try reader.readByte()) else { throw CorruptDataError("bad data type in schema log") }
            record = .createSeries(SeriesSchema(path: path, dataType: type, encoding: try text(), compression: try text()))
        case 3: record = .deleteSeries(pattern: try text())
        case 4: record = .deleteDatabase(try text())
        case 5: record = .appliedThrough(try reader.readVarint())
        case let kind: throw CorruptDataError("unknown schema record kind \(kind)")
        }
        guard reader.isAtEnd else { throw CorruptDataError("bytes after a schema record") }
        return record
    }
}
