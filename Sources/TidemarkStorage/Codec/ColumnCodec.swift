import TidemarkCore
import TidemarkIO

/// Encodes a column's values by type (before the chunk's zstd pass), and decodes them
/// with every count and length checked against what remains.
public enum ColumnCodec {
    /// Texts longer than this are refused when read back (no write may create one).
    public static let textBytesMax = 64 * 1024 * 1024

    private enum TextMode: UInt8 {
        case plain = 0
        case dictionary = 1
    }

    public static func encode(_ column: Column, into writer: inout ByteWriter) {
        switch column {
        case .boolean(let values):
            var bits = BitWriter(capacity: values.count / 8 + 1)
            for value in values { bits.write(value ? 1 : 0, width: 1) }
            writer.write(bytes: bits.finish())
        case .int32(let values):
            IntegerCodec.encode(values.lazy.map(Int64.init), into: &writer)
        case .int64(let values):
            IntegerCodec.encode(values, into: &writer)
        case .float(let values):
            FloatCodec.encode(values, into: &writer)
        case .double(let values):
            FloatCodec.encode(values, into: &writer)
        case .text(let values):
            encodeText(values, into: &writer)
        }
    }

    public static func decode(_ type: DataType, count: Int, from reader: inout ByteReader) throws(CorruptDataError) -> Column {
        switch type {
        case .boolean:
            var bits = BitReader(try reader.readBytes((count + 7) / 8))
            var values: [Bool] = []
            values.reserveCapacity(count)
            for _ in 0..<count { values.append(try bits.read(width: 1) == 1) }
            return .boolean(values)
        case .int32:
            var values: [Int32] = []
            values.reserveCapacity(count)
            for value in try IntegerCodec.decode(count: count, from: &reader) {
                guard let narrow = Int32(exactly: value) else { throw CorruptDataError("INT32 value \(value) out of range") }
                values.append(narrow)
            }
            return .int32(values)
        case .int64:
            return .int64(try IntegerCodec.decode(count: count, from: &reader))
        case .float:
            return .float(try FloatCodec.decode(count: count, as: Float.self, from: &reader))
        case .double:
            return .double(try FloatCodec.decode(count: count, as: Double.self, from: &reader))
        case .text:
            return .text(try decodeText(count: count, from: &reader))
        }
    }

    /// A dictionary when values repeat enough to pay for it (at most half are distinct).
    private static func encodeText(_ values: [String], into writer: inout ByteWriter) {
        guard !values.isEmpty else { return }
        var codes: [String: Int] = [:]
        var dictionary: [String] = []
        var indices: [Int] = []
        indices.reserveCapacity(values.count)
        for value in values {
            if let code = codes[value] {
                indices.append(code)
            } else if dictionary.count * 2 < values.count {
                codes[value] = dictionary.count
                indices.append(dictionary.count)
                dictionary.append(value)
            } else {
                break
            }
        }
        if indices.count == values.count {
            writer.write(TextMode.dictionary.rawValue)
            writer.write(varint: UInt64(dictionary.count))
            for entry in dictionary { writer.write(lengthPrefixed: entry) }
            for index in indices { writer.write(varint: UInt64(index)) }
        } else {
            writer.write(TextMode.plain.rawValue)
            for value in values { writer.write(lengthPrefixed: value) }
        }
    }

    private static func decodeText(count: Int, from reader: inout ByteReader) throws(CorruptDataError) -> [String] {
        guard count > 0 else { return [] }
        func string(_ reader: inout ByteReader) throws(CorruptDataError) -> String {
            let bytes = try reader.readLengthPrefixed(max: textBytesMax)
            guard let text = String(validating: bytes, as: UTF8.self) else { throw CorruptDataError("TEXT value is not UTF-8") }
            return text
        }
        var values: [String] = []
        values.reserveCapacity(count)
        switch TextMode(rawValue: try reader.readByte()) {
        case .plain:
            for _ in 0..<count { values.append(try string(&reader)) }
        case .dictionary:
            let size = try reader.readCount(max: count, what: "dictionary size")
            var dictionary: [String] = []
            for _ in 0..<size { dictionary.append(try string(&reader)) }
            for _ in 0..<count {
                let index = try reader.readCount(max: max(size - 1, 0), what: "dictionary index")
                guard index < size else { throw CorruptDataError("dictionary index past an empty dictionary") }
                values.append(dictionary[index])
            }
        case nil:
            throw CorruptDataError("unknown text encoding")
        }
        return values
    }
}
