import Testing
import TidemarkTestSupport
@testable import TidemarkWire

private func scan<T>(_ text: String, _ body: (UnsafeBufferPointer<UInt8>) -> T) -> T {
    Array(text.utf8).withUnsafeBufferPointer(body)
}

@Suite struct NumberScanTests {
    @Test func floatsMatchTheCLibraryBitForBit() {
        // The fast path (mantissa / 10^k) must give exactly what strtod gives.
        var generator = Seeded(state: 7)
        for _ in 0..<50_000 {
            let digits = Int.random(in: 1...17, using: &generator)
            var text = Int.random(in: 0...3, using: &generator) == 0 ? "-" : ""
            let point = Int.random(in: 0...digits, using: &generator)
            for index in 0..<digits {
                if index == point && index > 0 { text += "." }
                text += String(Int.random(in: 0...9, using: &generator))
            }
            let expected = Double(text)!
            let got = scan(text, NumberScan.double)
            #expect(got?.bitPattern == expected.bitPattern, "\(text)")
            if got?.bitPattern != expected.bitPattern { return }
        }
    }

    @Test func theSyntaxIsInfluxDBs() {
        for (text, expected) in [("1e3", 1000.0), ("-.5", -0.5), ("5.", 5.0), ("1.5E-2", 0.015), ("0", 0)] as [(String, Double)] {
            #expect(scan(text, NumberScan.double) == expected, "\(text)")
        }
        for text in ["+1", "", ".", "-", "1.2.3", "inf", "nan", "1e999", "0x10", "1_000", "١٢"] {
            #expect(scan(text, NumberScan.double) == nil, "\(text)")
        }
        #expect(scan("-9223372036854775808", NumberScan.int64) == Int64.min)
        #expect(scan("9223372036854775807", NumberScan.int64) == Int64.max)
        #expect(scan("9223372036854775808", NumberScan.int64) == nil)
        #expect(scan("18446744073709551615", NumberScan.uint64) == UInt64.max)
        #expect(scan("18446744073709551616", NumberScan.uint64) == nil)
        #expect(scan("-1", NumberScan.uint64) == nil)
        #expect(scan("12i", NumberScan.value) == .integer(12))
        #expect(scan("12u", NumberScan.value) == .unsigned(12))
        #expect(scan("-12u", NumberScan.value) == nil)
        #expect(scan("True", NumberScan.value) == .boolean(true))
        #expect(scan("F", NumberScan.value) == .boolean(false))
        #expect(scan("yes", NumberScan.value) == nil)
        #expect(scan("FALSE", NumberScan.value) == .boolean(false))
        #expect(scan("tRUE", NumberScan.value) == nil)
        #expect(scan("fAlse", NumberScan.value) == nil)
    }
}
