/// One device's values at one timestamp (IoTDB's InsertRow): how writes travel from the
/// decoders to the append stage, so a device's path is built once per row, not per value.
public struct RowWrite: Sendable, Equatable {
    public var device: String
    public var timestamp: Int64
    public var measurements: [String]
    public var values: [Value]

    public init(device: String, timestamp: Int64, measurements: [String], values: [Value]) {
        precondition(measurements.count == values.count, "one value per measurement")
        self.device = device
        self.timestamp = timestamp
        self.measurements = measurements
        self.values = values
    }

    /// The series path of measurement `index`.
    public func path(_ index: Int) -> String { device + "." + measurements[index] }

    /// The row as single points (tools, tests, privilege checks).
    public var points: [PointWrite] {
        measurements.indices.map { PointWrite(path: path($0), timestamp: timestamp, value: values[$0]) }
    }
}
