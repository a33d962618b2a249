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
        guard case .write(var first) = try EngineRecord.decode(try record(["root.a.d.s1", "root.a.d.s2"])) else {
            Issue.record("not a write record")
            return
        }
        #expect(first.series.map(\.id) == [nil, nil])
        first.series[0].id = 7
        first.series[1].id = 9
        // The same paths at the same places take the numbers; a path at another place, or
        // one that only shares a prefix, does not.
        guard case .write(let next) = try EngineRecord.decode(try record(["root.a.d.s1", "root.a.d.s3", "root.a.d.s2", "root.a.d.s"]),
                                                              recent: first.series) else {
            Issue.record("not a write record")
            return
        }
        #expect(next.series.map(\.path) == ["root.a.d.s1", "root.a.d.s3", "root.a.d.s2", "root.a.d.s"])
        #expect(next.series.map(\.id) == [7, nil, nil, nil])
    }
}
