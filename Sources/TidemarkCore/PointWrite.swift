/// One point to write: a series path, a timestamp and a value (DESIGN.md section 1).
public struct PointWrite: Sendable, Equatable {
    public var path: String
    public var timestamp: Int64
    public var value: Value

    public init(path: String, timestamp: Int64, value: Value) {
        self.path = path
        self.timestamp = timestamp
        self.value = value
    }
}
