import Testing
import TidemarkCore
import TidemarkStorage
import TidemarkTestSupport
@testable import TidemarkQuery

/// Statements over several regions of one node (`RegionUnion`): a series whose time
/// partitions went to different region groups reads as one.
@Suite struct RegionUnionTests {
    private func engines(_ databases: [String?]) throws -> [StorageEngine] {
        try databases.map { try StorageEngine(directory: try temporaryDirectory("union"), database: $0) }
    }

    private func points(_ path: String, _ range: Range<Int64>, value: Int64 = 0) -> [PointWrite] {
        range.map { PointWrite(path: path, timestamp: $0, value: .int64($0 + value)) }
    }

    @Test func aSeriesSplitOverRegionsScansInTimeOrderAndAggregatesOnce() throws {
        let regions = try engines(["root.p", "root.p"])
        defer { for region in regions { region.close() } }
        // Two time partitions of one series in two regions, written out of order.
        _ = try regions[1].write(points("root.p.d.v", 100..<200))
        _ = try regions[0].write(points("root.p.d.v", 0..<100))
        try regions[0].flush()
        let union = RegionUnion(scanBatchPoints: 7) { regions }
        let scanned = try union.scan(path: "root.p.d.v", range: 50...149).all()
        #expect(scanned.timestamps == Array(50...149))
        #expect(scanned.values == .int64(Array(50...149)))
        let folded = try union.aggregate(path: "root.p.d.v", range: 0...199)
        #expect(folded.count == 200 && folded.sum == Double((0..<200).reduce(0, +)))
        #expect(folded.firstValue == .int64(0) && folded.lastValue == .int64(199) && folded.minTime == 0 && folded.maxTime == 199)
        #expect(union.series(matching: try PathPattern(parsing: "root.**")).map(\.path) == ["root.p.d.v"], "listed once")
        #expect(union.databases() == ["root.p"])
    }

    @Test func overlappingRegionsCountAPointOnceAndTheLaterRegionWins() throws {
        // An upgraded node: its old region (any database) and a new one both hold timestamps 50…99.
        let regions = try engines([nil, "root.p"])
        defer { for region in regions { region.close() } }
        _ = try regions[0].write(points("root.p.d.v", 0..<100))
        _ = try regions[1].write(points("root.p.d.v", 50..<150, value: 1000))
        let union = RegionUnion(scanBatchPoints: 16) { regions }
        let scanned = try union.scan(path: "root.p.d.v", range: Int64.min...Int64.max).all()
        #expect(scanned.timestamps == Array(0..<150))
        #expect(scanned.values == .int64(Array(0..<50) + Array(50..<150).map { $0 + 1000 }))
        let folded = try union.aggregate(path: "root.p.d.v", range: Int64.min...Int64.max)
        #expect(folded.count == 150)
        let expectedSum: Int64 = (0..<150).reduce(0, +) + 100 * 1000
        #expect(folded.sum == Double(expectedSum))
    }

    @Test func schemaStatementsGoToTheRegionsOfTheirDatabase() throws {
        let regions = try engines(["root.a.b", "root.c"])
        defer { for region in regions { region.close() } }
        let union = RegionUnion(scanBatchPoints: 16) { regions }
        try union.createDatabase("root.a.b")
        try union.createSeries(SeriesSchema(path: "root.a.b.d.s", dataType: .int32))
        #expect(regions[0].series("root.a.b.d.s")?.dataType == .int32 && regions[1].series("root.a.b.d.s") == nil)
        // A region's write creates its own database for a device in it, not root.<first level>.
        _ = try regions[1].write(points("root.c.d.v", 0..<3))
        #expect(union.databases() == ["root.a.b", "root.c"])
        #expect(throws: EngineError.self) { try union.createSeries(SeriesSchema(path: "root.z.d.s", dataType: .int32)) }
        try union.dropDatabase("root.c")
        #expect(union.databases() == ["root.a.b"])
        #expect(throws: EngineError.self) { try union.dropDatabase("root.c") }
    }
}
