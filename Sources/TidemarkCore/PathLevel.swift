/// How one level of a series path is written. A level that is a plain name (letters,
/// digits, `_`) is written bare; any other is backquoted, a backquote inside doubled.
/// IoTDB treats `` root.a.`b` `` and `root.a.b` as the same node, so every path that enters
/// the node is brought to this one spelling before it is stored or looked up.
public enum PathLevel {
    /// Words that stay quoted even when plain: they mean something else bare.
    private static let reserved: Set<String> = ["root", "time", "timestamp"]

    /// Whether `name` can be written without backquotes.
    public static func isPlain(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A) || byte == 0x5F
        } && !reserved.contains(name.lowercased())
    }

    /// `name` as a level: bare when plain, else backquoted.
    public static func quoted(_ name: String) -> String {
        guard !isPlain(name) else { return name }
        var level = "`"
        for character in name {
            level.append(character)
            if character == "`" { level.append("`") }
        }
        return level + "`"
    }

    /// A written level in its one spelling: `` `plain` `` becomes `plain`; anything else
    /// (bare levels, wildcards, quoted levels that need their quotes) stays as it is.
    public static func canonical(_ level: String) -> String {
        guard level.utf8.count >= 2, level.utf8.first == UInt8(ascii: "`"), level.utf8.last == UInt8(ascii: "`") else { return level }
        let inner = String(level.dropFirst().dropLast())
        return isPlain(inner) ? inner : level
    }

    /// A written path (levels split on dots outside backquotes) in its one spelling. A path
    /// without backquotes is returned as it is, without being split.
    public static func canonicalPath(_ path: String) -> String {
        guard path.utf8.contains(UInt8(ascii: "`")) else { return path }
        var out = ""
        var start = path.startIndex
        for end in levelEnds(path) {
            out += canonical(String(path[start..<end])) + "."
            start = path.index(after: end)
        }
        return out + canonical(String(path[start...]))
    }

    /// Where each level of `path` but the last ends: its dots outside backquotes.
    public static func levelEnds(_ path: String) -> [String.Index] {
        var ends: [String.Index] = []
        var quoted = false
        var index = path.startIndex
        while index < path.endIndex {
            let character = path[index]
            if character == "`" { quoted.toggle() } else if character == "." && !quoted { ends.append(index) }
            index = path.index(after: index)
        }
        return ends
    }
}
