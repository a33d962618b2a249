import Testing
import TidemarkCore
import TidemarkStorage
@testable import TidemarkWire

private func parse(_ text: String) -> LineProtocol.Parsed { LineProtocol.parse(Array(text.utf8)) }

@Suite struct LineProtocolTests {
    @Test func parsesTheSpecificationsExamples() throws {
        let parsed = parse("""
            myMeasurement,tag1=value1,tag2=value2 fieldKey="fieldValue" 1556813561098000000
            weather,location=us-midwest temperature=82 1465839830100400200
            weather,location=us-midwest,season=summer temperature=82
            # a comment line

            cpu usage=0.5,count=3i,big=18446744073709551615u,up=t,down=FALSE,msg="a \\"quoted\\" \\\\ text"
            """)
        #expect(parsed.errors == [])
        #expect(parsed.points.count == 4)
        let first = parsed.points[0]
        #expect(first.measurement == "myMeasurement")
        #expect(first.tags.map(\.key) == ["tag1", "tag2"])
        #expect(first.fields.first?.value == .string("fieldValue"))
        #expect(first.timestamp == 1_556_813_561_098_000_000)
        #expect(parsed.points[2].timestamp == nil)
        let cpu = parsed.points[3]
        #expect(cpu.line == 6)
        #expect(cpu.fields.map(\.value) == [.float(0.5), .integer(3), .unsigned(.max), .boolean(true), .boolean(false),
                                             .string("a \"quoted\" \\ text")])
    }

    @Test func escapesInNamesKeysAndValues() {
        let parsed = parse(#"my\ meas\,ure,tag\ key=tag\,val\=ue field\=key=1 10"#)
        #expect(parsed.errors == [])
        #expect(parsed.points.first?.measurement == "my meas,ure")
        #expect(parsed.points.first?.tags.first?.key == "tag key")
        #expect(parsed.points.first?.tags.first?.value == "tag,val=ue")
        #expect(parsed.points.first?.fields.first?.key == "field=key")
    }

    @Test func tagsAreSortedByKey() {
        let point = parse("m,b=2,a=1,c=3 f=1").points.first
        #expect(point?.tags.map(\.key) == ["a", "b", "c"])
    }

    @Test func badLinesAreReportedWithTheirNumbersAndGoodOnesKept() {
        let parsed = parse("""
            ok f=1 1
            nofields
            bad,tag f=1
            m f=1x
            m f="unterminated
            m f=1 notanumber
            m f=1,f=2
            m,a=1,a=2 f=1
            fine,t=x f=2i 2
            """)
        #expect(parsed.points.map(\.line) == [1, 9])
        #expect(parsed.errors.map(\.line) == [2, 3, 4, 5, 6, 7, 8])
        #expect(parsed.errors[2].message == "invalid field value 1x")
        #expect(parsed.errors[2].column == 5)
        #expect(parsed.errors[4].message.contains("invalid timestamp"))
    }

    @Test func mappingFollowsTheDocumentedPaths() throws {
        let point = try #require(parse("weather,site=s01,location=us-midwest temperature=82,ok=true 1465839830100400200").points.first)
        let writes = try LineProtocolMapping.points(of: point, database: "plant1", precision: .ns, nowMs: 0)
        #expect(writes.map(\.path) == ["root.plant1.weather.`us-midwest`.s01.temperature", "root.plant1.weather.`us-midwest`.s01.ok"])
        #expect(writes.map(\.timestamp) == [1_465_839_830_100, 1_465_839_830_100])
        #expect(writes.map(\.value) == [.double(82), .boolean(true)])
        let seconds = try #require(parse("m f=1i 1700000000").points.first)
        #expect(try LineProtocolMapping.points(of: seconds, database: "d", precision: .s, nowMs: 0).first?.timestamp == 1_700_000_000_000)
        let now = try #require(parse("m f=\"x\"").points.first)
        #expect(try LineProtocolMapping.points(of: now, database: "d", precision: .ms, nowMs: 42).first?.timestamp == 42)
        let negative = try #require(parse("m f=1 -1500").points.first)
        #expect(try LineProtocolMapping.points(of: negative, database: "d", precision: .us, nowMs: 0).first?.timestamp == -2)
        let huge = try #require(parse("m f=1u 1").points.first)
        #expect(try LineProtocolMapping.points(of: huge, database: "d", precision: .ms, nowMs: 0).first?.value == .int64(1))
        let tooBig = try #require(parse("m f=18446744073709551615u 1").points.first)
        #expect(throws: LineError.self) { try LineProtocolMapping.points(of: tooBig, database: "d", precision: .ms, nowMs: 0) }
        #expect(LineProtocolMapping.level("a`b") == "`a``b`")
        #expect(LineProtocolMapping.level("9lives") == "9lives")  // as SQL reads it bare
        #expect(LineProtocolMapping.level("timestamp") == "`timestamp`" && LineProtocolMapping.level("a-b") == "`a-b`")
    }

    @Test func randomBytesNeverCrashTheParser() {
        var state: UInt64 = 5
        for _ in 0..<3000 {
            var bytes: [UInt8] = Array("m,t=v f=1,g=\"s\" 123\n".utf8)
            for _ in 0..<4 {
                state = state &* 6364136223846793005 &+ 1442695040888963407
                bytes[Int(state >> 33) % bytes.count] = UInt8(truncatingIfNeeded: state >> 17)
            }
            let parsed = LineProtocol.parse(bytes)
            #expect(parsed.points.count + parsed.errors.count <= 2)
        }
    }

    /// A request remembers each series key it parsed: every line, however often its series
    /// repeats, parses and maps exactly as it does alone.
    @Test func repeatedSeriesKeysParseAndMapAsTheyDoAlone() throws {
        let lines = [
            "m,b=2,a=1 v=1 10", "m,a=1,b=2 v=2 20", "m,b=2,a=1 v=3,w=4i 30", "m,b=2,a=1 w=5i 40",
            #"m\ x,t=a\,b\ c v=1 50"#, #"m\ x,t=a\,b\ c v=2 60"#, "m,t=é v=1 70", "m,t=é v=2 80",
            "m,t=a,t=b v=1 90", "m,t=a,t=b v=1 91", "m,t=a", "m,t=a v=1 100", "m,t=a  v=2 110",
            "d,site=s1,device=dev1 f0=1.5,f1=2.5 120", "d,site=s1,device=dev1 f1=3.5,f0=4.5 130",
            "m,t=\u{FF}x v=1 140", "m,t=\u{FF}x v=1 150", "m,t=a v=1 160 extra", "m,t=a v=1 170",
        ]
        var body = lines.joined(separator: "\n").utf8.map { $0 }
        // A byte that is not UTF-8, twice: refused both times.
        body += Array("\nm,t=".utf8) + [0xC3, 0x28] + Array(" v=1 1\nm,t=".utf8) + [0xC3, 0x28] + Array(" v=1 2".utf8)
        let together = LineProtocol.parse(body)
        var cache = LineProtocolMapping.RowCache()
        var batch = RowBatch()
        var alonePoints = 0
        for (number, text) in (lines.map { Array($0.utf8) } + [Array("m,t=".utf8) + [0xC3, 0x28] + Array(" v=1 1".utf8),
                                                              Array("m,t=".utf8) + [0xC3, 0x28] + Array(" v=1 2".utf8)]).enumerated() {
            let alone = LineProtocol.parse(text)
            let line = number + 1
            let joined = together.points.first { $0.line == line }
            #expect(alone.points.first.map { [$0.measurement] + $0.tags.map { "\($0.key)=\($0.value)" } }
                    == joined.map { [$0.measurement] + $0.tags.map { "\($0.key)=\($0.value)" } }, "line \(line)")
            #expect(alone.points.first?.fields == joined?.fields && alone.points.first?.timestamp == joined?.timestamp, "line \(line)")
            #expect(alone.errors.map(\.message) == together.errors.filter { $0.line == line }.map(\.message), "line \(line)")
            if let point = alone.points.first, let joined {
                alonePoints += 1
                let single = try LineProtocolMapping.row(of: point, database: "db", precision: .ns, nowMs: 0)
                try LineProtocolMapping.append(joined, database: "db", precision: .ns, nowMs: 0, to: &batch, cache: &cache)
                let row = batch.rowCount - 1
                let shared = RowWrite(device: batch.key(ofRow: row).device, timestamp: batch.rowTimestamps[row],
                                      measurements: batch.key(ofRow: row).measurements, values: Array(batch.values[batch.valueRange(ofRow: row)]))
                #expect(single == shared, "line \(line)")
            }
        }
        #expect(alonePoints == together.points.count && together.points.count == 15)
        // Repeats share a series key; different bytes do not.
        #expect(together.points[0].seriesKey == together.points[2].seriesKey && together.points[0].seriesKey != together.points[1].seriesKey)
    }
}
