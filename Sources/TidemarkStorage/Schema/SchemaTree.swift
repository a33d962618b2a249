import TidemarkCore
import TidemarkIO

/// One series' definition.
public struct SeriesSchema: Sendable, Equatable {
    public var path: String
    public var dataType: DataType
    /// IoTDB's encoding and compressor names, kept as given; the engine picks its codec
    /// by data type (docs/segment-format.md) and always compresses chunks with zstd.
    public var encoding: String
    public var compression: String

    public init(path: String, dataType: DataType, encoding: String? = nil, compression: String = "ZSTD") {
        self.path = path
        self.dataType = dataType
        self.encoding = encoding ?? Self.defaultEncoding(dataType)
        self.compression = compression
    }

    static func defaultEncoding(_ type: DataType) -> String {
        switch type {
        case .boolean: "RLE"
        case .int32, .int64: "TS_2DIFF"
        case .float, .double: "GORILLA"
        case .text: "DICTIONARY"
        }
    }

    public static let encodings: Set<String> = ["PLAIN", "RLE", "TS_2DIFF", "GORILLA", "DICTIONARY", "ZIGZAG", "CHIMP", "SPRINTZ", "RLBE"]
    public static let compressions: Set<String> = ["UNCOMPRESSED", "SNAPPY", "LZ4", "GZIP", "ZSTD", "LZMA2"]
}

/// Bounds on the schema (configurable; each breach is a clear error).
public struct SchemaLimits: Sendable, Equatable {
    public var pathDepthMax = 16
    public var levelBytesMax = 128
    public var seriesPerDatabaseMax = 1_000_000

    public init() {}
}

/// What cannot be done to the schema, and why.
public struct SchemaError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, for callers that map it to a status code.
    public enum Kind: Sendable, Equatable {
        case databaseExists, seriesExists, noSuchDatabase, noSuchSeries, invalidPath, other
    }

    public let kind: Kind
    public let description: String

    public init(_ description: String, kind: Kind = .other) {
        self.kind = kind
        self.description = description
    }
}

/// A series as writes address it: its number in this process (never stored, never reused,
/// so a deleted series' number stays dead) and its type. Lets the write path check and
/// place a column with array lookups instead of hashing its path again.
struct SeriesRef: Sendable, Equatable {
    let id: Int
    let type: DataType
}

/// The tree of paths: root → database → device levels → measurement, each leaf a series.
/// `@unchecked Sendable`: not thread-safe by itself; the storage engine guards it with its lock.
public final class SchemaTree: @unchecked Sendable {
    private final class Node {
        var children: [String: Node] = [:]
        var series: SeriesSchema?
        var isDatabase = false
    }

    public let limits: SchemaLimits
    private let root = Node()
    private var seriesCountByDatabase: [String: Int] = [:]
    private struct Entry {
        let schema: SeriesSchema
        let id: Int
    }
    /// Exact lookups (a write does one per new series) skip the tree walk.
    private var seriesByPath: [String: Entry] = [:]
    /// By series number: its type's raw value, or `deletedType` once the series is gone.
    private var typeByID: [UInt8] = []
    private static let deletedType: UInt8 = .max

    public init(limits: SchemaLimits = SchemaLimits()) { self.limits = limits }

    public var databases: [String] { seriesCountByDatabase.keys.sorted() }

    /// The levels of `path`, checked against the limits.
    public func validate(_ path: String) throws(SchemaError) -> [String] {
        let levels: [String]
        do { levels = try SeriesPath.splitLevels(path) } catch { throw SchemaError("invalid path \(error)", kind: .invalidPath) }
        guard levels.count >= 3 else { throw SchemaError("\(path): a series needs root, a database and a measurement", kind: .invalidPath) }
        try checkLimits(levels, of: path)
        return levels
    }

    /// Depth and level sizes within the limits, and no wildcard (series and databases alike).
    private func checkLimits(_ levels: [String], of path: String) throws(SchemaError) {
        guard levels.count <= limits.pathDepthMax else {
            throw SchemaError("\(path): \(levels.count) levels exceed path_depth_max \(limits.pathDepthMax)", kind: .invalidPath)
        }
        for (index, level) in levels.enumerated() {
            guard level.utf8.count <= limits.levelBytesMax else {
                throw SchemaError("\(path.prefix(64))…: level \(index + 1) is \(level.utf8.count) bytes, over level_bytes_max \(limits.levelBytesMax)",
                                  kind: .invalidPath)
            }
            guard level != "*" && level != "**" else { throw SchemaError("\(path): wildcards are not allowed in a series path", kind: .invalidPath) }
        }
    }

