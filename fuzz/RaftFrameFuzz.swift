import TidemarkIO

// libFuzzer target: the internal RPC frame decoder never crashes. The first input byte picks
// a mode: even, the rest is decoded as it is (header checks); odd, the magic, version and
// CRC of the rest are made valid first, so the fuzzer reaches the payload parser. The
// authentication check is skipped (any tag passes). A frame that decodes encodes again and
// decodes to the same frame.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    var bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    if data[0] & 1 == 1 && bytes.count >= FrameCodec.headerBytes {
        bytes.replaceSubrange(0..<5, with: Array("TMRF".utf8) + [FrameCodec.version])
        let payload = bytes[22..<26].reversed().reduce(0) { $0 << 8 | Int($1) }
        let crcAt = FrameCodec.headerBytes + payload + 16  // after the seal (session, sequence)
        if crcAt + 4 <= bytes.count {
            let crc = CRC32C.checksum(Array(bytes[0..<crcAt]))
            bytes.replaceSubrange(crcAt..<(crcAt + 4), with: withUnsafeBytes(of: crc.littleEndian, Array.init))
        }
    }
    guard let (frame, seal, used) = try? FrameCodec.decodeSealed(bytes[...], frameBytesMax: 1 << 20, verify: { _, _ in true }) else { return 0 }
    precondition(used <= bytes.count, "used more bytes than given")
    let again = FrameCodec.encode(frame, seal: seal, sign: { _ in Array(bytes[(used - FrameCodec.tagBytes)..<used]) })
    let (decoded, sealAgain, _) = try! FrameCodec.decodeSealed(again[...], frameBytesMax: 1 << 21, verify: { _, _ in true })!
    precondition(decoded == frame && sealAgain == seal, "a decoded frame encodes to a different frame")
    return 0
}
