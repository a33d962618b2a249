import TidemarkCore

/// The values of one series for a run of timestamps, stored by type.
public enum Column: Sendable, Equatable {
    case boolean([Bool])
    case int32([Int32])
    case int64([Int64])
    case float([Float])
    case double([Double])
    case text([String])

    public static func empty(_ type: DataType) -> Column {
        switch type {
        case .boolean: .boolean([])
        case .int32: .int32([])
        case .int64: .int64([])
        case .float: .float([])
        case .double: .double([])
        case .text: .text([])
        }
    }

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

    public var count: Int {
        switch self {
        case .boolean(let values): values.count
        case .int32(let values): values.count
        case .int64(let values): values.count
        case .float(let values): values.count
        case .double(let values): values.count
        case .text(let values): values.count
        }
    }

    public subscript(index: Int) -> Value {
        switch self {
        case .boolean(let values): .boolean(values[index])
        case .int32(let values): .int32(values[index])
        case .int64(let values): .int64(values[index])
        case .float(let values): .float(values[index])
        case .double(let values): .double(values[index])
        case .text(let values): .text(values[index])
        }
    }

    /// Appends `value`, which must be of this column's type.
    public mutating func append(_ value: Value) {
        switch (self, value) {
        case (.boolean(var values), .boolean(let v)): self = .boolean([]); values.append(v); self = .boolean(values)
        case (.int32(var values), .int32(let v)): self = .int32([]); values.append(v); self = .int32(values)
        case (.int64(var values), .int64(let v)): self = .int64([]); values.append(v); self = .int64(values)
        case (.float(var values), .float(let v)): self = .float([]); values.append(v); self = .float(values)
        case (.double(var values), .double(let v)): self = .double([]); values.append(v); self = .double(values)
        case (.text(var values), .text(let v)): self = .text([]); values.append(v); self = .text(values)
        default: preconditionFailure("appending \(value.dataType) to a \(dataType) column")
        }
    }

    /// Appends `other`, of the same type.
    public mutating func append(contentsOf other: Column) {
        switch (self, other) {
        case (.boolean(var values), .boolean(let more)): self = .boolean([]); values += more; self = .boolean(values)
        case (.int32(var values), .int32(let more)): self = .int32([]); values += more; self = .int32(values)
        case (.int64(var values), .int64(let more)): self = .int64([]); values += more; self = .int64(values)
        case (.float(var values), .float(let more)): self = .float([]); values += more; self = .float(values)
        case (.double(var values), .double(let more)): self = .double([]); values += more; self = .double(values)
        case (.text(var values), .text(let more)): self = .text([]); values += more; self = .text(values)
        default: preconditionFailure("appending a \(other.dataType) column to a \(dataType) column")
        }
    }

    /// Bytes the values take in memory (text: its UTF-8 plus a string's overhead).
    public var valueBytes: Int {
        switch self {
        case .boolean(let values): values.count
        case .int32(let values): values.count * 4
        case .float(let values): values.count * 4
        case .int64(let values): values.count * 8
        case .double(let values): values.count * 8
        case .text(let values): values.reduce(0) { $0 + 16 + $1.utf8.count }
        }
    }

    /// The values at `indices`, in that order.
    public func gathered(_ indices: some Sequence<Int>) -> Column {
        switch self {
        case .boolean(let values): .boolean(indices.map { values[$0] })
        case .int32(let values): .int32(indices.map { values[$0] })
        case .int64(let values): .int64(indices.map { values[$0] })
        case .float(let values): .float(indices.map { values[$0] })
        case .double(let values): .double(indices.map { values[$0] })
        case .text(let values): .text(indices.map { values[$0] })
        }
    }

    /// Bitwise equality (NaN payloads and -0.0 preserved), for tests and checks.
    public func isIdentical(to other: Column) -> Bool {
        switch (self, other) {
        case (.float(let a), .float(let b)): a.map(\.bitPattern) == b.map(\.bitPattern)
        case (.double(let a), .double(let b)): a.map(\.bitPattern) == b.map(\.bitPattern)
        default: self == other
        }
    }
}
