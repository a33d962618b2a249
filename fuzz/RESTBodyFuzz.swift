import TidemarkCore

// libFuzzer target: REST v2 insert bodies never crash the decoder; every body is points or
// a RESTBodyError. The first byte picks insertTablet or insertRecords.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    guard let body = try? RESTBody.object(bytes) else { return 0 }
    let points = data[0] & 1 == 0 ? try? RESTBody.tabletPoints(body) : try? RESTBody.recordPoints(body)
    // A tablet yields at most one point per (timestamp, measurement) cell.
    if data[0] & 1 == 0, let points, let times = body["timestamps"] as? [Any], let names = body["measurements"] as? [Any] {
        precondition(points.count <= times.count * names.count, "more points than cells")
    }
    return 0
}
