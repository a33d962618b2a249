import TidemarkIO
import Foundation
import TidemarkStorage
import TidemarkTestSupport

/// The one `.wal` file in `directory`.
func onlyLogFile(_ directory: String) throws -> String {
    let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".wal") }
    guard names.count == 1 else { throw TestClientError(description: "\(directory) holds \(names)") }
    return directory + "/" + names[0]
}

/// Flips one byte inside the payload of record `index` (0-based) of the log file at `path`;
/// returns the byte offset where that record starts.
@discardableResult
func damageRecord(_ index: Int, of path: String) throws -> Int {
    var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    let scan = LogScan.scan(bytes, firstSequence: nil, payloadBytesMax: FileWAL.payloadBytesMax)
    guard scan.ending == .clean, scan.records.count > index else { throw TestClientError(description: "\(path): \(scan.ending), \(scan.records.count) records") }
    let payload = scan.records[index].payload
    bytes[payload.lowerBound + payload.count / 2] ^= 0x10
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    return payload.lowerBound - LogScan.recordHeaderBytes
}