    public func createDatabase(_ name: String) throws(SchemaError) {
        let levels: [String]
        do { levels = try SeriesPath.splitLevels(name) } catch { throw SchemaError("invalid database \(error)", kind: .invalidPath) }
        guard levels.count >= 2 else { throw SchemaError("\(name): a database is root.<name>", kind: .invalidPath) }
        try checkLimits(levels, of: name)
        guard databaseOf(levels) == nil else { throw SchemaError("\(name): database already exists or overlaps one", kind: .databaseExists) }
        guard !seriesCountByDatabase.keys.contains(where: { $0.hasPrefix(name + ".") }) else {
            throw SchemaError("\(name): a database below it exists")
        }
        node(for: levels, create: true)!.isDatabase = true
        seriesCountByDatabase[name] = 0
    }

    /// The database a path falls in, if any.
    public func databaseOf(_ levels: [String]) -> String? {
        var node = root
        for (index, level) in levels.enumerated().dropFirst() {
            guard let child = node.children[level] else { return nil }
            if child.isDatabase { return levels[0...index].joined(separator: ".") }
            node = child
        }
        return nil
    }

    public func series(_ path: String) -> SeriesSchema? { seriesByPath[path]?.schema }

    /// The series at `path` now. `hint`, the number it had when last looked up, answers with
    /// an array lookup while that series lives; a deleted one is looked up by path.
    func ref(_ path: String, hint: Int? = nil) -> SeriesRef? {
        if let hint {
            precondition(hint >= 0 && hint < typeByID.count, "series numbers come from this schema")
            if let type = DataType(rawValue: typeByID[hint]) { return SeriesRef(id: hint, type: type) }
        }
        return seriesByPath[path].map { SeriesRef(id: $0.id, type: $0.schema.dataType) }
    }

    /// Creates a series; its database must exist. Fails if the path is taken or a limit is hit.
    public func createSeries(_ schema: SeriesSchema) throws(SchemaError) {
        let levels = try validate(schema.path)
        guard SeriesSchema.encodings.contains(schema.encoding) else { throw SchemaError("\(schema.path): unknown encoding \(schema.encoding)") }
        guard SeriesSchema.compressions.contains(schema.compression) else { throw SchemaError("\(schema.path): unknown compressor \(schema.compression)") }
        guard let database = databaseOf(levels) else { throw SchemaError("\(schema.path): no database holds this path", kind: .noSuchDatabase) }
        guard levels.count > database.split(separator: ".").count else { throw SchemaError("\(schema.path): a series cannot be a database") }
        let count = seriesCountByDatabase[database, default: 0]
        guard count < limits.seriesPerDatabaseMax else {
            throw SchemaError("\(database) already has series_per_database_max (\(limits.seriesPerDatabaseMax)) series")
        }
        var parent = root
        for level in levels.dropFirst().dropLast() {
            guard let child = parent.children[level] else { break }
            guard child.series == nil else { throw SchemaError("\(schema.path): \(child.series!.path) is a series, not a device") }
            parent = child
        }
        if let existing = node(for: levels, create: false) {
            guard existing.series == nil else { throw SchemaError("\(schema.path): series already exists", kind: .seriesExists) }
            guard existing.children.isEmpty else { throw SchemaError("\(schema.path): path is a device, not a measurement") }
        }
        node(for: levels, create: true)!.series = schema
        seriesByPath[schema.path] = Entry(schema: schema, id: typeByID.count)
        typeByID.append(schema.dataType.rawValue)
        seriesCountByDatabase[database] = count + 1
    }

