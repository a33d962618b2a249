import TidemarkCore
import TidemarkStorage

/// What statements run against (DESIGN.md section 9, "executor over a RegionReader"): one
/// region's engine, the union of the regions a node holds (`RegionUnion`), or the whole
/// cluster's through fragments (`ClusterStore`). Schema lookups throw when a region that
/// may hold the answer cannot be asked.
public protocol RegionStore: AnyObject, Sendable {
    /// Points per batch of a scan (what a scan buffer costs).
    var scanBatchPoints: Int { get }
    func databases() throws -> [String]
    func series(matching pattern: PathPattern) throws -> [SeriesSchema]
    func series(_ path: String) throws -> SeriesSchema?
    func devices(matching pattern: PathPattern) throws -> [String]
    func scan(path: String, range: ClosedRange<Int64>) throws -> SeriesScan
    func aggregate(path: String, range: ClosedRange<Int64>) throws -> Aggregates
    /// The aggregates of many (series, range) pairs at once, in their order: a store whose
    /// regions sit on other nodes asks each node once for all its pairs. The series are known
    /// to exist (listed first); one no region holds yields empty aggregates.
    func aggregates(_ requests: [AggregateRequest]) throws -> [Aggregates]

    func createDatabase(_ name: String) throws
    func createSeries(_ series: SeriesSchema) throws
    func deleteSeries(matching pattern: PathPattern) throws
    func dropDatabase(_ name: String) throws
    func delete(matching pattern: PathPattern, range: ClosedRange<Int64>) throws
    func flush() throws
}

/// One series' aggregates over one time range, asked with others (`RegionStore.aggregates`).
public struct AggregateRequest: Sendable, Equatable {
    public var path: String
    public var range: ClosedRange<Int64>

    public init(path: String, range: ClosedRange<Int64>) {
        self.path = path
        self.range = range
    }
}

extension RegionStore {
    public func aggregates(_ requests: [AggregateRequest]) throws -> [Aggregates] {
        try requests.map { request in
            try series(request.path) == nil ? Aggregates() : try aggregate(path: request.path, range: request.range)
        }
    }
}

extension StorageEngine: RegionStore {
    public var scanBatchPoints: Int { options.scanBatchPoints }
}

/// The regions a node holds, read as one store: each series' points may sit in several
/// regions (its slot's time partitions went to different groups), so scans merge them by
/// time and aggregates fold the regions' answers. Schema statements go to the regions of
/// the database they name; deletes and flushes to every region.
public final class RegionUnion: RegionStore {
    /// The regions now held, oldest first (a region whose database is nil holds any: the
    /// single region of a data directory from before the partition table).
    private let regions: @Sendable () -> [StorageEngine]
    public let scanBatchPoints: Int

    public init(scanBatchPoints: Int, regions: @escaping @Sendable () -> [StorageEngine]) {
        self.scanBatchPoints = scanBatchPoints
        self.regions = regions
    }

    public func databases() -> [String] { Set(regions().flatMap { $0.databases() }).sorted() }

    public func series(matching pattern: PathPattern) -> [SeriesSchema] {
        var seen = Set<String>()
        return regions().flatMap { $0.series(matching: pattern) }.filter { seen.insert($0.path).inserted }.sorted { $0.path < $1.path }
    }

    public func series(_ path: String) -> SeriesSchema? {
        for region in regions() { if let found = region.series(path) { return found } }
        return nil
    }

    public func devices(matching pattern: PathPattern) -> [String] {
        Set(regions().flatMap { $0.devices(matching: pattern) }).sorted()
    }

    public func scan(path: String, range: ClosedRange<Int64>) throws -> SeriesScan {
        let holding = regions().filter { $0.series(path) != nil }
        guard holding.count > 1 else { return try (holding.first ?? anyRegion()).scan(path: path, range: range) }
        let scans = try holding.map { try $0.scan(path: path, range: range) }
        guard let merged = SeriesScan.merging(scans, batchPoints: scanBatchPoints) else {
            throw EngineError.corrupt("\(path) has different types in the regions that hold it")
        }
        return merged
    }

