import Foundation
import Testing
import TidemarkCore
import TidemarkTestSupport
@testable import TidemarkStorage

@Suite struct SegmentTests {
    /// Series of every type, including one longer than a chunk.
    static func sampleSeries() -> [(String, [Int64], Column)] {
        let long = (0..<(SegmentFormat.chunkPointsMax + 10)).map { Int64($0) * 1000 }
        return [
            ("root.sg.d1.b", [1, 2, 3], .boolean([true, false, true])),
            ("root.sg.d1.f", [5], .float([.nan])),
            ("root.sg.d1.i32", [10, 20], .int32([.min, .max])),
            ("root.sg.d1.i64", long, .int64(long.map { $0 / 7 })),
            ("root.sg.d1.t", [7, 8, 9], .text(["a", "b", "a"])),
            ("root.sg.d2.d", [100, 200, 300], .double([1.25, -0.0, .infinity])),
        ]
    }

    static func writeSample(directory: String, name: String = "s.seg") throws -> String {
        var writer = SegmentWriter(info: SegmentInfo(partition: 3, maxSequence: 99, level: 1))
        for (path, timestamps, values) in sampleSeries() { writer.add(path: path, timestamps: timestamps, values: values) }
        try writer.write(to: directory, name: name)
        return directory + "/" + name
    }

    @Test func segmentReadsBackEverySeriesAndItsStatistics() throws {
        let path = try Self.writeSample(directory: try temporaryDirectory("segment"))
        let reader = try SegmentReader(path: path)
        #expect(reader.info == SegmentInfo(partition: 3, maxSequence: 99, level: 1))
        #expect(reader.index.count == 6)
        for (seriesPath, timestamps, values) in Self.sampleSeries() {
            let chunks = try #require(reader.index[seriesPath])
            var readTimes: [Int64] = []
            var readValues = Column.empty(values.dataType)
            for chunk in chunks {
                let (t, v) = try reader.read(chunk)
                readTimes += t
                for index in 0..<v.count { readValues.append(v[index]) }
                #expect(chunk.stats.count == t.count)
            }
            #expect(readTimes == timestamps)
            #expect(readValues.isIdentical(to: values))
        }
        #expect(try #require(reader.index["root.sg.d1.i64"]).count == 2)
        let stats = try #require(reader.index["root.sg.d1.i32"]?.first?.stats)
        #expect(stats.minValue == Double(Int32.min) && stats.maxValue == Double(Int32.max) && stats.sum == -1)
        #expect(stats.first == .int32(.min) && stats.last == .int32(.max))
        try reader.verifyAll()
    }

    @Test func anyFlippedByteIsCaughtByACRC() throws {
        let directory = try temporaryDirectory("segment")
        let path = try Self.writeSample(directory: directory)
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        var generator = Seeded(state: 11)
        for _ in 0..<60 {
            var damaged = original
            let position = Int.random(in: 0..<damaged.count, using: &generator)
            damaged[position] ^= UInt8.random(in: 1...255, using: &generator)
            try damaged.write(to: URL(fileURLWithPath: path))
            do {
                try SegmentReader(path: path).verifyAll()
                Issue.record("a flipped byte at \(position) went unnoticed")
            } catch {
                #expect("\(error)".contains("corrupt segment"))
            }
        }
        try original.prefix(original.count / 2).write(to: URL(fileURLWithPath: path))
        #expect(throws: SegmentError.self) { try SegmentReader(path: path) }
    }

    /// Found by `tidemark-fuzz segments`: a trailer whose footer offset has its top bit set
    /// (clamped to Int.max) overflowed the bounds check and trapped the node at start.
    @Test func aFooterOffsetAtItsWidestIsCorruptionNotATrap() throws {
        let path = try Self.writeSample(directory: try temporaryDirectory("segment"))
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let trailer = bytes.count - SegmentFormat.trailerSize
        for offset in trailer..<(trailer + 8) { bytes[offset] = 0xFF }  // the footer offset, UInt64.max
        try bytes.write(to: URL(fileURLWithPath: path))
        let error = try #require(throws: SegmentError.self) { try SegmentReader(path: path) }
        #expect("\(error)".contains("does not fit a file of \(bytes.count) bytes"))
    }
}
