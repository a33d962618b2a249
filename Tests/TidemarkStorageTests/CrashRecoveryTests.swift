import Foundation
import Testing
import TidemarkCore
import TidemarkTestSupport
@testable import TidemarkStorage

/// Runs `tidemark-storage crash-writer` and SIGKILLs it at a random acknowledged batch.
/// Returns the highest batch it acknowledged.
private func runAndKill(directory: String, start: Int, killAfterAcks: Int) throws -> Int {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: try builtProduct("tidemark-storage"))
    process.arguments = ["crash-writer", "--dir", directory, "--start", String(start)]
    let output = Pipe()
    process.standardOutput = output
    process.standardError = FileHandle.nullDevice
    try process.run()
    var buffer = Data()
    var lastAck = start - 1
    var acks = 0
    let handle = output.fileHandleForReading
    let deadline = Date().addingTimeInterval(60)
    // Read acknowledgements until the chosen one, then kill at once: the writer is mid-write.
    while acks < killAfterAcks && Date() < deadline {
        let chunk = handle.availableData
        if chunk.isEmpty { break }
        buffer.append(chunk)
        while let newline = buffer.firstIndex(of: 10) {
            let line = String(decoding: buffer[buffer.startIndex..<newline], as: UTF8.self)
            buffer.removeSubrange(buffer.startIndex...newline)
            if line.hasPrefix("ack "), let number = Int(line.dropFirst(4)) {
                lastAck = number
                acks += 1
            }
        }
    }
    kill(process.processIdentifier, SIGKILL)
    process.waitUntilExit()
    // Acks already in the pipe were printed after their batch was durable: count them too.
    buffer.append(handle.readDataToEndOfFile())
    for line in String(decoding: buffer, as: UTF8.self).split(separator: "\n") where line.hasPrefix("ack ") {
        if let number = Int(line.dropFirst(4)) { lastAck = max(lastAck, number) }
    }
    return lastAck
}

@Suite struct CrashRecoveryTests {
    @Test func everyAcknowledgedPointSurvivesSIGKILLAtRandomMoments() throws {
        let directory = try temporaryDirectory("crash")
        var generator = Seeded(state: UInt64(ProcessInfo.processInfo.environment["TIDEMARK_CRASH_SEED"] ?? "") ?? 99)
        var acknowledged = -1
        let rounds = 20
        for round in 0..<rounds {
            let killAfter = Int.random(in: 1...120, using: &generator)
            acknowledged = max(acknowledged, try runAndKill(directory: directory, start: acknowledged + 1, killAfterAcks: killAfter))
            // Reopen as a restarted node would, and check every acknowledged batch.
            var options = EngineOptions()
            options.partitionInterval = 500
            let engine = try StorageEngine(directory: directory, options: options)
            var stored: [String: [Int64: Double]] = [:]
            for series in 0..<CrashWorkload.series {
                let path = "root.crash.d\(series).s"
                guard engine.series(path) != nil else { continue }
                let (timestamps, values) = try engine.scan(path: path, range: Int64.min...Int64.max).all()
                guard case .double(let doubles) = values else { Issue.record("wrong type"); continue }
                stored[path] = Dictionary(uniqueKeysWithValues: zip(timestamps, doubles))
            }
            var missing = 0
            for batch in 0...max(acknowledged, 0) where acknowledged >= 0 {
                for point in CrashWorkload.batch(batch) {
                    guard case .double(let value) = point.value, stored[point.path]?[point.timestamp] == value else {
                        missing += 1
                        continue
                    }
                }
            }
            #expect(missing == 0, "round \(round): \(missing) acknowledged points missing after SIGKILL (acknowledged through batch \(acknowledged))")
            engine.close()
        }
        #expect(acknowledged > rounds)  // the writer made real progress
    }
}
