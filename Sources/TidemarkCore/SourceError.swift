/// Input that is wrong at a place: its line and column (from 1) and what is wrong there.
/// SQL (`SQLError`) and line protocol (`LineError`) report their mistakes this way.
public struct SourceError: Error, Sendable, Equatable, CustomStringConvertible {
    public let line: Int
    public let column: Int
    public let message: String

    public init(line: Int, column: Int, message: String) {
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String { "line \(line), column \(column): \(message)" }
}
