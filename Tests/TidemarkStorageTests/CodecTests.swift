import Foundation
import Testing
import TidemarkCore
import TidemarkTestSupport
@testable import TidemarkIO
@testable import TidemarkStorage

private func roundTrip(_ column: Column) throws -> Column {
    var writer = ByteWriter()
    ColumnCodec.encode(column, into: &writer)
    var reader = ByteReader(writer.bytes)
    let decoded = try ColumnCodec.decode(column.dataType, count: column.count, from: &reader)
    #expect(reader.isAtEnd, "decoder left \(reader.remaining) bytes")
    return decoded
}

private func roundTripTimestamps(_ timestamps: [Int64]) throws -> [Int64] {
    var writer = ByteWriter()
    TimestampCodec.encode(timestamps, into: &writer)
    var reader = ByteReader(writer.bytes)
    defer { #expect(reader.isAtEnd) }
    return try TimestampCodec.decode(count: timestamps.count, from: &reader)
}

@Suite struct CodecTests {
    static let adversarialDoubles: [[Double]] = [
        [], [42.5], [.nan, .infinity, -.infinity, -0.0, 0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude, -.greatestFiniteMagnitude],
        [Double](repeating: 3.25, count: 1000), [0.1, 0.2, 0.30000000000000004], [1e300, 1e-300, 5e-324],
        [Double(bitPattern: 0x7FF8_0000_0000_1234), Double(bitPattern: 0xFFF0_0000_0000_0001)],  // NaN payloads
        [12.34, -0.0, 12.35], [9_007_199_254_740_993, 1.5], (0..<500).map { Double($0) * 0.01 },
    ]

    @Test func doublesRoundTripBitForBit() throws {
        var generator = Seeded(state: 1)
        var cases = Self.adversarialDoubles
        cases.append((0..<5000).map { _ in Double(bitPattern: generator.next()) })
        cases.append((0..<5000).map { _ in Double.random(in: -1e6...1e6, using: &generator) })
        var walk = 2000.0
        cases.append((0..<5000).map { _ in walk += Double(Int.random(in: -20...20, using: &generator)) / 100; return (walk * 100).rounded() / 100 })
        for values in cases {
            #expect(try roundTrip(.double(values)).isIdentical(to: .double(values)), "\(values.prefix(4))")
        }
    }

    @Test func floatsRoundTripBitForBit() throws {
        var generator = Seeded(state: 2)
        let cases: [[Float]] = [
            [], [1], [.nan, .infinity, -.infinity, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude],
            [Float](repeating: 7.5, count: 300), (0..<3000).map { _ in Float(bitPattern: UInt32(truncatingIfNeeded: generator.next())) },
            (0..<3000).map { Float($0) / 100 },
        ]
        for values in cases {
            #expect(try roundTrip(.float(values)).isIdentical(to: .float(values)))
        }
    }

    @Test func integersRoundTripAtTheExtremes() throws {
        var generator = Seeded(state: 3)
        let int64Cases: [[Int64]] = [
            [], [0], [.max], [.min, .max, .min, .max, 0, -1, 1], [Int64](repeating: -5, count: 10_000),
            (0..<4000).map { _ in Int64(bitPattern: generator.next()) }, (0..<4000).map { Int64($0) * 1000 },
            (0..<4000).map { _ in Int64.random(in: -300...300, using: &generator) },
        ]
        for values in int64Cases { #expect(try roundTrip(.int64(values)) == .int64(values)) }
        let int32Cases: [[Int32]] = [[], [.min], [.max, .min, 0], (0..<3000).map { _ in Int32(truncatingIfNeeded: generator.next()) }]
        for values in int32Cases { #expect(try roundTrip(.int32(values)) == .int32(values)) }
    }

    @Test func booleansAndTextsRoundTrip() throws {
        var generator = Seeded(state: 4)
        for values: [Bool] in [[], [true], [Bool](repeating: false, count: 1001), (0..<999).map { _ in Bool.random(using: &generator) }] {
            #expect(try roundTrip(.boolean(values)) == .boolean(values))
        }
        let texts: [[String]] = [
            [], [""], ["ok", "ok", "ok", "fault", "ok"], ["é—漢字🙂", "", "\u{0}"],
            (0..<2000).map { "state-\($0 % 3)" }, (0..<500).map { _ in String(generator.next(), radix: 36) },
        ]
        for values in texts { #expect(try roundTrip(.text(values)) == .text(values)) }
    }

    @Test func timestampsRoundTripIncludingDisorderAndExtremes() throws {
        var generator = Seeded(state: 5)
        let cases: [[Int64]] = [
            [], [0], [.min, .max], (0..<10_000).map { 1_700_000_000_000 + Int64($0) * 10_000 },
            (0..<3000).map { _ in Int64.random(in: 0...1_000_000, using: &generator) }, [.max, .min, .max, 0],
        ]
        for timestamps in cases { #expect(try roundTripTimestamps(timestamps) == timestamps) }
    }

    @Test func regularTimestampsAndDecimalWalksAreCompact() throws {
        var writer = ByteWriter()
        TimestampCodec.encode((0..<10_000).map { 1_700_000_000_000 + Int64($0) * 10_000 }, into: &writer)
        #expect(ZstdCompressor(level: 3).compress(writer.bytes).count < 100)
        var generator = Seeded(state: 6)
        var walk: Int64 = 200_000
        let values = (0..<10_000).map { _ in walk += Int64.random(in: -20...20, using: &generator); return Double(walk) / 100 }
        var valueWriter = ByteWriter()
        ColumnCodec.encode(.double(values), into: &valueWriter)
        // log2(41) = 5.36 bits of entropy per step: about 0.67 bytes a value is the floor.
        let compressed = ZstdCompressor(level: 3).compress(valueWriter.bytes)
        #expect(Double(compressed.count) / Double(values.count) < 0.72)
    }

    @Test func truncatedOrGarbledInputThrowsInsteadOfTrapping() throws {
        var generator = Seeded(state: 7)
        let columns: [Column] = [
            .double((0..<200).map { Double($0) / 10 }), .double((0..<200).map { _ in Double(bitPattern: generator.next()) }),
            .int64((0..<200).map { _ in Int64(bitPattern: generator.next()) }), .text((0..<50).map { "v\($0 % 4)" }),
            .boolean((0..<77).map { $0 % 3 == 0 }), .int32((0..<100).map { Int32($0) }),
        ]
        for column in columns {
            var writer = ByteWriter()
            ColumnCodec.encode(column, into: &writer)
            for cut in stride(from: 0, to: writer.bytes.count, by: max(1, writer.bytes.count / 25)) {
                var reader = ByteReader(Array(writer.bytes[..<cut]))
                #expect(throws: CorruptDataError.self) { try ColumnCodec.decode(column.dataType, count: column.count, from: &reader) }
            }
            for _ in 0..<200 {
                var bytes = writer.bytes
                bytes[Int.random(in: 0..<bytes.count, using: &generator)] = UInt8.random(in: 0...255, using: &generator)
                var reader = ByteReader(bytes)
                _ = try? ColumnCodec.decode(column.dataType, count: column.count, from: &reader)
            }
        }
    }

    @Test func crc32cMatchesTheStandardCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(Array("123456789".utf8).withUnsafeBytes { CRC32C.tableChecksum($0) } == 0xE306_9283)
        let data = (0..<1000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let whole = CRC32C.checksum(data)
        let continued = CRC32C.checksum(Array(data[300...]), continuing: CRC32C.checksum(Array(data[..<300])))
        #expect(whole == continued)
        // Parts checksummed apart combine into the whole's checksum, at every split.
        for split in [0, 1, 7, 299, 512, 999, 1000] {
            let combined = CRC32C.combine(CRC32C.checksum(Array(data[..<split])), CRC32C.checksum(Array(data[split...])),
                                          secondBytes: data.count - split)
            #expect(combined == whole, "split at \(split)")
        }
        // The instruction and the tables agree at every length and alignment (the same bytes every run).
        var generator = Seeded(state: 7)
        let random = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &generator) }
        random.withUnsafeBytes { raw in
            for start in 0..<9 {
                for count in [0, 1, 7, 8, 9, 63, 64, 65, 1000, 4000] {
                    let piece = UnsafeRawBufferPointer(rebasing: raw[start..<(start + count)])
                    #expect(CRC32C.checksum(piece, continuing: 0x1234_5678) == CRC32C.tableChecksum(piece, continuing: 0x1234_5678),
                            "start \(start), \(count) bytes")
                }
            }
        }
    }

    @Test func textIsReadAsUTF8AndRefusedOtherwise() throws {
        var writer = ByteWriter()
        for text in [Array("root.sg.d1.s".utf8), Array("root.sg.café".utf8), [0x72, 0xC3, 0x28], []] { writer.write(lengthPrefixed: text) }
        var reader = ByteReader(writer.bytes)
        #expect(try reader.readText(max: 100) == "root.sg.d1.s")
        #expect(try reader.readText(max: 100) == "root.sg.café")
        #expect(try reader.readText(max: 100) == nil)  // not UTF-8
        #expect(try reader.readText(max: 100) == "")
        #expect(reader.isAtEnd)
    }
}
