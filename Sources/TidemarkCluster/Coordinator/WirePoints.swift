import TidemarkCore
import TidemarkIO
import TidemarkStorage

/// How points travel between nodes (internal RPC bodies): values tagged by type, a row batch
/// as its keys then its rows, a column as its type then its values. Every count read back is
/// bounded, as for any input from outside.
public enum WirePoints {
    /// Texts, paths and names: at most this many bytes each.
    public static let textBytesMax = 1 << 20

    /// `[type][value]`, the value as chunk statistics store it.
    public static func write(_ value: Value, to writer: inout ByteWriter) {
        writer.write(value.dataType.rawValue)
        ChunkStats.encode(value, into: &writer)
    }

    public static func readValue(_ reader: inout ByteReader) throws(CorruptDataError) -> Value {
        try ChunkStats.decodeValue(try readType(&reader), from: &reader)
    }

    public static func readType(_ reader: inout ByteReader) throws(CorruptDataError) -> DataType {
        let raw = try reader.readByte()
        guard let type = DataType(rawValue: raw) else { throw CorruptDataError("unknown data type \(raw)") }
        return type
    }

    public static func readText(_ reader: inout ByteReader) throws(CorruptDataError) -> String {
        guard let text = try reader.readText(max: textBytesMax) else { throw CorruptDataError("a text that is not UTF-8") }
        return text
    }

    /// `[keys: device, measurements…][rows: key, timestamp, values…]`.
    public static func write(_ rows: RowBatch, to writer: inout ByteWriter) {
        writer.write(varint: UInt64(rows.keys.count))
        for key in rows.keys {
            writer.write(lengthPrefixed: key.device)
            writer.write(varint: UInt64(key.measurements.count))
            for measurement in key.measurements { writer.write(lengthPrefixed: measurement) }
        }
        writer.write(varint: UInt64(rows.rowCount))
        for row in 0..<rows.rowCount {
            writer.write(varint: UInt64(rows.rowKeys[row]))
            writer.write(signedVarint: rows.rowTimestamps[row])
            for value in rows.values[rows.valueRange(ofRow: row)] { write(value, to: &writer) }
        }
    }

    /// A row batch of at most `pointsMax` values.
    public static func readRows(_ reader: inout ByteReader, pointsMax: Int) throws(CorruptDataError) -> RowBatch {
        var rows = RowBatch()
        let keyCount = try reader.readCount(max: pointsMax, what: "keys")
        var measurementsTotal = 0
        for _ in 0..<keyCount {
            let device = try readText(&reader)
            let count = try reader.readCount(max: pointsMax, what: "measurements")
            measurementsTotal += count
            guard measurementsTotal <= pointsMax else { throw CorruptDataError("more than \(pointsMax) measurements") }
            var measurements: [String] = []
            for _ in 0..<count { measurements.append(try readText(&reader)) }
            _ = rows.addKey(RowBatch.Key(device: device, measurements: measurements))
        }
        let rowCount = try reader.readCount(max: pointsMax, what: "rows")
        var values: [Value] = []
        for _ in 0..<rowCount {
            let key = try reader.readCount(max: max(0, keyCount - 1), what: "row key")
            guard key < keyCount else { throw CorruptDataError("a row of key \(key) past \(keyCount) keys") }
            let timestamp = try reader.readSignedVarint()
            let width = rows.keys[key].measurements.count
            guard rows.pointCount + width <= pointsMax else { throw CorruptDataError("more than \(pointsMax) points") }
            values.removeAll(keepingCapacity: true)
            for _ in 0..<width { values.append(try readValue(&reader)) }
            rows.append(key: key, timestamp: timestamp, values: values)
        }
        return rows
    }

    /// `[type][count][values]`.
    public static func write(_ column: Column, to writer: inout ByteWriter) {
        writer.write(column.dataType.rawValue)
        writer.write(varint: UInt64(column.count))
        for index in 0..<column.count { write(column[index], to: &writer) }
    }

    public static func readColumn(_ reader: inout ByteReader, countMax: Int) throws(CorruptDataError) -> Column {
        let type = try readType(&reader)
        let count = try reader.readCount(max: countMax, what: "values")
        var column = Column.empty(type, capacity: count)
        for _ in 0..<count {
            let value = try readValue(&reader)
            guard value.dataType == type else { throw CorruptDataError("a \(value.dataType) value in a \(type) column") }
            column.append(value)
        }
        return column
    }

    public static func write(_ schema: SeriesSchema, to writer: inout ByteWriter) {
        writer.write(lengthPrefixed: schema.path)
        writer.write(schema.dataType.rawValue)
        writer.write(lengthPrefixed: schema.encoding)
        writer.write(lengthPrefixed: schema.compression)
    }

    public static func readSchema(_ reader: inout ByteReader) throws(CorruptDataError) -> SeriesSchema {
        let path = try readText(&reader)
        let type = try readType(&reader)
        return SeriesSchema(path: path, dataType: type, encoding: try readText(&reader), compression: try readText(&reader))
    }

    public static func write(optional value: Value?, to writer: inout ByteWriter) {
        writer.write(value == nil ? 0 : 1)
        if let value { write(value, to: &writer) }
    }

    public static func readOptionalValue(_ reader: inout ByteReader) throws(CorruptDataError) -> Value? {
        try reader.readByte() == 0 ? nil : try readValue(&reader)
    }

    public static func write(optional value: Double?, to writer: inout ByteWriter) {
        writer.write(value == nil ? 0 : 1)
        if let value { writer.write(littleEndian: value.bitPattern) }
    }

    public static func readOptionalDouble(_ reader: inout ByteReader) throws(CorruptDataError) -> Double? {
        try reader.readByte() == 0 ? nil : Double(bitPattern: try reader.read(littleEndian: UInt64.self))
    }

    public static func write(optional value: Int64?, to writer: inout ByteWriter) {
        writer.write(value == nil ? 0 : 1)
        if let value { writer.write(signedVarint: value) }
    }

    public static func readOptionalInt(_ reader: inout ByteReader) throws(CorruptDataError) -> Int64? {
        try reader.readByte() == 0 ? nil : try reader.readSignedVarint()
    }

    public static func write(_ aggregates: Aggregates, to writer: inout ByteWriter) {
        writer.write(varint: UInt64(aggregates.count))
        write(optional: aggregates.sum, to: &writer)
        write(optional: aggregates.minValue, to: &writer)
        write(optional: aggregates.maxValue, to: &writer)
        write(optional: aggregates.firstValue, to: &writer)
        write(optional: aggregates.lastValue, to: &writer)
        write(optional: aggregates.minTime, to: &writer)
        write(optional: aggregates.maxTime, to: &writer)
        writer.write(varint: UInt64(aggregates.chunksFromStatistics))
    }

    public static func readAggregates(_ reader: inout ByteReader) throws(CorruptDataError) -> Aggregates {
        var aggregates = Aggregates()
        aggregates.count = try reader.readCount(max: Int.max >> 1, what: "count")
        aggregates.sum = try readOptionalDouble(&reader)
        aggregates.minValue = try readOptionalDouble(&reader)
        aggregates.maxValue = try readOptionalDouble(&reader)
        aggregates.firstValue = try readOptionalValue(&reader)
        aggregates.lastValue = try readOptionalValue(&reader)
        aggregates.minTime = try readOptionalInt(&reader)
        aggregates.maxTime = try readOptionalInt(&reader)
        aggregates.chunksFromStatistics = try reader.readCount(max: Int.max >> 1, what: "chunks")
        return aggregates
    }
}
