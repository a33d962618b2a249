import Foundation
import Testing
import TidemarkTestSupport
@testable import TidemarkIO
@testable import TidemarkStorage

private func replayAll(_ wal: FileWAL) throws -> ([(UInt64, [UInt8])], WALReplayReport) {
    var records: [(UInt64, [UInt8])] = []
    let report = try wal.replay { records.append(($0, $1)) }
    return (records, report)
}

@Suite struct WALTests {
    @Test func appendedRecordsReplayInOrderAcrossRotations() throws {
        let directory = try temporaryDirectory("wal")
        let wal = try FileWAL(directory: directory, policy: .batch)
        _ = try replayAll(wal)
        var expected: [[UInt8]] = []
        for round in 0..<5 {
            let batch = (0..<10).map { Array("r\(round)-\($0)".utf8) }
            let last = try wal.append(batch)
            expected += batch
            #expect(last == UInt64(expected.count))
            if round % 2 == 1 { try wal.rotate() }
        }
        wal.close()
        let reopened = try FileWAL(directory: directory, policy: .always)
        let (records, report) = try replayAll(reopened)
        #expect(records.map(\.1) == expected)
        #expect(records.map(\.0) == Array(1...UInt64(expected.count)))
        #expect(report == WALReplayReport(records: 50, lastSequence: 50, bytesCut: 0))
        #expect(try reopened.append([[1]]) == 51)
    }

    /// A rotation whose directory sync failed (a full disk on some file systems) left an
    /// empty file named for a sequence the old file then went on to hold; the next start took
    /// it for a gap in the log and refused. It held nothing: replay drops it.
    @Test func anEmptyLastFileFromAFailedRotationIsDropped() throws {
        let directory = try temporaryDirectory("wal")
        let wal = try FileWAL(directory: directory, policy: .always)
        _ = try replayAll(wal)
        _ = try wal.append((1...5).map { [UInt8($0)] })
        wal.close()
        let stale = directory + "/" + String(format: "%020llu.wal", 3)
        #expect(FileManager.default.createFile(atPath: stale, contents: nil))
        #expect(try FileWAL.repairPlan(directory: directory) == nil, "--repair takes it for damage, replay does not")
        let reopened = try FileWAL(directory: directory, policy: .always)
        let (records, _) = try replayAll(reopened)
        #expect(records.map(\.0) == [1, 2, 3, 4, 5])
        #expect(!FileManager.default.fileExists(atPath: stale))
        #expect(try reopened.append([[6]]) == 6)
        reopened.close()
    }

    @Test func sequencesNeverRestartAfterEveryRecordWasTruncated() throws {
        // Found by the crash test: a flush that releases the whole log leaves one empty file;
        // a restart that numbered from 1 again made the engine skip new writes as flushed.
        let directory = try temporaryDirectory("wal")
        let wal = try FileWAL(directory: directory, policy: .batch)
        _ = try replayAll(wal)
        _ = try wal.append([[1], [2], [3]])
        try wal.rotate()
        try wal.truncate(through: 3)
        wal.close()
        let reopened = try FileWAL(directory: directory, policy: .batch)
        let (records, report) = try replayAll(reopened)
        #expect(records.isEmpty && report.lastSequence == 0)
        #expect(try reopened.append([[4]]) == 4)
        reopened.close()
        let again = try FileWAL(directory: directory, policy: .batch)
        #expect(try replayAll(again).0.map(\.0) == [4])
        #expect(try again.append([[5]]) == 5)
    }

    @Test func truncateDropsOnlyFilesWhollyCovered() throws {
        let directory = try temporaryDirectory("wal")
        let wal = try FileWAL(directory: directory, policy: .batch)
        _ = try replayAll(wal)
        _ = try wal.append([[1], [2]])  // 1, 2
        try wal.rotate()
        _ = try wal.append([[3], [4]])  // 3, 4
        try wal.rotate()
        _ = try wal.append([[5]])
        try wal.truncate(through: 3)  // the first file (1…2) goes; 3…4 still holds 4
        wal.close()
        let (records, _) = try replayAll(try FileWAL(directory: directory, policy: .batch))
        #expect(records.map(\.0) == [3, 4, 5])
    }

    @Test func aTornTailIsCutAtEveryPossibleLength() throws {
        let directory = try temporaryDirectory("wal")
        let wal = try FileWAL(directory: directory, policy: .always)
        _ = try replayAll(wal)
        _ = try wal.append((0..<3).map { [UInt8](repeating: UInt8($0), count: 40) })
        wal.close()
        let file = try #require(try FileManager.default.contentsOfDirectory(atPath: directory).first { $0.hasSuffix(".wal") })
        let path = directory + "/" + file
        let whole = try Data(contentsOf: URL(fileURLWithPath: path))
        let recordBytes = whole.count / 3
        for length in stride(from: 0, through: whole.count, by: 7) {
            try whole.prefix(length).write(to: URL(fileURLWithPath: path))
            let (records, report) = try replayAll(try FileWAL(directory: directory, policy: .always))
            #expect(records.count == length / recordBytes)
            #expect(report.bytesCut == length - records.count * recordBytes)
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)).count == records.count * recordBytes)
        }
        // Garbage after good records is cut too (nothing after it passes a checksum)…
        var garbage = whole
        garbage.append(contentsOf: [0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13])
        try garbage.write(to: URL(fileURLWithPath: path))
        let (records, report) = try replayAll(try FileWAL(directory: directory, policy: .always))
        #expect(records.count == 3)
        #expect(report.bytesCut == garbage.count - whole.count)
        // …but a flipped byte inside a record with a good record after it is damage: nothing is cut.
        var damaged = whole
        damaged[recordBytes + 20] ^= 0x40
        try damaged.write(to: URL(fileURLWithPath: path))
        #expect(throws: LogDamageError(path: path, offset: recordBytes, reason: "record fails its CRC", followingOffset: 2 * recordBytes)) {
            try replayAll(try FileWAL(directory: directory, policy: .always))
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == damaged)
    }

    @Test func concurrentAppendsGetDistinctSequencesAndAllSurvive() throws {
        let directory = try temporaryDirectory("wal")
        let wal = try FileWAL(directory: directory, policy: .batch)
        _ = try replayAll(wal)
        DispatchQueue.concurrentPerform(iterations: 4) { thread in
            for index in 0..<100 { _ = try? wal.append([Array("\(thread)-\(index)".utf8)]) }
        }
        wal.close()
        let (records, _) = try replayAll(try FileWAL(directory: directory, policy: .batch))
        #expect(records.count == 400)
        #expect(Set(records.map { String(decoding: $0.1, as: UTF8.self) }).count == 400)
    }

    @Test func intervalSyncAcknowledgesWithoutBlockingTheWriter() throws {
        let directory = try temporaryDirectory("wal")
        let wal = try FileWAL(directory: directory, policy: .intervalMs(20))
        _ = try replayAll(wal)
        let done = DispatchSemaphore(value: 0)
        let sequence = try wal.append([[1, 2, 3]])
        wal.whenDurable(sequence) { error in
            #expect(error == nil)
            done.signal()
        }
        #expect(done.wait(timeout: .now() + 10) == .success)
        // Already durable: the callback runs at once.
        wal.whenDurable(sequence) { _ in done.signal() }
        #expect(done.wait(timeout: .now()) == .success)
        wal.close()
    }
}
