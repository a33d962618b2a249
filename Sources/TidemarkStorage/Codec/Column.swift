import TidemarkCore
import TidemarkIO

/// The values of one series for a run of timestamps, stored by type.
public enum Column: Sendable, Equatable {
    case boolean([Bool])
    case int32([Int32])
    case int64([Int64])
    case float([Float])
    case double([Double])
    case text([String])

    /// An empty column with room for `capacity` values.
    public static func empty(_ type: DataType, capacity: Int = 0) -> Column {
        func room<T>(_ values: [T]) -> [T] {
            var values = values
            values.reserveCapacity(capacity)
            return values
        }
        switch type {
        case .boolean: return .boolean(room([]))
        case .int32: return .int32(room([]))
        case .int64: return .int64(room([]))
        case .float: return .float(room([]))
        case .double: return .double(room([]))
        case .text: return .text(room([]))
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
        // Switch on `self` alone and empty it before appending: the array is then uniquely
        // referenced and grows in place (a `(self, value)` tuple would hold a second reference,
        // copying the whole array on every append, and needs tuple metadata at run time).
        switch self {
        case .boolean(var values):
            guard case .boolean(let v) = value else { mismatch(value.dataType) }
            self = .boolean([]); values.append(v); self = .boolean(values)
        case .int32(var values):
            guard case .int32(let v) = value else { mismatch(value.dataType) }
            self = .int32([]); values.append(v); self = .int32(values)
        case .int64(var values):
            guard case .int64(let v) = value else { mismatch(value.dataType) }
            self = .int64([]); values.append(v); self = .int64(values)
        case .float(var values):
            guard case .float(let v) = value else { mismatch(value.dataType) }
            self = .float([]); values.append(v); self = .float(values)
        case .double(var values):
            guard case .double(let v) = value else { mismatch(value.dataType) }
            self = .double([]); values.append(v); self = .double(values)
        case .text(var values):
            guard case .text(let v) = value else { mismatch(value.dataType) }
            self = .text([]); values.append(v); self = .text(values)
        }
    }

    /// Appends `other`, of the same type.
    public mutating func append(contentsOf other: Column) {
        append(contentsOf: other, range: 0..<other.count)
    }

    /// Appends `other[range]`, of the same type.
    public mutating func append(contentsOf other: Column, range: Range<Int>) {
        switch self {
        case .boolean(var values):
            guard case .boolean(let more) = other else { mismatch(other.dataType) }
            self = .boolean([]); values.append(slice: more, range); self = .boolean(values)
        case .int32(var values):
            guard case .int32(let more) = other else { mismatch(other.dataType) }
            self = .int32([]); values.append(slice: more, range); self = .int32(values)
        case .int64(var values):
            guard case .int64(let more) = other else { mismatch(other.dataType) }
            self = .int64([]); values.append(slice: more, range); self = .int64(values)
        case .float(var values):
            guard case .float(let more) = other else { mismatch(other.dataType) }
            self = .float([]); values.append(slice: more, range); self = .float(values)
        case .double(var values):
            guard case .double(let more) = other else { mismatch(other.dataType) }
            self = .double([]); values.append(slice: more, range); self = .double(values)
        case .text(var values):
            guard case .text(let more) = other else { mismatch(other.dataType) }
            self = .text([]); values.append(slice: more, range); self = .text(values)
        }
    }

    private func mismatch(_ other: DataType) -> Never {
        preconditionFailure("appending \(other) to a \(dataType) column")
    }

    /// Bytes the values take in memory (text: its UTF-8 plus a string's overhead).
    public var valueBytes: Int { valueBytes(0..<count) }

    /// Bytes the values at `range` take in memory.
    public func valueBytes(_ range: Range<Int>) -> Int {
        switch self {
        case .boolean: range.count
        case .int32, .float: range.count * 4
        case .int64, .double: range.count * 8
        case .text(let values): values[range].reduce(0) { $0 + 16 + $1.utf8.count }
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

extension Array {
    /// Appends `other[range]` with one copy: no slice made, retained and released.
    mutating func append(slice other: [Element], _ range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= other.count)
        other.withUnsafeBufferPointer { append(few: UnsafeBufferPointer(rebasing: $0[range])) }
    }

    /// `append(contentsOf:)` for the few values a series gets per write: one at a time
    /// costs less than the bulk copy's set-up (a memtable takes a handful per series).
    @inline(__always)
    mutating func append(few more: UnsafeBufferPointer<Element>) {
        guard more.count > 8 else {
            for element in more { append(element) }
            return
        }
        append(contentsOf: more)
    }
}
