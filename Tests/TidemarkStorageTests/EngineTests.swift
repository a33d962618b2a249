import Foundation
import Synchronization
import Testing
import TidemarkCore
import TidemarkTestSupport
@testable import TidemarkIO
@testable import TidemarkStorage

private func engine(_ directory: String, _ configure: (inout EngineOptions) -> Void = { _ in }) throws -> StorageEngine {
    var options = EngineOptions()
    options.partitionInterval = 1000
    options.compactionTriggerSegments = 1000  // tests compact explicitly unless they say otherwise
    configure(&options)
    return try StorageEngine(directory: directory, options: options)
}

/// `engine(_:_:)` under a name a test's local `engine` does not hide.
private func openEngine(_ directory: String, _ configure: (inout EngineOptions) -> Void) throws -> StorageEngine {
    try engine(directory, configure)
}

private func points(_ path: String, _ pairs: [(Int64, Double)]) -> [PointWrite] {
    pairs.map { PointWrite(path: path, timestamp: $0.0, value: .double($0.1)) }
}

private func read(_ engine: StorageEngine, _ path: String, _ range: ClosedRange<Int64> = Int64.min...Int64.max) throws -> [(Int64, Double)] {
    let (timestamps, values) = try engine.scan(path: path, range: range).all()
    guard case .double(let doubles) = values else { return [] }
    return Array(zip(timestamps, doubles))
}

private func same(_ a: [(Int64, Double)], _ b: [(Int64, Double)]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1.bitPattern == $1.1.bitPattern }
}

@Suite struct EngineTests {
    @Test func outOfOrderAndDuplicateWritesKeepTheNewestPerTimestamp() throws {
        let engine = try engine(try temporaryDirectory("engine"))
        try engine.write(points("root.sg.d.s", [(30, 3), (10, 1), (20, 2), (10, 1.5)]))
        try engine.write(points("root.sg.d.s", [(20, 2.5), (5, 0.5)]))
        let expected: [(Int64, Double)] = [(5, 0.5), (10, 1.5), (20, 2.5), (30, 3)]
        #expect(same(try read(engine, "root.sg.d.s"), expected))
        try engine.flush()
        #expect(same(try read(engine, "root.sg.d.s"), expected))
        try engine.write(points("root.sg.d.s", [(10, 9), (40, 4)]))  // overrides a flushed point
        #expect(same(try read(engine, "root.sg.d.s"), [(5, 0.5), (10, 9), (20, 2.5), (30, 3), (40, 4)]))
        #expect(same(try read(engine, "root.sg.d.s", 10...30), [(10, 9), (20, 2.5), (30, 3)]))
    }

    @Test func everythingSurvivesARestartFromWALAndSegments() throws {
        let directory = try temporaryDirectory("engine")
        do {
            let engine = try engine(directory)
            try engine.write(points("root.sg.d.a", (0..<3000).map { (Int64($0), Double($0) / 4) }))
            try engine.flush()
            try engine.write(points("root.sg.d.a", [(5000, 1), (2, 99)]))
            try engine.write([PointWrite(path: "root.sg.d.t", timestamp: 1, value: .text("hello"))])
            engine.close()
        }
        let reopened = try engine(directory)
        var expected = (0..<3000).map { (Int64($0), Double($0) / 4) }
        expected[2] = (2, 99)
        expected.append((5000, 1))
        #expect(same(try read(reopened, "root.sg.d.a"), expected))
        #expect(reopened.series("root.sg.d.t")?.dataType == .text)
        #expect(try reopened.scan(path: "root.sg.d.t", range: 0...10).all().values == .text(["hello"]))
        #expect(reopened.databases() == ["root.sg"])
    }

