// libFuzzer target: the HTTP/1.1 request decoder must never crash, whatever the bytes and
// however they are split into reads.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let split = bytes.first.map { Int($0) % max(bytes.count, 1) } ?? 0
    let decoder = HTTPRequestDecoder(headerBytesMax: 4096, bodyBytesMax: 65536)
    for part in [Array(bytes[..<split]), Array(bytes[split...])] where !decoder.isFinished {
        var offset = 0
        while offset < part.count && !decoder.isFinished {
            let step = part.withUnsafeBytes { decoder.feed(UnsafeRawBufferPointer(rebasing: $0[offset...])) }
            if step.consumed == 0 { break }
            offset += step.consumed
        }
    }
    return 0
}
