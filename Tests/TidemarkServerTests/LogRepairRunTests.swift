import TidemarkIO
import Foundation
import Logging
import Testing
import TidemarkCluster
import TidemarkCore
import TidemarkServer
import TidemarkStorage
import TidemarkTestSupport

private let series = "root.sg.d.s"

private func openRegion(_ dataDir: String) throws -> LocalRegion {
    try LocalRegion(dataDir: dataDir, options: EngineOptions(), logger: Logger(label: "test"))
}

private func points(_ timestamps: Range<Int64>) -> [PointWrite] {
    timestamps.map { PointWrite(path: series, timestamp: $0, value: .int64($0)) }
}

private func storedTimestamps(_ region: LocalRegion) throws -> [Int64] {
    try region.engine.scan(path: series, range: Int64.min...Int64.max).all().timestamps
}

private func walFiles(_ directory: String) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".wal") }.sorted()
}

/// A log of `count` small records in `directory` (the repair judges logs by their records alone).
private func writeLog(_ directory: String, count: Int) throws -> String {
    let wal = try FileWAL(directory: directory, policy: .always)
    _ = try wal.replay { _, _ in }
    _ = try wal.append((0..<count).map { [UInt8](repeating: UInt8($0), count: 40) })
    wal.close()
    return directory + "/" + (try walFiles(directory)[0])
}

@Suite(.serialized) struct LogRepairRunTests {
    /// Review of `--repair`, MEDIUM: after a cut the log numbered new entries from the cut
    /// point again, and the engine took an entry at or below an index its segments hold for a
    /// replay: new acknowledged points were dropped, live and after a restart. Here the cut
    /// records were flushed to a segment but still in the log (a crash between the segment
    /// becoming durable and the log letting them go).
    @Test func afterARepairNewWritesNeverReuseAnIndexASegmentHolds() throws {
        let dataDir = try temporaryDirectory("data")
        let logDirectory = dataDir + "/consensus/data-0/log"
        let kept = try temporaryDirectory("kept-log")
        do {
            let region = try openRegion(dataDir)
            for batch in Int64(0)..<5 { try region.write(points((batch * 100)..<(batch * 100 + 100))) }  // entries 1…5
            for name in try walFiles(logDirectory) {
                try FileManager.default.copyItem(atPath: logDirectory + "/" + name, toPath: kept + "/" + name)
            }
            try region.engine.flush()  // a segment holds entries 1…5; the log lets them go
            #expect(region.engine.flushedIndexMax == 5)
            region.close()
        }
        // The crash: the log still holds what the segment does.
        for name in try walFiles(logDirectory) { try FileManager.default.removeItem(atPath: logDirectory + "/" + name) }
        for name in try walFiles(kept) { try FileManager.default.copyItem(atPath: kept + "/" + name, toPath: logDirectory + "/" + name) }
        let log = logDirectory + "/" + (try #require(try walFiles(logDirectory).first))
        try damageRecord(2, of: log)  // entry 3: the log is cut to entries 1 and 2
        #expect(throws: LogDamageError.self) { try openRegion(dataDir).close() }
        let actions = try LogRepairRun.run(dataDir: dataDir)
        #expect(actions.count == 1 && actions.first?.cutAt != nil, "\(actions)")

        do {
            let region = try openRegion(dataDir)
            #expect(try storedTimestamps(region) == Array(0..<500))
            try region.write(points(1000..<1100))  // took index 3 before the fix
            #expect(try storedTimestamps(region) == Array(0..<500) + Array(1000..<1100), "a new write was dropped as a replay")
            region.close()
        }
        do {
            let region = try openRegion(dataDir)
            #expect(try storedTimestamps(region) == Array(0..<500) + Array(1000..<1100), "lost after a restart")
            try region.write(points(2000..<2010))
            region.close()
        }
        let region = try openRegion(dataDir)
        defer { region.close() }
        #expect(try storedTimestamps(region) == Array(0..<500) + Array(1000..<1100) + Array(2000..<2010))
    }

    /// A region whose log directory was removed whole goes on after the entries its segments
    /// hold: one empty file named for the next index, not a filler for every index since 1.
    @Test func aMissingLogStartsAfterWhatTheSegmentsHold() throws {
        let dataDir = try temporaryDirectory("data")
        let logDirectory = dataDir + "/consensus/data-0/log"
        do {
            let region = try openRegion(dataDir)
            for batch in Int64(0)..<5 { try region.write(points((batch * 100)..<(batch * 100 + 100))) }  // entries 1…5
            try region.engine.flush()
            region.close()
        }
        try FileManager.default.removeItem(atPath: logDirectory)
        do {
            let region = try openRegion(dataDir)
            #expect(try walFiles(logDirectory) == [String(format: "%020llu.wal", 6)])
            #expect(try FileManager.default.attributesOfItem(atPath: logDirectory + "/" + walFiles(logDirectory)[0])[.size] as? Int == 0)
            try region.write(points(1000..<1010))
            region.close()
        }
        let region = try openRegion(dataDir)
        defer { region.close() }
        #expect(try storedTimestamps(region) == Array(0..<500) + Array(1000..<1010))
    }

    /// Review of `--repair`, LOW: it cut a Raft log like any other (terms, votes, entries other
    /// replicas count on). Now a damaged replicated group's log makes the repair refuse, before
    /// it cuts or copies anything, a standalone log damaged at the same time included.
    @Test func aDamagedReplicatedLogIsNeverCutAndNothingElseIsEither() throws {
        for replicated in ["raft", "multileader/data-0/log"] {
            let dataDir = try temporaryDirectory("data")
            let raftLog = try writeLog(dataDir + "/" + replicated, count: 5)
            let usersLog = try writeLog(dataDir + "/users", count: 5)
            try damageRecord(2, of: raftLog)
            try damageRecord(2, of: usersLog)
            let before = try [raftLog, usersLog].map { try Data(contentsOf: URL(fileURLWithPath: $0)) }
            let error = try #require(throws: LogRepairRefused.self) { try LogRepairRun.run(dataDir: dataDir) }
            #expect(error.paths == [raftLog])
            #expect(error.description.contains("Nothing was cut") && error.description.contains("add it back"))
            #expect(try [raftLog, usersLog].map { try Data(contentsOf: URL(fileURLWithPath: $0)) } == before)
            #expect(!FileManager.default.fileExists(atPath: dataDir + "/quarantine"))
        }
    }

    /// The same at process level: `tidemarkd --repair` exits 3 and says why.
    @Test func tidemarkdRepairRefusesADamagedRaftLog() throws {
        let dataDir = try temporaryDirectory("data")
        let raftLog = try writeLog(dataDir + "/raft", count: 5)
        try damageRecord(1, of: raftLog)
        let repaired = try runProcess(try builtProduct("tidemarkd"), ["--http-listen", "127.0.0.1:0", "--data-dir", dataDir, "--repair"])
        #expect(repaired.status == 3)
        #expect(repaired.stderr.contains("refusing to repair") && repaired.stderr.contains(raftLog), "stderr: \(repaired.stderr)")
        #expect(try walFiles(dataDir + "/raft").count == 1 && !FileManager.default.fileExists(atPath: dataDir + "/quarantine"))
    }
}
