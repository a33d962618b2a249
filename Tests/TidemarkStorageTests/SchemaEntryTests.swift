import Foundation
import Synchronization
import Testing
import TidemarkCore
import TidemarkTestSupport
@testable import TidemarkIO
@testable import TidemarkStorage

/// Schema statements and deletes as entries of a region's log: every replica applies them
/// at the same position, refusals reach the proposer, and a replay after a restart (or past
/// an installed image) changes nothing the schema log holds.
@Suite struct SchemaEntryTests {
    /// A group of replicas in one process: a change proposed at `replicas[0]` is applied on
    /// each in turn at the next index, as a committed entry would be.
    private final class Group: Sendable {
        /// The entries so far, in index order (index = position + 1).
        final class EntryLog: Sendable { let entries = Mutex<[[UInt8]]>([]) }
        let replicas: [StorageEngine]
        let log = EntryLog()

        init(_ directories: [String]) throws {
            replicas = try directories.map { try StorageEngine(directory: $0, log: .consensus) }
            let replicas = replicas, log = log
            replicas[0].routeChanges { record, outcome in
                let index = log.entries.withLock { $0.append(record); return UInt64($0.count) }
                var refusals: [String] = []
                for (position, replica) in replicas.enumerated() {
                    do { try replica.apply(index: index, record: record, outcome: position == 0 ? outcome : nil) } catch {
                        refusals.append("\(error)")
                    }
                }
                // Every replica decides the same.
                precondition(refusals.isEmpty || refusals.count == replicas.count, "replicas parted: \(refusals)")
                if let first = refusals.first { throw EngineError.io(first) }
            }
        }

        /// Writes points as the next entry on every replica.
        func write(_ points: [PointWrite]) throws {
            let prepared = try #require(try replicas[0].prepareWrite(points))
            let index = log.entries.withLock { $0.append(prepared.record); return UInt64($0.count) }
            for replica in replicas { try replica.apply(index: index, record: prepared.record) }
        }
    }

    private func describe(_ engine: StorageEngine) throws -> [String] {
        engine.series(matching: try PathPattern(parsing: "root.**")).map { "\($0.path) \($0.dataType) \($0.encoding) \($0.compression)" }
    }

    @Test func aStatementAppliesAlikeOnEveryReplicaAndItsRefusalReachesTheProposer() throws {
        let group = try Group([try temporaryDirectory("schema-a"), try temporaryDirectory("schema-b")])
        let (leader, follower) = (group.replicas[0], group.replicas[1])
        try leader.createDatabase("root.ct")
        try leader.createSeries(SeriesSchema(path: "root.ct.d1.s1", dataType: .int32, encoding: "RLE", compression: "LZ4"))
        #expect(try describe(follower) == ["root.ct.d1.s1 INT32 RLE LZ4"])
        #expect(try describe(leader) == (try describe(follower)))
        // The entry's apply decides, with the engine's own error for the proposer.
        do {
            try leader.createDatabase("root.ct")
            Issue.record("a database made twice")
        } catch EngineError.schema(let error) {
            #expect(error.kind == .databaseExists)
        }
        do {
            try leader.dropDatabase("root.nothing")
            Issue.record("a database that is not there was dropped")
        } catch EngineError.schema(let error) {
            #expect(error.kind == .noSuchDatabase)
        }
        // A write names a series the schema types: every replica refuses a mistyped one alike.
        try group.write([PointWrite(path: "root.ct.d1.s1", timestamp: 1, value: .int32(5))])
        #expect(throws: EngineError.self) { try group.write([PointWrite(path: "root.ct.d1.s1", timestamp: 2, value: .text("x"))]) }
        try leader.deleteSeries(matching: try PathPattern(parsing: "root.ct.d1.s1"))
        #expect(try describe(follower).isEmpty && leader.databases() == ["root.ct"] && follower.databases() == ["root.ct"])
    }