    /// Throws what creating all of `paths` together would (each a new series, with the
    /// database `root.<first level>` of any that has none), changing nothing. A consensus
    /// region creates series when their entry is applied; this check comes before the entry
    /// is proposed, and again when it is applied, so an entry is taken whole or refused whole
    /// on every replica, never applied with some of its series silently missing.
    public func checkNewSeries(_ paths: [String]) throws(SchemaError) {
        var levelsOfPath: [[String]] = []
        for path in paths { levelsOfPath.append(try validate(path)) }
        let pending = Set(levelsOfPath)
        var newByDatabase: [String: Int] = [:]
        for (path, levels) in zip(paths, levelsOfPath) {
            let database: String
            if let existing = databaseOf(levels) {
                database = existing
            } else {
                database = levels[0...1].joined(separator: ".")
                guard !seriesCountByDatabase.keys.contains(where: { $0.hasPrefix(database + ".") }) else {
                    throw SchemaError("\(path): its database \(database) would hold a database below it")
                }
            }
            guard levels.count > database.split(separator: ".").count else { throw SchemaError("\(path): a series cannot be a database") }
            var node = root
            for (position, level) in levels.enumerated().dropFirst() {
                guard let child = node.children[level] else { break }
                if position < levels.count - 1 {
                    guard child.series == nil else { throw SchemaError("\(path): \(child.series!.path) is a series, not a device") }
                } else {
                    guard child.series == nil else { throw SchemaError("\(path): series already exists", kind: .seriesExists) }
                    guard child.children.isEmpty else { throw SchemaError("\(path): path is a device, not a measurement") }
                }
                node = child
            }
            for end in 3..<levels.count where pending.contains(Array(levels[..<end])) {
                throw SchemaError("\(path): \(levels[..<end].joined(separator: ".")) is a series in the same write, not a device")
            }
            newByDatabase[database, default: 0] += 1
            guard seriesCountByDatabase[database, default: 0] + newByDatabase[database]! <= limits.seriesPerDatabaseMax else {
                throw SchemaError("\(database) would pass series_per_database_max (\(limits.seriesPerDatabaseMax)) series")
            }
        }
    }

    /// Series matching `pattern`, in path order.
    public func series(matching pattern: PathPattern) -> [SeriesSchema] {
        var found: [SeriesSchema] = []
        walk(root, prefix: [], pattern: pattern) { node, levels in
            if let series = node.series, pattern.matches(levels) { found.append(series) }
        }
        return found.sorted { $0.path < $1.path }
    }

    /// Devices (parents of series) matching `pattern`, in path order.
    public func devices(matching pattern: PathPattern) -> [String] {
        var found = Set<String>()
        walk(root, prefix: [], pattern: pattern) { node, levels in
            if node.children.values.contains(where: { $0.series != nil }), pattern.matches(levels) {
                found.insert(levels.joined(separator: "."))
            }
        }
        return found.sorted()
    }

    /// Removes the series matching `pattern`; returns them.
    @discardableResult
    public func deleteSeries(matching pattern: PathPattern) -> [SeriesSchema] {
        let doomed = series(matching: pattern)
        for schema in doomed {
            let levels = try! SeriesPath.splitLevels(schema.path)  // stored paths were validated
            node(for: levels, create: false)?.series = nil
            if let entry = seriesByPath.removeValue(forKey: schema.path) { typeByID[entry.id] = Self.deletedType }
            if let database = databaseOf(levels) { seriesCountByDatabase[database, default: 1] -= 1 }
        }
        return doomed
    }

    /// Removes a database and every series under it.
    public func deleteDatabase(_ name: String) throws(SchemaError) {
        guard seriesCountByDatabase[name] != nil, let levels = try? SeriesPath.splitLevels(name) else {
            throw SchemaError("\(name): no such database", kind: .noSuchDatabase)
        }
        var parent = root
        for level in levels.dropFirst().dropLast() { parent = parent.children[level]! }
        parent.children[levels.last!] = nil
        seriesCountByDatabase[name] = nil
        for (path, entry) in seriesByPath where path.hasPrefix(name + ".") {
            typeByID[entry.id] = Self.deletedType
            seriesByPath[path] = nil
        }
    }

    private func node(for levels: [String], create: Bool) -> Node? {
        var node = root
        for level in levels.dropFirst() {
            if let child = node.children[level] {
                node = child
            } else if create {
                let child = Node()
                node.children[level] = child
                node = child
            } else {
                return nil
            }
        }
        return node
    }

    private func walk(_ node: Node, prefix: [String], pattern: PathPattern, _ visit: (Node, [String]) -> Void) {
        let levels = prefix.isEmpty ? ["root"] : prefix
        guard pattern.mayMatchBelow(levels) else { return }
        visit(node, levels)
        for (name, child) in node.children { walk(child, prefix: levels + [name], pattern: pattern, visit) }
    }
}
