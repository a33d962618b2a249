/// Line-protocol field values and timestamps read straight from bytes, without building
/// a String: booleans, `12i`, `7u`, and floats (an exact fast path for short decimals,
/// else the C library's conversion).
enum NumberScan {
    private static let powersOfTen: [Double] = (0...22).map { exponent in
        var value = 1.0
        for _ in 0..<exponent { value *= 10 }
        return value
    }

    static func value(_ token: UnsafeBufferPointer<UInt8>) -> LineFieldValue? {
        guard let last = token.last else { return nil }
        if let flag = boolean(token) { return .boolean(flag) }
        if last == UInt8(ascii: "i") { return int64(UnsafeBufferPointer(rebasing: token.dropLast())).map { .integer($0) } }
        if last == UInt8(ascii: "u") { return uint64(UnsafeBufferPointer(rebasing: token.dropLast())).map { .unsigned($0) } }
        return double(token).map { .float($0) }
    }

    private static func boolean(_ token: UnsafeBufferPointer<UInt8>) -> Bool? {
        switch token.count {
        case 1:
            switch token[0] {
            case UInt8(ascii: "t"), UInt8(ascii: "T"): return true
            case UInt8(ascii: "f"), UInt8(ascii: "F"): return false
            default: return nil
            }
        case 4, 5:
            // true, True, TRUE, false, False, FALSE: compared as bytes (no String per number).
            func matches(_ lower: StaticString) -> Bool {
                guard lower.utf8CodeUnitCount == token.count else { return false }
                let expected = UnsafeBufferPointer(start: lower.utf8Start, count: lower.utf8CodeUnitCount)
                let allLower = zip(token, expected).allSatisfy { $0 == $1 }
                let allUpper = zip(token, expected).allSatisfy { $0 == $1 - 32 }
                let capitalised = token[0] == expected[0] - 32 && zip(token.dropFirst(), expected.dropFirst()).allSatisfy { $0 == $1 }
                return allLower || allUpper || capitalised
            }
            if matches("true") { return true }
            if matches("false") { return false }
            return nil
        default: return nil
        }
    }

    /// `[-]digits`, or nil (empty, other bytes, overflow).
    static func int64(_ token: UnsafeBufferPointer<UInt8>) -> Int64? {
        guard !token.isEmpty else { return nil }
        let negative = token[0] == UInt8(ascii: "-")
        guard let magnitude = uint64(UnsafeBufferPointer(rebasing: token[(negative ? 1 : 0)...])) else { return nil }
        if negative {
            guard magnitude <= UInt64(Int64.max) + 1 else { return nil }
            return magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)
        }
        return Int64(exactly: magnitude)
    }

    /// `digits`, or nil (empty, other bytes, overflow).
    static func uint64(_ token: UnsafeBufferPointer<UInt8>) -> UInt64? {
        guard !token.isEmpty else { return nil }
        var value: UInt64 = 0
        for byte in token {
            guard byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") else { return nil }
            let (times10, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = times10.addingReportingOverflow(UInt64(byte - UInt8(ascii: "0")))
            guard !overflow1 && !overflow2 else { return nil }
            value = sum
        }
        return value
    }

    /// A finite float in InfluxDB's syntax (digits, `.`, `-`, `+`, `e`, `E`; no leading `+`).
    static func double(_ token: UnsafeBufferPointer<UInt8>) -> Double? {
        guard let first = token.first, first != UInt8(ascii: "+") else { return nil }
        // Fast path: [-]digits[.digits] with at most 15 digits is exact as mantissa / 10^k,
        // one correctly rounded division, so it equals what strtod returns.
        var mantissa: UInt64 = 0
        var digits = 0
        var fractionDigits = 0
        var seenPoint = false
        var simple = true
        let negative = first == UInt8(ascii: "-")
        for byte in token[(negative ? 1 : 0)...] {
            if byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") {
                mantissa = mantissa &* 10 &+ UInt64(byte - UInt8(ascii: "0"))
                digits += 1
                if seenPoint { fractionDigits += 1 }
            } else if byte == UInt8(ascii: ".") && !seenPoint {
                seenPoint = true
            } else if byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E") || byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-")
                        || byte == UInt8(ascii: ".") {
                simple = false
            } else {
                return nil
            }
        }
        guard digits > 0 else { return nil }
        if simple && digits <= 15 {
            let magnitude = Double(mantissa) / powersOfTen[fractionDigits]
            return negative ? -magnitude : magnitude
        }
        guard let value = Double(String(decoding: token, as: UTF8.self)), value.isFinite else { return nil }
        return value
    }
}
