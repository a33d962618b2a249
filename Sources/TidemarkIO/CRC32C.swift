import CCRC32C

/// CRC-32C (Castagnoli), the checksum of every WAL record, segment block and frame.
///
/// With the CPU's CRC-32C instruction (x86-64 SSE4.2, through the CCRC32C shim) where
/// there is one, else slicing-by-8 tables. Hand-written: swift-crypto has no CRC, and
/// pulling a package in for forty lines is not worth its build time.
public enum CRC32C {
    /// Whether `checksum` uses the instruction on this machine.
    public static let usesHardware = tidemark_crc32c_hardware() != 0

    private static let tables: [[UInt32]] = {
        var tables = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: 8)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
            tables[0][byte] = crc
        }
        for byte in 0..<256 {
            for table in 1..<8 {
                let previous = tables[table - 1][byte]
                tables[table][byte] = (previous >> 8) ^ tables[0][Int(previous & 0xFF)]
            }
        }
        return tables
    }()

    /// The checksum of `bytes`, continuing from `crc` (0 to start).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        if usesHardware {
            guard let base = bytes.baseAddress else { return crc }
            return ~tidemark_crc32c_update(~crc, base, bytes.count)
        }
        return tableChecksum(bytes, continuing: crc)
    }

    /// The table-driven checksum (machines without the instruction, and tests comparing the two).
    public static func tableChecksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        var crc = ~crc
        var index = 0
        let count = bytes.count
        tables.withUnsafeBufferPointer { tables in
            let t0 = tables[0], t1 = tables[1], t2 = tables[2], t3 = tables[3]
            let t4 = tables[4], t5 = tables[5], t6 = tables[6], t7 = tables[7]
            while index + 8 <= count {
                let low = crc ^ bytes.loadUnaligned(fromByteOffset: index, as: UInt32.self).littleEndian
                let high = bytes.loadUnaligned(fromByteOffset: index + 4, as: UInt32.self).littleEndian
                crc = t7[Int(low & 0xFF)] ^ t6[Int((low >> 8) & 0xFF)] ^ t5[Int((low >> 16) & 0xFF)] ^ t4[Int(low >> 24)]
                    ^ t3[Int(high & 0xFF)] ^ t2[Int((high >> 8) & 0xFF)] ^ t1[Int((high >> 16) & 0xFF)] ^ t0[Int(high >> 24)]
                index += 8
            }
            while index < count {
                crc = t0[Int((crc ^ UInt32(bytes[index])) & 0xFF)] ^ (crc >> 8)
                index += 1
            }
        }
        return ~crc
    }

    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// The checksum of A followed by B, from A's and B's and B's length (zlib's
    /// `crc32_combine`, Castagnoli polynomial): parts checksummed out of order add up.
    public static func combine(_ first: UInt32, _ second: UInt32, secondBytes: Int) -> UInt32 {
        precondition(secondBytes >= 0, "a length is never negative")
        guard secondBytes > 0 else { return first }
        func times(_ matrix: [UInt32], _ vector: UInt32) -> UInt32 {
            var sum: UInt32 = 0, vector = vector, row = 0
            while vector != 0 {
                if vector & 1 == 1 { sum ^= matrix[row] }
                vector >>= 1
                row += 1
            }
            return sum
        }
        func squared(_ matrix: [UInt32]) -> [UInt32] { matrix.map { times(matrix, $0) } }
        // The operator for one zero bit, then two, then four.
        var odd: [UInt32] = [0x82F6_3B78] + (0..<31).map { UInt32(1) << $0 }
        var even = squared(odd)
        odd = squared(even)
        var crc = first, remaining = secondBytes
        // Apply `remaining` zero bytes to `first`, squaring the operator bit by bit.
        repeat {
            even = squared(odd)
            if remaining & 1 == 1 { crc = times(even, crc) }
            remaining >>= 1
            if remaining == 0 { break }
            odd = squared(even)
            if remaining & 1 == 1 { crc = times(odd, crc) }
            remaining >>= 1
        } while remaining != 0
        return crc ^ second
    }
}
