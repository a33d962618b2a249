import TidemarkIO
/// Writes values of a fixed or varying bit width, most significant bit first.
struct BitWriter {
    private(set) var bytes: [UInt8] = []
    private var buffer: UInt64 = 0
    private var bufferedBits = 0

    init(capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    /// Appends the low `width` bits of `value` (width 0…64).
    @inline(__always)
    mutating func write(_ value: UInt64, width: Int) {
        precondition(width >= 0 && width <= 64)
        var remaining = width
        while remaining > 0 {
            let take = min(remaining, 64 - bufferedBits)
            let shift = remaining - take
            let piece = take == 64 ? value : (value >> UInt64(shift)) & ((1 << UInt64(take)) - 1)
            buffer = take == 64 ? piece : (buffer << UInt64(take)) | piece
            bufferedBits += take
            remaining -= take
            if bufferedBits == 64 { flushWord() }
        }
    }

    private mutating func flushWord() {
        withUnsafeBytes(of: buffer.bigEndian) { bytes.append(contentsOf: $0) }
        buffer = 0
        bufferedBits = 0
    }

    /// The bytes, the last one padded with zero bits.
    mutating func finish() -> [UInt8] {
        while bufferedBits >= 8 {
            bufferedBits -= 8
            bytes.append(UInt8(truncatingIfNeeded: buffer >> UInt64(bufferedBits)))
        }
        if bufferedBits > 0 {
            bytes.append(UInt8(truncatingIfNeeded: buffer << UInt64(8 - bufferedBits)))
            bufferedBits = 0
        }
        buffer = 0
        return bytes
    }
}

/// Reads what `BitWriter` wrote, throwing at the end of the data.
struct BitReader {
    private let bytes: ArraySlice<UInt8>
    private var bitOffset = 0

    init(_ bytes: ArraySlice<UInt8>) { self.bytes = bytes }

    @inline(__always)
    mutating func read(width: Int) throws(CorruptDataError) -> UInt64 {
        precondition(width >= 0 && width <= 64)
        guard bitOffset + width <= bytes.count * 8 else { throw CorruptDataError("bit stream ends early") }
        var value: UInt64 = 0
        var remaining = width
        while remaining > 0 {
            let byte = bytes[bytes.startIndex + bitOffset >> 3]
            let available = 8 - (bitOffset & 7)
            let take = min(available, remaining)
            let bits = (UInt64(byte) >> UInt64(available - take)) & ((1 << UInt64(take)) - 1)
            value = (value << UInt64(take)) | bits
            bitOffset += take
            remaining -= take
        }
        return value
    }

    /// Bytes consumed, counting a partly read byte as whole.
    var bytesConsumed: Int { (bitOffset + 7) >> 3 }
}
