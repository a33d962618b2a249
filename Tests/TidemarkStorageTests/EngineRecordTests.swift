import Testing
import TidemarkCore
@testable import TidemarkStorage

@Suite struct EngineRecordTests {
    @Test func aWriteRecordOfEveryTypeDecodesToWhatWasEncoded() throws {
        let timestamps: [Int64] = [-5, 0, 1_795_910_400_000, Int64.max]
        let columns: [(path: String, values: [Value])] = [
            ("root.a.d.b", [true, false, true, true].map(Value.boolean)),
            ("root.a.d.i", [Int32.min, -1, 0, Int32.max].map(Value.int32)),
            ("root.a.d.l", [Int64.min, -1, 0, Int64.max].map(Value.int64)),
            ("root.a.d.f", [-1.5, 0, .infinity, 3.25].map(Value.float)),
            ("root.a.d.x", [-0.0, 1e300, .pi, 12.34].map(Value.double)),
            ("root.a.`d é`.t", ["", "é", "a\u{0}b", "text"].map(Value.text)),
            ("root.a.d.x2", [7.5, -2, 0, 1].map(Value.double)),
        ]
        // Points put row by row, across series, as a grouped write puts them.
        var builder = ColumnBatch.Builder()
        for column in columns { _ = builder.addSeries(path: column.path, type: column.values[0].dataType, count: timestamps.count) }
        for (position, timestamp) in timestamps.enumerated() {
            for (series, column) in columns.enumerated() { builder.put(series, timestamp: timestamp, value: column.values[position]) }
        }
        guard case .write(let decoded) = try EngineRecord.decode(EngineRecord.encodeWrite(builder.finish())) else {
            Issue.record("not a write record")
            return
        }
        #expect(decoded.series.map(\.path) == columns.map(\.path))
        #expect(decoded.series.map(\.type) == columns.map { $0.values[0].dataType })
        #expect(decoded.timestampsBySeries == Array(repeating: timestamps, count: columns.count))
        #expect(decoded.valuesBySeries.map { column in (0..<column.count).map { column[$0] } } == columns.map(\.values))
    }

    @Test func aPathMatchingTheRecentSeriesAtItsPlaceTakesItsNumberAndNoOtherDoes() throws {
        func record(_ paths: [String]) throws -> [UInt8] {
            EngineRecord.encodeWrite(try ColumnBatch(points: paths.map { PointWrite(path: $0, timestamp: 1, value: .double(1)) }))
        }
        let firstPaths = ["root.a.d.s1", "root.a.d.s2", "root.a.d.s3", "root.a.d.s4"]
        guard case .write(var first) = try EngineRecord.decode(try record(firstPaths)) else {
            Issue.record("not a write record")
            return
        }
        #expect(first.series.map(\.id) == [nil, nil, nil, nil])
        for index in first.series.indices { first.series[index].id = 7 + index }
        // Every place below has a recent series: the same path there takes its number; a
        // shorter or a longer path sharing its prefix, or a recent path at another place, does not.
        let nextPaths = ["root.a.d.s1", "root.a.d.s", "root.a.d.s33", "root.a.d.s2"]
        guard case .write(let next) = try EngineRecord.decode(try record(nextPaths), recent: first.series) else {
            Issue.record("not a write record")
            return
        }
        #expect(next.series.map(\.path) == nextPaths)
        #expect(next.series.map(\.id) == [7, nil, nil, nil])
    }
}
