/// The rows of one request, stored flat: each distinct device (with the measurement names
/// of its rows) once, each row as that key, a timestamp and a run of values in one shared
/// array. A request of 5 000 lines is then a few arrays, not 5 000 of them to allocate on
/// a decoder and free on another thread.
public struct RowBatch: Sendable {
    /// A device and the measurements of the rows that name it, in their order.
    public struct Key: Sendable, Equatable {
        public let device: String
        public let measurements: [String]

        public init(device: String, measurements: [String]) {
            self.device = device
            self.measurements = measurements
        }

        /// The series path of measurement `index`.
        public func path(_ index: Int) -> String { device + "." + measurements[index] }
    }

    public private(set) var keys: [Key] = []
    /// Per row: its key's index in `keys`, its timestamp and where its values end in `values`.
    public private(set) var rowKeys: [Int32] = []
    public private(set) var rowTimestamps: [Int64] = []
    private var rowValueEnds: [Int32] = []
    /// Every row's values, row after row (one per measurement of the row's key).
    public private(set) var values: [Value] = []

    public init() {}

    /// The batch of `rows` (tools, REST and SQL inserts).
    public init(_ rows: [RowWrite]) {
        for row in rows { append(row) }
    }

    public var rowCount: Int { rowTimestamps.count }
    public var pointCount: Int { values.count }

    /// Adds a key; returns its index for `append(key:timestamp:values:)`.
    public mutating func addKey(_ key: Key) -> Int {
        precondition(keys.count < Int32.max)
        keys.append(key)
        return keys.count - 1
    }

    /// Adds a row of key `key`: one value per measurement of the key.
    public mutating func append(key: Int, timestamp: Int64, values more: some Collection<Value>) {
        precondition(keys.indices.contains(key) && more.count == keys[key].measurements.count, "one value per measurement of the row's key")
        precondition(values.count + more.count <= Int32.max, "a batch holds fewer than 2^31 values")
        rowKeys.append(Int32(key))
        rowTimestamps.append(timestamp)
        values.append(contentsOf: more)
        rowValueEnds.append(Int32(values.count))
    }

    /// Adds `row`, under the last key when it names the same device and measurements (a
    /// tablet's rows), else under a new one.
    public mutating func append(_ row: RowWrite) {
        let key: Int
        if let last = keys.last, last.device == row.device, last.measurements == row.measurements {
            key = keys.count - 1
        } else {
            key = addKey(Key(device: row.device, measurements: row.measurements))
        }
        append(key: key, timestamp: row.timestamp, values: row.values)
    }

    /// Where row `row`'s values are in `values`.
    public func valueRange(ofRow row: Int) -> Range<Int> {
        (row == 0 ? 0 : Int(rowValueEnds[row - 1]))..<Int(rowValueEnds[row])
    }

    /// Whether the batch names more than `limit` distinct series (device and measurement).
    /// Cheap when it does not: keys may repeat a series but never add one, so their
    /// measurements bound the count; only past that bound are paths hashed, up to `limit + 1`.
    public func namesMoreSeries(than limit: Int) -> Bool {
        guard keys.reduce(0, { $0 + $1.measurements.count }) > limit else { return false }
        var seen = Set<String>()
        for key in keys {
            for index in key.measurements.indices {
                seen.insert(key.path(index))
                if seen.count > limit { return true }
            }
        }
        return false
    }

    /// Row `row`'s key.
    public func key(ofRow row: Int) -> Key { keys[Int(rowKeys[row])] }
}
