// libFuzzer target: line protocol parsing never crashes; every line is a point or an error.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let parsed = LineProtocol.parse(bytes)
    let lines = bytes.split(separator: 10, omittingEmptySubsequences: false).count
    precondition(parsed.points.count + parsed.errors.count <= lines, "more results than lines")
    return 0
}
