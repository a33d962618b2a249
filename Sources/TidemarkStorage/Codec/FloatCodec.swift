import TidemarkIO
/// The floating-point types a column can hold, with what the codec needs of them.
protocol StoredFloat: BinaryFloatingPoint {
    associatedtype Bits: FixedWidthInteger & UnsignedInteger
    var bitPattern: Bits { get }
    init(bitPattern: Bits)
    /// Integers up to this magnitude are exact in this type.
    static var exactIntegerMax: Self { get }
    /// The conversions of the concrete type (one instruction each): the generic
    /// `Int64(_: some BinaryFloatingPoint)` and `init(_: some BinaryInteger)` take a slow
    /// path that showed in flush profiles.
    var truncatedInt64: Int64 { get }
    static func converting(_ value: Int64) -> Self
}

extension Double: StoredFloat {
    static var exactIntegerMax: Double { 9_007_199_254_740_992 }  // 2^53
    @inline(__always) var truncatedInt64: Int64 { Int64(self) }
    @inline(__always) static func converting(_ value: Int64) -> Self { Self(value) }
}

extension Float: StoredFloat {
    static var exactIntegerMax: Float { 16_777_216 }  // 2^24
    @inline(__always) var truncatedInt64: Int64 { Int64(self) }
    @inline(__always) static func converting(_ value: Int64) -> Self { Self(value) }
}

/// Floating-point values, encoded one of two ways:
/// - decimal (after ALP): when every value is `n / 10^e` exactly for one small `e` — as
///   sensor readings with a fixed number of decimals are — the integers `n` are stored
///   with `IntegerCodec`. Decoding divides again; the encoder checks that this gives
///   back the same bits for every value, so the path is lossless by construction.
/// - Gorilla XOR otherwise (NaN, ±Inf, -0.0, full-precision noise).
enum FloatCodec {
    static let decimalExponentMax = 10

    private enum Mode: UInt8 {
        case decimal = 0
        case xor = 1
    }

    private static func powerOfTen<F: StoredFloat>(_ exponent: Int, as: F.Type) -> F {
        var power: F = 1
        for _ in 0..<exponent { power *= 10 }
        return power
    }

    static func encode<F: StoredFloat>(_ values: [F], into writer: inout ByteWriter) {
        guard !values.isEmpty else { return }
        if let (exponent, integers) = decimalIntegers(values) {
            writer.write(Mode.decimal.rawValue)
            writer.write(UInt8(exponent))
            IntegerCodec.encode(integers, into: &writer)
        } else {
            writer.write(Mode.xor.rawValue)
            writer.write(lengthPrefixed: gorillaEncode(values))
        }
    }

    static func decode<F: StoredFloat>(count: Int, as type: F.Type, from reader: inout ByteReader) throws(CorruptDataError) -> [F] {
        guard count > 0 else { return [] }
        switch Mode(rawValue: try reader.readByte()) {
        case .decimal:
            let exponent = Int(try reader.readByte())
            guard exponent <= decimalExponentMax else { throw CorruptDataError("decimal exponent \(exponent) out of range") }
            let scale = powerOfTen(exponent, as: F.self)
            return try IntegerCodec.decode(count: count, from: &reader).map { F.converting($0) / scale }
        case .xor:
            return try gorillaDecode(try reader.readLengthPrefixed(max: count * (MemoryLayout<F.Bits>.size + 2) + 16), count: count)
        case nil:
            throw CorruptDataError("unknown float encoding")
        }
    }

    /// The smallest exponent that makes every value an exact decimal, with the integers.
    private static func decimalIntegers<F: StoredFloat>(_ values: [F]) -> (Int, [Int64])? {
        exponents: for exponent in 0...decimalExponentMax {
            let scale = powerOfTen(exponent, as: F.self)
            var integers: [Int64] = []
            integers.reserveCapacity(values.count)
            for value in values {
                let scaled = (value * scale).rounded()
                // Finite, exactly representable, and decoding (integer / 10^e) gives the very
                // same bits: this also rules out -0.0, NaN and infinities.
                guard scaled.isFinite, abs(scaled) <= F.exactIntegerMax else { continue exponents }
                let integer = scaled.truncatedInt64
                guard (F.converting(integer) / scale).bitPattern == value.bitPattern else { continue exponents }
                integers.append(integer)
            }
            return (exponent, integers)
        }
        return nil
    }

    /// Facebook's Gorilla: XOR with the previous value; '0' for equal, '10' to reuse the
    /// previous leading/trailing window, '11' + window + meaningful bits otherwise.
    static func gorillaEncode<F: StoredFloat>(_ values: [F]) -> [UInt8] {
        let width = F.Bits.bitWidth
        var bits = BitWriter(capacity: values.count * 2)
        var previous = UInt64(values[0].bitPattern)
        bits.write(previous, width: width)
        var previousLeading = Int.max, previousTrailing = 0
        for value in values.dropFirst() {
            let current = UInt64(value.bitPattern)
            let xor = current ^ previous
            previous = current
            if xor == 0 {
                bits.write(0, width: 1)
                continue
            }
            let leading = min(xor.leadingZeroBitCount - (64 - width), 31)
            let trailing = xor.trailingZeroBitCount
            if previousLeading != Int.max && leading >= previousLeading && trailing >= previousTrailing {
                bits.write(0b10, width: 2)
                bits.write(xor >> UInt64(previousTrailing), width: width - previousLeading - previousTrailing)
            } else {
                let meaningful = width - leading - trailing
                bits.write(0b11, width: 2)
                bits.write(UInt64(leading), width: 5)
                bits.write(UInt64(meaningful - 1), width: width == 64 ? 6 : 5)
                bits.write(xor >> UInt64(trailing), width: meaningful)
                previousLeading = leading
                previousTrailing = trailing
            }
        }
        return bits.finish()
    }

    static func gorillaDecode<F: StoredFloat>(_ bytes: ArraySlice<UInt8>, count: Int) throws(CorruptDataError) -> [F] {
        let width = F.Bits.bitWidth
        var bits = BitReader(bytes)
        var values: [F] = []
        values.reserveCapacity(count)
        var previous = try bits.read(width: width)
        values.append(F(bitPattern: F.Bits(truncatingIfNeeded: previous)))
        var leading = -1, trailing = 0
        while values.count < count {
            if try bits.read(width: 1) == 1 {
                if try bits.read(width: 1) == 1 {
                    leading = Int(try bits.read(width: 5))
                    let meaningful = Int(try bits.read(width: width == 64 ? 6 : 5)) + 1
                    trailing = width - leading - meaningful
                    guard trailing >= 0 else { throw CorruptDataError("Gorilla window out of range") }
                } else if leading < 0 {
                    throw CorruptDataError("Gorilla reuses a window before defining one")
                }
                let meaningful = width - leading - trailing
                previous ^= try bits.read(width: meaningful) << UInt64(trailing)
            }
            values.append(F(bitPattern: F.Bits(truncatingIfNeeded: previous)))
        }
        return values
    }
}
