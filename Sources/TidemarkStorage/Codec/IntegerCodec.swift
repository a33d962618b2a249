import TidemarkIO
/// Integers as deltas, zigzagged, then either one byte each (when every delta fits, so
/// zstd's Huffman stage can reach the entropy) or bit-packed in blocks of 128 with the
/// block's own width (a run of equal deltas packs to width 0: run-length for free).
enum IntegerCodec {
    static let blockSize = 128

    private enum Mode: UInt8 {
        case bytes = 0
        case packedBlocks = 1
    }

    static func encode(_ values: some Collection<Int64>, into writer: inout ByteWriter) {
        guard let first = values.first else { return }
        writer.write(signedVarint: first)
        guard values.count > 1 else { return }
        // First try one byte per delta, the common case for sensor data.
        var narrow = [UInt8](repeating: 0, count: values.count - 1)
        var largest: UInt64 = 0
        var previous = first
        narrow.withUnsafeMutableBufferPointer { out in
            var index = 0
            for value in values.dropFirst() {
                let delta = zigzag(value &- previous)
                largest |= delta
                out[index] = UInt8(truncatingIfNeeded: delta)
                index += 1
                previous = value
            }
        }
        if largest < 256 {
            writer.write(Mode.bytes.rawValue)
            writer.write(bytes: narrow)
            return
        }
        var deltas: [UInt64] = []
        deltas.reserveCapacity(values.count - 1)
        previous = first
        for value in values.dropFirst() {
            deltas.append(zigzag(value &- previous))
            previous = value
        }
        writer.write(Mode.packedBlocks.rawValue)
        var bits = BitWriter(capacity: deltas.count * 2)
        var start = 0
        while start < deltas.count {
            let block = deltas[start..<min(start + blockSize, deltas.count)]
            let width = 64 - block.reduce(0, |).leadingZeroBitCount
            bits.write(UInt64(width), width: 7)
            for delta in block { bits.write(delta, width: width) }
            start += blockSize
        }
        writer.write(lengthPrefixed: bits.finish())
    }

    static func decode(count: Int, from reader: inout ByteReader) throws(CorruptDataError) -> [Int64] {
        guard count > 0 else { return [] }
        var values: [Int64] = []
        values.reserveCapacity(count)
        var previous = try reader.readSignedVarint()
        values.append(previous)
        guard count > 1 else { return values }
        switch Mode(rawValue: try reader.readByte()) {
        case .bytes:
            let deltas = try reader.readBytes(count - 1)
            values.append(contentsOf: repeatElement(0, count: count - 1))
            values.withUnsafeMutableBufferPointer { out in
                deltas.withUnsafeBufferPointer { deltas in
                    for index in 0..<deltas.count {
                        previous = previous &+ unzigzag(UInt64(deltas[index]))
                        out[index + 1] = previous
                    }
                }
            }
        case .packedBlocks:
            var bits = BitReader(try reader.readLengthPrefixed(max: (count - 1) * 9 + 16))
            var decoded = 1
            while decoded < count {
                let width = Int(try bits.read(width: 7))
                guard width <= 64 else { throw CorruptDataError("bit width \(width) exceeds 64") }
                for _ in 0..<min(blockSize, count - decoded) {
                    previous = previous &+ unzigzag(try bits.read(width: width))
                    values.append(previous)
                }
                decoded = values.count
            }
        case nil:
            throw CorruptDataError("unknown integer encoding")
        }
        return values
    }
}

/// Timestamps as delta-of-delta: a regular interval becomes a run of zeros.
enum TimestampCodec {
    static func encode(_ timestamps: [Int64], into writer: inout ByteWriter) {
        guard let first = timestamps.first else { return }
        writer.write(signedVarint: first)
        guard timestamps.count > 1 else { return }
        var previousDelta = timestamps[1] &- first
        writer.write(signedVarint: previousDelta)
        var previous = timestamps[1]
        for timestamp in timestamps.dropFirst(2) {
            let delta = timestamp &- previous
            writer.write(signedVarint: delta &- previousDelta)
            previousDelta = delta
            previous = timestamp
        }
    }

    static func decode(count: Int, from reader: inout ByteReader) throws(CorruptDataError) -> [Int64] {
        guard count > 0 else { return [] }
        var timestamps = [Int64](repeating: 0, count: count)
        var previous = try reader.readSignedVarint()
        timestamps[0] = previous
        guard count > 1 else { return timestamps }
        var delta = try reader.readSignedVarint()
        previous = previous &+ delta
        timestamps[1] = previous
        guard count > 2 else { return timestamps }
        // The hot loop of every read: varints straight from the buffer, bounds checked once per byte.
        let start = reader.offset
        let end = start + reader.remaining
        var offset = start
        var failed = false
        reader.bytes.withUnsafeBufferPointer { bytes in
            timestamps.withUnsafeMutableBufferPointer { out in
                for index in 2..<count {
                    var value: UInt64 = 0
                    var shift: UInt64 = 0
                    while true {
                        guard offset < end, shift < 64 else { failed = true; return }
                        let byte = bytes[offset]
                        offset += 1
                        value |= UInt64(byte & 0x7F) << shift
                        if byte < 0x80 { break }
                        shift += 7
                    }
                    delta = delta &+ unzigzag(value)
                    previous = previous &+ delta
                    out[index] = previous
                }
            }
        }
        guard !failed else { throw CorruptDataError("timestamps end early or hold an overlong varint") }
        _ = try reader.readBytes(offset - start)
        return timestamps
    }
}
