import TidemarkIO
/// A series path pattern: levels separated by dots, where `*` matches exactly one level
/// and `**` one or more (IoTDB's semantics), e.g. `root.plant1.*.temperature`, `root.**`.
public struct PathPattern: Sendable, Hashable, CustomStringConvertible {
    public let levels: [String]

    public init(levels: [String]) {
        precondition(!levels.isEmpty)
        self.levels = levels
    }

    /// Parses a dotted pattern; backquoted levels may contain dots.
    public init(parsing text: String) throws(PathError) {
        levels = try SeriesPath.splitLevels(text)
    }

    public var description: String { levels.joined(separator: ".") }

    public var hasWildcard: Bool { levels.contains { $0 == "*" || $0 == "**" } }

    /// A series path is a pattern without wildcards, so matching is covering.
    public func matches(_ path: [String]) -> Bool { Self.covers(levels[...], path[...]) }

    public func matches(_ path: String) -> Bool {
        guard let levels = try? SeriesPath.splitLevels(path) else { return false }
        return matches(levels)
    }

    /// Whether this pattern matches every path that `other` can match (for privileges:
    /// a grant on `root.plant.**` covers a read of `root.plant.*.temperature`).
    public func covers(_ other: PathPattern) -> Bool { Self.covers(levels[...], other.levels[...]) }

    private static func covers(_ p: ArraySlice<String>, _ q: ArraySlice<String>) -> Bool {
        guard let head = p.first else { return q.isEmpty }
        if head == "**" {
            guard !q.isEmpty else { return false }
            var rest = q.dropFirst()
            while true {
                if covers(p.dropFirst(), rest) { return true }
                guard !rest.isEmpty else { return false }
                rest = rest.dropFirst()
            }
        }
        guard let level = q.first, level != "**", head == "*" || head == level else { return false }
        return covers(p.dropFirst(), q.dropFirst())
    }

    /// Whether some path starting with `prefix` could match (to prune a tree walk).
    public func mayMatchBelow(_ prefix: [String]) -> Bool {
        var patternIndex = 0
        for level in prefix {
            guard patternIndex < levels.count else { return false }
            let part = levels[patternIndex]
            if part == "**" { return true }
            if part != "*" && part != level { return false }
            patternIndex += 1
        }
        return true
    }

}

/// A path that is not well formed or breaks a limit, with where the problem is.
public struct PathError: Error, Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let reason: String

    public var description: String { "\(path): \(reason)" }
}

/// Series paths: `root.<database>.<device levels…>.<measurement>`.
public enum SeriesPath {
    /// Splits on dots outside backquotes; each level must be non-empty.
    public static func splitLevels(_ text: String) throws(PathError) -> [String] {
        var levels: [String] = []
        var current = ""
        var quoted = false
        for character in text {
            if character == "`" {
                quoted.toggle()
                current.append(character)
            } else if character == "." && !quoted {
                guard !current.isEmpty else { throw PathError(path: text, reason: "empty level at level \(levels.count + 1)") }
                levels.append(current)
                current = ""
            } else {
                current.append(character)
            }
        }
        guard !quoted else { throw PathError(path: text, reason: "unterminated backquote") }
        guard !current.isEmpty else { throw PathError(path: text, reason: "empty level at level \(levels.count + 1)") }
        levels.append(current)
        guard levels[0] == "root" else { throw PathError(path: text, reason: "paths start with root") }
        return levels
    }
}
