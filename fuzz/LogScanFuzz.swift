import TidemarkIO

// libFuzzer target: log recovery's scan (LogScan, what FileWAL.replay and `tidemarkd --repair`
// use for the WAL, the schema log, the users log and the Raft log) never crashes, never hangs,
// and never calls "torn tail" (which recovery cuts) a tail in which some record passes its
// checksum with a sequence that could follow the good records. The first byte picks a mode: even, the rest is scanned as a log file as it is;
// odd, the rest builds a log of good records and then damages it (byte flips, a cut, zeros),
// so the fuzzer reaches damage with good records after it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let input = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    let bytes = data[0] & 1 == 0 ? input : buildAndDamage(input)
    let payloadBytesMax = data[0] & 2 == 0 ? 1 << 20 : 64  // a small limit reaches the length check
    let firstSequence: UInt64? = data[0] & 4 == 0 ? 1 : nil
    let scan = LogScan.scan(bytes, firstSequence: firstSequence, payloadBytesMax: payloadBytesMax)

    // The good records tile the bytes from 0 to validBytes, each passing its checksum.
    var offset = 0
    for record in scan.records {
        precondition(record.payload.lowerBound == offset + LogScan.recordHeaderBytes, "records do not tile the log")
        precondition(passes(bytes, at: offset, payloadBytesMax: payloadBytesMax) == record.payload.upperBound, "a returned record fails its checksum")
        offset = record.payload.upperBound
    }
    precondition(offset == scan.validBytes, "validBytes is not where the good records end")
    switch scan.ending {
    case .clean:
        precondition(scan.validBytes == bytes.count, "clean, yet bytes are left")
    case .tornTail:
        precondition(scan.validBytes < bytes.count, "a torn tail of no bytes")
        // What recovery would cut: no record passing its checksum, with a sequence the log
        // could have written there, may start anywhere in it.
        let expected = scan.lastSequence.map { $0 + 1 } ?? firstSequence
        for start in scan.validBytes..<bytes.count where passes(bytes, at: start, payloadBytesMax: payloadBytesMax) != nil {
            let sequence = (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[start + 8 + $1]) << (8 * UInt64($1)) }
            precondition(!LogScan.couldFollow(sequence, expected: expected, remaining: bytes.count - scan.validBytes),
                         "torn tail from \(scan.validBytes) would cut a good record at \(start)")
        }
    case .damaged(_, let following):
        precondition(scan.validBytes < bytes.count, "damage with no bytes")
        if let following { precondition(passes(bytes, at: following, payloadBytesMax: payloadBytesMax) != nil, "the record said to follow is not good") }
    }
    return 0
}

/// Where the record at `offset` ends if it is whole and passes its CRC (checked here on its
/// own, not through LogScan, so the two can disagree).
private func passes(_ bytes: [UInt8], at offset: Int, payloadBytesMax: Int) -> Int? {
    guard offset + 16 <= bytes.count else { return nil }
    func u32(_ at: Int) -> Int { (0..<4).reduce(0) { $0 | Int(bytes[at + $1]) << (8 * $1) } }
    let length = u32(offset)
    guard length <= payloadBytesMax, length <= bytes.count - offset - 16 else { return nil }
    let end = offset + 16 + length
    return CRC32C.checksum(Array(bytes[(offset + 8)..<end])) == UInt32(u32(offset + 4)) ? end : nil
}

/// A log of up to 8 good records (sequences from 1) whose payloads come from `input`, then
/// damaged as the rest of `input` says.
private func buildAndDamage(_ input: [UInt8]) -> [UInt8] {
    var cursor = 0
    func next() -> UInt8 {
        defer { cursor += 1 }
        return cursor < input.count ? input[cursor] : 0
    }
    var log: [UInt8] = []
    let count = Int(next() % 8) + 1
    for index in 0..<count {
        let payload = (0..<Int(next() % 48)).map { _ in next() }
        var header = [UInt8](repeating: 0, count: 16)
        for byte in 0..<4 { header[byte] = UInt8(truncatingIfNeeded: payload.count >> (8 * byte)) }
        for byte in 0..<8 { header[8 + byte] = UInt8(truncatingIfNeeded: UInt64(index + 1) >> (8 * byte)) }
        let crc = CRC32C.checksum(Array(header[8..<16]) + payload)
        for byte in 0..<4 { header[4 + byte] = UInt8(truncatingIfNeeded: crc >> (8 * byte)) }
        log += header + payload
    }
    // Damage: (kind, position, value) triples until the input runs out.
    while cursor + 3 <= input.count, !log.isEmpty {
        let kind = next() % 4, position = Int(next()) * log.count / 256, value = next()
        switch kind {
        case 0: log[position] ^= value == 0 ? 1 : value
        case 1: log.removeSubrange(position...)
        case 2: for at in position..<min(log.count, position + Int(value % 32)) { log[at] = 0 }
        default: log.insert(contentsOf: [UInt8](repeating: value, count: Int(value % 8) + 1), at: position)
        }
    }
    return log
}
