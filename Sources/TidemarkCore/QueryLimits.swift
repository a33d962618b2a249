/// Bounds on one statement and its result (node config `query:`).
public struct QueryLimits: Sendable, Equatable {
    /// Bytes of one SQL statement.
    public var statementBytesMax = 1 << 20
    /// How deep a statement may nest (parentheses, NOT, function calls, signs, and each
    /// operator of a chain such as `a + b + c`): every pass over a statement recurses that
    /// deep, so this bounds the stack whatever the client sends.
    public var nestingDepthMax = 256
    /// Result rows when a request names no `row_limit` (IoTDB's REST default).
    public var rowsDefault = 10_000
    /// What one query may hold in memory: result rows and scan buffers.
    public var memoryBytesMax = 64 << 20

    public init() {}
}
