import Foundation
import Logging
import Testing
import TidemarkCore
import TidemarkTestSupport
@testable import TidemarkIO
@testable import TidemarkStorage

/// A log of `count` records of 40 bytes each (record i holds byte i), closed; returns its one file.
private func writeLog(_ directory: String, count: Int) throws -> String {
    let wal = try FileWAL(directory: directory, policy: .always)
    _ = try wal.replay { _, _ in }
    _ = try wal.append((0..<count).map { [UInt8](repeating: UInt8($0), count: 40) })
    wal.close()
    return directory + "/" + (try #require(try FileManager.default.contentsOfDirectory(atPath: directory).first { $0.hasSuffix(".wal") }))
}

private let recordBytes = LogScan.recordHeaderBytes + 40

private func flip(_ path: String, at offset: Int) throws {
    var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    bytes[offset] ^= 0x40
    try bytes.write(to: URL(fileURLWithPath: path))
}

private func size(_ path: String) throws -> Int { try Data(contentsOf: URL(fileURLWithPath: path)).count }

@Suite struct LogDamageTests {
    /// Issue 27 item 11: a flipped byte in record 1 of 5 was taken for a torn tail and the file cut to 0.
    @Test func aFlippedByteInTheFirstOfFiveRecordsIsDamageAndNothingIsCut() throws {
        let directory = try temporaryDirectory("wal-damage")
        let path = try writeLog(directory, count: 5)
        try flip(path, at: LogScan.recordHeaderBytes + 3)
        let wal = try FileWAL(directory: directory, policy: .always)
        let error = try #require(throws: LogDamageError.self) { try wal.replay { _, _ in } }
        #expect(error.path == path && error.offset == 0 && error.followingOffset == recordBytes)
        #expect(error.description.contains(path) && error.description.contains("byte 0") && error.description.contains("--repair"))
        #expect(try size(path) == 5 * recordBytes, "records that pass their checksums were cut")
    }

    /// A flipped length byte moves where the next record seems to start: the probe looks at every offset.
    @Test func aFlippedLengthByteIsDamageToo() throws {
        let directory = try temporaryDirectory("wal-damage")
        let path = try writeLog(directory, count: 5)
        try flip(path, at: 2 * recordBytes)  // record 3's length
        let error = try #require(throws: LogDamageError.self) { try FileWAL(directory: directory, policy: .always).replay { _, _ in } }
        #expect(error.offset == 2 * recordBytes && error.followingOffset == 3 * recordBytes)
    }

    /// A record that passes its checksum is never cut, even with a sequence out of place.
    @Test func aGoodRecordWithTheWrongSequenceIsDamage() throws {
        var bytes: [UInt8] = []
        for sequence: UInt64 in [1, 2, 7] {
            var writer = ByteWriter()
            writer.write(littleEndian: UInt32(3))
            writer.write(littleEndian: UInt32(0))
            writer.write(littleEndian: sequence)
            writer.write(bytes: [1, 2, 3])
            let crc = writer.bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[8...])) }
            writer.patch(littleEndian: crc, at: 4)
            bytes += writer.bytes
        }
        let scan = LogScan.scan(bytes, firstSequence: 1, payloadBytesMax: 1 << 20)
        #expect(scan.records.map(\.sequence) == [1, 2])
        guard case .damaged(_, let following) = scan.ending else { Issue.record("\(scan.ending)"); return }
        #expect(scan.validBytes == 2 * 19 && following == 2 * 19)
    }

    /// Damage in the last record looks exactly like a torn tail (nothing good follows): cut, and said so.
    @Test func aDamagedLastRecordIsATornTailAndTheReportNamesFileAndOffset() throws {
        let directory = try temporaryDirectory("wal-damage")
        let path = try writeLog(directory, count: 5)
        try flip(path, at: 4 * recordBytes + 30)
        var sequences: [UInt64] = []
        let report = try FileWAL(directory: directory, policy: .always).replay { sequence, _ in sequences.append(sequence) }
        #expect(sequences == [1, 2, 3, 4])
        #expect(report.cutPath == path && report.cutOffset == 4 * recordBytes && report.bytesCut == recordBytes)
        #expect(try size(path) == 4 * recordBytes)
    }

    /// After a power loss a file system may keep a file's new length but not its data: the
    /// unsynced tail reads as zeros. However long, it is a torn tail, not damage (a probe that
    /// paid a CRC at every zero offset ran out of budget past about 256 KiB and refused start).
    @Test func aLongZeroFilledTailIsATornTail() throws {
        let directory = try temporaryDirectory("wal-damage")
        let path = try writeLog(directory, count: 5)
        let handle = try #require(FileHandle(forWritingAtPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(count: 4 << 20))
        handle.closeFile()
        var sequences: [UInt64] = []
        let report = try FileWAL(directory: directory, policy: .always).replay { sequence, _ in sequences.append(sequence) }
        #expect(sequences == [1, 2, 3, 4, 5])
        #expect(report.bytesCut == 4 << 20 && report.cutOffset == 5 * recordBytes)
    }

    /// Stale blocks in an unsynced tail: garbage whose would-be records carry no sequence the
    /// log could have written there costs no CRC and is a torn tail; a good record hidden in
    /// the garbage with a sequence that could follow is still found, and refuses.
    @Test func aGarbageTailIsATornTailUnlessARecordThatCouldFollowHidesInIt() throws {
        var random = Seeded(state: 27)
        let good = try Data(contentsOf: URL(fileURLWithPath: try writeLog(try temporaryDirectory("wal-damage"), count: 3)))
        let garbage = (0..<(2 << 20)).map { _ in UInt8.random(in: 0...255, using: &random) }
        let scan = LogScan.scan([UInt8](good) + garbage, firstSequence: 1, payloadBytesMax: FileWAL.payloadBytesMax)
        #expect(scan.records.count == 3)
        guard case .tornTail = scan.ending else { Issue.record("garbage tail judged \(scan.ending)"); return }
        // Record 5 of a five-record log, hidden 1 MiB into the garbage after record 3.
        let five = [UInt8](try Data(contentsOf: URL(fileURLWithPath: try writeLog(try temporaryDirectory("wal-damage"), count: 5))))
        let hidden = [UInt8](good) + garbage.prefix(1 << 20) + five[(4 * recordBytes)...] + garbage.suffix(1 << 20)
        let damaged = LogScan.scan(hidden, firstSequence: 1, payloadBytesMax: FileWAL.payloadBytesMax)
        guard case .damaged(_, let following) = damaged.ending else { Issue.record("hidden record missed: \(damaged.ending)"); return }
        #expect(following == 3 * recordBytes + (1 << 20))
    }

    /// Hostile lengths: at every 16th offset a 2 MiB record with a sequence that could follow
    /// seems to start and fit. Without a bound the probe would check about 256 GiB of CRC;
    /// with it, it gives up (refusing, not cutting).
    @Test func theProbeIsBoundedAgainstLengthsBuiltToMakeItQuadratic() throws {
        let pattern: [UInt8] = [0x00, 0x00, 0x20, 0x00, 0xAA, 0xAA, 0xAA, 0xAA, 0x02, 0, 0, 0, 0, 0, 0, 0]
        var bytes = [UInt8](repeating: 0xff, count: LogScan.recordHeaderBytes)  // a bad first record
        for _ in 0..<(1 << 18) { bytes += pattern }
        let started = Date()
        let scan = LogScan.scan(bytes, firstSequence: 1, payloadBytesMax: FileWAL.payloadBytesMax)
        #expect(scan.validBytes == 0)
        #expect(scan.ending == .damaged(reason: "record length 4294967295 is past the limit \(FileWAL.payloadBytesMax); could not rule out good records after it within the probe's budget",
                                        followingOffset: nil))
        #expect(Date().timeIntervalSince(started) < 30)
    }

    /// `--repair`: the damaged file is copied aside byte for byte, then cut where the damage
    /// starts; the records before it replay, and new ones follow them.
    @Test func repairCopiesTheFileAsideCutsItAndKeepsTheRecordsBefore() throws {
        let directory = try temporaryDirectory("wal-repair")
        let aside = try temporaryDirectory("wal-aside")
        let path = try writeLog(directory, count: 5)
        try flip(path, at: 2 * recordBytes + 20)
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        let actions = try FileWAL.repair(directory: directory, asideDirectory: aside)
        let name = URL(fileURLWithPath: path).lastPathComponent
        #expect(actions == [LogRepairAction(path: path, copy: aside + "/" + name, cutAt: 2 * recordBytes,
                                            reason: "damaged at byte \(2 * recordBytes): record fails its CRC")])
        #expect(try Data(contentsOf: URL(fileURLWithPath: aside + "/" + name)) == original)
        let wal = try FileWAL(directory: directory, policy: .always)
        var sequences: [UInt64] = []
        let report = try wal.replay { sequence, _ in sequences.append(sequence) }
        #expect(sequences == [1, 2] && report.bytesCut == 0)
        #expect(try wal.append([[9]]) == 3)
        wal.close()
        // A sound log is left alone.
        #expect(try FileWAL.repair(directory: directory, asideDirectory: aside).isEmpty)
    }

    /// Damage in an older file: later files no longer follow on, so they go aside whole.
    @Test func repairMovesFilesAfterTheDamageAside() throws {
        let directory = try temporaryDirectory("wal-repair")
        let aside = try temporaryDirectory("wal-aside")
        let wal = try FileWAL(directory: directory, policy: .always)
        _ = try wal.replay { _, _ in }
        _ = try wal.append([[1], [2], [3]])
        try wal.rotate()
        _ = try wal.append([[4], [5]])
        wal.close()
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".wal") }.sorted()
        try flip(directory + "/" + names[0], at: LogScan.recordHeaderBytes)  // record 1's payload
        #expect(throws: LogDamageError.self) { try FileWAL(directory: directory, policy: .always).replay { _, _ in } }
        let actions = try FileWAL.repair(directory: directory, asideDirectory: aside)
        #expect(actions.map(\.cutAt) == [0, nil])
        #expect(try FileManager.default.contentsOfDirectory(atPath: aside).sorted() == names)
        let reopened = try FileWAL(directory: directory, policy: .always)
        var sequences: [UInt64] = []
        _ = try reopened.replay { sequence, _ in sequences.append(sequence) }
        #expect(sequences.isEmpty)
        #expect(try reopened.append([[6]]) == 1)
    }

    /// Issue 27 item 12: one flipped byte in the schema log cut it to 0 and every series vanished.
    @Test func aDamagedSchemaLogRefusesToOpenTheRegion() throws {
        let directory = try temporaryDirectory("engine")
        let engine = try StorageEngine(directory: directory)
        try engine.createDatabase("root.plant")
        for index in 0..<4 { try engine.createSeries(SeriesSchema(path: "root.plant.d\(index).s", dataType: .double)) }
        engine.close()
        let schemaDirectory = directory + "/schema"
        let file = try #require(try FileManager.default.contentsOfDirectory(atPath: schemaDirectory).first { $0.hasSuffix(".wal") })
        let before = try size(schemaDirectory + "/" + file)
        try flip(schemaDirectory + "/" + file, at: LogScan.recordHeaderBytes + 2)
        let error = try #require(throws: LogDamageError.self) { try StorageEngine(directory: directory) }
        #expect(error.path == schemaDirectory + "/" + file && error.offset == 0)
        #expect(try size(schemaDirectory + "/" + file) == before)
    }

    /// STYLE.md: a schema-log append that fails must fail the statement. It was `try?`: a write
    /// creating a series was logged and acknowledged without the series in the schema log, so
    /// after a restart its points were dropped on replay. Now the write is refused, and so is
    /// every later one until the schema log takes the record.
    @Test func aWriteWhoseNewSeriesCannotBeLoggedIsRefused() throws {
        let directory = try temporaryDirectory("engine")
        let engine = try StorageEngine(directory: directory)
        try engine.write([PointWrite(path: "root.sg.d.a", timestamp: 1, value: .int64(1))])
        engine.schemaLog.close()  // every later append fails, as on a full disk
        #expect(throws: StorageIOError.self) { try engine.write([PointWrite(path: "root.sg.d.b", timestamp: 1, value: .int64(2))]) }
        #expect(throws: StorageIOError.self) { try engine.write([PointWrite(path: "root.sg.d.a", timestamp: 2, value: .int64(3))]) }
        #expect(engine.unloggedSchema.count == 1)
        engine.close()
        let reopened = try StorageEngine(directory: directory)
        #expect(reopened.series("root.sg.d.b") == nil)
        #expect(try reopened.scan(path: "root.sg.d.a", range: Int64.min...Int64.max).all().timestamps == [1])
        reopened.close()
    }

    /// Issue 27 item 14: after ENOSPC the WAL refused every write until a restart. Now the partial
    /// record is cut back, the episode is counted once, and writes go on once space is free.
    @Test(.enabled(if: Tmpfs.available)) func aFullDiskRefusesWritesOnlyUntilSpaceIsFree() throws {
        let disk = try Tmpfs(label: "wal", sizeBytes: 1 << 20)
        defer { disk.unmount() }
        let health = StorageHealth(logger: Logger(label: "test"), directory: disk.path)
        let wal = try FileWAL(directory: disk.path + "/wal", policy: .batch, health: health)
        _ = try wal.replay { _, _ in }
        let filler = try disk.fill(leaveBytes: 64 << 10)
        let record = [UInt8](repeating: 7, count: 3000)
        var acknowledged: UInt64 = 0
        var refusals = 0
        for _ in 0..<100 {
            do {
                acknowledged = try wal.append([record])
                try wal.waitDurable(acknowledged)
            } catch let error as StorageIOError {
                #expect(error.code == ENOSPC)
                refusals += 1
            }
        }
        #expect(acknowledged > 0 && refusals > 0)
        #expect(health.reading.diskFull && health.reading.diskFullEpisodes == 1 && health.reading.failedWrites == refusals)
        #expect(try wal.totalBytes() == Int(acknowledged) * (record.count + LogScan.recordHeaderBytes), "a partial record was left")
        try FileManager.default.removeItem(atPath: filler)
        let after = try wal.append([record])
        try wal.waitDurable(after)
        #expect(after == acknowledged + 1)
        #expect(!health.reading.diskFull && health.reading.diskFullEpisodes == 1)
        wal.close()
        var sequences: [UInt64] = []
        let report = try FileWAL(directory: disk.path + "/wal", policy: .batch).replay { sequence, _ in sequences.append(sequence) }
        #expect(sequences == Array(1...after) && report.bytesCut == 0)
    }

    @Test(.enabled(if: Tmpfs.available)) func refreshEndsAnEpisodeOnceSpaceIsFreeWithoutAWrite() throws {
        let disk = try Tmpfs(label: "health", sizeBytes: 16 << 20)
        defer { disk.unmount() }
        let health = StorageHealth(logger: Logger(label: "test"), directory: disk.path)
        health.writeFailed(StorageIOError(operation: "write", path: "x", code: ENOSPC), recoverable: true)
        let filler = try disk.fill(leaveBytes: 4096)
        health.refresh()
        #expect(health.reading.diskFull)
        try FileManager.default.removeItem(atPath: filler)
        health.refresh()
        #expect(!health.reading.diskFull && health.reading.diskFullEpisodes == 1)
    }
}
