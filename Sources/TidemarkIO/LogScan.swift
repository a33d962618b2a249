/// A scan of one log file's bytes (`FileWAL`'s record format), telling a torn tail from
/// damage in the middle. Pure: no I/O, so recovery, `--repair`, tests and the fuzz target
/// (fuzz/LogScanFuzz.swift compiles this file directly) all judge a file the same way.
///
/// Record: `u32 length | u32 CRC32C(sequence ‖ payload) | u64 sequence | payload`.
///
/// The rule: records are read from the start while each is whole, passes its CRC and
/// carries the next sequence. At the first one that does not (the "bad spot"):
/// - if no record that passes its checksum, with a sequence that could follow, starts
///   anywhere after it, the rest is a torn tail (an append the crash cut short, or a tail a
///   file system filled with zeros) and may be cut;
/// - otherwise it is damage in the middle: cutting would drop records that pass their
///   checksums, so recovery must stop. A record that passes its checksum but carries the
///   wrong sequence is damage too: it is never cut.
public struct LogScan: Sendable, Equatable {
    public static let recordHeaderBytes = 16

    /// One good record: its sequence and where its payload lies in the scanned bytes.
    public struct Record: Sendable, Equatable {
        public var sequence: UInt64
        public var payload: Range<Int>
    }

    /// How the file ends after its good records.
    public enum Ending: Sendable, Equatable {
        /// Every byte belongs to a good record.
        case clean
        /// The bytes from `validBytes` on are an incomplete or failed last record, and
        /// nothing after them passes its checksum.
        case tornTail(reason: String)
        /// The record at `validBytes` is damaged and a record that passes its checksum
        /// starts at `followingOffset`; nil when the probe ran out of budget before it could
        /// rule one out (cutting is then not safe either).
        case damaged(reason: String, followingOffset: Int?)
    }

    public var records: [Record] = []
    /// Bytes from the start that hold good records: where a torn tail is cut.
    public var validBytes = 0
    public var ending = Ending.clean

    /// The last good record's sequence, if any.
    public var lastSequence: UInt64? { records.last?.sequence }

    /// Scans `bytes`. With `firstSequence`, the first record must carry it and each next one
    /// the sequence after. Work is linear in `bytes.count`: the probe after a bad spot checks
    /// at most `probeChecksumBytes(after:)` bytes of CRC, however hostile the lengths.
    public static func scan(_ bytes: UnsafeRawBufferPointer, firstSequence: UInt64?, payloadBytesMax: Int) -> LogScan {
        var result = LogScan()
        var offset = 0
        var expected = firstSequence
        while offset < bytes.count {
            switch record(in: bytes, at: offset, payloadBytesMax: payloadBytesMax) {
            case .bad(let reason):
                result.validBytes = offset
                result.ending = judge(bytes, badSpot: offset, reason: reason, payloadBytesMax: payloadBytesMax, expected: expected)
                return result
            case .good(let sequence, let end):
                if let wanted = expected, sequence != wanted {
                    // It passes its checksum: whatever it is, cutting it would lose a good record.
                    result.validBytes = offset
                    result.ending = .damaged(reason: "record passes its checksum but has sequence \(sequence), expected \(wanted)",
                                             followingOffset: offset)
                    return result
                }
                result.records.append(Record(sequence: sequence, payload: (offset + recordHeaderBytes)..<end))
                expected = sequence &+ 1
                offset = end
            }
        }
        result.validBytes = offset
        return result
    }

    /// Convenience for arrays (tests, the fuzz target).
    public static func scan(_ bytes: [UInt8], firstSequence: UInt64?, payloadBytesMax: Int) -> LogScan {
        bytes.withUnsafeBytes { scan($0, firstSequence: firstSequence, payloadBytesMax: payloadBytesMax) }
    }

    /// CRC bytes the probe may check after a bad spot with `remaining` bytes after it: a few
    /// passes over the rest plus a floor, so natural data never runs out while a file built
    /// to make every offset look like a long record cannot make the probe quadratic.
    public static func probeChecksumBytes(after remaining: Int) -> Int { 4 * remaining + (1 << 20) }

