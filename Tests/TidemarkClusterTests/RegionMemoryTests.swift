import Testing
import TidemarkCore
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
