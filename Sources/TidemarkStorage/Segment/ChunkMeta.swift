import TidemarkCore
import TidemarkIO

/// What a chunk holds, without its points: enough to prune by time and to answer
/// aggregates when the whole chunk lies inside a query's range.
public struct ChunkStats: Sendable, Equatable {
    public var dataType: DataType
    public var count: Int
    public var minTime: Int64
    public var maxTime: Int64
    /// The values at `minTime` and `maxTime`.
    public var first: Value
    public var last: Value
    /// Numeric types only.
    public var minValue: Double?
    public var maxValue: Double?
    public var sum: Double?

    /// Statistics of sorted, de-duplicated points.
    public init(timestamps: [Int64], values: Column) {
        precondition(!timestamps.isEmpty && timestamps.count == values.count)
        dataType = values.dataType
        count = timestamps.count
        minTime = timestamps.first!
        maxTime = timestamps.last!
        first = values[0]
        last = values[values.count - 1]
        (minValue, maxValue, sum) = Self.numericStats(values)
    }

    init(dataType: DataType, count: Int, minTime: Int64, maxTime: Int64, first: Value, last: Value,
         minValue: Double?, maxValue: Double?, sum: Double?) {
        self.dataType = dataType
        self.count = count
        self.minTime = minTime
        self.maxTime = maxTime
        self.first = first
        self.last = last
        self.minValue = minValue
        self.maxValue = maxValue
        self.sum = sum
    }

    private static func numericStats(_ values: Column) -> (Double?, Double?, Double?) {
        func fold<T>(_ values: [T], _ convert: (T) -> Double) -> (Double?, Double?, Double?) {
            var low = Double.infinity, high = -Double.infinity, total = 0.0
            var sawNaN = false
            for value in values {
                let number = convert(value)
                // Plain comparisons (a NaN is caught on its own): `Swift.min` orders NaN and costs more.
                if number.isNaN { sawNaN = true }
                if number < low { low = number }
                if number >= high { high = number }
                total += number
            }
            return sawNaN ? (.nan, .nan, .nan) : (low, high, total)
        }
        switch values {
        case .int32(let v): return fold(v) { Double($0) }
        case .int64(let v): return fold(v) { Double($0) }
        case .float(let v): return fold(v) { Double($0) }
        case .double(let v): return fold(v) { $0 }
        case .boolean, .text: return (nil, nil, nil)
        }
    }

    /// The stats as stored: compares NaN statistics bit for bit, as `==` cannot.
    var encoded: [UInt8] {
        var writer = ByteWriter()
        encode(into: &writer)
        return writer.bytes
    }

    func encode(into writer: inout ByteWriter) {
        writer.write(dataType.rawValue)
        writer.write(varint: UInt64(count))
        writer.write(signedVarint: minTime)
        writer.write(signedVarint: maxTime)
        Self.encode(first, into: &writer)
        Self.encode(last, into: &writer)
        if dataType != .boolean && dataType != .text {
            for number in [minValue!, maxValue!, sum!] { writer.write(littleEndian: number.bitPattern) }
        }
    }

    static func decode(from reader: inout ByteReader, countMax: Int) throws(CorruptDataError) -> ChunkStats {
        guard let dataType = DataType(rawValue: try reader.readByte()) else { throw CorruptDataError("unknown data type") }
        let count = try reader.readCount(max: countMax, what: "chunk point count")
        guard count > 0 else { throw CorruptDataError("empty chunk") }
        let minTime = try reader.readSignedVarint()
        let maxTime = try reader.readSignedVarint()
        guard minTime <= maxTime else { throw CorruptDataError("chunk time range \(minTime)…\(maxTime) is inverted") }
        let first = try decodeValue(dataType, from: &reader)
        let last = try decodeValue(dataType, from: &reader)
        var numbers: [Double?] = [nil, nil, nil]
        if dataType != .boolean && dataType != .text {
            for index in 0..<3 { numbers[index] = try decodeDouble(from: &reader) }
        }
        return ChunkStats(dataType: dataType, count: count, minTime: minTime, maxTime: maxTime, first: first, last: last,
                          minValue: numbers[0], maxValue: numbers[1], sum: numbers[2])
    }

    /// A value's bytes without its type (the reader knows it): chunk statistics and values between nodes.
    public static func encode(_ value: Value, into writer: inout ByteWriter) {
        switch value {
        case .boolean(let v): writer.write(v ? 1 : 0)
        case .int32(let v): writer.write(signedVarint: Int64(v))
        case .int64(let v): writer.write(signedVarint: v)
        case .float(let v): writer.write(littleEndian: v.bitPattern)
        case .double(let v): writer.write(littleEndian: v.bitPattern)
        case .text(let v): writer.write(lengthPrefixed: v)
        }
    }

    /// A DOUBLE as `encode` writes it: its IEEE bits, little-endian.
    static func decodeDouble(from reader: inout ByteReader) throws(CorruptDataError) -> Double {
        Double(bitPattern: try reader.read(littleEndian: UInt64.self))
    }

    public static func decodeValue(_ type: DataType, from reader: inout ByteReader) throws(CorruptDataError) -> Value {
        switch type {
        case .boolean:
            let byte = try reader.readByte()
            guard byte <= 1 else { throw CorruptDataError("boolean byte \(byte)") }
            return .boolean(byte == 1)
        case .int32:
            guard let value = Int32(exactly: try reader.readSignedVarint()) else { throw CorruptDataError("INT32 out of range") }
            return .int32(value)
        case .int64: return .int64(try reader.readSignedVarint())
        case .float: return .float(Float(bitPattern: try reader.read(littleEndian: UInt32.self)))
        case .double: return .double(try decodeDouble(from: &reader))
        case .text:
            guard let text = try reader.readText(max: ColumnCodec.textBytesMax) else {
                throw CorruptDataError("TEXT value is not UTF-8")
            }
            return .text(text)
        }
    }
}