    /// Folded over the regions; when two regions' points of the series overlap in time (a
    /// timestamp written again after an upgrade may sit in both), counted over the merged
    /// scan instead, so a point is never counted twice.
    public func aggregate(path: String, range: ClosedRange<Int64>) throws -> Aggregates {
        let holding = regions().filter { $0.series(path) != nil }
        guard holding.count > 1 else { return try (holding.first ?? anyRegion()).aggregate(path: path, range: range) }
        guard Set(holding.compactMap { $0.series(path)?.dataType }).count == 1 else {
            throw EngineError.corrupt("\(path) has different types in the regions that hold it")
        }
        let parts = try holding.map { try $0.aggregate(path: path, range: range) }.filter { $0.count > 0 }.sorted { $0.minTime! < $1.minTime! }
        if zip(parts, parts.dropFirst()).allSatisfy({ $0.maxTime! < $1.minTime! }) {
            return parts.reduce(into: Aggregates()) { $0.merge($1) }
        }
        var folded = Aggregates()
        let scan = try self.scan(path: path, range: range)
        while let batch = try scan.next() { folded.fold(timestamps: batch.timestamps, values: batch.values) }
        return folded
    }

    /// Without a lookup first: a series no region holds answers its error, taken as empty.
    public func aggregates(_ requests: [AggregateRequest]) throws -> [Aggregates] {
        try requests.map { request in
            do { return try aggregate(path: request.path, range: request.range) } catch EngineError.schema(let error) where error.kind == .noSuchSeries {
                return Aggregates()
            }
        }
    }

    public func createDatabase(_ name: String) throws {
        // Its regions opened when the meta group created it; an upgraded node's old region
        // holds any database.
        let targets = regions().filter { $0.database == name || $0.database == nil }
        guard !targets.isEmpty else { throw noRegion(for: name) }
        try eachOf(targets) { try $0.createDatabase(name) }
    }

    public func createSeries(_ series: SeriesSchema) throws {
        let all = regions()
        let owned = all.filter { $0.database.map { Self.contains($0, series.path) } ?? false }
        let targets = owned.isEmpty ? all.filter { $0.database == nil } : owned
        guard !targets.isEmpty else { throw noRegion(for: series.path) }
        try eachOf(targets) { region in
            // A region made for its database by the meta group (CREATE TIMESERIES made it) holds it from its first change.
            if let database = region.database, !region.databases().contains(database) { try? region.createDatabase(database) }
            try region.createSeries(series)
        }
    }

    public func deleteSeries(matching pattern: PathPattern) throws {
        let targets = regions().filter { !$0.series(matching: pattern).isEmpty }
        guard !targets.isEmpty else { return try anyRegion().deleteSeries(matching: pattern) }  // its error: none match
        for region in targets { try region.deleteSeries(matching: pattern) }
    }

    public func dropDatabase(_ name: String) throws {
        let targets = regions().filter { $0.databases().contains(name) }
        guard !targets.isEmpty else {
            throw EngineError.schema(SchemaError("\(name): no such database", kind: .noSuchDatabase))
        }
        for region in targets { try region.dropDatabase(name) }
    }

    public func delete(matching pattern: PathPattern, range: ClosedRange<Int64>) throws {
        for region in regions() where !region.series(matching: pattern).isEmpty { try region.delete(matching: pattern, range: range) }
    }

    public func flush() throws {
        for region in regions() { try region.flush() }
    }

    /// Runs `change` on every target; "already exists" from some but not all of them (a
    /// crash between two regions' parts) is no failure, from all of them it is.
    private func eachOf(_ targets: [StorageEngine], _ change: (StorageEngine) throws -> Void) throws {
        var exists: Error?
        var changed = false
        for region in targets {
            do {
                try change(region)
                changed = true
            } catch EngineError.schema(let error) where error.kind == .databaseExists || error.kind == .seriesExists {
                exists = EngineError.schema(error)
            }
        }
        if let exists, !changed { throw exists }
    }

    private func anyRegion() throws -> StorageEngine {
        guard let region = regions().first else { throw EngineError.schema(SchemaError("no region holds data yet", kind: .noSuchSeries)) }
        return region
    }

    private func noRegion(for path: String) -> EngineError {
        EngineError.schema(SchemaError("\(path): no database holds it (CREATE DATABASE first)", kind: .noSuchDatabase))
    }

    /// Whether series `path` is in `database` (a level prefix of it).
    static func contains(_ database: String, _ path: String) -> Bool {
        path.utf8.count > database.utf8.count && path.hasPrefix(database) && path.utf8[path.utf8.index(path.utf8.startIndex, offsetBy: database.utf8.count)] == UInt8(ascii: ".")
    }
}