    enum Reading: Equatable {
        case good(sequence: UInt64, end: Int)
        case bad(String)
    }

    /// Reads the record at `offset`: whole and passing its CRC, or why not.
    static func record(in bytes: UnsafeRawBufferPointer, at offset: Int, payloadBytesMax: Int) -> Reading {
        let remaining = bytes.count - offset
        guard remaining >= recordHeaderBytes else { return .bad("incomplete record header (\(remaining) bytes)") }
        let length = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
        guard length <= payloadBytesMax else { return .bad("record length \(length) is past the limit \(payloadBytesMax)") }
        guard length <= remaining - recordHeaderBytes else {
            return .bad("incomplete record (\(length) payload bytes, \(remaining - recordHeaderBytes) present)")
        }
        let end = offset + recordHeaderBytes + length
        let stored = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
        guard CRC32C.checksum(UnsafeRawBufferPointer(rebasing: bytes[(offset + 8)..<end])) == stored else {
            return .bad("record fails its CRC")
        }
        return .good(sequence: UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)), end: end)
    }

    /// Whether the bad spot at `offset` holds a whole record (its length fits the file) that
    /// fails its CRC, in a tail that is not all zeros: a record once written whole and damaged
    /// since, where a crash leaves an incomplete one. A log that must not lose an acknowledged
    /// last record (the users log) takes it for damage, not a torn tail.
    public static func isWholeDamagedRecord(_ bytes: [UInt8], at offset: Int, payloadBytesMax: Int) -> Bool {
        let tail = bytes[offset...]
        guard tail.count >= recordHeaderBytes, tail.contains(where: { $0 != 0 }) else { return false }
        let length = tail.prefix(4).reversed().reduce(0) { $0 << 8 | Int($1) }
        return length <= payloadBytesMax && length <= tail.count - recordHeaderBytes
    }

    /// Whether a record found `remaining` bytes after a bad spot, where sequence `expected` was
    /// due, could carry `sequence`: one the log could have written there (each record takes at
    /// least a header). Nil `expected` (a scan without a first sequence) allows any.
    public static func couldFollow(_ sequence: UInt64, expected: UInt64?, remaining: Int) -> Bool {
        guard let expected else { return true }
        return sequence >= expected && sequence - expected <= UInt64(remaining / recordHeaderBytes)
    }

    /// Torn tail or damage: probes every later offset for a record that passes its checksum
    /// and could follow. Every offset, not record boundaries: a flipped length byte moves the
    /// boundary.
    private static func judge(_ bytes: UnsafeRawBufferPointer, badSpot: Int, reason: String, payloadBytesMax: Int, expected: UInt64?) -> Ending {
        // A file system may persist a file's new length before its data after a power loss:
        // the unsynced tail reads as zeros, however long, and holds no record.
        if UnsafeRawBufferPointer(rebasing: bytes[badSpot...]).allSatisfy({ $0 == 0 }) {
            return .tornTail(reason: reason + " (the rest of the file is zeros)")
        }
        var budget = probeChecksumBytes(after: bytes.count - badSpot)
        let remaining = bytes.count - badSpot
        var candidate = badSpot + 1
        while candidate + recordHeaderBytes <= bytes.count {
            // Cheap checks first: only a length that fits and a sequence that could follow cost a CRC.
            let length = Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: candidate, as: UInt32.self)))
            let sequence = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: candidate + 8, as: UInt64.self))
            if length <= payloadBytesMax && length <= bytes.count - candidate - recordHeaderBytes
                && couldFollow(sequence, expected: expected, remaining: remaining) {
                let cost = length + 8
                guard budget >= cost else {
                    return .damaged(reason: reason + "; could not rule out good records after it within the probe's budget",
                                    followingOffset: nil)
                }
                budget -= cost
                if case .good = record(in: bytes, at: candidate, payloadBytesMax: payloadBytesMax) {
                    return .damaged(reason: reason, followingOffset: candidate)
                }
            }
            candidate += 1
        }
        return .tornTail(reason: reason)
    }
}
