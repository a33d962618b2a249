/// A configuration mistake, located as precisely as the source allows.
///
/// Printed as one line, `FILE:LINE:COLUMN: KEY: what is wrong`, so an operator
/// can jump straight to it.
public struct ConfigError: Error, Sendable, Equatable, CustomStringConvertible {
    public let file: String
    /// Dotted path of the key, e.g. `stages.decode.threads`; nil for whole-file problems.
    public let key: String?
    public let line: Int?
    public let column: Int?
    public let message: String

    public init(file: String, key: String?, line: Int?, column: Int?, message: String) {
        self.file = file
        self.key = key
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        var place = file
        if let line { place += ":\(line)" + (column.map { ":\($0)" } ?? "") }
        if let key { return "\(place): \(key): \(message)" }
        return "\(place): \(message)"
    }
}