    @Test func aReplayAfterARestartLeavesADroppedDatabaseDroppedAndTheLastTypeStanding() throws {
        let directory = try temporaryDirectory("schema-replay")
        var log: [[UInt8]] = []
        do {
            let group = try Group([directory])
            let engine = group.replicas[0]
            try group.write([PointWrite(path: "root.gone.d.v", timestamp: 1, value: .int64(1))])  // creates root.gone on apply
            try engine.dropDatabase("root.gone")
            try engine.createDatabase("root.sg")
            try engine.createSeries(SeriesSchema(path: "root.sg.d.s", dataType: .int32))
            try engine.deleteSeries(matching: try PathPattern(parsing: "root.sg.d.s"))
            try engine.createSeries(SeriesSchema(path: "root.sg.d.s", dataType: .text))
            try group.write([PointWrite(path: "root.sg.d.s", timestamp: 3, value: .text("kept"))])
            log = group.log.entries.withLock { $0 }
            engine.close()
        }
        // The restarted region replays the whole log (nothing was flushed): the write at 1
        // must not bring root.gone back, the INT32 series must not come back before its TEXT one.
        let engine = try StorageEngine(directory: directory, log: .consensus)
        for (offset, record) in log.enumerated() { try engine.apply(index: UInt64(offset + 1), record: record) }
        #expect(engine.databases() == ["root.sg"])
        #expect(try describe(engine) == ["root.sg.d.s TEXT DICTIONARY ZSTD"])
        let (timestamps, _) = try engine.scan(path: "root.sg.d.s", range: Int64.min...Int64.max).all()
        #expect(timestamps == [3])
        #expect(engine.persistedIndexMax >= UInt64(log.count - 1), "the schema log holds the last schema change's index")
        // A new entry after the replay still applies.
        try engine.apply(index: UInt64(log.count + 1), record: EngineRecord.schema(.createDatabase("root.new")).encoded())
        #expect(engine.databases() == ["root.new", "root.sg"])
    }

    @Test func anInstalledImageCoversTheSchemaChangesThroughItsIndex() throws {
        let group = try Group([try temporaryDirectory("schema-image-source")])
        let source = group.replicas[0]
        try source.createDatabase("root.a")                          // 1
        try source.createSeries(SeriesSchema(path: "root.a.d.s", dataType: .double, encoding: "PLAIN"))  // 2
        try source.dropDatabase("root.a")                            // 3
        try source.createDatabase("root.b")                          // 4
        let image = try source.exportImage(coveringThrough: 4)
        let log = group.log.entries.withLock { $0 }
        let directory = try temporaryDirectory("schema-image-target")
        do {
            let target = try StorageEngine(directory: directory, log: .consensus)
            try target.installImage(image, coveringAtLeast: 4)
            target.close()
        }
        // Restarted, the target's log replays entries the image covers: none changes its schema.
        let target = try StorageEngine(directory: directory, log: .consensus)
        for (offset, record) in log.enumerated() { try target.apply(index: UInt64(offset + 1), record: record) }
        #expect(target.databases() == ["root.b"])
        #expect(try describe(target).isEmpty)
    }

    @Test func aWriteWhoseSeriesCannotAllBeMadeIsRefusedWholeBeforeAndWhenApplied() throws {
        let group = try Group([try temporaryDirectory("schema-whole-a"), try temporaryDirectory("schema-whole-b")])
        let leader = group.replicas[0]
        // One write names a series and a path below it: refused before anything is logged.
        #expect(throws: EngineError.self) {
            try leader.prepareWrite([PointWrite(path: "root.x.d.s", timestamp: 1, value: .int64(1)),
                                     PointWrite(path: "root.x.d.s.v", timestamp: 1, value: .int64(2))])
        }
        // Two writes checked before either applies: the second needs a device where the first
        // makes a series. Its entry is refused whole on every replica; nothing of it lands.
        let first = try #require(try leader.prepareWrite([PointWrite(path: "root.x.d.s", timestamp: 1, value: .int64(1))]))
        let second = try #require(try leader.prepareWrite([PointWrite(path: "root.x.d.s.v", timestamp: 2, value: .int64(2)),
                                                          PointWrite(path: "root.x.e.w", timestamp: 2, value: .int64(3))]))
        for replica in group.replicas {
            try replica.apply(index: 1, record: first.record)
            #expect(throws: EngineError.self) { try replica.apply(index: 2, record: second.record) }
            #expect(try describe(replica) == ["root.x.d.s INT64 TS_2DIFF ZSTD"])
        }
    }

    @Test func aSchemaEntryDecodesOnlyWhole() throws {
        let record = EngineRecord.schema(.createSeries(SeriesSchema(path: "root.a.d.s", dataType: .int64))).encoded()
        guard case .schema(.createSeries(let series)) = try EngineRecord.decode(record) else { Issue.record("not a series"); return }
        #expect(series.path == "root.a.d.s")
        #expect(throws: CorruptDataError.self) { try EngineRecord.decode(record + [0]) }
        #expect(throws: CorruptDataError.self) { try EngineRecord.decode(Array(record.dropLast())) }
        // A schema-log marker is not a statement a log entry may carry.
        #expect(throws: CorruptDataError.self) { try EngineRecord.decode([3] + SchemaRecord.appliedThrough(7).encoded()) }
    }
}
