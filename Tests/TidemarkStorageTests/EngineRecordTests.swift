import Testing
import TidemarkCore
@testable import TidemarkStorage

@Suite struct EngineRecordTests {
    @Test func aWriteRecordOfEveryTypeDecodesToWhatWasEncoded() throws {
        let timestamps: [Int64] = [-5, 0, 1_795_910_400_000, Int64.max]
        let columns = [
            SeriesColumn(path: "root.a.d.b", type: .boolean, timestamps: timestamps, values: .boolean([true, false, true, true])),
            SeriesColumn(path: "root.a.d.i", type: .int32, timestamps: timestamps, values: .int32([Int32.min, -1, 0, Int32.max])),
            SeriesColumn(path: "root.a.d.l", type: .int64, timestamps: timestamps, values: .int64([Int64.min, -1, 0, Int64.max])),
            SeriesColumn(path: "root.a.d.f", type: .float, timestamps: timestamps, values: .float([-1.5, 0, .infinity, 3.25])),
            SeriesColumn(path: "root.a.d.x", type: .double, timestamps: timestamps, values: .double([-0.0, 1e300, .pi, 12.34])),
            SeriesColumn(path: "root.a.`d é`.t", type: .text, timestamps: timestamps, values: .text(["", "é", "a\u{0}b", "text"])),
        ]
        guard case .write(let decoded) = try EngineRecord.decode(EngineRecord.encodeWrite(columns)) else {
            Issue.record("not a write record")
            return
        }
        #expect(decoded.map(\.path) == columns.map(\.path))
        #expect(decoded.map(\.type) == columns.map(\.type))
        #expect(decoded.map(\.timestamps) == columns.map(\.timestamps))
        #expect(decoded.map(\.values) == columns.map(\.values))
    }
}
