/// The data types a series can hold (DESIGN.md section 1); raw values are stable on disk.
public enum DataType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case boolean = 0
    case int32 = 1
    case int64 = 2
    case float = 3
    case double = 4
    case text = 5

    /// The name in IoTDB's dialect (`INT64`, `DOUBLE`, …).
    public var description: String {
        switch self {
        case .boolean: "BOOLEAN"
        case .int32: "INT32"
        case .int64: "INT64"
        case .float: "FLOAT"
        case .double: "DOUBLE"
        case .text: "TEXT"
        }
    }

    public init?(name: String) {
        guard let type = Self.allCases.first(where: { $0.description == name.uppercased() }) else { return nil }
        self = type
    }
}

/// One value of a point.
public enum Value: Sendable, Equatable, Hashable {
    case boolean(Bool)
    case int32(Int32)
    case int64(Int64)
    case float(Float)
    case double(Double)
    case text(String)

    public var dataType: DataType {
        switch self {
        case .boolean: .boolean
        case .int32: .int32
        case .int64: .int64
        case .float: .float
        case .double: .double
        case .text: .text
        }
    }

    /// The value as a double for numeric aggregates; nil for text and booleans.
    public var numeric: Double? {
        switch self {
        case .int32(let value): Double(value)
        case .int64(let value): Double(value)
        case .float(let value): Double(value)
        case .double(let value): value
        case .boolean, .text: nil
        }
    }

    /// Bitwise equality: NaN equals NaN and -0.0 differs from 0.0, as storage must preserve them.
    public func isIdentical(to other: Value) -> Bool {
        switch (self, other) {
        case (.float(let a), .float(let b)): a.bitPattern == b.bitPattern
        case (.double(let a), .double(let b)): a.bitPattern == b.bitPattern
        default: self == other
        }
    }
}
