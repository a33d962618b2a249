/// Bounds on one statement and its result (node config `query:`).
public struct QueryLimits: Sendable, Equatable {
    /// Bytes of one SQL statement.
    public var statementBytesMax = 1 << 20
    /// Result rows when a request names no `row_limit` (IoTDB's REST default).
    public var rowsDefault = 10_000
    /// What one query may hold in memory: result rows and scan buffers.
    public var memoryBytesMax = 64 << 20

    public init() {}
}
