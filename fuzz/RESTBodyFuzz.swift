import TidemarkCore

// libFuzzer target: REST v2 insert bodies never crash the decoder; every body is points or
// a RESTBodyError. The first byte picks insertTablet or insertRecords.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    guard let body = try? RESTBody.object(bytes) else { return 0 }
    let rows = data[0] & 1 == 0 ? try? RESTBody.tabletRows(body) : try? RESTBody.recordRows(body)
    // A tablet yields at most one row per timestamp and one value per (timestamp, measurement) cell.
    if data[0] & 1 == 0, let rows, let times = body["timestamps"] as? [Any], let names = body["measurements"] as? [Any] {
        precondition(rows.count <= times.count && rows.allSatisfy { $0.values.count <= names.count }, "more values than cells")
    }
    return 0
}
