import Testing
import Logging
import TidemarkConsensus
import TidemarkCore
import TidemarkIO
import TidemarkStorage
import TidemarkTestSupport
@testable import TidemarkCluster

/// A node's regions share its memtable bound (`storage.memtable_bytes_max`).
@Suite struct RegionMemoryTests {
    @Test func theBoundIsSharedAmongTheRegionsWithAFloor() {
        let budget = 64 << 20
        #expect(RegionSet.memtableShare(of: budget, among: 0) == budget)
        #expect(RegionSet.memtableShare(of: budget, among: 1) == budget, "one region keeps the whole bound: the single node's numbers hold")
        #expect(RegionSet.memtableShare(of: budget, among: 4) == 16 << 20)
        #expect(RegionSet.memtableShare(of: budget, among: 1000) == 4 << 20, "never below 4 MiB")
        #expect(RegionSet.memtableShare(of: 1 << 20, among: 3) == 1 << 20, "a bound under the floor is kept whole")
    }

    @Test func anEngineSealsAtTheShareItIsGiven() throws {
        let engine = try StorageEngine(directory: try temporaryDirectory("share"))
        defer { engine.close() }
        _ = try engine.write((0..<2000).map { PointWrite(path: "root.a.d.v", timestamp: Int64($0), value: .int64(Int64($0))) })
        #expect(engine.stats.segments == 0, "far below the default bound")
        engine.setMemtableBytesMax(1024)
        _ = try engine.write([PointWrite(path: "root.a.d.v", timestamp: 5000, value: .int64(1))])
        #expect(engine.stats.segments == 1 && engine.stats.memtableBytes == 0, "sealed and flushed past the new bound: \(engine.stats)")
    }
}

/// Regions on the node's shared log let it go once their entries are safe elsewhere.
@Suite struct SharedLogReleaseTests {
    @Test func aRegionWhoseEntriesLeftNothingInMemoryReleasesThemWhenIdle() throws {
        let dataDir = try temporaryDirectory("release")
        let consensus = StandaloneConsensus(directory: dataDir + "/consensus", syncPolicy: .batch)
        defer { consensus.close() }
        func open(_ number: UInt32, _ database: String) throws -> LocalRegion {
            try LocalRegion(group: GroupID(kind: .data, number: number), directory: dataDir + "/regions/data-\(number)", database: database,
                            options: EngineOptions(), logger: Logger(label: "test"), consensus: consensus, peers: [], hints: .standalone,
                            health: nil, sharedLog: true)
        }
        let schemaOnly = try open(2, "root.a"), written = try open(3, "root.b")
        try consensus.replaySharedLog()
        func logFiles() throws -> Int { try FileIO.list(dataDir + "/consensus/shared/log").filter { $0.hasSuffix(".wal") }.count }
        try schemaOnly.engine.createDatabase("root.a")  // an entry that leaves no point in memory
        try written.write([PointWrite(path: "root.b.d.v", timestamp: 1, value: .int64(1))])
        try written.engine.flush()  // a new file; the written region's entries are in segments
        // The schema-only region let its entry go once applied (nothing of it in memory), so the
        // first file goes with the other region's release; held, it would keep every file after it.
        #expect(try logFiles() == 1)
    }
}