    @Test func aRefusedWriteAppliesNothing() throws {
        let engine = try engine(try temporaryDirectory("engine"))
        try engine.write([PointWrite(path: "root.sg.d.i", timestamp: 1, value: .int64(1))])
        #expect(throws: EngineError.self) {
            try engine.write([PointWrite(path: "root.sg.d.new", timestamp: 1, value: .double(1)),
                              PointWrite(path: "root.sg.d.i", timestamp: 2, value: .double(2))])
        }
        #expect(engine.series("root.sg.d.new") == nil)
        #expect(try engine.scan(path: "root.sg.d.i", range: Int64.min...Int64.max).all().timestamps == [1])
        #expect(throws: EngineError.self) { try engine.write([PointWrite(path: "root.sg.d.*", timestamp: 1, value: .int64(1))]) }
        #expect(throws: EngineError.self) { try engine.write([PointWrite(path: "nope.sg.d", timestamp: 1, value: .int64(1))]) }
    }

    @Test func deletesHideOlderPointsOnlyAndSurviveFlushCompactionAndRestart() throws {
        let directory = try temporaryDirectory("engine")
        var engine = try engine(directory)
        try engine.write(points("root.sg.d1.s", (0..<100).map { (Int64($0), Double($0)) }))
        try engine.write(points("root.sg.d2.s", (0..<100).map { (Int64($0), Double($0)) }))
        try engine.flush()
        try engine.write(points("root.sg.d1.s", [(150, 150)]))
        try engine.delete(matching: try PathPattern(parsing: "root.sg.*.s"), range: 10...150)
        try engine.write(points("root.sg.d1.s", [(20, 20.5)]))  // written after the delete: stays
        let expectedD1 = (0..<10).map { (Int64($0), Double($0)) } + [(20, 20.5)]
        let expectedD2 = (0..<10).map { (Int64($0), Double($0)) }
        #expect(same(try read(engine, "root.sg.d1.s"), expectedD1))
        #expect(same(try read(engine, "root.sg.d2.s"), expectedD2))
        engine.close()
        engine = try self.engineReopen(directory)
        #expect(same(try read(engine, "root.sg.d1.s"), expectedD1))
        try engine.flush()
        try engine.write(points("root.sg.d2.s", [(500, 5)]))
        try engine.flush()
        #expect(try engine.compact(partition: 0))
        #expect(same(try read(engine, "root.sg.d1.s"), expectedD1))
        #expect(same(try read(engine, "root.sg.d2.s"), expectedD2 + [(500, 5)]))
        #expect(engine.stats.tombstones == 0)  // compaction dropped it once nothing older remained
        engine.close()
        engine = try self.engineReopen(directory)
        #expect(same(try read(engine, "root.sg.d2.s"), expectedD2 + [(500, 5)]))
    }

    private func engineReopen(_ directory: String) throws -> StorageEngine { try engine(directory) }

    /// The compaction after a flush merges only the newest run of segments of one level once
    /// it has `compaction_trigger_segments` of them: a big older segment is not rewritten for
    /// every few small ones (that rewrite took most of the flush stage's CPU under load), and
    /// the newest write of a timestamp still wins.
    @Test func automaticCompactionMergesTheNewestRunOfOneLevel() throws {
        let engine = try engine(try temporaryDirectory("engine")) { $0.compactionTriggerSegments = 3 }
        defer { engine.close() }
        var expected: [Int64: Double] = [:]
        func flushOne(_ round: Int) throws {
            // Every round overwrites timestamp 0 and adds its own.
            try engine.write(points("root.sg.d.s", [(0, Double(round)), (Int64(round + 1), Double(round))]))
            expected[0] = Double(round)
            expected[Int64(round + 1)] = Double(round)
            try engine.flush()
        }
        for round in 0..<3 { try flushOne(round) }
        #expect(engine.stats.segments == 1, "three level-0 segments became one level-1")
        for round in 3..<5 { try flushOne(round) }
        #expect(engine.stats.segments == 3, "two new level-0 segments wait for a third; the level-1 one is left alone")
        try flushOne(5)
        #expect(engine.stats.segments == 2, "the three newest level-0 segments merged; two level-1 segments remain")
        #expect(same(try read(engine, "root.sg.d.s"), expected.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }))
        for round in 6..<9 { try flushOne(round) }
        #expect(engine.stats.segments == 1, "three level-1 segments became one level-2")
        #expect(same(try read(engine, "root.sg.d.s"), expected.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }))
    }

    /// A region idle for `compaction_idle_ms` with nothing in memory merges each partition's
    /// segments into one; not before, and not while a memtable holds points.
    @Test func anIdleRegionMergesEachPartitionIntoOneSegment() throws {
        let engine = try engine(try temporaryDirectory("engine")) { $0.compactionIdleMs = 1000 }
        defer { engine.close() }
        var expected: [(Int64, Double)] = []
        for round in 0..<3 {
            try engine.write(points("root.sg.d.s", [(Int64(round), Double(round))]))
            expected.append((Int64(round), Double(round)))
            try engine.flush()
        }
        #expect(engine.stats.segments == 3)
        let lastWrite = engine.lastWriteNs.load(ordering: .relaxed)
        #expect(try !engine.compactIfIdle(clock: { lastWrite + 500_000_000 }), "not idle long enough")
        try engine.write(points("root.sg.d.s", [(9, 9)]))
        let later = engine.lastWriteNs.load(ordering: .relaxed)
        #expect(try !engine.compactIfIdle(clock: { later + 5_000_000_000 }), "a memtable holds points")
        try engine.flush()
        expected.append((9, 9))
        #expect(try engine.compactIfIdle(clock: { later + 1_000_000_000 }))
        #expect(engine.stats.segments == 1)
        #expect(same(try read(engine, "root.sg.d.s"), expected))
        #expect(try !engine.compactIfIdle(clock: { later + 9_000_000_000 }), "nothing left to merge")

        // Segments that do not fit `compaction_input_bytes_max` together stay as they are.
        let capped = try openEngine(try temporaryDirectory("engine")) { $0.compactionIdleMs = 1000; $0.compactionInputBytesMax = 1 }
        defer { capped.close() }
        for round in 0..<2 {
            try capped.write(points("root.sg.d.s", [(Int64(round), 1)]))
            try capped.flush()
        }
        let cappedWrite = capped.lastWriteNs.load(ordering: .relaxed)
        #expect(try !capped.compactIfIdle(clock: { cappedWrite + 2_000_000_000 }) && capped.stats.segments == 2)
    }

    @Test func compactionGivesTheSameAnswersWithFewerFiles() throws {
        let directory = try temporaryDirectory("engine")
        let engine = try engine(directory)
        var generator = Seeded(state: 21)
        var model: [String: [Int64: Double]] = [:]
        for round in 0..<6 {
            var batch: [PointWrite] = []
            for _ in 0..<400 {
                let path = "root.sg.d\(Int.random(in: 0..<3, using: &generator)).s"
                let timestamp = Int64.random(in: 0..<900, using: &generator)
                let value = Double(Int.random(in: -1000...1000, using: &generator)) / 10
                batch.append(PointWrite(path: path, timestamp: timestamp, value: .double(value)))
                model[path, default: [:]][timestamp] = value
            }
            try engine.write(batch)
            if round == 3 { try engine.delete(matching: try PathPattern(parsing: "root.sg.d1.s"), range: 100...200) ; for t in 100...200 { model["root.sg.d1.s"]?[Int64(t)] = nil } }
            try engine.flush()
        }
        let before = try ["root.sg.d0.s", "root.sg.d1.s", "root.sg.d2.s"].map { try read(engine, $0) }
        #expect(engine.stats.segments == 6)
        #expect(try engine.compact(partition: 0))
        #expect(engine.stats.segments == 1)
        let after = try ["root.sg.d0.s", "root.sg.d1.s", "root.sg.d2.s"].map { try read(engine, $0) }
        for (b, a) in zip(before, after) { #expect(same(b, a)) }
        for (index, path) in ["root.sg.d0.s", "root.sg.d1.s", "root.sg.d2.s"].enumerated() {
            let expected = (model[path] ?? [:]).sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
            #expect(same(after[index], expected))
        }
        engine.close()
        #expect(same(try read(try self.engineReopen(directory), "root.sg.d2.s"), after[2]))
    }

    @Test func anInterruptedCompactionLeavesOnlyTheNewSegmentCounted() throws {
        let directory = try temporaryDirectory("engine")
        let engine = try engine(directory)
        for round in 0..<3 {
            try engine.write(points("root.sg.d.s", (0..<50).map { (Int64($0 * 3 + round), Double(round)) }))
            try engine.flush()
        }
        let expected = try read(engine, "root.sg.d.s")
        let inputs = try FileIO.list(directory + "/segments")
        let saved = try inputs.map { try Data(contentsOf: URL(fileURLWithPath: directory + "/segments/" + $0)) }
        #expect(try engine.compact(partition: 0))
        engine.close()
        let output = try FileIO.list(directory + "/segments")
        #expect(output.count == 1 && !inputs.contains(output[0]))
        // Put the inputs back, as if the process died between the output's rename and the deletes.
        for (name, bytes) in zip(inputs, saved) { try bytes.write(to: URL(fileURLWithPath: directory + "/segments/" + name)) }
        let reopened = try self.engineReopen(directory)
        #expect(try FileIO.list(directory + "/segments") == output)
        #expect(reopened.stats.segments == 1)
        #expect(same(try read(reopened, "root.sg.d.s"), expected))
    }

    @Test func aggregatesFromStatisticsEqualAggregatesFromRawPoints() throws {
        let engine = try engine(try temporaryDirectory("engine")) { $0.partitionInterval = 1 << 40 }
        var generator = Seeded(state: 31)
        for round in 0..<4 {
            let base = Int64(round) * 100_000
            try engine.write((0..<3_000).map { index in
                PointWrite(path: "root.sg.d.v", timestamp: base + Int64(index), value: .double(Double(Int.random(in: -500...500, using: &generator)) / 100))
            })
            try engine.flush()
        }
        try engine.write(points("root.sg.d.v", [(50, 1234), (200_500, -7)]))  // memtable points inside two chunks
        try engine.delete(matching: try PathPattern(parsing: "root.sg.d.v"), range: 300_100...300_110)
        for range: ClosedRange<Int64> in [Int64.min...Int64.max, 0...2_999, 1_000...250_000, 100_000...399_999, 5...5] {
            let fast = try engine.aggregate(path: "root.sg.d.v", range: range)
            let (timestamps, values) = try engine.scan(path: "root.sg.d.v", range: range).all()
            var slow = Aggregates()
            slow.fold(timestamps: timestamps, values: values)
            #expect(fast.count == slow.count)
            #expect(fast.minValue == slow.minValue && fast.maxValue == slow.maxValue)
            #expect(fast.firstValue == slow.firstValue && fast.lastValue == slow.lastValue)
            #expect(fast.minTime == slow.minTime && fast.maxTime == slow.maxTime)
            if let a = fast.sum, let b = slow.sum { #expect(abs(a - b) <= 1e-9 * max(1, abs(b))) } else { #expect(fast.sum == slow.sum) }
            if range == Int64.min...Int64.max { #expect(fast.chunksFromStatistics == 1) }  // of 4: two overlap memtable points, one a delete
            if range == 0...2_999 { #expect(fast.chunksFromStatistics == 0) }
        }
    }

    @Test func aCorruptSegmentIsQuarantinedAndTheRestKeepsServing() throws {
        let directory = try temporaryDirectory("engine")
        var engine = try engine(directory)
        try engine.write(points("root.sg.a.s", [(1, 1), (2, 2)]))
        try engine.write(points("root.sg.b.s", [(1_500, 3)]))  // another partition, another file
        try engine.flush()
        engine.close()
        let names = try FileIO.list(directory + "/segments")
        #expect(names.count == 2)
        let victim = directory + "/segments/" + names[0]
        var bytes = try Data(contentsOf: URL(fileURLWithPath: victim))
        bytes[20] ^= 0xFF  // inside the first chunk
        try bytes.write(to: URL(fileURLWithPath: victim))
        engine = try self.engineReopen(directory)
        #expect(throws: EngineError.self) { try read(engine, "root.sg.a.s") }
        #expect(engine.stats.quarantinedSegments == 1)
        #expect(try FileIO.list(directory + "/quarantine") == [names[0]])
        #expect(try read(engine, "root.sg.a.s").isEmpty)  // no longer read at all
        #expect(same(try read(engine, "root.sg.b.s"), [(1_500, 3)]))
        // A footer that fails its CRC is caught when the region opens.
        engine.close()
        let other = directory + "/segments/" + names[1]
        var otherBytes = try Data(contentsOf: URL(fileURLWithPath: other))
        otherBytes[otherBytes.count - 30] ^= 0x01
        try otherBytes.write(to: URL(fileURLWithPath: other))
        engine = try self.engineReopen(directory)
        #expect(engine.stats.quarantinedSegments == 1)
        #expect(try FileIO.list(directory + "/quarantine").count == 2)
    }

    @Test func droppingADatabaseRemovesItsSeriesPointsAndFiles() throws {
        let directory = try temporaryDirectory("engine")
        var engine = try engine(directory)
        try engine.write(points("root.gone.d.s", [(1, 1), (2, 2)]))
        try engine.flush()
        try engine.write(points("root.kept.d.s", [(1, 5)]))
        try engine.write(points("root.gone.d.s", [(3, 3)]))
        try engine.flush()
        #expect(engine.stats.segments == 2)
        try engine.dropDatabase("root.gone")
        #expect(engine.databases() == ["root.kept"])
        #expect(engine.stats.segments == 1)  // the file holding only root.gone is deleted; the mixed one stays
        #expect(throws: EngineError.self) { try read(engine, "root.gone.d.s") }
        engine.close()
        engine = try self.engineReopen(directory)
        #expect(engine.databases() == ["root.kept"])
        try engine.write(points("root.gone.d.s", [(9, 9)]))  // a new database of the same name starts empty
        #expect(same(try read(engine, "root.gone.d.s"), [(9, 9)]))
        #expect(same(try read(engine, "root.kept.d.s"), [(1, 5)]))
    }

    @Test func schemaPatternsLimitsAndPersistence() throws {
        let directory = try temporaryDirectory("engine")
        var engine = try engine(directory) { $0.schemaLimits.pathDepthMax = 5; $0.schemaLimits.seriesPerDatabaseMax = 4 }
        try engine.createDatabase("root.plant")
        try engine.createSeries(SeriesSchema(path: "root.plant.l1.p1.temp", dataType: .float, encoding: "GORILLA", compression: "ZSTD"))
        try engine.createSeries(SeriesSchema(path: "root.plant.l1.p2.temp", dataType: .double))
        try engine.createSeries(SeriesSchema(path: "root.plant.l2.p1.on", dataType: .boolean))
        #expect(throws: EngineError.self) { try engine.createSeries(SeriesSchema(path: "root.plant.l1.p1.temp", dataType: .float)) }
        #expect(throws: EngineError.self) { try engine.createSeries(SeriesSchema(path: "root.plant.a.b.c.d", dataType: .float)) }
        #expect(throws: EngineError.self) { try engine.createSeries(SeriesSchema(path: "root.other.x", dataType: .float)) }
        #expect(throws: EngineError.self) { try engine.createSeries(SeriesSchema(path: "root.plant.x.y", dataType: .float, encoding: "MAGIC")) }
        try engine.createSeries(SeriesSchema(path: "root.plant.l3.x", dataType: .int32))
        #expect(throws: EngineError.self) { try engine.createSeries(SeriesSchema(path: "root.plant.l3.y", dataType: .int32)) }  // 5th series
        #expect(engine.series(matching: try PathPattern(parsing: "root.plant.*.*.temp")).map(\.path) == ["root.plant.l1.p1.temp", "root.plant.l1.p2.temp"])
        #expect(engine.series(matching: try PathPattern(parsing: "root.**")).count == 4)
        #expect(engine.series(matching: try PathPattern(parsing: "root.plant.*")).map(\.path) == [])
        #expect(engine.series(matching: try PathPattern(parsing: "root.plant.**.on")).map(\.path) == ["root.plant.l2.p1.on"])
        #expect(engine.devices(matching: try PathPattern(parsing: "root.plant.**")) == ["root.plant.l1.p1", "root.plant.l1.p2", "root.plant.l2.p1", "root.plant.l3"])
        try engine.deleteSeries(matching: try PathPattern(parsing: "root.plant.l1.**"))
        engine.close()
        engine = try self.engineReopen(directory)
        #expect(engine.series(matching: try PathPattern(parsing: "root.**")).map(\.path) == ["root.plant.l2.p1.on", "root.plant.l3.x"])
        #expect(engine.series("root.plant.l3.x")?.dataType == .int32)
    }

    @Test func writesAreRefusedWhileTooManySealedMemtablesWaitForTheFlush() throws {
        let engine = try engine(try temporaryDirectory("engine")) { options in
            options.memtableBytesMax = 1  // every write seals its memtable
            options.sealedMemtablesMax = 2
        }
        let flushesAsked = Mutex(0)
        engine.scheduleFlushes { _ in flushesAsked.withLock { $0 += 1 } }  // a flush stage that is behind
        try engine.write(points("root.sg.d.s", [(1, 1)]))
        try engine.write(points("root.sg.d.s", [(2, 2)]))
        #expect(engine.stats.sealedMemtables == 2)
        do {
            try engine.write(points("root.sg.d.s", [(3, 3)]))
            Issue.record("a write went in while the flush was behind")
        } catch EngineError.flushBehind(let sealed) {
            #expect(sealed == 2)
        }
        #expect(engine.stats.sealedMemtables == 2)
        #expect(flushesAsked.withLock { $0 } == 2)
        // Nothing of the refused write went in; once the flush catches up, writes go on.
        #expect(same(try read(engine, "root.sg.d.s"), [(1, 1), (2, 2)]))
        try engine.flushSealed()
        try engine.write(points("root.sg.d.s", [(3, 3)]))
        #expect(same(try read(engine, "root.sg.d.s"), [(1, 1), (2, 2), (3, 3)]))
    }
    @Test func aReplicatedRegionCreatesSeriesWhenTheEntryIsAppliedOnEveryReplicaAlike() throws {
        let leader = try StorageEngine(directory: try temporaryDirectory("engine"), log: .consensus)
        let follower = try StorageEngine(directory: try temporaryDirectory("engine"), log: .consensus)
        // Two writes race to create root.sg.d.p, with different types; both are prepared
        // (checked) before either is applied, as on a leader with several in flight.
        let first = try #require(try leader.prepareWrite(points("root.sg.d.p", [(1, 1)]) + points("root.sg.d.q", [(1, 2)])))
        let second = try #require(try leader.prepareWrite([PointWrite(path: "root.sg.d.p", timestamp: 2, value: .int64(7)),
                                                          PointWrite(path: "root.sg.d.r", timestamp: 2, value: .int64(8))]))
        // Preparing created nothing: an entry that never commits leaves no series behind.
        #expect(leader.series("root.sg.d.p") == nil && leader.series("root.sg.d.q") == nil)
        try leader.apply(index: 1, record: first.record, prepared: first)
        try follower.apply(index: 1, record: first.record)
        for replica in [leader, follower] {
            #expect(replica.series("root.sg.d.p")?.dataType == .double && replica.series("root.sg.d.q")?.dataType == .double)
            // The second entry no longer fits: refused whole, the same on both replicas.
            do {
                try replica.apply(index: 2, record: second.record, prepared: replica === leader ? second : nil)
                Issue.record("an entry that no longer fits its series was applied")
            } catch EngineError.typeMismatch(let path, let expected, let got) {
                #expect(path == "root.sg.d.p" && expected == .double && got == .int64)
            }
            #expect(replica.series("root.sg.d.r") == nil)
            #expect(same(try read(replica, "root.sg.d.p"), [(1, 1)]))
        }
    }

    @Test func aReplicaDecodingRecordsOfOneShapeStillFindsEachPointsSeries() throws {
        let replica = try StorageEngine(directory: try temporaryDirectory("engine"), log: .consensus)
        let lastIndex = Mutex<UInt64>(0)
        let nextIndex: @Sendable () -> UInt64 = { lastIndex.withLock { index in index += 1; return index } }
        func apply(_ points: [PointWrite]) throws {
            try replica.apply(index: nextIndex(), record: EngineRecord.encodeWrite(try ColumnBatch(points: points)))
        }
        replica.routeChanges { record, outcome in try replica.apply(index: nextIndex(), record: record, outcome: outcome) }
        // Records of one shape: from the second on, each path matches the one at its place.
        try apply(points("root.sg.d.a", [(1, 1)]) + points("root.sg.d.b", [(1, 10)]))
        try apply(points("root.sg.d.a", [(2, 2)]) + points("root.sg.d.b", [(2, 20)]))
        #expect(same(try read(replica, "root.sg.d.a"), [(1, 1), (2, 2)]))
        #expect(same(try read(replica, "root.sg.d.b"), [(1, 10), (2, 20)]))
        // A series deleted and made again with another type: the number the last record
        // gave its path is dead, so the path is looked up, and the point goes to the new series.
        try replica.deleteSeries(matching: try PathPattern(parsing: "root.sg.d.a"))
        try apply([PointWrite(path: "root.sg.d.a", timestamp: 3, value: .int64(30))] + points("root.sg.d.b", [(3, 30)]))
        #expect(replica.series("root.sg.d.a")?.dataType == .int64)
        let (timestamps, values) = try replica.scan(path: "root.sg.d.a", range: Int64.min...Int64.max).all()
        #expect(timestamps == [3] && values == .int64([30]))
        // Another shape (a series first, the others moved): every path is looked up by name.
        try apply(points("root.sg.d.c", [(4, 400)]) + points("root.sg.d.b", [(4, 40)]) + points("root.sg.d.z", [(4, 4)]))
        try apply(points("root.sg.d.b", [(5, 50)]) + points("root.sg.d.c", [(5, 500)]))
        #expect(same(try read(replica, "root.sg.d.b"), [(1, 10), (2, 20), (3, 30), (4, 40), (5, 50)]))
        #expect(same(try read(replica, "root.sg.d.c"), [(4, 400), (5, 500)]))
        #expect(same(try read(replica, "root.sg.d.z"), [(4, 4)]))
    }
}
